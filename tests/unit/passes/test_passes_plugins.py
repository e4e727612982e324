"""Plugins: the installed sample package (entry point) and single files (load_plugin)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

import optllm
from optllm.backends.reference import run_module
from optllm.ir import parse_module, print_module
from optllm.passes import run_pipeline
from optllm.passes.registry import REGISTRY, PassRegistry, PluginError, RegistryError

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
SINGLE_FILE = PLUGINS / "single_file_plugin.py"

SQUARE_IR = """module @m {
  func @forward(%x: f32[B,4]) -> (f32[B,4]) {
    %0 = core.mul %x, %x : f32[B,4]
    %1 = core.add %0, %x : f32[B,4]
    return %1
  }
}
"""


def test_sample_plugin_package_is_installed_with_its_entry_point() -> None:
    eps = [ep for ep in importlib.metadata.entry_points(group="optllm.plugins") if ep.name == "sample"]
    assert eps, ("the sample plugin is not installed: "
                 "pip install --no-deps --no-build-isolation -e tests/plugins/sample_plugin")
    assert eps[0].value == "optllm_sample_plugin:PASSES"
    assert "optllm-sample-plugin" in REGISTRY.source("sample-square")


def test_sample_plugin_pass_runs_and_keeps_the_numbers() -> None:
    m = parse_module(SQUARE_IR)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    want = run_module(m, [x])[0]
    report = run_pipeline(m, "sample-square,dce")
    assert "sample.square %x" in print_module(m)
    assert report.passes[0].statistics["num-squared"] == 1
    np.testing.assert_array_equal(run_module(m, [x])[0], want)
    # the plugin's op round-trips through the text form
    assert print_module(parse_module(print_module(m))) == print_module(m)


def test_single_file_plugin_registers_through_passes_and_the_decorator() -> None:
    names = optllm.load_plugin(str(SINGLE_FILE))
    assert names == ["count-ops", "strip-locs"]
    assert optllm.load_plugin(str(SINGLE_FILE)) == names  # loading again is a no-op
    assert REGISTRY.source("strip-locs") == f"plugin {SINGLE_FILE}"
    m = parse_module(SQUARE_IR.replace(": f32[B,4]\n", ': f32[B,4] loc("here")\n'))
    report = run_pipeline(m, "strip-locs,count-ops{op=core.mul}")
    assert 'loc("' not in print_module(m)
    assert [r.statistics for r in report.passes] == [{"num-stripped": 2}, {"num-found": 1}]


def test_plugin_files_that_fail_are_plugin_errors(tmp_path: Path) -> None:
    reg = PassRegistry(lambda: [])
    with pytest.raises(PluginError, match="does not exist"):
        reg.load_plugin(str(tmp_path / "missing.py"))
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("import not_a_module_anywhere\n")
    with pytest.raises(PluginError, match="bad_plugin.py' failed to load: ModuleNotFoundError"):
        reg.load_plugin(str(bad))
    with pytest.raises(PluginError, match="plugin module 'no_such_plugin_module' failed to load"):
        reg.load_plugin("no_such_plugin_module")


def test_plugin_clashing_with_a_builtin_names_both(tmp_path: Path) -> None:
    clash = tmp_path / "clash_plugin.py"
    clash.write_text(
        "from dataclasses import dataclass\n"
        "from typing import ClassVar\n"
        "from optllm.passes import Pass, PassResult\n"
        "@dataclass(frozen=True)\n"
        "class MyCse(Pass):\n"
        "    name: ClassVar[str] = 'cse'\n"
        "    def run(self, module, ctx):\n"
        "        return PassResult(False)\n"
        "PASSES = {'cse': MyCse}\n")
    reg = PassRegistry()  # the real entry points, so 'cse' is the built-in one
    with pytest.raises(RegistryError) as info:
        reg.load_plugin(str(clash))
    msg = str(info.value)
    assert "pass 'cse' is registered twice" in msg
    assert "builtin = optllm.passes.builtin:PASSES" in msg and f"plugin {clash}" in msg


def test_plugin_module_by_name_registers_its_ops() -> None:
    reg = PassRegistry()
    assert reg.load_plugin("optllm_sample_plugin.passes") == []  # its pass comes from the entry point
    from optllm.ir import get_opdef

    assert get_opdef("sample.square").name == "sample.square"


def test_loading_an_installed_plugin_module_again_is_not_a_clash() -> None:
    reg = PassRegistry()
    assert reg.load_plugin("optllm_sample_plugin") == []  # same loaders as its entry point
    assert "entry point 'sample" in reg.source("sample-square")


def test_a_file_listing_a_decorated_class_in_passes_too_is_not_a_clash(tmp_path: Path) -> None:
    both = tmp_path / "both_plugin.py"
    both.write_text(
        "from dataclasses import dataclass\n"
        "from typing import ClassVar\n"
        "from optllm.passes import Pass, PassResult, register_pass\n"
        "@register_pass\n"
        "@dataclass(frozen=True)\n"
        "class Twice(Pass):\n"
        "    name: ClassVar[str] = 'listed-twice'\n"
        "    def run(self, module, ctx):\n"
        "        return PassResult(False)\n"
        "PASSES = {'listed-twice': Twice}\n")
    assert optllm.load_plugin(str(both)) == ["listed-twice"]
    REGISTRY.unregister("listed-twice")
