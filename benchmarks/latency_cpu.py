"""Issue 5's bar: CPU latency of optllm's ``cpu`` target against torch and onnxruntime.

    .venv/bin/python benchmarks/latency_cpu.py                          # every row (minutes)
    .venv/bin/python benchmarks/latency_cpu.py --rows minilm:1x128 --json out.json
    .venv/bin/python benchmarks/latency_cpu.py --models minilm --quick --target reference

One run, one table, one line per row x runtime. Rows (``--rows``, ``model:BATCHxSEQ``):
all-MiniLM-L6-v2 (real weights) at batch 1 and 8, GPT-2 (12 layers) and the small Llama, each at
sequence 128, built straight from ``transformers`` with their default configs
(``optllm.testing.model_matrix.benchmark_model``). Runtimes, all on the same inputs
(``input_ids`` and ``attention_mask``, ``model_matrix.benchmark_inputs``):

* **optllm**: ``optllm.compile(model, kwargs, target=--target)`` called like the torch model.
  While the ``cpu`` target is not built its cells say ``error: ...``; everything else still runs.
* **torch eager**: ``model(**kwargs)`` under ``torch.no_grad()``; its first output is the
  reference the error columns measure against.
* **torch.compile**: ``torch.compile(model)`` (inductor, default mode), dynamo reset before each
  row so no row inherits another's (possibly dynamic-shape) graphs. Its compile time (the first
  call) is the ``setup s`` column; a failure is shown in its cell.
* **ORT ENABLE_ALL**: onnxruntime on the exported file with ``ORT_ENABLE_ALL``. This is the
  ``vs ORT`` denominator.
* **ORT optimized**: onnxruntime (``ORT_ENABLE_ALL`` again) on the file
  ``onnxruntime.transformers.optimizer.optimize_model`` writes, with ``model_type`` bert for
  MiniLM/BERT and gpt2 for GPT-2 and the Llama (ORT's optimizer has no llama type; gpt2's
  generic fusions — layer norms, GELU, MatMul+bias — are what applies, its attention fusion does
  not match Llama's rotary/GQA attention), ``num_heads`` / ``hidden_size`` from the config
  (with 0, ORT fuses no attention at all).

torch and optllm run the model with ``--attn`` attention (default sdpa). The ONNX file is exported
with eager attention, which is what ORT's attention fusion matches, by ``zoo.export_onnx`` (the
legacy exporter, opset 17, dynamic batch and sequence: the recipe ``graph_reduction.py`` uses);
one export and one optimized file serve every row of a model.

Method: the same thread count everywhere (``--threads``, default ``os.cpu_count()``):
``torch.set_num_threads``, ORT ``intra_op_num_threads=N`` / ``inter_op_num_threads=1``,
``OMP_NUM_THREADS=N`` set before numpy or optllm's kernels load (and threadpoolctl's limit on the
BLAS/OpenMP pools where it is installed). Each runtime is called ``--warmup`` times, then timed
in 4 rotating blocks of ``--repeats / 4`` back-to-back calls, each block after 50 ms of idle time
and one untimed call (see ``time_round_robin``: single interleaved calls would be timed against
the previous runtime's still-spinning worker threads), so slow drift of this shared machine hits
all of them alike. Cells: median, p10 and p90 of the
per-call wall times in ms; ``vs ORT`` = median / ORT ENABLE_ALL's median (< 1 is faster);
``max abs`` / ``max rel`` of the runtime's first output against torch eager's (rel over elements
with ``|ref| > 1e-3 max|ref|``, as in ``graph_reduction.py``).

numpy's OpenBLAS is much faster here with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset,
so run as a script this file re-executes itself without them (for every runtime alike; the
header says whether it did; ``--keep-openblas-env`` opts out). ``main()`` called in-process
(the smoke test) leaves the environment as it is.

The goal (issue 5): optllm faster than onnxruntime on at least two rows and within 1.25x of it on
every row. Each row compares optllm with the *better* (lower median) of the two ORT variants: a
user would deploy whichever is faster, so that is the bar that means "at onnxruntime's level";
the footer names the variant per row.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks.latency_cpu")

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REEXEC_MARKER = "OPTLLM_LATENCY_CPU_UNSET"  # set in the re-executed child: what was removed
DEFAULT_ROWS = "minilm:1x128,minilm:8x128,gpt2:1x128,llama-tiny:1x128"
QUICK_SEQ = 16
LABELS = {"gpt2": "GPT-2 (12 layers)", "llama-tiny": "Llama (small)", "minilm": "all-MiniLM-L6-v2",
          "bert-base": "BERT-base"}
ORT_MODEL_TYPE = {"minilm": "bert", "bert-base": "bert", "gpt2": "gpt2", "llama-tiny": "gpt2"}
RUNTIMES = {"optllm": "optllm", "eager": "torch eager", "inductor": "torch.compile", "ort": "ORT ENABLE_ALL",
            "ort_opt": "ORT optimized"}
BASELINE = "ort"
ORT_VARIANTS = ("ort", "ort_opt")
GOAL_FASTER_ROWS = 2
GOAL_WITHIN = 1.25


# -- environment ---------------------------------------------------------------------------------
def reexec_without_openblas_vars(argv: Sequence[str]) -> None:
    """Replace this process with itself minus ``OPENBLAS_VARS`` (if any is set); returns otherwise."""
    present = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
    if not present or "--keep-openblas-env" in argv or REEXEC_MARKER in os.environ:
        return
    env = {k: v for k, v in os.environ.items() if k not in present}
    env[REEXEC_MARKER] = ",".join(f"{k}={v}" for k, v in present.items())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)


def openblas_env_note(keep: bool) -> str:
    removed = os.environ.get(REEXEC_MARKER)
    if removed:
        return f"unset by re-exec for every runtime (were {removed})"
    present = [f"{k}={os.environ[k]}" for k in OPENBLAS_VARS if k in os.environ]
    if not present:
        return "not set"
    why = "--keep-openblas-env" if keep else "in-process main(), no re-exec"
    return f"set, left as they are ({why}): {', '.join(present)}"


def set_threads(n: int) -> dict[str, Any]:
    """The same thread count for every runtime; returns what was set (for the header)."""
    preloaded = [m for m in ("numpy", "torch", "optllm") if m in sys.modules]
    os.environ["OMP_NUM_THREADS"] = str(n)  # before numpy / optllm's kernels load, where we can
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass
    info: dict[str, Any] = {"threads": n, "omp_num_threads": str(n), "preloaded": preloaded,
                            "torch_threads": torch.get_num_threads(), "blas": "threadpoolctl not installed"}
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return info
    import numpy  # noqa: F401  (so its BLAS shows up below)

    threadpool_limits(limits=n)
    pools = [f"{p.get('internal_api')} {p.get('version') or ''} {p.get('architecture') or ''}".strip()
             + f" x{p.get('num_threads')}" for p in threadpool_info() if p.get("user_api") == "blas"]
    info["blas"] = "; ".join(pools) or "none found"
    return info


def _shared() -> Any:
    """``graph_reduction.py`` (environment helpers, the error measure), imported after the thread
    setup because it imports numpy at load."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import graph_reduction

    return graph_reduction


def _dirty_note() -> str:
    """Whether the optllm being measured differs from the commit named (tracked files modified)."""
    import subprocess

    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "optllm"],
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return " + uncommitted changes in optllm/" if out.returncode == 0 and out.stdout.strip() else ""


def environment(threads: dict[str, Any], openblas: str) -> dict[str, Any]:
    gr = _shared()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{gr._cpu_model()}, {os.cpu_count()} cores", "python": sys.version.split()[0],
        "optllm": f"{gr._version('optllm')} ({gr._git_commit()}{_dirty_note()})",
        **{d: gr._version(d) for d in ("torch", "onnxruntime", "numpy", "llvmlite", "transformers", "onnx")},
        "threads": threads, "openblas_env": openblas,
    }


# -- runtimes ------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One runtime on one row."""

    runtime: str
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    vs_ort: float | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    setup_s: float | None = None
    error: str = ""
    times_ms: list[float] = field(default_factory=list)


@dataclass
class Row:
    model: str
    batch: int
    seq: int
    cells: dict[str, Cell] = field(default_factory=dict)
    failure: str = ""


def _error_text(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _first_output(out: Any) -> Any:
    """The first output as a numpy array: HF ModelOutput, tuple/list, torch tensor or array."""
    import numpy as np

    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    return np.asarray(out)


class OnnxFiles:
    """The exported (eager attention) and ORT-optimized files of one model, made once."""

    def __init__(self, name: str, model: Any, kwargs: dict[str, Any], workdir: Path, attn: str) -> None:
        from optllm.frontends.zoo import export_onnx, set_attn_implementation

        self.path = workdir / f"{name}.onnx"
        self.opt_path = workdir / f"{name}.ort-optimized.onnx"
        self.export_s = self.optimize_s = 0.0
        self.export_error = self.optimize_error = ""
        start = time.perf_counter()
        training = model.training
        try:
            set_attn_implementation(model, "eager")
            export_onnx(model, kwargs, self.path)
        except Exception as e:
            log.exception("%s: ONNX export failed", name)
            self.export_error = _error_text(e)
        finally:
            set_attn_implementation(model, attn)
            model.train(training)  # the export leaves the model in training mode (dropout on) otherwise
        self.export_s = time.perf_counter() - start
        if self.export_error:
            return
        start = time.perf_counter()
        try:
            from onnxruntime.transformers.optimizer import optimize_model

            config = model.config
            optimized = optimize_model(str(self.path), model_type=ORT_MODEL_TYPE.get(name, "bert"),
                                       num_heads=config.num_attention_heads, hidden_size=config.hidden_size)
            optimized.save_model_to_file(str(self.opt_path))
        except Exception as e:
            log.exception("%s: onnxruntime optimize_model failed", name)
            self.optimize_error = _error_text(e)
        self.optimize_s = time.perf_counter() - start


def ort_runner(path: Path, kwargs: dict[str, Any], threads: int) -> Callable[[], Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: kwargs[i.name].numpy() for i in session.get_inputs()}
    return lambda: session.run(None, feeds)


def build_runners(name: str, model: Any, kwargs: dict[str, Any], files: OnnxFiles,
                  args: argparse.Namespace) -> tuple[dict[str, Callable[[], Any] | None], dict[str, Cell]]:
    """Set every runtime up on this row; its first call is part of the setup (compile time)."""
    import torch

    import optllm

    cells = {key: Cell(key) for key in RUNTIMES}
    runners: dict[str, Callable[[], Any] | None] = {key: None for key in RUNTIMES}
    setups: dict[str, Callable[[], Callable[[], Any]]] = {
        "optllm": lambda: _bound(optllm.compile(model, kwargs, target=args.target, passes=args.passes), kwargs),
        "eager": lambda: _bound(model, kwargs),
        "ort": lambda: _ort_or_raise(files.path, files.export_error, kwargs, args.threads),
        "ort_opt": lambda: _ort_or_raise(files.opt_path, files.export_error or files.optimize_error, kwargs,
                                         args.threads),
    }
    if args.skip_torch_compile:
        cells["inductor"].error = "skipped (--skip-torch-compile)"
    else:
        torch._dynamo.reset()
        setups["inductor"] = lambda: _bound(torch.compile(model), kwargs)
    for key, setup in setups.items():
        log.info("%s %dx%d: setting up %s", name, kwargs["input_ids"].shape[0], kwargs["input_ids"].shape[1],
                 RUNTIMES[key])
        start = time.perf_counter()
        try:
            with torch.no_grad():
                fn = setup()
                fn()  # the first call: compiles / plans / allocates
            runners[key] = fn
        except Exception as e:
            log.info("%s on %s failed", RUNTIMES[key], name, exc_info=True)
            cells[key].error = _error_text(e)
        cells[key].setup_s = time.perf_counter() - start
    return runners, cells


def _bound(model: Any, kwargs: dict[str, Any]) -> Callable[[], Any]:
    return lambda: model(**kwargs)


def _ort_or_raise(path: Path, error: str, kwargs: dict[str, Any], threads: int) -> Callable[[], Any]:
    if error:
        raise RuntimeError(error)
    return ort_runner(path, kwargs, threads)


SETTLE_S = 0.05  # idle time before each block, so every other runtime's worker threads sleep


def time_round_robin(runners: dict[str, Callable[[], Any]], warmup: int, repeats: int,
                     blocks: int = 4) -> dict[str, list[float]]:
    """``warmup`` calls each, then ``blocks`` rounds; in each round every runtime (order rotated
    by one per round) idles ``SETTLE_S``, makes one untimed call, then ``repeats / blocks`` timed
    calls back to back. Blocks, not single interleaved calls: every runtime keeps worker threads
    spinning for a while after a call (onnxruntime's pool, libgomp's for torch and optllm), and
    a single call right after another runtime's would be timed against those spinning threads on
    a 2-core machine. Rotating blocks still spreads slow drift of the machine over all runtimes.
    Per-call wall times in ms."""
    import torch

    keys = list(runners)
    times: dict[str, list[float]] = {k: [] for k in keys}
    blocks = max(1, min(blocks, repeats))
    sizes = [repeats // blocks + (1 if b < repeats % blocks else 0) for b in range(blocks)]  # sum == repeats
    with torch.no_grad():
        for _ in range(warmup):
            for key in keys:
                runners[key]()
        for r, size in enumerate(sizes):
            shift = r % len(keys) if keys else 0
            for key in keys[shift:] + keys[:shift]:
                time.sleep(SETTLE_S)
                runners[key]()
                for _ in range(size):
                    start = time.perf_counter()
                    runners[key]()
                    times[key].append(1e3 * (time.perf_counter() - start))
    return times


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def measure_row(row: Row, model: Any, kwargs: dict[str, Any], files: OnnxFiles, args: argparse.Namespace) -> None:
    import torch

    compare_outputs = _shared().compare_outputs
    runners, row.cells = build_runners(row.model, model, kwargs, files, args)
    live = {k: fn for k, fn in runners.items() if fn is not None}
    log.info("%s %dx%d: timing %s", row.model, row.batch, row.seq, ", ".join(RUNTIMES[k] for k in live))
    for key, ms in time_round_robin(live, args.warmup, args.repeats).items():
        cell = row.cells[key]
        cell.times_ms = ms
        cell.median_ms = statistics.median(ms)
        cell.p10_ms, cell.p90_ms = _percentile(ms, 10), _percentile(ms, 90)
    with torch.no_grad():
        want = _first_output(live["eager"]()) if "eager" in live else None
        for key, fn in live.items():
            if want is None:
                break
            try:
                err = compare_outputs([_first_output(fn())], [want])
                row.cells[key].max_abs, row.cells[key].max_rel = err["max_abs"], err["max_rel"]
            except Exception as e:  # a shape/dtype mismatch must not hide the timings
                row.cells[key].error = f"output: {_error_text(e)}"
    base = row.cells[BASELINE].median_ms
    for cell in row.cells.values():
        if cell.median_ms is not None and base:
            cell.vs_ort = cell.median_ms / base


def parse_rows(text: str) -> list[tuple[str, int, int]]:
    rows = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, sep, shape = item.rpartition(":")
        try:
            batch, seq = (int(v) for v in shape.lower().split("x"))
        except ValueError:
            raise SystemExit(f"bad row {item!r}: expected model:BATCHxSEQ, e.g. minilm:1x128") from None
        if not sep or not name:
            raise SystemExit(f"bad row {item!r}: expected model:BATCHxSEQ, e.g. minilm:1x128")
        rows.append((name, batch, seq))
    return rows


def measure_model(name: str, shapes: Sequence[tuple[int, int]], args: argparse.Namespace, workdir: Path,
                  onnx: dict[str, Any]) -> list[Row]:
    """Every row of one model: built once, exported (and ORT-optimized) once (its times into ``onnx``)."""
    from optllm.frontends.zoo import set_attn_implementation
    from optllm.testing.model_matrix import benchmark_inputs, benchmark_model

    rows = [Row(name, b, s) for b, s in shapes]
    try:
        model = benchmark_model(name)  # straight from transformers, default config (use_cache kept)
        set_attn_implementation(model, args.attn)
        kwargs = benchmark_inputs(model, *shapes[0])
        log.info("%s: ONNX export and ORT optimize_model", name)
        files = OnnxFiles(name, model, kwargs, workdir, args.attn)
        onnx[name] = {"export_s": files.export_s, "optimize_s": files.optimize_s, "ort_model_type":
                      ORT_MODEL_TYPE.get(name, "bert"), "errors": [e for e in (files.export_error,
                                                                             files.optimize_error) if e]}
    except Exception as e:
        log.exception("%s failed", name)
        for row in rows:
            row.failure = _error_text(e)
        return rows
    for row in rows:
        try:
            measure_row(row, model, benchmark_inputs(model, row.batch, row.seq), files, args)
        except Exception as e:  # one broken row must not hide the others' numbers
            log.exception("%s %dx%d failed", name, row.batch, row.seq)
            row.failure = _error_text(e)
        gc.collect()
    return rows


# -- goal, table ---------------------------------------------------------------------------------
def goal(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """optllm against the better ORT variant, per row, and whether issue 5's goal is met."""
    per_row, faster, within, missing = [], 0, 0, 0
    for r in rows:
        cells = r["cells"]
        ort = [(cells[k]["median_ms"], k) for k in ORT_VARIANTS if k in cells and cells[k]["median_ms"]]
        ours = cells.get("optllm", {}).get("median_ms")
        entry: dict[str, Any] = {"row": f"{r['model']}:{r['batch']}x{r['seq']}", "vs": None, "ratio": None}
        if ort and ours:
            best, key = min(ort)
            entry.update(vs=key, ratio=ours / best, faster=ours < best, within=ours <= GOAL_WITHIN * best)
            faster += entry["faster"]
            within += entry["within"]
        else:
            missing += 1
            entry["why"] = ("optllm: " + (cells.get("optllm", {}).get("error") or r["failure"] or "no time")
                            if not ours else "no onnxruntime time")
        per_row.append(entry)
    met = bool(rows) and not missing and faster >= GOAL_FASTER_ROWS and within == len(rows)
    return {"rows": per_row, "faster_rows": faster, "within_rows": within, "unmeasured_rows": missing,
            "met": met}


HEADERS = ["model", "batch x seq", "runtime", "median ms", "p10 ms", "p90 ms", "vs ORT", "max abs err",
           "max rel err", "setup s", "note"]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        label, shape = LABELS.get(r["model"], r["model"]), f"{r['batch']}x{r['seq']}"
        if r["failure"] and not r["cells"]:
            out.append([label, shape, "-", *["-"] * 7, f"error: {r['failure']}"])
            continue
        for key, c in r["cells"].items():
            note = c["error"] if c["error"].startswith(("skipped", "output:")) else (
                f"error: {c['error']}" if c["error"] else "")
            out.append([label, shape, RUNTIMES[key], _fmt(c["median_ms"], ".2f"), _fmt(c["p10_ms"], ".2f"),
                        _fmt(c["p90_ms"], ".2f"), _fmt(c["vs_ort"], ".2f") + ("x" if c["vs_ort"] else ""),
                        _fmt(c["max_abs"], ".1e"), _fmt(c["max_rel"], ".1e"), _fmt(c["setup_s"], ".1f"), note])
            label = shape = ""  # the model and shape once per block
    return out


def header_lines(result: dict[str, Any]) -> list[str]:
    env, s = result["environment"], result["settings"]
    th = env["threads"]
    pre = f"; loaded before the thread setup: {', '.join(th['preloaded'])}" if th["preloaded"] else ""
    return [f"optllm CPU latency, {env['date']} (UTC)",
            f"machine: {env['machine']}, python {env['python']}",
            "versions: " + ", ".join(f"{k} {env[k]}" for k in
                                     ("optllm", "torch", "onnxruntime", "numpy", "llvmlite", "transformers", "onnx")),
            f"threads: {th['threads']} everywhere (torch {th['torch_threads']}, ORT intra {th['threads']} / inter 1, "
            f"OMP_NUM_THREADS={th['omp_num_threads']}); numpy BLAS: {th['blas']}{pre}",
            f"OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: {env['openblas_env']}",
            f"load average (1 min) at start / end: {result['load_average'][0]:.2f} / {result['load_average'][1]:.2f} "
            f"on {os.cpu_count()} cores (other processes on this machine skew every runtime)",
            f"method: {s['warmup']} warm-up calls each, then {s['repeats']} timed calls each in 4 rotating blocks "
            f"(50 ms idle + 1 untimed call before each block); "
            f"median / p10 / p90 of per-call wall time; optllm target {s['target']!r}, passes {s['passes']!r}; "
            f"torch/optllm attention {s['attn']}, ONNX exported with eager attention"]


def footer_lines(result: dict[str, Any]) -> list[str]:
    g = result["goal"]
    lines = [f"goal: optllm faster than onnxruntime on >= {GOAL_FASTER_ROWS} rows and within {GOAL_WITHIN}x on every "
             "row, each row against the better (lower median) of ORT ENABLE_ALL and ORT optimized, the one a user "
             "would deploy:"]
    for e in g["rows"]:
        if e["ratio"] is None:
            lines.append(f"  {e['row']}: not measured ({e['why']})")
        else:
            verdict = "faster" if e["faster"] else ("within" if e["within"] else f"OVER {GOAL_WITHIN}x")
            lines.append(f"  {e['row']}: optllm / {RUNTIMES[e['vs']]} = {e['ratio']:.2f}x ({verdict})")
    lines.append(f"goal {'MET' if g['met'] else 'NOT MET'}: faster on {g['faster_rows']} rows (need "
                 f">= {GOAL_FASTER_ROWS}), within {GOAL_WITHIN}x on {g['within_rows']} of {len(g['rows'])}"
                 + (f", {g['unmeasured_rows']} not measured" if g["unmeasured_rows"] else ""))
    onnx = result.get("onnx", {})
    if onnx:
        lines.append("ONNX export / ORT optimize_model s: "
                     + ", ".join(f"{m} {v['export_s']:.1f} / {v['optimize_s']:.1f}" for m, v in onnx.items()))
    lines.append("vs ORT = median / ORT ENABLE_ALL median; setup s = build + first call (torch.compile: its "
                 "compile time; optllm: compile); errors: first output vs torch eager")
    lines.append(f"total run time: {result['run_seconds']:.1f} s")
    return lines


def print_report(result: dict[str, Any], file: Any = None) -> None:
    file = file or sys.stdout
    rows = table_rows(result["rows"])
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c) for c in col) for col in zip(HEADERS, *rows)]
        print("\n".join(header_lines(result)), file=file)
        for cells in (HEADERS, ["-" * w for w in widths], *rows):
            print(" | ".join(c.ljust(w) for c, w in zip(cells, widths)), file=file)
        print("\n".join(footer_lines(result)), file=file)
        return
    console = Console(file=file, width=400)
    for line in header_lines(result):
        console.print(line, highlight=False, markup=False)
    table = Table(*HEADERS, header_style="bold")
    for cells in rows:
        table.add_row(*cells, end_section=False)
    console.print(table, markup=False)
    for line in footer_lines(result):
        console.print(line, highlight=False, markup=False)


# -- main ----------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=DEFAULT_ROWS, help=f"model:BATCHxSEQ, comma-separated (default: {DEFAULT_ROWS})")
    p.add_argument("--models", help="keep only the rows of these models (comma-separated)")
    p.add_argument("--seq", type=int, help=f"override every row's sequence length (--quick: {QUICK_SEQ})")
    p.add_argument("--target", default="cpu", help="optllm target (default: cpu; 'reference' for a smoke test)")
    p.add_argument("--passes", default="default", help="optllm pass pipeline (default: default)")
    p.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"),
                   help="attention of the torch model for torch and optllm (default: sdpa; ONNX is always eager)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help=f"threads for every runtime (default: os.cpu_count() = {os.cpu_count()})")
    p.add_argument("--repeats", type=int, help="timed round-robin rounds (default: 20; --quick: 5)")
    p.add_argument("--warmup", type=int, help="untimed calls of each runtime first (default: 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help=f"seq {QUICK_SEQ}, 5 repeats, 1 warm-up (a smoke run)")
    p.add_argument("--skip-torch-compile", action="store_true", help="leave torch.compile out")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="do not re-exec without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE")
    p.add_argument("--json", metavar="FILE", help="also write every number (and all per-call times) to FILE")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = p.parse_args(argv)
    rows = parse_rows(args.rows)
    if args.models:
        keep = {m.strip() for m in args.models.split(",") if m.strip()}
        rows = [r for r in rows if r[0] in keep] + [(m, 1, 128) for m in sorted(keep - {r[0] for r in rows})]
    seq = args.seq or (QUICK_SEQ if args.quick else None)
    args.row_specs = [(m, b, seq or s) for m, b, s in rows]
    args.repeats = args.repeats if args.repeats is not None else (5 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1, --warmup >= 0")
    return args


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _quiet_libraries() -> None:
    import warnings

    for name in ("torch", "torch._dynamo", "torch._inductor", "torch.onnx", "onnxruntime", "transformers", "optllm"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: Sequence[str] | None = None, *, file: Any = None) -> dict[str, Any]:
    """Measure, print the table, write ``--json``; returns the numbers."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    threads = set_threads(args.threads)  # first: before numpy / optllm load where this is a fresh process
    _quiet_libraries()
    start, load_start = time.perf_counter(), _load_average()
    by_model: dict[str, list[tuple[int, int]]] = {}
    for name, batch, seq in args.row_specs:
        by_model.setdefault(name, []).append((batch, seq))
    rows: list[Row] = []
    onnx: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="optllm-latency-cpu-") as tmp:
        for name, shapes in by_model.items():
            rows.extend(measure_model(name, shapes, args, Path(tmp), onnx))
    order = {spec: i for i, spec in enumerate(args.row_specs)}
    rows.sort(key=lambda r: order.get((r.model, r.batch, r.seq), 0))
    row_dicts = [asdict(r) for r in rows]
    result: dict[str, Any] = {
        "environment": environment(threads, openblas_env_note(args.keep_openblas_env)),
        "settings": {k: getattr(args, k) for k in ("target", "passes", "attn", "threads", "repeats", "warmup",
                                                   "quick", "skip_torch_compile")},
        "runtimes": RUNTIMES, "rows": row_dicts, "goal": goal(row_dicts), "onnx": onnx,
    }
    result["run_seconds"] = time.perf_counter() - start
    result["load_average"] = [load_start, _load_average()]
    print_report(result, file)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


if __name__ == "__main__":
    reexec_without_openblas_vars(sys.argv[1:])
    main()
