"""ATen -> optllm lowering rules, one small function per op family.

Each handler takes the lowering context ``cx`` (see ``fx_lower.Lowering``) and the node's
arguments as ATen's schema names them, already lowered (tensors are IR values, SymInts are
``Dim``). It returns a value, a list of values, or ``None`` for ops that vanish. The result
must have the type torch recorded for the node (the caller checks), which is why views take
their target shape from ``cx.out_shape()``: it already has every ``-1`` and SymInt resolved.

Torch promotes mixed element types; the IR does not, so handlers cast operands to the
promoted type first (``cx.promote``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optllm.frontends.common import FrontendError
from optllm.ir import DType, Value
from optllm.ir.ops import all_opdefs
from optllm.ir.symbolic import Dim, SymExpr

Handler = Callable[..., Any]
TABLE: dict[str, Handler] = {}
_BIG = 2**62  # torch writes "to the end" as 9223372036854775807


def lower(*keys: str) -> Callable[[Handler], Handler]:
    """Register a handler under one or more ``aten.op.overload`` keys."""

    def register(fn: Handler) -> Handler:
        for key in keys:
            TABLE[key] = fn
        return fn

    return register


def _axis(axis: int, rank: int) -> int:
    return axis % rank if rank else 0


def _axes(dims: Any, rank: int) -> list[int]:
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(rank))
    if isinstance(dims, int):
        dims = [dims]
    return sorted(_axis(d, rank) for d in dims)


# -- ops that vanish or forward their input -------------------------------------------------------
@lower("aten._assert_tensor_metadata.default", "aten._assert_scalar.default", "aten._assert_async.default",
       "aten._assert_async.msg", "aten.sym_constrain_range.default", "aten.sym_constrain_range_for_size.default",
       "aten._functional_assert_async.msg", "aten._functional_sym_constrain_range.default")
def _assert(cx: Any, *args: Any, **kwargs: Any) -> None:
    return None


@lower("aten.clone.default", "aten.alias.default", "aten.detach.default", "aten.lift_fresh_copy.default",
       "aten.contiguous.default", "aten.alias_copy.default", "aten.detach_copy.default")
def _identity(cx: Any, x: Value, **kwargs: Any) -> Value:
    return x


@lower("aten.dropout.default", "aten.feature_dropout.default")
def _dropout(cx: Any, x: Value, p: float, train: bool) -> Value:
    if train and p > 0:
        raise FrontendError("dropout in training mode cannot be imported (call model.eval())")
    return x


@lower("aten._to_copy.default", "aten.to.dtype", "aten.type_as.default")
def _to_copy(cx: Any, x: Value, *args: Any, **kwargs: Any) -> Value:
    return cx.cast(x, cx.out_dtype())


@lower("aten.copy.default")
def _copy(cx: Any, dst: Value, src: Value, non_blocking: bool = False) -> Value:
    return _expand_to(cx, cx.cast(src, dst.type.dtype), dst.type.shape)


@lower("getitem")
def _getitem(cx: Any, seq: Sequence[Any], index: int) -> Any:
    out = seq[index]
    if out is None:
        raise FrontendError(f"output #{index} of a multi-output op is used, but only output #0 is supported")
    return out


# -- elementwise --------------------------------------------------------------------------------------------
def _arith(ir_name: str) -> Handler:
    def handler(cx: Any, x: Any, y: Any, alpha: Any = 1) -> Value:
        dt = cx.out_dtype()
        a, b = cx.tensor(x, dt), cx.tensor(y, dt)
        if alpha != 1:
            b = cx.op("core.mul", b, cx.tensor(alpha, dt))
        return cx.op(ir_name, a, b)

    return handler


lower("aten.add.Tensor", "aten.add.Scalar")(_arith("core.add"))
lower("aten.sub.Tensor", "aten.sub.Scalar")(_arith("core.sub"))
lower("aten.mul.Tensor", "aten.mul.Scalar")(_arith("core.mul"))
lower("aten.div.Tensor", "aten.div.Scalar")(_arith("core.div"))
lower("aten.maximum.default")(_arith("core.max"))
lower("aten.minimum.default")(_arith("core.min"))
lower("aten.remainder.Tensor", "aten.remainder.Scalar")(_arith("core.mod"))
lower("aten.floor_divide.default")(_arith("core.floordiv"))


@lower("aten.rsub.Scalar", "aten.rsub.Tensor")
def _rsub(cx: Any, x: Any, y: Any, alpha: Any = 1) -> Value:
    return _arith("core.sub")(cx, y, x if alpha == 1 else cx.op("core.mul", x, cx.tensor(alpha, x.type.dtype)))


@lower("aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div_mode(cx: Any, x: Any, y: Any, rounding_mode: str | None = None) -> Value:
    if rounding_mode is None:
        return _arith("core.div")(cx, x, y)
    if rounding_mode == "floor":
        dt = cx.out_dtype()
        a, b = cx.tensor(x, dt), cx.tensor(y, dt)
        if dt.is_float:
            return cx.op("core.floor", cx.op("core.div", a, b))
        return cx.op("core.floordiv", a, b)
    raise FrontendError(f"division with rounding_mode={rounding_mode!r} is not supported")


@lower("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def _pow(cx: Any, x: Any, exponent: Any) -> Value:
    dt = cx.out_dtype()
    if not dt.is_float:
        raise FrontendError("integer pow is not supported")
    return cx.op("core.pow", cx.tensor(x, dt), cx.tensor(exponent, dt))


def _compare(ir_name: str) -> Handler:
    def handler(cx: Any, x: Any, y: Any) -> Value:
        dt = cx.promote(x, y)
        return cx.op(ir_name, cx.tensor(x, dt), cx.tensor(y, dt))

    return handler


for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    lower(f"aten.{_name}.Tensor", f"aten.{_name}.Scalar")(_compare(f"core.{_name}"))


def _logical(ir_name: str, int_name: str | None = None) -> Handler:
    def handler(cx: Any, x: Any, y: Any) -> Value:
        dt = cx.out_dtype()
        if dt is DType.bool:
            return cx.op(ir_name, cx.tensor(x, dt), cx.tensor(y, dt))
        if int_name is None:
            raise FrontendError(f"{ir_name} on {dt} is not supported")
        return cx.op(int_name, cx.tensor(x, dt), cx.tensor(y, dt))

    return handler


lower("aten.bitwise_and.Tensor", "aten.bitwise_and.Scalar")(_logical("core.and", "core.bitand"))
lower("aten.bitwise_or.Tensor", "aten.bitwise_or.Scalar")(_logical("core.or"))
lower("aten.bitwise_xor.Tensor", "aten.bitwise_xor.Scalar")(_logical("core.xor"))


@lower("aten.logical_and.default", "aten.logical_or.default", "aten.logical_xor.default")
def _logical_op(cx: Any, x: Value, y: Value) -> Value:
    name = {"logical_and": "core.and", "logical_or": "core.or", "logical_xor": "core.xor"}[
        cx.node.target._opname]
    return cx.op(name, cx.cast(x, DType.bool), cx.cast(y, DType.bool))


@lower("aten.logical_not.default", "aten.bitwise_not.default")
def _not(cx: Any, x: Value) -> Value:
    if cx.node.target._opname == "bitwise_not" and x.type.dtype is not DType.bool:
        raise FrontendError("bitwise_not on integers is not supported")
    return cx.op("core.not", cx.cast(x, DType.bool))


def _unary(ir_name: str) -> Handler:
    def handler(cx: Any, x: Value) -> Value:
        return cx.op(ir_name, cx.cast(x, cx.out_dtype()))

    return handler


# Ops that declare their aten packet (``OpDef.aten``) lower one to one, after a cast to the result type.
for _def in all_opdefs().values():
    if _def.aten:
        lower(f"aten.{_def.aten}.default")(_unary(_def.name))
lower("aten.relu.default")(_unary("nn.relu"))
lower("aten.silu.default")(_unary("nn.silu"))


@lower("aten.gelu.default")
def _gelu(cx: Any, x: Value, approximate: str = "none") -> Value:
    return cx.op("nn.gelu", x, approximate=approximate)


@lower("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def _where(cx: Any, cond: Value, x: Any, y: Any) -> Value:
    dt = cx.out_dtype()
    return cx.op("core.where", cx.cast(cond, DType.bool), cx.tensor(x, dt), cx.tensor(y, dt))


@lower("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(cx: Any, x: Value, mask: Value, value: Any) -> Value:
    dt = x.type.dtype
    return _expand_to(cx, cx.op("core.where", cx.cast(mask, DType.bool), cx.tensor(value, dt), x), x.type.shape)


@lower("aten.clamp.default", "aten.clamp.Tensor", "aten.clamp_min.default", "aten.clamp_max.default")
def _clamp(cx: Any, x: Value, *bounds: Any, **kw: Any) -> Value:
    opname = cx.node.target._opname
    lo, hi = (bounds + (None, None))[:2] if opname == "clamp" else (
        (bounds[0], None) if opname == "clamp_min" else (None, bounds[0]))
    lo, hi = kw.get("min", lo), kw.get("max", hi)
    dt = cx.out_dtype()
    y = cx.cast(x, dt)
    if lo is not None:
        y = cx.op("core.max", y, cx.tensor(lo, dt))
    if hi is not None:
        y = cx.op("core.min", y, cx.tensor(hi, dt))
    return _expand_to(cx, y, cx.out_shape())


# -- linear algebra ---------------------------------------------------------------------------------------------
def _transpose_last(cx: Any, w: Value) -> Value:
    perm = list(range(w.type.rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return cx.op("core.permute", w, perm=perm)


def _matmul(cx: Any, a: Value, b: Value) -> Value:
    """numpy/torch matmul including the rank-1 cases, through rank >= 2 core.matmul."""
    a1, b1 = a.type.rank == 1, b.type.rank == 1
    if a1:
        a = cx.op("core.reshape", a, shape=[1, a.type.shape[0]])
    if b1:
        b = cx.op("core.reshape", b, shape=[b.type.shape[0], 1])
    y = cx.op("core.matmul", a, b)
    if a1 or b1:
        y = cx.op("core.reshape", y, shape=list(cx.out_shape()))
    return y


@lower("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def _mm(cx: Any, a: Value, b: Value) -> Value:
    return _matmul(cx, a, b)


@lower("aten.addmm.default", "aten.baddbmm.default")
def _addmm(cx: Any, bias: Value, a: Value, b: Value, beta: Any = 1, alpha: Any = 1) -> Value:
    y = cx.op("core.matmul", a, b)
    dt = y.type.dtype
    if alpha != 1:
        y = cx.op("core.mul", y, cx.tensor(alpha, dt))
    if beta == 0:
        return y
    if beta != 1:
        bias = cx.op("core.mul", bias, cx.tensor(beta, dt))
    return cx.op("core.add", y, bias)


@lower("aten.linear.default")
def _linear(cx: Any, x: Value, weight: Value, bias: Value | None = None) -> Value:
    y = _matmul(cx, x, _transpose_last(cx, weight))
    return y if bias is None else cx.op("core.add", y, bias)


# -- views and data movement -----------------------------------------------------------------------------------
def _reshape_to(cx: Any, x: Value, shape: Sequence[Dim]) -> Value:
    if tuple(x.type.shape) == tuple(shape):
        return x
    return cx.op("core.reshape", x, shape=list(shape))


def _expand_to(cx: Any, x: Value, shape: Sequence[Dim]) -> Value:
    if tuple(x.type.shape) == tuple(shape):
        return x
    return cx.op("core.expand", x, shape=list(shape))


@lower("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", "aten.view_copy.default",
       "aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default",
       "aten.flatten.using_ints", "aten.unflatten.int", "aten.unsqueeze_copy.default", "aten.squeeze_copy.dim")
def _view(cx: Any, x: Value, *args: Any) -> Value:
    return _reshape_to(cx, x, cx.out_shape())


@lower("aten.permute.default", "aten.permute_copy.default")
def _permute(cx: Any, x: Value, dims: Sequence[int]) -> Value:
    perm = [_axis(d, x.type.rank) for d in dims]
    if perm == list(range(x.type.rank)):
        return x
    return cx.op("core.permute", x, perm=perm)


@lower("aten.transpose.int", "aten.t.default", "aten.numpy_T.default")
def _transpose(cx: Any, x: Value, dim0: int = 0, dim1: int = 1) -> Value:
    rank = x.type.rank
    if rank < 2:
        return x
    perm = list(range(rank))
    a, b = _axis(dim0, rank), _axis(dim1, rank)
    perm[a], perm[b] = perm[b], perm[a]
    return _permute(cx, x, perm)


@lower("aten.expand.default", "aten.expand_copy.default", "aten.expand_as.default")
def _expand(cx: Any, x: Value, *args: Any, **kwargs: Any) -> Value:
    return _expand_to(cx, x, cx.out_shape())


def _norm_index(i: Dim | None, size: Dim, default: Dim) -> Dim:
    """A slice bound as a non-negative dim: None -> default, negatives count from the end."""
    if i is None:
        return default
    if isinstance(i, int):
        if i >= _BIG:
            return size
        if i < 0:
            i = size + i
            return max(i, 0) if isinstance(i, int) else i
        return min(i, size) if isinstance(size, int) else i
    return i


@lower("aten.slice.Tensor", "aten.slice_copy.Tensor")
def _slice(cx: Any, x: Value, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> Value:
    ax = _axis(dim, x.type.rank)
    size = x.type.shape[ax]
    lo, hi = _norm_index(start, size, 0), _norm_index(end, size, size)
    if lo == 0 and hi == size and step == 1:
        return x
    attrs = {"axis": ax, "start": lo, "end": hi, "step": step}
    if cx.infer("core.slice", [x], attrs)[0].shape == cx.out_shape():
        return cx.op("core.slice", x, **attrs)
    # torch proved the bound in range (e.g. S <= 512 from the model's guards), the IR cannot:
    # take the rows by index instead, which states the same thing and checks it when run.
    idx = cx.op("core.arange", start=lo, end=hi, step=step, dtype=DType.i64)
    return cx.op("core.gather", x, idx, axis=ax)


@lower("aten.select.int", "aten.select_copy.int")
def _select(cx: Any, x: Value, dim: int, index: Any) -> Value:
    ax = _axis(dim, x.type.rank)
    size = x.type.shape[ax]
    i = size + index if isinstance(index, int) and index < 0 else index
    attrs = {"axis": ax, "start": i, "end": i + 1}
    if cx.infer("core.slice", [x], attrs)[0].shape[ax] == 1:
        return _reshape_to(cx, cx.op("core.slice", x, **attrs), cx.out_shape())
    # The IR cannot prove i < size on a symbolic dim: gather the one row instead.
    return cx.op("core.gather", x, cx.tensor(i, DType.i64), axis=ax)


@lower("aten.split_with_sizes.default", "aten.split.Tensor", "aten.split_with_sizes_copy.default",
       "aten.split_copy.Tensor", "aten.unbind.int", "aten.chunk.default")
def _split(cx: Any, x: Value, *args: Any, **kwargs: Any) -> list[Value]:
    vals = cx.node.meta["val"]
    outs_t = [cx.tensor_type(v) for v in vals]
    unbind = cx.node.target._opname == "unbind"
    dim = (args[0] if args else kwargs.get("dim", 0)) if unbind else (
        args[1] if len(args) > 1 else kwargs.get("dim", 0))
    ax = _axis(dim, x.type.rank)
    sizes = [1 for _ in outs_t] if unbind else [t.shape[ax] for t in outs_t]
    if len(sizes) == 1 and not unbind:
        return [x]
    parts = cx.create("core.split", [x], {"axis": ax, "sizes": sizes}).results
    return [_reshape_to(cx, p, t.shape) for p, t in zip(parts, outs_t)]


@lower("aten.constant_pad_nd.default")
def _pad(cx: Any, x: Value, pad: Sequence[Any], value: Any = 0) -> Value:
    """Pairs (before, after) from the last dim backwards; negative amounts crop."""
    y = x
    for i in range(len(pad) // 2):
        ax = y.type.rank - 1 - i
        before, after = cx.dim(pad[2 * i]), cx.dim(pad[2 * i + 1])
        size = y.type.shape[ax]
        if (isinstance(before, int) and before < 0) or (isinstance(after, int) and after < 0):
            lo = -before if isinstance(before, int) and before < 0 else 0
            hi = size + after if isinstance(after, int) and after < 0 else size
            y = cx.op("core.slice", y, axis=ax, start=lo, end=hi)
            before, after = max(before, 0) if isinstance(before, int) else before, \
                max(after, 0) if isinstance(after, int) else after
        parts = []
        for amount in (before, after):
            shape = list(y.type.shape)
            shape[ax] = amount
            parts.append(None if amount == 0 else
                         cx.op("core.full", shape=shape, value=float(value), dtype=y.type.dtype))
        if parts[0] is not None or parts[1] is not None:
            y = cx.op("core.concat", *[p for p in (parts[0], y, parts[1]) if p is not None], axis=ax)
    return y


@lower("aten.repeat.default")
def _repeat(cx: Any, x: Value, repeats: Sequence[Any]) -> Value:
    """Tile: [d0, d1] -> [1, d0, 1, d1] -> expand [r0, d0, r1, d1] -> [r0*d0, r1*d1]."""
    reps = [cx.dim(r) for r in repeats]
    shape = [1] * (len(reps) - x.type.rank) + list(x.type.shape)
    pairs = [d for s in shape for d in (1, s)]
    tiled = [d for r, s in zip(reps, shape) for d in (r, s)]
    y = _expand_to(cx, _reshape_to(cx, x, pairs), tiled)
    return _reshape_to(cx, y, cx.out_shape())


@lower("aten.cat.default", "aten.concat.default")
def _cat(cx: Any, tensors: Sequence[Value], dim: int = 0) -> Value:
    dt = cx.out_dtype()
    parts = [cx.cast(t, dt) for t in tensors if not (t.type.rank == 1 and t.type.shape[0] == 0)]
    if len(parts) == 1:
        return parts[0]
    return cx.op("core.concat", *parts, axis=_axis(dim, parts[0].type.rank))


@lower("aten.index.Tensor")
def _index(cx: Any, x: Value, indices: Sequence[Value | None]) -> Value:
    positions = [i for i, t in enumerate(indices) if t is not None]
    if not positions or positions != list(range(positions[0], positions[-1] + 1)):
        raise FrontendError("advanced indexing with index tensors on non-adjacent dims is not supported")
    idx = [indices[i] for i in positions]
    if any(t.type.dtype is DType.bool for t in idx):  # type: ignore[union-attr]
        raise FrontendError("indexing with a boolean mask is not supported (data-dependent shape)")
    return cx.op("core.index", x, *idx, axes=positions)


@lower("aten.index_select.default")
def _index_select(cx: Any, x: Value, dim: int, index: Value) -> Value:
    return cx.op("core.gather", x, index, axis=_axis(dim, x.type.rank))


@lower("aten.gather.default")
def _gather(cx: Any, x: Value, dim: int, index: Value, sparse_grad: bool = False) -> Value:
    return cx.op("core.gather_elements", x, index, axis=_axis(dim, x.type.rank))


@lower("aten.embedding.default")
def _embedding(cx: Any, weight: Value, indices: Value, padding_idx: int = -1, scale_grad_by_freq: bool = False,
               sparse: bool = False) -> Value:
    return cx.op("nn.embedding", weight, indices)


# -- reductions ----------------------------------------------------------------------------------------------------
def _reduce(ir_name: str) -> Handler:
    def handler(cx: Any, x: Value, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Value:
        src = cx.cast(x, cx.out_dtype()) if ir_name not in ("core.reduce_any", "core.reduce_all") else \
            cx.cast(x, DType.bool)
        return cx.op(ir_name, src, axes=_axes(dim, x.type.rank), keepdim=keepdim)

    return handler


lower("aten.mean.dim", "aten.mean.default")(_reduce("core.reduce_mean"))
lower("aten.sum.dim_IntList", "aten.sum.default")(_reduce("core.reduce_sum"))
lower("aten.amax.default")(_reduce("core.reduce_max"))
lower("aten.amin.default")(_reduce("core.reduce_min"))
lower("aten.any.dim", "aten.any.dims", "aten.any.default")(_reduce("core.reduce_any"))
lower("aten.all.dim", "aten.all.dims", "aten.all.default")(_reduce("core.reduce_all"))
lower("aten.prod.dim_int")(_reduce("core.reduce_prod"))


@lower("aten.max.dim")
def _max_dim(cx: Any, x: Value, dim: int, keepdim: bool = False) -> list[Value]:
    ax = _axis(dim, x.type.rank)
    return [cx.op("core.reduce_max", x, axes=[ax], keepdim=keepdim),
            cx.op("core.argmax", x, axis=ax, keepdim=keepdim)]


@lower("aten.var.correction", "aten.var_mean.correction")
def _var(cx: Any, x: Value, dim: Any = None, correction: Any = None, keepdim: bool = False) -> Any:
    # var = sum((x - mean)^2) / (N - correction), the two-pass formula
    axes = _axes(dim, x.type.rank)
    mean = cx.op("core.reduce_mean", x, axes=axes, keepdim=True)
    d = cx.op("core.sub", x, mean)
    ss = cx.op("core.reduce_sum", cx.op("core.mul", d, d), axes=axes, keepdim=keepdim)
    n: Dim = 1
    for a in axes:
        n = n * x.type.shape[a]  # type: ignore[operator]
    denom = n - (1 if correction is None else correction)  # type: ignore[operator]
    var = cx.op("core.div", ss, cx.tensor(denom, x.type.dtype))
    if cx.node.target._opname == "var":
        return var
    return [var, mean if keepdim else _reshape_to(cx, mean, var.type.shape)]


@lower("aten.argmax.default", "aten.argmin.default")
def _argmax(cx: Any, x: Value, dim: int | None = None, keepdim: bool = False) -> Value:
    # argmin is core.argmin, not argmax(-x): -x is wrong for unsigned ints and the minimum int
    name = "core.argmin" if cx.node.target._opname == "argmin" else "core.argmax"
    if dim is None:
        x = cx.op("core.reshape", x, shape=[_numel(x)])
        dim = 0
    return cx.op(name, x, axis=_axis(dim, x.type.rank), keepdim=keepdim)


def _numel(x: Value) -> Dim:
    n: Dim = 1
    for d in x.type.shape:
        n = n * d  # type: ignore[operator]
    return n


@lower("aten.cumsum.default")
def _cumsum(cx: Any, x: Value, dim: int, dtype: Any = None) -> Value:
    return cx.op("core.cumsum", cx.cast(x, cx.out_dtype()), axis=_axis(dim, x.type.rank))


# -- generators ------------------------------------------------------------------------------------------------------
def _int_dim(cx: Any, v: Any) -> Dim:
    if isinstance(v, float):
        if not v.is_integer():
            raise FrontendError(f"arange with a fractional bound {v} is not supported")
        return int(v)
    return cx.dim(v)


@lower("aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def _arange(cx: Any, *args: Any, dtype: Any = None) -> Value:
    start, end, step = (0, args[0], 1) if len(args) == 1 else (args[0], args[1], args[2] if len(args) > 2 else 1)
    step = _int_dim(cx, step)
    if not isinstance(step, int):
        raise FrontendError("arange with a symbolic step is not supported")
    return cx.op("core.arange", start=_int_dim(cx, start), end=_int_dim(cx, end), step=step, dtype=cx.out_dtype())


def _fill(cx: Any, value: Any) -> Value:
    if isinstance(value, SymExpr):
        return _expand_to(cx, cx.tensor(value, cx.out_dtype()), cx.out_shape())
    return cx.op("core.full", shape=list(cx.out_shape()), value=float(value), dtype=cx.out_dtype())


@lower("aten.full.default", "aten.new_full.default")
def _full(cx: Any, *args: Any, dtype: Any = None) -> Value:
    return _fill(cx, args[-1])


@lower("aten.full_like.default")
def _full_like(cx: Any, x: Value, fill_value: Any, dtype: Any = None) -> Value:
    return _fill(cx, fill_value)


@lower("aten.scalar_tensor.default")
def _scalar_tensor(cx: Any, s: Any, dtype: Any = None) -> Value:
    return _fill(cx, s)


@lower("aten.zeros.default", "aten.zeros_like.default", "aten.new_zeros.default", "aten.empty.memory_format",
       "aten.empty_like.default", "aten.new_empty.default", "aten.empty_strided.default")
def _zeros(cx: Any, *args: Any, dtype: Any = None) -> Value:
    return _fill(cx, 0.0)


@lower("aten.ones.default", "aten.ones_like.default", "aten.new_ones.default")
def _ones(cx: Any, *args: Any, dtype: Any = None) -> Value:
    return _fill(cx, 1.0)


@lower("aten.tril.default", "aten.triu.default")
def _triangle(cx: Any, x: Value, diagonal: int = 0) -> Value:
    return cx.op("core.triangle", x, upper=cx.node.target._opname == "triu", diagonal=diagonal)


# -- neural-network ops kept whole -----------------------------------------------------------------------------------
@lower("aten._softmax.default", "aten.softmax.int", "aten._log_softmax.default", "aten.log_softmax.int")
def _softmax(cx: Any, x: Value, dim: int, half_to_float: Any = False, dtype: Any = None) -> Value:
    log = "log_softmax" in cx.node.target._opname
    y = cx.cast(x, cx.out_dtype())
    return cx.op("nn.softmax", y, axis=_axis(dim, x.type.rank), log=log)


@lower("aten.native_layer_norm.default", "aten.layer_norm.default")
def _layer_norm(cx: Any, x: Value, normalized_shape: Sequence[int], weight: Value | None = None,
                bias: Value | None = None, eps: float = 1e-5, cudnn_enable: bool = True) -> Any:
    operands = [x] + ([weight] if weight is not None or bias is not None else [])
    if weight is None and bias is not None:
        raise FrontendError("layer_norm with a bias but no weight is not supported")
    if bias is not None:
        operands.append(bias)
    y = cx.op("nn.layer_norm", *operands, eps=float(eps), ndim=len(normalized_shape))
    return [y, None, None] if cx.node.target._opname == "native_layer_norm" else y


@lower("aten.scaled_dot_product_attention.default")
def _sdpa(cx: Any, q: Value, k: Value, v: Value, attn_mask: Value | None = None, dropout_p: float = 0.0,
          is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> Value:
    if dropout_p:
        raise FrontendError("attention dropout is not supported in inference graphs")
    if is_causal and attn_mask is not None:
        raise FrontendError("scaled_dot_product_attention with both a mask and is_causal")
    operands = [q, k, v] + ([attn_mask] if attn_mask is not None else [])
    return cx.op("nn.attention", *operands, scale=scale, causal=bool(is_causal))


# -- ops found by the model matrix (Reformer, RWKV) ------------------------------------------------------------
lower("aten.max.default")(_reduce("core.reduce_max"))  # max over every element
lower("aten.min.default")(_reduce("core.reduce_min"))


@lower("aten.log1p.default")
def _log1p(cx: Any, x: Value) -> Value:
    """log1p(x) = log(u) * x / (u - 1) with u = 1 + x, and x where u rounds to 1: exact to
    rounding for small x (Goldberg's formula), where log(1 + x) alone would lose x's low bits."""
    dt = cx.out_dtype()
    x = cx.cast(x, dt)
    one = cx.tensor(1.0, dt)
    u = cx.op("core.add", x, one)
    d = cx.op("core.sub", u, one)
    rounds_to_one = cx.op("core.eq", d, cx.tensor(0.0, dt))
    safe_d = cx.op("core.where", rounds_to_one, one, d)  # no 0/0 in the branch not taken
    ratio = cx.op("core.mul", cx.op("core.log", u), cx.op("core.div", x, safe_d))
    return cx.op("core.where", rounds_to_one, x, ratio)


@lower("aten.slice_scatter.default")
def _slice_scatter(cx: Any, x: Value, src: Value, dim: int = 0, start: Any = None, end: Any = None,
                   step: int = 1) -> Value:
    """x with x[start:end] along dim replaced by src: concat(x[:start], src, x[end:]) (step 1)."""
    if step != 1:
        raise FrontendError(f"slice_scatter with step {step} is not supported (only step 1)")
    ax = _axis(dim, x.type.rank)
    size = x.type.shape[ax]
    lo, hi = _norm_index(start, size, 0), _norm_index(end, size, size)
    src = cx.cast(src, x.type.dtype)
    parts = []
    if lo != 0:
        parts.append(cx.op("core.slice", x, axis=ax, start=0, end=lo, step=1))
    parts.append(src)
    if hi != size:
        parts.append(cx.op("core.slice", x, axis=ax, start=hi, end=size, step=1))
    return parts[0] if len(parts) == 1 else cx.op("core.concat", *parts, axis=ax)
