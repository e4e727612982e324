"""ONNX converters for the neural-network ops transformer exports use: MatMul, Gemm,
Softmax, LayerNormalization, reductions and GELU-family activations."""

from __future__ import annotations

from typing import Any

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext
from optllm.frontends.onnx.dims import norm_axis
from optllm.frontends.onnx.registry import converter
from optllm.ir import DType, Value

Node = Any
Out = list[Value | None]


@converter("MatMul", since=13)
def _matmul(ctx: ConvertContext, node: Node) -> Out:
    # numpy matmul: a 1-D left operand is a row [1,K] and a 1-D right one a column [K,1],
    # the added dim dropped from the result; batch dims broadcast (core.matmul does that)
    a, b = ctx.need(node, 0), ctx.need(node, 1)
    vec_a, vec_b = a.type.rank == 1, b.type.rank == 1
    if vec_a:
        a = ctx.op("core.reshape", a, shape=[1, a.type.shape[0]])
    if vec_b:
        b = ctx.op("core.reshape", b, shape=[b.type.shape[0], 1])
    y = ctx.op("core.matmul", a, b)
    if not vec_a and not vec_b:
        return [y]
    shape = list(y.type.shape)
    drop = ([len(shape) - 2] if vec_a else []) + ([len(shape) - 1] if vec_b else [])
    return [ctx.op("core.reshape", y, shape=[d for i, d in enumerate(shape) if i not in drop])]


@converter("Gemm", since=13)
def _gemm(ctx: ConvertContext, node: Node) -> Out:
    # Y = alpha * A' @ B' + beta * C, where C broadcasts to [M, N] ([], [1], [N], [1,N], [M,1], [M,N])
    a, b, c = ctx.need(node, 0), ctx.need(node, 1), ctx.input(node, 2)
    alpha, beta = ctx.attr(node, "alpha", 1.0), ctx.attr(node, "beta", 1.0)
    if ctx.attr(node, "transA", 0):
        a = ctx.op("core.permute", a, perm=[1, 0])
    trans_b = bool(ctx.attr(node, "transB", 0))
    dtype = a.type.dtype
    if alpha != 1.0:
        a = ctx.op("core.mul", a, ctx.scalar(alpha, dtype))
    if c is not None and beta != 1.0:
        c = ctx.op("core.mul", c, ctx.scalar(beta, dtype))
    n = b.type.shape[0] if trans_b else b.type.shape[1]
    if c is not None and tuple(c.type.shape) == (n,):
        return [ctx.op("nn.linear", a, b, c, transpose_w=trans_b, bias=True)]
    y = ctx.op("nn.linear", a, b, transpose_w=trans_b)
    return [y if c is None else ctx.op("core.add", y, c)]


@converter("Softmax", since=13)
def _softmax(ctx: ConvertContext, node: Node) -> Out:
    return [ctx.op("nn.softmax", ctx.need(node, 0), axis=ctx.attr(node, "axis", -1))]


@converter("LogSoftmax", since=13)
def _log_softmax(ctx: ConvertContext, node: Node) -> Out:
    return [ctx.op("nn.softmax", ctx.need(node, 0), axis=ctx.attr(node, "axis", -1), log=True)]


@converter("LayerNormalization", since=17)
def _layer_norm(ctx: ConvertContext, node: Node) -> Out:
    x, w, b = ctx.need(node, 0), ctx.input(node, 1), ctx.input(node, 2)
    if len([o for o in node.output if o]) > 1:
        raise FrontendError("only the first output (Y) of LayerNormalization is supported")
    axis = norm_axis(ctx.attr(node, "axis", -1), x.type.rank)
    if ctx.attr(node, "stash_type", 1) != 1:
        raise FrontendError("LayerNormalization with stash_type other than float is not supported")
    operands = [x] + ([w] if w is not None else []) + ([b] if b is not None and w is not None else [])
    y = ctx.op("nn.layer_norm", *operands, eps=ctx.attr(node, "epsilon", 1e-5), ndim=x.type.rank - axis)
    if b is not None and w is None:
        y = ctx.op("core.add", y, b)
    return [y]


@converter("Gelu", since=20)
def _gelu(ctx: ConvertContext, node: Node) -> Out:
    return [ctx.op("nn.gelu", ctx.need(node, 0), approximate=ctx.attr(node, "approximate", "none"))]


_REDUCE = {"ReduceMean": "core.reduce_mean", "ReduceSum": "core.reduce_sum", "ReduceMax": "core.reduce_max",
           "ReduceMin": "core.reduce_min", "ReduceProd": "core.reduce_prod"}
# the opset from which ``axes`` is an input instead of an attribute
_AXES_INPUT_SINCE = {"ReduceSum": 13}


def _reduce(ctx: ConvertContext, node: Node, name: str) -> Out:
    x = ctx.need(node, 0)
    if ctx.opset >= _AXES_INPUT_SINCE.get(node.op_type, 18):
        axes = ctx.ints(node, 1, "axes")
    else:
        attr_axes = ctx.attr(node, "axes", None)
        axes = None if attr_axes is None else list(attr_axes)
    keep = bool(ctx.attr(node, "keepdims", 1))
    if not axes:
        if ctx.attr(node, "noop_with_empty_axes", 0):
            return [x]
        axes = list(range(x.type.rank))
    norm = sorted({norm_axis(a, x.type.rank) for a in axes})
    if name in _EMPTY_IDENTITY and any(x.type.shape[a] == 0 for a in norm):
        # max/min over an empty set is the identity (-inf / +inf, the type's extremes)
        shape = [1 if i in norm else d for i, d in enumerate(x.type.shape)] if keep else \
            [d for i, d in enumerate(x.type.shape) if i not in norm]
        return [ctx.op("core.full", shape=shape, value=_EMPTY_IDENTITY[name](x.type.dtype), dtype=x.type.dtype)]
    return [ctx.op(name, x, axes=norm, keepdim=keep)]


def _extreme(dtype: DType, high: bool) -> float:
    import numpy as np

    if dtype is DType.bool:
        return float(high)
    if dtype.is_float:
        return float("inf") if high else float("-inf")
    info = np.iinfo(dtype.to_numpy())
    return float(info.max if high else info.min)


_EMPTY_IDENTITY = {"core.reduce_max": lambda dt: _extreme(dt, False), "core.reduce_min": lambda dt: _extreme(dt, True)}


def _register_reductions() -> None:
    for op_type, name in _REDUCE.items():
        converter(op_type, since=13)(lambda ctx, node, _n=name: _reduce(ctx, node, _n))


_register_reductions()
