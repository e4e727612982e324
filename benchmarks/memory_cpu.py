"""Issue 9's memory bar: resident memory of a compiled ``cpu`` model against onnxruntime's, and
the peak memory of compiling.

    .venv/bin/python benchmarks/memory_cpu.py                          # GPT-2 12L and MiniLM
    .venv/bin/python benchmarks/memory_cpu.py --models tiny --seq 16   # seconds (the smoke test)
    .venv/bin/python benchmarks/memory_cpu.py --compile-peak           # Llama-shaped, reference + cpu

**Resident memory** (default mode). For each model, separate fresh subprocesses, one per
runtime, each first importing torch and building the model exactly as a user would (seeded
random weights from ``transformers`` with the config's defaults, or the real MiniLM), so that
every column pays for torch and the user's model alike:

* **baseline**: torch + model + example inputs, nothing else (what every other column starts
  from); every weight is read once (``read_weights``: MiniLM's ``from_pretrained`` maps its file,
  and unread pages are not resident; ``--lazy-weights`` skips this);
* **optllm**: ``optllm.compile(model, example, target="cpu")``, then one call;
* **onnxruntime**: an ``InferenceSession`` (default options) on a file ``torch.onnx.export``
  (legacy exporter, ``dynamo=False``, opset 17) wrote beforehand in yet another subprocess, then
  one call.

A child reads ``VmRSS`` (and ``VmHWM``, the peak) from ``/proc/self/status`` after that first
call. ``ratio`` = optllm / onnxruntime (goal: <= 1). Every model is called with ``input_ids``
and ``attention_mask`` (GPT-2 with ``input_ids`` alone builds its position ids with a cumsum the
cpu target does not lower yet, and the legacy exporter meets ``aten::diff``); both runtimes get the same
batch and sequence (``--batch``, ``--seq``) and produce the same outputs (the ONNX file returns
only what optllm returns: GPT-2's logits, MiniLM's ``last_hidden_state`` and ``pooler_output``).

**Compile peak** (``--compile-peak``): a Llama-shaped ``LlamaForCausalLM`` (``--llama``:
hidden, layers, intermediate, vocab; default a 0.25B model, 16 layers) is built, the peak-RSS
counter is reset (``/proc/self/clear_refs``), ``optllm.compile(model, kwargs, target=T)``
runs, and the peak during it minus the resident memory before it is reported in MiB and as a
multiple of the model's weight bytes and of its largest layer's weight bytes (goal: at most 1
largest layer beyond the user's own model). Each target runs in its own subprocess; import and
pass seconds are printed too, at two layer counts (``--layers-scan``) to show they grow linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

MIB = 1 << 20
MODELS = ("gpt2", "minilm")
RUNTIMES = ("baseline", "optllm", "onnxruntime")
DEFAULT_LLAMA = "1024,16,2816,32000"  # hidden, layers, intermediate, vocab: 0.25B parameters


# -- measuring ------------------------------------------------------------------------------------
def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process in MiB (psutil is not a dependency)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) / 1024
    return out


def reset_peak() -> None:
    """Make VmHWM restart from the current RSS (Linux: ``5`` into ``clear_refs``)."""
    Path("/proc/self/clear_refs").write_text("5")


# -- models ---------------------------------------------------------------------------------------
def build_model(name: str, llama: str = DEFAULT_LLAMA, use_cache: bool = True) -> Any:
    """The model as a user builds it from ``transformers`` (seeded random weights, default config
    apart from the sizes of ``tiny`` and ``llama``; ``use_cache=True`` is the causal LMs'
    default: optllm drops the cache outputs, the ONNX export returns only the logits)."""
    import torch
    import transformers

    torch.manual_seed(0)
    if name == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(use_cache=use_cache))
    elif name == "tiny":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000,
                                                                     use_cache=use_cache))
    elif name == "minilm":
        from optllm.frontends.zoo import minilm_path

        model = transformers.AutoModel.from_pretrained(minilm_path(), local_files_only=True)
    elif name == "llama":
        hidden, layers, inter, vocab = (int(x) for x in llama.split(","))
        cfg = transformers.LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=inter,
                                       vocab_size=vocab, num_attention_heads=max(1, hidden // 64),
                                       num_key_value_heads=max(1, hidden // 256), use_cache=use_cache)
        model = transformers.LlamaForCausalLM(cfg)
    else:
        raise SystemExit(f"unknown model '{name}' (known: {', '.join(MODELS)}, tiny, llama)")
    return model.eval()


def example(model: Any, name: str, batch: int, seq: int) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones(batch, seq, dtype=torch.int64)}


def read_weights(model: Any) -> None:
    """Read every parameter and buffer once, as the user's first forward would: ``from_pretrained``
    maps the safetensors file, and its pages become resident only when read, so without this a
    runtime that reads the user's weights (optllm shares them) would be charged for the model's
    own pages while one that reads a file of its own (onnxruntime) would not."""
    import torch

    with torch.no_grad():
        for t in model.state_dict().values():
            t.sum()


def output_names(name: str) -> list[str]:
    return ["last_hidden_state", "pooler_output"] if name == "minilm" else ["logits"]


# -- children ---------------------------------------------------------------------------------------
def child(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.llama, not args.no_cache)
    kwargs = example(model, args.model, args.batch, args.seq)
    if not args.lazy_weights:
        read_weights(model)
    if args.child == "export":
        return export(model, kwargs, args.model, Path(args.onnx))
    if args.child == "compile-peak":
        return compile_peak(model, kwargs, args.target)
    base = proc_status()
    if args.child == "optllm":
        import optllm

        t0 = time.perf_counter()
        cm = optllm.compile(model, kwargs, target="cpu")
        cm(**kwargs)
        seconds = time.perf_counter() - t0
    elif args.child == "onnxruntime":
        import numpy as np
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
        t0 = time.perf_counter()
        sess = ort.InferenceSession(args.onnx, opts, providers=["CPUExecutionProvider"])
        sess.run(None, {k: np.asarray(v) for k, v in kwargs.items()})
        seconds = time.perf_counter() - t0
    else:
        seconds = 0.0
    after = proc_status()
    return {"baseline_mib": base["VmRSS"], "rss_mib": after["VmRSS"], "hwm_mib": after["VmHWM"], "seconds": seconds}


def export(model: Any, kwargs: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """The legacy exporter on a wrapper returning only the outputs optllm returns."""
    import warnings

    import torch

    from optllm.frontends.zoo import set_attn_implementation

    keys = list(kwargs)
    outs = output_names(name)
    # eager attention: with sdpa, transformers' mask code calls aten::diff, which opset 17 lacks
    set_attn_implementation(model, "eager")

    class Wrapped(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *xs: Any) -> Any:
            extra = {} if name == "minilm" else {"use_cache": False}
            res = self.inner(**dict(zip(keys, xs)), **extra)
            return tuple(res[k] for k in outs)

    axes = {k: {0: "B", 1: "S"} for k in keys}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapped(model).eval(), tuple(kwargs.values()), str(path), input_names=keys,
                          output_names=outs, dynamic_axes=axes, opset_version=17, dynamo=False)
    return {"bytes": path.stat().st_size}


def compile_peak(model: Any, kwargs: dict[str, Any], target: str) -> dict[str, Any]:
    import optllm

    params = list(model.state_dict().values())
    weight_bytes = sum(t.numel() * t.element_size() for t in {id(t): t for t in params}.values())
    layers = getattr(model.config, "num_hidden_layers", 1)
    layer = model.model.layers[0] if hasattr(model, "model") else model
    layer_bytes = sum(p.numel() * p.element_size() for p in layer.parameters())
    largest = max(layer_bytes, max(p.numel() * p.element_size() for p in model.parameters()))
    before = proc_status()["VmRSS"]
    reset_peak()
    t0 = time.perf_counter()
    cm = optllm.compile(model, kwargs, target=target)
    seconds = time.perf_counter() - t0
    after = proc_status()
    return {"weights_mib": weight_bytes / MIB, "largest_layer_mib": largest / MIB, "layers": layers,
            "rss_before_mib": before, "peak_mib": after["VmHWM"], "rss_after_mib": after["VmRSS"],
            "seconds": seconds, "import_s": cm.stats["seconds"]["import"], "passes_s": cm.stats["seconds"]["passes"],
            "build_s": cm.stats["seconds"].get("build", 0.0)}


def run_child(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run this script as a child and return the JSON of its last line (or ``{"error": ...}``)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


# -- the parent ----------------------------------------------------------------------------------------
def measure(models: list[str], batch: int, seq: int, threads: int, timeout: float, use_cache: bool,
            file: TextIO, runtimes: tuple[str, ...] = RUNTIMES, lazy_weights: bool = False) -> list[dict[str, Any]]:
    rows = []
    common = ["--batch", str(batch), "--seq", str(seq), "--threads", str(threads)] + ([] if use_cache else ["--no-cache"])
    common += ["--lazy-weights"] if lazy_weights else []
    for name in models:
        row: dict[str, Any] = {"model": name}
        with tempfile.TemporaryDirectory() as tmp:
            onnx = str(Path(tmp) / f"{name}.onnx")
            ex = {"error": "not run"} if "onnxruntime" not in runtimes else run_child(["--child", "export", "--model", name, "--onnx", onnx, *common], timeout)
            for rt in RUNTIMES:
                if rt not in runtimes:
                    row[rt] = {"error": "not run (--runtimes)"}
                    continue
                if rt == "onnxruntime" and "error" in ex:
                    row[rt] = {"error": f"export: {ex['error']}"}
                    continue
                row[rt] = run_child(["--child", rt, "--model", name, "--onnx", onnx, *common], timeout)
        rows.append(row)
    print(f"resident memory after the first call, batch {batch}, seq {seq}, {threads} thread(s); MiB "
          "(VmRSS of a fresh process holding torch and the model first, its weights "
          f"{'as from_pretrained maps them (--lazy-weights)' if lazy_weights else 'read once'})", file=file)
    print(f"{'model':<8} {'baseline':>9} {'optllm':>9} {'onnxruntime':>12} {'ratio':>6}  "
          f"{'optllm-base':>11} {'ort-base':>9}", file=file)
    for row in rows:
        cells = [row[rt] for rt in RUNTIMES]
        errors = [f"{rt}: {c['error']}" for rt, c in zip(RUNTIMES, cells) if "error" in c]
        if errors and runtimes != RUNTIMES:  # a partial run: print what was measured
            print(f"{row['model']:<8} " + "  ".join(f"{rt} {c.get('rss_mib', 0):.0f}" for rt, c in zip(RUNTIMES, cells)
                                                   if "error" not in c), file=file)
            continue
        if errors:
            print(f"{row['model']:<8} " + "; ".join(errors), file=file)
            continue
        base, ours, ort = (c["rss_mib"] for c in cells)
        row["ratio"] = ours / ort
        print(f"{row['model']:<8} {base:9.0f} {ours:9.0f} {ort:12.0f} {ours / ort:6.2f}  {ours - base:11.0f} "
              f"{ort - base:9.0f}", file=file)
    if not use_cache:
        print("causal LMs built with use_cache=False (--no-cache)", file=file)
    print("goal: optllm / onnxruntime <= 1 on every row", file=file)
    return rows


def measure_compile_peak(llama: str, targets: list[str], scan: list[int], timeout: float, file: TextIO) -> list[dict[str, Any]]:
    rows = []
    hidden, layers, inter, vocab = llama.split(",")
    for n_layers in scan or [int(layers)]:
        spec = ",".join([hidden, str(n_layers), inter, vocab])
        for target in targets:
            res = run_child(["--child", "compile-peak", "--model", "llama", "--llama", spec, "--target", target,
                             "--batch", "1", "--seq", "16"], timeout)
            res.update(target=target, spec=spec)
            rows.append(res)
    print("compile peak: Llama-shaped (hidden,layers,intermediate,vocab), optllm.compile(model, kwargs); MiB",
          file=file)
    print(f"{'model':<22} {'target':<9} {'weights':>8} {'largest':>8} {'before':>8} {'peak':>8} {'added':>8} "
          f"{'added/W':>8} {'added/L':>8} {'import s':>9} {'passes s':>9} {'build s':>8}", file=file)
    for r in rows:
        if "error" in r:
            print(f"{r['spec']:<22} {r['target']:<9} {r['error']}", file=file)
            continue
        added = r["peak_mib"] - r["rss_before_mib"]
        r["added_mib"] = added
        print(f"{r['spec']:<22} {r['target']:<9} {r['weights_mib']:8.0f} {r['largest_layer_mib']:8.0f} "
              f"{r['rss_before_mib']:8.0f} {r['peak_mib']:8.0f} {added:8.0f} {added / r['weights_mib']:8.2f} "
              f"{added / r['largest_layer_mib']:8.2f} {r['import_s']:9.2f} {r['passes_s']:9.2f} {r['build_s']:8.2f}",
              file=file)
    print("added = peak during compile - RSS before it; added/W in model weight bytes, added/L in largest-layer "
          "bytes (goal: added/L <= 1)", file=file)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: gpt2, minilm, tiny")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per child process")
    p.add_argument("--compile-peak", action="store_true", help="measure the peak memory of compiling instead")
    p.add_argument("--llama", default=DEFAULT_LLAMA, help="hidden,layers,intermediate,vocab of the Llama-shaped model")
    p.add_argument("--targets", default="reference,cpu", help="compile-peak targets")
    p.add_argument("--layers-scan", default="", help="compile-peak at these layer counts (e.g. 8,16)")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), help="a subset of: " + ", ".join(RUNTIMES))
    p.add_argument("--lazy-weights", action="store_true",
                   help="do not read the model's weights before measuring (see read_weights)")
    p.add_argument("--no-cache", action="store_true", help="build the causal LMs with use_cache=False")
    p.add_argument("--json", help="write the rows here")
    # internal: one measurement in this process
    p.add_argument("--child", choices=(*RUNTIMES, "export", "compile-peak"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--onnx", help=argparse.SUPPRESS)
    p.add_argument("--target", default="cpu", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None, file: TextIO = sys.stdout) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.child:
        result = child(args)
        print(json.dumps(result), file=file)
        return [result]
    if args.compile_peak:
        scan = [int(x) for x in args.layers_scan.split(",") if x]
        rows = measure_compile_peak(args.llama, args.targets.split(","), scan, args.timeout, file)
    else:
        rows = measure([m.strip() for m in args.models.split(",") if m.strip()], args.batch, args.seq, args.threads,
                       args.timeout, not args.no_cache, file, tuple(args.runtimes.split(",")), args.lazy_weights)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return rows


if __name__ == "__main__":
    main()
