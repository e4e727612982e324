"""``dce``: dead code elimination."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from optllm.ir.graph import Graph, Module
from optllm.passes.base import Pass, PassContext, PassResult
from optllm.passes.rewrite import is_trivially_dead


def erase_dead_ops(graph: Graph) -> int:
    """Erase pure ops whose results nobody reads, in reverse order so that whole dead chains
    go in one sweep; then the same inside the surviving ops' regions. Returns the count."""
    erased = 0
    for op in reversed(graph.ops):
        if is_trivially_dead(op):
            graph.erase(op)
            erased += 1
            continue
        for region in op.regions:
            erased += erase_dead_ops(region)
    return erased


@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Erase pure ops whose results are never used, and constants no op reads.

    Graph outputs and ops without the ``pure`` trait are kept. Region bodies are cleaned too.

    Before::

        func @forward(%x: f32[4]) -> (f32[4]) {
          %0 = core.exp %x : f32[4]
          %1 = core.neg %0 : f32[4]        // never used
          return %0
        }

    After::

        func @forward(%x: f32[4]) -> (f32[4]) {
          %0 = core.exp %x : f32[4]
          return %0
        }
    """

    name: ClassVar[str] = "dce"
    statistics: ClassVar[Mapping[str, str]] = {
        "num-erased": "dead ops erased",
        "num-constants-dropped": "constant-table entries no op reads any more",
    }

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        erased = sum(erase_dead_ops(g) for g in module.graphs.values())
        dropped = module.drop_unused_constants()
        ctx.stat("num-erased", erased)
        ctx.stat("num-constants-dropped", dropped)
        return PassResult(changed=erased + dropped > 0)
