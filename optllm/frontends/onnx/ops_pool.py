"""ONNX pooling and convolution as window gathers: pad, gather every window, reduce or matmul.

With static shapes the window positions are known at import time, so a pool is

    patches = gather(reshape(pad(x), [N, C, prod(S')]), idx[O..., K...], axis=2)
    y = reduce_{max,mean,sum}(patches over the K dims)

and Conv is the same gather (im2col) followed by one batched matmul with the reshaped
weight per group. Output sizes, auto_pad, ceil_mode, dilations and strides follow the ONNX
definitions; AveragePool divides by the count of real (or, with count_include_pad, padded)
cells of each window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext
from optllm.frontends.onnx.ops_math import like, onnx_op
from optllm.ir import Value

Node = Any
Out = list[Value | None]


@dataclass(frozen=True)
class Window:
    """Per spatial dim: input size, kernel, stride, dilation, pads (begin, end) and output size."""

    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]
    out: tuple[int, ...]

    def padded(self) -> tuple[int, ...]:
        """Padded extent, grown at the end so every window (ceil_mode) fits."""
        return tuple(max(s + b + e, (o - 1) * st + (k - 1) * d + 1)
                     for s, b, e, o, st, k, d in zip(self.size, self.begin, self.end, self.out, self.stride,
                                                     self.kernel, self.dilation))

    def positions(self, axis: int) -> np.ndarray:
        """[out, kernel] padded coordinates of each window cell along ``axis``."""
        o = np.arange(self.out[axis])[:, None] * self.stride[axis]
        return o + np.arange(self.kernel[axis])[None, :] * self.dilation[axis]


def window(ctx: ConvertContext, node: Node, size: list[int], kernel: list[int]) -> Window:
    d = len(size)
    stride = list(ctx.attr(node, "strides", None) or [1] * d)
    dilation = list(ctx.attr(node, "dilations", None) or [1] * d)
    pads = list(ctx.attr(node, "pads", None) or [0] * (2 * d))
    auto_pad = ctx.attr(node, "auto_pad", "NOTSET")
    ceil_mode = bool(ctx.attr(node, "ceil_mode", 0))
    span = [(k - 1) * dl + 1 for k, dl in zip(kernel, dilation)]
    begin, end = pads[:d], pads[d:]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [math.ceil(s / st) for s, st in zip(size, stride)]
        total = [max((o - 1) * st + sp - s, 0) for o, st, sp, s in zip(out, stride, span, size)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        begin, end = [0] * d, [0] * d
        out = [math.ceil((s - sp + 1) / st) for s, sp, st in zip(size, span, stride)]
    else:
        rnd = math.ceil if ceil_mode else math.floor
        out = [int(rnd((s + b + e - sp) / st)) + 1 for s, b, e, sp, st in zip(size, begin, end, span, stride)]
        if ceil_mode:  # the last window must start inside the input or its begin padding
            out = [o - 1 if (o - 1) * st >= s + b else o for o, st, s, b in zip(out, stride, size, begin)]
    return Window(tuple(size), tuple(kernel), tuple(stride), tuple(dilation), tuple(begin), tuple(end), tuple(out))


def window_index(w: Window) -> np.ndarray:
    """[O1..Od, K1..Kd] flat indices into the padded spatial grid."""
    grids = np.ix_(*[p.reshape(-1) for p in (w.positions(a) for a in range(len(w.size)))])
    d = len(w.size)
    flat = np.zeros([o * k for o, k in zip(w.out, w.kernel)], dtype=np.int64)
    strides = np.cumprod((w.padded()[1:] + (1,))[::-1])[::-1]
    for a in range(d):
        flat = flat + grids[a] * int(strides[a])
    shape = [v for o, k in zip(w.out, w.kernel) for v in (o, k)]
    flat = flat.reshape(shape)
    perm = list(range(0, 2 * d, 2)) + list(range(1, 2 * d, 2))
    return np.ascontiguousarray(flat.transpose(perm))


def patches(ctx: ConvertContext, x: Value, w: Window, fill: float) -> Value:
    """[N, C, O1..Od, K1..Kd]: every window of ``x`` padded with ``fill``."""
    n, c = x.type.shape[:2]
    y = x
    for a, (b, e, full) in enumerate(zip(w.begin, w.end, w.padded())):
        e = full - w.size[a] - b
        parts = []
        for size in (b, None, e):
            if size is None:
                parts.append(y)
            elif size > 0:
                shape = [size if i == a + 2 else dim for i, dim in enumerate(y.type.shape)]
                parts.append(ctx.op("core.full", shape=shape, value=fill, dtype=x.type.dtype))
        y = parts[0] if len(parts) == 1 else ctx.op("core.concat", *parts, axis=a + 2)
    y = ctx.op("core.reshape", y, shape=[n, c, int(np.prod(w.padded()))])
    return ctx.op("core.gather", y, ctx.constant(window_index(w)), axis=2)


def _spatial(x: Value, what: str) -> list[int]:
    if not x.type.is_static or x.type.rank < 3:
        raise FrontendError(f"{what} needs a static [N, C, spatial...] input, got {x.type}")
    return [int(d) for d in x.type.shape[2:]]  # type: ignore[arg-type]


def _kernel_axes(w: Window) -> list[int]:
    d = len(w.size)
    return list(range(2 + d, 2 + 2 * d))


@onnx_op("MaxPool", since=12)
def _max_pool(ctx: ConvertContext, node: Node) -> Out:
    if len(node.output) > 1 and node.output[1]:
        raise FrontendError("MaxPool's Indices output is not supported")
    if ctx.attr(node, "storage_order", 0):
        raise FrontendError("MaxPool storage_order=1 is not supported")
    x = ctx.need(node, 0)
    w = window(ctx, node, _spatial(x, "MaxPool"), list(ctx.attr(node, "kernel_shape")))
    dt = x.type.dtype.to_numpy()
    low = -np.inf if x.type.dtype.is_float else float(np.iinfo(dt).min)
    return [ctx.op("core.reduce_max", patches(ctx, x, w, low), axes=_kernel_axes(w))]


def _window_counts(w: Window, include_pad: bool) -> np.ndarray:
    """[O1..Od]: cells of each window inside the input (or inside input + explicit pads)."""
    counts = np.ones((), dtype=np.int64)
    for a in range(len(w.size)):
        pos = w.positions(a) - (0 if include_pad else w.begin[a])
        hi = w.size[a] + (w.begin[a] + w.end[a] if include_pad else 0)
        inside = ((pos >= 0) & (pos < hi)).sum(axis=1)
        counts = np.multiply.outer(counts, inside)
    return counts


@onnx_op("AveragePool", since=11)
def _average_pool(ctx: ConvertContext, node: Node) -> Out:
    # sum over the window / number of counted cells
    x = ctx.need(node, 0)
    w = window(ctx, node, _spatial(x, "AveragePool"), list(ctx.attr(node, "kernel_shape")))
    total = ctx.op("core.reduce_sum", patches(ctx, x, w, 0.0), axes=_kernel_axes(w))
    counts = _window_counts(w, bool(ctx.attr(node, "count_include_pad", 0)))
    return [ctx.op("core.div", total, ctx.constant(counts.astype(x.type.dtype.to_numpy())))]


@onnx_op("LpPool", since=11)
def _lp_pool(ctx: ConvertContext, node: Node) -> Out:
    # (sum |x|^p)^(1/p) over the window
    x = ctx.need(node, 0)
    w = window(ctx, node, _spatial(x, "LpPool"), list(ctx.attr(node, "kernel_shape")))
    p = float(ctx.attr(node, "p", 2))
    powered = ctx.op("core.pow", ctx.op("core.abs", x), like(ctx, p, x))
    total = ctx.op("core.reduce_sum", patches(ctx, powered, w, 0.0), axes=_kernel_axes(w))
    return [ctx.op("core.pow", total, like(ctx, 1.0 / p, x))]


def _conv_windows(ctx: ConvertContext, x: Value, wt: Value, g: int, w: Window, bias: Value | None) -> Value:
    # im2col: patches [N, g, O, Cg*K] @ weight [g, Cg*K, M/g] -> [N, M, O...] (+ bias)
    m, cg = (int(d) for d in wt.type.shape[:2])  # type: ignore[arg-type]
    n = int(x.type.shape[0])  # type: ignore[arg-type]
    o, k = int(np.prod(w.out)), int(np.prod(w.kernel))
    cols = ctx.op("core.reshape", patches(ctx, x, w, 0.0), shape=[n, g, cg, o, k])
    cols = ctx.op("core.reshape", ctx.op("core.permute", cols, perm=[0, 1, 3, 2, 4]), shape=[n, g, o, cg * k])
    wmat = ctx.op("core.permute", ctx.op("core.reshape", wt, shape=[g, m // g, cg * k]), perm=[0, 2, 1])
    y = ctx.op("core.matmul", cols, wmat)  # [n, g, o, m/g]
    y = ctx.op("core.reshape", ctx.op("core.permute", y, perm=[0, 1, 3, 2]), shape=[n, m, *w.out])
    if bias is not None:
        y = ctx.op("core.add", y, ctx.op("core.reshape", bias, shape=[1, m] + [1] * len(w.size)))
    return y


@onnx_op("Conv", since=11)
def _conv(ctx: ConvertContext, node: Node) -> Out:
    x, wt, bias = ctx.need(node, 0), ctx.need(node, 1), ctx.input(node, 2)
    size = _spatial(x, "Conv")
    if not wt.type.is_static:
        raise FrontendError(f"Conv needs a static weight, got {wt.type}")
    kernel = list(ctx.attr(node, "kernel_shape", None) or [int(d) for d in wt.type.shape[2:]])  # type: ignore[arg-type]
    w = window(ctx, node, size, kernel)
    return [_conv_windows(ctx, x, wt, int(ctx.attr(node, "group", 1)), w, bias)]


def _resize_axis(ctx: ConvertContext, x: Value, axis: int, lo: int, hi: int) -> Value:
    """Pad ``axis`` with lo / hi zeros (negative: crop)."""
    n = int(x.type.shape[axis])  # type: ignore[arg-type]
    if lo < 0 or hi < 0:
        x = ctx.op("core.slice", x, axis=axis, start=max(-lo, 0), end=n - max(-hi, 0))
        lo, hi = max(lo, 0), max(hi, 0)
    parts = []
    for size in (lo, None, hi):
        if size is None:
            parts.append(x)
        elif size > 0:
            shape = [size if i == axis else d for i, d in enumerate(x.type.shape)]
            parts.append(ctx.op("core.full", shape=shape, value=0.0, dtype=x.type.dtype))
    return parts[0] if len(parts) == 1 else ctx.op("core.concat", *parts, axis=axis)


def _dilate(ctx: ConvertContext, x: Value, axis: int, stride: int) -> Value:
    """Insert stride-1 zeros between the elements along ``axis``."""
    if stride == 1:
        return x
    shape = list(x.type.shape)
    n = int(shape[axis])  # type: ignore[arg-type]
    col = ctx.op("core.reshape", x, shape=shape[:axis + 1] + [1] + shape[axis + 1:])
    zeros = ctx.op("core.full", shape=shape[:axis + 1] + [stride - 1] + shape[axis + 1:], value=0.0,
                   dtype=x.type.dtype)
    wide = ctx.op("core.concat", col, zeros, axis=axis + 1)
    flat = ctx.op("core.reshape", wide, shape=shape[:axis] + [n * stride] + shape[axis + 1:])
    return ctx.op("core.slice", flat, axis=axis, start=0, end=(n - 1) * stride + 1)


@onnx_op("ConvTranspose", since=11)
def _conv_transpose(ctx: ConvertContext, node: Node) -> Out:
    # zero-dilate x by the strides, pad by span-1-pad, then Conv with the flipped, transposed weight
    x, wt, bias = ctx.need(node, 0), ctx.need(node, 1), ctx.input(node, 2)
    size = _spatial(x, "ConvTranspose")
    d = len(size)
    if not wt.type.is_static:
        raise FrontendError(f"ConvTranspose needs a static weight, got {wt.type}")
    cin, mg, *kernel = (int(v) for v in wt.type.shape)  # type: ignore[arg-type]
    kernel = list(ctx.attr(node, "kernel_shape", None) or kernel)
    g = int(ctx.attr(node, "group", 1))
    stride = list(ctx.attr(node, "strides", None) or [1] * d)
    dil = list(ctx.attr(node, "dilations", None) or [1] * d)
    out_pad = list(ctx.attr(node, "output_padding", None) or [0] * d)
    pads = list(ctx.attr(node, "pads", None) or [0] * (2 * d))
    span = [(k - 1) * dl + 1 for k, dl in zip(kernel, dil)]
    out_shape = ctx.attr(node, "output_shape", None)
    auto_pad = ctx.attr(node, "auto_pad", "NOTSET")
    if out_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        want = list(out_shape)[-d:] if out_shape is not None else [s * st for s, st in zip(size, stride)]
        total = [st * (s - 1) + op + sp - o for st, s, op, sp, o in zip(stride, size, out_pad, span, want)]
        if auto_pad == "SAME_UPPER":
            pads = [t // 2 for t in total] + [t - t // 2 for t in total]
        else:
            pads = [t - t // 2 for t in total] + [t // 2 for t in total]
    y = x
    for a in range(d):
        y = _dilate(ctx, y, a + 2, stride[a])
        y = _resize_axis(ctx, y, a + 2, span[a] - 1 - pads[a], span[a] - 1 - pads[a + d] + out_pad[a])
    # weight [Cin, M/g, K...] -> per group flipped [M, Cin/g, K...]
    wv = ctx.op("core.reshape", wt, shape=[g, cin // g, mg, *kernel])
    for a in range(d):
        rev = ctx.constant(np.arange(kernel[a] - 1, -1, -1, dtype=np.int64))
        wv = ctx.op("core.gather", wv, rev, axis=3 + a)
    wv = ctx.op("core.permute", wv, perm=[0, 2, 1, *range(3, 3 + d)])
    wv = ctx.op("core.reshape", wv, shape=[g * mg, cin // g, *kernel])
    padded = [int(v) for v in y.type.shape[2:]]  # type: ignore[arg-type]
    w = Window(tuple(padded), tuple(kernel), (1,) * d, tuple(dil), (0,) * d, (0,) * d,
               tuple(p - sp + 1 for p, sp in zip(padded, span)))
    return [_conv_windows(ctx, y, wv, g, w, bias)]


@onnx_op("Col2Im", since=18)
def _col2im(ctx: ConvertContext, node: Node) -> Out:
    # the adjoint of im2col: out_padded[n, c, idx[l, k]] += cols[n, c*K + k, l], as a 0/1 matmul, then crop
    cols = ctx.need(node, 0)
    image = ctx.ints(node, 1, "image_shape") or []
    block = ctx.ints(node, 2, "block_shape") or []
    if not cols.type.is_static:
        raise FrontendError(f"Col2Im needs a static input, got {cols.type}")
    n, ck, length = (int(d) for d in cols.type.shape)  # type: ignore[arg-type]
    w = window(ctx, node, list(image), list(block))
    k = int(np.prod(block))
    c = ck // k
    idx = window_index(w).reshape(length, k)
    padded = w.padded()
    m = np.zeros((k * length, int(np.prod(padded))), dtype=cols.type.dtype.to_numpy())
    rows = (np.arange(k)[None, :] * length + np.arange(length)[:, None]).reshape(-1)
    np.add.at(m, (rows, idx.reshape(-1)), 1)
    flat = ctx.op("core.reshape", cols, shape=[n, c, k * length])
    y = ctx.op("core.reshape", ctx.op("core.matmul", flat, ctx.constant(m)), shape=[n, c, *padded])
    for a, (b, size) in enumerate(zip(w.begin, w.size)):
        y = ctx.op("core.slice", y, axis=a + 2, start=b, end=b + size)
    return [y]
