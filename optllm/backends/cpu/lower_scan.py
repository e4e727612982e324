"""CPU lowering of the ops that walk one axis: ``core.cumsum``, ``core.cumprod``, ``core.argmax``, ``core.argmin``,
``core.topk`` (templates in ``kernels/templates/scan.py``).

The walked axis is moved last as a view of every operand (no copy: each operand is read and
written through its own strides) and the other axes collapse into as few outer dims as their
strides allow::

    %p = core.cumsum %mask {axis = 1} : i64[B,S]      -> scan_kernel("sum", i64, rank 1):
                                                         rows d0 = B, n = S, x_is = 1
    %v, %i = core.topk %x {k = 2, axis = 0} : ...     -> topk_kernel: x permuted to [.., N],
                                                         rows over the rest, x_is = N's stride
"""

from __future__ import annotations

from optllm.backends.cpu.lower import CpuLoweringError, Lowering, _op_text, handler
from optllm.backends.kernels.kir import ScalarType
from optllm.backends.kernels.templates.scan import argmax_kernel, scan_kernel, topk_kernel
from optllm.ir.ops import Operation
from optllm.runtime.program import Arg
from optllm.runtime.views import View, collapse


def _bucket(x: int, lo: int = 16, hi: int = 1 << 16) -> int:
    """``x`` rounded up to a power of two in ``[lo, hi]``: a work hint that keeps the number of
    distinct compiled kernels small."""
    x = max(lo, min(hi, int(x)))
    return 1 << (x - 1).bit_length()


def _axis_last(v: View, axis: int) -> View:
    perm = [d for d in range(v.rank) if d != axis] + [axis]
    return v.permute(perm)


def row_args(names: list[str], views: list[View], axis: int) -> tuple[dict[str, Arg], int]:
    """Arguments of a row template: ``views`` (one shape except along the walked ``axis``) moved
    axis-last and their outer dims collapsed together. Returns (args, outer rank); the row
    lengths (``n``, ``k``) are the caller's."""
    moved = [_axis_last(w, axis) for w in views]
    outer = list(moved[0].shape[:-1])
    if outer:
        cshape, cstrides = collapse(outer, [list(w.strides[:-1]) for w in moved])
    else:
        cshape, cstrides = [1], [[0] for _ in moved]
    args: dict[str, Arg] = {}
    for name, w, st in zip(names, moved, cstrides):
        args[name] = Arg(w)
        args[f"{name}_is"] = Arg(value=int(w.strides[-1]) if w.shape[-1] > 1 else 0)
        for d, s in enumerate(st):
            args[f"{name}_s{d}"] = Arg(value=int(s))
    for d, size in enumerate(cshape):
        args[f"d{d}"] = Arg(value=int(size))
    return args, len(cshape)


def _scalar_as_row(v: View) -> View:
    """A rank-0 view as ``[1]`` (the templates walk an axis)."""
    return View(v.storage, v.offset, (1,), (0,), v.dtype) if v.rank == 0 else v


@handler("core.cumsum", "core.cumprod")
def _scan(lw: Lowering, op: Operation) -> None:
    x = _scalar_as_row(lw.view(op.operands[0]))
    out = lw.alloc(op.results[0], op.name)
    axis = op.attrs["axis"] % x.rank
    if out.numel:
        n = x.shape[axis]
        args, rank = row_args(["out", "x"], [_scalar_as_row(out), x], axis)
        args["n"] = Arg(value=n)
        kind = "sum" if op.name == "core.cumsum" else "prod"
        lw.step(scan_kernel(kind, ScalarType.of_numpy(x.dtype), rank, work=_bucket(2 * n)), args, op)
        lw.inplace(out, [lw.view(op.operands[0])])  # out[j] is written after x[j] is read
    lw.views[id(op.results[0])] = out


def _with_axis_kept(lw: Lowering, out: View, shape: tuple[int, ...], what: str) -> tuple[View, View]:
    """``out`` (a result without the walked axis, or with it kept as 1) viewed as ``shape``;
    returns (the result's own view, the reshaped view)."""
    kept = out.reshape(shape)
    if kept is None:
        out = lw.fresh(out, what)
        kept = out.reshape(shape)
    assert kept is not None  # a contiguous view always reshapes
    return out, kept


@handler("core.argmax", "core.argmin")
def _argmax(lw: Lowering, op: Operation) -> None:
    x = _scalar_as_row(lw.view(op.operands[0]))
    axis = op.attrs["axis"] % x.rank
    n = x.shape[axis]
    out = lw.alloc(op.results[0], op.name)
    if out.numel:
        if n == 0:
            raise CpuLoweringError(f"{op.name} of an empty axis (numpy raises)\n  at {_op_text(op)}")
        out, kept = _with_axis_kept(lw, out, tuple(1 if d == axis else s for d, s in enumerate(x.shape)), op.name)
        args, rank = row_args(["out", "x"], [kept, x], axis)
        args["n"] = Arg(value=n)
        kern = argmax_kernel(ScalarType.of_numpy(x.dtype), rank, work=_bucket(2 * n), minimum=op.name == "core.argmin")
        lw.step(kern, args, op)
    lw.views[id(op.results[0])] = out


@handler("core.topk")
def _topk(lw: Lowering, op: Operation) -> None:
    x = _scalar_as_row(lw.view(op.operands[0]))
    axis = op.attrs["axis"] % x.rank
    k = int(op.attrs["k"])
    n = x.shape[axis]
    if k < 0:
        raise CpuLoweringError(f"core.topk k = {k} is negative\n  at {_op_text(op)}")
    vals = lw.alloc(op.results[0], "topk values")
    idx = lw.alloc(op.results[1], "topk indices")
    if vals.numel:
        args, rank = row_args(["vals", "idx", "x"], [_scalar_as_row(vals), _scalar_as_row(idx), x], axis)
        args["n"], args["k"] = Arg(value=n), Arg(value=k)
        kern = topk_kernel(ScalarType.of_numpy(x.dtype), rank, bool(op.attrs["largest"]), work=_bucket(3 * k * n))
        lw.step(kern, args, op, checked=True)  # k > n sets the error flag (numpy: IndexError)
    lw.views[id(op.results[0])] = vals
    lw.views[id(op.results[1])] = idx
