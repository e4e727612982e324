"""Walks along one axis of strided rows: running scans (``core.cumsum``, ``core.cumprod``), the
index of the first maximum or minimum (``core.argmax``, ``core.argmin``) and the k best elements
(``core.topk``).

The lowering moves the walked axis last (a view) and leaves the other axes as outer dims, decoded
from a flat row index as the reduce template does; every operand keeps its own strides::

    %1 = core.cumsum %0 {axis = 1} : i64[B,S]
      ->  rows B over dims (d0 = B), n = S, x_is = 1
    kernel scan_sum_i64_r1(out, x, d0, n, out_s0, x_s0, out_is, x_is)
      for parallel r in [0, d0):
        var acc = 0:i64
        for j in [0, n):
          acc = cast<i64>(add(acc, x[r*x_s0 + j*x_is]))
          out[r*out_s0 + j*out_is] = acc

Semantics follow the ops' numpy references (``optllm/ir/dialects/core.py``):

* scans accumulate in the element type, rounding every partial result to it as numpy's
  ``cumsum(x, dtype=x.dtype)`` does (f16/bf16 round after each add; ints wrap; bool: ``or``
  for sum, ``and`` for prod). The update is wrapped in a same-type ``Cast`` so the printer does
  not mark it reassociable: every partial result is stored, so it must be the sequential one.
* argmax / argmin: the first maximum / minimum; a NaN beats every number and the first NaN wins
  (numpy's argmax and argmin alike).
* topk: the total order of ``argsort(key, kind="stable")`` with ``key = -x`` (largest) or ``x``:
  by value, ties by lower index, NaN after every number. Each of the ``k`` outputs is the
  smallest element (in that order) after the previous one, found in one pass over the row: no
  scratch and no sort, ``k * n`` comparisons (top-k is taken with small ``k``). ``k > n`` (an
  IndexError in the reference) sets the error flag, so the run fails naming the op.
"""

from __future__ import annotations

from optllm.backends.kernels.indexing import decode, dim_params, offset, product, stride_params
from optllm.backends.kernels.kir import (
    BOOL,
    I64,
    Assign,
    Binary,
    Cast,
    Const,
    Declare,
    Expr,
    For,
    If,
    Kernel,
    KIRError,
    Let,
    Param,
    ScalarType,
    Select,
    Stmt,
    Store,
    Unary,
    c,
    load,
    v,
)

SCAN_KINDS = ("sum", "prod")


def _zero(t: ScalarType, value: int = 0) -> Const:
    if t == BOOL:
        return Const(bool(value), BOOL)
    return Const(float(value) if t.is_float else value, t)


def _rows(rank: int, operands: list[str], inner: list[Stmt], work: int) -> For:
    """``for parallel r`` over the outer dims, with ``base_<operand>`` bound for each operand."""
    dims = [v(f"d{k}") for k in range(rank)]
    decode_stmts, idx = decode(v("r"), dims, "i")
    row: list[Stmt] = [*decode_stmts, *(Let(f"base_{o}", offset(idx, o)) for o in operands), *inner]
    return For("r", c(0), product(dims), tuple(row), parallel=True, work=max(1, work))


def _at(operand: str, j: Expr) -> Expr:
    """``base_<operand> + j * <operand>_is``: element ``j`` of the current row."""
    return Binary("add", v(f"base_{operand}"), Binary("mul", j, v(f"{operand}_is")))


def _row_params(outs: list[tuple[str, ScalarType]], x: ScalarType, rank: int, extra: tuple[str, ...] = ()) -> tuple[Param, ...]:
    names = [o for o, _ in outs] + ["x"]
    params: list[Param] = [Param(o, "buffer", t) for o, t in outs] + [Param("x", "buffer", x)]
    params += dim_params("d", rank)
    params += [Param("n", "scalar", I64)] + [Param(e, "scalar", I64) for e in extra]
    params += stride_params(names, rank)
    params += [Param(f"{o}_is", "scalar", I64) for o in names]
    return tuple(params)


def scan_kernel(kind: str, dtype: ScalarType, rank: int, *, work: int = 1024) -> Kernel:
    """Running sum or product of ``n`` elements per row over ``rank`` outer dims (``rank >= 1``).

    Parameters, in order: ``out``, ``x`` (buffers of ``dtype``); ``d0..``, ``n``; strides
    ``out_s*``, ``x_s*`` over the outer dims; inner strides ``out_is``, ``x_is``."""
    if kind not in SCAN_KINDS:
        raise KIRError(f"unknown scan {kind!r} (expected one of {', '.join(SCAN_KINDS)})")
    if rank < 1:
        raise KIRError("scan_kernel needs rank >= 1 (view a single row as [1, n])")
    acc = v("acc", dtype)
    j = v("j")
    xj = load("x", _at("x", j), dtype)
    step = Cast(Binary("add" if kind == "sum" else "mul", acc, xj), dtype)  # see the module docstring
    inner: list[Stmt] = [Declare("acc", _zero(dtype, 0 if kind == "sum" else 1)),
                         For("j", c(0), v("n"), (Assign("acc", step), Store("out", _at("out", j), acc)))]
    return Kernel(f"scan_{kind}_{dtype}_r{rank}", _row_params([("out", dtype)], dtype, rank),
                  (_rows(rank, ["out", "x"], inner, work),), doc=f"core.cum{kind} along strided rows")


def _nan(x: Expr) -> Expr:
    return Unary("isnan", x) if x.type.is_float else Const(False, BOOL)


def _or(*xs: Expr) -> Expr:
    out = xs[0]
    for x in xs[1:]:
        out = Binary("or", out, x)
    return out


def _and(*xs: Expr) -> Expr:
    out = xs[0]
    for x in xs[1:]:
        out = Binary("and", out, x)
    return out


def argmax_kernel(dtype: ScalarType, rank: int, *, work: int = 1024, minimum: bool = False) -> Kernel:
    """The index (i64) of the first maximum (``minimum``: minimum) of ``n >= 1`` elements per row;
    NaN is the maximum and the minimum (numpy), the first NaN wins.

    Parameters, in order: ``out`` (i64), ``x``; ``d0..``, ``n``; ``out_s*``, ``x_s*``; ``out_is``
    (unused by the body, kept for the shared row layout), ``x_is``."""
    if rank < 1:
        raise KIRError("argmax_kernel needs rank >= 1")
    best, bi = v("best", dtype), v("bi")
    j = v("j")
    xj = v("xj", dtype)
    # x beats best when greater (smaller), or when it is the first NaN (numpy: the first NaN wins)
    better = _or(Binary("lt" if minimum else "gt", xj, best), _and(_nan(xj), Unary("not", _nan(best))))
    body = (Let("xj", load("x", _at("x", j), dtype)), Let("better", better),
            Assign("best", Select(v("better", BOOL), xj, best)), Assign("bi", Select(v("better", BOOL), j, bi)))
    inner: list[Stmt] = [Declare("best", load("x", v("base_x"), dtype)), Declare("bi", c(0)),
                         For("j", c(1), v("n"), body), Store("out", v("base_out"), bi)]
    op = "argmin" if minimum else "argmax"
    return Kernel(f"{op}_{dtype}_r{rank}", _row_params([("out", I64)], dtype, rank),
                  (_rows(rank, ["out", "x"], inner, work),), doc=f"core.{op} along strided rows")


def _before(xa: Expr, ia: Expr, xb: Expr, ib: Expr, largest: bool) -> Expr:
    """(xa, ia) comes before (xb, ib) in ``argsort(key, kind="stable")`` order, NaN last."""
    first = Binary("gt" if largest else "lt", xa, xb)
    tie = _and(Binary("eq", xa, xb), Binary("lt", ia, ib))
    if not xa.type.is_float:
        return _or(first, tie)
    an, bn = _nan(xa), _nan(xb)
    return _or(first, tie, _and(Unary("not", an), bn), _and(an, bn, Binary("lt", ia, ib)))


def topk_kernel(dtype: ScalarType, rank: int, largest: bool, *, work: int = 1024) -> Kernel:
    """The ``k`` first elements per row in (value, index) order, values and i64 indices.

    Parameters, in order: ``vals`` (``dtype``), ``idx`` (i64), ``x``; ``d0..``, ``n``, ``k``;
    strides ``vals_s*``, ``idx_s*``, ``x_s*``; inner strides ``vals_is``, ``idx_is``, ``x_is``."""
    if rank < 1:
        raise KIRError("topk_kernel needs rank >= 1")
    j, t = v("j"), v("t")
    xj = v("xj", dtype)
    pv, pi, bv, bi = v("pv", dtype), v("pi"), v("bv", dtype), v("bi")
    after_prev = _or(Binary("eq", pi, c(-1)), _before(pv, pi, xj, j, largest))
    beats_best = _or(Binary("eq", bi, c(-1)), _before(xj, j, bv, bi, largest))
    take = v("take", BOOL)
    scan = (Let("xj", load("x", _at("x", j), dtype)), Let("take", _and(after_prev, beats_best)),
            Assign("bv", Select(take, xj, bv)), Assign("bi", Select(take, j, bi)))
    per_k = (Declare("bv", _zero(dtype)), Declare("bi", c(-1)), For("j", c(0), v("n"), scan),
             Store("vals", _at("vals", t), bv), Store("idx", _at("idx", t), bi),
             Assign("pv", bv), Assign("pi", bi))
    inner: list[Stmt] = [Declare("pv", _zero(dtype)), Declare("pi", c(-1)), For("t", c(0), v("k"), per_k)]
    params = _row_params([("vals", dtype), ("idx", I64)], dtype, rank, extra=("k",))
    params = (*params, Param("err", "buffer", I64), Param("code", "scalar", I64))
    # k > n is the reference's IndexError: reported through the error flag, and no row is walked
    check = If(Binary("gt", v("k"), v("n")), (Store("err", c(0), v("code")),),
               (_rows(rank, ["vals", "idx", "x"], inner, work),))
    return Kernel(f"topk_{'largest' if largest else 'smallest'}_{dtype}_r{rank}", params, (check,),
                  doc="core.topk along strided rows")
