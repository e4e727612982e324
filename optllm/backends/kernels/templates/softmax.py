"""Row softmax and log-softmax (``nn.softmax`` over the last, contiguous dim).

Before/after (``f32[B,12,S,S]``, axis -1)::

    %1 = nn.softmax %0 {axis = -1} : f32[B,12,S,S]
    ->  softmax_kernel(F32, log=False) called with rows = B*12*S, n = S, x_rs = out_rs = S
"""

from __future__ import annotations

from optllm.backends.kernels.kir import (
    I64,
    Assign,
    Binary,
    Const,
    Declare,
    Expr,
    For,
    Kernel,
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
from optllm.backends.kernels.templates.rownorm import ROW_WORK, acc_type, cast_to, finite_or_zero


def softmax_kernel(dtype: ScalarType, *, log: bool, zero_masked_rows: bool = False) -> Kernel:
    """Softmax (``log=False``) or log-softmax (``log=True``) of each row.

    Parameters, in order::

        out, x                       buffers of dtype
        rows, n, x_rs, out_rs        i64

    Row ``r`` element ``j`` is ``x[r * x_rs + j]``. ``m = max(row)`` (0 when not finite);
    softmax ``exp(x - m) * (1 / sum)``, log-softmax ``(x - m) - log(sum)``. ``out`` may alias ``x``.
    A row of -inf gives NaN (``0 * (1/0)``, nn.softmax's semantics); with ``zero_masked_rows``
    (softmax only) it gives 0, ``nn.attention``'s default for a fully masked row.
    """
    if log and zero_masked_rows:
        raise ValueError("softmax_kernel: zero_masked_rows is for softmax, not log-softmax")
    acc = acc_type(dtype)
    r, j, n = v("r"), v("j"), v("n")
    xj = cast_to(load("x", v("x_o") + j, dtype), acc)
    m = v("m", acc)
    head: list[Stmt] = [
        Let("x_o", r * v("x_rs")), Let("out_o", r * v("out_rs")),
        Declare("mx", Const(float("-inf"), acc)),
        For("j", c(0), n, (Assign("mx", Binary("max", v("mx", acc), xj)),), independent=True),
        Let("m", finite_or_zero(v("mx", acc))),
        Declare("total", Const(0.0, acc)),
    ]
    if log:
        tail: list[Stmt] = [
            For("j", c(0), n, (Assign("total", v("total", acc) + Unary("exp", xj - m)),), independent=True),
            Let("lse", Unary("log", v("total", acc))),
            For("j", c(0), n, (Store("out", v("out_o") + j, cast_to((xj - m) - v("lse", acc), dtype)),), independent=True),
        ]
    else:  # exp is stored once and rescaled in place (reads out, so out == x is fine)
        e = Unary("exp", xj - m)
        tail = [
            For("j", c(0), n, (Let("e", cast_to(e, dtype)), Store("out", v("out_o") + j, v("e", dtype)),
                               Assign("total", v("total", acc) + cast_to(v("e", dtype), acc))), independent=True),
            Let("inv", _inverse(v("total", acc), zero_masked_rows)),
            For("j", c(0), n, (Store("out", v("out_o") + j,
                                     cast_to(cast_to(load("out", v("out_o") + j, dtype), acc) * v("inv", acc),
                                             dtype)),), independent=True),
        ]
    body = For("r", c(0), v("rows"), (*head, *tail), parallel=True, work=ROW_WORK)
    params = (Param("out", "buffer", dtype), Param("x", "buffer", dtype),
              *(Param(p, "scalar", I64) for p in ("rows", "n", "x_rs", "out_rs")))
    name = f"{'log_' if log else ''}softmax_{dtype}{'_zero_masked_rows' if zero_masked_rows else ''}"
    return Kernel(name, params, (body,), doc=softmax_kernel.__doc__ or "")


def _inverse(total: Expr, zero_masked_rows: bool) -> Expr:
    """``1 / total``; with ``zero_masked_rows`` 0 where ``total`` is not positive: only a row
    of -inf sums to 0, and a NaN total (NaN inputs) still leaves NaN (``NaN * 0``)."""
    inv = Const(1.0, total.type) / total
    if not zero_masked_rows:
        return inv
    return Select(Binary("gt", total, Const(0.0, total.type)), inv, Const(0.0, total.type))
