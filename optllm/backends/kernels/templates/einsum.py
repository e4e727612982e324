"""``core.einsum``: a loop nest over the output indices (parallel) and the summed indices
(serial), any number of operands, each read through one stride per index letter::

    %2 = core.einsum %0, %1 {equation = "bij,bjk->bik"}
      ->  letters b, i, k (output) and j (summed); x0 strides (b: s, i: s, j: s, k: 0) ...
    kernel einsum_f32_o3_c1_n2(out, x0, x1, d0, d1, d2, c0, out_s0.., x0_s0.., x0_c0, x1_s0.., x1_c0)
      for parallel r in [0, d0*d1*d2):
        let i2 = r % d2, i1 = (r / d2) % d1, i0 = r / (d1*d2)
        var acc = 0.0
        for j0 in [0, c0):  acc = acc + x0[base_x0 + j0*x0_c0] * x1[base_x1 + j0*x1_c0]
        out[base_out] = acc

A letter an operand does not carry, or carries with size 1 where the others broadcast it, has
stride 0 there; a letter repeated within one operand (a diagonal, ``"ii->i"``) has the sum of
its strides. So the kernel depends only on the element type and the counts of operands, output
letters and summed letters; the equation becomes runtime sizes and strides.

Accumulation: ``f16``/``bf16`` products are summed in ``f32`` and rounded once (numpy's own
einsum on float16 accumulates in float32 too; bf16 the reference computes in f32); other types
in their own type (ints wrap; ``bool`` is an ``or`` of ``and``s, numpy's einsum on bool).
"""

from __future__ import annotations

from optllm.backends.kernels.indexing import decode, dim_params, offset, product, stride_params
from optllm.backends.kernels.kir import (
    BOOL,
    F32,
    I64,
    Assign,
    Binary,
    Cast,
    Const,
    Declare,
    Expr,
    For,
    Kernel,
    KIRError,
    Let,
    Load,
    Param,
    ScalarType,
    Stmt,
    Store,
    c,
    v,
)


def accumulator_type(dtype: ScalarType) -> ScalarType:
    return F32 if dtype in (ScalarType.F16, ScalarType.BF16) else dtype


def einsum_kernel(dtype: ScalarType, n_operands: int, n_out: int, n_sum: int, *, work: int = 1024) -> Kernel:
    """Parameters, in order: buffers ``out``, ``x0..``; output sizes ``d0..``; summed sizes
    ``c0..``; strides ``out_s*`` and ``x{i}_s*`` over the output dims; ``x{i}_c*`` over the summed
    dims (a rank-0 result is computed as ``[1]``)."""
    if n_operands < 1:
        raise KIRError("einsum_kernel needs at least one operand")
    rank = max(1, n_out)
    acc_t = accumulator_type(dtype)
    xs = [f"x{i}" for i in range(n_operands)]
    dims = [v(f"d{k}") for k in range(rank)]
    decode_stmts, idx = decode(v("r"), dims, "i")
    row: list[Stmt] = [*decode_stmts, *(Let(f"base_{o}", offset(idx, o)) for o in ["out", *xs])]
    term: Expr | None = None
    for x in xs:
        at: Expr = v(f"base_{x}")
        for q in range(n_sum):
            at = Binary("add", at, Binary("mul", v(f"j{q}"), v(f"{x}_c{q}")))
        val: Expr = Load(x, at, dtype)
        val = val if acc_t == dtype else Cast(val, acc_t)
        term = val if term is None else Binary("mul", term, val)
    assert term is not None
    zero = Const(False, BOOL) if acc_t == BOOL else Const(0.0 if acc_t.is_float else 0, acc_t)
    acc = v("acc", acc_t)
    inner: Stmt = Assign("acc", Binary("add", acc, term))
    for q in reversed(range(n_sum)):
        inner = For(f"j{q}", c(0), v(f"c{q}"), (inner,))
    result: Expr = acc if acc_t == dtype else Cast(acc, dtype)
    row += [Declare("acc", zero), inner, Store("out", v("base_out"), result)]
    params: list[Param] = [Param("out", "buffer", dtype)] + [Param(x, "buffer", dtype) for x in xs]
    params += dim_params("d", rank)
    params += dim_params("c", n_sum)
    params += stride_params(["out", *xs], rank)
    params += [Param(f"{x}_c{q}", "scalar", I64) for x in xs for q in range(n_sum)]
    loop = For("r", c(0), product(dims), tuple(row), parallel=True, work=max(1, work))
    return Kernel(f"einsum_{dtype}_o{n_out}_c{n_sum}_n{n_operands}", tuple(params), (loop,),
                  doc="core.einsum loop nest")
