"""ONNX reductions, ArgMax/ArgMin and CumSum as ``core`` reductions and compositions.

Axes come from the ``axes`` attribute (older opsets) or the second input (ReduceSum from
opset 13, the others from 18) and must be known at import time. ``keepdims`` keeps reduced
dims as 1; empty axes reduce everything unless ``noop_with_empty_axes`` is set. Reducing a
zero-sized dim gives the reduction's identity (ReduceMax of nothing is -inf).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext
from optllm.frontends.onnx.ops_math import like, onnx_op
from optllm.frontends.onnx.registry import OnnxConverter
from optllm.ir import DType, Value

Node = Any
Out = list[Value | None]
Body = Callable[[ConvertContext, Value, list[int], bool], Value]


def reduce_axes(ctx: ConvertContext, node: Node, x: Value) -> list[int] | None:
    """The normalised axes to reduce, or None for a no-op reduction."""
    axes = ctx.ints(node, 1, "axes") if len(node.input) > 1 else None
    if axes is None:
        axes = ctx.attr(node, "axes", None)
    if not axes:
        if ctx.attr(node, "noop_with_empty_axes", 0):
            return None
        return list(range(x.type.rank))
    return sorted({int(a) % max(x.type.rank, 1) for a in axes})


def _identity_fill(ctx: ConvertContext, x: Value, axes: list[int], keep: bool, value: float) -> Value:
    shape = [1 if i in axes else d for i, d in enumerate(x.type.shape)] if keep else \
        [d for i, d in enumerate(x.type.shape) if i not in axes]
    return ctx.op("core.full", shape=shape, value=value, dtype=x.type.dtype)


def _empty(x: Value, axes: list[int]) -> bool:
    return any(x.type.shape[a] == 0 for a in axes)


def _simple(ir_name: str, empty_value: float | None = None) -> Body:
    def body(ctx: ConvertContext, x: Value, axes: list[int], keep: bool) -> Value:
        if empty_value is not None and _empty(x, axes):
            return _identity_fill(ctx, x, axes, keep, empty_value)
        return ctx.op(ir_name, x, axes=axes, keepdim=keep)

    return body


def _sum_of(ctx: ConvertContext, x: Value, axes: list[int], keep: bool) -> Value:
    return ctx.op("core.reduce_sum", x, axes=axes, keepdim=keep)


def _l1(ctx: ConvertContext, x: Value, axes: list[int], keep: bool) -> Value:
    # sum |x|
    return _sum_of(ctx, ctx.op("core.abs", x), axes, keep)


def _sum_square(ctx: ConvertContext, x: Value, axes: list[int], keep: bool) -> Value:
    # sum x^2
    return _sum_of(ctx, ctx.op("core.mul", x, x), axes, keep)


def _l2(ctx: ConvertContext, x: Value, axes: list[int], keep: bool) -> Value:
    # sqrt(sum x^2), computed in float for integer x
    dt = x.type.dtype
    xf = x if dt.is_float else ctx.cast(x, DType.f64)
    y = ctx.op("core.sqrt", _sum_square(ctx, xf, axes, keep))
    return y if dt.is_float else ctx.cast(y, dt)


def _log_sum(ctx: ConvertContext, x: Value, axes: list[int], keep: bool) -> Value:
    # ln(sum x)
    return ctx.op("core.log", _sum_of(ctx, x, axes, keep))


def _log_sum_exp(ctx: ConvertContext, x: Value, axes: list[int], keep: bool) -> Value:
    # ln(sum e^x)
    return ctx.op("core.log", _sum_of(ctx, ctx.op("core.exp", x), axes, keep))


def _reduction(body: Body) -> OnnxConverter:
    def convert(ctx: ConvertContext, node: Node) -> Out:
        x = ctx.need(node, 0)
        axes = reduce_axes(ctx, node, x)
        if axes is None:
            return [x]
        keep = bool(ctx.attr(node, "keepdims", 1))
        if x.type.rank == 0:
            return [x]
        return [body(ctx, x, axes, keep)]

    return convert


_REDUCTIONS: dict[str, tuple[Body, tuple[int, ...]]] = {
    "ReduceSum": (_sum_of, (1, 13)),
    "ReduceMean": (_simple("core.reduce_mean"), (1, 18)),
    "ReduceMax": (_simple("core.reduce_max", -np.inf), (1, 18)),
    "ReduceMin": (_simple("core.reduce_min", np.inf), (1, 18)),
    "ReduceProd": (_simple("core.reduce_prod"), (1, 18)),
    "ReduceL1": (_l1, (1, 18)),
    "ReduceL2": (_l2, (1, 18)),
    "ReduceSumSquare": (_sum_square, (1, 18)),
    "ReduceLogSum": (_log_sum, (1, 18)),
    "ReduceLogSumExp": (_log_sum_exp, (1, 18)),
}

for _name, (_body, _sinces) in _REDUCTIONS.items():
    for _since in _sinces:
        onnx_op(_name, since=_since)(_reduction(_body))


# -- arg reductions -------------------------------------------------------------------------------
def _flip(ctx: ConvertContext, x: Value, axis: int) -> Value:
    from optllm.frontends.onnx.ops_tensor import flip

    return flip(ctx, x, axis)


def _arg(which: str) -> OnnxConverter:
    def convert(ctx: ConvertContext, node: Node) -> Out:
        # core.argmax / core.argmin (not argmax(-x): -x is wrong for unsigned ints and INT_MIN);
        # select_last_index: n-1 - arg(reversed x)
        x = ctx.need(node, 0)
        axis = int(ctx.attr(node, "axis", 0)) % max(x.type.rank, 1)
        keep = bool(ctx.attr(node, "keepdims", 1))
        last = bool(ctx.attr(node, "select_last_index", 0))
        if last:
            x = _flip(ctx, x, axis)
        idx = ctx.op(f"core.arg{which}", x, axis=axis, keepdim=keep)
        if last:
            idx = ctx.op("core.sub", like(ctx, int(x.type.shape[axis]) - 1, idx), idx)  # type: ignore[arg-type]
        return [idx]

    return convert


onnx_op("ArgMax")(_arg("max"))
onnx_op("ArgMin")(_arg("min"))


def _running(ir_name: str, identity: float) -> OnnxConverter:
    def convert(ctx: ConvertContext, node: Node) -> Out:
        # exclusive: scan([identity, x[:-1]]); reverse: flip, scan, flip
        x = ctx.need(node, 0)
        axes = ctx.ints(node, 1, "axis")
        if not axes:
            raise FrontendError(f"{node.op_type} needs its axis")
        axis = axes[0] % max(x.type.rank, 1)
        reverse, exclusive = ctx.attr(node, "reverse", 0), ctx.attr(node, "exclusive", 0)
        y = _flip(ctx, x, axis) if reverse else x
        if exclusive:
            n = y.type.shape[axis]
            head_shape = [1 if i == axis else d for i, d in enumerate(y.type.shape)]
            head = ctx.op("core.full", shape=head_shape, value=identity, dtype=y.type.dtype)
            body = ctx.op("core.slice", y, axis=axis, start=0, end=n - 1)  # type: ignore[operator]
            y = ctx.op("core.concat", head, body, axis=axis)
        y = ctx.op(ir_name, y, axis=axis)
        return [_flip(ctx, y, axis) if reverse else y]

    return convert


onnx_op("CumSum")(_running("core.cumsum", 0.0))
onnx_op("CumProd")(_running("core.cumprod", 1.0))
