"""Pass pipelines as text: ``'dce,cse,canonicalize{max-iterations=10}'``.

Grammar (whitespace around tokens is ignored)::

    pipeline := [entry (',' entry)*]
    entry    := NAME ['{' option ((',' | ' ') option)* '}']
              | 'fixpoint' ['{max-iterations=' INT '}'] '(' pipeline ')'   (repeat until unchanged)
    option   := KEY '=' VALUE | KEY            (a bare KEY sets a bool option to true)
    VALUE    := text up to ',' or '}' | '"' quoted text '"'

``NAME`` is a registered pass or a named pipeline (``default``, ``O0``, ``O1``, ``O2``), which takes no
options and expands to its passes when run. Option values are converted to the field's type
(int, float, bool, str, an Enum, a ``Literal[...]``, or any of those ``| None``).

``str(parse_pipeline(text))`` is the canonical text: no spaces, options in declaration order,
values in canonical form; canonical text prints back identically. Every error is a
``PipelineError`` that points at the column where it was found.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from optllm.ir.attributes import format_float
from optllm.ir.diagnostics import OptllmError
from optllm.passes.base import OptionInfo, Pass
from optllm.passes.registry import REGISTRY, PassRegistry, RegistryError, UnknownPassError


class PipelineError(OptllmError):
    """A malformed pipeline, an unknown pass or option, or a bad option value; has the column."""

    def __init__(self, msg: str, text: str, col: int) -> None:
        self.msg = msg
        self.text = text
        self.col = col
        super().__init__(f"pass pipeline, column {col}: {msg}\n  {text}\n  {' ' * (col - 1)}^")


@dataclass(frozen=True)
class NamedPipeline:
    name: str
    text: str
    doc: str


NAMED_PIPELINES: dict[str, NamedPipeline] = {}


def register_pipeline(name: str, text: str, doc: str = "") -> None:
    """Declare (or redefine) a named pipeline; ``text`` is parsed when the name is used."""
    NAMED_PIPELINES[name] = NamedPipeline(name, text, doc)


register_pipeline("O0", "", "no optimisation")
register_pipeline("O1", "canonicalize,cse,dce", "lossless clean-ups: algebraic identities, CSE, DCE")
register_pipeline(
    "O2",
    "fixpoint(canonicalize,dedup,fold-linear-chain,fuse,fold-residual,fold-constants,canonicalize,cse,dce)",
    "lossless structural optimization to a fixpoint: dedup, linear-chain and residual folding, fusion",
)
# Order matters: fold-linear-chain makes the nn.linear ops fuse builds on; fuse adds activation
# epilogues before fold-residual adds residuals (act(xW+b)+r); fold-constants comes after
# fold-linear-chain so weight transposes become GEMM flags instead of transposed copies.
register_pipeline("default", "O2", "the pipeline optllm.compile and opt-llm use unless told otherwise")


# -- option values ------------------------------------------------------------------------------
_BARE = re.compile(r"[A-Za-z0-9_.+\-/:]+\Z")


def _optional_inner(tp: Any) -> Any | None:
    """``X`` for ``X | None`` / ``Optional[X]``, else None."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def convert_option(tp: Any, raw: str, quoted: bool = False) -> Any:
    """Convert option text to a value of type ``tp``; ``ValueError`` says what was expected."""
    inner = _optional_inner(tp)
    if inner is not None:
        return None if raw == "none" and not quoted else convert_option(inner, raw, quoted)
    if tp is bool:
        if raw in ("true", "false"):
            return raw == "true"
        raise ValueError(f"expected true or false, got '{raw}'")
    if tp is int:
        if re.fullmatch(r"[+-]?\d+", raw):
            return int(raw)
        raise ValueError(f"expected an integer, got '{raw}'")
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got '{raw}'") from None
    if tp is str:
        return raw
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for m in tp:
            if raw in (str(m.value), m.name):
                return m
        raise ValueError(f"expected one of {', '.join(str(m.value) for m in tp)}, got '{raw}'")
    if typing.get_origin(tp) is typing.Literal:
        for a in typing.get_args(tp):
            if str(a) == raw:
                return a
        raise ValueError(f"expected one of {', '.join(map(str, typing.get_args(tp)))}, got '{raw}'")
    raise ValueError(f"options of type {tp} cannot be written in pipeline text")


def format_option(value: Any) -> str:
    """Canonical text of an option value (parses back to the same value)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _BARE.match(text) and text != "none":
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the pipeline objects ------------------------------------------------------------------------
@dataclass(frozen=True)
class PassSpec:
    """One pass of a pipeline with the options written for it (kebab-case keys)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        if not self.options:
            return self.name
        return self.name + "{" + ",".join(f"{k}={format_option(v)}" for k, v in self.options) + "}"

    def options_text(self) -> str:
        text = str(self)
        return text[len(self.name):]

    def instantiate(self, registry: PassRegistry = REGISTRY) -> Pass:
        cls = registry.get(self.name)
        by_name = {o.name: o.field for o in cls.options()}
        return cls(**{by_name[k]: v for k, v in self.options})

    @staticmethod
    def of(p: Pass) -> PassSpec:
        """The spec that rebuilds the pass instance ``p`` (options that differ from defaults)."""
        return PassSpec(p.name, tuple(p.set_options().items()))


@dataclass(frozen=True)
class PipelineRef:
    """A named pipeline inside a pipeline (``default``, ``O1``): expanded when run."""

    name: str

    def __str__(self) -> str:
        return self.name


FIXPOINT_DEFAULT_ITERATIONS = 8


@dataclass(frozen=True)
class Fixpoint:
    """``fixpoint(a,b,c)``: run the body again and again until no pass in it changes the
    module, at most ``max_iterations`` times (the manager warns when it did not converge)."""

    body: Pipeline
    max_iterations: int = FIXPOINT_DEFAULT_ITERATIONS

    def __str__(self) -> str:
        opts = "" if self.max_iterations == FIXPOINT_DEFAULT_ITERATIONS else f"{{max-iterations={self.max_iterations}}}"
        return f"fixpoint{opts}({self.body})"


@dataclass(frozen=True)
class Loop:
    """An expanded ``fixpoint``: the steps of its body and the iteration bound."""

    steps: tuple[PassSpec | Loop, ...]
    max_iterations: int


@dataclass(frozen=True)
class Pipeline:
    entries: tuple[PassSpec | PipelineRef | Fixpoint, ...] = ()

    def __str__(self) -> str:
        return ",".join(str(e) for e in self.entries)

    def steps(self, _seen: tuple[str, ...] = ()) -> list[PassSpec | Loop]:
        """What the manager runs: passes, and loops for ``fixpoint`` groups; named pipelines
        are replaced by their contents."""
        out: list[PassSpec | Loop] = []
        for e in self.entries:
            if isinstance(e, PassSpec):
                out.append(e)
            elif isinstance(e, Fixpoint):
                out.append(Loop(tuple(e.body.steps(_seen)), e.max_iterations))
            else:
                if e.name in _seen:
                    raise PipelineError(f"named pipeline '{e.name}' refers to itself", str(self), 1)
                out.extend(parse_pipeline(NAMED_PIPELINES[e.name].text).steps(_seen + (e.name,)))
        return out

    def expand(self, _seen: tuple[str, ...] = ()) -> list[PassSpec]:
        """Every pass in order, named pipelines replaced and each fixpoint body listed once."""
        out: list[PassSpec] = []

        def flatten(steps: Sequence[PassSpec | Loop]) -> None:
            for st in steps:
                if isinstance(st, Loop):
                    flatten(st.steps)
                else:
                    out.append(st)

        flatten(self.steps(_seen))
        return out

    def passes(self, registry: PassRegistry = REGISTRY) -> list[Pass]:
        return [spec.instantiate(registry) for spec in self.expand()]

    @staticmethod
    def of(passes: Sequence[Pass]) -> Pipeline:
        return Pipeline(tuple(PassSpec.of(p) for p in passes))


# -- the parser ------------------------------------------------------------------------------------
class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, msg: str, pos: int | None = None) -> PipelineError:
        return PipelineError(msg, self.text, (self.pos if pos is None else pos) + 1)

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def eof(self) -> bool:
        self.ws()
        return self.pos >= len(self.text)

    def take(self, s: str) -> bool:
        self.ws()
        if self.text.startswith(s, self.pos):
            self.pos += len(s)
            return True
        return False

    def word(self, what: str) -> tuple[str, int]:
        self.ws()
        m = re.compile(r"[A-Za-z0-9_\-]+").match(self.text, self.pos)
        if m is None:
            found = self.text[self.pos:self.pos + 1] or "end of text"
            raise self.error(f"expected {what}, found '{found}'")
        self.pos = m.end()
        return m.group(0), m.start()

    def value(self) -> tuple[str, bool, int]:
        """Raw option text, whether it was quoted, and where it starts."""
        self.ws()
        start = self.pos
        if self.text.startswith('"', self.pos):
            out: list[str] = []
            i = self.pos + 1
            while i < len(self.text):
                c = self.text[i]
                if c == '"':
                    self.pos = i + 1
                    return "".join(out), True, start
                if c == "\\" and i + 1 < len(self.text):
                    i += 1
                    c = self.text[i]
                out.append(c)
                i += 1
            raise self.error("unterminated string", start)
        m = re.compile(r"[^,}\s]*").match(self.text, self.pos)
        assert m is not None
        self.pos = m.end()
        if not m.group(0):
            raise self.error("expected an option value", start)
        return m.group(0), False, start


def _unknown_pass(s: _Scanner, e: UnknownPassError, pos: int, registry: PassRegistry) -> PipelineError:
    import difflib

    close = difflib.get_close_matches(e.name, [*registry.names(), *NAMED_PIPELINES], n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return s.error(f"unknown pass '{e.name}'{hint}; `opt-llm --list-passes` lists the available passes", pos)


def _options(s: _Scanner, name: str, infos: list[OptionInfo]) -> dict[str, Any]:
    by_name = {o.name: o for o in infos}
    values: dict[str, Any] = {}
    if s.take("}"):
        return values
    while True:
        key, kpos = s.word("an option name")
        info = by_name.get(key)
        if info is None:
            valid = ", ".join(f"{o.name}: {o.type_name()}" for o in infos) or "none"
            raise s.error(f"pass '{name}' has no option '{key}' (valid options: {valid})", kpos)
        if key in values:
            raise s.error(f"option '{key}' given twice", kpos)
        if s.take("="):
            raw, quoted, vpos = s.value()
        elif info.type is bool:
            raw, quoted, vpos = "true", False, kpos
        else:
            raise s.error(f"expected '=' and a value after option '{key}'")
        try:
            values[key] = convert_option(info.type, raw, quoted)
        except ValueError as e:
            raise s.error(f"option '{key}' of pass '{name}': {e}", vpos) from None
        if s.take("}"):
            return values
        s.take(",")  # a comma or plain whitespace separates options
        if s.eof():
            raise s.error(f"expected '}}' to close the options of '{name}'")


def _fixpoint(s: _Scanner, registry: PassRegistry, pos: int) -> Fixpoint:
    bound = FIXPOINT_DEFAULT_ITERATIONS
    if s.take("{"):
        key, kpos = s.word("an option name")
        if key != "max-iterations" or not s.take("="):
            raise s.error("fixpoint takes one option, max-iterations=N", kpos)
        raw, _, vpos = s.value()
        if not raw.isdigit() or int(raw) < 1:
            raise s.error(f"max-iterations must be a positive integer, got '{raw}'", vpos)
        bound = int(raw)
        if not s.take("}"):
            raise s.error("expected '}' after max-iterations")
    if not s.take("("):
        raise s.error("expected '(' and a pipeline after 'fixpoint'")
    entries: list[PassSpec | PipelineRef | Fixpoint] = []
    while True:
        entries.append(_entry(s, registry))
        if s.take(")"):
            return Fixpoint(Pipeline(tuple(entries)), bound)
        if not s.take(","):
            raise s.error("expected ',' or ')' in the fixpoint body")


def _entry(s: _Scanner, registry: PassRegistry) -> PassSpec | PipelineRef | Fixpoint:
    name, pos = s.word("a pass name")
    if name == "fixpoint":
        return _fixpoint(s, registry, pos)
    if name in NAMED_PIPELINES:
        if s.take("{"):
            raise s.error(f"named pipeline '{name}' takes no options", pos)
        return PipelineRef(name)
    try:
        cls = registry.get(name)
    except UnknownPassError as e:
        raise _unknown_pass(s, e, pos, registry) from None
    except RegistryError as e:
        raise s.error(str(e), pos) from None
    infos = cls.options()
    values = _options(s, name, infos) if s.take("{") else {}
    missing = [o.name for o in infos if o.required and o.name not in values]
    if missing:
        raise s.error(f"pass '{name}' needs option(s) {', '.join(missing)}", pos)
    spec = PassSpec(name, tuple((o.name, values[o.name]) for o in infos if o.name in values))
    try:
        spec.instantiate(registry)  # lets a pass's __post_init__ reject bad combinations here
    except (ValueError, TypeError) as e:
        raise s.error(f"pass '{name}': {e}", pos) from None
    return spec


def parse_pipeline(text: str, registry: PassRegistry = REGISTRY) -> Pipeline:
    """Parse pipeline text; every pass name is checked against ``registry`` (loading it)."""
    s = _Scanner(text)
    entries: list[PassSpec | PipelineRef | Fixpoint] = []
    if s.eof():
        return Pipeline(())
    while True:
        entries.append(_entry(s, registry))
        if s.eof():
            return Pipeline(tuple(entries))
        if not s.take(","):
            raise s.error(f"expected ',' between passes, found '{s.text[s.pos]}'")
        if s.eof():
            raise s.error("expected a pass name after ','")


def as_pipeline(pipeline: str | Pipeline | Sequence[Pass]) -> Pipeline:
    """Accept pipeline text, a ``Pipeline`` or a list of pass instances."""
    if isinstance(pipeline, Pipeline):
        return pipeline
    if isinstance(pipeline, str):
        return parse_pipeline(pipeline)
    return Pipeline.of(list(pipeline))


__all__ = [
    "NAMED_PIPELINES", "Fixpoint", "Loop", "PassSpec", "Pipeline", "PipelineError", "PipelineRef", "as_pipeline",
    "convert_option", "format_option", "parse_pipeline", "register_pipeline",
]
