"""ONNX Resize as one interpolation matrix per resized axis.

With static shapes and known scales/sizes, the output along an axis is a fixed linear map of
the input along it: ``y = M @ x`` with ``M[out, in]`` holding the nearest / linear / cubic
weights (antialiased filters widened by 1/scale, edge-clamped taps, ``exclude_outside``
renormalised, ``tf_crop_and_resize`` extrapolation as an added constant). Each axis is a
permute, a matmul with the constant ``M^T`` and the inverse permute.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext
from optllm.frontends.onnx.ops_math import like, onnx_op
from optllm.ir import DType, Value

Node = Any
Out = list[Value | None]


def source_coords(n_in: int, n_out: int, scale: float, mode: str, roi: tuple[float, float]) -> np.ndarray:
    """Input coordinate of each output index under ``coordinate_transformation_mode``
    (ONNX measures the output length as ``scale * n_in``, not the rounded ``n_out``)."""
    x = np.arange(n_out, dtype=np.float64)
    width = scale * n_in
    if mode == "align_corners":
        return np.zeros_like(x) if width == 1 else x * (n_in - 1) / (width - 1)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_crop_and_resize":
        lo, hi = roi
        if width == 1:
            return np.full_like(x, 0.5 * (lo + hi) * (n_in - 1))
        return lo * (n_in - 1) + x * (hi - lo) * (n_in - 1) / (width - 1)
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if width != 1 else np.zeros_like(x)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjust = n_out / width
        offset = n_in / 2 * (1 - adjust)
        return offset + (x + 0.5) / scale - 0.5
    raise FrontendError(f"Resize coordinate_transformation_mode {mode!r} is not supported")


def _nearest(x: np.ndarray, mode: str) -> np.ndarray:
    if mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if mode == "floor":
        return np.floor(x)
    if mode == "ceil":
        return np.ceil(x)
    raise FrontendError(f"Resize nearest_mode {mode!r} is not supported")


def _kernel(mode: str, a: float) -> Any:
    def linear(u: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, 1.0 - np.abs(u))

    def cubic(u: np.ndarray) -> np.ndarray:
        u = np.abs(u)
        near = ((a + 2) * u - (a + 3)) * u * u + 1
        far = ((a * u - 5 * a) * u + 8 * a) * u - 4 * a
        return np.where(u <= 1, near, np.where(u < 2, far, 0.0))

    return linear if mode == "linear" else cubic


def weights(n_in: int, n_out: int, scale: float, attrs: dict[str, Any], roi: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``M[out, in]`` and the per-output constant (extrapolation) of one axis."""
    coords = source_coords(n_in, n_out, scale, attrs["ctm"], roi)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    extra = np.zeros(n_out, dtype=np.float64)
    outside = (coords < 0) | (coords > n_in - 1)
    if attrs["mode"] == "nearest":
        idx = np.clip(_nearest(coords, attrs["nearest_mode"]), 0, n_in - 1).astype(np.int64)
        m[np.arange(n_out), idx] = 1.0
    else:
        kernel = _kernel(attrs["mode"], attrs["cubic_coeff_a"])
        widen = scale if attrs["antialias"] and scale < 1 else 1.0
        support = (1 if attrs["mode"] == "linear" else 2) / widen
        for o, x in enumerate(coords):
            taps = np.arange(math.floor(x - support) + 1, math.floor(x + support) + 1)
            w = kernel((taps - x) * widen)
            if attrs["exclude_outside"]:
                w = np.where((taps >= 0) & (taps < n_in), w, 0.0)
            if attrs["antialias"] or attrs["exclude_outside"]:
                w = w / w.sum()
            np.add.at(m[o], np.clip(taps, 0, n_in - 1), w)
    if attrs["ctm"] == "tf_crop_and_resize":
        m[outside] = 0.0
        extra[outside] = attrs["extrapolation_value"]
    return m, extra


def _out_sizes(ctx: ConvertContext, node: Node, shape: list[int], axes: list[int]) -> tuple[list[int], list[float]]:
    scales = ctx.const_value(ctx.input(node, 2))
    sizes = ctx.ints(node, 3, "sizes") if len(node.input) > 3 else None
    ins = [shape[a] for a in axes]
    if sizes:
        policy = ctx.attr(node, "keep_aspect_ratio_policy", "stretch")
        if policy == "stretch":
            return list(sizes), [o / i for o, i in zip(sizes, ins)]
        pick = min if policy == "not_larger" else max
        s = pick(o / i for o, i in zip(sizes, ins))
        return [int(math.floor(i * s + 0.5)) for i in ins], [s] * len(ins)
    if scales is None or scales.size == 0:
        raise FrontendError("Resize needs scales or sizes known at import time")
    sc = [float(v) for v in scales.reshape(-1)]
    return [int(math.floor(i * s)) for i, s in zip(ins, sc)], sc


@onnx_op("Resize", since=13)
def _resize(ctx: ConvertContext, node: Node) -> Out:
    # y = M_a x along each resized axis a
    x = ctx.need(node, 0)
    if not x.type.is_static or not x.type.dtype.is_float:
        raise FrontendError(f"Resize needs a static floating-point input, got {x.type}")
    shape = [int(d) for d in x.type.shape]  # type: ignore[arg-type]
    rank = len(shape)
    axes = [int(a) % rank for a in (ctx.attr(node, "axes", None) or range(rank))]
    outs, scales = _out_sizes(ctx, node, shape, axes)
    roi_c = ctx.const_value(ctx.input(node, 1))
    if roi_c is None and ctx.input(node, 1) is not None and ctx.attr(node, "coordinate_transformation_mode", "") == \
            "tf_crop_and_resize":
        raise FrontendError("Resize roi must be known at import time")
    roi = [float(v) for v in roi_c.reshape(-1)] if roi_c is not None and roi_c.size else [0.0] * len(axes) + [1.0] * len(axes)
    if len(roi) == 2 * rank and len(axes) != rank:
        roi = [roi[a] for a in axes] + [roi[rank + a] for a in axes]
    attrs = {"mode": ctx.attr(node, "mode", "nearest"), "ctm": ctx.attr(node, "coordinate_transformation_mode", "half_pixel"),
             "nearest_mode": ctx.attr(node, "nearest_mode", "round_prefer_floor"),
             "cubic_coeff_a": float(ctx.attr(node, "cubic_coeff_a", -0.75)),
             "exclude_outside": int(ctx.attr(node, "exclude_outside", 0)), "antialias": int(ctx.attr(node, "antialias", 0)),
             "extrapolation_value": float(ctx.attr(node, "extrapolation_value", 0.0))}
    dt = x.type.dtype.to_numpy()
    y = x
    for j, (a, n_out, s) in enumerate(zip(axes, outs, scales)):
        n_in = shape[a]
        if n_in == n_out and attrs["ctm"] != "tf_crop_and_resize" and s == 1.0:
            continue
        m, extra = weights(n_in, n_out, s, attrs, (roi[j], roi[j + len(axes)]))
        perm = [i for i in range(rank) if i != a] + [a]
        inv = list(np.argsort(perm))
        moved = ctx.op("core.permute", y, perm=perm)
        moved = ctx.op("core.matmul", moved, ctx.constant(m.T.astype(dt)))
        if extra.any():
            moved = ctx.op("core.add", moved, ctx.constant(extra.astype(dt)))
        y = ctx.op("core.permute", moved, perm=[int(i) for i in inv])
    if y is x:
        y = ctx.op("core.reshape", x, shape=shape)
    return [y]


def _grid_coord(ctx: ConvertContext, g: Value, size: int, align: bool, padding: str) -> Value:
    # unnormalise [-1, 1] -> pixel coordinates; border clamps, reflection mirrors into the range
    one = like(ctx, 1, g)
    if align:
        x = ctx.op("core.mul", ctx.op("core.add", g, one), like(ctx, (size - 1) / 2, g))
        lo, hi = 0.0, float(size - 1)
    else:
        x = ctx.op("core.div", ctx.op("core.sub", ctx.op("core.mul", ctx.op("core.add", g, one), like(ctx, size, g)),
                                      one), like(ctx, 2, g))
        lo, hi = -0.5, size - 0.5
    if padding == "border":
        return ctx.op("core.min", ctx.op("core.max", x, like(ctx, 0, x)), like(ctx, size - 1, x))
    if padding == "reflection" and hi > lo:
        span = like(ctx, hi - lo, x)
        below, above = ctx.op("core.lt", x, like(ctx, lo, x)), ctx.op("core.gt", x, like(ctx, hi, x))
        dx = ctx.op("core.where", below, ctx.op("core.sub", like(ctx, lo, x), x), ctx.op("core.sub", x, like(ctx, hi, x)))
        flips = ctx.op("core.floor", ctx.op("core.div", dx, span))
        r = ctx.op("core.sub", dx, ctx.op("core.mul", flips, span))
        even = ctx.op("core.eq", ctx.op("core.mod", flips, like(ctx, 2, x)), like(ctx, 0, x))
        from_lo, from_hi = ctx.op("core.add", like(ctx, lo, x), r), ctx.op("core.sub", like(ctx, hi, x), r)
        x = ctx.op("core.where", below, ctx.op("core.where", even, from_lo, from_hi),
                   ctx.op("core.where", above, ctx.op("core.where", even, from_hi, from_lo), x))
        return ctx.op("core.min", ctx.op("core.max", x, like(ctx, 0, x)), like(ctx, size - 1, x))
    return x


@onnx_op("GridSample", since=16)
def _grid_sample(ctx: ConvertContext, node: Node) -> Out:
    # y = sum over the 2^d corner taps of w * x[clamped tap] (zeros padding masks taps outside)
    x, grid = ctx.need(node, 0), ctx.need(node, 1)
    if not x.type.is_static or not grid.type.is_static:
        raise FrontendError("GridSample needs static shapes")
    mode = ctx.attr(node, "mode", "linear" if ctx.opset >= 20 else "bilinear")
    if mode not in ("linear", "bilinear", "nearest"):
        raise FrontendError(f"GridSample mode {mode!r} is not supported")
    padding, align = ctx.attr(node, "padding_mode", "zeros"), bool(ctx.attr(node, "align_corners", 0))
    n, c, *sizes = (int(d) for d in x.type.shape)  # type: ignore[arg-type]
    d = len(sizes)
    out = [int(v) for v in grid.type.shape[1:-1]]  # type: ignore[arg-type]
    taps_per_axis: list[list[tuple[Value, Value | None]]] = []
    for a in range(d):
        comp = d - 1 - a  # grid holds (x, y, z): the last spatial dim first
        g = ctx.op("core.reshape", ctx.op("core.slice", grid, axis=-1, start=comp, end=comp + 1), shape=[n, *out])
        pos = _grid_coord(ctx, ctx.cast(g, x.type.dtype), sizes[a], align, padding)
        if mode == "nearest":
            taps_per_axis.append([(ctx.op("core.round", pos), None)])
            continue
        base = ctx.op("core.floor", pos)
        frac = ctx.op("core.sub", pos, base)
        taps_per_axis.append([(base, ctx.op("core.sub", like(ctx, 1, frac), frac)),
                              (ctx.op("core.add", base, like(ctx, 1, base)), frac)])
    flat_x = ctx.op("core.reshape", x, shape=[n, c, int(np.prod(sizes))])
    n_ar = ctx.constant(np.arange(n, dtype=np.int64).reshape(n, 1, 1))
    c_ar = ctx.constant(np.arange(c, dtype=np.int64).reshape(1, c, 1))
    total: Value | None = None
    for combo in np.ndindex(*[len(t) for t in taps_per_axis]):
        index: Value | None = None
        weight: Value | None = None
        for a, j in enumerate(combo):
            pos, w = taps_per_axis[a][j]
            if padding == "zeros":
                inside = ctx.op("core.and", ctx.op("core.ge", pos, like(ctx, 0, pos)),
                                ctx.op("core.le", pos, like(ctx, sizes[a] - 1, pos)))
                mask = ctx.cast(inside, x.type.dtype)
                w = mask if w is None else ctx.op("core.mul", w, mask)
            clamped = ctx.op("core.min", ctx.op("core.max", pos, like(ctx, 0, pos)), like(ctx, sizes[a] - 1, pos))
            idx = ctx.cast(clamped, DType.i64)
            stride = int(np.prod(sizes[a + 1:]))
            term = ctx.op("core.mul", idx, like(ctx, stride, idx)) if stride != 1 else idx
            index = term if index is None else ctx.op("core.add", index, term)
            weight = w if weight is None else (weight if w is None else ctx.op("core.mul", weight, w))
        assert index is not None
        idx_b = ctx.op("core.reshape", index, shape=[n, 1, int(np.prod(out))])
        val = ctx.op("core.index", flat_x, n_ar, c_ar, idx_b, axes=[0, 1, 2])  # x[n, c, idx[n]]
        val = ctx.op("core.reshape", val, shape=[n, c, *out])
        if weight is not None:
            val = ctx.op("core.mul", val, ctx.op("core.reshape", weight, shape=[n, 1, *out]))
        total = val if total is None else ctx.op("core.add", total, val)
    return [total]


@onnx_op("AffineGrid", since=20)
def _affine_grid(ctx: ConvertContext, node: Node) -> Out:
    # grid[n, ..., :] = theta[n] @ (x, y[, z], 1) over the normalised base grid
    theta = ctx.need(node, 0)
    size = ctx.ints(node, 1, "size") or []
    spatial = size[2:]
    align = bool(ctx.attr(node, "align_corners", 0))
    n, d = int(size[0]), len(spatial)

    def axis_points(m: int) -> np.ndarray:
        if align:
            return np.linspace(-1.0, 1.0, m) if m > 1 else np.zeros(1)
        return (2 * np.arange(m) + 1) / m - 1

    coords = np.meshgrid(*[axis_points(m) for m in spatial], indexing="ij")  # spatial order (z,) y, x
    base = np.stack([*[c.reshape(-1) for c in reversed(coords)], np.ones(int(np.prod(spatial)))], axis=-1)
    dt = theta.type.dtype
    base_v = ctx.op("core.expand", ctx.constant(base.astype(dt.to_numpy())[None]), shape=[n, base.shape[0], d + 1])
    grid = ctx.op("core.matmul", base_v, ctx.op("core.permute", theta, perm=[0, 2, 1]))
    return [ctx.op("core.reshape", grid, shape=[n, *spatial, d])]
