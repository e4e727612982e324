"""``fold-residual``: fold residual adds into a neighbour, and drop residual branches that are zero.

Where an add could go either way — into the GEMM that produces one operand (``nn.linear``'s
residual epilogue) or into the norm that reads the sum (``nn.skip_layer_norm`` /
``nn.skip_rms_norm``) — the GEMM epilogue wins: both save the same launch, but the epilogue
writes the sum once while it is still in registers, whereas the skip-norm has to write the sum
as a second output for the residual stream, and the norm stays plain for later fusions.

Zero branches. ``add(x, z)`` with ``z`` provably zero is replaced by ``x`` and ``z``'s producers
die with it. This is exact up to two documented IEEE corner cases:

* the sign of zero: a branch built from products (x·0) plus a +0 bias is +0.0, and
  ``-0.0 + +0.0 = +0.0``, so where ``x`` is -0.0 the original gives +0.0 and the folded graph
  -0.0. The two compare equal and only 1/x or signbit can tell them apart;
* finiteness (option ``assume-finite``, on by default): a zero weight times an inf or NaN
  activation is NaN, so a pruned block is zero only for finite activations — which is what
  inference assumes; with ``assume-finite=false`` only constant zero branches are dropped.

A splat constant zero branch involves no product, so only the sign-of-zero case applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optllm.ir.graph import Module
from optllm.ir.ops import Operation, Trait
from optllm.ir.values import Value
from optllm.passes.base import Pass, PassContext, PassResult, option
from optllm.passes.rewrite import Match, Pattern, Rewriter, apply_patterns_greedily, report_greedy
from optllm.passes.value_matchers import constant_array, sole_user

SKIP_NORMS = {"nn.layer_norm": "nn.skip_layer_norm", "nn.rms_norm": "nn.skip_rms_norm"}
ZERO_ACTIVATIONS = frozenset({"none", "relu", "gelu", "gelu_tanh", "silu"})  # act(0) == 0
ZERO_VIEWS = frozenset({"core.reshape", "core.permute", "core.expand", "core.slice"})


# -- zero analysis -----------------------------------------------------------------------------
def _all_zero(arr: np.ndarray | None) -> bool:
    return arr is not None and arr.size > 0 and not np.any(arr)


class ZeroProver:
    """Decides whether a value is zero everywhere; caches the all-zero test of each weight."""

    def __init__(self, module: Module, assume_finite: bool) -> None:
        self.module = module
        self.assume_finite = assume_finite
        self._weights: dict[str, bool] = {}

    def constant_zero(self, v: Value) -> bool:
        op = v.owner
        if op is not None and op.name == "core.weight":
            name = op.attrs["name"]
            if name not in self._weights:
                self._weights[name] = _all_zero(constant_array(self.module, v))
            return self._weights[name]
        return _all_zero(constant_array(self.module, v))

    def is_zero(self, v: Value, depth: int = 0) -> bool:
        """``v`` is 0 (of either sign) everywhere — for products, given finite factors."""
        while v.owner is not None and v.owner.name in ZERO_VIEWS:
            v = v.owner.operands[0]
        op = v.owner
        if op is None or depth > 8:
            return False
        if self.constant_zero(v):
            return True
        if not self.assume_finite:
            return False
        if op.name in ("core.mul", "core.matmul"):
            return any(self.is_zero(x, depth + 1) for x in op.operands)
        if op.name == "nn.linear":
            return self._linear_zero(op, depth)
        if op.name == "core.add":
            return all(self.is_zero(x, depth + 1) for x in op.operands)
        return False

    def _linear_zero(self, op: Operation, depth: int) -> bool:
        # act(x·0 + 0) + 0 == 0: the weight (or the input) is zero, the bias and residual too
        if op.attrs["activation"] not in ZERO_ACTIVATIONS:
            return False
        if not (self.is_zero(op.operands[1], depth + 1) or self.is_zero(op.operands[0], depth + 1)):
            return False
        return all(self.is_zero(x, depth + 1) for x in op.operands[2:])


# -- patterns ----------------------------------------------------------------------------------
class ZeroBranch(Pattern):
    # add(x, 0-branch) -> x   (exact but for x = -0.0 and, for products, non-finite activations)
    name = "zero-branch"
    root = "core.add"

    def __init__(self, prover: ZeroProver) -> None:
        self.prover = prover

    def match(self, op: Operation) -> Match | str:
        for x, z in ((op.operands[0], op.operands[1]), (op.operands[1], op.operands[0])):
            if x.type == op.result.type and self.prover.is_zero(z):
                return Match(op, x=x)
        return "no operand is provably zero (with the other of the result's type)"

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        rewriter.replace_op(match.op, match.x)


def _epilogue_candidate(op: Operation) -> tuple[Operation, Value] | str:
    """(linear, residual) when ``op`` = add(linear(..), r) can become the linear's epilogue."""
    for y, r in ((op.operands[0], op.operands[1]), (op.operands[1], op.operands[0])):
        lin = y.owner
        if lin is None or lin.name != "nn.linear" or lin.attrs["residual"]:
            continue
        if sole_user(y) is not op:
            continue
        if y.type == op.result.type and r.type == op.result.type:
            return lin, r
    return "no operand is an nn.linear without residual, used only here, of the sum's type"


class ResidualIntoLinear(Pattern):
    # add(linear(x, W, b), r) -> linear{residual}(x, W, b, r)   (a + b == b + a exactly)
    name = "residual-into-linear"
    root = "core.add"

    def match(self, op: Operation) -> Match | str:
        found = _epilogue_candidate(op)
        if isinstance(found, str):
            return found
        lin, r = found
        return Match(op, lin=lin, r=r)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        lin = match.lin
        attrs = dict(lin.attrs, residual=True)
        new = rewriter.create(match.op, "nn.linear", [*lin.operands, match.r], attrs, loc=lin.loc)
        rewriter.replace_op(match.op, new.result)


class ResidualIntoNorm(Pattern):
    # norm(add(x, skip)) -> skip_norm(x, skip) = (norm(x + skip), x + skip)
    name = "residual-into-norm"
    root = "nn.layer_norm"

    def match(self, op: Operation) -> Match | str:
        add = op.operands[0].owner
        if add is None or add.name != "core.add":
            return "the norm's input is not a core.add"
        x, skip = add.operands
        if x.type != add.result.type or skip.type != add.result.type:
            return "the add broadcasts"
        if not isinstance(_epilogue_candidate(add), str):
            return "the add goes into a GEMM epilogue instead (preferred)"
        if any(use.op is op and use.index != 0 for use in add.result.uses):
            return "the sum is also a parameter of the norm"
        # The skip norm replaces the sum for every reader, so it must be placed where all of
        # them see it: at the add (moving constant parameters up), or at the norm when no
        # other reader of the sum comes before the norm.
        if all(_hoistable(p) for p in op.operands[1:]):
            return Match(op, add=add, x=x, skip=skip, at=add)
        if all(_comes_after(u, op) for u in add.result.users if u is not op):
            return Match(op, add=add, x=x, skip=skip, at=op)
        return "the sum is read before the norm, whose parameters are not constants to move up"

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        op, at = match.op, match.at
        if at is match.add:
            for p in op.operands[1:]:
                _hoist(p, at)
        new = rewriter.create(at, SKIP_NORMS[op.name], [match.x, match.skip, *op.operands[1:]], op.attrs)
        y, s = new.results
        rewriter.replace_op(op, y)
        rewriter.replace_op(match.add, s)


def _hoistable(v: Value) -> bool:
    """``v`` is a graph argument or made by an operand-free constant op (safe to move up)."""
    return v.owner is None or (v.owner.has_trait(Trait.CONSTANT) and not v.owner.operands)


def _hoist(v: Value, before: Operation) -> None:
    """Move the constant op making ``v`` up to just before ``before`` unless it is already
    above it (walking up from ``before`` finds it)."""
    op = v.owner
    if op is None:
        return
    cur = before.prev
    while cur is not None:
        if cur is op:
            return
        cur = cur.prev
    graph = op.parent
    assert graph is not None
    graph.unlink(op)
    graph.insert_before(before, op)


def _comes_after(user: Operation, op: Operation) -> bool:
    """``user`` (in ``op``'s graph) is placed after ``op``."""
    cur = op.next
    while cur is not None:
        if cur is user:
            return True
        cur = cur.next
    return False


class ResidualIntoRmsNorm(ResidualIntoNorm):
    # rms_norm(add(x, skip)) -> skip_rms_norm(x, skip) = (rms_norm(x + skip), x + skip)
    root = "nn.rms_norm"


def residual_patterns(module: Module, assume_finite: bool = True) -> list[Pattern]:
    """In priority order: zero branches, then the GEMM epilogue, then the norm."""
    return [ZeroBranch(ZeroProver(module, assume_finite)), ResidualIntoLinear(), ResidualIntoNorm(),
            ResidualIntoRmsNorm()]


@dataclass(frozen=True)
class FoldResidual(Pass):
    """Fold residual adds into the producing GEMM or the consuming norm; drop zero branches.

    ``add(nn.linear(..), r)`` becomes ``nn.linear{residual}``; ``norm(add(x, skip))`` becomes
    ``nn.skip_layer_norm`` / ``nn.skip_rms_norm`` (normalised sum and sum); ``add(x, z)`` with
    ``z`` provably zero (a zero constant, a pruned GEMM) becomes ``x`` and ``z``'s branch dies.

    Before::

        %2 = nn.linear %h, %w, %b {bias = true} : f32[B,S,768]
        %3 = core.add %2, %x : f32[B,S,768]
        %4 = core.add %e, %p : f32[B,S,768]
        %5 = nn.layer_norm %4, %g, %beta : f32[B,S,768]

    After::

        %3 = nn.linear %h, %w, %b, %x {bias = true, residual = true} : f32[B,S,768]
        %5, %4 = nn.skip_layer_norm %e, %p, %g, %beta : f32[B,S,768], f32[B,S,768]
    """

    name: ClassVar[str] = "fold-residual"
    statistics: ClassVar[Mapping[str, str]] = {
        "num-zero-branch": "adds of a provably zero branch removed",
        "num-residual-into-linear": "residual adds folded into a GEMM epilogue",
        "num-residual-into-norm": "residual adds folded into a skip layer/rms norm",
        "num-rewrites": "patterns applied",
        "num-dead-erased": "dead pure ops erased (zero branches included)",
        "num-iterations": "sweeps of the greedy driver",
        "num-non-converged": "runs that hit max-iterations",
    }

    assume_finite: bool = option(True, "treat x·0 as zero (activations are finite) when proving a branch zero")
    max_iterations: int = option(10, "sweeps of the greedy driver before giving up")

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        patterns = residual_patterns(module, self.assume_finite)
        result = apply_patterns_greedily(module, patterns, max_iterations=self.max_iterations, ctx=ctx)
        report_greedy(result, ctx, self.name)
        return PassResult(changed=result.changed)


__all__ = ["FoldResidual", "ZeroProver", "residual_patterns"]
