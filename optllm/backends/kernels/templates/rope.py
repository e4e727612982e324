"""Rotary position embedding, rotate-half form (``nn.rope``).

Before/after (``f32[B,8,S,64]`` with cos/sin ``f32[S,64]`` broadcast over B and heads)::

    %y = nn.rope %x, %cos, %sin : f32[B,8,S,64]
    ->  rope_kernel(F32, 3) called with d0..d2 = B, 8, S, n = 64 and cos_s0 = cos_s1 = 0
"""

from __future__ import annotations

from optllm.backends.kernels.indexing import decode, dim_params, offset, product, stride_params
from optllm.backends.kernels.kir import (
    I64,
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

OPERANDS = ("x", "cos", "sin", "out")


def rope_kernel(dtype: ScalarType, rank: int) -> Kernel:
    """``out = x * cos + rotate_half(x) * sin`` over rows of ``n`` contiguous elements, where
    ``rotate_half(x)[j] = -x[j + n/2]`` for ``j < n/2`` and ``x[j - n/2]`` after.

    Parameters, in order::

        out, x, cos, sin                                  buffers of dtype
        d0 .. d{rank-1}                                   i64 leading (row) dims
        n                                                 i64 last dim (even, stride 1)
        x_s0.., cos_s0.., sin_s0.., out_s0..              i64 strides of the leading dims
                                                          (0 where cos/sin broadcast)

    Computed in the element type like the reference; ``out`` may alias ``x``.
    """
    if not dtype.is_float:
        raise KIRError(f"rope needs a floating element type, got {dtype}")
    if rank < 0:
        raise KIRError(f"rope rank must be >= 0, got {rank}")
    dims = [v(f"d{i}") for i in range(rank)]
    index, idx = decode(v("r"), dims, "i")
    bases: list[Stmt] = [Let(f"{o}_o", offset(idx, o)) for o in OPERANDS]
    j, h = v("j"), v("h")

    def at(buf: str, k: Expr) -> Expr:
        return load(buf, v(f"{buf}_o") + k, dtype)

    a, b = v("a", dtype), v("b", dtype)
    pair = (
        Let("a", at("x", j)), Let("b", at("x", j + h)),
        Store("out", v("out_o") + j, a * at("cos", j) + (-b) * at("sin", j)),
        Store("out", v("out_o") + j + h, b * at("cos", j + h) + a * at("sin", j + h)),
    )
    body = (
        Let("h", v("n") / c(2)),
        For("r", c(0), product(dims), (*index, *bases, For("j", c(0), h, pair)), parallel=True, work=512),
    )
    params = (*(Param(p, "buffer", dtype) for p in ("out", "x", "cos", "sin")), *dim_params("d", rank),
              Param("n", "scalar", I64), *stride_params(OPERANDS, rank))
    return Kernel(f"rope_{dtype}_r{rank}", params, body, doc=rope_kernel.__doc__ or "")
