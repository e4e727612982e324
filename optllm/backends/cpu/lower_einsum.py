"""CPU lowering of ``core.einsum``: any equation numpy's einsum takes (explicit or implicit
output, ``...``, diagonals, broadcast size-1 dims, any number of operands) as one loop-nest
kernel (``kernels/templates/einsum.py``) reading every operand in place through one stride per
index letter::

    %2 = core.einsum %0, %1 {equation = "bhqd,bhkd->bhqk"} : f32[B,H,S,S]
      ->  output letters b, h, q, k; summed d; %1's strides for (b, h, q, k, d) = (s0, s1, 0, s2, s3)

The kernel is a plain loop nest, not a GEMM: correct for every equation; for the large
contractions a model spends its time in, the frontends emit ``core.matmul`` / ``nn.linear``.
"""

from __future__ import annotations

import numpy as np

from optllm.backends.cpu.lower import CpuLoweringError, Lowering, _op_text, handler
from optllm.backends.kernels.kir import ScalarType
from optllm.backends.kernels.templates.einsum import einsum_kernel
from optllm.ir.ops import Operation, get_opdef
from optllm.runtime.program import Arg
from optllm.runtime.views import View


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
