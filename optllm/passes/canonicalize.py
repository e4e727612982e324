"""``canonicalize``: algebraic identities that are exact in IEEE arithmetic, applied greedily.

Each pattern fires only where dtypes and shapes make it exact: the value it substitutes has
exactly the replaced result's type (no broadcasting is lost). Constants are recognised
through ``core.constant`` splats and ``core.full``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optllm.ir.graph import Module
from optllm.ir.ops import Operation
from optllm.ir.values import Value
from optllm.passes.base import Pass, PassContext, PassResult, option
from optllm.passes.rewrite import Match, Pattern, Rewriter, apply_patterns_greedily, report_greedy


# -- constants ---------------------------------------------------------------------------------
def splat_value(v: Value) -> float | int | bool | None:
    """The single value every element of ``v`` holds, when ``v`` is a constant splat."""
    op = v.owner
    if op is None:
        return None
    if op.name == "core.constant":
        dense = op.attrs["value"]
        arr = dense.to_array().reshape(-1)
        if arr.size == 0 or (arr.size > 1 and not dense.is_splat()):
            return None
        return arr[0].item()  # type: ignore[no-any-return]
    if op.name == "core.full":
        return np.array(op.attrs["value"]).astype(op.attrs["dtype"].to_numpy()).item()  # type: ignore[no-any-return]
    return None


def is_splat_of(v: Value, want: float, *, signed_zero: float | None = None) -> bool:
    """``v`` is a splat equal to ``want``; for a float zero its sign must be ``signed_zero``'s."""
    got = splat_value(v)
    if got is None or got != want:
        return False
    if signed_zero is not None and isinstance(got, float):
        return math.copysign(1.0, got) == math.copysign(1.0, signed_zero)
    return True


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


PATTERNS: list[Pattern] = [
    MulOne(), DivOne(), SubZero(), AddNegZero(), NegNeg(), CastSame(), ReshapeSame(),
    ReshapeReshape(), ExpandSame(), SliceFull(), PermuteIdentity(), PermutePermute(),
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
        result = apply_patterns_greedily(module, PATTERNS, max_iterations=self.max_iterations, ctx=ctx)
        report_greedy(result, ctx, self.name, fail=self.fail_on_non_convergence)
        return PassResult(changed=result.changed)
