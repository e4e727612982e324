"""CPU lowering of ``core.einsum``: any equation numpy's einsum takes (explicit or implicit
output, ``...``, diagonals, broadcast size-1 dims, any number of operands) as one loop-nest
kernel (``kernels/templates/einsum.py``) reading every operand in place through one stride per
index letter::

    %2 = core.einsum %0, %1 {equation = "bhqd,bhkd->bhqk"} : f32[B,H,S,S]
      ->  output letters b, h, q, k; summed d; %1's strides for (b, h, q, k, d) = (s0, s1, 0, s2, s3)

Two-operand equations that are a batched matrix product in disguise (every letter a batch,
row, column or contracted letter; no diagonal, no broadcast, no letter summed within one
operand) go through the GEMM lowering instead (BLAS for f32), their operands permuted and
reshaped as views (copied only when a view cannot express the grouping) and the result viewed
back in the output's letter order::

    %2 = core.einsum %0, %1 {equation = "bij,jk->bik"}   -> core.matmul's lowering, [B,I,J] @ [J,K]
"""

from __future__ import annotations

import numpy as np

from optllm.backends.cpu.lower import CpuLoweringError, Lowering, _op_text, handler
from optllm.backends.cpu.lower_core import matmul_views
from optllm.backends.kernels.kir import ScalarType
from optllm.backends.kernels.templates.einsum import einsum_kernel
from optllm.ir.ops import Operation, get_opdef
from optllm.runtime.program import Arg
from optllm.runtime.views import View, contiguous_strides


def _letter_strides(w: View, subs: str, letters: list[str], sizes: dict[str, int]) -> list[int]:
    """The stride of ``w`` along each letter: 0 where it lacks the letter or broadcasts it
    (size 1), the sum of its strides where the letter repeats (a diagonal)."""
    out = []
    for ch in letters:
        s = 0
        for p, sc in enumerate(subs):
            if sc == ch and not (w.shape[p] == 1 and sizes[ch] != 1):
                s += w.strides[p]
        out.append(int(s))
    return out


def _grouped(lw: Lowering, w: View, subs: str, order: list[str], shape: tuple[int, ...], op: Operation) -> View:
    """``w`` with its letters in ``order``, reshaped to ``shape`` (a copy when the view cannot)."""
    moved = w.permute([subs.index(ch) for ch in order])
    out = moved.reshape(shape)
    if out is None:
        out = lw.copy(moved, op).reshape(shape)
    assert out is not None  # a contiguous copy always reshapes
    return out


def _as_matmul(lw: Lowering, op: Operation, xs: list[View], ins: list[str], out_subs: str,
               sizes: dict[str, int]) -> bool:
    """Two operands whose letters are batch (both and the output), row (first and output),
    column (second and output) or contracted (both, not the output) letters, none repeated or
    broadcast: a batched matmul [batch.., M, K] @ [batch.., K, N] through the GEMM lowering
    (BLAS for f32), its result viewed back in the equation's output order. False otherwise."""
    s0, s1 = ins
    letters = s0 + s1 + out_subs
    if any(sub.count(ch) > 1 for sub in (s0, s1, out_subs) for ch in sub):
        return False  # a diagonal
    if any(ch not in out_subs and not (ch in s0 and ch in s1) for ch in letters):
        return False  # a letter summed within one operand
    if any(d != sizes[ch] for sub, w in zip(ins, xs) for ch, d in zip(sub, w.shape)):
        return False  # a broadcast size-1 dim
    batch = [ch for ch in out_subs if ch in s0 and ch in s1]
    rows = [ch for ch in out_subs if ch in s0 and ch not in s1]
    cols = [ch for ch in out_subs if ch in s1 and ch not in s0]
    red = [ch for ch in s0 if ch in s1 and ch not in out_subs]

    def size(group: list[str]) -> int:
        return int(np.prod([sizes[ch] for ch in group], dtype=np.int64))

    bshape = tuple(sizes[ch] for ch in batch)
    m, n, k = size(rows), size(cols), size(red)
    a = _grouped(lw, xs[0], s0, batch + rows + red, bshape + (m, k), op)
    b = _grouped(lw, xs[1], s1, batch + red + cols, bshape + (k, n), op)
    dt = np.dtype(xs[0].dtype)
    st = lw.program.new_storage("arena", int(np.prod(bshape + (m, n), dtype=np.int64)) * dt.itemsize, what=op.name)
    res_shape = bshape + (m, n)
    res = matmul_views(lw, a, b, View(st.id, 0, res_shape, contiguous_strides(res_shape), dt), op)
    full = res.reshape(bshape + tuple(sizes[ch] for ch in rows + cols))
    assert full is not None  # the result is contiguous
    order = batch + rows + cols
    lw.views[id(op.results[0])] = full.permute([order.index(ch) for ch in out_subs])
    return True


@handler("core.einsum")
def _einsum(lw: Lowering, op: Operation) -> None:
    xs = [lw.view(v) for v in op.operands]
    equation = op.attrs["equation"]
    ins, out_subs = get_opdef("core.einsum").subscripts(equation, [w.rank for w in xs])  # type: ignore[attr-defined]
    sizes: dict[str, int] = {}
    for subs, w in zip(ins, xs):
        for ch, d in zip(subs, w.shape):
            if sizes.get(ch, 1) == 1:
                sizes[ch] = int(d)
            elif d not in (1, sizes[ch]):
                raise CpuLoweringError(f"core.einsum {equation!r}: index {ch!r} is {sizes[ch]} and {d}\n"
                                       f"  at {_op_text(op)}")
    summed = [ch for ch in dict.fromkeys("".join(ins)) if ch not in out_subs]
    if len(xs) == 2 and _as_matmul(lw, op, xs, ins, out_subs, sizes):
        return
    out = lw.alloc(op.results[0], op.name)
    if out.numel:
        n_out = len(out_subs)
        args: dict[str, Arg] = {"out": Arg(out)}
        out_letters = list(out_subs)
        if n_out:
            for d, ch in enumerate(out_letters):
                args[f"d{d}"] = Arg(value=sizes[ch])
                args[f"out_s{d}"] = Arg(value=int(out.strides[d]))
        else:  # a scalar result: one row of one element
            args["d0"], args["out_s0"] = Arg(value=1), Arg(value=0)
        for q, ch in enumerate(summed):
            args[f"c{q}"] = Arg(value=sizes[ch])
        for i, (subs, w) in enumerate(zip(ins, xs)):
            args[f"x{i}"] = Arg(w)
            st = _letter_strides(w, subs, out_letters + summed, sizes)
            for d in range(max(1, n_out)):
                args[f"x{i}_s{d}"] = Arg(value=st[d] if n_out else 0)
            for q in range(len(summed)):
                args[f"x{i}_c{q}"] = Arg(value=st[n_out + q])
        inner = int(np.prod([sizes[ch] for ch in summed], dtype=np.int64)) * len(xs)
        work = 1 << (max(16, min(1 << 16, 2 * inner)) - 1).bit_length()
        k = einsum_kernel(ScalarType.of_numpy(out.dtype), len(xs), n_out, len(summed), work=work)
        lw.step(k, args, op)
    lw.views[id(op.results[0])] = out
