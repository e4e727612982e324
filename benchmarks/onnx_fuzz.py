"""Differential fuzzing of the ONNX frontend against onnxruntime (``optllm.testing.onnx_fuzz``).

    .venv/bin/python benchmarks/onnx_fuzz.py [--graphs 2000] [--seed 0] [--targets reference,cpu]
        [--max-nodes 10] [--save DIR] [--inject-bug NAME] [--json FILE]

Generates ``--graphs`` random valid ONNX graphs (seeds ``--seed`` onwards), runs each through
optllm's targets and onnxruntime, and prints one row per target (ok / mismatch / crash /
unsupported / invalid), the unsupported ops, and every failure with the ops of its graph.
``--save DIR`` shrinks each failure to its smallest failing graph and writes it there as
``<target>-<kind>-<seed>.onnxtxt`` (ONNX text syntax, + ``.npz`` inputs). ``--inject-bug NAME`` plants a known bug
(``sub-swapped``, ``tanh-reference``, ``gather-shifted``) to show that the fuzzer catches it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from optllm.testing.onnx_fuzz import BUGS, OUTCOMES, Case, Outcome, Report, campaign, inject_bug, save_case, shrink  # noqa: E402


def table(report: Report) -> str:
    rows = [f"{'target':<10} {'graphs':>7} " + " ".join(f"{k:>11}" for k in OUTCOMES)]
    for target, counts in report.counts.items():
        rows.append(f"{target:<10} {report.graphs:>7} " + " ".join(f"{counts[k]:>11}" for k in OUTCOMES))
    for target, ops in report.unsupported.items():
        listed = ", ".join(f"{op}: {n}" for op, n in sorted(ops.items(), key=lambda kv: -kv[1]))
        rows.append(f"unsupported on {target}: {listed}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--graphs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0, help="the first seed")
    p.add_argument("--targets", default="reference,cpu")
    p.add_argument("--max-nodes", type=int, default=10)
    p.add_argument("--save", metavar="DIR", help="shrink each failure and save it here")
    p.add_argument("--inject-bug", choices=sorted(BUGS), help="plant a known bug first")
    p.add_argument("--json", metavar="FILE", help="write the counts and failures as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per failure while running")
    args = p.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    start = time.perf_counter()
    saved: list[str] = []

    def on_case(seed: int, case: Case, outcomes: dict[str, Outcome]) -> None:
        for target, o in outcomes.items():
            if o.kind in ("ok", "unsupported"):
                continue
            if not args.quiet:
                print(f"seed {seed} {target}: {o.kind}: {' '.join(case.ops())}: {o.detail[:200]}", flush=True)
            if args.save:
                small = shrink(case, target, o)
                path = save_case(small, args.save, f"{target}-{o.kind}-{seed}", target, o)
                saved.append(f"{path} ({' '.join(small.ops())})")

    with inject_bug(args.inject_bug):
        report = campaign(range(args.seed, args.seed + args.graphs), targets, args.max_nodes, on_case)
    print(f"# onnx fuzz: {report.graphs} graphs, seeds {args.seed}..{args.seed + args.graphs - 1}, "
          f"max {args.max_nodes} nodes, targets {', '.join(targets)}"
          + (f", injected bug {args.inject_bug}" if args.inject_bug else "")
          + f", {time.perf_counter() - start:.0f} s")
    print(table(report))
    for path in saved:
        print(f"saved {path}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"graphs": report.graphs, "counts": report.counts, "unsupported": report.unsupported,
                       "failures": [{"seed": s, "target": t, "kind": o.kind, "detail": o.detail}
                                    for s, t, o in report.failures]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
