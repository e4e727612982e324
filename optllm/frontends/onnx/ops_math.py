"""ONNX elementwise math beyond the transformer set: trig, rounding, activations, n-ary Max/Min/Sum/Mean.

Each converter is a composition of ``core``/``nn`` ops whose numpy references match the
ONNX definition (``# Elu: x < 0 ? alpha*(e^x - 1) : x``). Ops that another converter module
already registered are left to it (see ``onnx_op``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext
from optllm.frontends.onnx.registry import _TABLE as _REGISTERED
from optllm.frontends.onnx.registry import OnnxConverter, converter
from optllm.ir import Value

log = logging.getLogger(__name__)
Node = Any
Out = list[Value | None]


def onnx_op(op_type: str, since: int = 1) -> Callable[[OnnxConverter], OnnxConverter]:
    """``converter(op_type, since=...)``, unless a module listed earlier already converts the op."""
    if ("", op_type) in _REGISTERED:
        log.debug("ONNX %s is converted elsewhere; skipping the ops_* fallback", op_type)
        return lambda fn: fn
    return converter(op_type, since=since)


def like(ctx: ConvertContext, value: Any, v: Value) -> Value:
    """A scalar constant of ``v``'s element type."""
    return ctx.constant(np.asarray(value, dtype=v.type.dtype.to_numpy()))


def float_input(ctx: ConvertContext, node: Node, index: int = 0) -> Value:
    x = ctx.need(node, index)
    if not x.type.dtype.is_float:
        raise FrontendError(f"{node.op_type} on {x.type.dtype} is not supported (floating point only)")
    return x


# -- unary ops with one IR op each are converted in ops_elementwise (from the op declarations) --


@onnx_op("Sign")
def _sign(ctx: ConvertContext, node: Node) -> Out:
    # sign(x) = (x > 0) - (x < 0)
    x = ctx.need(node, 0)
    zero = like(ctx, 0, x)
    pos = ctx.cast(ctx.op("core.gt", x, zero), x.type.dtype)
    neg = ctx.cast(ctx.op("core.lt", x, zero), x.type.dtype)
    return [ctx.op("core.sub", pos, neg)]


# -- activations ----------------------------------------------------------------------------------
def _where_neg(ctx: ConvertContext, x: Value, neg: Value, pos: Value, strict: bool = True) -> Value:
    """x < 0 (or x <= 0) ? neg : pos."""
    cond = ctx.op("core.lt" if strict else "core.le", x, like(ctx, 0, x))
    return ctx.op("core.where", cond, neg, pos)


@onnx_op("LeakyRelu")
def _leaky_relu(ctx: ConvertContext, node: Node) -> Out:
    # x < 0 ? alpha*x : x
    x = float_input(ctx, node)
    alpha = like(ctx, ctx.attr(node, "alpha", 0.01), x)
    return [_where_neg(ctx, x, ctx.op("core.mul", x, alpha), x)]


@onnx_op("PRelu")
def _prelu(ctx: ConvertContext, node: Node) -> Out:
    # x < 0 ? slope*x : x (slope broadcasts to x)
    x, slope = float_input(ctx, node), ctx.need(node, 1)
    y = _where_neg(ctx, x, ctx.op("core.mul", x, ctx.cast(slope, x.type.dtype)), x)
    if y.type.shape != x.type.shape:
        raise FrontendError(f"PRelu slope {slope.type} does not broadcast to {x.type}")
    return [y]


@onnx_op("Elu")
def _elu(ctx: ConvertContext, node: Node) -> Out:
    # x < 0 ? alpha*(e^x - 1) : x
    x = float_input(ctx, node)
    alpha = like(ctx, ctx.attr(node, "alpha", 1.0), x)
    em1 = ctx.op("core.sub", ctx.op("core.exp", x), like(ctx, 1, x))
    return [_where_neg(ctx, x, ctx.op("core.mul", alpha, em1), x)]


@onnx_op("Selu")
def _selu(ctx: ConvertContext, node: Node) -> Out:
    # gamma * (x <= 0 ? alpha*e^x - alpha : x)
    x = float_input(ctx, node)
    alpha = like(ctx, ctx.attr(node, "alpha", 1.67326319217681884765625), x)
    gamma = like(ctx, ctx.attr(node, "gamma", 1.05070102214813232421875), x)
    neg = ctx.op("core.sub", ctx.op("core.mul", alpha, ctx.op("core.exp", x)), alpha)
    return [ctx.op("core.mul", gamma, _where_neg(ctx, x, neg, x, strict=False))]


@onnx_op("Celu")
def _celu(ctx: ConvertContext, node: Node) -> Out:
    # max(0, x) + min(0, alpha*(e^(x/alpha) - 1))
    x = float_input(ctx, node)
    alpha = like(ctx, ctx.attr(node, "alpha", 1.0), x)
    zero = like(ctx, 0, x)
    em1 = ctx.op("core.sub", ctx.op("core.exp", ctx.op("core.div", x, alpha)), like(ctx, 1, x))
    neg = ctx.op("core.min", zero, ctx.op("core.mul", alpha, em1))
    return [ctx.op("core.add", ctx.op("core.max", zero, x), neg)]


def _hard_sigmoid(ctx: ConvertContext, x: Value, alpha: float, beta: float) -> Value:
    # max(0, min(1, alpha*x + beta))
    lin = ctx.op("core.add", ctx.op("core.mul", x, like(ctx, alpha, x)), like(ctx, beta, x))
    return ctx.op("core.max", like(ctx, 0, x), ctx.op("core.min", like(ctx, 1, x), lin))


@onnx_op("HardSigmoid")
def _hardsigmoid(ctx: ConvertContext, node: Node) -> Out:
    x = float_input(ctx, node)
    return [_hard_sigmoid(ctx, x, ctx.attr(node, "alpha", 0.2), ctx.attr(node, "beta", 0.5))]


@onnx_op("HardSwish")
def _hardswish(ctx: ConvertContext, node: Node) -> Out:
    # x * HardSigmoid(x; 1/6, 1/2)
    x = float_input(ctx, node)
    return [ctx.op("core.mul", x, _hard_sigmoid(ctx, x, 1 / 6, 0.5))]


def _softplus_of(ctx: ConvertContext, x: Value) -> Value:
    # ln(e^x + 1)
    return ctx.op("core.log", ctx.op("core.add", ctx.op("core.exp", x), like(ctx, 1, x)))


@onnx_op("Softplus")
def _softplus(ctx: ConvertContext, node: Node) -> Out:
    return [_softplus_of(ctx, float_input(ctx, node))]


@onnx_op("Softsign")
def _softsign(ctx: ConvertContext, node: Node) -> Out:
    # x / (1 + |x|)
    x = float_input(ctx, node)
    return [ctx.op("core.div", x, ctx.op("core.add", like(ctx, 1, x), ctx.op("core.abs", x)))]


@onnx_op("Mish")
def _mish(ctx: ConvertContext, node: Node) -> Out:
    # x * tanh(softplus(x))
    x = float_input(ctx, node)
    return [ctx.op("core.mul", x, ctx.op("core.tanh", _softplus_of(ctx, x)))]


@onnx_op("ThresholdedRelu")
def _thresholded_relu(ctx: ConvertContext, node: Node) -> Out:
    # x > alpha ? x : 0
    x = float_input(ctx, node)
    cond = ctx.op("core.gt", x, like(ctx, ctx.attr(node, "alpha", 1.0), x))
    return [ctx.op("core.where", cond, x, like(ctx, 0, x))]


@onnx_op("Shrink")
def _shrink(ctx: ConvertContext, node: Node) -> Out:
    # x < -lambd ? x + bias : (x > lambd ? x - bias : 0)
    x = ctx.need(node, 0)
    lambd, bias = ctx.attr(node, "lambd", 0.5), ctx.attr(node, "bias", 0.0)
    b = like(ctx, bias, x)
    hi = ctx.op("core.where", ctx.op("core.gt", x, like(ctx, lambd, x)), ctx.op("core.sub", x, b), like(ctx, 0, x))
    return [ctx.op("core.where", ctx.op("core.lt", x, like(ctx, -lambd, x)), ctx.op("core.add", x, b), hi)]


@onnx_op("Gelu", since=20)
def _gelu(ctx: ConvertContext, node: Node) -> Out:
    return [ctx.op("nn.gelu", float_input(ctx, node), approximate=ctx.attr(node, "approximate", "none"))]


@onnx_op("Swish", since=24)
def _swish(ctx: ConvertContext, node: Node) -> Out:
    # x * sigmoid(alpha * x)
    x = float_input(ctx, node)
    alpha = ctx.attr(node, "alpha", 1.0)
    inner = x if alpha == 1.0 else ctx.op("core.mul", x, like(ctx, alpha, x))
    return [ctx.op("core.mul", x, ctx.op("core.sigmoid", inner))]


# -- n-ary -----------------------------------------------------------------------------------------
def _nary(ir_name: str, mean: bool = False) -> OnnxConverter:
    def convert(ctx: ConvertContext, node: Node) -> Out:
        xs = [v for v in ctx.inputs(node) if v is not None]
        y = xs[0]
        for v in xs[1:]:
            y = ctx.op(ir_name, y, v)
        if mean:
            y = ctx.op("core.div", y, like(ctx, len(xs), y))
        return [y]

    return convert


onnx_op("Max")(_nary("core.max"))
onnx_op("Min")(_nary("core.min"))
onnx_op("Sum")(_nary("core.add"))
onnx_op("Mean")(_nary("core.add", mean=True))
