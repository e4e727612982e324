"""``cse``: common subexpression elimination."""

from __future__ import annotations

import struct
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation, Trait
from optllm.passes.base import Pass, PassContext, PassResult


def attr_key(value: Any) -> Hashable:
    """A hashable key equal only for identical attribute values: floats compare by their
    bits, so ``-0.0`` and ``0.0`` stay apart (and ``nan`` matches itself)."""
    if isinstance(value, float):
        return ("f", struct.pack("<d", value))
    if isinstance(value, (tuple, list)):
        return tuple(attr_key(v) for v in value)
    return (type(value).__name__, value)


def op_key(op: Operation) -> Hashable | None:
    """What makes two ops interchangeable; ``None`` for ops CSE must not merge."""
    if not op.has_trait(Trait.PURE) or op.regions or not op.results:
        return None
    attrs = tuple(sorted((k, attr_key(v)) for k, v in op.attrs.items()))
    operands = tuple(id(v) for v in op.operands)
    if op.has_trait(Trait.COMMUTATIVE):  # add(x, y) == add(y, x) exactly
        operands = tuple(sorted(operands[:2])) + operands[2:]
    return (op.name, operands, attrs, tuple(r.type for r in op.results))


def eliminate_common_subexpressions(graph: Graph) -> int:
    """Replace each pure op equal to an earlier one by that one; recurse into region bodies
    (each body is its own scope: regions are isolated from above). Returns the count."""
    seen: dict[Hashable, Operation] = {}
    merged = 0
    for op in graph:
        for region in op.regions:
            merged += eliminate_common_subexpressions(region)
        key = op_key(op)
        if key is None:
            continue
        first = seen.setdefault(key, op)
        if first is op:
            continue
        for old, new in zip(op.results, first.results):
            old.replace_all_uses_with(new)
        graph.erase(op)
        merged += 1
    return merged


@dataclass(frozen=True)
class CommonSubexpressionElimination(Pass):
    """Merge pure ops with the same name, operands, attributes and result types; keep the first.

    Operands of commutative ops match in either order.
    Ops with regions are not merged, but their bodies are cleaned.

    Before::

        %0 = core.exp %x : f32[4]
        %1 = core.exp %x : f32[4]
        %2 = core.add %0, %1 : f32[4]

    After::

        %0 = core.exp %x : f32[4]
        %1 = core.add %0, %0 : f32[4]
    """

    name: ClassVar[str] = "cse"
    statistics: ClassVar[Mapping[str, str]] = {"num-eliminated": "ops replaced by an identical earlier op"}

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        merged = sum(eliminate_common_subexpressions(g) for g in module.graphs.values())
        ctx.stat("num-eliminated", merged)
        return PassResult(changed=merged > 0)
