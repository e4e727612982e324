"""The pass interface: ``Pass`` (a frozen dataclass whose fields are its options),
``PassResult`` and ``PassContext`` (statistics counters, warnings, pattern debugging).

    @dataclass(frozen=True)
    class Canonicalize(Pass):
        '''Apply algebraic identities ...'''
        name: ClassVar[str] = "canonicalize"
        statistics: ClassVar[Mapping[str, str]] = {"num-rewrites": "patterns applied"}
        max_iterations: int = option(10, "sweeps over the graph before giving up")

        def run(self, module: Module, ctx: PassContext) -> PassResult:
            ...
            ctx.stat("num-rewrites", n)
            return PassResult(changed=n > 0)

In pipeline text the option is ``canonicalize{max-iterations=10}``: field names are written
in kebab-case.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import typing
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from optllm.ir.diagnostics import OptllmError
from optllm.ir.graph import Module

log = logging.getLogger("optllm.passes")


class PassError(OptllmError):
    """A pass that failed, or left IR the verifier rejects; names the pass."""

    def __init__(self, pass_name: str, msg: str) -> None:
        self.pass_name = pass_name
        self.msg = msg
        super().__init__(msg)


@dataclass(frozen=True)
class PassResult:
    """What a pass reports back: whether it modified the module."""

    changed: bool


@dataclass
class PassContext:
    """Per-run state handed to ``Pass.run``: counters, warnings and debugging switches.

    ``debug_patterns`` holds pattern names (or ``"*"``) whose failed matches are explained on
    ``debug_stream`` (``opt-llm --debug-patterns=NAME``).
    """

    statistics: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    debug_patterns: frozenset[str] = frozenset()
    debug_stream: IO[str] | None = None

    def stat(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (kebab-case, e.g. ``num-erased``)."""
        self.statistics[name] += n

    def warn(self, msg: str) -> None:
        """Record a warning for the report and log it."""
        self.warnings.append(msg)
        log.warning(msg)

    def debugging(self, pattern_name: str) -> bool:
        return pattern_name in self.debug_patterns or "*" in self.debug_patterns

    def debug(self, msg: str) -> None:
        if self.debug_stream is not None:
            print(msg, file=self.debug_stream)


def option(default: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """Declare a pass option with a one-line ``doc`` shown by ``opt-llm --list-passes``."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class OptionInfo:
    """One option of a pass, as the pipeline parser and ``--list-passes`` see it."""

    name: str  # kebab-case, as written in pipeline text
    field: str  # the dataclass field
    type: Any  # int, float, bool, str, an Enum subclass or a Literal[...]
    default: Any  # dataclasses.MISSING when required
    doc: str

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def type_name(self) -> str:
        if isinstance(self.type, type) and issubclass(self.type, enum.Enum):
            return "|".join(str(m.value) for m in self.type)
        if typing.get_origin(self.type) is typing.Literal:
            return "|".join(str(a) for a in typing.get_args(self.type))
        return getattr(self.type, "__name__", str(self.type))


@dataclass(frozen=True)
class Pass:
    """Base of every pass. Subclasses are ``@dataclass(frozen=True)``; fields are options."""

    name: ClassVar[str] = ""
    # Declared statistics: counter name -> one-line description (shown even when zero).
    statistics: ClassVar[Mapping[str, str]] = {}

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        raise NotImplementedError(f"pass '{self.name}' does not implement run()")

    @classmethod
    def options(cls) -> list[OptionInfo]:
        """The options in declaration order, with their types and defaults."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            default = f.default
            if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            out.append(OptionInfo(f.name.replace("_", "-"), f.name, hints[f.name], default,
                                  f.metadata.get("doc", "")))
        return out

    @classmethod
    def summary(cls) -> str:
        """The first line of the docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def set_options(self) -> dict[str, Any]:
        """Options whose value differs from the default, by kebab-case name."""
        out = {}
        for info in self.options():
            value = getattr(self, info.field)
            if info.required or value != info.default:
                out[info.name] = value
        return out
