"""ONNX converters for elementwise ops: arithmetic, comparisons, logic and unary math.

Integer arithmetic on shape tensors (``Shape -> Gather -> Mul``) is done on dims here, so the
result stays a known shape value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optllm.frontends.onnx.context import ConvertContext
from optllm.frontends.onnx.dims import dim_binop
from optllm.frontends.onnx.registry import converter
from optllm.ir import DType, Value
from optllm.ir.ops import all_opdefs
from optllm.ir.symbolic import SymExpr, sym_max, sym_min

Node = Any
Out = list[Value | None]

_BINARY = {"Add": "core.add", "Sub": "core.sub", "Mul": "core.mul", "Div": "core.div"}
_COMPARE = {"Equal": "core.eq", "Less": "core.lt", "LessOrEqual": "core.le", "Greater": "core.gt",
            "GreaterOrEqual": "core.ge"}
_LOGIC = {"And": "core.and", "Or": "core.or", "Xor": "core.xor"}
# One-operand ops that declare their ONNX operator (``OpDef.onnx``: the unary math ops, Not),
# plus Relu, which the IR keeps in the nn dialect with its activation epilogue.
_UNARY = {d.onnx: d.name for d in all_opdefs().values() if d.onnx and d.operands == ("x",)} | {"Relu": "nn.relu"}


def _shape_operands(ctx: ConvertContext, a: Value, b: Value) -> tuple[list[Any], list[Any]] | None:
    """Both operands as dim lists of equal length, when they are 0-D/1-D known shape values
    and at least one holds a symbolic dim."""
    if a.type.rank > 1 or b.type.rank > 1 or not a.type.dtype.is_int:
        return None
    da, db = ctx.shape_value(a), ctx.shape_value(b)
    if da is None or db is None or not any(isinstance(d, SymExpr) for d in da + db):
        return None
    n = max(len(da), len(db))
    if len(da) not in (1, n) or len(db) not in (1, n):
        return None
    return (da * n if len(da) == 1 else da), (db * n if len(db) == 1 else db)


def _binary(ctx: ConvertContext, node: Node, name: str) -> Out:
    a, b = ctx.need(node, 0), ctx.need(node, 1)
    pair = _shape_operands(ctx, a, b)
    if pair is not None:
        dims = [dim_binop(node.op_type, x, y) for x, y in zip(*pair)]
        scalar = a.type.rank == 0 and b.type.rank == 0
        return [ctx.shape_tensor(dims, scalar=scalar)]
    dtype = ctx.broadcast_dtype(a, b)
    a, b = ctx.cast(a, dtype), ctx.cast(b, dtype)
    if node.op_type == "Div" and dtype.is_int:
        return [_int_div(ctx, a, b)]
    return [ctx.op(name, a, b)]


def _int_div(ctx: ConvertContext, a: Value, b: Value) -> Value:
    """ONNX integer Div truncates toward zero: floordiv, then fix the negative quotients."""
    ca, cb = ctx.const_value(a), ctx.const_value(b)
    if ca is not None and cb is not None:
        return ctx.constant(np.trunc(ca / cb).astype(ca.dtype))
    # trunc(a / b) = floor(a / b) + 1 where the remainder is non-zero and the signs differ
    q, r = ctx.op("core.floordiv", a, b), ctx.op("core.mod", a, b)
    zero = ctx.constant(np.zeros((), dtype=a.type.dtype.to_numpy()))
    one = ctx.constant(np.ones((), dtype=a.type.dtype.to_numpy()))
    signs = ctx.op("core.ne", ctx.op("core.lt", a, zero), ctx.op("core.lt", b, zero))
    fix = ctx.op("core.and", signs, ctx.op("core.ne", r, zero))
    return ctx.op("core.where", fix, ctx.op("core.add", q, one), q)


def _compare(ctx: ConvertContext, node: Node, name: str) -> Out:
    a, b = ctx.need(node, 0), ctx.need(node, 1)
    pair = _shape_operands(ctx, a, b)
    if pair is not None and node.op_type == "Equal":
        decided = [_dims_equal(x, y) for x, y in zip(*pair)]
        if all(d is not None for d in decided):
            arr = np.asarray(decided, dtype=bool)
            return [ctx.constant(arr.reshape(()) if a.type.rank == 0 and b.type.rank == 0 else arr)]
    dtype = ctx.broadcast_dtype(a, b)
    return [ctx.op(name, ctx.cast(a, dtype), ctx.cast(b, dtype))]


def _dims_equal(x: Any, y: Any) -> bool | None:
    if x == y:
        return True
    if isinstance(x, int) and isinstance(y, int):
        return False
    other = x if isinstance(x, int) else y if isinstance(y, int) else None
    if other is not None and other < 0:  # a size is never negative
        return False
    return None


def _register_table() -> None:
    for op_type, name in _BINARY.items():
        converter(op_type, since=7)(lambda ctx, node, _n=name: _binary(ctx, node, _n))
    for op_type, name in _COMPARE.items():
        converter(op_type, since=7)(lambda ctx, node, _n=name: _compare(ctx, node, _n))
    for op_type, name in _LOGIC.items():
        converter(op_type, since=7)(lambda ctx, node, _n=name: [ctx.op(_n, ctx.need(node, 0), ctx.need(node, 1))])
    for op_type, name in _UNARY.items():
        converter(op_type, since=6)(lambda ctx, node, _n=name: [ctx.op(_n, ctx.need(node, 0))])


_register_table()


@converter("Pow", since=7)
def _pow(ctx: ConvertContext, node: Node) -> Out:
    # the result has X's type; Y may be of another numeric type. Integer powers are computed
    # in f64 (exact below 2**53) and truncated back, as onnxruntime casts std::pow's result.
    x, y = ctx.need(node, 0), ctx.need(node, 1)
    if x.type.dtype.is_float:
        return [ctx.op("core.pow", x, ctx.cast(y, x.type.dtype))]
    wide = ctx.op("core.pow", ctx.cast(x, DType.f64), ctx.cast(y, DType.f64))
    return [ctx.cast(wide, x.type.dtype)]


_DIM_FNS = {"core.max": sym_max, "core.min": sym_min}


def _variadic(ctx: ConvertContext, node: Node, name: str) -> Out:
    xs = [v for v in ctx.inputs(node) if v is not None]
    if name in _DIM_FNS and len(xs) == 2:
        pair = _shape_operands(ctx, xs[0], xs[1])
        if pair is not None:  # min(256, S) on shape values stays a dim (sliding-window exports)
            dims = [_DIM_FNS[name](x, y) for x, y in zip(*pair)]
            return [ctx.shape_tensor(dims, scalar=xs[0].type.rank == 0 and xs[1].type.rank == 0)]
    dtype = ctx.broadcast_dtype(*xs)
    out = ctx.cast(xs[0], dtype)
    for v in xs[1:]:
        out = ctx.op(name, out, ctx.cast(v, dtype))
    return [out]


@converter("Max", since=8)
def _max(ctx: ConvertContext, node: Node) -> Out:
    return _variadic(ctx, node, "core.max")


@converter("Min", since=8)
def _min(ctx: ConvertContext, node: Node) -> Out:
    return _variadic(ctx, node, "core.min")


@converter("Sum", since=8)
def _sum(ctx: ConvertContext, node: Node) -> Out:
    return _variadic(ctx, node, "core.add")


@converter("Clip", since=13)
def _clip(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    lo, hi = ctx.input(node, 1), ctx.input(node, 2)
    if lo is not None:
        x = ctx.op("core.max", x, ctx.cast(lo, x.type.dtype))
    if hi is not None:
        x = ctx.op("core.min", x, ctx.cast(hi, x.type.dtype))
    return [x]

