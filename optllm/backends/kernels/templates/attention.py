"""Scaled dot-product attention (``nn.attention``), tiled over the query sequence.

A task is one (batch, q head, tile of ``tile`` query rows). Its scores ``[tile, S]`` live in
the worker's slice of ``scratch`` (``ThreadIndex() * tile * S``), so memory stays
``NumThreads * tile * S`` whatever ``L`` is::

    scores = scale * Q_tile @ K^T            sgemm (trans_b), straight into scratch
    per row: causal / mask, max, exp, sum, * 1/sum      (a fully masked row: 0, or NaN)
    out_tile = P @ V                         sgemm, straight into out

With ``causal`` only the first ``min(S, i0 + rows)`` key columns of a tile can be kept, so both
GEMMs and the row loops stop there (about half the work at L == S).

Before/after (``f32[B,12,S,64]``, GQA with 4 k/v heads)::

    %o = nn.attention %q, %k, %v, %mask {scale = 0.125, causal = true} : f32[B,12,S,64]
    ->  attention_kernel(F32, mask="bool", causal=True) called with nb=B, hq=12, hk=4, L=S, ...
"""

from __future__ import annotations

from optllm.backends.kernels.kir import (
    BOOL,
    F32,
    I64,
    Addr,
    Assign,
    Binary,
    Call,
    Const,
    Declare,
    Expr,
    For,
    Kernel,
    KIRError,
    Let,
    Param,
    ScalarType,
    Select,
    Stmt,
    Store,
    ThreadIndex,
    Unary,
    c,
    load,
    v,
)
from optllm.backends.kernels.templates.rownorm import finite_or_zero

MASKS = (None, "bool", "additive")
MASKED_ROWS = ("zero", "nan")
"""What a fully masked row (every score -inf, so ``sum == 0``) gives: ``nn.attention``'s
``masked_rows``. "zero" scales it by 0 instead of ``1/0`` (torch SDPA, ONNX Attention); "nan"
keeps softmax's ``0 * (1/0)`` (the fused eager chain)."""
L2_BYTES = 1 << 20
TASK_WORK = 1 << 15
"""Static ``work`` of one task (a tile's two GEMMs, at least ``2 * S * (E + Ev)`` flops: 32K at
S = 128, E = 64): one task runs on the calling thread, two or more are split across workers."""


def default_tile(L: int, S: int, num_threads: int, *, batch_heads: int = 1) -> int:
    """Query rows per task: the largest tile whose ``tile * S`` f32 scores fit in ``L2_BYTES``,
    halved (down to 16) while there are fewer than ``4 * num_threads`` tasks
    (``batch_heads * ceil(L / tile)``, with ``batch_heads = nb * hq``)."""
    tile = max(1, min(L, L2_BYTES // (4 * max(S, 1))))
    while tile > 16 and batch_heads * -(-L // tile) < 4 * num_threads:
        tile = (tile + 1) // 2
    return tile


def _ld(stride: str, row: str) -> Expr:
    """A GEMM leading dimension: the row stride, or the row length when larger (BLAS wants
    ``ld >= max(1, row)`` even where a size-1 dim leaves the stride meaningless)."""
    return Binary("max", v(stride), Binary("max", v(row), c(1)))


def _masked_score(sv: Expr, mask: str | None, causal: bool) -> Expr:
    """The score of key ``j`` for query row ``gi`` after causal and mask (in that order)."""
    ninf = Const(float("-inf"), F32)
    if causal:
        sv = Select(Binary("le", v("j"), v("gi")), sv, ninf)
    if mask is None:
        return sv
    m = load("mask", v("m_o") + v("j") * v("m_s3"), BOOL if mask == "bool" else F32)
    return Select(m, sv, ninf) if mask == "bool" else sv + m


def _inverse_total(masked_rows: str) -> Expr:
    """``1 / total``; with "zero", 0 where ``total`` is not positive. Only a fully masked row
    sums to 0 (the row max contributes exp(0) = 1), and a NaN total stays NaN downstream
    (``NaN * 0``), so NaN inputs still give NaN."""
    total = v("total", F32)
    inv = Const(1.0, F32) / total
    if masked_rows == "nan":
        return inv  # 0 * (1/0) = NaN for a fully masked row
    return Select(Binary("gt", total, Const(0.0, F32)), inv, Const(0.0, F32))


def _row_softmax(mask: str | None, causal: bool, masked_rows: str) -> list[Stmt]:
    """Softmax of scratch row ``i`` (``cols`` entries) in place, after masking it."""
    j = v("j")
    idx = v("row") + j
    sv = load("scratch", idx, F32)
    first: list[Stmt] = [Let("sm", _masked_score(sv, mask, causal))]
    if causal or mask is not None:
        first.append(Store("scratch", idx, v("sm", F32)))
    first.append(Assign("mx", Binary("max", v("mx", F32), v("sm", F32))))
    row: list[Stmt] = [Let("row", v("sc") + v("i") * v("S")), Let("gi", v("i0") + v("i"))]
    if mask is not None:
        row.append(Let("m_o", v("b") * v("m_s0") + v("h") * v("m_s1") + v("gi") * v("m_s2")))
    return [
        *row,
        Declare("mx", Const(float("-inf"), F32)),
        For("j", c(0), v("cols"), tuple(first), independent=True),
        Let("m", finite_or_zero(v("mx", F32))),
        Declare("total", Const(0.0, F32)),
        For("j", c(0), v("cols"), (Let("e", Unary("exp", sv - v("m", F32))), Store("scratch", idx, v("e", F32)),
                                   Assign("total", v("total", F32) + v("e", F32))), independent=True),
        Let("inv", _inverse_total(masked_rows)),
        For("j", c(0), v("cols"), (Store("scratch", idx, sv * v("inv", F32)),), independent=True),
    ]


def attention_kernel(dtype: ScalarType, *, mask: str | None, causal: bool, masked_rows: str = "zero") -> Kernel:
    """Attention over ``q[nb,hq,L,E]``, ``k[nb,hk,S,E]``, ``v[nb,hk,S,Ev]`` into
    ``out[nb,hq,L,Ev]``; q head ``h`` reads k/v head ``h // (hq // hk)`` (GQA).

    Parameters, in order (mask ones only with a mask)::

        out, q, k, v, [mask], scratch                       buffers (mask: bool or dtype)
        nb, hq, hk, L, S, E, Ev                              i64
        q_s0, q_s1, q_s2, k_s0, k_s1, k_s2,                  i64 element strides of dims 0..2
        v_s0, v_s1, v_s2, o_s0, o_s1, o_s2,                  (the last dim is contiguous)
        [m_s0, m_s1, m_s2, m_s3]                             i64 mask strides (0 = broadcast)
        tile                                                 i64 query rows per task
        scale                                                f32

    ``mask`` is ``[nb, hq, L, S]`` through its strides: ``"bool"`` (one byte per element,
    true = attend) or ``"additive"`` (added to the scores). ``causal`` keeps key ``j <= i``
    (``np.tril``, top-left aligned when L != S). A row with every key masked gives 0
    (``masked_rows="zero"``) or NaN (``"nan"``), see ``MASKED_ROWS``. ``scratch`` holds at least
    ``NumThreads() * tile * S`` f32. The row strides ``q_s2``, ``k_s2``, ``v_s2``, ``o_s2`` are
    GEMM leading dimensions: raised to the row length when smaller (harmless on a size-1 dim),
    so a 0 stride on a dim of size > 1 (q broadcast over L) is not supported.
    """
    if dtype != F32:
        raise KIRError(f"attention_kernel is f32 only (the sgemm primitive), got {dtype}")
    if mask not in MASKS:
        raise KIRError(f"attention mask must be one of {MASKS}, got {mask!r}")
    if masked_rows not in MASKED_ROWS:
        raise KIRError(f"attention masked_rows must be one of {MASKED_ROWS}, got {masked_rows!r}")
    S, tile = v("S"), v("tile")
    rows = Binary("min", tile, v("L") - v("i0"))
    cols = Binary("min", S, v("i0") + v("rows")) if causal else S
    task: list[Stmt] = [
        Let("ti", Binary("mod", v("t"), v("nt"))), Let("bh", Binary("div", v("t"), v("nt"))),
        Let("h", Binary("mod", v("bh"), v("hq"))), Let("b", Binary("div", v("bh"), v("hq"))),
        Let("kh", Binary("div", v("h"), Binary("div", v("hq"), v("hk")))),
        Let("i0", v("ti") * tile), Let("rows", rows), Let("cols", cols),
        Let("sc", ThreadIndex() * (tile * S)),
        Let("q_o", v("b") * v("q_s0") + v("h") * v("q_s1") + v("i0") * v("q_s2")),
        Let("k_o", v("b") * v("k_s0") + v("kh") * v("k_s1")),
        Let("v_o", v("b") * v("v_s0") + v("kh") * v("v_s1")),
        Let("o_o", v("b") * v("o_s0") + v("h") * v("o_s1") + v("i0") * v("o_s2")),
        # scores[rows, cols] = scale * Q_tile @ K[:cols]^T
        Call("sgemm", (c(0), c(1), v("rows"), v("cols"), v("E"), v("scale", F32), Addr("q", v("q_o")), _ld("q_s2", "E"),
                       Addr("k", v("k_o")), _ld("k_s2", "E"), Const(0.0, F32), Addr("scratch", v("sc")), v("sld"))),
        For("i", c(0), v("rows"), tuple(_row_softmax(mask, causal, masked_rows))),
        # out_tile[rows, Ev] = P[rows, cols] @ V[:cols]
        Call("sgemm", (c(0), c(0), v("rows"), v("Ev"), v("cols"), Const(1.0, F32), Addr("scratch", v("sc")), v("sld"),
                       Addr("v", v("v_o")), _ld("v_s2", "Ev"), Const(0.0, F32), Addr("out", v("o_o")),
                       _ld("o_s2", "Ev"))),
    ]
    body = (
        Let("nt", Binary("div", v("L") + tile - c(1), tile)),
        Let("sld", Binary("max", S, c(1))),  # the scratch rows' stride as a leading dimension
        For("t", c(0), v("nb") * v("hq") * v("nt"), tuple(task), parallel=True, work=TASK_WORK),
    )
    buffers = [Param("out", "buffer", F32), Param("q", "buffer", F32), Param("k", "buffer", F32),
               Param("v", "buffer", F32)]
    if mask is not None:
        buffers.append(Param("mask", "buffer", BOOL if mask == "bool" else F32))
    buffers.append(Param("scratch", "buffer", F32))
    scalars = ["nb", "hq", "hk", "L", "S", "E", "Ev"]
    scalars += [f"{o}_s{d}" for o in ("q", "k", "v", "o") for d in range(3)]
    if mask is not None:
        scalars += [f"m_s{d}" for d in range(4)]
    scalars.append("tile")
    params = (*buffers, *(Param(p, "scalar", I64) for p in scalars), Param("scale", "scalar", F32))
    name = f"attention_{dtype}{'_' + mask if mask else ''}{'_causal' if causal else ''}"
    name += "_nanrows" if masked_rows == "nan" else ""
    return Kernel(name, params, body, doc=attention_kernel.__doc__ or "")
