"""CPU lowering of the indexing ops: ``core.gather_elements``, multi-index ``core.index``,
``core.triangle``, ``core.scatter_elements``, ``core.scatter_nd``.

Gathers are elementwise kernels over their result that read ``x`` as a *table* at computed
indices (the checked gather of the elementwise template: a negative index counts from the end,
one still out of range sets the error flag and the run fails naming the op)::

    %2 = core.gather_elements %x, %idx {axis = 1} : f32[B,S]
      ->  for each (i, j) of idx:  out[i, j] = x[i, wrap(idx[i, j])]
    %3 = core.index %x, %i0, %i1 {axes = [1, 2]} : f32[B,N,4]     (%i0, %i1: i64[N] broadcast)
      ->  out[b, n, c] = x[b, wrap(i0[n]), wrap(i1[n]), c]

Scatters copy ``x`` into the result (in place when ``x`` dies there) and then walk the updates
serially in the reference's order (``kernels/templates/scatter.py``).
"""

from __future__ import annotations

import numpy as np

from optllm.backends.cpu.lower import CpuLoweringError, Lowering, _op_text, handler
from optllm.backends.kernels.kir import BOOL, Binary, Const, Expr, ScalarType, Select, c
from optllm.backends.kernels.templates.elementwise import ElementContext
from optllm.backends.kernels.templates.scatter import scatter_elements_kernel, scatter_nd_kernel
from optllm.ir.ops import Operation
from optllm.runtime.program import Arg
from optllm.runtime.views import View, broadcast_strides, contiguous_strides


def _copy_into(lw: Lowering, out: View, src: View, op: Operation) -> None:
    lw._run_elementwise(out, [src], lambda ctx: [ctx.let(ctx.load(0))], op)


def _contiguous(lw: Lowering, w: View, op: Operation) -> View:
    return w if w.is_contiguous() else lw.copy(w, op)


@handler("core.gather_elements")
def _gather_elements(lw: Lowering, op: Operation) -> None:
    x, idx = (lw.view(v) for v in op.operands)
    out = lw.alloc(op.results[0], op.name)
    axis = op.attrs["axis"] % x.rank

    def body(ctx: ElementContext) -> list[Expr]:
        ids = ctx.let(ctx.load(0))
        at: list[Expr | tuple[Expr, bool]] = []
        for d in range(x.rank):
            if d == axis:
                at.append((ids, True))
            elif idx.shape[d] > x.shape[d]:  # past x off the axis: an error, as in the reference
                at.append((ctx.index(d), False))
            else:
                at.append(ctx.index(d))
        return [ctx.let(ctx.gather(0, at))]

    lw._run_elementwise(out, [idx], body, op, tables=[x], collapse_dims=False)
    lw.views[id(op.results[0])] = out


@handler("core.index")
def _index(lw: Lowering, op: Operation) -> None:
    x = lw.view(op.operands[0])
    ids = [lw.view(v) for v in op.operands[1:]]
    if any(w.dtype == np.bool_ for w in ids):
        raise CpuLoweringError(f"core.index with a bool mask selects a data-dependent number of elements; "
                               f"the cpu target needs integer indices\n  at {_op_text(op)}")
    axes = sorted(a % x.rank for a in op.attrs["axes"])
    first, last = axes[0], axes[-1]
    out = lw.alloc(op.results[0], op.name)
    nb = out.rank - (x.rank - len(axes))  # rank of the broadcast index shape
    bshape = out.shape[first:first + nb]
    extra = []
    for w in ids:
        inner = broadcast_strides(w, bshape) if nb else ()
        extra.append((w, (0,) * first + tuple(inner) + (0,) * (out.rank - first - nb)))

    def body(ctx: ElementContext) -> list[Expr]:
        at: list[Expr | tuple[Expr, bool]] = []
        for d in range(x.rank):
            if d < first:
                at.append(ctx.index(d))
            elif d <= last:
                at.append((ctx.let(ctx.load(d - first)), True))
            else:
                at.append(ctx.index(d - last - 1 + first + nb))
        return [ctx.let(ctx.gather(0, at))]

    target = out if out.rank else View(out.storage, out.offset, (1,), (0,), out.dtype)
    extra = [(w, st or (0,)) for w, st in extra]
    lw._run_elementwise(target, [], body, op, extra=extra, tables=[x], collapse_dims=False)
    lw.views[id(op.results[0])] = out


@handler("core.triangle")
def _triangle(lw: Lowering, op: Operation) -> None:
    x = lw.view(op.operands[0])
    out = lw.alloc(op.results[0], op.name)
    t = ScalarType.of_numpy(x.dtype)
    diag = int(op.attrs["diagonal"])
    upper = bool(op.attrs["upper"])
    zero = Const(False, t) if t == BOOL else Const(0.0 if t.is_float else 0, t)

    def body(ctx: ElementContext) -> list[Expr]:
        above = Binary("sub", ctx.index(out.rank - 1), ctx.index(out.rank - 2))  # j - i
        keep = Binary("ge" if upper else "le", above, c(diag))  # triu: j >= i + k; tril: j <= i + k
        return [ctx.let(Select(keep, ctx.load(0), zero))]

    lw._run_elementwise(out, [x], body, op, collapse_dims=False)
    lw.inplace(out, [x])
    lw.views[id(op.results[0])] = out


@handler("core.scatter_elements")
def _scatter_elements(lw: Lowering, op: Operation) -> None:
    x, idx, upd = (lw.view(v) for v in op.operands)
    out = lw.alloc(op.results[0], op.name)
    _copy_into(lw, out, x, op)
    lw.inplace(out, [x])
    axis = op.attrs["axis"] % x.rank
    if idx.numel:
        args: dict[str, Arg] = {"out": Arg(out), "idx": Arg(idx), "upd": Arg(upd)}
        for d in range(idx.rank):
            args[f"d{d}"] = Arg(value=idx.shape[d])
            args[f"out_n{d}"] = Arg(value=out.shape[d])
            for name, w in (("out", out), ("idx", idx), ("upd", upd)):
                args[f"{name}_s{d}"] = Arg(value=int(w.strides[d]))
        k = scatter_elements_kernel(ScalarType.of_numpy(x.dtype), ScalarType.of_numpy(idx.dtype), idx.rank, axis,
                                    op.attrs["reduction"])
        lw.step(k, args, op, checked=True)
    lw.views[id(op.results[0])] = out


@handler("core.scatter_nd")
def _scatter_nd(lw: Lowering, op: Operation) -> None:
    x, idx, upd = (lw.view(v) for v in op.operands)
    depth = idx.shape[-1]
    if depth > x.rank:
        raise CpuLoweringError(f"core.scatter_nd index tuples of {depth} entries address a rank-{x.rank} "
                               f"tensor\n  at {_op_text(op)}")
    out = lw.alloc(op.results[0], op.name)
    if not out.is_contiguous():  # each index tuple addresses a contiguous slice of the result
        out = lw.fresh(out, op.name)
    _copy_into(lw, out, x, op)
    lw.inplace(out, [x])
    rows = int(np.prod(idx.shape[:-1], dtype=np.int64))
    m = int(np.prod(x.shape[depth:], dtype=np.int64))
    if rows * m and upd.numel != rows * m:
        raise CpuLoweringError(f"core.scatter_nd updates {list(upd.shape)} do not hold {rows} slices of "
                               f"{list(x.shape[depth:])}\n  at {_op_text(op)}")
    if rows:
        idx, upd = _contiguous(lw, idx, op), _contiguous(lw, upd, op)
        strides = contiguous_strides(out.shape)
        args: dict[str, Arg] = {"out": Arg(out), "idx": Arg(idx), "upd": Arg(upd),
                                "rows": Arg(value=rows), "m": Arg(value=m)}
        for q in range(depth):
            args[f"out_s{q}"] = Arg(value=int(strides[q]))
            args[f"out_n{q}"] = Arg(value=int(out.shape[q]))
        k = scatter_nd_kernel(ScalarType.of_numpy(x.dtype), ScalarType.of_numpy(idx.dtype), depth,
                              op.attrs["reduction"])
        lw.step(k, args, op, checked=True)
    lw.views[id(op.results[0])] = out
