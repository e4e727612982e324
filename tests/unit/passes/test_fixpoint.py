"""``fixpoint(...)`` groups in pipelines: text round trip, convergence, non-convergence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from optllm.ir import Module, parse_module
from optllm.passes import Pass, PassContext, PassResult, PipelineError, parse_pipeline, run_pipeline

TEXT = """module @m {
  func @forward(%x: f32[4]) -> (f32[4]) {
    %0 = core.neg %x : f32[4]
    %1 = core.neg %0 : f32[4]
    %2 = core.exp %1 : f32[4]
    return %1
  }
}
"""


@pytest.mark.parametrize("text", ["fixpoint(canonicalize,cse),dce", "fixpoint{max-iterations=3}(dce)",
                                  "cse,fixpoint(fixpoint(dce),canonicalize)"])
def test_fixpoint_text_round_trips(text: str) -> None:
    assert str(parse_pipeline(text)) == text
    assert str(parse_pipeline(str(parse_pipeline(text)))) == text


@pytest.mark.parametrize("text, col", [("fixpoint(dce", 13), ("fixpoint dce", 10),
                                       ("fixpoint{max-iterations=0}(dce)", 25), ("fixpoint{x=1}(dce)", 10)])
def test_fixpoint_errors_point_at_the_column(text: str, col: int) -> None:
    with pytest.raises(PipelineError) as e:
        parse_pipeline(text)
    assert e.value.col == col


def test_fixpoint_runs_until_nothing_changes() -> None:
    m = parse_module(TEXT)
    report = run_pipeline(m, "fixpoint(canonicalize,dce)")
    names = [r.name for r in report.passes]
    # first sweep changes the module, the second finds nothing to do and ends the loop
    assert names == ["canonicalize", "dce", "canonicalize", "dce"]
    assert not report.passes[-1].changed and not report.warnings
    assert report.nodes_after == 0


@dataclass(frozen=True)
class _AlwaysChanged(Pass):
    """Claims a change every time (to exercise the iteration bound)."""

    name: ClassVar[str] = "always-changed"

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        return PassResult(changed=True)


def test_fixpoint_warns_when_it_does_not_converge() -> None:
    from optllm.passes.manager import PassManager
    from optllm.passes.pipeline import Loop, PassSpec

    pm = PassManager("dce")
    pm.steps = [Loop(((PassSpec("always-changed", ()), _AlwaysChanged()),), 3)]  # type: ignore[list-item]
    report = pm.run(parse_module(TEXT))
    assert len(report.passes) == 3
    assert report.warnings == ["fixpoint did not converge within 3 iterations"]
