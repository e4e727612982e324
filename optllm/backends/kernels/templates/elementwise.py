"""The elementwise/broadcast template: one loop nest over the output, any expression tree inside.

Filled with a ``fused.region{kind=elementwise}`` body (or one elementwise op), it becomes one
kernel that reads every operand through its own strides — broadcast dims have stride 0,
transposed or sliced views their real strides — so no operand is materialised first::

    %11 = fused.region %9, %8, %10 {kind = "elementwise"} : bool[B,1,S,S] {
      ^(%a: i64[1,1,1,S], %b: i64[1,1,S,1], %c: bool[B,1,1,S]):
      %0 = core.le %a, %b : bool[1,1,S,S]
      %1 = core.and %0, %c : bool[B,1,S,S]
      return %1
    }
      ->
    kernel ew_...(buffer o0: bool, buffer a0: i64, buffer a1: i64, buffer a2: bool, d0..d3, o0_s0.., a0_s0..)
      for parallel r in [0, d0*d1*d2):          # the outer dims, split across workers
        let i2 = r % d2, i1 = (r / d2) % d1, i0 = r / (d1*d2)
        let base_a0 = i0*a0_s0 + i1*a0_s1 + i2*a0_s2 ...
        for j in [0, d3):                       # the inner dim: unit, zero or runtime stride
          let t0 = le(a0[base_a0 + j], a1[base_a1])
          o0[base_o0 + j] = and(t0, a2[base_a2 + j])

Gathers (``nn.embedding``, ``core.gather``) read a *table* operand at an index loaded from
another operand; an index out of range is clamped for the read and reported through the
``err`` buffer (``err[0] = code``), which the runtime checks after the call, so a bad id is an
error naming the op rather than a wild read.

Parameters, in order: outputs ``o0..``, inputs ``a0..``, tables ``g0..``, ``err`` (i64, only
with tables), dims ``d0..d{R-1}``, strides ``{operand}_s{k}`` for every output and input over
the R output dims, then per table its strides ``g{t}_s{k}`` and sizes ``g{t}_n{k}`` over its own
rank, and ``code`` (the error code) with tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from optllm.backends.kernels.indexing import decode, dim_params, offset, product, stride_name, stride_params
from optllm.backends.kernels.kir import (
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
    Load,
    Param,
    ScalarType,
    Select,
    Stmt,
    Store,
    Var,
    c,
    v,
)

INNER_KINDS = ("contig", "bcast", "strided")


@dataclass(frozen=True)
class Operand:
    """An output or input of the loop nest: its element type and how the inner index moves
    through it (``contig``: stride 1, ``bcast``: stride 0, ``strided``: the runtime stride)."""

    ctype: ScalarType
    inner: str = "contig"

    def __post_init__(self) -> None:
        if self.inner not in INNER_KINDS:
            raise KIRError(f"operand inner kind must be one of {INNER_KINDS}, got {self.inner!r}")


@dataclass(frozen=True)
class Table:
    """A gathered operand: read at computed indices, with its own rank, strides and sizes."""

    ctype: ScalarType
    rank: int


@dataclass
class ElementContext:
    """What a body builder sees while filling the inner loop for one output element."""

    rank: int
    inputs: Sequence[Operand]
    tables: Sequence[Table]
    stmts: list[Stmt] = field(default_factory=list)
    _n: int = 0
    _gathers: int = 0

    def index(self, dim: int) -> Expr:
        """The output index along ``dim``."""
        return v("j") if dim == self.rank - 1 else v(f"i{dim}")

    def load(self, i: int) -> Expr:
        """Input ``i`` at the current output element."""
        op = self.inputs[i]
        return Load(f"a{i}", Binary("add", v(f"base_a{i}"), _inner_step(f"a{i}", op, self.rank)), op.ctype)

    def let(self, e: Expr) -> Expr:
        """Bind ``e`` to a fresh name (each intermediate is computed once)."""
        if isinstance(e, (Var, Const)):
            return e
        name = f"t{self._n}"
        self._n += 1
        self.stmts.append(Let(name, e))
        return Var(name, e.type)

    def gather(self, t: int, indices: Sequence[Expr | tuple[Expr, bool]]) -> Expr:
        """Table ``t`` at ``indices`` (one per table dim). A computed index is given as
        ``(expr, wrap_negative)``; it is bounds-checked against the table's size on that dim."""
        table = self.tables[t]
        if len(indices) != table.rank:
            raise KIRError(f"table g{t} has rank {table.rank}, got {len(indices)} indices")
        flat: Expr = c(0)
        for k, ix in enumerate(indices):
            if isinstance(ix, tuple):
                ix = self._checked(ix[0], v(f"g{t}_n{k}"), ix[1])
            flat = Binary("add", flat, Binary("mul", ix, v(f"g{t}_s{k}")))
        return Load(f"g{t}", flat, table.ctype)

    def _checked(self, ix: Expr, n: Expr, wrap: bool) -> Expr:
        ix = self.let(ix if ix.type == I64 else Cast(ix, I64))
        if wrap:
            ix = self.let(Select(Binary("lt", ix, c(0)), Binary("add", ix, n), ix))
        bad = self.let(Binary("or", Binary("lt", ix, c(0)), Binary("ge", ix, n)))
        self.stmts.append(Assign("bad", Binary("max", v("bad"), Select(bad, c(1), c(0)))))
        self._gathers += 1
        return self.let(Select(bad, c(0), ix))


Body = Callable[[ElementContext], Sequence[Expr]]
"""Fills the context's statements and returns one value per output."""


def _inner_step(name: str, op: Operand, rank: int) -> Expr:
    if op.inner == "contig":
        return v("j")
    if op.inner == "bcast":
        return c(0)
    return Binary("mul", v("j"), v(stride_name(name, rank - 1)))


def elementwise_kernel(name: str, rank: int, outputs: Sequence[Operand], inputs: Sequence[Operand],
                       body: Body, *, tables: Sequence[Table] = (), inner_hint: int = 256,
                       doc: str = "") -> Kernel:
    """The loop nest over an output of ``rank`` dims (``rank >= 1``) computing ``body``."""
    if rank < 1:
        raise KIRError("elementwise_kernel needs rank >= 1 (view scalars as [1])")
    ctx = ElementContext(rank, inputs, tables)
    values = list(body(ctx))
    if len(values) != len(outputs):
        raise KIRError(f"{name}: body returned {len(values)} values for {len(outputs)} outputs")
    inner: list[Stmt] = list(ctx.stmts)
    for k, (val, out) in enumerate(zip(values, outputs)):
        if val.type != out.ctype:
            raise KIRError(f"{name}: output {k} is {out.ctype}, body computes {val.type}")
        inner.append(Store(f"o{k}", Binary("add", v(f"base_o{k}"), _inner_step(f"o{k}", out, rank)), val))

    dims = [v(f"d{k}") for k in range(rank)]
    operands = [f"o{k}" for k in range(len(outputs))] + [f"a{k}" for k in range(len(inputs))]
    decode_stmts, idx = decode(v("r"), dims[:-1], "i") if rank > 1 else ([], [])
    row: list[Stmt] = list(decode_stmts)
    row += [Let(f"base_{o}", offset(idx, o)) for o in operands]
    if ctx._gathers:
        row.append(Declare("bad", c(0)))
    # Each element is read and written by its own iteration only (outputs never overlap inputs
    # except exactly, in place), so the inner loop is independent.
    row.append(For("j", c(0), dims[-1], tuple(inner), independent=not ctx._gathers))
    if ctx._gathers:
        row.append(If(Binary("ne", v("bad"), c(0)), (Store("err", c(0), v("code")),)))
    work = max(1, inner_hint) * max(1, len(ctx.stmts) + len(outputs))
    loop = For("r", c(0), product(dims[:-1]), tuple(row), parallel=True, work=work)

    params: list[Param] = [Param(f"o{k}", "buffer", o.ctype) for k, o in enumerate(outputs)]
    params += [Param(f"a{k}", "buffer", a.ctype) for k, a in enumerate(inputs)]
    params += [Param(f"g{k}", "buffer", t.ctype) for k, t in enumerate(tables)]
    if tables:
        params.append(Param("err", "buffer", I64))
    params += dim_params("d", rank)
    params += stride_params(operands, rank)
    for k, t in enumerate(tables):
        params += [Param(f"g{k}_s{i}", "scalar", I64) for i in range(t.rank)]
        params += [Param(f"g{k}_n{i}", "scalar", I64) for i in range(t.rank)]
    if tables:
        params.append(Param("code", "scalar", I64))
    return Kernel(name, tuple(params), (loop,), doc=doc)
