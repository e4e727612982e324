"""ONNX data-movement and miscellany: Range, Trilu, Tile, Pad, Clip, Mod, casts, one-hot, norms.

Everything is a composition of ``core``/``nn`` ops with shapes known at import time: Tile is
reshape + expand + reshape, reflect/edge/wrap Pad is a gather with a constant index table,
Hardmax is ``argmax == arange``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext, onnx_dtype
from optllm.frontends.onnx.ops_math import float_input, like, onnx_op
from optllm.ir import DType, Value
from optllm.ir.symbolic import Dim

Node = Any
Out = list[Value | None]


def static_shape(x: Value, what: str) -> list[int]:
    if not x.type.is_static:
        raise FrontendError(f"{what} needs a static shape, got {x.type}")
    return [int(d) for d in x.type.shape]  # type: ignore[arg-type]


def _scalar(ctx: ConvertContext, node: Node, index: int) -> Any:
    c = ctx.const_value(ctx.need(node, index))
    if c is None:
        raise FrontendError(f"{node.op_type} input #{index} must be known at import time")
    return c.reshape(-1)[0]


@onnx_op("Range")
def _range(ctx: ConvertContext, node: Node) -> Out:
    start, limit, delta = (_scalar(ctx, node, i) for i in range(3))
    dt = ctx.need(node, 0).type.dtype
    n = max(int(np.ceil((limit - start) / delta)), 0)
    values = start + np.arange(n, dtype=np.float64 if dt.is_float else np.int64) * delta
    return [ctx.constant(np.asarray(values, dtype=dt.to_numpy()).reshape(n))]


@onnx_op("Trilu")
def _trilu(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    k = ctx.ints(node, 1, "k") if len(node.input) > 1 else None
    return [ctx.op("core.triangle", x, upper=bool(ctx.attr(node, "upper", 1)), diagonal=k[0] if k else 0)]


@onnx_op("Tile")
def _tile(ctx: ConvertContext, node: Node) -> Out:
    # tile(x[a,b], [r,s]) = reshape(expand(reshape(x, [1,a,1,b]), [r,a,s,b]), [r*a, s*b])
    x = ctx.need(node, 0)
    reps = ctx.ints(node, 1, "repeats") or []
    shape = list(x.type.shape)
    inter = [d for s in shape for d in (1, s)]
    wide: list[Dim] = [d for r, s in zip(reps, shape) for d in (r, s)]
    out: list[Dim] = [r * s for r, s in zip(reps, shape)]  # type: ignore[misc]
    y = ctx.op("core.reshape", x, shape=inter)
    y = ctx.op("core.expand", y, shape=wide)
    return [ctx.op("core.reshape", y, shape=out)]


def _pad_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    i = np.arange(-lo, n + hi)
    if mode == "edge":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    period = 2 * (n - 1)  # reflect: mirror without repeating the edge
    m = np.mod(i, period) if period else np.zeros_like(i)
    return np.where(m < n, m, period - m)


@onnx_op("Pad", since=11)
def _pad(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    rank = x.type.rank
    pads = ctx.ints(node, 1, "pads") or []
    axes = ctx.ints(node, 3, "axes") if len(node.input) > 3 else None
    axes = [a % rank for a in axes] if axes else list(range(rank))
    mode = ctx.attr(node, "mode", "constant")
    fill = ctx.input(node, 2)
    y = x
    for j, ax in enumerate(axes):
        lo, hi = pads[j], pads[j + len(axes)]
        if lo == 0 and hi == 0:
            continue
        n = y.type.shape[ax]
        if mode == "constant":  # any dim: crops are slices, pads are blocks concatenated
            y = _pad_constant(ctx, y, ax, lo, hi, fill)
        elif not isinstance(n, int):
            raise FrontendError(f"Pad mode {mode!r} on a symbolic dim ({n}) is not supported")
        elif mode in ("edge", "reflect", "wrap"):
            y = ctx.op("core.gather", y, ctx.constant(_pad_index(n, lo, hi, mode).astype(np.int64)), axis=ax)
        else:
            raise FrontendError(f"Pad mode {mode!r} is not supported")
    return [y]


def _pad_constant(ctx: ConvertContext, y: Value, ax: int, lo: int, hi: int, fill: Value | None) -> Value:
    # negative pads crop; positive pads concatenate a block of the fill value
    n = y.type.shape[ax]
    if lo < 0 or hi < 0:
        y = ctx.op("core.slice", y, axis=ax, start=max(-lo, 0), end=n - max(-hi, 0))
        lo, hi = max(lo, 0), max(hi, 0)
    scalar = like(ctx, 0, y) if fill is None else ctx.op("core.reshape", fill, shape=[1] * y.type.rank)
    if fill is not None and scalar.type.dtype != y.type.dtype:
        scalar = ctx.cast(scalar, y.type.dtype)
    parts = []
    for size in (lo, None, hi):
        if size is None:
            parts.append(y)
        elif size > 0:
            shape = [size if i == ax else d for i, d in enumerate(y.type.shape)]
            block = ctx.op("core.reshape", scalar, shape=[1] * y.type.rank) if scalar.type.rank == 0 else scalar
            parts.append(ctx.op("core.expand", block, shape=shape))
    return parts[0] if len(parts) == 1 else ctx.op("core.concat", *parts, axis=ax)


@onnx_op("Clip", since=11)
def _clip(ctx: ConvertContext, node: Node) -> Out:
    # min(max(x, lo), hi)
    x = ctx.need(node, 0)
    lo, hi = ctx.input(node, 1), ctx.input(node, 2)
    y = x if lo is None else ctx.op("core.max", x, lo)
    y = y if hi is None else ctx.op("core.min", y, hi)
    if y is x:
        y = ctx.op("core.reshape", x, shape=list(x.type.shape))
    return [y]


@onnx_op("Mod")
def _mod(ctx: ConvertContext, node: Node) -> Out:
    # fmod=0: x mod y with the sign of y; fmod=1: r = x mod y, then r - y where signs differ
    x, y = ctx.need(node, 0), ctx.need(node, 1)
    r = ctx.op("core.mod", x, y)
    if not ctx.attr(node, "fmod", 0):
        return [r]
    zero = like(ctx, 0, x)
    differ = ctx.op("core.ne", ctx.op("core.lt", x, zero), ctx.op("core.lt", y, zero))
    fix = ctx.op("core.and", differ, ctx.op("core.ne", r, like(ctx, 0, r)))
    return [ctx.op("core.where", fix, ctx.op("core.sub", r, y), r)]


@onnx_op("Cast")
def _cast(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    to = onnx_dtype(int(ctx.attr(node, "to")), "Cast's target")
    return [ctx.op("core.cast", x, dtype=to)]


@onnx_op("CastLike")
def _cast_like(ctx: ConvertContext, node: Node) -> Out:
    x, target = ctx.need(node, 0), ctx.need(node, 1)
    return [ctx.op("core.cast", x, dtype=target.type.dtype)]


@onnx_op("Size")
def _size(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    return [ctx.constant(np.asarray(int(np.prod(static_shape(x, "Size"))), dtype=np.int64))]


@onnx_op("EyeLike")
def _eye_like(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    rows, cols = static_shape(x, "EyeLike")
    dt = onnx_dtype(int(ctx.attr(node, "dtype")), "EyeLike") if ctx.attr(node, "dtype", None) else x.type.dtype
    return [ctx.constant(np.eye(rows, cols, k=int(ctx.attr(node, "k", 0)), dtype=dt.to_numpy()))]


@onnx_op("OneHot")
def _one_hot(ctx: ConvertContext, node: Node) -> Out:
    # values[1] where arange(depth) == idx (negative idx counts from depth), values[0] elsewhere
    idx, values = ctx.need(node, 0), ctx.need(node, 2)
    depth = int(_scalar(ctx, node, 1))
    rank = idx.type.rank + 1
    axis = int(ctx.attr(node, "axis", -1)) % rank
    idx = ctx.cast(idx, DType.i64)
    neg = ctx.op("core.lt", idx, like(ctx, 0, idx))
    idx = ctx.op("core.where", neg, ctx.op("core.add", idx, like(ctx, depth, idx)), idx)
    shape = list(idx.type.shape)
    shape.insert(axis, 1)
    idx = ctx.op("core.reshape", idx, shape=shape)
    ar_shape = [depth if i == axis else 1 for i in range(rank)]
    ar = ctx.constant(np.arange(depth, dtype=np.int64).reshape(ar_shape))
    hot = ctx.op("core.eq", idx, ar)
    off, on = (ctx.op("core.reshape", ctx.op("core.slice", values, axis=0, start=i, end=i + 1), shape=[])
               for i in (0, 1))
    return [ctx.op("core.where", hot, on, off)]


@onnx_op("Hardmax", since=13)
def _hardmax(ctx: ConvertContext, node: Node) -> Out:
    # 1 where arange == argmax (first maximum), else 0
    x = ctx.need(node, 0)
    axis = int(ctx.attr(node, "axis", -1)) % x.type.rank
    am = ctx.op("core.argmax", x, axis=axis, keepdim=True)
    n = int(x.type.shape[axis])  # type: ignore[arg-type]
    ar = ctx.constant(np.arange(n, dtype=np.int64).reshape([n if i == axis else 1 for i in range(x.type.rank)]))
    hot = ctx.op("core.eq", am, ar)
    return [ctx.cast(ctx.op("core.expand", hot, shape=list(x.type.shape)), x.type.dtype)]


def _space_perm(ctx: ConvertContext, x: Value, inter: list[int], perm: list[int], out: list[int]) -> Value:
    y = ctx.op("core.reshape", x, shape=inter)
    return ctx.op("core.reshape", ctx.op("core.permute", y, perm=perm), shape=out)


@onnx_op("DepthToSpace")
def _depth_to_space(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    b, c, h, w = static_shape(x, "DepthToSpace")
    s = int(ctx.attr(node, "blocksize"))
    out = [b, c // (s * s), h * s, w * s]
    if ctx.attr(node, "mode", "DCR") == "DCR":
        return [_space_perm(ctx, x, [b, s, s, c // (s * s), h, w], [0, 3, 4, 1, 5, 2], out)]
    return [_space_perm(ctx, x, [b, c // (s * s), s, s, h, w], [0, 1, 4, 2, 5, 3], out)]


@onnx_op("SpaceToDepth")
def _space_to_depth(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    b, c, h, w = static_shape(x, "SpaceToDepth")
    s = int(ctx.attr(node, "blocksize"))
    perm = [0, 3, 5, 1, 2, 4] if ctx.attr(node, "mode", "DCR") == "DCR" else [0, 1, 3, 5, 2, 4]
    return [_space_perm(ctx, x, [b, c, h // s, s, w // s, s], perm, [b, c * s * s, h // s, w // s])]


def _global_pool(ir_name: str) -> Any:
    def convert(ctx: ConvertContext, node: Node) -> Out:
        x = float_input(ctx, node)
        return [ctx.op(ir_name, x, axes=list(range(2, x.type.rank)), keepdim=True)]

    return convert


onnx_op("GlobalAveragePool")(_global_pool("core.reduce_mean"))
onnx_op("GlobalMaxPool")(_global_pool("core.reduce_max"))


@onnx_op("LpNormalization")
def _lp_norm(ctx: ConvertContext, node: Node) -> Out:
    # x / ||x||_p along axis (p in {1, 2})
    x = float_input(ctx, node)
    axis = int(ctx.attr(node, "axis", -1)) % x.type.rank
    p = int(ctx.attr(node, "p", 2))
    if p == 1:
        norm = ctx.op("core.reduce_sum", ctx.op("core.abs", x), axes=[axis], keepdim=True)
    elif p == 2:
        norm = ctx.op("core.sqrt", ctx.op("core.reduce_sum", ctx.op("core.mul", x, x), axes=[axis], keepdim=True))
    else:
        raise FrontendError(f"LpNormalization p={p} is not supported")
    # a zero norm gives 0, not NaN
    zero = like(ctx, 0, x)
    safe = ctx.op("core.where", ctx.op("core.eq", norm, zero), like(ctx, 1, x), norm)
    return [ctx.op("core.where", ctx.op("core.eq", norm, zero), zero, ctx.op("core.div", x, safe))]


@onnx_op("MeanVarianceNormalization")
def _mvn(ctx: ConvertContext, node: Node) -> Out:
    # (x - E[x]) / sqrt(E[x^2] - E[x]^2 + 1e-9)... ONNX: (x - mean) / (sqrt(var) + 1e-9)
    x = float_input(ctx, node)
    axes = [int(a) % x.type.rank for a in ctx.attr(node, "axes", [0, 2, 3])]
    mean = ctx.op("core.reduce_mean", x, axes=axes, keepdim=True)
    mean_sq = ctx.op("core.reduce_mean", ctx.op("core.mul", x, x), axes=axes, keepdim=True)
    var = ctx.op("core.sub", mean_sq, ctx.op("core.mul", mean, mean))
    std = ctx.op("core.add", ctx.op("core.sqrt", var), like(ctx, 1e-9, x))
    return [ctx.op("core.div", ctx.op("core.sub", x, mean), std)]


@onnx_op("BatchNormalization", since=15)
def _batch_norm(ctx: ConvertContext, node: Node) -> Out:
    # inference: (x - mean) / sqrt(var + eps) * scale + bias, per channel (dim 1)
    if ctx.attr(node, "training_mode", 0):
        raise FrontendError("BatchNormalization in training mode is not supported")
    x = float_input(ctx, node)
    shape = [-1 if i == 1 else 1 for i in range(x.type.rank)]
    per_channel = [int(x.type.shape[1]) if d == -1 else 1 for d in shape]  # type: ignore[arg-type]
    scale, bias, mean, var = (ctx.op("core.reshape", ctx.need(node, i), shape=per_channel) for i in range(1, 5))
    eps = like(ctx, ctx.attr(node, "epsilon", 1e-5), x)
    inv = ctx.op("core.div", scale, ctx.op("core.sqrt", ctx.op("core.add", var, eps)))
    return [ctx.op("core.add", ctx.op("core.mul", ctx.op("core.sub", x, mean), inv), bias)]


@onnx_op("InstanceNormalization")
def _instance_norm(ctx: ConvertContext, node: Node) -> Out:
    # (x - mean) / sqrt(var + eps) * scale + bias over the spatial dims
    x = float_input(ctx, node)
    axes = list(range(2, x.type.rank))
    per_channel = [int(x.type.shape[1]) if i == 1 else 1 for i in range(x.type.rank)]  # type: ignore[arg-type]
    scale, bias = (ctx.op("core.reshape", ctx.need(node, i), shape=per_channel) for i in (1, 2))
    mean = ctx.op("core.reduce_mean", x, axes=axes, keepdim=True)
    centered = ctx.op("core.sub", x, mean)
    var = ctx.op("core.reduce_mean", ctx.op("core.mul", centered, centered), axes=axes, keepdim=True)
    eps = like(ctx, ctx.attr(node, "epsilon", 1e-5), x)
    y = ctx.op("core.mul", centered, ctx.op("core.rsqrt", ctx.op("core.add", var, eps)))
    return [ctx.op("core.add", ctx.op("core.mul", y, scale), bias)]


@onnx_op("Compress")
def _compress(ctx: ConvertContext, node: Node) -> Out:
    # gather(x, nonzero(cond)) with cond known at import time
    x = ctx.need(node, 0)
    cond = ctx.const_value(ctx.need(node, 1))
    if cond is None:
        raise FrontendError("Compress condition must be known at import time")
    axis = ctx.attr(node, "axis", None)
    if axis is None:
        x = ctx.op("core.reshape", x, shape=[int(np.prod(static_shape(x, "Compress")))])
        axis = 0
    idx = np.nonzero(cond.reshape(-1))[0].astype(np.int64)
    return [ctx.op("core.gather", x, ctx.constant(idx), axis=int(axis))]


@onnx_op("RMSNormalization", since=23)
def _rms_norm(ctx: ConvertContext, node: Node) -> Out:
    # x / sqrt(mean(x^2 over dims >= axis) + eps) * scale, computed in stash_type (f32)
    x, scale = float_input(ctx, node), ctx.need(node, 1)
    axis = int(ctx.attr(node, "axis", -1)) % x.type.rank
    stash = onnx_dtype(int(ctx.attr(node, "stash_type", 1)), "stash_type")
    xs = ctx.cast(x, stash)
    axes = list(range(axis, x.type.rank))
    ms = ctx.op("core.reduce_mean", ctx.op("core.mul", xs, xs), axes=axes, keepdim=True)
    inv = ctx.op("core.rsqrt", ctx.op("core.add", ms, like(ctx, ctx.attr(node, "epsilon", 1e-5), xs)))
    y = ctx.cast(ctx.op("core.mul", xs, inv), x.type.dtype)
    return [ctx.op("core.mul", y, ctx.cast(scale, x.type.dtype))]


@onnx_op("Dropout", since=12)
def _dropout(ctx: ConvertContext, node: Node) -> Out:
    # inference (or ratio 0): y = x, mask = all true
    x = ctx.need(node, 0)
    training = ctx.const_value(ctx.input(node, 2))
    ratio = ctx.const_value(ctx.input(node, 1))
    if training is not None and bool(np.asarray(training).reshape(-1)[0]) and \
            (ratio is None or float(np.asarray(ratio).reshape(-1)[0]) != 0.0):
        raise FrontendError("Dropout in training mode is random; not supported")
    if ctx.input(node, 2) is not None and training is None:
        raise FrontendError("Dropout training_mode must be known at import time")
    y = ctx.op("core.reshape", x, shape=list(x.type.shape))
    mask = ctx.op("core.full", shape=list(x.type.shape), value=1.0, dtype=DType.bool)
    outs: Out = [y, mask]
    return outs[: max(len(node.output), 1)]


# -- indexing -------------------------------------------------------------------------------------
@onnx_op("GatherElements")
def _gather_elements(ctx: ConvertContext, node: Node) -> Out:
    x, idx = ctx.need(node, 0), ctx.need(node, 1)
    axis = int(ctx.attr(node, "axis", 0)) % x.type.rank
    return [ctx.op("core.gather_elements", x, idx, axis=axis)]


@onnx_op("GatherND")
def _gather_nd(ctx: ConvertContext, node: Node) -> Out:
    # x[i0, i1, ...] with the index tuples in the last dim of indices (batch_dims leading dims shared)
    x, idx = ctx.need(node, 0), ctx.need(node, 1)
    b = int(ctx.attr(node, "batch_dims", 0))
    k = idx.type.shape[-1]
    if not isinstance(k, int):
        raise FrontendError("GatherND needs a static index depth")
    parts = [ctx.op("core.reshape", ctx.op("core.slice", idx, axis=-1, start=j, end=j + 1),
                    shape=list(idx.type.shape[:-1])) for j in range(k)]
    if b == 0:
        return [ctx.op("core.index", x, *parts, axes=list(range(k)))]
    # batch dims: index them with aranges broadcast over the other index dims
    lead = []
    for d in range(b):
        n = int(idx.type.shape[d])  # type: ignore[arg-type]
        shape = [n if i == d else 1 for i in range(idx.type.rank - 1)]
        lead.append(ctx.constant(np.arange(n, dtype=np.int64).reshape(shape)))
    parts = [ctx.cast(p, DType.i64) for p in parts]
    return [ctx.op("core.index", x, *lead, *parts, axes=list(range(b + k)))]


@onnx_op("ScatterElements", since=11)
def _scatter_elements(ctx: ConvertContext, node: Node) -> Out:
    x, idx, upd = ctx.need(node, 0), ctx.need(node, 1), ctx.need(node, 2)
    axis = int(ctx.attr(node, "axis", 0)) % x.type.rank
    return [ctx.op("core.scatter_elements", x, idx, upd, axis=axis, reduction=ctx.attr(node, "reduction", "none"))]


@onnx_op("ScatterND", since=11)
def _scatter_nd(ctx: ConvertContext, node: Node) -> Out:
    x, idx, upd = ctx.need(node, 0), ctx.need(node, 1), ctx.need(node, 2)
    return [ctx.op("core.scatter_nd", x, idx, upd, reduction=ctx.attr(node, "reduction", "none"))]


@onnx_op("Einsum", since=12)
def _einsum(ctx: ConvertContext, node: Node) -> Out:
    xs = [v for v in ctx.inputs(node) if v is not None]
    return [ctx.op("core.einsum", *xs, equation=ctx.attr(node, "equation"))]


@onnx_op("TopK", since=11)
def _topk(ctx: ConvertContext, node: Node) -> Out:
    x = ctx.need(node, 0)
    k = ctx.ints(node, 1, "K") or [0]
    if not ctx.attr(node, "sorted", 1):
        raise FrontendError("TopK with sorted=0 is not supported")
    op = ctx.create("core.topk", [x], {"k": k[0], "axis": int(ctx.attr(node, "axis", -1)),
                                       "largest": bool(ctx.attr(node, "largest", 1))})
    return list(op.results)


# -- signal ---------------------------------------------------------------------------------------
def _dft(ctx: ConvertContext, node: Node, axis: int) -> Out:
    # Y[k] = sum_n x[n] e^{-+2 pi i k n / L} (inverse: + and / L), as two real matmuls
    x = float_input(ctx, node)
    rank = x.type.rank
    axis = axis % rank
    if axis == rank - 1:
        raise FrontendError("DFT axis must not be the complex (last) dim")
    n = int(x.type.shape[axis])  # type: ignore[arg-type]
    lens = ctx.ints(node, 1, "dft_length") if len(node.input) > 1 else None
    length = lens[0] if lens else n
    inverse, onesided = bool(ctx.attr(node, "inverse", 0)), bool(ctx.attr(node, "onesided", 0))
    if inverse and onesided:
        raise FrontendError("DFT inverse with onesided (irfft) is not supported")
    out_dtype = x.type.dtype
    x = ctx.cast(x, DType.f64)  # the twiddle sums in f64, like numpy's FFT
    comps = int(x.type.shape[-1])  # type: ignore[arg-type]
    flat = list(x.type.shape[:-1])
    parts = [ctx.op("core.reshape", ctx.op("core.slice", x, axis=-1, start=c, end=c + 1), shape=flat)
             for c in range(comps)]
    perm = [i for i in range(rank - 1) if i != axis] + [axis]
    inv = [int(i) for i in np.argsort(perm)]
    parts = [ctx.op("core.permute", p, perm=perm) for p in parts]
    k = np.arange(length // 2 + 1 if onesided else length)
    m = np.arange(min(n, length))
    theta = 2 * np.pi * np.outer(m, k) / length  # [n_used, K]
    sign = 1.0 if inverse else -1.0
    scale = 1.0 / length if inverse else 1.0
    dt = x.type.dtype.to_numpy()
    cos = ctx.constant((np.cos(theta) * scale).astype(dt))
    sin = ctx.constant((sign * np.sin(theta) * scale).astype(dt))
    if n > length:
        parts = [ctx.op("core.slice", p, axis=-1, start=0, end=length) for p in parts]
    # (a + ib)(cos + i sin') = (a cos - b sin') + i (a sin' + b cos)
    a = parts[0]
    re = ctx.op("core.matmul", a, cos)
    im = ctx.op("core.matmul", a, sin)
    if comps == 2:
        b = parts[1]
        re = ctx.op("core.sub", re, ctx.op("core.matmul", b, sin))
        im = ctx.op("core.add", im, ctx.op("core.matmul", b, cos))
    outs = [ctx.op("core.permute", v, perm=inv) for v in (re, im)]
    shape = [*outs[0].type.shape, 1]
    y = ctx.op("core.concat", *(ctx.op("core.reshape", v, shape=shape) for v in outs), axis=-1)
    return [ctx.cast(y, out_dtype)]


@onnx_op("DFT", since=17)
def _dft17(ctx: ConvertContext, node: Node) -> Out:
    return _dft(ctx, node, int(ctx.attr(node, "axis", 1)))


@onnx_op("DFT", since=20)
def _dft20(ctx: ConvertContext, node: Node) -> Out:
    axis = ctx.ints(node, 2, "axis") if len(node.input) > 2 else None
    return _dft(ctx, node, axis[0] if axis else -2)


@onnx_op("ReverseSequence", since=10)
def _reverse_sequence(ctx: ConvertContext, node: Node) -> Out:
    # out[b, t] = x[b, len_b - 1 - t] for t < len_b, else x[b, t]  (a constant gather_elements index)
    x = ctx.need(node, 0)
    lens = ctx.ints(node, 1, "sequence_lens") or []
    shape = static_shape(x, "ReverseSequence")
    t_ax, b_ax = int(ctx.attr(node, "time_axis", 0)), int(ctx.attr(node, "batch_axis", 1))
    idx = np.indices(shape)[t_ax].copy()
    for b, n in enumerate(lens):
        sel = [slice(None)] * len(shape)
        sel[b_ax] = slice(b, b + 1)
        sel[t_ax] = slice(0, n)
        idx[tuple(sel)] = np.flip(idx[tuple(sel)], axis=t_ax)
    return [ctx.op("core.gather_elements", x, ctx.constant(idx.astype(np.int64)), axis=t_ax)]
