"""Scatters: ``core.scatter_elements`` and ``core.scatter_nd`` write updates into a copy of ``x``.

The lowering first copies ``x`` into the result (an elementwise copy, or nothing when the
result may reuse ``x``'s storage in place); the scatter kernel then walks the updates in the
order of the numpy reference (C order), so duplicate indices resolve exactly as there: the last
write wins for ``reduction = "none"``, every update is combined for ``add``/``mul``/``max``/``min``
(``ufunc.at``). The walk is serial for that reason. An index is wrapped once if negative and an
index still out of range skips its update and sets ``err[0] = code`` (the runtime raises an error
naming the op), like the checked gathers of the elementwise template::

    %3 = core.scatter_elements %x, %idx, %upd {axis = 1, reduction = "add"} : f32[N,M]
      ->  copy x -> out;
    kernel scatter_elements_add_f32_i64_r2_a1(out, idx, upd, err, d0, d1, out_s0, out_s1,
                                              idx_s0, idx_s1, upd_s0, upd_s1, out_n0, out_n1, code)
      for r in [0, d0*d1):
        let i1 = r % d1, i0 = r / d1
        let ix = idx[i0*idx_s0 + i1*idx_s1]; ix = ix < 0 ? ix + out_n1 : ix
        if ix < 0 || ix >= out_n1 || i0 >= out_n0:  err[0] = code
        else:  out[i0*out_s0 + ix*out_s1] = add(out[..], upd[i0*upd_s0 + i1*upd_s1])
"""

from __future__ import annotations

from optllm.backends.kernels.indexing import decode, dim_params, offset, product, stride_params
from optllm.backends.kernels.kir import (
    I64,
    Binary,
    Cast,
    Expr,
    For,
    If,
    Kernel,
    KIRError,
    Let,
    Load,
    Param,
    ScalarType,
    Select,
    Stmt,
    Store,
    c,
    v,
)

REDUCTIONS = {"none": None, "add": "add", "mul": "mul", "max": "max", "min": "min"}


def _combine(reduction: str, old: Expr, new: Expr) -> Expr:
    op = REDUCTIONS.get(reduction, "?")
    if op == "?":
        raise KIRError(f"unknown scatter reduction {reduction!r} (expected one of {', '.join(REDUCTIONS)})")
    return new if op is None else Binary(op, old, new)


def _wrapped(name: str, raw: Expr, n: Expr) -> tuple[list[Stmt], Expr, Expr]:
    """``raw`` as i64, negative values counted from ``n``; returns (statements, index, bad)."""
    ix = raw if raw.type == I64 else Cast(raw, I64)
    stmts: list[Stmt] = [Let(f"{name}_raw", ix)]
    raw_v = v(f"{name}_raw")
    stmts.append(Let(name, Select(Binary("lt", raw_v, c(0)), Binary("add", raw_v, n), raw_v)))
    bad = Binary("or", Binary("lt", v(name), c(0)), Binary("ge", v(name), n))
    return stmts, v(name), bad


def scatter_elements_kernel(dtype: ScalarType, index_type: ScalarType, rank: int, axis: int,
                            reduction: str) -> Kernel:
    """Parameters, in order: buffers ``out`` (``dtype``), ``idx`` (``index_type``), ``upd``
    (``dtype``), ``err`` (i64); ``d0..`` (the shape of ``idx``); strides ``out_s*``, ``idx_s*``,
    ``upd_s*`` over those dims; ``out_n*`` (``out``'s shape: ``idx`` may be larger off the axis,
    which is an error as in numpy); ``code``."""
    if rank < 1 or not 0 <= axis < rank:
        raise KIRError(f"scatter_elements_kernel needs rank >= 1 and 0 <= axis < rank, got {rank}, {axis}")
    dims = [v(f"d{k}") for k in range(rank)]
    decode_stmts, idx = decode(v("r"), dims, "i")
    wrap, ix, bad = _wrapped("ix", Load("idx", offset(idx, "idx"), index_type), v(f"out_n{axis}"))
    for d in range(rank):
        if d != axis:
            bad = Binary("or", bad, Binary("ge", idx[d], v(f"out_n{d}")))
    target = offset([ix if d == axis else i for d, i in enumerate(idx)], "out")
    update = _combine(reduction, Load("out", v("at"), dtype), Load("upd", offset(idx, "upd"), dtype))
    body: list[Stmt] = [*decode_stmts, *wrap,
                        If(bad, (Store("err", c(0), v("code")),), (Let("at", target), Store("out", v("at"), update)))]
    params: list[Param] = [Param("out", "buffer", dtype), Param("idx", "buffer", index_type),
                           Param("upd", "buffer", dtype), Param("err", "buffer", I64)]
    params += dim_params("d", rank)
    params += stride_params(["out", "idx", "upd"], rank)
    params += dim_params("out_n", rank)
    params.append(Param("code", "scalar", I64))
    return Kernel(f"scatter_elements_{reduction}_{dtype}_{index_type}_r{rank}_a{axis}", tuple(params),
                  (For("r", c(0), product(dims), tuple(body)),),
                  doc=f"core.scatter_elements reduction={reduction}")


def scatter_nd_kernel(dtype: ScalarType, index_type: ScalarType, depth: int, reduction: str) -> Kernel:
    """``rows`` index tuples of ``depth`` entries (``idx``: contiguous ``[rows, depth]``), each
    addressing a contiguous slice of ``m`` elements of ``out`` (``upd``: contiguous
    ``[rows, m]``). Parameters, in order: buffers ``out``, ``idx``, ``upd``, ``err``; ``rows``,
    ``m``; ``out_s0..`` and ``out_n0..`` (strides and sizes of the first ``depth`` dims of
    ``out``); ``code``."""
    if depth < 0:
        raise KIRError("scatter_nd_kernel needs depth >= 0")
    i, j = v("i"), v("j")
    stmts: list[Stmt] = []
    bad: Expr | None = None
    at: Expr = c(0)
    for q in range(depth):
        raw = Load("idx", Binary("add", Binary("mul", i, c(depth)), c(q)), index_type)
        wrap, ix, bad_q = _wrapped(f"ix{q}", raw, v(f"out_n{q}"))
        stmts += wrap
        bad = bad_q if bad is None else Binary("or", bad, bad_q)
        at = Binary("add", at, Binary("mul", ix, v(f"out_s{q}")))
    stmts.append(Let("at", at))
    cell = Binary("add", v("at"), j)
    update = _combine(reduction, Load("out", cell, dtype), Load("upd", Binary("add", Binary("mul", i, v("m")), j), dtype))
    write = (For("j", c(0), v("m"), (Store("out", cell, update),)),)
    stmts.append(If(bad, (Store("err", c(0), v("code")),), write) if bad is not None else write[0])
    params: list[Param] = [Param("out", "buffer", dtype), Param("idx", "buffer", index_type),
                           Param("upd", "buffer", dtype), Param("err", "buffer", I64),
                           Param("rows", "scalar", I64), Param("m", "scalar", I64)]
    params += [Param(f"out_s{q}", "scalar", I64) for q in range(depth)]
    params += [Param(f"out_n{q}", "scalar", I64) for q in range(depth)]
    params.append(Param("code", "scalar", I64))
    return Kernel(f"scatter_nd_{reduction}_{dtype}_{index_type}_d{depth}", tuple(params),
                  (For("i", c(0), v("rows"), tuple(stmts)),), doc=f"core.scatter_nd reduction={reduction}")
