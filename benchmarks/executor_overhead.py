"""Per-kernel overhead of the cpu target's executor (issue 5, item 3).

A chain of N tiny kernels (``core.neg`` on f32[1,8]: a few nanoseconds of work each) is
compiled for the cpu target and run many times; the median time of one run divided by N is
the executor's cost per kernel call. Three ways to replay the same bound program:

* ``native loop``   — what ``CpuExecutable.run`` does: one ctypes call into a native loop over
  (entry point, slot array) pairs, the GIL released once;
* ``python loop``   — a Python ``for`` over ctypes calls, one per kernel (the obvious way);
* ``run()``         — the full ``run`` path, including input binding and the output array.

    .venv/bin/python benchmarks/executor_overhead.py [--kernels 500] [--repeats 200]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np


def chain_module(n: int):  # type: ignore[no-untyped-def]
    from optllm.ir import parse_module

    lines = [f"    %{i + 1} = core.neg %{i} : f32[1,8]" for i in range(n)]
    text = ("module @chain {\n  func @forward(%0: f32[1,8]) -> (f32[1,8]) {\n" + "\n".join(lines)
            + f"\n    return %{n}\n  }}\n}}\n")
    return parse_module(text)


def median_us(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernels", type=int, default=500)
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args(argv)

    from optllm.backends.cpu import CpuExecutable
    from optllm.runtime.native import run_calls

    exe = CpuExecutable(chain_module(args.kernels))
    x = np.ones((1, 8), np.float32)
    want = x * (-1) ** args.kernels
    np.testing.assert_array_equal(exe.run([x])[0], want)
    bound = next(iter(exe.programs.values()))
    n = len(bound.calls)
    assert n == args.kernels

    def python_loop() -> None:
        for fn, slots in bound.calls:
            fn(slots)

    rows = {
        "native loop": median_us(lambda: run_calls(n, bound.fn_table, bound.slot_table), args.repeats) / n,
        "python loop": median_us(python_loop, args.repeats) / n,
        "run()": median_us(lambda: exe.run([x]), args.repeats) / n,
    }
    print(f"executor overhead, {n} chained kernels of f32[1,8] — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.machine()}, {args.repeats} runs (median)")
    print(f"{'replay':<14}{'us per kernel':>14}")
    for k, v in rows.items():
        print(f"{k:<14}{v:>14.3f}")
    return rows


if __name__ == "__main__":
    main()
