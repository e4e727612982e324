"""ONNX backend conformance: every node test case of the installed onnx through optllm.

    .venv/bin/python benchmarks/onnx_conformance.py [--json FILE] [--jobs N] [--timeout S] [-k SUBSTR]

Each case is imported with ``optllm.frontends.onnx.Backend`` and run by our numpy reference
executor, then compared like onnx's own runner (rtol 1e-3, atol 1e-7 unless the case says
otherwise). Prints one table per operator (passed / failed / skipped and the first reason),
then the totals and the share passing.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import multiprocessing
import os
import platform
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from optllm.frontends.onnx.conformance import FAIL, PASS, SKIP, CaseResult, load_node_cases, run_case  # noqa: E402

_CASES: list[Any] = []
_TIMEOUT = 30.0


def _run_one(index: int) -> CaseResult:
    return run_case(_CASES[index], _TIMEOUT)


def header() -> str:
    import numpy as np
    import onnx

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"# ONNX node conformance, {now}\n"
            f"# machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}\n"
            f"# python {platform.python_version()}, onnx {onnx.__version__} (opset {onnx.defs.onnx_opset_version()}), "
            f"numpy {np.__version__}")


def table(results: list[CaseResult]) -> str:
    by_op: dict[str, list[CaseResult]] = collections.defaultdict(list)
    for r in results:
        by_op[r.op].append(r)
    rows = [f"{'op':<34} {'pass':>5} {'fail':>5} {'skip':>5}  reason"]
    for op in sorted(by_op, key=lambda o: (-sum(r.status != PASS for r in by_op[o]), o)):
        rs = by_op[op]
        n = collections.Counter(r.status for r in rs)
        reasons = collections.Counter(f"{r.status}: {r.detail}" for r in rs if r.status != PASS)
        reason = reasons.most_common(1)[0][0] if reasons else ""
        rows.append(f"{op:<34} {n[PASS]:>5} {n[FAIL]:>5} {n[SKIP]:>5}  {reason[:110]}")
    total = collections.Counter(r.status for r in results)
    count = len(results)
    pct = 100.0 * total[PASS] / count if count else 0.0
    rows.append(f"{'TOTAL':<34} {total[PASS]:>5} {total[FAIL]:>5} {total[SKIP]:>5}  "
                f"{total[PASS]}/{count} = {pct:.1f}% passing")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    global _TIMEOUT
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--json", metavar="FILE", help="write every case's result as JSON")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    p.add_argument("-k", dest="filter", default="", help="only cases whose name contains this")
    args = p.parse_args(argv)
    print(header(), flush=True)
    start = time.perf_counter()
    _CASES[:] = [c for c in load_node_cases() if args.filter in c.name]
    _TIMEOUT = args.timeout
    order = range(len(_CASES))
    if args.jobs > 1 and len(_CASES) > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs, maxtasksperchild=64) as pool:
            results = pool.map(_run_one, order, chunksize=4)
    else:
        results = [_run_one(i) for i in order]
    print(table(results))
    print(f"# {len(results)} cases in {time.perf_counter() - start:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header(), "results": [r.__dict__ for r in results]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
