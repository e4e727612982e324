"""Pipeline text: parse/print round trip, typed options, named pipelines, errors with columns."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from optllm.ir import Module
from optllm.ir.diagnostics import OptllmError
from optllm.passes import Pass, PassContext, PassResult, option
from optllm.passes.pipeline import (
    NAMED_PIPELINES,
    PassSpec,
    Pipeline,
    PipelineError,
    PipelineRef,
    convert_option,
    format_option,
    parse_pipeline,
)
from optllm.passes.registry import PassRegistry


class Mode(enum.Enum):
    FAST = "fast"
    EXACT = "exact"


@dataclass(frozen=True)
class Typed(Pass):
    """A pass with one option of every supported type."""

    name: ClassVar[str] = "typed"
    bits: int = option(8, "bit width")
    ratio: float = option(0.5)
    strict: bool = option(False)
    label: str = option("x")
    mode: Mode = option(Mode.FAST)
    kind: Literal["a", "b"] = option("a")
    limit: int | None = option(None)

    def __post_init__(self) -> None:
        if self.bits not in (4, 6, 8):
            raise ValueError(f"bits must be 4, 6 or 8, got {self.bits}")

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        return PassResult(False)


@dataclass(frozen=True)
class Needs(Pass):
    """A pass with a required option."""

    name: ClassVar[str] = "needs"
    target: str = option(doc="required")

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        return PassResult(False)


@pytest.fixture
def reg() -> PassRegistry:
    r = PassRegistry(entry_points=lambda: [])
    r.register(Typed)
    r.register(Needs)
    from optllm.passes.canonicalize import Canonicalize
    from optllm.passes.cse import CommonSubexpressionElimination
    from optllm.passes.dce import DeadCodeElimination

    for cls in (Canonicalize, CommonSubexpressionElimination, DeadCodeElimination):
        r.register(cls)
    return r


@pytest.mark.parametrize("text", [
    "dce,cse,canonicalize{max-iterations=10}",
    "",
    "default",
    "O0,cse,O1",
    "typed{bits=4,ratio=0.25,strict=true,label=hello,mode=exact,kind=b,limit=3}",
    'typed{label="a,b}c"}',
    "typed{ratio=1e-05}",
    "typed{limit=none}",
    "needs{target=gpu}",
])
def test_canonical_text_prints_back_identically(reg: PassRegistry, text: str) -> None:
    assert str(parse_pipeline(text, reg)) == text
    assert str(parse_pipeline(str(parse_pipeline(text, reg)), reg)) == text


@pytest.mark.parametrize("text, canonical", [
    (" dce , cse ", "dce,cse"),
    ("typed{mode=exact bits=4}", "typed{bits=4,mode=exact}"),  # declaration order, spaces separate
    ("typed{strict}", "typed{strict=true}"),  # a bare bool option means true
    ("typed{ratio=1}", "typed{ratio=1.0}"),
    ("typed{mode=EXACT}", "typed{mode=exact}"),  # enum by name or value
    ("typed{}", "typed"),
    ('typed{label="plain"}', "typed{label=plain}"),
])
def test_non_canonical_text_is_normalised(reg: PassRegistry, text: str, canonical: str) -> None:
    assert str(parse_pipeline(text, reg)) == canonical


def test_options_are_converted_to_field_types(reg: PassRegistry) -> None:
    spec = parse_pipeline("typed{bits=6,ratio=0.125,strict=true,mode=exact,kind=b,limit=7}", reg).entries[0]
    assert isinstance(spec, PassSpec)
    p = spec.instantiate(reg)
    assert isinstance(p, Typed)
    assert (p.bits, p.ratio, p.strict, p.mode, p.kind, p.limit) == (6, 0.125, True, Mode.EXACT, "b", 7)
    assert p.label == "x"  # untouched options keep their defaults


def test_named_pipelines_expand_and_take_no_options(reg: PassRegistry) -> None:
    assert set(NAMED_PIPELINES) >= {"default", "O0", "O1", "O2"}
    pipe = parse_pipeline("O1", reg)
    assert pipe.entries == (PipelineRef("O1"),)
    assert [s.name for s in pipe.expand()] == ["canonicalize", "cse", "dce"]
    assert parse_pipeline("default", reg).expand() == parse_pipeline("O2", reg).expand()
    assert parse_pipeline("O0", reg).expand() == []
    assert [str(s) for s in parse_pipeline("cse,O1", reg).expand()] == ["cse", "canonicalize", "cse", "dce"]


def test_pipeline_of_instances_round_trips(reg: PassRegistry) -> None:
    pipe = Pipeline.of([Typed(bits=4), Typed(), Needs(target="cpu")])
    assert str(pipe) == "typed{bits=4},typed,needs{target=cpu}"
    assert [p for p in pipe.passes(reg)] == [Typed(bits=4), Typed(), Needs(target="cpu")]


def _error(reg: PassRegistry, text: str) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text, reg)
    assert isinstance(info.value, OptllmError)
    return info.value


def test_unknown_pass_lists_close_names_with_column(reg: PassRegistry) -> None:
    e = _error(reg, "dce,csee")
    assert e.col == 5
    assert "unknown pass 'csee'" in e.msg and "'cse'" in e.msg
    assert str(e).splitlines()[-1] == "      ^"  # two spaces of indent, then under column 5


def test_unknown_option_lists_the_valid_ones(reg: PassRegistry) -> None:
    e = _error(reg, "canonicalize{max-iteration=3}")
    assert e.col == 14
    assert "no option 'max-iteration'" in e.msg
    assert "max-iterations: int" in e.msg and "fail-on-non-convergence: bool" in e.msg


@pytest.mark.parametrize("text, col, words", [
    ("canonicalize{max-iterations=ten}", 29, "expected an integer, got 'ten'"),
    ("typed{strict=yes}", 14, "expected true or false"),
    ("typed{ratio=fast}", 13, "expected a number"),
    ("typed{mode=slow}", 12, "expected one of fast, exact"),
    ("typed{kind=c}", 12, "expected one of a, b"),
    ("typed{bits}", 11, "expected '=' and a value"),
    ("typed{bits=3}", 1, "bits must be 4, 6 or 8"),  # the pass's own validation
    ("typed{bits=4,bits=6}", 14, "given twice"),
    ("typed{bits=4", 13, "expected '}'"),
    ("typed{bits=}", 12, "expected an option value"),
    ('typed{label="abc}', 13, "unterminated string"),
    ("needs", 1, "needs option(s) target"),
    ("dce,,cse", 5, "expected a pass name"),
    ("dce,", 5, "expected a pass name after ','"),
    ("dce cse", 5, "expected ',' between passes"),
    ("default{x=1}", 1, "takes no options"),
    ("cse{x=1}", 5, "valid options: none"),
])
def test_errors_point_at_the_column(reg: PassRegistry, text: str, col: int, words: str) -> None:
    e = _error(reg, text)
    assert words in e.msg, e.msg
    assert e.col == col, str(e)


def test_option_value_conversion_and_printing_agree() -> None:
    for tp, value in [(int, -3), (float, 1e-5), (float, float("inf")), (bool, False), (str, "a b"),
                      (str, "none"), (Mode, Mode.EXACT), (int | None, None)]:
        text = format_option(value)
        quoted = text.startswith('"')
        assert convert_option(tp, text.strip('"') if quoted else text, quoted) == value
