"""A single-file optllm plugin for ``opt-llm --load-pass-plugin tests/plugins/single_file_plugin.py``.

It shows both ways a file can register passes: a ``PASSES`` mapping (name -> class or
loader) and the ``@register_pass`` decorator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from optllm.ir import Module
from optllm.passes import Pass, PassContext, PassResult, option, register_pass


@dataclass(frozen=True)
class StripLocs(Pass):
    """Remove the source locations of every op.

    Before::

        %0 = core.exp %x : f32[4] loc("encoder.layer.0")

    After::

        %0 = core.exp %x : f32[4]
    """

    name: ClassVar[str] = "strip-locs"
    statistics: ClassVar[Mapping[str, str]] = {"num-stripped": "locations removed"}

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        n = 0
        for op in module.walk():
            if op.loc:
                op.loc = ""
                n += 1
        ctx.stat("num-stripped", n)
        return PassResult(changed=n > 0)


@register_pass
@dataclass(frozen=True)
class CountOps(Pass):
    """Count the ops named ``op`` (an analysis: changes nothing)."""

    name: ClassVar[str] = "count-ops"
    statistics: ClassVar[Mapping[str, str]] = {"num-found": "ops with that name"}

    op: str = option("core.add", "op name to count")

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        ctx.stat("num-found", sum(1 for o in module.walk() if o.name == self.op))
        return PassResult(changed=False)


PASSES = {"strip-locs": StripLocs}
