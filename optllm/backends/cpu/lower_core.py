"""CPU lowering of the general ``core`` ops that are not elementwise: reductions, batched matmul.

Reductions read their operand in place whenever the reduced axes, moved to the end, collapse
into one strided dim; only then is a contiguous copy made::

    %1 = core.reduce_max %0 {axes = [0, 2], keepdim = true} : f32[1,S,1]     (%0: f32[4,S,8])
      ->  View permuted to [S, 4, 8]; the reduced (4, 8) with strides (8*S, 1) do not collapse
          into one dim -> copy to [S, 4, 8] contiguous -> reduce_kernel("max", rank 1, n = 32)

    %3 = core.matmul %1, %2 : f32[B,12,S,S]     (%2 a transposed view of a [B,12,S,64] tensor)
      ->  matmul_sgemm_kernel: one sgemm per (batch item, row block), trans_b = 1, no copy
"""

from __future__ import annotations

import numpy as np

from optllm.backends.cpu.lower import CpuLoweringError, Lowering, _op_text, handler
from optllm.backends.kernels.kir import ScalarType
from optllm.backends.kernels.templates.matmul import matmul_loop_kernel, matmul_sgemm_kernel
from optllm.backends.kernels.templates.reduce import reduce_kernel
from optllm.ir.ops import Operation
from optllm.runtime.program import Arg
from optllm.runtime.views import View, broadcast_strides, collapse

_REDUCE = {f"core.reduce_{k}": k for k in ("sum", "mean", "max", "min", "prod", "any", "all")}


def _bucket(x: int, lo: int = 16, hi: int = 1 << 20) -> int:
    """``x`` rounded up to a power of two in ``[lo, hi]``: a work hint that keeps the number of
    distinct compiled kernels small."""
    x = max(lo, min(hi, int(x)))
    return 1 << (x - 1).bit_length()


def _collapse_reduced(shape: list[int], strides: list[int]) -> int | None:
    """The single stride that walks the reduced dims (visited in any order) as one dim of
    ``prod(shape)`` elements, or ``None`` when their strides cannot express that."""
    dims = sorted(((d, s) for d, s in zip(shape, strides) if d != 1), key=lambda ds: -ds[1])
    if not dims:
        return 1
    for (_d0, s0), (d1, s1) in zip(dims, dims[1:]):
        if s0 != s1 * d1:
            return None
    return dims[-1][1]


@handler(*_REDUCE)
def _reduce(lw: Lowering, op: Operation) -> None:
    kind = _REDUCE[op.name]
    x = lw.view(op.operands[0])
    rank = x.rank
    axes = sorted({int(a) % rank for a in op.attrs["axes"]}) if rank else []
    kept = [i for i in range(rank) if i not in axes]
    out = lw.alloc(op.results[0], op.name)
    if out.numel == 0:
        lw.views[id(op.results[0])] = out
        return
    out_strides = [out.strides[i] for i in kept] if op.attrs["keepdim"] else list(out.strides)
    xp = x.permute(kept + axes)
    red_shape = list(xp.shape[len(kept):])
    n = int(np.prod(red_shape, dtype=np.int64))
    inner = _collapse_reduced(red_shape, list(xp.strides[len(kept):]))
    if inner is None:  # the reduced dims do not collapse: a contiguous copy in [kept..., reduced...] order
        xp = lw.copy(xp, op)
        inner = 1
    kept_shape = list(xp.shape[:len(kept)])
    cshape, (o_st, x_st) = collapse(kept_shape, [out_strides, list(xp.strides[:len(kept)])]) if kept_shape \
        else ([1], [[0], [0]])
    dtype = ScalarType.of_numpy(x.dtype)
    inner_kind = "contig" if inner == 1 or n <= 1 else "strided"
    k = reduce_kernel(kind, dtype, len(cshape), inner=inner_kind, work=_bucket(2 * n, 16, 1 << 14))
    args: dict[str, Arg] = {"out": Arg(out), "x": Arg(xp), "n": Arg(value=n)}
    for d, size in enumerate(cshape):
        args[f"d{d}"] = Arg(value=int(size))
        args[f"out_s{d}"] = Arg(value=int(o_st[d]))
        args[f"x_s{d}"] = Arg(value=int(x_st[d]))
    if inner_kind == "strided":
        args["x_is"] = Arg(value=int(inner))
    lw.step(k, args, op)
    lw.views[id(op.results[0])] = out


def _gemm_layout(v: View, rows: int, cols: int) -> tuple[int, int] | None:
    """``(trans, ld)`` passing the ``rows x cols`` matrix at the end of ``v`` to BLAS in place
    (row-major, or stored transposed), or ``None`` when neither orientation fits BLAS's rules
    (unit inner stride, leading dim >= the stored row length)."""
    rs, cs = v.strides[-2], v.strides[-1]
    if (cs == 1 or cols <= 1) and (rows <= 1 or rs >= max(cols, 1)):
        return 0, (rs if rows > 1 else max(cols, 1))
    if (rs == 1 or rows <= 1) and (cols <= 1 or cs >= max(rows, 1)):
        return 1, (cs if cols > 1 else max(rows, 1))
    return None


def _batch(v: View, batch: tuple[int, ...]) -> list[int]:
    return list(broadcast_strides(View(v.storage, v.offset, v.shape[:-2], v.strides[:-2], v.dtype), batch))


def _batched_args(a: View, b: View, out: View) -> tuple[dict[str, Arg], list[int]]:
    """The matmul kernels' shared arguments: operands, m/n/k and the batch dims collapsed with
    each operand's broadcast batch strides. Returns (args, collapsed batch shape)."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    batch = out.shape[:-2]
    strides = [list(out.strides[:-2]), _batch(a, batch), _batch(b, batch)]
    cshape, cstrides = collapse(batch, strides) if batch else ([1], [[0], [0], [0]])
    args: dict[str, Arg] = {"out": Arg(out), "a": Arg(a), "b": Arg(b),
                            "m": Arg(value=m), "n": Arg(value=n), "k": Arg(value=k)}
    for d, size in enumerate(cshape):
        args[f"d{d}"] = Arg(value=int(size))
        for name, st in zip(("out", "a", "b"), cstrides):
            args[f"{name}_s{d}"] = Arg(value=int(st[d]))
    return args, list(cshape)


def loop_matmul(lw: Lowering, a: View, b: View, out: View, op: Operation) -> None:
    """``out = a @ b`` (numpy batch broadcasting) with the loop-nest kernel, every operand read
    through its strides (any element type; f32 with k > 0 goes to BLAS in ``matmul_views``)."""
    _, k = a.shape[-2:]
    n = b.shape[-1]
    args, cshape = _batched_args(a, b, out)
    for name, val in (("a_ms", a.strides[-2]), ("a_ks", a.strides[-1]), ("b_ks", b.strides[-2]),
                      ("b_ns", b.strides[-1]), ("out_ms", out.strides[-2]), ("out_ns", out.strides[-1])):
        args[name] = Arg(value=int(val))
    kern = matmul_loop_kernel(ScalarType.of_numpy(out.dtype), len(cshape), work=_bucket(2 * n * k, 16, 1 << 16))
    lw.step(kern, args, op)


@handler("core.matmul")
def _matmul(lw: Lowering, op: Operation) -> None:
    a, b = (lw.view(x) for x in op.operands)
    if a.rank < 2 or b.rank < 2:
        raise CpuLoweringError(f"core.matmul needs rank >= 2 operands\n  at {_op_text(op)}")
    lw.views[id(op.results[0])] = matmul_views(lw, a, b, lw.alloc(op.results[0], "matmul"), op)


def matmul_views(lw: Lowering, a: View, b: View, out: View, op: Operation) -> View:
    """``a @ b`` (rank >= 2, numpy batch broadcasting) into ``out``, or into a fresh contiguous
    storage when ``out``'s layout does not fit BLAS; returns the view holding the result."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    if out.numel == 0:
        return out
    if not (out.dtype == np.float32 and k > 0):
        loop_matmul(lw, a, b, out, op)
        return out
    batch = out.shape[:-2]
    nb = int(np.prod(batch, dtype=np.int64)) if batch else 1
    la = _gemm_layout(a, m, k)
    if la is None:
        a = lw.copy(a, op)
        la = _gemm_layout(a, m, k)
    lb = _gemm_layout(b, k, n)
    if lb is None:
        b = lw.copy(b, op)
        lb = _gemm_layout(b, k, n)
    if (n > 1 and out.strides[-1] != 1) or (m > 1 and out.strides[-2] < n):
        out = lw.fresh(out, "matmul")
    args, cshape = _batched_args(a, b, out)
    assert la is not None and lb is not None  # a contiguous copy always fits BLAS
    tasks = max(1, 2 * lw.threads) if lw.threads > 1 else 1
    bm = m
    if nb < tasks:
        per_item = -(-tasks // nb)
        bm = min(m, max(16, -(-m // per_item)))
    ldc = out.strides[-2] if m > 1 else max(n, 1)
    for name, val in (("trans_a", la[0]), ("lda", la[1]), ("trans_b", lb[0]), ("ldb", lb[1]),
                      ("ldc", ldc), ("a_ms", a.strides[-2]), ("bm", bm)):
        args[name] = Arg(value=int(val))
    kern = matmul_sgemm_kernel(len(cshape), work=_bucket(2 * bm * n * k, 1 << 10, 1 << 20))
    lw.step(kern, args, op)
    return out
