"""Row norms: ``nn.layer_norm``, ``nn.rms_norm`` and their fused-residual ``nn.skip_*`` forms.

One parallel iteration normalises one row of ``n`` contiguous elements. Statistics are
accumulated in ``f32`` (``f64`` for ``f64`` data), like the references and PyTorch's CPU
kernels; the variance is two-pass (``mean((s - mean)^2)``), never ``E[s^2] - mean^2``.

Before/after (layer norm over the last dim of ``f32[B,S,768]``)::

    %3 = nn.layer_norm %x, %gamma, %beta {eps = 1.0e-05} : f32[B,S,768]
    ->  norm_kernel("layer", F32, skip=False, has_weight=True, has_bias=True, write_sum=False)
        called with rows = B*S, n = 768, x_rs = out_rs = 768
"""

from __future__ import annotations

from optllm.backends.kernels.kir import (
    F32,
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
    Select,
    Stmt,
    Store,
    Unary,
    c,
    load,
    v,
)


def acc_type(dtype: ScalarType) -> ScalarType:
    """The type reductions over ``dtype`` data accumulate in: f64 stays f64, the rest use f32."""
    if not dtype.is_float:
        raise KIRError(f"row kernels need a floating element type, got {dtype}")
    return F64 if dtype == F64 else F32


def cast_to(e: Expr, to: ScalarType) -> Expr:
    """``e`` converted to ``to`` (no node when it already has that type)."""
    return e if e.type == to else Cast(e, to)


def finite_or_zero(m: Expr) -> Expr:
    """``m`` if finite else 0: the max a softmax subtracts (rows of -inf then give NaN)."""
    bad = Binary("or", Unary("isnan", m), Unary("isinf", m))
    return Select(bad, Const(0.0, m.type), m)


ROW_WORK = 8 * 1024
"""Static ``work`` estimate of one row (8 ops per element at a typical n of ~1k): ``work`` is a
compile-time int while ``n`` is a runtime scalar."""


def norm_kernel(kind: str, dtype: ScalarType, *, skip: bool, has_weight: bool, has_bias: bool,
                write_sum: bool) -> Kernel:
    """A layer norm (``kind="layer"``) or RMS norm (``kind="rms"``) over rows.

    Parameters, in order (optional ones only when their flag is set)::

        out, x, [skip], [sum_out if write_sum], [weight], [bias]      buffers of dtype
        rows, n, x_rs, [skip_rs], out_rs, [sum_rs]                    i64
        eps                                                           f32

    Row ``r`` element ``j`` of operand ``a`` is ``a[r * a_rs + j]``; ``weight``/``bias`` are
    ``n`` contiguous elements. ``s = x + skip`` (in dtype; ``x`` alone without skip) is what is
    normalised and, with ``write_sum``, stored to ``sum_out``. ``out`` may alias ``x`` (in place);
    with ``write_sum`` ``sum_out`` may alias ``x`` or ``skip`` too (later passes read ``sum_out``).

    * layer: ``y = (s - mean) * (1 / sqrt(var + eps)) [* weight] [+ bias]``
    * rms:   ``y = s * (1 / sqrt(mean(s*s) + eps)) [* weight]``
    """
    if kind not in ("layer", "rms"):
        raise KIRError(f"norm kind must be 'layer' or 'rms', got {kind!r}")
    if write_sum and not skip:
        raise KIRError("write_sum needs skip=True (the sum is x + skip)")
    if kind == "rms" and has_bias:
        raise KIRError("rms norm has no bias")
    acc = acc_type(dtype)
    r, j, n = v("r"), v("j"), v("n")

    def elem(buf: str) -> Expr:
        return load(buf, v(f"{buf}_o") + j, dtype)

    def s_pass1() -> Expr:  # the first pass always reads x (+ skip)
        return elem("x") + elem("skip") if skip else elem("x")

    def s_later() -> Expr:  # later passes re-read the sum where it was stored (aliasing-safe)
        return elem("sum_out") if write_sum else s_pass1()

    row_offsets: list[Stmt] = [Let("x_o", r * v("x_rs")), Let("out_o", r * v("out_rs"))]
    if skip:
        row_offsets.append(Let("skip_o", r * v("skip_rs")))
    if write_sum:
        row_offsets.append(Let("sum_out_o", r * v("sum_rs")))

    first: list[Stmt] = [Let("s", s_pass1())]
    if write_sum:
        first.append(Store("sum_out", v("sum_out_o") + j, v("s", dtype)))
    sa = cast_to(v("s", dtype), acc)
    nf = Cast(n, acc)
    zero = Const(0.0, acc)
    eps = cast_to(v("eps", F32), acc)

    if kind == "layer":
        first.append(Assign("total", v("total", acc) + sa))
        stats: list[Stmt] = [
            Declare("total", zero),
            For("j", c(0), n, tuple(first), independent=True),
            Let("mean", v("total", acc) / nf),
            Declare("sq", zero),
            For("j", c(0), n, (Let("d", cast_to(s_later(), acc) - v("mean", acc)),
                               Assign("sq", v("sq", acc) + v("d", acc) * v("d", acc))), independent=True),
            Let("rstd", Const(1.0, acc) / Unary("sqrt", v("sq", acc) / nf + eps)),
        ]
        y = (cast_to(s_later(), acc) - v("mean", acc)) * v("rstd", acc)
    else:
        first.append(Assign("total", v("total", acc) + sa * sa))
        stats = [
            Declare("total", zero),
            For("j", c(0), n, tuple(first), independent=True),
            # the reference rounds the scale to the element type before multiplying
            Let("rstd", cast_to(Const(1.0, acc) / Unary("sqrt", v("total", acc) / nf + eps), dtype)),
        ]
        y = cast_to(s_later() * v("rstd", dtype), acc)
    if has_weight:
        y = y * cast_to(load("weight", j, dtype), acc)
    if has_bias:
        y = y + cast_to(load("bias", j, dtype), acc)
    write = For("j", c(0), n, (Store("out", v("out_o") + j, cast_to(y, dtype)),), independent=True)

    body = For("r", c(0), v("rows"), (*row_offsets, *stats, write), parallel=True, work=ROW_WORK)
    names = ["out", "x"] + ["skip"] * skip + ["sum_out"] * write_sum + ["weight"] * has_weight + ["bias"] * has_bias
    scalars = ["rows", "n", "x_rs"] + ["skip_rs"] * skip + ["out_rs"] + ["sum_rs"] * write_sum
    params = (*(Param(p, "buffer", dtype) for p in names), *(Param(p, "scalar", I64) for p in scalars),
              Param("eps", "scalar", F32))
    flags = "".join(f for f, on in (("_skip", skip), ("_sum", write_sum), ("_w", has_weight), ("_b", has_bias)) if on)
    return Kernel(f"{kind}_norm_{dtype}{flags}", params, (body,), doc=norm_kernel.__doc__ or "")
