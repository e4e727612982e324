"""``opt-llm``: the optllm command line, shaped like ``mlir-opt``.

    opt-llm IN.oir -p 'canonicalize,cse,dce' [-o OUT.oir] [--pass-statistics] ...   (default verb)
    opt-llm import MODEL -o out.oir [--attn eager|sdpa] [--static]
    opt-llm run IN.oir [--inputs random|FILE.npz] [--dims B=1,S=128] [-o out.npz]
    opt-llm stats IN.oir [--json] [--dims B=1,S=128]
    opt-llm export IN.oir -o out.onnx [--opset 17]
    opt-llm --list-passes | --version

User errors (bad input, unknown pass, ...) print one paragraph on stderr and exit with 2; a
traceback only with ``--debug``. Nothing is written to ``-o`` unless the command succeeds.
Only argparse is imported up front so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from optllm.tools import build_cmd

VERBS = ("import", "compile", "run", "stats", "export")
DEFAULT_DIM = 8  # value of a symbolic dim that --dims does not bind
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


class UsageError(Exception):
    """A bad command-line value found after argparse (reported like any user error)."""


# -- argument parsers ------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.add_argument("--load-pass-plugin", action="append", default=[], metavar="FILE.py",
                   help="load passes (and ops) from a plugin file or module; repeatable")


def _opt_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="opt-llm", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a pass pipeline over an .oir module (like mlir-opt).",
        epilog="other commands:\n"
               "  opt-llm import MODEL -o OUT.oir      import a PyTorch model\n"
               "  opt-llm run IN.oir --inputs random   run with the reference executor\n"
               "  opt-llm stats IN.oir [--json]        op histogram, nodes, launches, params, flops\n"
               "  opt-llm export IN.oir -o OUT.onnx    write standard ONNX (fused ops as functions)\n"
               "(opt-llm COMMAND --help for their options)")
    p.add_argument("input", nargs="?", default="-", help="input .oir file ('-' for stdin, the default)")
    p.add_argument("-p", "--passes", default="", metavar="PIPELINE",
                   help="pass pipeline, e.g. 'dce,cse,canonicalize{max-iterations=10}' or 'default'")
    p.add_argument("-o", "--output", metavar="OUT.oir",
                   help="write OUT.oir and OUT.safetensors (default: print the IR to stdout)")
    p.add_argument("--no-verify", action="store_true", help="do not verify the IR after each pass")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass (stderr)")
    p.add_argument("--print-ir-after", action="append", default=[], metavar="NAME",
                   help="print the IR after each run of pass NAME (stderr); repeatable, comma lists")
    p.add_argument("--print-ir-after-change", action="store_true",
                   help="print the IR after every pass that changed it (stderr)")
    p.add_argument("--pass-statistics", action="store_true", help="print the passes' counters (stderr)")
    p.add_argument("--time-passes", action="store_true", help="print the time of each pass (stderr)")
    p.add_argument("--debug-patterns", action="append", default=[], metavar="NAME",
                   help="explain why each candidate of pattern NAME failed ('*' for all); repeatable")
    p.add_argument("--split-input-file", action="store_true",
                   help="process each '// -----' separated chunk of the input as its own module")
    p.add_argument("--report", metavar="FILE.json", help="write the pipeline report as JSON")
    p.add_argument("--list-passes", action="store_true", help="list passes and named pipelines, then exit")
    p.add_argument("--version", action="store_true", help="print the version, then exit")
    _common(p)
    return p


def _verb_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opt-llm")
    sub = p.add_subparsers(dest="verb", required=True)
    imp = sub.add_parser("import", help="import a PyTorch or ONNX model to .oir + .safetensors")
    imp.add_argument("model", help="a .onnx file, minilm, gpt2, llama-tiny, bert-base, or "
                                   "package.module:function returning (model, example_inputs)")
    imp.add_argument("-o", "--output", required=True, metavar="OUT.oir")
    imp.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa", help="attention implementation")
    imp.add_argument("--static", action="store_true", help="keep every dim static (no B, S symbols)")
    comp = build_cmd.add_parser(sub)
    run = sub.add_parser("run", help="run a module (reference executor, or --target cpu) or a build directory")
    run.add_argument("input", metavar="IN.oir|BUILD_DIR")
    run.add_argument("--target", default="reference", help="target for an .oir input (reference, cpu)")
    run.add_argument("--repeat", type=int, default=1, help="run N times and print the median latency")
    run.add_argument("--inputs", default="random", metavar="random|FILE.npz",
                     help="random inputs (the default) or arrays from an .npz, by input name or position")
    run.add_argument("--dims", default="", metavar="B=1,S=128",
                     help=f"values of symbolic dims for random inputs (unbound ones: {DEFAULT_DIM})")
    run.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    run.add_argument("-o", "--output", metavar="OUT.npz", help="save the outputs (output0, output1, ...)")
    stats = sub.add_parser("stats", help="op histogram, nodes, kernel launches, parameters, flops")
    stats.add_argument("input", metavar="IN.oir")
    stats.add_argument("--json", action="store_true", help="print JSON for scripts")
    stats.add_argument("--dims", default="", metavar="B=1,S=128",
                       help=f"values of symbolic dims for flops (unbound ones: {DEFAULT_DIM})")
    exp = sub.add_parser("export", help="export a module to standard ONNX (+ OUT.data for large weights)")
    exp.add_argument("input", metavar="IN.oir")
    exp.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    exp.add_argument("--opset", type=int, default=17, help="ONNX opset of the default domain (17 or newer)")
    exp.add_argument("--external-data-threshold", type=int, default=1024, metavar="BYTES",
                     help="initializers of at least this many bytes go to OUT.data (default 1024)")
    for sp in (imp, comp, run, stats, exp):
        _common(sp)
    return p


# -- helpers ------------------------------------------------------------------------------------------
def _load_plugins(specs: list[str]) -> None:
    from optllm.passes.registry import load_plugin

    for spec in specs:
        load_plugin(spec)


def _split_names(values: list[str]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def parse_dims(text: str) -> dict[str, int]:
    """``'B=1,S=128'`` -> ``{'B': 1, 'S': 128}``."""
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip().isidentifier() or not value.strip().isdigit():
            raise UsageError(f"--dims: expected NAME=INT items separated by commas (like B=1,S=128), got '{item}'")
        out[name.strip()] = int(value)
    return out


def bind_dims(graphs: Any, dims: dict[str, int]) -> dict[str, int]:
    """``dims`` plus ``DEFAULT_DIM`` for every other symbol of the graphs' input types."""
    env = dict(dims)
    for g in graphs:
        for v in g.inputs:
            for name in sorted(v.type.symbols()):
                env.setdefault(name, DEFAULT_DIM)
    return env


def _read_text(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except OSError as e:
        raise UsageError(f"cannot read '{path}': {e.strerror}") from None


def split_chunks(text: str) -> list[str]:
    """Split at lines ``// -----``; each chunk keeps its line numbers (padded with newlines)."""
    chunks: list[str] = []
    current: list[str] = []
    start = 0
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == "// -----":
            chunks.append("\n" * start + "".join(current))
            current, start = [], i + 1
        else:
            current.append(line)
    chunks.append("\n" * start + "".join(current))
    return [c for c in chunks if c.strip()]


def _load(path: str, text: str | None = None) -> Any:
    """Parse ``text`` (default: the file ``path``); weights resolve relative to ``path``."""
    from optllm.ir.io import load_module

    if text is None:
        text, path = _read_text(path)
    return load_module(path, text)


# -- the default verb ----------------------------------------------------------------------------------
def list_passes() -> str:
    from optllm.passes.pipeline import NAMED_PIPELINES, format_option
    from optllm.passes.registry import REGISTRY

    lines = ["Passes:"]
    for name in REGISTRY.names():
        try:
            cls = REGISTRY.get(name)
        except Exception as e:  # a broken plugin is listed, not fatal
            lines.append(f"  {name:<24} error: {e}")
            continue
        lines.append(f"  {name:<24} {cls.summary()}")
        for o in cls.options():
            default = "required" if o.required else f"default {format_option(o.default)}"
            lines.append(f"      {o.name}: {o.type_name()} ({default})" + (f"  {o.doc}" if o.doc else ""))
    lines.append("Named pipelines:")
    for np_ in NAMED_PIPELINES.values():
        lines.append(f"  {np_.name:<24} = '{np_.text}'" + (f"  {np_.doc}" if np_.doc else ""))
    for msg in REGISTRY.broken:
        lines.append(f"warning: {msg}")
    return "\n".join(lines)


def _optimize(args: argparse.Namespace) -> int:
    import json

    from optllm import __version__
    from optllm.ir.io import atomic_write, save_module
    from optllm.ir.printer import print_module
    from optllm.passes.manager import PassManager

    if args.version:
        print(f"opt-llm (optllm) {__version__}")
        return 0
    _load_plugins(args.load_pass_plugin)
    if args.list_passes:
        print(list_passes())
        return 0
    if args.split_input_file and args.output:
        raise UsageError("--split-input-file writes to stdout; it cannot be combined with -o")
    pm = PassManager(args.passes, verify=not args.no_verify, print_ir_after_all=args.print_ir_after_all,
                     print_ir_after=_split_names(args.print_ir_after),
                     print_ir_after_change=args.print_ir_after_change, pass_statistics=args.pass_statistics,
                     time_passes=args.time_passes, debug_patterns=_split_names(args.debug_patterns),
                     stream=sys.stderr)
    text, shown = _read_text(args.input)
    chunks = split_chunks(text) if args.split_input_file else [text]
    printed, reports = [], []
    for chunk in chunks:
        module = _load(shown, chunk)
        reports.append(pm.run(module).to_dict())
        if not args.output:
            printed.append(print_module(module))
    if args.output:
        save_module(module, args.output)
    else:
        sys.stdout.write("// -----\n".join(printed))
    if args.report:
        data = reports[0] if len(reports) == 1 else reports
        atomic_write(args.report, json.dumps(data, indent=2) + "\n")
    return 0


# -- import ----------------------------------------------------------------------------------------------
def _import(args: argparse.Namespace) -> int:
    from optllm.frontends import fx, zoo
    from optllm.ir.graph import graph_stats
    from optllm.ir.io import save_module

    if args.model.endswith(".onnx"):
        from optllm.frontends.onnx import import_onnx

        imported = import_onnx(args.model)
    else:
        model, example = zoo.load_model(args.model, attn_implementation=args.attn)
        imported = fx.import_torch(model, example, dynamic=None if args.static else "auto")
    save_module(imported.module, args.output)
    g = imported.module.main
    stats = graph_stats(g)
    sig = ", ".join(f"%{v.name_hint or i}: {v.type}" for i, v in enumerate(g.inputs))
    print(f"imported {args.model} -> {args.output}: @{g.name}({sig}), {stats['nodes']} nodes, "
          f"{stats['kernel_launches']} kernel launches, {len(imported.module.constants)} constants")
    return 0


# -- run ---------------------------------------------------------------------------------------------------
def _int_bound(v: Any) -> int:
    """Exclusive upper bound for random integers fed to ``v``: the table size when ``v``
    indexes an embedding or a gather (through views and casts), else 100."""
    frontier, seen = [v], set()
    while frontier:
        cur = frontier.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        for u in cur.uses:
            op = u.op
            if op.name == "nn.embedding" and u.index == 1 and isinstance(op.operands[0].type.shape[0], int):
                return int(op.operands[0].type.shape[0])
            if op.name == "core.gather" and u.index == 1:
                dim = op.operands[0].type.shape[op.attrs["axis"]]
                if isinstance(dim, int):
                    return dim
            if op.regions:  # into a fused region: follow the matching region argument
                frontier.append(op.regions[0].inputs[u.index])
            elif op.opdef.is_free or op.name == "core.cast":
                frontier.extend(op.results)
    return 100


def random_inputs(graph: Any, env: dict[str, int], seed: int) -> list[Any]:
    """Random arrays for ``graph``'s inputs: normal floats, integers below the embedding size
    (or 0..99), all-ones for inputs named like a mask."""
    import numpy as np

    from optllm.ir.types import DType

    rng = np.random.default_rng(seed)
    out = []
    for v in graph.inputs:
        t = v.type
        shape = t.concrete_shape(env)
        npdt = t.dtype.to_numpy()
        is_mask = "mask" in (v.name_hint or "").lower()
        if t.dtype is DType.bool:
            arr = np.ones(shape, np.bool_) if is_mask else rng.random(shape) < 0.5
        elif t.dtype.is_int:
            high = min(_int_bound(v), 2 ** (t.dtype.bits - 1) - 1) if t.dtype is not DType.u8 else 256
            arr = np.ones(shape, npdt) if is_mask else rng.integers(0, max(high, 1), size=shape)
        else:
            arr = rng.standard_normal(shape)
        out.append(np.asarray(arr).astype(npdt))
    return out


def npz_inputs(graph: Any, path: str) -> list[Any]:
    import numpy as np

    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read inputs from '{path}': {e}") from None
    keys = list(data.keys())
    out = []
    for i, v in enumerate(graph.inputs):
        for key in (v.name_hint, f"arr_{i}", f"input{i}"):
            if key and key in data:
                out.append(data[key])
                break
        else:
            want = ", ".join(v.name_hint or f"arr_{j}" for j, v in enumerate(graph.inputs))
            raise UsageError(f"'{path}' has no array for input #{i} '{v.name_hint}' "
                             f"(expected: {want}; found: {', '.join(keys) or 'nothing'})")
    return out


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
                     .rstrip() for r in rows)


def _run(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from optllm.backends import build
    from optllm.ir.io import atomic_write

    if build_cmd.is_build_dir(args.input):
        module, exe = build_cmd.load_build(args.input)
    else:
        module = _load(args.input)
        exe = build(module, args.target)
    graph = module.main
    if args.inputs == "random":
        env = bind_dims([graph], parse_dims(args.dims))
        inputs = random_inputs(graph, env, args.seed)
        print("dims: " + (", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(none)"))
    else:
        inputs = npz_inputs(graph, args.inputs)
    for v, x in zip(graph.inputs, inputs):
        print(f"input %{v.name_hint}: {x.dtype}{list(x.shape)}")
    times = []
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        outs = exe.run(inputs)
        times.append(time.perf_counter() - t0)
    if args.repeat > 1:
        print(f"latency: median {statistics.median(times) * 1e3:.3f} ms over {len(times)} runs "
              f"(first {times[0] * 1e3:.3f} ms)")
    rows = [["output", "shape", "dtype", "mean", "std", "min", "max"]]
    for i, y in enumerate(outs):
        f = np.asarray(y, dtype=np.float64) if y.size else np.zeros(1)
        rows.append([f"output{i}", str(list(y.shape)), str(y.dtype)] +
                    [f"{s:.6g}" for s in (f.mean(), f.std(), f.min(), f.max())])
    print(_table(rows))
    if args.output:
        buf = io.BytesIO()
        np.savez(buf, **{f"output{i}": y for i, y in enumerate(outs)})  # type: ignore[arg-type]
        atomic_write(args.output, buf.getvalue())
    return 0


# -- stats -------------------------------------------------------------------------------------------------
def _op_flops(op: Any, env: dict[str, int]) -> float:
    if op.regions:
        return sum(_op_flops(inner, env) for r in op.regions for inner in r)
    cost = op.opdef.cost([v.type for v in op.operands], [r.type for r in op.results], op.attrs, env)
    return float(cost.flops)


def module_summary(module: Any, env: dict[str, int]) -> dict[str, Any]:
    """The numbers ``opt-llm stats`` prints."""
    from collections import Counter

    from optllm.passes.manager import module_stats

    hist = Counter(op.name for op in module.walk())
    used = module.used_constants()
    params = sum(module.constants.type_of(n).numel() for n in used if n in module.constants)
    pbytes = sum(module.constants.type_of(n).nbytes() for n in used if n in module.constants)
    try:
        flops: float | None = sum(_op_flops(op, env) for g in module.graphs.values() for op in g)
    except KeyError as e:
        flops = None
        print(f"opt-llm: warning: flops unknown: symbol {e} is not bound (use --dims)", file=sys.stderr)
    return {
        "module": module.name, **module_stats(module), "parameters": int(params),
        "parameter_bytes": int(pbytes), "constants": len(used), "flops": flops, "dims": env,
        "ops": dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.4g} {unit}"
    return f"{x:.4g} "


def _stats(args: argparse.Namespace) -> int:
    import json

    module = _load(args.input)
    summary = module_summary(module, bind_dims(module.graphs.values(), parse_dims(args.dims)))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    dims = ", ".join(f"{k}={v}" for k, v in sorted(summary["dims"].items())) or "(static)"
    flops = "unknown" if summary["flops"] is None else _si(summary["flops"]) + "FLOP"
    print(f"module @{summary['module']} ({args.input})")
    print(f"  nodes:           {summary['nodes']}")
    print(f"  kernel launches: {summary['kernel_launches']}")
    print(f"  parameters:      {summary['parameters']:,} ({summary['parameter_bytes'] / 2**20:.2f} MiB "
          f"in {summary['constants']} constants)")
    print(f"  flops:           {flops} at {dims}")
    print("  ops:")
    width = max((len(k) for k in summary["ops"]), default=0)
    for name, n in summary["ops"].items():
        print(f"    {name:<{width}}  {n}")
    return 0


# -- export ----------------------------------------------------------------------------------------------
def _export(args: argparse.Namespace) -> int:
    from optllm.backends.onnx_export import export_onnx

    module = _load(args.input)
    path = export_onnx(module, args.output, opset=args.opset, external_data_threshold=args.external_data_threshold)
    print(f"exported @{module.main.name} -> {path}")
    return 0


# -- entry point -------------------------------------------------------------------------------------------
def _dispatch(argv: list[str]) -> int:
    argv = [a for a in argv if a != "--debug"]  # main() handles it, wherever it stands
    first = argv[0] if argv else None
    if first in VERBS:
        args = _verb_parser().parse_args(argv)
        _load_plugins(args.load_pass_plugin)
        if args.verb == "compile":
            return build_cmd.compile_cmd(args, _load, parse_dims, bind_dims)
        return {"import": _import, "run": _run, "stats": _stats, "export": _export}[args.verb](args)
    return _optimize(_opt_parser().parse_args(argv))


def _is_user_error(e: BaseException) -> bool:
    from optllm.ir.diagnostics import OptllmError

    return isinstance(e, (OptllmError, UsageError, OSError, ModuleNotFoundError, build_cmd.BuildError))


def _setup_logging(debug: bool) -> None:
    """Warnings (and with --debug, info) of the ``optllm`` loggers as ``opt-llm: warning: ...``
    on the current ``sys.stderr``."""
    import logging

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(f"opt-llm: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)

    logger = logging.getLogger("optllm")
    logger.setLevel(logging.INFO if debug else logging.WARNING)
    if not any(type(h).__name__ == "Handler" and h.__module__ == __name__ for h in logger.handlers):
        logger.addHandler(Handler())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    _setup_logging(debug)
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        print("opt-llm: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            import traceback

            traceback.print_exc()
        if _is_user_error(e):
            print(f"opt-llm: error: {e}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"opt-llm: internal error: {type(e).__name__}: {e}"
              + ("" if debug else " (run with --debug for the traceback)"), file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
