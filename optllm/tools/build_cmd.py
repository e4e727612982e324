"""``opt-llm compile``: build a module for a target into a directory that ``opt-llm run`` runs.

    opt-llm compile model.oir --target cpu -o build/ --dims B=1,S=128 --dims B=8,S=128
    opt-llm run build/ --inputs random --dims B=1,S=128 --repeat 20

A build directory holds ``model.oir`` + ``model.safetensors`` (the optimized module),
``manifest.json`` (target, threads, versions, and per prepared shape the kernel count, steps
and the memory plan: arena bytes and its lower bound), and ``kernels/`` — the compiled
object code, keyed by content, so running the build compiles nothing for the prepared shapes.
The directory is written next to its destination and renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = "optllm-build/1"


class BuildError(Exception):
    """A malformed build directory or an unsupported target for ``compile``."""


def add_parser(sub: Any) -> Any:
    p = sub.add_parser("compile", help="compile a module for a target into a build directory")
    p.add_argument("input", metavar="IN.oir")
    p.add_argument("--target", default="cpu", help="target to build for (cpu)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="build directory to write")
    p.add_argument("--dims", action="append", default=[], metavar="B=1,S=128",
                   help="prepare (compile and plan) for these sizes; repeatable")
    p.add_argument("--threads", type=int, default=0, help="worker threads (default: OMP_NUM_THREADS or all cores)")
    return p


def compile_cmd(args: argparse.Namespace, load: Any, parse_dims: Any, bind_dims: Any) -> int:
    from optllm import __version__
    from optllm.backends import resolve_target
    from optllm.backends.cpu import CpuExecutable
    from optllm.ir.io import save_module

    target = resolve_target(args.target)
    if target.backend != "cpu":
        raise BuildError(f"opt-llm compile builds for the cpu target only so far, not '{target.name}'")
    module = load(args.input)
    out = Path(args.output)
    if out.exists() and not (out / MANIFEST).is_file():
        raise BuildError(f"{out} exists and is not an optllm build directory; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        exe = CpuExecutable(module, threads=args.threads or None, cache_dir=tmp / "kernels")
        plans = []
        for text in args.dims or []:
            env = bind_dims([module.main], parse_dims(text))
            t0 = time.perf_counter()
            bound = exe.prepare(env)
            assert bound is not None
            plans.append({"dims": env, "steps": len(bound.calls), "kernels": len(bound.kernel_names),
                          "memory": bound.memory.as_dict(), "build_seconds": round(time.perf_counter() - t0, 3)})
        save_module(module, tmp / "model.oir")
        held = exe.held_memory()
        manifest = {"format": FORMAT, "target": target.name, "threads": exe.threads, "optllm": __version__,
                    "plans": plans, "memory": held}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"compiled {args.input} for {target.name} -> {out}/ ({exe.threads} threads)")
    for p in plans:
        m = p["memory"]
        dims = ", ".join(f"{k}={v}" for k, v in sorted(p["dims"].items()))
        print(f"  {dims}: {p['steps']} kernel calls, {p['kernels']} kernels, arena {m['arena_bytes']} bytes "
              f"(lower bound {m['lower_bound']}, {m['ratio']:.3f}x), weights {m['weights_bytes']} bytes")
    print(f"  memory held when run: {_mib(held['total_bytes'])} = weights {_mib(held['weights_bytes'])} "
          f"(after packing; each array once) + arenas {_mib(held['arena_bytes'])} "
          f"({len(plans)} prepared shape{'s' if len(plans) != 1 else ''})")
    return 0


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def is_build_dir(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def load_build(path: str) -> tuple[Any, Any]:
    """``(module, CpuExecutable)`` of a build directory, reusing its compiled kernels."""
    from optllm.backends import resolve_target
    from optllm.backends.cpu import CpuExecutable
    from optllm.ir.io import load_module

    d = Path(path)
    try:
        manifest = json.loads((d / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise BuildError(f"{d / MANIFEST}: not a readable build manifest ({e})") from None
    if manifest.get("format") != FORMAT:
        raise BuildError(f"{d / MANIFEST}: unknown build format {manifest.get('format')!r} (expected {FORMAT})")
    resolve_target(manifest.get("target", ""))
    module = load_module(d / "model.oir")
    return module, CpuExecutable(module, threads=manifest.get("threads"), cache_dir=d / "kernels")
