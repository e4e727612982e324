"""ONNX converters for shape and layout ops: Constant, Shape, Reshape, Transpose, Concat,
Split, Slice, Gather, Expand, (Un)Squeeze, Flatten, Where, Cast, Range, ConstantOfShape.

Ops on shape tensors are evaluated here (``ctx.shape_value``), so computed shapes end up
as attributes of views and no shape arithmetic reaches the IR.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext, onnx_dtype
from optllm.frontends.onnx.dims import BIG, broadcast, clamp_index, norm_axis, reshape_target, resolve_minmax
from optllm.frontends.onnx.registry import converter
from optllm.ir import DType, Value
from optllm.ir.symbolic import Dim, SymExpr, product

Node = Any
Out = list[Value | None]


def reshape(ctx: ConvertContext, x: Value, shape: list[Dim]) -> Value:
    """``x`` viewed as ``shape`` (no op when the shape is already that)."""
    if list(x.type.shape) == list(shape):
        return x
    out = ctx.op("core.reshape", x, shape=shape)
    dims = ctx.shape_value(x)
    if dims is not None and len(shape) <= 1:
        ctx.set_shape_value(out, dims)
    return out


def _dims_out(ctx: ConvertContext, dims: list[Dim], like: Value | None = None, scalar: bool = False) -> Value:
    """A shape-valued result with the element type of ``like`` (i64 by default)."""
    out = ctx.shape_tensor(dims, scalar=scalar)
    if like is not None and like.type.dtype != DType.i64:
        out2 = ctx.cast(out, like.type.dtype)
        ctx.set_shape_value(out2, dims)
        return out2
    return out


# -- constants ----------------------------------------------------------------------------------
@converter("Constant", since=1)
def _constant(ctx: ConvertContext, node: Node) -> Out:
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        v = ctx.attr(node, key, None)
        if v is not None:
            arr = np.asarray(v) if dtype is None else np.asarray(v, dtype=dtype)
            return [ctx.constant(arr)]
    raise FrontendError("only tensor, float(s) and int(s) constants are supported")


@converter("ConstantOfShape", since=9)
def _constant_of_shape(ctx: ConvertContext, node: Node) -> Out:
    dims = ctx.dims(node, 0, "shape")
    value = ctx.attr(node, "value", None)
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    dtype = DType.from_numpy(fill.dtype)
    static = [d for d in dims if isinstance(d, int)]
    if len(static) == len(dims):
        return [ctx.constant(np.full(static, fill[0], dtype=fill.dtype))]
    return [ctx.op("core.full", shape=dims, value=float(fill[0]), dtype=dtype)]


@converter("Identity", since=1)
def _identity(ctx: ConvertContext, node: Node) -> Out:
    return [ctx.need(node, 0)]


# -- shapes -----------------------------------------------------------------------------------
@converter("Shape", since=1)
def _shape(ctx: ConvertContext, node: Node) -> Out:
    shape = list(ctx.need(node, 0).type.shape)
    rank = len(shape)
    start = ctx.attr(node, "start", 0)
    end = ctx.attr(node, "end", rank)
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = max(0, min(rank, end + rank if end < 0 else end))
    return [ctx.shape_tensor(shape[start:end])]


@converter("Size", since=1)
def _size(ctx: ConvertContext, node: Node) -> Out:
    return [ctx.shape_tensor([product(tuple(ctx.need(node, 0).type.shape))], scalar=True)]


@converter("Reshape", since=5)
def _reshape(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    spec = ctx.dims(node, 1, "shape")
    target = reshape_target(list(x.type.shape), spec, bool(ctx.attr(node, "allowzero", 0)))
    return [reshape(ctx, x, resolve_minmax(list(x.type.shape), target))]


@converter("Flatten", since=1)
def _flatten(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    shape = list(x.type.shape)
    axis = ctx.attr(node, "axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    return [reshape(ctx, x, [product(tuple(shape[:axis])), product(tuple(shape[axis:]))])]


def _axes_arg(ctx: ConvertContext, node: Node) -> list[int] | None:
    if ctx.opset >= 13:
        return ctx.ints(node, 1, "axes")
    axes = ctx.attr(node, "axes", None)
    return None if axes is None else list(axes)


@converter("Unsqueeze", since=1)
def _unsqueeze(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    axes = _axes_arg(ctx, node) or []
    rank = x.type.rank + len(axes)
    norm = sorted(a % rank for a in axes)
    shape = list(x.type.shape)
    for a in norm:
        shape.insert(a, 1)
    out = reshape(ctx, x, shape)
    dims = ctx.shape_value(x)
    if dims is not None and rank <= 1:
        ctx.set_shape_value(out, dims)
    return [out]


@converter("Squeeze", since=1)
def _squeeze(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    shape = list(x.type.shape)
    axes = _axes_arg(ctx, node)
    drop = {a % len(shape) for a in axes} if axes else {i for i, d in enumerate(shape) if d == 1}
    out = reshape(ctx, x, [d for i, d in enumerate(shape) if i not in drop])
    dims = ctx.shape_value(x)
    if dims is not None:
        ctx.set_shape_value(out, dims)
    return [out]


@converter("Transpose", since=1)
def _transpose(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    perm = ctx.attr(node, "perm", None)
    perm = list(range(x.type.rank))[::-1] if perm is None else list(perm)
    if perm == list(range(x.type.rank)):
        return [x]
    return [ctx.op("core.permute", x, perm=perm)]


@converter("Concat", since=4)
def _concat(ctx: ConvertContext, node: Node) -> Out:
    xs = [v for v in ctx.inputs(node) if v is not None]
    axis = norm_axis(ctx.attr(node, "axis"), xs[0].type.rank)
    known = [ctx.shape_value(v) for v in xs]
    if xs[0].type.rank == 1 and all(k is not None for k in known):
        dims = [d for k in known for d in (k or [])]
        return [_dims_out(ctx, dims, xs[0])]
    xs = [v for v in xs if v.type.shape[axis] != 0]
    if len(xs) == 1:
        return [xs[0]]
    return [ctx.op("core.concat", *xs, axis=axis)]


@converter("Split", since=13)
def _split(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    axis = norm_axis(ctx.attr(node, "axis", 0), x.type.rank)
    sizes = ctx.ints(node, 1, "split")
    dim = x.type.shape[axis]
    if sizes is None:
        n = ctx.attr(node, "num_outputs", len(node.output))
        if not isinstance(dim, int):
            raise FrontendError(f"cannot split the symbolic dim {dim} into {n} parts")
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    return list(ctx.create("core.split", [x], {"axis": axis, "sizes": sizes}).results)


# -- slicing and indexing -------------------------------------------------------------------------------
def slice_range(dim: int, start: int, end: int, step: int) -> range:
    """The indices ONNX ``Slice`` takes from an axis of static size ``dim``: negative bounds
    count from the end, then starts and ends are clamped to [0, dim] (step > 0) or start to
    [0, dim-1] and end to [-1, dim-1] (step < 0), as the spec says (not as Python's slices)."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return range(start, end, step)


def flip(ctx: ConvertContext, x: Value, axis: int) -> Value:
    """``x`` reversed along ``axis``: a gather of ``arange(n-1, -1, -1)`` (n may be symbolic)."""
    n = x.type.shape[axis]
    if isinstance(n, int):
        idx = ctx.constant(np.arange(n - 1, -1, -1, dtype=np.int64))
    else:
        idx = ctx.op("core.arange", start=n - 1, end=-1, step=-1, dtype=DType.i64)
    return ctx.op("core.gather", x, idx, axis=axis)


def _slice_static(ctx: ConvertContext, x: Value, axis: int, start: int, end: int, step: int) -> Value:
    dim = int(x.type.shape[axis])
    r = slice_range(dim, start, end, step)
    if step > 0:
        if r.start == 0 and r.stop >= dim and step == 1:
            return x
        return ctx.op("core.slice", x, axis=axis, start=r.start, end=max(r.stop, r.start), step=step)
    if len(r) == 0:
        return ctx.op("core.slice", x, axis=axis, start=0, end=0, step=1)
    # a backward window: the forward slice over the same elements, then reversed
    first = r[-1]
    fwd = x if (first == 0 and r.start == dim - 1 and step == -1) else \
        ctx.op("core.slice", x, axis=axis, start=first, end=r.start + 1, step=-step)
    return flip(ctx, fwd, axis)


def _slice_symbolic(ctx: ConvertContext, x: Value, axis: int, s: Dim, e: Dim, step: int) -> Value:
    """One axis of a Slice whose dim or bounds are symbolic (no clamping can be decided:
    bounds must lie within the axis, as they do in exported models)."""
    dim = x.type.shape[axis]
    if step > 0:
        lo = clamp_index(s, dim, step, False) if isinstance(s, int) else s
        hi = clamp_index(e, dim, step, True) if isinstance(e, int) else e
        if step == 1 and lo == 0 and hi == dim:
            return x
        if isinstance(dim, int) and (isinstance(lo, SymExpr) or isinstance(hi, SymExpr)):
            # a symbolic window into a static dim (position tables sliced to the sequence):
            # gather arange(lo, hi) so the result has the symbolic length, not min(dim, hi)
            idx = ctx.op("core.arange", start=lo, end=hi, step=step, dtype=DType.i64)
            return ctx.op("core.gather", x, idx, axis=axis)
        return ctx.op("core.slice", x, axis=axis, start=lo, end=hi, step=step)
    # step < 0: start at s (the last element when s is past the end), stop after e (-1: the front)
    lo = dim - 1 if isinstance(s, int) and s >= BIG else (dim + s if isinstance(s, int) and s < 0 else s)
    hi = -1 if isinstance(e, int) and e <= -BIG else (dim + e if isinstance(e, int) and e < 0 else e)
    if step == -1 and lo == dim - 1 and hi == -1:
        return flip(ctx, x, axis)
    idx = ctx.op("core.arange", start=lo, end=hi, step=step, dtype=DType.i64)
    return ctx.op("core.gather", x, idx, axis=axis)


@converter("Slice", since=13)
def _slice(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    starts = ctx.dims(node, 1, "starts")
    ends = ctx.dims(node, 2, "ends")
    axes = ctx.ints(node, 3, "axes") or list(range(len(starts)))
    steps = ctx.ints(node, 4, "steps") or [1] * len(starts)
    if any(st == 0 for st in steps):
        raise FrontendError("Slice steps must not be 0")
    known = ctx.shape_value(x)
    s0, e0 = starts[0], ends[0]
    if known is not None and x.type.rank == 1 and len(axes) == 1 and isinstance(s0, int) and isinstance(e0, int):
        return [_dims_out(ctx, [known[i] for i in slice_range(len(known), s0, e0, steps[0])], x)]
    out = x
    for axis, s, e, step in zip(axes, starts, ends, steps):
        axis = norm_axis(axis, x.type.rank)
        if isinstance(out.type.shape[axis], int) and isinstance(s, int) and isinstance(e, int):
            out = _slice_static(ctx, out, axis, s, e, step)
        else:
            out = _slice_symbolic(ctx, out, axis, s, e, step)
    return [out]


def normalized_indices(ctx: ConvertContext, idx: Value, n: Dim) -> Value:
    """``where(idx < 0, idx + n, idx)``: ONNX indices count from the end when negative, IR
    gathers (and the cpu kernels) read them as offsets."""
    c = ctx.const_value(idx)
    if c is not None and isinstance(n, int):
        return ctx.constant(np.where(c < 0, c + n, c).astype(c.dtype))
    dt = idx.type.dtype
    size = ctx.scalar(n, dt) if isinstance(n, int) else ctx.cast(ctx.shape_tensor([n], scalar=True), dt)
    neg = ctx.op("core.lt", idx, ctx.scalar(0, dt))
    return ctx.op("core.where", neg, ctx.op("core.add", idx, size), idx)


@converter("Gather", since=13)
def _gather(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    idx = ctx.need(node, 1)
    axis = norm_axis(ctx.attr(node, "axis", 0), x.type.rank)
    known = ctx.shape_value(x)
    ci = ctx.const_value(idx)
    if known is not None and ci is not None and x.type.rank == 1 and ci.ndim <= 1:
        picked = [known[int(i)] for i in ci.reshape(-1)]
        return [_dims_out(ctx, picked, x, scalar=ci.ndim == 0)]
    dim = x.type.shape[axis]
    if ci is not None and ci.size == 1 and isinstance(dim, int):  # one index: a slice (+ reshape)
        i = int(ci.reshape(-1)[0])
        start: Dim = i if i >= 0 else dim + i
        out = ctx.op("core.slice", x, axis=axis, start=start, end=start + 1, step=1)
        shape = list(x.type.shape)
        shape[axis: axis + 1] = list(ci.shape)
        return [reshape(ctx, out, shape)]
    if idx.type.dtype not in (DType.i64, DType.i32):
        idx = ctx.cast(idx, DType.i64)
    idx = normalized_indices(ctx, idx, dim)
    if axis == 0 and x.type.rank == 2 and ctx.const_value(x) is not None:
        return [ctx.op("nn.embedding", x, idx)]
    return [ctx.op("core.gather", x, idx, axis=axis)]


@converter("Expand", since=8)
def _expand(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    dims = ctx.dims(node, 1, "shape")
    out_shape = broadcast(list(x.type.shape), dims)
    if len(out_shape) > x.type.rank:
        ones: list[Dim] = [1] * (len(out_shape) - x.type.rank)
        x = reshape(ctx, x, ones + list(x.type.shape))
    if list(x.type.shape) == out_shape:
        return [x]
    return [ctx.op("core.expand", x, shape=out_shape)]


@converter("Tile", since=13)
def _tile(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    reps = ctx.ints(node, 1, "repeats") or []
    out = x
    for axis, r in enumerate(reps):
        if r != 1:
            out = ctx.op("core.concat", *([out] * r), axis=axis)
    return [out]


@converter("Where", since=9)
def _where(ctx: ConvertContext, node: Node) -> Out:
    cond, x, y = ctx.need(node, 0), ctx.need(node, 1), ctx.need(node, 2)
    c = ctx.const_value(cond)
    kx, ky = ctx.shape_value(x), ctx.shape_value(y)
    if c is not None and kx is not None and ky is not None and x.type.rank <= 1 and y.type.rank <= 1:
        n = max(c.size, len(kx), len(ky))
        cs = np.broadcast_to(c.reshape(-1), (n,))
        kx = kx * n if len(kx) == 1 else kx
        ky = ky * n if len(ky) == 1 else ky
        return [_dims_out(ctx, [a if t else b for t, a, b in zip(cs, kx, ky)], x)]
    dtype = ctx.broadcast_dtype(x, y)
    return [ctx.op("core.where", ctx.cast(cond, DType.bool), ctx.cast(x, dtype), ctx.cast(y, dtype))]


def saturating_cast(ctx: ConvertContext, node: Node, x: Value, dtype: DType) -> Value:
    """``core.cast`` to ``dtype``; into float8 with ``saturate`` (the default) values past the
    largest finite float8, infinities included, become it first (NaN stays NaN)."""
    if dtype.bits != 8 or not dtype.is_float or not x.type.dtype.is_float or not ctx.attr(node, "saturate", 1):
        return ctx.cast(x, dtype)
    import ml_dtypes

    top = float(ml_dtypes.finfo(dtype.to_numpy()).max)
    # clip(x, -max, max) -> cast
    low = ctx.constant(np.asarray(-top, x.type.dtype.to_numpy()))
    high = ctx.constant(np.asarray(top, x.type.dtype.to_numpy()))
    return ctx.cast(ctx.op("core.min", ctx.op("core.max", x, low), high), dtype)


@converter("Cast", since=13)
def _cast(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    dtype = onnx_dtype(ctx.attr(node, "to"), f"Cast node '{node.name}'")
    out = saturating_cast(ctx, node, x, dtype)
    dims = ctx.shape_value(x)
    if dims is not None and dtype.is_int:
        ctx.set_shape_value(out, dims)
    return [out]


@converter("CastLike", since=15)
def _cast_like(ctx: ConvertContext, node: Node) -> Out:
    return [saturating_cast(ctx, node, ctx.need(node, 0), ctx.need(node, 1).type.dtype)]


@converter("Range", since=11)
def _range(ctx: ConvertContext, node: Node) -> Out:
    start = ctx.dims(node, 0, "start")[0]
    limit = ctx.dims(node, 1, "limit")[0]
    delta = ctx.dims(node, 2, "delta")[0]
    dtype = ctx.need(node, 0).type.dtype
    if not isinstance(delta, int):
        raise FrontendError("Range needs a constant step")
    if isinstance(start, int) and isinstance(limit, int):
        return [ctx.constant(np.arange(start, limit, delta).astype(dtype.to_numpy()))]
    if delta != 1 and isinstance(limit, SymExpr):
        raise FrontendError("Range with a symbolic limit needs step 1")
    return [ctx.op("core.arange", start=start, end=limit, step=delta, dtype=dtype)]
