"""The row templates (norms, softmax, attention, rope) compiled by the LLVM printer and compared
with the ``nn`` ops' numpy references on random shapes, strides and broadcasts.

Tolerance: ``|got - ref| <= RTOL * |ref| + ATOL * rowscale`` with ``RTOL = 1e-5``, ``ATOL = 1e-6``
and ``rowscale`` the largest ``|ref|`` of the row, at least 1 (for attention at least ``max|v|``:
an output row is a convex combination of rows of v, so that is its scale whatever cancels);
NaN and inf where the reference has them, nowhere else.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optllm.backends.kernels.kir import F32, F64, I64, Call, For, Kernel, KIRError, ScalarType
from optllm.backends.kernels.templates.attention import attention_kernel, default_tile
from optllm.backends.kernels.templates.rope import rope_kernel
from optllm.backends.kernels.templates.rownorm import norm_kernel
from optllm.backends.kernels.templates.softmax import softmax_kernel
from optllm.backends.kernels.verify import verify_kernel
from optllm.ir.dialects.nn import Attention, LayerNorm, RmsNorm, Rope, SkipLayerNorm, SkipRmsNorm, Softmax

RTOL, ATOL = 1e-5, 1e-6
F = np.float32
HALF_TOL = 4e-3  # f16: the references round every step to f16, the kernels accumulate in f32
DTYPES = st.sampled_from(["float32", "float32", "float64", "float16"])
SETTINGS = settings(max_examples=int(os.environ.get("OPTLLM_HYPOTHESIS_EXAMPLES", 40)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROW_SIZES = st.sampled_from([1, 2, 3, 7, 16, 33, 64, 255, 768, 4099])

try:
    from optllm.backends.kernels.llvm import compile_kernels, get_num_threads, pack_slots
except ImportError as err:  # the printer is another module; the structural tests still run
    compile_kernels = None
    SKIP_REASON = f"LLVM printer not available: {err}"
else:
    SKIP_REASON = ""
needs_printer = pytest.mark.skipif(compile_kernels is None, reason=SKIP_REASON or "printer present")


def all_norm_variants() -> list[Kernel]:
    out = []
    for kind in ("layer", "rms"):
        for skip in (False, True):
            for w in (False, True):
                for b in ((False, True) if kind == "layer" else (False,)):
                    for ws in ((False, True) if skip else (False,)):
                        out.append(norm_kernel(kind, F32, skip=skip, has_weight=w, has_bias=b, write_sum=ws))
    return out


def all_kernels() -> list[Kernel]:
    return [*all_norm_variants(), norm_kernel("layer", F64, skip=True, has_weight=True, has_bias=True, write_sum=True),
            norm_kernel("rms", ScalarType.F16, skip=True, has_weight=True, has_bias=False, write_sum=True),
            softmax_kernel(F32, log=False), softmax_kernel(F32, log=True), softmax_kernel(ScalarType.F16, log=False),
            *(attention_kernel(F32, mask=m, causal=c) for m in (None, "bool", "additive") for c in (False, True)),
            *(rope_kernel(F32, r) for r in range(4)), rope_kernel(F64, 2)]


# --- structure (no printer needed) --------------------------------------------------------


def test_every_template_builds_with_unique_params_and_names():
    kernels = all_kernels()
    assert len({k.name for k in kernels}) == len(kernels)
    assert len({k.key() for k in kernels}) == len(kernels)
    for k in kernels:
        verify_kernel(k)
        names = [p.name for p in k.params]
        assert len(names) == len(set(names)), k.name
        assert k.text() == k.text()
        parallel = [s for s in k.body if isinstance(s, For) and s.parallel]
        assert len(parallel) == 1, f"{k.name}: one outermost parallel loop"


def test_param_order_is_the_runtime_contract():
    k = norm_kernel("layer", F32, skip=True, has_weight=True, has_bias=True, write_sum=True)
    assert [p.name for p in k.params] == ["out", "x", "skip", "sum_out", "weight", "bias", "rows", "n", "x_rs",
                                          "skip_rs", "out_rs", "sum_rs", "eps"]
    assert k.param("eps").ctype == F32 and k.param("rows").ctype == I64
    k = norm_kernel("rms", F32, skip=False, has_weight=False, has_bias=False, write_sum=False)
    assert [p.name for p in k.params] == ["out", "x", "rows", "n", "x_rs", "out_rs", "eps"]
    assert [p.name for p in softmax_kernel(F32, log=True).params] == ["out", "x", "rows", "n", "x_rs", "out_rs"]
    k = attention_kernel(F32, mask="bool", causal=True)
    assert [p.name for p in k.params] == [
        "out", "q", "k", "v", "mask", "scratch", "nb", "hq", "hk", "L", "S", "E", "Ev",
        "q_s0", "q_s1", "q_s2", "k_s0", "k_s1", "k_s2", "v_s0", "v_s1", "v_s2", "o_s0", "o_s1", "o_s2",
        "m_s0", "m_s1", "m_s2", "m_s3", "tile", "scale"]
    assert str(k.param("mask").ctype) == "bool" and k.param("scale").ctype == F32
    assert [p.name for p in attention_kernel(F32, mask=None, causal=False).params][:5] == ["out", "q", "k", "v",
                                                                                           "scratch"]
    assert [p.name for p in rope_kernel(F32, 2).params] == [
        "out", "x", "cos", "sin", "d0", "d1", "n", "x_s0", "x_s1", "cos_s0", "cos_s1", "sin_s0", "sin_s1",
        "out_s0", "out_s1"]


def test_attention_uses_sgemm_and_per_worker_scratch():
    text = attention_kernel(F32, mask="additive", causal=False).text()
    assert text.count("sgemm(") == 2 and "thread_index()" in text
    body = attention_kernel(F32, mask=None, causal=False).body
    loop = next(s for s in body if isinstance(s, For))
    assert sum(isinstance(s, Call) for s in loop.body) == 2


@pytest.mark.parametrize("bad", [
    lambda: norm_kernel("batch", F32, skip=False, has_weight=False, has_bias=False, write_sum=False),
    lambda: norm_kernel("rms", F32, skip=False, has_weight=True, has_bias=True, write_sum=False),
    lambda: norm_kernel("layer", F32, skip=False, has_weight=True, has_bias=True, write_sum=True),
    lambda: attention_kernel(F64, mask=None, causal=False),
    lambda: attention_kernel(F32, mask="float", causal=False),
    lambda: rope_kernel(I64, 1),
])
def test_bad_configurations_are_refused(bad):
    with pytest.raises(KIRError):
        bad()


def test_default_tile_bounds_scratch_and_feeds_every_thread():
    assert default_tile(128, 128, 2, batch_heads=12) == 128  # 12 tasks >= 8
    assert default_tile(128, 128, 8, batch_heads=1) == 16  # 8 tasks for 8 threads at the 16 floor
    for L, S, t, bh in [(4096, 4096, 16, 32), (1, 9000, 4, 1), (100000, 1, 2, 1), (0, 0, 1, 1)]:
        tile = default_tile(L, S, t, batch_heads=bh)
        assert tile >= 1 and (tile * S * 4 <= 1 << 20 or tile == 1)


# --- numerics through the LLVM printer ------------------------------------------------------


_compiled: dict[str, object] = {}


def run(kernel: Kernel, **values) -> None:
    if kernel.key() not in _compiled:
        _compiled[kernel.key()] = compile_kernels([kernel])[kernel.name]
    _compiled[kernel.key()](pack_slots(kernel, **values))


def assert_close(got: np.ndarray, ref: np.ndarray, scale: float = 0.0) -> None:
    """Elementwise within RTOL of the reference plus ATOL of the row's largest magnitude (or of
    ``scale`` when larger); HALF_TOL for both with f16 data."""
    assert got.shape == ref.shape and got.dtype == ref.dtype
    rtol, atol = (HALF_TOL, HALF_TOL) if ref.dtype == np.float16 else (RTOL, ATOL)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    fin = np.isfinite(ref)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)])
    mag = np.where(fin, np.abs(ref), 0)
    rowscale = np.maximum(mag.max(axis=-1, keepdims=True, initial=0), max(scale, 1)) if ref.ndim else 1
    err = np.abs(np.where(fin, got.astype(np.float64) - ref, 0))
    bound = rtol * mag + atol * rowscale
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else ()
    assert (err <= bound).all(), f"at {worst}: got {got[worst]}, ref {ref[worst]} (err {err[worst]:.3g})"


def strided_rows(rng: np.random.Generator, rows: int, n: int, pad: int, dtype: str = "float32",
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """``rows x n`` values living in a wider buffer: (view, flat buffer starting at it, row stride)."""
    base = (rng.standard_normal((rows, n + pad)) * 3 + 0.5).astype(dtype)
    off = min(pad, 1)
    return base[:, off:off + n], base.reshape(-1)[off:], n + pad


@needs_printer
@SETTINGS
@given(kind=st.sampled_from(["layer", "rms"]), skip=st.booleans(), w=st.booleans(), b=st.booleans(),
       ws=st.booleans(), rows=st.integers(1, 6), n=ROW_SIZES, pad=st.integers(0, 3), inplace=st.booleans(),
       dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_norm(kind, skip, w, b, ws, rows, n, pad, inplace, dtype, seed):
    b, ws = b and kind == "layer", ws and skip
    rng = np.random.default_rng(seed)
    x, xbuf, x_rs = strided_rows(rng, rows, n, pad, dtype)
    x0 = x.copy()
    vals: dict[str, object] = {"x": xbuf, "rows": rows, "n": n, "x_rs": x_rs, "eps": 1e-5}
    ins = [x0]
    if skip:
        sk, vals["skip"], vals["skip_rs"] = strided_rows(rng, rows, n, 1, dtype)
        ins.append(sk.copy())
    params = []  # the reference takes a bias only after a weight: ones stand in for a missing one
    if w or b:
        params.append(rng.standard_normal(n).astype(dtype) if w else np.ones(n, dtype))
    if w:
        vals["weight"] = params[0]
    if b:
        params.append(rng.standard_normal(n).astype(dtype))
        vals["bias"] = params[-1]
    if inplace:
        out, vals["out"], vals["out_rs"] = x, xbuf, x_rs
    else:
        out = np.full((rows, n), np.nan, dtype)
        vals["out"], vals["out_rs"] = out.reshape(-1), n
    if ws:
        sums = np.full((rows, n + 2), np.nan, dtype)
        vals["sum_out"], vals["sum_rs"] = sums.reshape(-1), n + 2
    op = {("layer", False): LayerNorm, ("rms", False): RmsNorm, ("layer", True): SkipLayerNorm,
          ("rms", True): SkipRmsNorm}[kind, skip]()
    ref = op.reference([*ins, *params], {"eps": 1e-5, "ndim": 1}, {})
    run(norm_kernel(kind, ScalarType.of_numpy(np.dtype(dtype)), skip=skip, has_weight=w, has_bias=b, write_sum=ws), **vals)
    assert_close(out, ref[0])
    if ws:
        np.testing.assert_array_equal(sums[:, :n], ref[1])  # x + skip, rounded once, exactly
        assert np.isnan(sums[:, n:]).all()


@needs_printer
@pytest.mark.parametrize("alias", ["sum_over_x", "sum_over_skip_out_over_x"])
def test_norm_sum_may_alias_its_inputs(alias):
    """skip_layer_norm writing the residual sum over x or skip (the planner's in-place choices)."""
    rng = np.random.default_rng(0)
    x, sk, w, bias = (rng.standard_normal(s).astype(F) for s in ((3, 300), (3, 300), 300, 300))
    ref_y, ref_s = SkipLayerNorm().reference([x, sk, w, bias], {"eps": 1e-5, "ndim": 1}, {})
    xs, sks, out = x.copy(), sk.copy(), np.empty_like(x)
    sums, out = (xs, out) if alias == "sum_over_x" else (sks, xs)
    run(norm_kernel("layer", F32, skip=True, has_weight=True, has_bias=True, write_sum=True),
        out=out, x=xs, skip=sks, sum_out=sums, weight=w, bias=bias, rows=3, n=300, x_rs=300, skip_rs=300,
        out_rs=300, sum_rs=300, eps=1e-5)
    assert_close(out, ref_y)
    np.testing.assert_array_equal(sums, ref_s)


@needs_printer
@SETTINGS
@given(log=st.booleans(), rows=st.integers(1, 6), n=ROW_SIZES, pad=st.integers(0, 3), inplace=st.booleans(),
       ninf=st.sampled_from([0.0, 0.3, 1.0]), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_softmax(log, rows, n, pad, inplace, ninf, dtype, seed):
    rng = np.random.default_rng(seed)
    x, xbuf, x_rs = strided_rows(rng, rows, n, pad, dtype)
    x[rng.random(x.shape) < ninf] = -np.inf
    if ninf:
        x[rows // 2] = -np.inf  # a whole row of -inf gives NaN, as in the reference
    ref = Softmax().reference([x.copy()], {"axis": -1, "log": log}, {})[0]
    if inplace:
        out, obuf, o_rs = x, xbuf, x_rs
    else:
        out = np.full((rows, n), 7.0, dtype)
        obuf, o_rs = out.reshape(-1), n
    run(softmax_kernel(ScalarType.of_numpy(np.dtype(dtype)), log=log), out=obuf, x=xbuf, rows=rows, n=n, x_rs=x_rs, out_rs=o_rs)
    assert_close(out, ref)


def _layout(rng: np.random.Generator, shape: tuple[int, int, int, int], heads_inner: bool) -> np.ndarray:
    """A [b, h, s, e] view; with ``heads_inner`` stored as [b, s, h, e] (as a QKV projection leaves it)."""
    b, h, s, e = shape
    if heads_inner:
        return rng.standard_normal((b, s, h, e)).astype(F).transpose(0, 2, 1, 3)
    return rng.standard_normal(shape).astype(F)


def _strides(a: np.ndarray, dims: int) -> list[int]:
    return [st // a.itemsize for st in a.strides[:dims]]


def attention_args(q: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray, tile: int, scale: float,
                   size1_stride: int | None = None) -> dict[str, object]:
    """The kernel's arguments for [nb, h, s, e] views; ``size1_stride`` replaces the row stride of
    size-1 dims (where it means nothing)."""
    (nb, hq, L, E), (hk, S, Ev) = q.shape, v.shape[1:]
    vals: dict[str, object] = {
        "out": out, "q": q, "k": k, "v": v, "nb": nb, "hq": hq, "hk": hk, "L": L, "S": S, "E": E, "Ev": Ev,
        "tile": tile, "scale": scale, "scratch": np.full(get_num_threads() * tile * S, np.nan, F)}
    for name, a in (("q", q), ("k", k), ("v", v), ("o", out)):
        strides = _strides(a, 3)
        if size1_stride is not None and a.shape[2] == 1:
            strides[2] = size1_stride
        vals.update({f"{name}_s{d}": s for d, s in enumerate(strides)})
    return vals


@needs_printer
@SETTINGS
@given(nb=st.integers(1, 2), hk=st.integers(1, 3), rep=st.sampled_from([1, 2, 4]), L=st.integers(1, 40),
       S=st.integers(1, 70), E=st.sampled_from([1, 3, 8, 64]), Ev=st.sampled_from([1, 5, 16]),
       mask=st.sampled_from([None, "bool", "additive"]), bcast=st.lists(st.booleans(), min_size=4, max_size=4),
       causal=st.booleans(), tile=st.sampled_from([1, 3, 16, 0]), heads_inner=st.booleans(),
       masked_rows=st.sampled_from(["zero", "nan"]), seed=st.integers(0, 2**32 - 1))
def test_attention(nb, hk, rep, L, S, E, Ev, mask, bcast, causal, tile, heads_inner, masked_rows, seed):
    rng = np.random.default_rng(seed)
    hq = hk * rep
    q = _layout(rng, (nb, hq, L, E), heads_inner)
    k = _layout(rng, (nb, hk, S, E), heads_inner)
    v = _layout(rng, (nb, hk, S, Ev), heads_inner)
    out = np.full((nb, L, hq, Ev) if heads_inner else (nb, hq, L, Ev), np.nan, F)
    out = out.transpose(0, 2, 1, 3) if heads_inner else out
    tile = tile or default_tile(L, S, get_num_threads(), batch_heads=nb * hq)
    vals = attention_args(q, k, v, out, tile, 0.3)
    ins = [q, k, v]
    if mask is not None:
        mshape = tuple(1 if bc else d for bc, d in zip(bcast, (nb, hq, L, S)))
        if mask == "bool":
            m = rng.random(mshape) < 0.7
            m[(0,) * (4 - 2)][0] = False  # a fully masked query row -> 0 or NaN (masked_rows), as the reference
        else:
            m = (rng.standard_normal(mshape) * 2).astype(F)
            m[rng.random(mshape) < 0.2] = -np.inf
        mfull = np.broadcast_to(m, (nb, hq, L, S))
        vals["mask"] = m
        vals.update({f"m_s{d}": s for d, s in enumerate(_strides(mfull, 4))})
        ins.append(mfull)
    ref = Attention().reference(ins, {"scale": 0.3, "causal": causal, "masked_rows": masked_rows}, {})[0]
    run(attention_kernel(F32, mask=mask, causal=causal, masked_rows=masked_rows), **vals)
    assert_close(np.ascontiguousarray(out), ref, scale=float(np.abs(v).max()))


@needs_printer
def test_attention_causal_when_L_differs_from_S():
    rng = np.random.default_rng(1)
    for L, S in [(5, 9), (9, 5), (33, 17)]:
        q, k, v = (rng.standard_normal(s).astype(F) for s in ((1, 2, L, 8), (1, 2, S, 8), (1, 2, S, 4)))
        out = np.empty((1, 2, L, 4), F)
        run(attention_kernel(F32, mask=None, causal=True), **attention_args(q, k, v, out, 4, 0.5))
        ref = Attention().reference([q, k, v], {"scale": 0.5, "causal": True}, {})[0]
        assert_close(out, ref, scale=float(np.abs(v).max()))


@needs_printer
@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3), n=st.sampled_from([2, 4, 6, 64, 130]),
       bcast=st.lists(st.booleans(), min_size=3, max_size=3), pad=st.integers(0, 2), inplace=st.booleans(),
       dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_rope(shape, n, bcast, pad, inplace, dtype, seed):
    rng = np.random.default_rng(seed)
    rank = len(shape)
    xbase = rng.standard_normal((*shape, n + pad)).astype(dtype)
    x = xbase[..., :n]
    cshape = tuple(1 if bc else d for bc, d in zip(bcast, shape))
    cos, sin = (rng.standard_normal((*cshape, n)).astype(dtype) for _ in range(2))
    ref = Rope().reference([x.copy(), cos, sin], {}, {})[0]
    out = x if inplace else np.full((*shape, n), np.nan, dtype)
    vals: dict[str, object] = {"out": out, "x": x, "cos": cos, "sin": sin, "n": n}
    vals.update({f"d{i}": d for i, d in enumerate(shape)})
    for name, a in (("x", x), ("cos", np.broadcast_to(cos, x.shape)), ("sin", np.broadcast_to(sin, x.shape)),
                    ("out", out)):
        vals.update({f"{name}_s{d}": s for d, s in enumerate(_strides(a, rank))})
    run(rope_kernel(ScalarType.of_numpy(np.dtype(dtype)), rank), **vals)
    assert_close(np.ascontiguousarray(out), ref)


@needs_printer
def test_attention_size1_dims_with_meaningless_strides():
    """L = 1 and S = 1 (decoding): the row strides of size-1 dims may be anything (0 here); the
    kernel must not hand BLAS a leading dimension below the row length."""
    rng = np.random.default_rng(2)
    for L, S in [(1, 1), (1, 7), (6, 1)]:
        q, k, v = (rng.standard_normal(s).astype(F) for s in ((2, 3, L, 8), (2, 3, S, 8), (2, 3, S, 5)))
        out = np.empty((2, 3, L, 5), F)
        run(attention_kernel(F32, mask=None, causal=False), **attention_args(q, k, v, out, 2, 0.4, size1_stride=0))
        ref = Attention().reference([q, k, v], {"scale": 0.4, "causal": False}, {})[0]
        assert_close(out, ref, scale=float(np.abs(v).max()))
