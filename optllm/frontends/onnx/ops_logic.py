"""ONNX comparisons, logical and bitwise ops, Where, IsNaN and IsInf.

Comparisons and Where map one to one onto ``core``; bitwise or/xor/not are exact integer
identities over ``core.bitand``, add and sub (two's complement wraps like C).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext
from optllm.frontends.onnx.ops_math import like, onnx_op
from optllm.frontends.onnx.registry import OnnxConverter
from optllm.ir import DType, Value

Node = Any
Out = list[Value | None]


def _binary(ir_name: str) -> OnnxConverter:
    def convert(ctx: ConvertContext, node: Node) -> Out:
        x, y = ctx.need(node, 0), ctx.need(node, 1)
        if x.type.dtype != y.type.dtype:
            raise FrontendError(f"{node.op_type} operands differ in type: {x.type} and {y.type}")
        return [ctx.op(ir_name, x, y)]

    return convert


for _onnx_name, _ir_name in {
    "Equal": "core.eq", "Less": "core.lt", "LessOrEqual": "core.le", "Greater": "core.gt",
    "GreaterOrEqual": "core.ge", "And": "core.and", "Or": "core.or", "Xor": "core.xor",
    "BitwiseAnd": "core.bitand",
}.items():
    onnx_op(_onnx_name)(_binary(_ir_name))


@onnx_op("Not")
def _not(ctx: ConvertContext, node: Node) -> Out:
    return [ctx.op("core.not", ctx.need(node, 0))]


@onnx_op("Where")
def _where(ctx: ConvertContext, node: Node) -> Out:
    c, x, y = ctx.need(node, 0), ctx.need(node, 1), ctx.need(node, 2)
    return [ctx.op("core.where", c, x, y)]


def _int_operands(ctx: ConvertContext, node: Node) -> tuple[Value, Value]:
    x, y = ctx.need(node, 0), ctx.need(node, 1)
    if not x.type.dtype.is_int or x.type.dtype != y.type.dtype:
        raise FrontendError(f"{node.op_type} needs two integer operands of one type, got {x.type} and {y.type}")
    return x, y


@onnx_op("BitwiseOr")
def _bitor(ctx: ConvertContext, node: Node) -> Out:
    # x | y = x + y - (x & y)
    x, y = _int_operands(ctx, node)
    return [ctx.op("core.sub", ctx.op("core.add", x, y), ctx.op("core.bitand", x, y))]


@onnx_op("BitwiseXor")
def _bitxor(ctx: ConvertContext, node: Node) -> Out:
    # x ^ y = x + y - 2 (x & y)
    x, y = _int_operands(ctx, node)
    both = ctx.op("core.bitand", x, y)
    return [ctx.op("core.sub", ctx.op("core.add", x, y), ctx.op("core.add", both, both))]


@onnx_op("BitwiseNot")
def _bitnot(ctx: ConvertContext, node: Node) -> Out:
    # ~x = -1 - x (two's complement; all ones - x for unsigned)
    x = ctx.need(node, 0)
    if not x.type.dtype.is_int:
        raise FrontendError(f"BitwiseNot needs an integer operand, got {x.type}")
    ones = 2**x.type.dtype.bits - 1 if x.type.dtype.is_unsigned else -1
    return [ctx.op("core.sub", like(ctx, ones, x), x)]


@onnx_op("IsNaN")
def _isnan(ctx: ConvertContext, node: Node) -> Out:
    # x != x
    x = ctx.need(node, 0)
    return [ctx.op("core.ne", x, x)]


@onnx_op("IsInf")
def _isinf(ctx: ConvertContext, node: Node) -> Out:
    # (detect_positive and x == inf) or (detect_negative and x == -inf)
    x = ctx.need(node, 0)
    pos, neg = ctx.attr(node, "detect_positive", 1), ctx.attr(node, "detect_negative", 1)
    tests = []
    if pos:
        tests.append(ctx.op("core.eq", x, like(ctx, np.inf, x)))
    if neg:
        tests.append(ctx.op("core.eq", x, like(ctx, -np.inf, x)))
    if not tests:
        return [ctx.op("core.full", shape=list(x.type.shape), value=0.0, dtype=DType.bool)]
    return [tests[0] if len(tests) == 1 else ctx.op("core.or", tests[0], tests[1])]


@onnx_op("BitShift")
def _bitshift(ctx: ConvertContext, node: Node) -> Out:
    # x << s = x * 2^s, x >> s = floor(x / 2^s), in i64 (u64 for u64) then wrapped back; shifts
    # outside [0, width) give 0 (and -1 for a right shift of a negative signed x)
    x, s = _int_operands(ctx, node)
    dt = x.type.dtype
    width = dt.bits
    signed = not dt.is_unsigned
    wide = DType.u64 if dt is DType.u64 else DType.i64  # holds every value of dt
    s64 = ctx.cast(s, DType.i64)  # u64 shifts of 2^63 or more turn negative: outside either way
    outside = ctx.op("core.or", ctx.op("core.lt", s64, like(ctx, 0, s64)), ctx.op("core.ge", s64, like(ctx, width, s64)))
    right = ctx.attr(node, "direction") == "RIGHT"
    top = min(width - 1, 62) if right and wide is DType.i64 else width - 1
    np_wide = wide.to_numpy()
    table = ctx.constant(np.left_shift(np.ones((), np_wide), np.arange(top + 1).astype(np_wide)))
    clamped = ctx.op("core.min", ctx.op("core.max", s64, like(ctx, 0, s64)), like(ctx, top, s64))
    p = ctx.op("core.gather", table, clamped, axis=0)
    x64 = ctx.cast(x, wide)
    zero = like(ctx, 0, x)
    if not right:
        return [ctx.op("core.where", outside, zero, ctx.cast(ctx.op("core.mul", x64, p), dt))]
    shifted = ctx.cast(ctx.op("core.floordiv", x64, p), dt)
    sign = ctx.op("core.where", ctx.op("core.lt", x, zero), like(ctx, -1, x), zero) if signed else zero
    if wide is dt is DType.i64:  # 2^63 is not an i64: a shift by 63 keeps only the sign
        shifted = ctx.op("core.where", ctx.op("core.eq", s64, like(ctx, 63, s64)), sign, shifted)
    return [ctx.op("core.where", outside, sign, shifted)]
