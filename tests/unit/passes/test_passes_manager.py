"""The pass manager: the report, verification after each pass, errors naming the pass,
instrumentation."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import pytest

from optllm.ir import Module, VerifyError, parse_module
from optllm.ir.diagnostics import OptllmError
from optllm.passes import (
    Instrumentation,
    Pass,
    PassContext,
    PassError,
    PassManager,
    PassRecord,
    PassResult,
    PassSpec,
    run_pipeline,
)

IR = """module @m {
  func @forward(%x: f32[4]) -> (f32[2,2]) {
    %0 = core.constant {value = dense<f32[]: 1.0>} : f32[]
    %1 = core.mul %x, %0 : f32[4]
    %2 = core.exp %1 : f32[4]
    %3 = core.exp %1 : f32[4]
    %4 = core.add %2, %3 : f32[4]
    %5 = core.reshape %4 {shape = [2,2]} : f32[2,2]
    %6 = core.neg %x : f32[4]
    return %5
  }
}
"""


@dataclass(frozen=True)
class BreakIR(Pass):
    """Corrupts the IR: points an op's result type at the wrong shape."""

    name: ClassVar[str] = "break-ir"

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        op = next(op for op in module.walk() if op.name == "core.exp")
        op.results[0].type = op.results[0].type.with_shape((5,))
        return PassResult(True)


@dataclass(frozen=True)
class Crash(Pass):
    """Raises an internal error."""

    name: ClassVar[str] = "crash"
    statistics: ClassVar[Mapping[str, str]] = {}

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        raise ZeroDivisionError("division by zero")


@dataclass(frozen=True)
class Lazy(Pass):
    """Returns something that is not a PassResult."""

    name: ClassVar[str] = "lazy"

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        return True  # type: ignore[return-value]


def test_report_dict_has_the_documented_shape() -> None:
    m = parse_module(IR)
    report = run_pipeline(m, "canonicalize{max-iterations=5},cse,dce")
    d = report.to_dict()
    assert d["pipeline"] == "canonicalize{max-iterations=5},cse,dce"
    assert d["nodes"] == {"before": 7, "after": 3}
    assert d["kernel_launches"] == {"before": 5, "after": 2}  # reshape is a view, constants are free
    keys = {"name", "options", "changed", "seconds", "statistics", "nodes_before", "nodes_after",
            "kernel_launches_before", "kernel_launches_after"}
    assert [set(p) for p in d["passes"]] == [keys] * 3
    canon, cse, dce = d["passes"]
    assert (canon["name"], canon["options"], cse["options"]) == ("canonicalize", "{max-iterations=5}", "")
    assert canon["changed"] and cse["changed"] and not dce["changed"]
    assert canon["statistics"]["num-mul-one"] == 1 and canon["statistics"]["num-dead-erased"] == 2
    assert cse["statistics"] == {"num-eliminated": 1}
    assert dce["statistics"] == {"num-erased": 0, "num-constants-dropped": 0}  # declared counters show at 0
    assert (canon["nodes_before"], canon["nodes_after"], cse["nodes_after"]) == (7, 4, 3)
    assert all(p["seconds"] >= 0 for p in d["passes"])


def test_named_pipeline_stays_named_in_the_report() -> None:
    report = run_pipeline(parse_module(IR), "O1")
    assert report.pipeline == "O1"
    assert [r.name for r in report.passes] == ["canonicalize", "cse", "dce"]
    assert run_pipeline(parse_module(IR)).pipeline == "default"


def test_pass_instances_are_accepted() -> None:
    from optllm.passes.cse import CommonSubexpressionElimination

    report = run_pipeline(parse_module(IR), [CommonSubexpressionElimination()])
    assert report.pipeline == "cse" and report.changed


def test_verify_failure_names_the_pass_that_broke_the_ir() -> None:
    with pytest.raises(PassError) as info:
        PassManager([BreakIR()]).run(parse_module(IR))
    assert info.value.pass_name == "break-ir"
    msg = str(info.value)
    assert "the IR is invalid after pass 'break-ir'" in msg and "core.exp" in msg
    assert isinstance(info.value.__cause__, VerifyError)


def test_no_verify_lets_broken_ir_through() -> None:
    report = PassManager([BreakIR()], verify=False).run(parse_module(IR))
    assert report.passes[0].changed


def test_invalid_input_is_reported_as_such_not_blamed_on_a_pass() -> None:
    m = parse_module(IR)
    next(op for op in m.walk() if op.name == "core.neg").results[0].type = m.main.inputs[0].type.with_shape((3,))
    with pytest.raises(VerifyError):
        run_pipeline(m, "cse")


def test_a_crashing_pass_becomes_a_pass_error_naming_it() -> None:
    with pytest.raises(PassError) as info:
        PassManager([Crash()]).run(parse_module(IR))
    assert isinstance(info.value, OptllmError)
    assert "pass 'crash' failed with an internal error: ZeroDivisionError: division by zero" in str(info.value)
    with pytest.raises(PassError, match="returned True instead of a PassResult"):
        PassManager([Lazy()]).run(parse_module(IR))


def test_print_ir_after_all_and_after_name() -> None:
    out = io.StringIO()
    run_pipeline(parse_module(IR), "cse,dce", print_ir_after_all=True, stream=out)
    text = out.getvalue()
    assert text.count("// -----// IR Dump After ") == 2
    assert text.index("After cse") < text.index("After dce")
    assert "core.neg" in text.split("After dce")[0] and "core.neg" not in text.split("After dce")[1]
    out = io.StringIO()
    run_pipeline(parse_module(IR), "cse,dce,cse", print_ir_after=["cse"], stream=out)
    assert out.getvalue().count("IR Dump After cse") == 2 and "After dce" not in out.getvalue()


def test_print_ir_after_change_skips_passes_that_changed_nothing() -> None:
    out = io.StringIO()
    run_pipeline(parse_module(IR), "cse,cse,dce", print_ir_after_change=True, stream=out)
    assert out.getvalue().count("IR Dump After cse") == 1 and "After dce" in out.getvalue()


def test_print_ir_after_an_unknown_pass_is_an_error() -> None:
    with pytest.raises(OptllmError, match="--print-ir-after: unknown pass 'csx'"):
        PassManager("cse", print_ir_after=["csx"])


def test_statistics_and_timing_tables() -> None:
    out = io.StringIO()
    run_pipeline(parse_module(IR), "O1", pass_statistics=True, time_passes=True, stream=out)
    text = out.getvalue()
    assert "Pass statistics report" in text and "(S) 1 num-eliminated - ops replaced" in text
    assert "Execution time report" in text and "(verifier)" in text
    assert any(line.rstrip().endswith("Total") and "7>3" in line for line in text.splitlines())


def test_instrumentations_see_every_pass() -> None:
    seen: list[str] = []

    class Spy(Instrumentation):
        def before_pass(self, spec: PassSpec, module: Module) -> None:
            seen.append(f"before {spec}")

        def after_pass(self, spec: PassSpec, module: Module, record: PassRecord) -> None:
            seen.append(f"after {spec} {record.changed}")

        def after_pipeline(self, report: object) -> None:
            seen.append("done")

    run_pipeline(parse_module(IR), "cse,dce{}", instrumentations=[Spy()])
    assert seen == ["before cse", "after cse True", "before dce", "after dce True", "done"]


def test_warnings_reach_the_record() -> None:
    report = run_pipeline(parse_module(IR), "canonicalize{max-iterations=1}")
    assert report.passes[0].statistics["num-non-converged"] == 1
    assert report.warnings and "did not converge after 1 iteration(s)" in report.warnings[0]
