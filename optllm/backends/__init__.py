"""Targets and the backends that build executables for them.

``reference`` (the numpy interpreter) and ``cpu`` (llvmlite kernels + BLAS) run today. The CUDA
targets are declared so that asking for them gives a clear "not implemented yet" error
instead of a silent fallback to another backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from optllm.backends.support import Support, reference_supports
from optllm.ir.diagnostics import OptllmError
from optllm.ir.graph import Module
from optllm.ir.ops import Operation


class TargetError(OptllmError):
    """An unknown target, or one whose backend cannot run here."""


@dataclass(frozen=True)
class Target:
    name: str
    backend: str  # "reference", "cpu" or "cuda"
    arch: str = ""  # e.g. "sm_80" for a100
    implemented: bool = False
    doc: str = ""

    def supports(self, op: str | Operation) -> Support:
        """Whether this target runs ``op``; false with the reason when not."""
        return supports(self, op)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("reference", "reference", implemented=True, doc="op-by-op numpy interpreter (the oracle)"),
    Target("cpu", "cpu", implemented=True, doc="llvmlite fused kernels + BLAS"),
    Target("cuda", "cuda", "sm_80", doc="CUDA C via NVRTC/CuPy (default arch sm_80)"),
    Target("a100", "cuda", "sm_80", doc="CUDA, NVIDIA A100 (sm_80)"),
    Target("h100", "cuda", "sm_90", doc="CUDA, NVIDIA H100 (sm_90)"),
)}

_PLANNED = {"cuda": "the CUDA backend (planned after quantization and pruning)"}


def resolve_target(name: str) -> Target:
    """The ``Target`` called ``name``; unknown names list the valid ones."""
    if name not in TARGETS:
        valid = ", ".join(f"{t.name} ({t.doc})" for t in TARGETS.values())
        raise TargetError(f"unknown target '{name}'; valid targets: {valid}")
    return TARGETS[name]


def supports(target: str | Target, op: str | Operation) -> Support:
    """Whether ``target`` runs ``op`` (an op name or an operation), with the reason when not
    (see ``optllm.backends.support``)."""
    t = resolve_target(target) if isinstance(target, str) else target
    if t.backend == "reference":
        return reference_supports(op)
    if t.backend == "cpu":
        import optllm.backends.cpu  # noqa: F401  (imports every lowering module: the table is complete)
        from optllm.backends.cpu.lower import supports as cpu_supports

        return cpu_supports(op)
    return Support(False, f"target '{t.name}' needs {_PLANNED[t.backend]}, which is not implemented yet")


class Executable(Protocol):
    """What a backend builds: runs the module's main graph on numpy arrays."""

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...


class ReferenceExecutable:
    """The reference target: the numpy interpreter over the module."""

    def __init__(self, module: Module) -> None:
        from optllm.backends.reference import Interpreter

        self.interpreter = Interpreter(module)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.interpreter.run(inputs)


def build(module: Module, target: str | Target, **options: Any) -> Executable:
    """Build ``module`` for ``target``. Backends that do not exist yet raise ``TargetError``."""
    t = resolve_target(target) if isinstance(target, str) else target
    if t.backend == "reference":
        return ReferenceExecutable(module)
    if t.backend == "cpu":
        from optllm.backends.cpu import CpuExecutable

        return CpuExecutable(module, **options)
    raise TargetError(
        f"target '{t.name}' needs {_PLANNED[t.backend]}, which is not implemented yet; "
        f"targets that run today: {', '.join(n for n, x in TARGETS.items() if x.implemented)}")
