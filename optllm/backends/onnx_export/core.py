"""Lowerings of the ``core`` dialect to standard ONNX ops, one small function per op kind.

Each lowering is ``fn(e, op, ins, outs)``: it emits nodes into the emitter ``e`` reading the
tensor names ``ins`` and writing the names ``outs``. Shape attributes with symbols become
shape tensors computed from the graph inputs (``Emitter.shape``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from optllm.backends.onnx_export.context import I64_MAX, Emitter, ExportError, onnx_dtype
from optllm.ir.ops import Operation, all_opdefs
from optllm.ir.types import DType

Lowering = Callable[[Emitter, Operation, list[str], list[str]], None]
LOWERINGS: dict[str, Lowering] = {}


def _simple(op_name: str, onnx_op: str, **attrs: Any) -> None:
    def lower(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
        e.node(onnx_op, ins, outs, **attrs)

    LOWERINGS[op_name] = lower


# Ops that declare their one-to-one ONNX operator (``OpDef.onnx``) export as that node.
for _def in all_opdefs().values():
    if _def.onnx:
        _simple(_def.name, _def.onnx)


def _op(name: str) -> Callable[[Lowering], Lowering]:
    def deco(fn: Lowering) -> Lowering:
        LOWERINGS[name] = fn
        return fn

    return deco


@_op("core.rsqrt")
def _rsqrt(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    # rsqrt(x) -> 1 / sqrt(x), as the reference computes it
    e.one("Reciprocal", [e.one("Sqrt", ins)], outs[0])


@_op("core.ne")
def _ne(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("Not", [e.one("Equal", ins)], outs[0])


@_op("core.floordiv")
def _floordiv(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    if op.result.type.dtype.is_float:
        e.one("Floor", [e.one("Div", ins)], outs[0])
        return
    # floor(x / y) for integers: (x - mod(x, y)) / y divides exactly
    rem = e.one("Mod", ins, fmod=0)
    e.one("Div", [e.one("Sub", [ins[0], rem]), ins[1]], outs[0])


@_op("core.mod")
def _mod(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    if not op.result.type.dtype.is_float:
        e.one("Mod", ins, outs[0], fmod=0)
        return
    # Python's (numpy's) x mod y for floats: r = fmod(x, y); r + y where r != 0 and sign(r) != sign(y)
    r = e.one("Mod", ins, fmod=1)
    zero = e.scalar(0, op.result.type.dtype)
    differ = e.one("Xor", [e.one("Less", [r, zero]), e.one("Less", [ins[1], zero])])
    fix = e.one("And", [e.one("Not", [e.one("Equal", [r, zero])]), differ])
    e.one("Where", [fix, e.one("Add", [r, ins[1]]), r], outs[0])


@_op("core.cast")
def _cast(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    dt: DType = op.attrs["dtype"]
    if dt.bits != 8 or not dt.is_float:
        e.one("Cast", ins, outs[0], to=onnx_dtype(dt))
        return
    # the IR's cast rounds like numpy (overflow: NaN or inf); ONNX's float8 Cast saturates unless told not to
    if e.opset < 19:
        raise ExportError(f"a cast to {dt} needs ONNX opset 19 or newer (float8), exporting at {e.opset}", op)
    e.one("Cast", ins, outs[0], to=onnx_dtype(dt), saturate=0)


@_op("core.constant")
def _constant(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("Identity", [e.const(op.attrs["value"].to_array())], outs[0])


@_op("core.reshape")
def _reshape(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    # the IR's shape is literal: a static 0 is an empty dim, not ONNX's "copy the input dim"
    zero = any(isinstance(d, int) and d == 0 for d in op.attrs["shape"])
    e.one("Reshape", [ins[0], e.shape(op.attrs["shape"])], outs[0], allowzero=1 if zero else None)


@_op("core.expand")
def _expand(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("Expand", [ins[0], e.shape(op.attrs["shape"])], outs[0])


@_op("core.permute")
def _permute(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("Transpose", ins, outs[0], perm=list(op.attrs["perm"]))


@_op("core.slice")
def _slice(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    a = op.attrs
    end = a["end"]
    end_t = e.dim(I64_MAX if isinstance(end, int) and end >= 2**31 else end)
    args = [ins[0], e.dim(a["start"]), end_t, e.const(np.asarray([a["axis"]], np.int64)),
            e.const(np.asarray([a["step"]], np.int64))]
    e.one("Slice", args, outs[0])


@_op("core.concat")
def _concat(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("Concat", ins, outs[0], axis=op.attrs["axis"])


@_op("core.split")
def _split(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    sizes = op.attrs["sizes"]
    if all(isinstance(d, int) for d in sizes):
        e.node("Split", [ins[0], e.shape(sizes)], outs, axis=op.attrs["axis"])
        return
    # symbolic sizes: one Slice per piece, so importers and engines see static split points
    axis, step = e.const(np.asarray([op.attrs["axis"]], np.int64)), e.const(np.asarray([1], np.int64))
    start: Any = 0
    for size, out in zip(sizes, outs):
        end = start + size
        e.one("Slice", [ins[0], e.dim(start), e.dim(end), axis, step], out)
        start = end


_REDUCE = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin",
           "prod": "ReduceProd"}


def _reduce_lowering(kind: str) -> Lowering:
    def lower(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
        axes, keep = op.attrs["axes"], op.attrs["keepdim"]
        if kind in ("any", "all"):
            # any/all over bools: max/min over 0/1 integers
            x = e.one("Cast", ins, to=onnx_dtype(DType.i32))
            r = e.reduce("ReduceMax" if kind == "any" else "ReduceMin", x, axes, keep)
            e.one("Cast", [r], outs[0], to=onnx_dtype(DType.bool))
            return
        e.reduce(_REDUCE[kind], ins[0], axes, keep, outs[0])

    return lower


for _kind in ("sum", "mean", "max", "min", "prod", "any", "all"):
    LOWERINGS[f"core.reduce_{_kind}"] = _reduce_lowering(_kind)


@_op("core.argmax")
def _argmax(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("ArgMax", ins, outs[0], axis=op.attrs["axis"], keepdims=int(op.attrs["keepdim"]))


@_op("core.argmin")
def _argmin(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("ArgMin", ins, outs[0], axis=op.attrs["axis"], keepdims=int(op.attrs["keepdim"]))


@_op("core.topk")
def _topk(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    # sorted, ties broken towards the lower index, as onnxruntime's TopK does
    k = e.const(np.asarray([op.attrs["k"]], np.int64))
    e.node("TopK", [ins[0], k], outs, axis=op.attrs["axis"], largest=int(op.attrs["largest"]), sorted=1)


@_op("core.cumsum")
def _cumsum(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("CumSum", [ins[0], e.const(np.asarray(op.attrs["axis"], np.int64))], outs[0])


@_op("core.cumprod")
def _cumprod(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    axis = op.attrs["axis"] % op.result.type.rank
    if e.opset >= 26:
        e.one("CumProd", [ins[0], e.const(np.asarray(axis, np.int64))], outs[0])
        return
    # before CumProd (opset 26): y[..., i] = prod_j where(j <= i, x[..., j], 1), the axis moved last
    rank = op.result.type.rank
    perm = [*(d for d in range(rank) if d != axis), axis]
    x = ins[0] if axis == rank - 1 else e.one("Transpose", ins, perm=perm)
    n = e.one("Shape", ins, start=axis, end=axis + 1)
    keep = e.lower_mask(e.one("Concat", [n, n], axis=0))
    rows = e.one("Where", [keep, e.one("Unsqueeze", [x, e.const(np.asarray([-2], np.int64))]),
                           e.scalar(1, op.result.type.dtype)])
    if axis == rank - 1:
        e.reduce("ReduceProd", rows, [-1], False, outs[0])
        return
    inverse = [perm.index(d) for d in range(rank)]
    e.one("Transpose", [e.reduce("ReduceProd", rows, [-1], False)], outs[0], perm=inverse)


_EINSUM_TYPES = (DType.f32, DType.f64, DType.i32, DType.i64)  # what onnxruntime's Einsum kernel takes


@_op("core.einsum")
def _einsum(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    dt = op.result.type.dtype
    eq = op.attrs["equation"]
    if dt in _EINSUM_TYPES:
        e.one("Einsum", ins, outs[0], equation=eq)
        return
    if not dt.is_float:
        raise ExportError(f"no ONNX lowering for einsum over {dt.name} (onnxruntime takes f32/f64/i32/i64)", op)
    # f16/bf16: computed in f32 and rounded once, as the reference does
    f32 = onnx_dtype(DType.f32)
    y = e.one("Einsum", [e.one("Cast", [x], to=f32) for x in ins], equation=eq)
    e.one("Cast", [y], outs[0], to=onnx_dtype(dt))


@_op("core.arange")
def _arange(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    a = op.attrs
    args = [e.scalar_dim(a["start"]), e.scalar_dim(a["end"]), e.const(np.asarray(a["step"], np.int64))]
    if a["dtype"] is DType.i64:
        e.one("Range", args, outs[0])
        return
    e.one("Cast", [e.one("Range", args)], outs[0], to=onnx_dtype(a["dtype"]))


@_op("core.full")
def _full(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    from onnx import numpy_helper

    a = op.attrs
    dt: DType = a["dtype"]
    value = np.asarray(a["value"]).astype(dt.to_numpy()).reshape(1)
    e.one("ConstantOfShape", [e.shape(a["shape"])], outs[0], value=numpy_helper.from_array(value))


@_op("core.triangle")
def _triangle(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    k = e.const(np.asarray(op.attrs["diagonal"], np.int64))
    e.one("Trilu", [ins[0], k], outs[0], upper=int(op.attrs["upper"]))
