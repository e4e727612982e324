"""``fused``: ops whose body is a region — one kernel launch for the whole region.

    %5 = fused.region %a, %b {kind = "elementwise"} : f32[B,S,768] {
      ^(%x: f32[B,S,768], %y: f32[B,S,768]):
      %0 = core.add %x, %y : f32[B,S,768]
      %1 = nn.gelu %0 : f32[B,S,768]
      return %1
    }

The body is isolated from above: it reads only its arguments, which are bound to the op's
operands. The reference executor runs the body; code generators turn it into one kernel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optllm.ir.attributes import AttrKind, attr
from optllm.ir.diagnostics import VerifyError
from optllm.ir.ops import OpDef, Operation, Trait, register_op
from optllm.ir.types import TensorType


@register_op
class Region(OpDef):
    """A fused region; ``kind`` names the kernel template that will implement it."""

    name = "fused.region"
    operands = ("*inputs",)
    num_results = None
    attrs = {"kind": attr(AttrKind.STR, "generic")}
    traits = frozenset({Trait.PURE})
    has_region = True
    declared_types = True  # the body's results decide

    def infer(self, types: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        raise NotImplementedError("fused.region takes its result types from its body")

    def verify(self, op: Operation) -> None:
        body = op.regions[0]
        if [v.type for v in body.inputs] != [v.type for v in op.operands]:
            raise VerifyError("region arguments do not match the op's operand types", op)
