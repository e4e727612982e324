"""ONNX linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul.

    dequantize: y = (x - zero_point) * scale
    quantize:   y = saturate(round_half_even(x / scale) + zero_point)

Scales and zero points are per tensor (scalars), per axis (1-D along ``axis``) or blocked
(``block_size`` consecutive elements along ``axis`` share one), broadcast to ``x`` with a
reshape or a constant gather. Integer element types only (int8/uint8/int16/int32).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext, onnx_dtype
from optllm.frontends.onnx.ops_math import like, onnx_op
from optllm.frontends.onnx.ops_tensor import saturating_cast
from optllm.ir import DType, Value

Node = Any
Out = list[Value | None]

_RANGE = {DType.u8: (0, 255), DType.i8: (-128, 127), DType.u16: (0, 65535), DType.i16: (-32768, 32767),
          DType.i32: (-2**31, 2**31 - 1)}


def _broadcast(ctx: ConvertContext, p: Value, x: Value, axis: int, block: int) -> Value:
    """Scale or zero point ``p`` shaped to broadcast against ``x``."""
    rank = x.type.rank
    if p.type.rank == 0 or (p.type.numel() == 1 and block == 0 and p.type.rank <= 1):
        return ctx.op("core.reshape", p, shape=[])
    axis %= rank
    if block == 0:
        return ctx.op("core.reshape", p, shape=[int(x.type.shape[axis]) if i == axis else 1  # type: ignore[arg-type]
                                                for i in range(rank)])
    n = int(x.type.shape[axis])  # type: ignore[arg-type]
    return ctx.op("core.gather", p, ctx.constant((np.arange(n) // block).astype(np.int64)), axis=axis)


def _dequantize(ctx: ConvertContext, x: Value, scale: Value, zp: Value | None, axis: int, block: int) -> Value:
    # (x - zero_point) * scale, in the scale's type
    dt = scale.type.dtype
    xf = ctx.cast(x, DType.f32)
    if zp is not None:
        xf = ctx.op("core.sub", xf, ctx.cast(_broadcast(ctx, zp, x, axis, block), DType.f32))
    y = ctx.op("core.mul", xf, ctx.cast(_broadcast(ctx, scale, x, axis, block), DType.f32))
    return ctx.cast(y, dt)


def _is_float8(dt: DType) -> bool:
    return dt.is_float and dt.bits == 8


def _quantize_float8(ctx: ConvertContext, node: Node, x: Value, scale: Value, zp: Value | None, out: DType,
                     axis: int, block: int) -> Value:
    # saturate(x / scale + zero_point), rounded by the float8 cast (to nearest even)
    xf = ctx.cast(x, DType.f32)
    q = ctx.op("core.div", xf, ctx.cast(_broadcast(ctx, scale, x, axis, block), DType.f32))
    if zp is not None:
        q = ctx.op("core.add", q, ctx.cast(_broadcast(ctx, zp, x, axis, block), DType.f32))
    return saturating_cast(ctx, node, q, out)


def _quantize(ctx: ConvertContext, x: Value, scale: Value, zp: Value | None, out: DType, axis: int,
              block: int) -> Value:
    # saturate(round(x / scale) + zero_point)
    if out not in _RANGE:
        raise FrontendError(f"quantizing to {out} is not supported")
    xf = ctx.cast(x, DType.f32)
    q = ctx.op("core.round", ctx.op("core.div", xf, ctx.cast(_broadcast(ctx, scale, x, axis, block), DType.f32)))
    if zp is not None:
        q = ctx.op("core.add", q, ctx.cast(_broadcast(ctx, zp, x, axis, block), DType.f32))
    lo, hi = _RANGE[out]
    q = ctx.op("core.min", ctx.op("core.max", q, like(ctx, lo, q)), like(ctx, hi, q))
    return ctx.cast(q, out)


@onnx_op("DequantizeLinear", since=13)
def _dequantize_linear(ctx: ConvertContext, node: Node) -> Out:
    x, scale, zp = ctx.need(node, 0), ctx.need(node, 1), ctx.input(node, 2)
    if x.type.dtype not in _RANGE and not _is_float8(x.type.dtype):
        raise FrontendError(f"DequantizeLinear of {x.type.dtype} is not supported")
    y = _dequantize(ctx, x, scale, zp, int(ctx.attr(node, "axis", 1)), int(ctx.attr(node, "block_size", 0)))
    out = ctx.attr(node, "output_dtype", 0)
    return [ctx.cast(y, onnx_dtype(int(out))) if out else y]


@onnx_op("QuantizeLinear", since=13)
def _quantize_linear(ctx: ConvertContext, node: Node) -> Out:
    x, scale, zp = ctx.need(node, 0), ctx.need(node, 1), ctx.input(node, 2)
    out_attr = int(ctx.attr(node, "output_dtype", 0))
    out = zp.type.dtype if zp is not None else (onnx_dtype(out_attr) if out_attr else DType.u8)
    axis, block = int(ctx.attr(node, "axis", 1)), int(ctx.attr(node, "block_size", 0))
    if _is_float8(out):
        return [_quantize_float8(ctx, node, x, scale, zp, out, axis, block)]
    return [_quantize(ctx, x, scale, zp, out, axis, block)]


@onnx_op("DynamicQuantizeLinear", since=11)
def _dynamic_quantize_linear(ctx: ConvertContext, node: Node) -> Out:
    # scale = (max(0, max x) - min(0, min x)) / 255; zp = saturate(round(-min / scale))
    x = ctx.need(node, 0)
    axes = list(range(x.type.rank))
    zero = like(ctx, 0, x)
    hi = ctx.op("core.max", ctx.op("core.reduce_max", x, axes=axes), zero)
    lo = ctx.op("core.min", ctx.op("core.reduce_min", x, axes=axes), zero)
    scale = ctx.op("core.div", ctx.op("core.sub", hi, lo), like(ctx, 255, x))
    zp_f = ctx.op("core.round", ctx.op("core.div", ctx.op("core.neg", lo), scale))
    zp_f = ctx.op("core.min", ctx.op("core.max", zp_f, like(ctx, 0, zp_f)), like(ctx, 255, zp_f))
    zp = ctx.cast(zp_f, DType.u8)
    return [_quantize(ctx, x, scale, zp, DType.u8, 1, 0), scale, zp]


@onnx_op("QLinearMatMul", since=10)
def _qlinear_matmul(ctx: ConvertContext, node: Node) -> Out:
    # quantize(dequantize(a) @ dequantize(b), y_scale, y_zero_point)
    a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp = (ctx.need(node, i) for i in range(8))
    if a.type.dtype not in _RANGE or b.type.dtype not in _RANGE:
        raise FrontendError(f"QLinearMatMul of {a.type.dtype} x {b.type.dtype} is not supported")
    fa = _dequantize(ctx, a, ctx.cast(a_s, DType.f32), a_zp, -2, 0)
    fb = _dequantize(ctx, b, ctx.cast(b_s, DType.f32), b_zp, -1, 0)
    y = ctx.op("core.matmul", fa, fb)
    return [_quantize(ctx, y, ctx.cast(y_s, DType.f32), y_zp, y_zp.type.dtype, -1, 0)]
