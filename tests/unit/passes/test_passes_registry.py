"""The pass registry: entry-point discovery, lazy loaders, clashes naming both sources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from optllm.ir import Module
from optllm.passes import Pass, PassContext, PassResult
from optllm.passes.registry import (
    REGISTRY,
    PassRegistry,
    PluginError,
    RegistryError,
    UnknownPassError,
)


@dataclass(frozen=True)
class Alpha(Pass):
    """Does nothing."""

    name: ClassVar[str] = "alpha"

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        return PassResult(False)


@dataclass(frozen=True)
class OtherAlpha(Pass):
    """Also calls itself alpha."""

    name: ClassVar[str] = "alpha"

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        return PassResult(False)


class FakeEntryPoint:
    def __init__(self, name: str, value: str, obj: Any) -> None:
        self.name = name
        self.value = value
        self.obj = obj
        self.loads = 0

    def load(self) -> Any:
        self.loads += 1
        if isinstance(self.obj, Exception):
            raise self.obj
        return self.obj


def test_builtin_passes_come_through_the_entry_point_group() -> None:
    assert {"dce", "cse", "canonicalize"} <= set(REGISTRY.names())
    source = REGISTRY.source("cse")
    assert "builtin = optllm.passes.builtin:PASSES" in source and "optllm" in source


def test_loaders_run_only_when_a_pass_is_used() -> None:
    calls: list[str] = []

    def loader() -> type[Pass]:
        calls.append("alpha")
        return Alpha

    reg = PassRegistry(lambda: [FakeEntryPoint("mine", "mine:PASSES", {"alpha": loader})])
    assert reg.names() == ["alpha"] and calls == []
    assert reg.get("alpha") is Alpha and reg.get("alpha") is Alpha
    assert calls == ["alpha"]  # loaded once, cached


def test_a_broken_loader_fails_only_when_its_pass_is_used() -> None:
    def broken() -> type[Pass]:
        raise ImportError("No module named 'missing_dependency'")

    reg = PassRegistry(lambda: [FakeEntryPoint("bad", "bad:PASSES", {"broken": broken, "alpha": Alpha})])
    assert reg.names() == ["alpha", "broken"]
    assert reg.get("alpha") is Alpha
    with pytest.raises(PluginError, match=r"pass 'broken' from entry point 'bad = bad:PASSES' failed to load: "
                                          r"ImportError: No module named 'missing_dependency'"):
        reg.get("broken")


def test_a_broken_entry_point_does_not_hide_the_others() -> None:
    reg = PassRegistry(lambda: [FakeEntryPoint("bad", "bad:PASSES", RuntimeError("boom")),
                                FakeEntryPoint("good", "good:PASSES", {"alpha": Alpha})])
    assert reg.names() == ["alpha"]
    assert reg.broken == ["entry point 'bad = bad:PASSES' failed to load: RuntimeError: boom"]
    with pytest.raises(UnknownPassError, match="failed to load: RuntimeError: boom"):
        reg.get("beta")  # the note says why a pass may be missing


def test_entry_point_clash_is_an_error_naming_both_sources() -> None:
    reg = PassRegistry(lambda: [FakeEntryPoint("one", "one:PASSES", {"alpha": Alpha}),
                                FakeEntryPoint("two", "two:PASSES", {"alpha": OtherAlpha})])
    with pytest.raises(RegistryError) as info:
        reg.get("alpha")
    msg = str(info.value)
    assert "pass 'alpha' is registered twice" in msg
    assert "entry point 'one = one:PASSES'" in msg and "entry point 'two = two:PASSES'" in msg


def test_the_same_entry_point_seen_twice_is_not_a_clash() -> None:
    table = {"alpha": Alpha}
    reg = PassRegistry(lambda: [FakeEntryPoint("one", "one:PASSES", table), FakeEntryPoint("one", "one:PASSES", table)])
    assert reg.get("alpha") is Alpha


def test_explicit_registration_clash_names_both_sources() -> None:
    reg = PassRegistry(lambda: [FakeEntryPoint("one", "one:PASSES", {"alpha": Alpha})])
    with pytest.raises(RegistryError) as info:
        reg.register(OtherAlpha)
    msg = str(info.value)
    assert "entry point 'one = one:PASSES'" in msg
    assert "OtherAlpha" in msg and "test_passes_registry.py" in msg  # class and file:line


def test_registering_the_same_class_twice_is_harmless() -> None:
    reg = PassRegistry(lambda: [])
    reg.register(Alpha)
    reg.register(Alpha)
    assert reg.names() == ["alpha"]


def test_unknown_pass_suggests_close_names() -> None:
    reg = PassRegistry(lambda: [FakeEntryPoint("one", "one:PASSES", {"alpha": Alpha})])
    with pytest.raises(UnknownPassError) as info:
        reg.get("alpah")
    assert info.value.suggestions == ["alpha"]
    assert "--list-passes" in str(info.value)


@pytest.mark.parametrize("table, words", [
    ({"Not_Kebab": Alpha}, "is not kebab-case"),
    ({"alpha": 42}, "neither a loader nor a Pass class"),
])
def test_malformed_tables_are_reported(table: dict[str, Any], words: str) -> None:
    reg = PassRegistry(lambda: [FakeEntryPoint("odd", "odd:PASSES", table)])
    assert reg.names() == []
    assert words in reg.broken[0]


def test_loader_must_return_the_named_pass_class() -> None:
    reg = PassRegistry(lambda: [FakeEntryPoint("odd", "odd:PASSES", {"beta": lambda: Alpha, "gamma": lambda: 3})])
    with pytest.raises(PluginError, match="registered with a class named 'alpha'"):
        reg.get("beta")
    with pytest.raises(PluginError, match="not a Pass subclass"):
        reg.get("gamma")


def test_pass_classes_must_be_frozen_dataclasses() -> None:
    class Loose(Pass):
        name: ClassVar[str] = "loose"

    reg = PassRegistry(lambda: [])
    with pytest.raises(PluginError, match=r"must be a @dataclass\(frozen=True\)"):
        reg.register(Loose)
