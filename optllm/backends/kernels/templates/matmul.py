"""Batched matmul (``core.matmul``, numpy semantics with batch broadcasting).

Two templates, both addressing every operand through runtime strides over the (collapsed)
batch dims — 0 on a broadcast batch dim — so a broadcast or permuted batch is never copied:

* :func:`matmul_sgemm_kernel` (f32): one ``sgemm`` primitive per task. A task is one batch
  item and one block of ``bm`` rows of the output (the rows are split only when there are fewer
  batch items than workers)::

      %2 = core.matmul %0, %1 : f32[B,12,S,S]     (%0: f32[B,12,S,64], %1: f32[B,12,64,S] viewed
                                                   transposed: trans_b = 1, ldb = 64)
        ->
      kernel matmul_sgemm_r2(out, a, b, d0, d1, out_s0.., a_s0.., b_s0.., m, n, k, trans_a, trans_b,
                             lda, ldb, ldc, a_ms, bm)
        for parallel t in [0, d0*d1*ceil(m/bm)):
          let bi = t / nbm, r0 = (t % nbm) * bm, rows = min(bm, m - r0)
          (decode bi over d0, d1)
          sgemm(trans_a, trans_b, rows, n, k, 1.0, &a[base_a + r0*a_ms], lda, &b[base_b], ldb,
                0.0, &out[base_out + r0*ldc], ldc)

  ``a_ms`` is ``a``'s stride along the M dim (so ``r0 * a_ms`` is row ``r0`` of ``op(A)``
  whether ``A`` is stored plain or transposed). The lowering guarantees the BLAS layout rules
  (unit inner stride of the stored matrix, leading dims >= the row length), copying an operand
  contiguous when neither orientation fits.

* :func:`matmul_loop_kernel` (any other element type): a plain loop nest, one task per output
  row, ``acc += a[i, p] * b[p, j]`` in ``f32`` for 16-bit floats (numpy's float16 matmul rounds
  once from float32 too), ``f64`` for ``f64``, the element type (wrapping) for integers and
  ``or``/``and`` for ``bool``. Every matrix stride is a runtime scalar, so no operand is copied.
"""

from __future__ import annotations

from optllm.backends.kernels.indexing import decode, dim_params, offset, product, stride_params
from optllm.backends.kernels.kir import (
    BOOL,
    F32,
    F64,
    I64,
    Addr,
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
    call,
    v,
)

_OPERANDS = ("out", "a", "b")


def _batch_prologue(flat: Expr, rank: int) -> list[Stmt]:
    dims = [v(f"d{k}") for k in range(rank)]
    stmts, idx = decode(flat, dims, "i")
    stmts += [Let(f"base_{o}", offset(idx, o)) for o in _OPERANDS]
    return stmts


def matmul_sgemm_kernel(rank: int, *, work: int = 1 << 16) -> Kernel:
    """f32 batched matmul over ``rank`` batch dims (``rank >= 1``; view no batch as ``[1]``).

    Parameters, in order::

        out, a, b                                      f32 buffers
        d0 .. d{rank-1}                                i64 batch dims (of the output)
        out_s*, a_s*, b_s*                             i64 strides over the batch dims
        m, n, k, trans_a, trans_b, lda, ldb, ldc, a_ms, bm     i64

    ``work`` estimates one task's scalar operations (a compile-time hint).
    """
    if rank < 1:
        raise KIRError("matmul_sgemm_kernel needs rank >= 1 (view an unbatched matmul as [1])")
    m, bm = v("m"), v("bm")
    nbm = Binary("div", Binary("add", m, Binary("sub", bm, c(1))), bm)
    body: list[Stmt] = [Let("bi", Binary("div", v("t"), nbm)),
                        Let("r0", Binary("mul", Binary("mod", v("t"), nbm), bm)),
                        Let("rows", Binary("min", bm, Binary("sub", m, v("r0"))))]
    body += _batch_prologue(v("bi"), rank)
    body.append(call("sgemm", v("trans_a"), v("trans_b"), v("rows"), v("n"), v("k"), c(1.0, F32),
                     Addr("a", Binary("add", v("base_a"), Binary("mul", v("r0"), v("a_ms")))), v("lda"),
                     Addr("b", v("base_b")), v("ldb"), c(0.0, F32),
                     Addr("out", Binary("add", v("base_out"), Binary("mul", v("r0"), v("ldc")))), v("ldc")))
    tasks = Binary("mul", product([v(f"d{k}") for k in range(rank)]), nbm)
    loop = For("t", c(0), tasks, tuple(body), parallel=True, work=max(1, int(work)))
    params = [Param(o, "buffer", F32) for o in _OPERANDS]
    params += dim_params("d", rank)
    params += stride_params(_OPERANDS, rank)
    params += [Param(s, "scalar", I64) for s in ("m", "n", "k", "trans_a", "trans_b", "lda", "ldb", "ldc",
                                                  "a_ms", "bm")]
    return Kernel(f"matmul_sgemm_r{rank}", tuple(params), (loop,), doc="core.matmul (f32, one sgemm per task)")


def _acc_type(dtype: ScalarType) -> ScalarType:
    if dtype.is_float:
        return F64 if dtype == F64 else F32
    return dtype


def matmul_loop_kernel(dtype: ScalarType, rank: int, *, work: int = 1 << 12) -> Kernel:
    """Batched matmul of any element type as a loop nest, one parallel task per output row.

    Parameters, in order::

        out, a, b                                      buffers of dtype
        d0 .. d{rank-1}                                i64 batch dims (of the output)
        out_s*, a_s*, b_s*                             i64 strides over the batch dims
        m, n, k                                        i64
        a_ms, a_ks, b_ks, b_ns, out_ms, out_ns         i64 matrix strides
    """
    if rank < 1:
        raise KIRError("matmul_loop_kernel needs rank >= 1 (view an unbatched matmul as [1])")
    acc = BOOL if dtype == BOOL else _acc_type(dtype)
    m = v("m")

    def elem(buf: str, i: Expr, s_i: str, j: Expr, s_j: str) -> Expr:
        idx = Binary("add", v(f"base_{buf}"), Binary("add", Binary("mul", i, v(s_i)), Binary("mul", j, v(s_j))))
        e: Expr = Load(buf, idx, dtype)
        return e if e.type == acc else Cast(e, acc)

    i, j, p = v("i"), v("j"), v("p")
    prod_ = (Binary("and", elem("a", i, "a_ms", p, "a_ks"), elem("b", p, "b_ks", j, "b_ns")) if acc == BOOL
             else Binary("mul", elem("a", i, "a_ms", p, "a_ks"), elem("b", p, "b_ks", j, "b_ns")))
    zero = Const(False, BOOL) if acc == BOOL else Const(0.0 if acc.is_float else 0, acc)
    accv = v("acc", acc)
    upd = Binary("or" if acc == BOOL else "add", accv, prod_)
    res: Expr = accv if acc == dtype else Cast(accv, dtype)
    out_at = Binary("add", v("base_out"), Binary("add", Binary("mul", i, v("out_ms")), Binary("mul", j, v("out_ns"))))
    inner = For("j", c(0), v("n"), (Declare("acc", zero),
                                    For("p", c(0), v("k"), (Assign("acc", upd),)),
                                    Store("out", out_at, res)))
    body: list[Stmt] = [Let("bi", Binary("div", v("t"), m)), Let("i", Binary("mod", v("t"), m))]
    body += _batch_prologue(v("bi"), rank)
    body.append(inner)
    tasks = Binary("mul", product([v(f"d{k}") for k in range(rank)]), m)
    loop = For("t", c(0), tasks, tuple(body), parallel=True, work=max(1, int(work)))
    params = [Param(o, "buffer", dtype) for o in _OPERANDS]
    params += dim_params("d", rank)
    params += stride_params(_OPERANDS, rank)
    params += [Param(s, "scalar", I64) for s in ("m", "n", "k", "a_ms", "a_ks", "b_ks", "b_ns", "out_ms", "out_ns")]
    return Kernel(f"matmul_loop_{dtype}_r{rank}", tuple(params), (loop,), doc=f"core.matmul ({dtype}, loop nest)")
