"""Numpy references of a representative set of ops against straightforward hand computations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from scipy.special import erf

from optllm.backends.reference import run_module
from optllm.ir import Builder, DType, Graph, Module, TensorType, verify_module
from optllm.ir.symbolic import Dim, SymExpr

B = SymExpr.symbol("B")
S = SymExpr.symbol("S")
RNG = np.random.default_rng(1234)


def run(name: str, inputs: Sequence[np.ndarray], types: Sequence[Sequence[Dim]] | None = None,
        **attrs: Any) -> list[np.ndarray]:
    """Build ``name`` over fresh inputs (static shapes, or the symbolic ``types``), verify, run."""
    m = Module("m")
    shapes = types or [x.shape for x in inputs]
    in_types = [TensorType(tuple(s), DType.from_numpy(x.dtype)) for s, x in zip(shapes, inputs)]
    g = m.add_graph(Graph("forward", in_types))
    op = Builder.at_end(g).create(name, list(g.inputs), attrs)
    g.set_outputs(op.results)
    verify_module(m)
    return run_module(m, list(inputs))


def randn(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


# -- attention ----------------------------------------------------------------------------------------
def naive_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None,
                    causal: bool = False, scale: float | None = None) -> np.ndarray:
    """Loops over batch and heads, one query row at a time, in float64."""
    bsz, hq, lq, e = q.shape
    hk, sk = k.shape[1], k.shape[2]
    scale = 1 / math.sqrt(e) if scale is None else scale
    out = np.zeros((bsz, hq, lq, v.shape[-1]))
    for b in range(bsz):
        for h in range(hq):
            kh = h // (hq // hk)  # GQA: query head h reads k/v head h // group
            for i in range(lq):
                scores = np.array([float(q[b, h, i] @ k[b, kh, j]) * scale for j in range(sk)], np.float64)
                for j in range(sk):
                    if causal and j > i:
                        scores[j] = -np.inf
                    if mask is not None:
                        mv = np.broadcast_to(mask, (bsz, hq, lq, sk))[b, h, i, j]
                        if mask.dtype == np.bool_:
                            scores[j] = scores[j] if mv else -np.inf
                        else:
                            scores[j] += float(mv)
                w = np.exp(scores - scores.max())
                out[b, h, i] = (w / w.sum()) @ v[b, kh].astype(np.float64)
    return out


@pytest.mark.parametrize("hq,hk", [(4, 4), (4, 2), (6, 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_gqa_and_causal(hq: int, hk: int, causal: bool) -> None:
    q, k, v = randn(2, hq, 5, 8), randn(2, hk, 5, 8), randn(2, hk, 5, 3)
    (y,) = run("nn.attention", [q, k, v], causal=causal)
    assert y.shape == (2, hq, 5, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y, naive_attention(q, k, v, causal=causal), rtol=1e-5, atol=1e-6)


def test_attention_bool_mask_and_scale() -> None:
    q, k, v = randn(2, 4, 3, 8), randn(2, 2, 6, 8), randn(2, 2, 6, 8)
    mask = RNG.random((2, 1, 1, 6)) > 0.4  # padding mask, broadcast over heads and queries
    mask[..., 0] = True  # every row keeps at least one key
    (y,) = run("nn.attention", [q, k, v, mask], scale=0.3)
    np.testing.assert_allclose(y, naive_attention(q, k, v, mask, scale=0.3), rtol=1e-5, atol=1e-6)


def test_attention_additive_mask_with_causal() -> None:
    q, k, v = randn(1, 2, 4, 8), randn(1, 2, 4, 8), randn(1, 2, 4, 8)
    mask = np.where(RNG.random((1, 2, 4, 4)) > 0.3, 0.0, -1e4).astype(np.float32) + randn(1, 2, 4, 4)
    (y,) = run("nn.attention", [q, k, v, mask], causal=True)
    np.testing.assert_allclose(y, naive_attention(q, k, v, mask, causal=True), rtol=1e-5, atol=1e-6)


def test_attention_symbolic_shapes() -> None:
    q, k, v = randn(2, 4, 3, 8), randn(2, 2, 3, 8), randn(2, 2, 3, 8)
    (y,) = run("nn.attention", [q, k, v], types=[(B, 4, S, 8), (B, 2, S, 8), (B, 2, S, 8)], causal=True)
    np.testing.assert_allclose(y, naive_attention(q, k, v, causal=True), rtol=1e-5, atol=1e-6)


def test_attention_fully_masked_row_is_zero_like_torch_sdpa() -> None:
    # torch 2.13 scaled_dot_product_attention gives 0 for a row with every key masked;
    # masked_rows = "nan" keeps the eager softmax chain's 0/0 (see tests/unit/backends/test_attention_masked_rows.py)
    q, k, v = randn(1, 1, 2, 4), randn(1, 1, 2, 4), randn(1, 1, 2, 4)
    mask = np.array([[True, True], [False, False]]).reshape(1, 1, 2, 2)
    (y,) = run("nn.attention", [q, k, v, mask])
    assert np.isfinite(y[0, 0, 0]).all() and (y[0, 0, 1] == 0).all()
    with np.errstate(invalid="ignore"):
        (y,) = run("nn.attention", [q, k, v, mask], masked_rows="nan")
    assert np.isfinite(y[0, 0, 0]).all() and np.isnan(y[0, 0, 1]).all()


# -- norms and activations -------------------------------------------------------------------------------
def test_layer_norm() -> None:
    x, w, b = randn(2, 3, 16), randn(16), randn(16)
    mean = x.astype(np.float64).mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * w + b
    (y,) = run("nn.layer_norm", [x, w, b])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert y.dtype == np.float32
    (y,) = run("nn.layer_norm", [x], eps=0.5)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 0.5), rtol=1e-5, atol=1e-5)


def test_layer_norm_over_two_dims() -> None:
    x, w = randn(2, 3, 4), randn(3, 4)
    mean = x.astype(np.float64).mean((1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean((1, 2), keepdims=True)
    (y,) = run("nn.layer_norm", [x, w], ndim=2)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * w, rtol=1e-5, atol=1e-5)


def test_rms_norm() -> None:
    x, w = randn(2, 5, 8), randn(8)
    ms = (x.astype(np.float64) ** 2).mean(-1, keepdims=True)
    (y,) = run("nn.rms_norm", [x, w], eps=1e-6)
    np.testing.assert_allclose(y, x / np.sqrt(ms + 1e-6) * w, rtol=1e-5, atol=1e-6)
    (y,) = run("nn.rms_norm", [x])
    np.testing.assert_allclose(y, x / np.sqrt(ms + 1e-5), rtol=1e-5, atol=1e-6)


def test_softmax_and_log_softmax() -> None:
    x = randn(3, 7) * 10
    e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    (y,) = run("nn.softmax", [x])
    np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    (y,) = run("nn.softmax", [x], axis=0)
    e0 = np.exp(x.astype(np.float64) - x.max(0, keepdims=True))
    np.testing.assert_allclose(y, e0 / e0.sum(0, keepdims=True), rtol=1e-5, atol=1e-7)
    (y,) = run("nn.softmax", [x], log=True)
    np.testing.assert_allclose(y, np.log(e / e.sum(-1, keepdims=True)), rtol=1e-5, atol=1e-5)


def test_softmax_rows_of_minus_inf() -> None:
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 0.0], [1e30, 1e30, -1e30]], np.float32)
    with np.errstate(invalid="ignore"):
        (y,) = run("nn.softmax", [x])
    assert np.isnan(y[0]).all()  # like torch: an all -inf row has no distribution
    np.testing.assert_array_equal(y[1], [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(y[2], [0.5, 0.5, 0.0])  # large values do not overflow


def test_gelu_both_forms() -> None:
    x = np.linspace(-6, 6, 97).astype(np.float32)
    xd = x.astype(np.float64)
    (y,) = run("nn.gelu", [x])
    # f32 cancellation in 1 + erf(x/sqrt2) for x << 0, as in torch: absolute error ~ |x| * eps
    np.testing.assert_allclose(y, 0.5 * xd * (1 + erf(xd / math.sqrt(2))), rtol=1e-6, atol=5e-7)
    (y,) = run("nn.gelu", [x], approximate="tanh")
    tanh_form = 0.5 * xd * (1 + np.tanh(math.sqrt(2 / math.pi) * (xd + 0.044715 * xd**3)))
    np.testing.assert_allclose(y, tanh_form, rtol=1e-6, atol=5e-7)
    assert y.dtype == np.float32


def test_silu_relu_sigmoid() -> None:
    x = randn(10)
    xd = x.astype(np.float64)
    np.testing.assert_allclose(run("nn.silu", [x])[0], xd / (1 + np.exp(-xd)), rtol=1e-6)
    np.testing.assert_array_equal(run("nn.relu", [x])[0], np.maximum(x, 0))
    np.testing.assert_allclose(run("core.sigmoid", [x])[0], 1 / (1 + np.exp(-xd)), rtol=1e-6)


def test_embedding() -> None:
    table, ids = randn(10, 4), np.array([[0, 9], [3, 3]])
    (y,) = run("nn.embedding", [table, ids])
    np.testing.assert_array_equal(y, table[ids])


# -- data movement ---------------------------------------------------------------------------------------
def test_slice_with_symbolic_end() -> None:
    x = randn(2, 5, 4)
    (y,) = run("core.slice", [x], types=[(B, S, 4)], axis=1, start=0, end=S - 1)
    np.testing.assert_array_equal(y, x[:, :-1])
    (y,) = run("core.slice", [x], types=[(B, S, 4)], axis=1, start=1, end=S)
    np.testing.assert_array_equal(y, x[:, 1:])
    (y,) = run("core.slice", [x], types=[(B, S, 4)], axis=-1, start=1, end=4, step=2)
    np.testing.assert_array_equal(y, x[..., 1:4:2])
    (y,) = run("core.slice", [x], types=[(B, S, 4)], axis=1, start=0, end=2**63 - 1)
    np.testing.assert_array_equal(y, x)
    (y,) = run("core.slice", [x], types=[(B, S, 4)], axis=1, start=2, end=3)
    np.testing.assert_array_equal(y, x[:, 2:3])


def test_slice_clamps_static_end() -> None:
    x = randn(3, 4)
    (y,) = run("core.slice", [x], axis=0, start=1, end=100)
    np.testing.assert_array_equal(y, x[1:])
    (y,) = run("core.slice", [x], axis=1, start=3, end=1)
    assert y.shape == (3, 0)


def test_split_and_concat() -> None:
    x = randn(2, 3, 12)
    q, k, v = run("core.split", [x], axis=2, sizes=[4, 4, 4])
    np.testing.assert_array_equal(q, x[..., :4])
    np.testing.assert_array_equal(v, x[..., 8:])
    a, b = run("core.split", [x], types=[(B, S, 12)], axis=-1, sizes=[5, 7])
    np.testing.assert_array_equal(b, x[..., 5:])
    (y,) = run("core.concat", [x, x[:, :1]], types=[(B, S, 12), (B, 1, 12)], axis=1)
    np.testing.assert_array_equal(y, np.concatenate([x, x[:, :1]], axis=1))
    (y,) = run("core.concat", [x, x, x], axis=-1)
    assert y.shape == (2, 3, 36)


def test_gather_and_index() -> None:
    x = randn(5, 3)
    idx = np.array([[4, 0], [-1, 2]])
    np.testing.assert_array_equal(run("core.gather", [x, idx], axis=0)[0], x[idx])
    np.testing.assert_array_equal(run("core.gather", [x, np.array([2, 0])], axis=1)[0], x[:, [2, 0]])
    x3 = randn(2, 3, 4)
    i0, i1 = np.array([[1], [0]]), np.array([2, 0, 1])
    (y,) = run("core.index", [x3, i0, i1], axes=[0, 1])
    np.testing.assert_array_equal(y, x3[i0, i1])
    assert y.shape == (2, 3, 4)
    (y,) = run("core.index", [x3, np.array([3, 0])], axes=[2])
    np.testing.assert_array_equal(y, x3[:, :, [3, 0]])


def test_views() -> None:
    x = randn(2, 3, 4)
    np.testing.assert_array_equal(run("core.reshape", [x], types=[(B, S, 4)], shape=[B * S, 4])[0],
                                  x.reshape(6, 4))
    np.testing.assert_array_equal(run("core.permute", [x], perm=[2, 0, 1])[0], x.transpose(2, 0, 1))
    (y,) = run("core.expand", [x[:, :1]], types=[(B, 1, 4)], shape=[B, 5, 4])
    np.testing.assert_array_equal(y, np.broadcast_to(x[:, :1], (2, 5, 4)))


# -- generators ------------------------------------------------------------------------------------------
def test_arange_forms() -> None:
    assert run_gen("core.arange", end=5)[0].tolist() == [0, 1, 2, 3, 4]
    assert run_gen("core.arange", start=2, end=9, step=3)[0].tolist() == [2, 5, 8]
    assert run_gen("core.arange", start=5, end=0, step=-2)[0].tolist() == [5, 3, 1]
    y = run_gen("core.arange", end=4, dtype=DType.f32)[0]
    assert y.dtype == np.float32 and y.tolist() == [0, 1, 2, 3]


def test_arange_and_full_with_symbols() -> None:
    x = randn(2, 7)
    m = Module("m")
    g = m.add_graph(Graph("forward", [TensorType((B, S), DType.f32)]))
    b = Builder.at_end(g)
    r = b.op("core.arange", end=S)
    r2 = b.op("core.arange", start=1, end=S, step=2)
    f = b.op("core.full", shape=[B, 1, S], value=-np.inf, dtype=DType.f32)
    i = b.op("core.full", shape=[S], value=3.0, dtype=DType.i32)
    t = b.op("core.full", shape=[2], value=1.0, dtype=DType.bool)
    g.set_outputs([r, r2, f, i, t])
    verify_module(m)
    assert [str(v.type) for v in g.outputs] == ["i64[S]", "i64[floordiv(S,2)]", "f32[B,1,S]", "i32[S]", "bool[2]"]
    rv, r2v, fv, iv, tv = run_module(m, [x])
    assert rv.tolist() == list(range(7)) and r2v.tolist() == [1, 3, 5]
    assert fv.shape == (2, 1, 7) and np.all(fv == -np.inf) and fv.dtype == np.float32
    assert iv.dtype == np.int32 and iv.tolist() == [3] * 7
    assert tv.tolist() == [True, True]


def run_gen(name: str, **attrs: Any) -> list[np.ndarray]:
    return run(name, [], **attrs)


def test_where_broadcasts_all_three() -> None:
    c = RNG.random((2, 1, 4)) > 0.5
    x, y = randn(3, 4), np.float32(-1.0) * np.ones((1,), np.float32)
    (out,) = run("core.where", [c, x, y])
    np.testing.assert_array_equal(out, np.where(c, x, y))
    assert out.shape == (2, 3, 4) and out.dtype == np.float32


@pytest.mark.parametrize("src,dst,values,expected", [
    (np.float32, DType.i64, [1.7, -1.7, 0.0], [1, -1, 0]),  # C truncation
    (np.float32, DType.f16, [1.0, 65520.0, 1e-8], [1.0, np.inf, 0.0]),
    (np.float32, DType.bf16, [1.0, 0.1, 3e38], None),
    (np.int64, DType.f32, [3, -2], [3.0, -2.0]),
    (np.int64, DType.bool, [0, 5, -1], [False, True, True]),
    (np.bool_, DType.f32, [True, False], [1.0, 0.0]),
    (np.float32, DType.i4, [3.0, -8.0], [3, -8]),
])
def test_cast(src: Any, dst: DType, values: list[Any], expected: list[Any] | None) -> None:
    x = np.array(values, src)
    with np.errstate(over="ignore"):
        (y,) = run("core.cast", [x], dtype=dst)
    assert y.dtype == dst.to_numpy()
    if expected is None:
        expected = np.array(values, np.float32).astype(ml_dtypes.bfloat16).tolist()
    assert y.astype(np.float64).tolist() == np.array(expected, np.float64).tolist()


# -- reductions ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,fn", [("core.reduce_sum", np.sum), ("core.reduce_mean", np.mean),
                                     ("core.reduce_max", np.max), ("core.reduce_min", np.min),
                                     ("core.reduce_prod", np.prod)])
@pytest.mark.parametrize("axes,keepdim", [([-1], False), ([0, 2], True), ([1], True), ([0, 1, 2], False)])
def test_float_reductions(name: str, fn: Any, axes: list[int], keepdim: bool) -> None:
    x = randn(2, 3, 4)
    (y,) = run(name, [x], axes=axes, keepdim=keepdim)
    expected = fn(x.astype(np.float64), axis=tuple(a % 3 for a in axes), keepdims=keepdim)
    assert y.dtype == np.float32 and y.shape == np.shape(expected)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_integer_and_bool_reductions() -> None:
    i = np.arange(12, dtype=np.int64).reshape(3, 4)
    (y,) = run("core.reduce_sum", [i], axes=[1])
    assert y.dtype == np.int64 and y.tolist() == [6, 22, 38]
    (y,) = run("core.reduce_max", [i], types=[(S, 4)], axes=[0], keepdim=True)
    assert y.tolist() == [[8, 9, 10, 11]]
    b = np.array([[True, False], [True, True]])
    assert run("core.reduce_any", [b], axes=[1])[0].tolist() == [True, True]
    assert run("core.reduce_all", [b], axes=[1])[0].tolist() == [False, True]
    (y,) = run("core.argmax", [np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]], np.float32)], axis=-1)
    assert y.dtype == np.int64 and y.tolist() == [1, 0]
    (y,) = run("core.cumsum", [i], axis=1)
    np.testing.assert_array_equal(y, np.cumsum(i, axis=1))


def test_elementwise_binary_broadcast_and_dtypes() -> None:
    x, y = randn(2, 1, 4), randn(3, 1)
    np.testing.assert_array_equal(run("core.sub", [x, y])[0], x - y)
    np.testing.assert_array_equal(run("core.div", [x, y])[0], x / y)
    np.testing.assert_array_equal(run("core.max", [x, y])[0], np.maximum(x, y))
    np.testing.assert_array_equal(run("core.lt", [x, y])[0], x < y)
    a, b = np.array([7, -7, 6], np.int64), np.array([2, 2, -4], np.int64)
    assert run("core.floordiv", [a, b])[0].tolist() == [3, -4, -2]
    assert run("core.mod", [a, b])[0].tolist() == [1, 1, -2]
    np.testing.assert_allclose(run("core.pow", [np.abs(x), y])[0], np.abs(x) ** y, rtol=1e-6)
    assert run("core.where", [a > 0, a, b])[0].tolist() == [7, 2, 6]
    np.testing.assert_array_equal(run("core.triangle", [randn(3, 3) * 0 + 1], upper=True, diagonal=1)[0],
                                  np.triu(np.ones((3, 3), np.float32), 1))


def test_matmul_batch_broadcast() -> None:
    a, b = randn(2, 1, 3, 4), randn(5, 4, 2)
    (y,) = run("core.matmul", [a, b])
    assert y.shape == (2, 5, 3, 2)
    np.testing.assert_allclose(y, np.matmul(a.astype(np.float64), b), rtol=1e-5, atol=1e-6)


def test_f16_stays_f16() -> None:
    x = randn(4, 8, dtype=np.float16)
    for name, attrs in [("nn.softmax", {}), ("nn.layer_norm", {}), ("nn.gelu", {}), ("core.exp", {}),
                        ("core.reduce_mean", {"axes": [1]})]:
        (y,) = run(name, [x], **attrs)
        assert y.dtype == np.float16, name
