"""Property: random KIR expression trees over every scalar type, compiled in a loop over arrays of
random length, equal numpy's evaluation of the same tree — exactly for ints, bools and
comparisons; for floats within a few ulp plus the tree's own conditioning (estimated as the gap
between numpy's evaluation in the type and in a wider one), since fast-math contraction and the
math library may round differently.

Discontinuous float ops (floor, ceil, round, sign, mod, floordiv, pow, comparisons) are applied
to loaded values only, where both evaluations see the same exact inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import erf

from optllm.backends.kernels.kir import (
    BOOL,
    F32,
    F64,
    I32,
    I64,
    Binary,
    Cast,
    Const,
    Expr,
    For,
    Kernel,
    Load,
    Param,
    ScalarType,
    Select,
    Store,
    Unary,
    c,
    v,
)
from optllm.backends.kernels.llvm.jit import compile_kernels, pack_slots

F16, BF16, I16, I8, U8 = ScalarType.F16, ScalarType.BF16, ScalarType.I16, ScalarType.I8, ScalarType.U8
FLOATS = (F64, F32, F16, BF16)
INTS = (I64, I32, I16, I8, U8)
TYPES = FLOATS + INTS + (BOOL,)

SMOOTH_UNARY = ("neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "sin", "cos", "reciprocal")
LEAF_UNARY = ("floor", "ceil", "round", "sign")
SMOOTH_BINARY = ("add", "sub", "mul", "div", "max", "min")
LEAF_BINARY = ("pow", "mod", "floordiv")
INT_UNARY = ("neg", "abs", "floor", "ceil", "round", "not", "sign")
INT_BINARY = ("add", "sub", "mul", "div", "max", "min", "pow", "mod", "floordiv", "and", "or", "xor")
BOOL_BINARY = ("and", "or", "xor", "add", "mul", "max", "min")
CMP = ("lt", "le", "gt", "ge", "eq", "ne")
SIZES = (0, 1, 2, 7, 33, 257, 1000, 4099)


# --- random trees ---------------------------------------------------------------------------


def leaf(draw, t: ScalarType) -> Expr:
    kind = draw(st.sampled_from(("x0", "x1", "x1", "const")))
    if kind != "const":
        return Load(kind, v("i"), t)
    if t == BOOL:
        return Const(draw(st.booleans()), t)
    if t.is_float:
        return Const(draw(st.sampled_from((0.5, -1.5, 2.0, 3.0, -0.0, 1e-3))), t)
    info = np.iinfo(t.to_numpy())
    return Const(draw(st.sampled_from((0, 1, -1, 2, 3, -7, int(info.max), int(info.min)))) if t.is_signed
                 else draw(st.sampled_from((0, 1, 2, 3, 7, 255))), t)


@st.composite
def tree(draw, t: ScalarType, depth: int) -> Expr:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return leaf(draw, t)
    kind = draw(st.sampled_from(("unary", "binary", "binary", "select")))
    if kind == "select":
        a, b = (leaf(draw, t), leaf(draw, t)) if t.is_float else (draw(tree(t, 1)), draw(tree(t, 1)))
        u = draw(st.sampled_from([u for u in TYPES if castable(t, u)]))
        if u != t and draw(st.booleans()):  # compare in another type
            a, b = Cast(a, u), Cast(b, u)
        cond = Binary(draw(st.sampled_from(CMP)), a, b)
        if a.type.is_float and draw(st.booleans()):
            cond = Unary(draw(st.sampled_from(("isnan", "isinf"))), a)
        return Select(cond, draw(tree(t, depth - 1)), draw(tree(t, depth - 1)))
    if t == BOOL:
        if kind == "unary":
            return Unary("not", draw(tree(t, depth - 1)))
        return Binary(draw(st.sampled_from(BOOL_BINARY)), draw(tree(t, depth - 1)), draw(tree(t, depth - 1)))
    if not t.is_float:
        if kind == "unary":
            return Unary(draw(st.sampled_from(INT_UNARY)), draw(tree(t, depth - 1)))
        return Binary(draw(st.sampled_from(INT_BINARY)), draw(tree(t, depth - 1)), draw(tree(t, depth - 1)))
    if kind == "unary":
        op = draw(st.sampled_from(SMOOTH_UNARY + LEAF_UNARY))
        return Unary(op, leaf(draw, t) if op in LEAF_UNARY else draw(tree(t, depth - 1)))
    op = draw(st.sampled_from(SMOOTH_BINARY + LEAF_BINARY))
    if op in LEAF_BINARY:
        return Binary(op, leaf(draw, t), leaf(draw, t))
    return Binary(op, draw(tree(t, depth - 1)), draw(tree(t, depth - 1)))


@dataclass(frozen=True)
class Case:
    t: ScalarType
    expr: Expr  # of the output type
    out_t: ScalarType


def castable(src: ScalarType, dst: ScalarType) -> bool:
    return not (src.is_float and not dst.is_float and dst != BOOL)  # float->int: tested in test_casts


@st.composite
def cases(draw) -> Case:
    t = draw(st.sampled_from(TYPES))
    e = draw(tree(t, 3))
    shape = draw(st.sampled_from(("same", "same", "cmp", "cast")))
    if shape == "cmp":  # on floats: of loaded values only (a one-ulp difference may flip it)
        a, b = (leaf(draw, t), leaf(draw, t)) if t.is_float else (e, draw(tree(t, 1)))
        return Case(t, Binary(draw(st.sampled_from(CMP)), a, b), BOOL)
    if shape == "cast":
        out_t = draw(st.sampled_from([u for u in TYPES if castable(t, u)]))
        return Case(t, Cast(e, out_t), out_t)
    return Case(t, e, t)


def kernel(name: str, case: Case, parallel: bool) -> Kernel:
    params = (Param("out", "buffer", case.out_t), Param("x0", "buffer", case.t), Param("x1", "buffer", case.t),
              Param("n", "scalar", I64))
    return Kernel(name, params, (For("i", c(0), v("n"), (Store("out", v("i"), case.expr),), parallel=parallel,
                                     work=64),))


# --- numpy reference ------------------------------------------------------------------------


def np_type(t: ScalarType, wide: bool) -> np.dtype:
    if wide and t.is_float:
        return np.dtype(np.longdouble if t == F64 else np.float64)
    return t.to_numpy()


def int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    q, r = np.floor_divide(a, b), np.remainder(a, b)
    if a.dtype.kind == "u":
        return q
    return q + ((r != 0) & ((a < 0) != (b < 0))).astype(a.dtype)


def int_pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pos = np.power(a, np.where(b < 0, 0, b).astype(b.dtype))
    if a.dtype.kind == "u":
        return pos
    neg = np.where(a == 1, 1, np.where(a == -1, np.where(b % 2 == 1, -1, 1), 0)).astype(a.dtype)
    return np.where(b < 0, neg, pos)


def unary(op: str, x: np.ndarray, t: ScalarType) -> np.ndarray:
    if t == BOOL:
        return np.logical_not(x)
    if not t.is_float:
        if op in ("floor", "ceil", "round"):
            return x
        fns = {"neg": np.negative, "abs": np.abs, "not": np.invert, "sign": np.sign}
        return fns[op](x)
    one = x.dtype.type(1)
    fns = {"neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh,
           "erf": lambda y: erf(y.astype(np.float64)).astype(y.dtype),
           "sin": np.sin, "cos": np.cos, "floor": np.floor, "ceil": np.ceil, "round": np.rint, "sign": np.sign,
           "rsqrt": lambda y: one / np.sqrt(y), "reciprocal": lambda y: one / y,
           "sigmoid": lambda y: one / (one + np.exp(-y))}
    return fns[op](x).astype(x.dtype)


def binary(op: str, a: np.ndarray, b: np.ndarray, t: ScalarType) -> np.ndarray:
    cmp = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
           "ne": np.not_equal}
    if op in cmp:
        return cmp[op](a, b)
    if t == BOOL:
        return {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor, "add": np.logical_or,
                "mul": np.logical_and, "max": np.logical_or, "min": np.logical_and}[op](a, b)
    fns = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "max": np.maximum, "min": np.minimum,
           "mod": np.remainder, "floordiv": np.floor_divide, "and": np.bitwise_and, "or": np.bitwise_or,
           "xor": np.bitwise_xor, "pow": np.power, "div": np.divide}
    if not t.is_float:
        fns.update(div=int_div, pow=int_pow)
    return fns[op](a, b).astype(a.dtype)


def evaluate(e: Expr, env: dict[str, np.ndarray], wide: bool, ulps: list | None = None) -> np.ndarray:
    """numpy evaluation of ``e``; ``wide`` computes floats in a wider type (the conditioning probe);
    ``ulps`` collects the ulp of every floating intermediate in its own type (a rounding error of
    one ulp of any of them may reach the result, e.g. through cancellation)."""
    y = _evaluate(e, env, wide, ulps)
    if ulps is not None and y.dtype.kind == "f":
        ulps.append(np.spacing(np.where(np.isfinite(y), np.abs(y), 0)).astype(np.longdouble))
    return y


def _evaluate(e: Expr, env: dict[str, np.ndarray], wide: bool, ulps: list | None) -> np.ndarray:
    if isinstance(e, Load):
        return env[e.buffer].astype(np_type(e.ctype, wide))
    if isinstance(e, Const):
        n = len(env["x0"])
        return np.full(n, e.value, dtype=np_type(e.ctype, wide))
    if isinstance(e, Unary):
        x = evaluate(e.x, env, wide, ulps)
        if e.op == "isnan":
            return np.isnan(x) if e.x.type.is_float else np.zeros(x.shape, bool)
        if e.op == "isinf":
            return np.isinf(x) if e.x.type.is_float else np.zeros(x.shape, bool)
        return unary(e.op, x, e.x.type)
    if isinstance(e, Binary):
        return binary(e.op, evaluate(e.a, env, wide, ulps), evaluate(e.b, env, wide, ulps), e.a.type)
    if isinstance(e, Select):
        return np.where(evaluate(e.cond, env, wide, ulps), evaluate(e.a, env, wide, ulps), evaluate(e.b, env, wide, ulps))
    if isinstance(e, Cast):
        x = evaluate(e.x, env, wide, ulps)
        if not wide:
            return x.astype(e.to.to_numpy())
        return x.astype(np_type(e.to, True)) if e.to.is_float else x.astype(e.to.to_numpy())
    raise AssertionError(e)


def random_inputs(rng: np.random.Generator, t: ScalarType, n: int) -> np.ndarray:
    if t == BOOL:
        return rng.integers(0, 2, n).astype(bool)
    if t.is_float:
        x = rng.uniform(-4, 4, n)
        specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, 1e4, 0.5, 1.0, -2.0])
        pick = rng.random(n) < 0.1
        x[pick] = rng.choice(specials, pick.sum())
        return x.astype(t.to_numpy())
    info = np.iinfo(t.to_numpy())
    wide = rng.integers(info.min, int(info.max) + 1, n, dtype=np.int64 if t != U8 else np.uint8)
    small = rng.integers(-3 if t.is_signed else 0, 4, n)
    return np.where(rng.random(n) < 0.5, wide, small).astype(t.to_numpy())


def check(got: np.ndarray, case: Case, env: dict[str, np.ndarray], what: str) -> None:
    with np.errstate(all="ignore"):
        ulps: list[np.ndarray] = []
        lo = evaluate(case.expr, env, wide=False, ulps=ulps)
        if not case.out_t.is_float:
            np.testing.assert_array_equal(got, lo, err_msg=what)
            return
        hi = evaluate(case.expr, env, wide=True).astype(np.longdouble)
        g, lo_w = got.astype(np.longdouble), lo.astype(np.longdouble)
        ulp = np.spacing(np.abs(lo)).astype(np.longdouble)
        if ulps:
            ulp = np.maximum(ulp, np.max(ulps, axis=0))
        close = (np.abs(g - lo_w) <= 8 * ulp + 8 * np.abs(hi - lo_w)) | (np.abs(g - hi) <= 8 * ulp)
        same = (g == lo_w) | (np.isnan(g) & np.isnan(lo_w))
        # Where the two evaluations disagree on NaN/inf the tree is ill-conditioned there: skip.
        unsure = np.isfinite(lo_w) != np.isfinite(hi)
    ok = same | close | unsure
    if not ok.all():
        i = int(np.argmin(ok))
        raise AssertionError(f"{what}: element {i}: got {got[i]!r}, numpy {lo[i]!r}, wide {hi[i]!r}, "
                             f"inputs {env['x0'][i]!r}, {env['x1'][i]!r}")


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(cases(), min_size=1, max_size=6), st.integers(0, 2**32 - 1), st.booleans())
def test_random_trees_match_numpy(batch: list[Case], seed: int, parallel: bool):
    kernels = [kernel(f"t{i}", case, parallel) for i, case in enumerate(batch)]
    fns = compile_kernels(kernels)
    rng = np.random.default_rng(seed)
    for k, case in zip(kernels, batch):
        for n in (0, 1, int(rng.choice(SIZES)), 70_001 if parallel else 9):
            env = {"x0": random_inputs(rng, case.t, n), "x1": random_inputs(rng, case.t, n)}
            out = np.zeros(n + 1, case.out_t.to_numpy())
            fns[k.name](pack_slots(k, out=out, n=n, **env))
            check(out[:n], case, env, f"{k.text()} (n={n})")
            assert out[n] == 0, "wrote past the end"


# --- casts (float -> int with in-range values) ----------------------------------------------


@pytest.mark.parametrize("src", FLOATS, ids=str)
@pytest.mark.parametrize("dst", INTS + (BOOL,), ids=str)
def test_float_to_int_casts(src: ScalarType, dst: ScalarType):
    case = Case(src, Cast(Load("x0", v("i"), src), dst), dst)
    k = kernel("cast", case, parallel=False)
    fns = compile_kernels([k])
    hi = 120 if dst in (I8, U8) else 30000
    x = np.concatenate([np.linspace(-hi, hi, 1001), [0.5, -0.5, 1.5, -1.5, 2.999, -2.999, -0.0, np.nan, np.inf]])
    if dst == U8:
        x = np.abs(x[np.isfinite(x)])
    if dst != BOOL:
        x = x[np.isfinite(x)]
    x = x.astype(src.to_numpy())
    out = np.zeros(x.size, dst.to_numpy())
    fns["cast"](pack_slots(k, out=out, x0=x, x1=x, n=x.size))
    np.testing.assert_array_equal(out, x.astype(dst.to_numpy()))


def test_reduction_sum_within_rounding():
    t = F32
    params = (Param("out", "buffer", t), Param("x", "buffer", t), Param("rows", "scalar", I64),
              Param("cols", "scalar", I64))
    from optllm.backends.kernels.kir import Assign, Declare, load

    row = (Declare("acc", c(0.0, t)),
           For("j", c(0), v("cols"), (Assign("acc", v("acc", t) + load("x", v("r") * v("cols") + v("j"), t)),)),
           Store("out", v("r"), v("acc", t)))
    k = Kernel("rsum", params, (For("r", c(0), v("rows"), row, parallel=True, work=8192),))
    fns = compile_kernels([k])
    rng = np.random.default_rng(3)
    for rows, cols in ((1, 0), (1, 1), (3, 17), (64, 8191), (7, 100_003)):
        x = rng.uniform(0, 1, (rows, cols)).astype(np.float32)
        out = np.zeros(rows, np.float32)
        fns["rsum"](pack_slots(k, out=out, x=x, rows=rows, cols=cols))
        want = x.astype(np.float64).sum(axis=1)
        np.testing.assert_allclose(out, want, rtol=cols * 2e-8 + 1e-7)
