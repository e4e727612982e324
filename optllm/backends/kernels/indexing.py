"""Index arithmetic shared by the templates: strided views over a flattened loop index.

Templates iterate a flat index ``r`` over the leading (outer) dims of a tensor and address each
operand through its own strides (0 on a broadcast dim), so a transposed, sliced or broadcast
operand is read in place, never copied::

    dims    d0, d1, d2          (runtime scalars "d0", "d1", "d2")
    r  ->   i2 = r % d2, i1 = (r / d2) % d1, i0 = r / (d1*d2)
    offset of operand x = i0*x_s0 + i1*x_s1 + i2*x_s2   (runtime scalars "x_s0", ...)

Everything is an ``i64`` KIR expression, so every printer shares it.
"""

from __future__ import annotations

from collections.abc import Sequence

from optllm.backends.kernels.kir import I64, Binary, Expr, Let, Param, Stmt, Var, c, v


def dim_params(prefix: str, rank: int) -> tuple[Param, ...]:
    """Scalar parameters ``{prefix}0 .. {prefix}{rank-1}`` (sizes or strides)."""
    return tuple(Param(f"{prefix}{i}", "scalar", I64) for i in range(rank))


def stride_name(operand: str, dim: int) -> str:
    return f"{operand}_s{dim}"


def stride_params(operands: Sequence[str], rank: int) -> tuple[Param, ...]:
    """One stride scalar per operand and dim: ``x_s0, x_s1, ..., y_s0, ...``."""
    return tuple(Param(stride_name(o, i), "scalar", I64) for o in operands for i in range(rank))


def decode(flat: Expr, dims: Sequence[Expr], prefix: str) -> tuple[list[Stmt], list[Var]]:
    """Split ``flat`` (row-major over ``dims``) into per-dim indices bound as ``{prefix}{i}``."""
    stmts: list[Stmt] = []
    idx: list[Var] = []
    rest: Expr = flat
    for i in range(len(dims) - 1, -1, -1):
        name = f"{prefix}{i}"
        if i == 0:
            stmts.append(Let(name, rest))
        else:
            stmts.append(Let(name, Binary("mod", rest, dims[i])))
            rest = Binary("div", rest, dims[i])
        idx.append(v(name))
    idx.reverse()
    return stmts, idx


def offset(indices: Sequence[Expr], operand: str) -> Expr:
    """``sum(i_k * operand_s{k})``: the element offset of ``operand`` at ``indices``."""
    total: Expr = c(0)
    for k, i in enumerate(indices):
        total = Binary("add", total, Binary("mul", i, v(stride_name(operand, k))))
    return total


def product(dims: Sequence[Expr]) -> Expr:
    total: Expr = c(1)
    for d in dims:
        total = Binary("mul", total, d)
    return total
