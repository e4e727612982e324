"""ONNX backend conformance: every node test case of the installed onnx through optllm.

    .venv/bin/python benchmarks/onnx_conformance.py [--json FILE] [--jobs N] [--timeout S] [-k SUBSTR]

Each case is imported with ``optllm.frontends.onnx.Backend`` and run by our numpy reference
executor, then compared like onnx's own runner (rtol 1e-3, atol 1e-7 unless the case says
otherwise). Prints one table per operator (passed / failed / skipped and the first reason),
then the totals and the share passing. Column ``rt`` counts the passing cases that also survive
ONNX -> IR -> ONNX: exported with our exporter and run by onnxruntime, within the suite's
tolerances of the expected outputs and 1e-5 of onnxruntime on the original model
(``optllm.backends.onnx_export.roundtrip``; ``--no-roundtrip`` leaves it out).
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
_ROUNDTRIP = True


def _run_one(index: int) -> tuple[CaseResult, CaseResult | None]:
    """The case's conformance result and, when it passes, its round-trip result."""
    from optllm.backends.onnx_export.roundtrip import roundtrip_case

    result = run_case(_CASES[index], _TIMEOUT)
    if not _ROUNDTRIP or result.status != PASS:
        return result, None
    try:
        return result, roundtrip_case(_CASES[index])
    except Exception as e:  # an import that passed the conformance run cannot fail here; name it if it does
        return result, CaseResult(result.name, result.op, FAIL, f"{type(e).__name__}: {e}")


def header() -> str:
    import numpy as np
    import onnx

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"# ONNX node conformance, {now}\n"
            f"# machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}\n"
            f"# python {platform.python_version()}, onnx {onnx.__version__} (opset {onnx.defs.onnx_opset_version()}), "
            f"numpy {np.__version__}")


def table(results: list[CaseResult], roundtrips: list[CaseResult | None] | None = None) -> str:
    by_op: dict[str, list[CaseResult]] = collections.defaultdict(list)
    rt_by_op: collections.Counter[str] = collections.Counter()
    for r, rt in zip(results, roundtrips or [None] * len(results)):
        by_op[r.op].append(r)
        rt_by_op[r.op] += rt is not None and rt.status == PASS
    rt_col = roundtrips is not None
    rows = [f"{'op':<34} {'pass':>5} {'fail':>5} {'skip':>5} " + (f"{'rt':>5} " if rt_col else "") + " reason"]
    for op in sorted(by_op, key=lambda o: (-sum(r.status != PASS for r in by_op[o]), o)):
        rs = by_op[op]
        n = collections.Counter(r.status for r in rs)
        reasons = collections.Counter(f"{r.status}: {r.detail}" for r in rs if r.status != PASS)
        reason = reasons.most_common(1)[0][0] if reasons else ""
        rt = f"{rt_by_op[op]:>5} " if rt_col else ""
        rows.append(f"{op:<34} {n[PASS]:>5} {n[FAIL]:>5} {n[SKIP]:>5} {rt} {reason[:110]}")
    total = collections.Counter(r.status for r in results)
    count = len(results)
    pct = 100.0 * total[PASS] / count if count else 0.0
    rt = f"{sum(rt_by_op.values()):>5} " if rt_col else ""
    rows.append(f"{'TOTAL':<34} {total[PASS]:>5} {total[FAIL]:>5} {total[SKIP]:>5} {rt} "
                f"{total[PASS]}/{count} = {pct:.1f}% passing")
    if rt_col:
        rows.append(f"round trip: {sum(rt_by_op.values())} of {total[PASS]} passing cases run in onnxruntime "
                    "after ONNX -> IR -> ONNX within tolerance")
        bad = [rt for rt in roundtrips or [] if rt is not None and rt.status != PASS]
        rows += [f"  round trip fails: {rt.name}: {rt.detail[:150]}" for rt in bad]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    global _TIMEOUT, _ROUNDTRIP
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--json", metavar="FILE", help="write every case's result as JSON")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    p.add_argument("-k", dest="filter", default="", help="only cases whose name contains this")
    p.add_argument("--no-roundtrip", action="store_true", help="skip the ONNX -> IR -> ONNX column")
    args = p.parse_args(argv)
    print(header(), flush=True)
    start = time.perf_counter()
    _CASES[:] = [c for c in load_node_cases() if args.filter in c.name]
    _TIMEOUT = args.timeout
    _ROUNDTRIP = not args.no_roundtrip
    order = range(len(_CASES))
    if args.jobs > 1 and len(_CASES) > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs, maxtasksperchild=64) as pool:
            pairs = pool.map(_run_one, order, chunksize=4)
    else:
        pairs = [_run_one(i) for i in order]
    results = [r for r, _ in pairs]
    roundtrips = [rt for _, rt in pairs] if _ROUNDTRIP else None
    print(table(results, roundtrips))
    print(f"# {len(results)} cases in {time.perf_counter() - start:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            rows = [{**r.__dict__, "roundtrip": rt and rt.__dict__} for r, rt in pairs]
            json.dump({"header": header(), "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
