"""Accuracy of the vectorised math library against numpy/scipy in float64, over wide ranges and
special values. The bounds are the table of ``optllm/backends/kernels/llvm/mathlib.py``."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.special import erf

from optllm.backends.kernels.kir import F32, F64, I64, For, Kernel, Param, ScalarType, Store, Unary, c, load, v
from optllm.backends.kernels.llvm.jit import compile_kernels, optimized_ir, pack_slots

OPS = ("exp", "log", "tanh", "erf", "sigmoid", "sin", "cos")
REF = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "erf": erf, "sin": np.sin, "cos": np.cos,
       "sigmoid": lambda x: np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))}
# (max ulp, max absolute error or None) per op and width; measured values are a little lower.
BOUNDS = {
    ("exp", F32): (2, None), ("exp", F64): (2, None),
    ("log", F32): (2, None), ("log", F64): (2, None),
    ("tanh", F32): (2, 1.5e-7), ("tanh", F64): (3, 5e-16),
    ("erf", F32): (4, 2e-7), ("erf", F64): (3, 5e-16),
    ("sigmoid", F32): (4, None), ("sigmoid", F64): (4, None),
    ("sin", F32): (1, None), ("sin", F64): (3, None),
    ("cos", F32): (1, None), ("cos", F64): (3, None),
}
RANGES = {"exp": (-110.0, 90.0, -750.0, 712.0), "log": (0.0, 3e38, 0.0, 1e308), "tanh": (-12.0, 12.0, -25.0, 25.0),
          "erf": (-6.0, 6.0, -7.0, 7.0), "sigmoid": (-105.0, 105.0, -750.0, 750.0),
          "sin": (-1e5, 1e5, -1e5, 1e5), "cos": (-1e5, 1e5, -1e5, 1e5)}
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-30, -1e-30, 5e-39]
RNG = np.random.default_rng(2026)


def kernel(op: str, t: ScalarType) -> Kernel:
    return Kernel(f"{op}_{t}", (Param("out", "buffer", t), Param("x", "buffer", t), Param("n", "scalar", I64)),
                  (For("i", c(0), v("n"), (Store("out", v("i"), Unary(op, load("x", v("i"), t))),)),))


@pytest.fixture(scope="module")
def fns():
    return compile_kernels([kernel(op, t) for op in OPS for t in (F32, F64)])


def run(fns, op: str, t: ScalarType, x: np.ndarray) -> np.ndarray:
    x = x.astype(t.to_numpy())
    out = np.empty_like(x)
    fns[f"{op}_{t}"](pack_slots(kernel(op, t), out=out, x=x, n=x.size))
    return out


def inputs(op: str, t: ScalarType) -> np.ndarray:
    lo32, hi32, lo64, hi64 = RANGES[op]
    lo, hi = (lo32, hi32) if t == F32 else (lo64, hi64)
    tiny = -40 if t == F32 else -300
    parts = [RNG.uniform(lo, hi, 100_000), RNG.uniform(-3, 3, 50_000), np.logspace(tiny, 1, 5000),
             -np.logspace(tiny, 1, 5000)]
    if op == "log":  # log-uniform over the whole positive range, subnormals included
        top = 88.7 if t == F32 else 709.7
        parts = [np.abs(p) for p in parts] + [np.exp(RNG.uniform(-103 if t == F32 else -744, top, 100_000))]
    return np.concatenate(parts).astype(t.to_numpy())


def errors(got: np.ndarray, x: np.ndarray, op: str) -> tuple[float, float]:
    """(max ulp, max absolute error) over finite results, against numpy in long double (float64
    for erf, which scipy has in double only)."""
    with np.errstate(all="ignore"):
        ref = REF[op](x.astype(np.float64 if op == "erf" else np.longdouble))
        ref_t = ref.astype(got.dtype)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref_t), err_msg=f"{op}: NaN positions")
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref_t), err_msg=f"{op}: inf positions")
    fin = np.isfinite(ref_t)
    diff = np.abs(got[fin].astype(ref.dtype) - ref[fin])
    ulp = np.spacing(np.abs(ref_t[fin])).astype(np.float64)
    return float((diff / ulp.astype(ref.dtype)).max()), float(diff.max())


@pytest.mark.parametrize("t", [F32, F64], ids=str)
@pytest.mark.parametrize("op", OPS)
def test_accuracy(fns, op: str, t: ScalarType):
    x = inputs(op, t)
    max_ulp, max_abs = errors(run(fns, op, t, x), x, op)
    ulp_bound, abs_bound = BOUNDS[op, t]
    assert max_ulp <= ulp_bound or (abs_bound is not None and max_abs <= abs_bound), (max_ulp, max_abs)
    if abs_bound is not None:
        assert max_abs <= abs_bound


@pytest.mark.parametrize("t", [F32, F64], ids=str)
@pytest.mark.parametrize("op", OPS)
def test_special_values(fns, op: str, t: ScalarType):
    x = np.array(SPECIALS, t.to_numpy())
    got = run(fns, op, t, x)
    with np.errstate(all="ignore"):
        want = REF[op](x.astype(np.float64)).astype(t.to_numpy())
    exact = ~np.isfinite(x) | (x == 0)
    np.testing.assert_array_equal(got[exact], want[exact])
    np.testing.assert_allclose(got, want, rtol=3e-7 if t == F32 else 1e-15)
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[finite]), np.signbit(want[finite]), err_msg=f"{op}: signs")


@pytest.mark.parametrize("t", [F32, F64], ids=str)
@pytest.mark.parametrize("op", ["tanh", "erf", "sin"])
def test_relative_near_zero(fns, op: str, t: ScalarType):
    x = np.concatenate([np.logspace(-38 if t == F32 else -300, -1, 20_000), -np.logspace(-30, -1, 1000)])
    ulp, _ = errors(run(fns, op, t, x), x.astype(t.to_numpy()), op)
    assert ulp <= 3


@pytest.mark.parametrize("t", [F32, F64], ids=str)
@pytest.mark.parametrize("op", OPS)
def test_loops_vectorise(op: str, t: ScalarType):
    text = optimized_ir([kernel(op, t)])
    assert re.search(rf"<\d+ x {'float' if t == F32 else 'double'}>", text), f"{op} loop did not vectorise"
    calls = set(re.findall(r"call [^@]*@([\w.]+)\(", text))
    assert all(c.startswith("llvm.") for c in calls), f"{op} calls {calls}"
