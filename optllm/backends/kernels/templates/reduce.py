"""Reductions over the last axis of strided rows: ``core.reduce_{sum,mean,max,min,prod,any,all}``.

The lowering permutes the reduced axes of the operand to the end and collapses them into one
dim of ``n`` elements with one (runtime) inner stride; the kept axes are the outer dims, decoded
from a flat row index like the elementwise template does, each operand with its own strides::

    %1 = core.reduce_sum %0 {axes = [1]} : f32[B,4]          (%0: f32[B,S,4])
      ->  permute to [B,4,S], rows B*4 over dims (d0=B, d1=4), n = S, x_is = 4
    kernel reduce_sum_f32_r2_strided(out, x, d0, d1, n, out_s0, out_s1, x_s0, x_s1, x_is)
      for parallel r in [0, d0*d1):
        let i1 = r % d1, i0 = r / d1
        var acc = 0.0:f32
        for j in [0, n):  acc = add(acc, x[i0*x_s0 + i1*x_s1 + j*x_is])
        out[i0*out_s0 + i1*out_s1] = acc

Semantics follow the numpy references of the ops (``optllm/ir/dialects/core.py``):

* ``sum``/``mean``/``prod`` of floating data accumulate in ``f32`` (``f64`` for ``f64``) and
  round once to the element type; ``mean`` divides in the accumulation type (numpy's float16
  mean uses float32 intermediates, as here). Vectorised sums may be reassociated, so results
  match numpy's pairwise sum to rounding.
* ``max``/``min`` propagate NaN (numpy's ``np.max``), start from ``-inf``/``+inf`` (the type's
  limits for integers); an empty row gives that start value (numpy raises instead).
* Integers accumulate in their own type with wrapping arithmetic, which is what numpy's sum in a
  wider type followed by ``astype`` gives. ``bool`` data: ``sum``/``max``/``any`` are a logical
  or, ``min``/``prod``/``all`` a logical and; ``any``/``all`` of other types test ``!= 0`` and
  yield ``bool``.
"""

from __future__ import annotations

import numpy as np

from optllm.backends.kernels.indexing import decode, dim_params, offset, product, stride_params
from optllm.backends.kernels.kir import (
    BOOL,
    F64,
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
    Param,
    ScalarType,
    Stmt,
    Store,
    c,
    load,
    v,
)

REDUCE_KINDS = ("sum", "mean", "max", "min", "prod", "any", "all")


def result_type(kind: str, dtype: ScalarType) -> ScalarType:
    """The element type a reduction of ``dtype`` data produces."""
    return BOOL if kind in ("any", "all") else dtype


def _acc_type(kind: str, dtype: ScalarType) -> ScalarType:
    if kind in ("any", "all") or dtype == BOOL:
        return BOOL
    if dtype.is_float and kind in ("sum", "mean", "prod"):
        return F64 if dtype == F64 else ScalarType.F32
    return dtype


def _identity(kind: str, acc: ScalarType) -> Const:
    if acc == BOOL:
        return Const(kind in ("min", "prod", "all"), BOOL)
    if kind in ("sum", "mean"):
        return Const(0.0 if acc.is_float else 0, acc)
    if kind == "prod":
        return Const(1.0 if acc.is_float else 1, acc)
    if acc.is_float:
        return Const(float("-inf") if kind == "max" else float("inf"), acc)
    info = np.iinfo(acc.to_numpy())
    return Const(int(info.min) if kind == "max" else int(info.max), acc)


def _combine(kind: str, acc: ScalarType, a: Expr, x: Expr) -> Expr:
    if acc == BOOL:
        return Binary("and" if kind in ("min", "prod", "all") else "or", a, x)
    op = {"sum": "add", "mean": "add", "prod": "mul", "max": "max", "min": "min"}[kind]
    return Binary(op, a, x)


def reduce_kernel(kind: str, dtype: ScalarType, rank: int, *, inner: str = "strided",
                  work: int = 1024) -> Kernel:
    """Reduce ``n`` elements per output element over ``rank`` outer dims (``rank >= 1``).

    Parameters, in order::

        out (result_type(kind, dtype)), x (dtype)      buffers
        d0 .. d{rank-1}, n                             i64: outer dims, reduced length
        out_s0 .., x_s0 ..                             i64: strides over the outer dims
        x_is                                           i64: the inner stride (``inner="strided"``)

    ``inner="contig"`` specialises a unit inner stride (the vectorisable case); ``work`` is the
    scalar operations one row takes (a compile-time hint for the serial/parallel decision).
    """
    if kind not in REDUCE_KINDS:
        raise KIRError(f"unknown reduction {kind!r} (expected one of {', '.join(REDUCE_KINDS)})")
    if inner not in ("contig", "strided"):
        raise KIRError(f"reduce inner kind must be 'contig' or 'strided', got {inner!r}")
    if rank < 1:
        raise KIRError("reduce_kernel needs rank >= 1 (view a scalar result as [1])")
    if kind == "mean" and not dtype.is_float:
        raise KIRError(f"reduce_mean needs a floating element type, got {dtype}")
    acc = _acc_type(kind, dtype)
    out_t = result_type(kind, dtype)
    dims = [v(f"d{k}") for k in range(rank)]
    j = v("j")
    step: Expr = j if inner == "contig" else Binary("mul", j, v("x_is"))
    xj: Expr = load("x", Binary("add", v("base_x"), step), dtype)
    if xj.type != acc:
        xj = Cast(xj, acc)  # widening, or ``!= 0`` for any/all
    accv = v("acc", acc)
    result: Expr = accv
    if kind == "mean":
        result = Binary("div", accv, Cast(v("n"), acc))
    if result.type != out_t:
        result = Cast(result, out_t)
    decode_stmts, idx = decode(v("r"), dims, "i")
    row: list[Stmt] = [*decode_stmts,
                       Let("base_x", offset(idx, "x")),
                       Let("base_out", offset(idx, "out")),
                       Declare("acc", _identity(kind, acc)),
                       For("j", c(0), v("n"), (Assign("acc", _combine(kind, acc, accv, xj)),)),
                       Store("out", v("base_out"), result)]
    loop = For("r", c(0), product(dims), tuple(row), parallel=True, work=max(1, int(work)))
    params: list[Param] = [Param("out", "buffer", out_t), Param("x", "buffer", dtype)]
    params += dim_params("d", rank)
    params.append(Param("n", "scalar", I64))
    params += stride_params(["out", "x"], rank)
    if inner == "strided":
        params.append(Param("x_is", "scalar", I64))
    return Kernel(f"reduce_{kind}_{dtype}_r{rank}_{inner}", tuple(params), (loop,),
                  doc=f"core.reduce_{kind} over the last axis of strided rows")
