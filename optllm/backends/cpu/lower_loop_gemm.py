"""``nn.linear`` and ``nn.attention`` in the element types the f32 templates do not take (f16,
bf16, f64): the same computation as their numpy references, step by step, from loop-nest
kernels (``matmul_loop_kernel``, the elementwise template, ``softmax_kernel``)::

    %y = nn.linear %x, %w, %b {bias = true, activation = "gelu"} : f16[B,S,N]
      ->  matmul_loop(x, w) -> y;  elementwise y = gelu(y + b)
    %o = nn.attention %q, %k, %v, %m {causal = true} : f16[B,Hq,L,Ev]     (Hq = Hk * rep)
      ->  elementwise qs = q * scale;  matmul_loop over [B, Hk, rep] (k, v broadcast over rep):
          s = qs @ k^T;  elementwise s = where(causal & mask, s, -inf) (or s + mask);
          softmax rows of s (a fully masked row: 0 or NaN by masked_rows);  matmul_loop o = s @ v

f32 stays on the GEMM and attention templates (BLAS, the fused attention kernel): this module
registers its handlers over theirs and hands f32 ops back to them, so nothing changes there.
The loop kernels accumulate products in f32 for 16-bit floats, as numpy's half matmul does.
"""

from __future__ import annotations

import math

import numpy as np

from optllm.backends.cpu import lower_nn  # noqa: F401  (its f32 handlers are registered before ours)
from optllm.backends.cpu.lower import CpuLoweringError, Lowering, _op_text, handler, registered
from optllm.backends.cpu.lower_core import loop_matmul
from optllm.backends.kernels.kir import Binary, Const, Expr, ScalarType, Select
from optllm.backends.kernels.templates.elementwise import ElementContext
from optllm.backends.kernels.templates.scalar import ACTIVATIONS
from optllm.backends.kernels.templates.softmax import softmax_kernel
from optllm.ir.ops import Operation
from optllm.runtime.program import Arg
from optllm.runtime.views import View, contiguous_strides

_F32_LINEAR = registered("nn.linear")
_F32_ATTENTION = registered("nn.attention")


def _new(lw: Lowering, shape: tuple[int, ...], dtype: np.dtype, what: str) -> View:
    s = lw.program.new_storage("arena", int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, what=what)
    return View(s.id, 0, shape, contiguous_strides(shape), np.dtype(dtype))


def _reshaped(lw: Lowering, v: View, shape: tuple[int, ...], op: Operation) -> View:
    out = v.reshape(shape)
    if out is None:
        out = lw.copy(v, op).reshape(shape)
    assert out is not None  # a contiguous copy always reshapes
    return out


@handler("nn.linear")
def _linear(lw: Lowering, op: Operation) -> None:
    dtype = op.results[0].type.dtype.to_numpy()
    if dtype == np.float32:
        _F32_LINEAR(lw, op)
        return
    a = op.attrs
    x = lw.view(op.operands[0])
    w = lw.view(op.operands[1])
    if a["transpose_w"]:
        w = w.permute([1, 0])
    out = lw.alloc(op.results[0], "linear")
    x2 = _reshaped(lw, x, (int(np.prod(x.shape[:-1], dtype=np.int64)), x.shape[-1]), op)
    out2 = out.reshape((x2.shape[0], w.shape[1]))
    if out2 is None:
        out = lw.fresh(out, "linear")
        out2 = out.reshape((x2.shape[0], w.shape[1]))
    assert out2 is not None
    if out.numel:
        loop_matmul(lw, x2, w, out2, op)
    rest = [lw.view(v) for v in op.operands[2:]]
    act = ACTIVATIONS[a["activation"]]
    if a["bias"] or a["residual"] or a["activation"] != "none":
        def body(ctx: ElementContext) -> list[Expr]:
            y = ctx.let(ctx.load(0))
            i = 1
            if a["bias"]:
                y = ctx.let(Binary("add", y, ctx.load(i)))
                i += 1
            y = ctx.let(act(y))
            if a["residual"]:
                y = ctx.let(Binary("add", y, ctx.load(i)))
            return [y]

        lw._run_elementwise(out, [out, *rest], body, op)  # in place: each element reads only itself
    lw.views[id(op.results[0])] = out


@handler("nn.attention")
def _attention(lw: Lowering, op: Operation) -> None:
    dtype = op.results[0].type.dtype.to_numpy()
    if dtype == np.float32:
        _F32_ATTENTION(lw, op)
        return
    q, k, v = (lw.view(x) for x in op.operands[:3])
    t = ScalarType.of_numpy(q.dtype)
    out = lw.alloc(op.results[0], "attention")
    batch = out.shape[:-3]
    hq, L, E = q.shape[-3:]
    hk, S, Ev = k.shape[-3], k.shape[-2], v.shape[-1]
    if hk == 0 or hq % hk:
        raise CpuLoweringError(f"nn.attention: {hq} q heads are not a multiple of {hk} k/v heads\n  at {_op_text(op)}")
    rep = hq // hk
    scale = op.attrs.get("scale")
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    if out.numel == 0:
        lw.views[id(op.results[0])] = out
        return
    # q * scale in the element type (the reference scales q before the product)
    qs = _new(lw, batch + (hq, L, E), q.dtype, "attention q*scale")
    lw._run_elementwise(qs, [q], lambda ctx: [ctx.let(Binary("mul", ctx.load(0), Const(scale, t)))], op)
    qs5 = qs.reshape(batch + (hk, rep, L, E))
    assert qs5 is not None
    k5 = _reshaped(lw, k, k.shape[:-3] + (hk, 1, S, E), op)
    kt = k5.permute(list(range(k5.rank - 2)) + [k5.rank - 1, k5.rank - 2])
    scores = _new(lw, batch + (hk, rep, L, S), q.dtype, "attention scores")
    loop_matmul(lw, qs5, kt, scores, op)
    s4 = scores.reshape(batch + (hq, L, S))
    assert s4 is not None
    causal = bool(op.attrs["causal"])
    mask = lw.view(op.operands[3]) if len(op.operands) > 3 else None
    if causal or mask is not None:
        neg_inf = Const(float("-inf"), t)
        inputs = [s4] + ([mask] if mask is not None else [])

        def masked(ctx: ElementContext) -> list[Expr]:
            s: Expr = ctx.let(ctx.load(0))
            if causal:  # keep j <= i (numpy's tril of an L x S block)
                keep = Binary("le", ctx.index(s4.rank - 1), ctx.index(s4.rank - 2))
                s = ctx.let(Select(keep, s, neg_inf))
            if mask is not None:
                mv = ctx.let(ctx.load(1))
                s = ctx.let(Select(mv, s, neg_inf) if mask.dtype == np.bool_ else Binary("add", s, mv))
            return [s]

        lw._run_elementwise(s4, inputs, masked, op, collapse_dims=False)
    rows = int(np.prod(s4.shape[:-1], dtype=np.int64))
    zero_rows = op.attrs.get("masked_rows", "zero") == "zero"
    lw.step(softmax_kernel(t, log=False, zero_masked_rows=zero_rows), {"out": Arg(s4), "x": Arg(s4), "rows": Arg(value=rows), "n": Arg(value=S),
                                            "x_rs": Arg(value=S), "out_rs": Arg(value=S)}, op)
    v5 = _reshaped(lw, v, v.shape[:-3] + (hk, 1, S, Ev), op)
    if not out.is_contiguous():
        out = lw.fresh(out, "attention")
    out5 = out.reshape(batch + (hk, rep, L, Ev))
    assert out5 is not None
    loop_matmul(lw, scores, v5, out5, op)
    lw.views[id(op.results[0])] = out

