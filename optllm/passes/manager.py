"""The pass manager: runs a pipeline, verifies after every pass, and instruments the run.

    report = PassManager("canonicalize,cse,dce", pass_statistics=True).run(module)
    report.to_dict()   # nodes / kernel launches before and after, per-pass times and counters

Instrumentations see every pass go by (``before_pass`` / ``after_pass``) and the finished
report; the built-in ones print the IR after passes, the statistics and the timing to a
stream (stderr unless told otherwise, so stdout stays the IR).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from optllm.ir.diagnostics import OptllmError, VerifyError
from optllm.ir.graph import Module, graph_stats
from optllm.ir.printer import print_module
from optllm.ir.verifier import verify_module
from optllm.passes.base import Pass, PassContext, PassError, PassResult
from optllm.passes.pipeline import Loop, PassSpec, Pipeline, as_pipeline
from optllm.passes.registry import REGISTRY

log = logging.getLogger(__name__)
_RULE = "===" + "-" * 73 + "==="


def module_stats(module: Module) -> dict[str, int]:
    """Top-level nodes and kernel launches summed over the module's graphs."""
    out = {"nodes": 0, "kernel_launches": 0}
    for g in module.graphs.values():
        for k, v in graph_stats(g).items():
            out[k] += v
    return out


@dataclass
class PassRecord:
    """What one pass did."""

    name: str
    options: str  # "{max-iterations=10}", or "" when none were given
    changed: bool
    seconds: float
    statistics: dict[str, int]
    nodes_before: int
    nodes_after: int
    kernel_launches_before: int
    kernel_launches_after: int
    warnings: list[str] = field(default_factory=list)
    descriptions: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def text(self) -> str:
        return self.name + self.options

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "options": self.options, "changed": self.changed, "seconds": self.seconds,
            "statistics": dict(self.statistics), "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after, "kernel_launches_before": self.kernel_launches_before,
            "kernel_launches_after": self.kernel_launches_after,
        }


@dataclass
class PipelineReport:
    """The whole run: the pipeline text, one record per pass, totals before and after."""

    pipeline: str
    passes: list[PassRecord] = field(default_factory=list)
    nodes_before: int = 0
    nodes_after: int = 0
    kernel_launches_before: int = 0
    kernel_launches_after: int = 0
    verify_seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.passes)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.passes)

    @property
    def warnings(self) -> list[str]:
        return [w for r in self.passes for w in r.warnings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "passes": [r.to_dict() for r in self.passes],
            "nodes": {"before": self.nodes_before, "after": self.nodes_after},
            "kernel_launches": {"before": self.kernel_launches_before, "after": self.kernel_launches_after},
        }

    def format_statistics(self) -> str:
        lines = [_RULE, "Pass statistics report".center(len(_RULE)).rstrip(), _RULE]
        for r in self.passes:
            lines.append(r.text)
            width = max((len(str(v)) for v in r.statistics.values()), default=1)
            for key, value in r.statistics.items():
                desc = r.descriptions.get(key, "")
                lines.append(f"  (S) {value:>{width}} {key}" + (f" - {desc}" if desc else ""))
        return "\n".join(lines)

    def format_timing(self) -> str:
        total = self.seconds + self.verify_seconds
        lines = [_RULE, "Execution time report".center(len(_RULE)).rstrip(), _RULE,
                 f"  Total Execution Time: {total:.4f} seconds", "",
                 "  ----Wall Time----  ---Nodes---  --Launches--  ----Name----"]

        def pct(s: float) -> str:
            return f"{100.0 * s / total:5.1f}%" if total > 0 else "  0.0%"

        for r in self.passes:
            lines.append(f"  {r.seconds:8.4f} ({pct(r.seconds)})  {r.nodes_before:>5}>{r.nodes_after:<5}  "
                         f"{r.kernel_launches_before:>6}>{r.kernel_launches_after:<5}  {r.text}")
        lines.append(f"  {self.verify_seconds:8.4f} ({pct(self.verify_seconds)})  {'':11}  {'':12}  (verifier)")
        lines.append(f"  {total:8.4f} ({pct(total)})  {self.nodes_before:>5}>{self.nodes_after:<5}  "
                     f"{self.kernel_launches_before:>6}>{self.kernel_launches_after:<5}  Total")
        return "\n".join(lines)


class Instrumentation:
    """Hooks around every pass; override what you need."""

    def before_pass(self, spec: PassSpec, module: Module) -> None:
        pass

    def after_pass(self, spec: PassSpec, module: Module, record: PassRecord) -> None:
        pass

    def after_pipeline(self, report: PipelineReport) -> None:
        pass


class IRPrinter(Instrumentation):
    """``--print-ir-after-all`` / ``--print-ir-after=NAME`` / ``--print-ir-after-change``."""

    def __init__(self, stream: IO[str] | None, after_all: bool = False, after: Iterable[str] = (),
                 only_changed: bool = False) -> None:
        self.stream = stream
        self.after_all = after_all
        self.after = set(after)
        self.only_changed = only_changed

    def after_pass(self, spec: PassSpec, module: Module, record: PassRecord) -> None:
        if not (self.after_all or spec.name in self.after or self.only_changed):
            return
        if self.only_changed and not record.changed:
            return
        out = self.stream or sys.stderr
        out.write(f"// -----// IR Dump After {spec} //----- //\n{print_module(module)}\n")


class ReportPrinter(Instrumentation):
    """``--pass-statistics`` and ``--time-passes``: print the report's tables at the end."""

    def __init__(self, stream: IO[str] | None, statistics: bool = False, timing: bool = False) -> None:
        self.stream = stream
        self.statistics = statistics
        self.timing = timing

    def after_pipeline(self, report: PipelineReport) -> None:
        out = self.stream or sys.stderr
        if self.statistics:
            out.write(report.format_statistics() + "\n")
        if self.timing:
            out.write(report.format_timing() + "\n")


def _instantiate(step: PassSpec | Loop) -> tuple[PassSpec, Pass] | Loop:
    if isinstance(step, Loop):
        return Loop(tuple(_instantiate(s) for s in step.steps), step.max_iterations)  # type: ignore[misc]
    return step, step.instantiate()


def _check_pass_names(names: Iterable[str], flag: str) -> None:
    for name in names:
        if name not in REGISTRY:
            raise OptllmError(f"{flag}: unknown pass '{name}'; `opt-llm --list-passes` lists the available passes")


def _statistics(p: Pass, ctx: PassContext) -> dict[str, int]:
    out = {k: int(ctx.statistics.get(k, 0)) for k in p.statistics}
    out.update((k, int(v)) for k, v in ctx.statistics.items() if k not in out)
    return out


class PassManager:
    """Runs passes in order on a module, verifying the IR after each one (unless ``verify``
    is off) and feeding every ``Instrumentation``."""

    def __init__(self, pipeline: str | Pipeline | Sequence[Pass] = "default", *, verify: bool = True,
                 print_ir_after_all: bool = False, print_ir_after: Iterable[str] = (),
                 print_ir_after_change: bool = False, pass_statistics: bool = False,
                 time_passes: bool = False, debug_patterns: Iterable[str] = (),
                 stream: IO[str] | None = None, instrumentations: Iterable[Instrumentation] = ()) -> None:
        self.pipeline = as_pipeline(pipeline)
        self.specs = self.pipeline.expand()
        if isinstance(pipeline, (str, Pipeline)):
            self.steps: list[tuple[PassSpec, Pass] | Loop] = [_instantiate(st) for st in self.pipeline.steps()]
        else:  # pass instances run as given, registered or not
            self.steps = list(zip(self.specs, pipeline))
        self.verify = verify
        after = [print_ir_after] if isinstance(print_ir_after, str) else list(print_ir_after)
        _check_pass_names(after, "--print-ir-after")
        self.stream = stream
        self.debug_patterns = frozenset(debug_patterns)
        self.instrumentations: list[Instrumentation] = list(instrumentations)
        if print_ir_after_all or after or print_ir_after_change:
            self.instrumentations.append(IRPrinter(stream, print_ir_after_all, after, print_ir_after_change))
        if pass_statistics or time_passes:
            self.instrumentations.append(ReportPrinter(stream, pass_statistics, time_passes))

    def run(self, module: Module) -> PipelineReport:
        before = module_stats(module)
        report = PipelineReport(str(self.pipeline), [], before["nodes"], before["nodes"],
                                before["kernel_launches"], before["kernel_launches"])
        if self.verify:
            self._verify(module, report, None)
        self._run_steps(self.steps, module, report)
        after = module_stats(module)
        report.nodes_after, report.kernel_launches_after = after["nodes"], after["kernel_launches"]
        for inst in self.instrumentations:
            inst.after_pipeline(report)
        return report

    def _run_steps(self, steps: Sequence[Any], module: Module, report: PipelineReport) -> bool:
        """Run ``steps`` in order; returns whether any pass changed the module."""
        changed = False
        for step in steps:
            if isinstance(step, Loop):
                changed |= self._run_loop(step, module, report)
                continue
            spec, p = step
            for inst in self.instrumentations:
                inst.before_pass(spec, module)
            record = self._run_one(spec, p, module)
            if self.verify:
                self._verify(module, report, spec)
            report.passes.append(record)
            changed |= record.changed
            for inst in self.instrumentations:
                inst.after_pass(spec, module, record)
        return changed

    def _run_loop(self, loop: Loop, module: Module, report: PipelineReport) -> bool:
        changed = False
        for _ in range(loop.max_iterations):
            if not self._run_steps(loop.steps, module, report):
                return changed
            changed = True
        msg = f"fixpoint did not converge within {loop.max_iterations} iterations"
        report.passes[-1].warnings.append(msg)
        log.warning(msg)
        return changed

    def _run_one(self, spec: PassSpec, p: Pass, module: Module) -> PassRecord:
        ctx = PassContext(debug_patterns=self.debug_patterns, debug_stream=self.stream or sys.stderr)
        before = module_stats(module)
        start = time.perf_counter()
        try:
            result = p.run(module, ctx)
        except OptllmError as e:
            raise PassError(spec.name, f"pass '{spec}' failed: {e}") from e
        except Exception as e:
            raise PassError(spec.name, f"pass '{spec}' failed with an internal error: "
                                       f"{type(e).__name__}: {e}") from e
        seconds = time.perf_counter() - start
        if not isinstance(result, PassResult):
            raise PassError(spec.name, f"pass '{spec}' returned {result!r} instead of a PassResult")
        after = module_stats(module)
        return PassRecord(spec.name, spec.options_text(), result.changed, seconds, _statistics(p, ctx),
                          before["nodes"], after["nodes"], before["kernel_launches"], after["kernel_launches"],
                          list(ctx.warnings), dict(p.statistics))

    def _verify(self, module: Module, report: PipelineReport, spec: PassSpec | None) -> None:
        start = time.perf_counter()
        try:
            verify_module(module)
        except VerifyError as e:
            if spec is None:
                raise
            raise PassError(spec.name, f"the IR is invalid after pass '{spec}' "
                                       f"(the pass broke it; --no-verify skips this check): {e}") from e
        finally:
            report.verify_seconds += time.perf_counter() - start


def run_pipeline(module: Module, pipeline: str | Pipeline | Sequence[Pass] = "default", *,
                 verify: bool = True, **instrumentation: Any) -> PipelineReport:
    """Run ``pipeline`` on ``module`` in place. ``instrumentation``: the ``PassManager``
    keywords (``print_ir_after_all``, ``print_ir_after``, ``pass_statistics``,
    ``time_passes``, ``debug_patterns``, ``stream``, ``instrumentations``)."""
    return PassManager(pipeline, verify=verify, **instrumentation).run(module)
