"""The sample plugin's op and pass: ``core.mul %x, %x`` -> ``sample.square %x``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from optllm.ir import Module, OpDef, Operation, TensorType, Trait, register_op
from optllm.passes import Match, Pass, PassContext, PassResult, Pattern, Rewriter, apply_patterns_greedily


@register_op
class Square(OpDef):
    """``%1 = sample.square %0 : f32[N]`` — x * x."""

    name = "sample.square"
    operands = ("x",)
    traits = frozenset({Trait.PURE, Trait.ELEMENTWISE})

    def infer(self, types: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        return [types[0]]

    def reference(self, inputs: Sequence[np.ndarray], attrs: Mapping[str, Any],
                  env: Mapping[str, int]) -> list[np.ndarray]:
        return [np.multiply(inputs[0], inputs[0])]


class MulSelf(Pattern):
    # mul(x, x) -> square(x)
    name = "mul-self"
    root = "core.mul"

    def match(self, op: Operation) -> Match | str:
        x, y = op.operands
        if x is not y:
            return "operands differ"
        return Match(op, x=x)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        new = rewriter.create(match.op, "sample.square", [match.x])
        rewriter.replace_op(match.op, new.result)


@dataclass(frozen=True)
class SampleSquare(Pass):
    """Rewrite mul(x, x) to the plugin op sample.square.

    Before::

        %0 = core.mul %x, %x : f32[4]

    After::

        %0 = sample.square %x : f32[4]
    """

    name: ClassVar[str] = "sample-square"
    statistics: ClassVar[Mapping[str, str]] = {"num-squared": "mul(x, x) rewritten"}

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        result = apply_patterns_greedily(module, [MulSelf()], ctx=ctx)
        ctx.stat("num-squared", result.counts.get("mul-self", 0))
        return PassResult(changed=result.changed)
