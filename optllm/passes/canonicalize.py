"""``canonicalize``: algebraic identities that are exact in IEEE arithmetic, applied greedily.

Each pattern fires only where dtypes and shapes make it exact: the value it substitutes has
exactly the replaced result's type (no broadcasting is lost). Constants are recognised
through ``core.constant`` splats and ``core.full``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optllm.ir.graph import Module
from optllm.ir.ops import Operation
from optllm.ir.types import DType
from optllm.ir.values import Value
from optllm.passes.base import Pass, PassContext, PassResult, option
from optllm.passes.rewrite import Match, Pattern, Rewriter, apply_patterns_greedily, report_greedy
from optllm.passes.value_matchers import constant_array, is_splat_of, splat_value

MAX_IOTA_TABLE = 1 << 16  # elements of a constant table gather-iota-table reads to check it


def _operands_with(op: Operation, other_is_identity: Callable[[Value], bool]) -> list[Value]:
    """For a commutative binary op: each operand whose partner satisfies the predicate."""
    x, y = op.operands
    return [a for a, b in ((x, y), (y, x)) if other_is_identity(b)]


def _same_type(x: Value, op: Operation) -> str | None:
    if x.type != op.result.type:
        return f"result {op.result.type} differs from the kept operand's {x.type} (broadcast or cast)"
    return None


# -- patterns ----------------------------------------------------------------------------------
class ReplaceWithOperand(Pattern):
    """Base of the identities whose rewrite is 'use x instead': ``match`` captures ``x``."""

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        rewriter.replace_op(match.op, match.x)

    def keep(self, op: Operation, x: Value | list[Value] | None, why: str) -> Match | str:
        """Match with the first candidate that has the result's exact type."""
        candidates = [] if x is None else [x] if isinstance(x, Value) else x
        if not candidates:
            return why
        for c in candidates:
            if c.type == op.result.type:
                return Match(op, x=c)
        return _same_type(candidates[0], op) or why


class MulOne(ReplaceWithOperand):
    # mul(x, 1) -> x  (x * 1 == x for every x, NaN and -0.0 included)
    name = "mul-one"
    root = "core.mul"

    def match(self, op: Operation) -> Match | str:
        return self.keep(op, _operands_with(op, lambda v: is_splat_of(v, 1)), "no operand is a splat 1")


class DivOne(ReplaceWithOperand):
    # div(x, 1) -> x  (x / 1 == x exactly)
    name = "div-one"
    root = "core.div"

    def match(self, op: Operation) -> Match | str:
        x, y = op.operands
        return self.keep(op, x if is_splat_of(y, 1) else None, "divisor is not a splat 1")


class SubZero(ReplaceWithOperand):
    # sub(x, +0.0) -> x  (x - (+0) == x for every x: -0 - (+0) == -0; sub(x, -0.0) is wrong for x = -0.0)
    name = "sub-zero"
    root = "core.sub"

    def match(self, op: Operation) -> Match | str:
        x, y = op.operands
        return self.keep(op, x if is_splat_of(y, 0, signed_zero=0.0) else None, "subtrahend is not a splat +0")


class AddNegZero(ReplaceWithOperand):
    # add(x, -0.0) -> x  (x + (-0) == x for every x; add(x, +0.0) is wrong for x = -0.0)
    name = "add-neg-zero"
    root = "core.add"

    def match(self, op: Operation) -> Match | str:
        x = _operands_with(op, lambda v: is_splat_of(v, 0, signed_zero=-0.0))
        return self.keep(op, x, "no operand is a splat -0.0 (or an integer 0)")


class NegNeg(ReplaceWithOperand):
    # neg(neg(x)) -> x
    name = "neg-neg"
    root = "core.neg"

    def match(self, op: Operation) -> Match | str:
        inner = op.operands[0].owner
        if inner is None or inner.name != "core.neg":
            return "operand is not a core.neg"
        return self.keep(op, inner.operands[0], "")


class CastSame(ReplaceWithOperand):
    # cast(x : T, T) -> x
    name = "cast-same"
    root = "core.cast"

    def match(self, op: Operation) -> Match | str:
        return self.keep(op, op.operands[0], "")


class ReshapeSame(ReplaceWithOperand):
    # reshape(x, shape(x)) -> x
    name = "reshape-same"
    root = "core.reshape"

    def match(self, op: Operation) -> Match | str:
        return self.keep(op, op.operands[0], "")


class ExpandSame(ReplaceWithOperand):
    # expand(x, shape(x)) -> x
    name = "expand-same"
    root = "core.expand"

    def match(self, op: Operation) -> Match | str:
        return self.keep(op, op.operands[0], "")


class SliceFull(ReplaceWithOperand):
    # slice(x, axis, 0, end >= size, 1) -> x
    name = "slice-full"
    root = "core.slice"

    def match(self, op: Operation) -> Match | str:
        if op.attrs["start"] != 0 or op.attrs["step"] != 1:
            return "start is not 0 or step is not 1"
        return self.keep(op, op.operands[0], "")


class PermuteIdentity(ReplaceWithOperand):
    # permute(x, [0, 1, ..., n-1]) -> x
    name = "permute-identity"
    root = "core.permute"

    def match(self, op: Operation) -> Match | str:
        if list(op.attrs["perm"]) != list(range(len(op.attrs["perm"]))):
            return f"perm {list(op.attrs['perm'])} is not the identity"
        return self.keep(op, op.operands[0], "")


class ReshapeReshape(Pattern):
    # reshape(reshape(x, s1), s2) -> reshape(x, s2)
    name = "reshape-reshape"
    root = "core.reshape"

    def match(self, op: Operation) -> Match | str:
        inner = op.operands[0].owner
        if inner is None or inner.name != "core.reshape":
            return "operand is not a core.reshape"
        return Match(op, x=inner.operands[0])

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        rewriter.set_operand(match.op, 0, match.x)


class PermutePermute(Pattern):
    # permute(permute(x, p), q) -> permute(x, [p[q[i]] for i])
    name = "permute-permute"
    root = "core.permute"

    def match(self, op: Operation) -> Match | str:
        inner = op.operands[0].owner
        if inner is None or inner.name != "core.permute":
            return "operand is not a core.permute"
        p, q = inner.attrs["perm"], op.attrs["perm"]
        return Match(op, x=inner.operands[0], perm=[p[i] for i in q])

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        if match.perm == list(range(len(match.perm))):
            rewriter.replace_op(match.op, match.x)
            return
        new = rewriter.create(match.op, "core.permute", [match.x], {"perm": match.perm})
        rewriter.replace_op(match.op, new.result)


# -- boolean identities and iota (arange) indexing: the attention-mask construction -----------
def arange_through_reshapes(v: Value) -> Operation | None:
    """The ``core.arange`` that ``v`` is (a chain of reshapes of), else None."""
    while v.owner is not None and v.owner.name == "core.reshape":
        v = v.owner.operands[0]
    return v.owner if v.owner is not None and v.owner.name == "core.arange" else None


def _nonnegative_arange(v: Value) -> bool:
    """Every element of ``v`` is >= 0: a reshaped arange with a static start >= 0 and step > 0."""
    ar = arange_through_reshapes(v)
    return ar is not None and isinstance(ar.attrs["start"], int) and ar.attrs["start"] >= 0 and ar.attrs["step"] > 0


def _bool_splat(v: Value) -> bool | None:
    """The boolean every element of ``v`` holds: a splat, or a broadcast (expand) of one."""
    while v.owner is not None and v.owner.name == "core.expand":
        v = v.owner.operands[0]
    got = splat_value(v)
    return got if isinstance(got, bool) else None


class BooleanIdentity(Pattern):
    """Base of ``op(c, x) -> x`` for a boolean splat ``c`` that is ``op``'s identity; when ``c``
    broadcasts ``x`` to a larger shape the result is that broadcast (a view)."""

    identity: ClassVar[bool]

    def match(self, op: Operation) -> Match | str:
        kept = _operands_with(op, lambda v: _bool_splat(v) is self.identity)
        if not kept:
            return f"no operand is a splat {str(self.identity).lower()}"
        same = [x for x in kept if x.type == op.result.type]  # prefer the exact type: no view needed
        return Match(op, x=same[0], shape=None) if same else Match(op, x=kept[0], shape=list(op.result.type.shape))

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        if match.shape is None:
            rewriter.replace_op(match.op, match.x)
            return
        new = rewriter.create(match.op, "core.expand", [match.x], {"shape": match.shape})
        rewriter.replace_op(match.op, new.result)


class AndTrue(BooleanIdentity):
    # and(x, true) -> x  (broadcast: expand(x, shape))
    name = "and-true"
    root = "core.and"
    identity = True


class OrFalse(BooleanIdentity):
    # or(x, false) -> x  (broadcast: expand(x, shape))
    name = "or-false"
    root = "core.or"
    identity = False


class GeArangeNonNegative(Pattern):
    # ge(arange(start >= 0, step > 0), c <= 0) -> full(true)
    name = "ge-arange-nonnegative"
    root = "core.ge"

    def match(self, op: Operation) -> Match | str:
        x, c = op.operands
        bound = splat_value(c)
        if bound is None or isinstance(bound, bool) or bound > 0:
            return "the bound is not a splat <= 0"
        if not _nonnegative_arange(x):
            return "the lhs is not a (reshaped) arange with start >= 0 and step > 0"
        return Match(op)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        shape = list(match.op.result.type.shape)
        new = rewriter.create(match.op, "core.full", [], {"shape": shape, "value": 1.0, "dtype": DType.bool})
        rewriter.replace_op(match.op, new.result)


def _iota_axis(idx: Value, size: object) -> int | None | str:
    """For ``idx`` = reshaped arange(0, size, 1): the one axis (counted from the right) holding
    its elements, or None when it holds a single element; a reason string otherwise."""
    ar = arange_through_reshapes(idx)
    if ar is None or ar.attrs["start"] != 0 or ar.attrs["step"] != 1:
        return "an index is not a (reshaped) arange from 0 with step 1"
    if ar.result.type.shape[0] != size:
        return f"an index arange has {ar.result.type.shape[0]} elements, the indexed axis {size}"
    spread = [i for i, d in enumerate(reversed(idx.type.shape)) if d != 1]
    if len(spread) > 1:
        return "an index spreads over more than one axis"
    return spread[0] if spread else None


class IndexIota(Pattern):
    # index(x, iota_0, .., iota_k) -> reshape(x)  when index j is arange(0, dim_j) on its own axis, axes increasing
    name = "index-iota"
    root = "core.index"

    def match(self, op: Operation) -> Match | str:
        x, indices = op.operands[0], op.operands[1:]
        first = op.attrs["axes"][0] % x.type.rank
        last = None
        for j, idx in enumerate(indices):
            axis = _iota_axis(idx, x.type.shape[first + j])
            if isinstance(axis, str):
                return axis
            if axis is None:
                continue
            if last is not None and axis >= last:  # counted from the right: must decrease
                return "the index axes are not in increasing order"
            last = axis
        return Match(op, x=x)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        shape = list(match.op.result.type.shape)
        new = rewriter.create(match.op, "core.reshape", [match.x], {"shape": shape})
        rewriter.replace_op(match.op, new.result)


class GatherScalarSplit(Pattern):
    # gather(x, k, axis) -> reshape(split(x, axis, [k, 1, n-k-1])[1])  for a constant scalar k >= 0 (a view: BERT's CLS token)
    name = "gather-scalar-split"
    root = "core.gather"

    def match(self, op: Operation) -> Match | str:
        x, idx = op.operands
        k = splat_value(idx)
        if idx.type.rank != 0 or not isinstance(k, int) or isinstance(k, bool) or k < 0:
            return "the index is not a constant scalar >= 0"
        ax = op.attrs["axis"] % x.type.rank
        size = x.type.shape[ax]
        if isinstance(size, int) and k >= size:
            return f"index {k} is out of range for axis size {size}"
        sizes = [d for d in (k, 1, size - k - 1) if not isinstance(d, int) or d > 0]  # (a split, not a slice:
        return Match(op, x=x, axis=ax, sizes=sizes, part=int(k > 0))  # its sizes stay exact on symbolic dims)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        picked = match.x
        if len(match.sizes) > 1:  # else the axis has size 1: the gather is only a reshape
            split = rewriter.create(match.op, "core.split", [match.x], {"axis": match.axis, "sizes": match.sizes})
            picked = split.results[match.part]
        new = rewriter.create(match.op, "core.reshape", [picked], {"shape": list(match.op.result.type.shape)})
        rewriter.replace_op(match.op, new.result)


class GatherIotaTable(Pattern):
    # gather(T, i, axis) -> expand(reshape(i))  when T[.., k, ..] == k along axis and i = arange(start >= 0, step > 0)
    name = "gather-iota-table"
    root = "core.gather"

    def __init__(self, module: Module) -> None:
        self.module = module  # the constant table holds T's values (HF's position_ids buffer)

    def match(self, op: Operation) -> Match | str:
        table, idx = op.operands
        if table.type.dtype != idx.type.dtype or not _nonnegative_arange(idx):
            return "the indices are not a (reshaped) arange with start >= 0 and step > 0 of the table's dtype"
        if not table.type.is_static or table.type.numel() > MAX_IOTA_TABLE:
            return f"the table is symbolic or larger than {MAX_IOTA_TABLE} elements"
        arr = constant_array(self.module, table)
        if arr is None:
            return "the table is not a constant"
        ax = op.attrs["axis"] % arr.ndim
        iota = np.arange(arr.shape[ax]).reshape([-1 if d == ax else 1 for d in range(arr.ndim)])
        if not np.array_equal(arr, np.broadcast_to(iota, arr.shape)):
            return "the table does not hold its own index along the axis"
        ones = [1] * ax + list(idx.type.shape) + [1] * (arr.ndim - ax - 1)
        return Match(op, x=idx, shape=ones)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        out = rewriter.create(match.op, "core.reshape", [match.x], {"shape": match.shape}).result
        if out.type != match.op.result.type:
            out = rewriter.create(match.op, "core.expand", [out], {"shape": list(match.op.result.type.shape)}).result
        rewriter.replace_op(match.op, out)


def _holds_dim(v: Value, dim: object) -> bool:
    """``v`` holds the single value ``dim``: a splat of a static dim, or arange(dim, dim + 1)."""
    got = splat_value(v)
    if got is not None and not isinstance(got, bool):
        return isinstance(dim, int) and got == dim
    op = v.owner
    return (op is not None and op.name == "core.arange" and op.attrs["start"] == dim
            and op.attrs["step"] == 1 and v.type.shape == (1,))


def _scaled_iota(v: Value, size: object, stride: object) -> Value | None:
    """The iota ``i`` of ``v = mul(i, c)`` (either order) where ``c`` holds ``stride``."""
    op = v.owner
    if op is None or op.name != "core.mul":
        return None
    for i, c in _pairs(op):
        if _holds_dim(c, stride) and not isinstance(_iota_axis(i, size), str):
            return i
    return None


def _drop_ones(shape: tuple[object, ...]) -> tuple[object, ...]:
    return tuple(d for d in shape if d != 1)


def _pairs(op: Operation) -> list[tuple[Value, Value]]:
    x, y = op.operands
    return [(x, y), (y, x)]


class GatherFlatIota(Pattern):
    # gather(reshape(y : [.., m, n, r..], [.., m*n, r..]), n*iota_m + iota_n, axis) -> reshape(y)  (iota_m's axis before iota_n's; x[i*n + j] = y[i, j])
    name = "gather-flat-iota"
    root = "core.gather"

    def match(self, op: Operation) -> Match | str:
        x, idx = op.operands
        flat = x.owner
        if flat is None or flat.name != "core.reshape" or idx.owner is None or idx.owner.name != "core.add":
            return "not a gather from a reshape with an added index"
        y, ax = flat.operands[0], op.attrs["axis"] % x.type.rank
        ys, xs = y.type.shape, x.type.shape
        if y.type.rank < ax + 2 or ys[:ax] != xs[:ax] or _drop_ones(ys[ax + 2:]) != _drop_ones(xs[ax + 1:]):
            return "the reshape does not merge exactly the gathered axis and the next"
        m, n = ys[ax], ys[ax + 1]
        if m * n != xs[ax]:  # type: ignore[operator]
            return "the merged axis is not the product of the two"
        for hi, lo in _pairs(idx.owner):
            outer = _scaled_iota(hi, m, n)
            inner = _iota_axis(lo, n)
            if outer is None or isinstance(inner, str):
                continue
            spread = [a for a in (_iota_axis(outer, m), inner) if a is not None]
            sizes = [d for d in idx.type.shape if d != 1]
            if spread == sorted(spread, reverse=True) and len(set(spread)) == len(spread) == len(sizes):
                return Match(op, x=y)
        return "the index is not n * iota(m) + iota(n) on two increasing axes"

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        new = rewriter.create(match.op, "core.reshape", [match.x], {"shape": list(match.op.result.type.shape)})
        rewriter.replace_op(match.op, new.result)


PATTERNS: list[Pattern] = [
    MulOne(), DivOne(), SubZero(), AddNegZero(), NegNeg(), CastSame(), ReshapeSame(),
    ReshapeReshape(), ExpandSame(), SliceFull(), PermuteIdentity(), PermutePermute(),
    AndTrue(), OrFalse(), GeArangeNonNegative(), IndexIota(), GatherScalarSplit(), GatherFlatIota(),
]


def register_canonicalization(pattern: Pattern) -> Pattern:
    """Add a pattern to the table ``canonicalize`` applies (for dialects and plugins)."""
    if any(p.name == pattern.name for p in PATTERNS):
        raise ValueError(f"a canonicalization pattern named '{pattern.name}' already exists")
    PATTERNS.append(pattern)
    return pattern


@dataclass(frozen=True)
class Canonicalize(Pass):
    """Apply exact algebraic identities (mul(x,1), neg(neg x), view no-ops, ...) to a fixpoint.

    Dead pure ops are erased on the way. Non-convergence within ``max-iterations`` sweeps is a
    warning (an error with ``fail-on-non-convergence``).

    Before::

        %0 = core.constant {value = dense<f32[]: 1.0>} : f32[]
        %1 = core.mul %x, %0 : f32[4]
        %2 = core.permute %1 {perm = [1, 0]} : f32[4,2]    // (with x : f32[2,4])
        %3 = core.permute %2 {perm = [1, 0]} : f32[2,4]
        return %3

    After::

        return %x
    """

    name: ClassVar[str] = "canonicalize"
    statistics: ClassVar[Mapping[str, str]] = {
        "num-rewrites": "patterns applied",
        "num-dead-erased": "dead pure ops erased",
        "num-iterations": "sweeps of the greedy driver",
        "num-non-converged": "runs that hit max-iterations",
    }

    max_iterations: int = option(10, "sweeps of the greedy driver before giving up")
    fail_on_non_convergence: bool = option(False, "make non-convergence an error instead of a warning")

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max-iterations must be >= 1, got {self.max_iterations}")

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        patterns = [*PATTERNS, GatherIotaTable(module)]
        result = apply_patterns_greedily(module, patterns, max_iterations=self.max_iterations, ctx=ctx)
        report_greedy(result, ctx, self.name, fail=self.fail_on_non_convergence)
        return PassResult(changed=result.changed)
