"""save_module / load_module: .oir text plus safetensors weights, atomic writes, WeightsError."""

from __future__ import annotations

import os
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from optllm.backends.reference import run_module
from optllm.ir import Builder, DType, Graph, IRError, Module, TensorType, print_module, verify_module
from optllm.ir.io import WeightsError, atomic_write, load_module, save_module
from optllm.ir.symbolic import SymExpr

WEIGHTS = {
    "wte": np.arange(12, dtype=np.float32).reshape(4, 3) / 7,
    "h16": np.array([[0.1, -2.0, 65504.0]], np.float16),
    "b16": np.array([0.1, -3.5, 1e30], ml_dtypes.bfloat16),
    "q4": np.array([[-8, 7], [0, 3]], ml_dtypes.int4),
    "ids": np.array([3, 0, 2], np.int64),
    "mask": np.array([True, False, True]),
    "u": np.array([0, 255], np.uint8),
    "u16": np.array([0, 65535], np.uint16),
    "u32": np.array([[1], [2**32 - 1]], np.uint32),
    "u64": np.array([2**63, 2**64 - 1, 7], np.uint64),
    "f8": np.array([[448.0, -0.0], [np.nan, 0.015625]], ml_dtypes.float8_e4m3fn),
    "f8uz": np.array([240.0, 1.5], ml_dtypes.float8_e4m3fnuz),
    "e5": np.array([np.inf, -57344.0, 3.0], ml_dtypes.float8_e5m2),
    "e5uz": np.array([np.nan, 1.0], ml_dtypes.float8_e5m2fnuz),
}


def _module() -> Module:
    m = Module("tiny")
    g = m.add_graph(Graph("forward", [TensorType((SymExpr.symbol("S"), 3), DType.f32)], ["x"]))
    b = Builder.at_end(g, loc="model")
    outs = []
    for key, arr in WEIGHTS.items():
        name = m.constants.add(arr, key)
        outs.append(b.create("core.weight", [], {"name": name}, result_types=[m.constants.type_of(name)]).result)
    tied = m.constants.add(WEIGHTS["wte"].copy(), "lm_head")  # identical: stored once
    assert tied == "wte"
    y = b.op("core.matmul", g.inputs[0], b.op("core.permute", outs[0], perm=[1, 0]))
    g.set_outputs([y, *outs[1:]])
    return m


def test_save_load_round_trip(tmp_path: Path) -> None:
    m = _module()
    text_before = print_module(m)
    path = save_module(m, tmp_path / "tiny.oir")
    assert sorted(os.listdir(tmp_path)) == ["tiny.oir", "tiny.safetensors"]
    assert m.weights_file == "tiny.safetensors"
    loaded = load_module(path)
    assert print_module(loaded) == print_module(m) == path.read_text()
    assert print_module(loaded) == text_before.replace("module @tiny {", 'module @tiny weights("tiny.safetensors") {')
    verify_module(loaded)
    assert sorted(loaded.constants.names()) == sorted(WEIGHTS)
    for key, arr in WEIGHTS.items():
        assert loaded.constants.type_of(key) == m.constants.type_of(key)
        got = loaded.constants[key]
        assert got.dtype == arr.dtype and got.tobytes() == arr.tobytes(), key
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    for a, b in zip(run_module(m, [x]), run_module(loaded, [x])):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_save_drops_unused_constants_and_omits_empty_weights(tmp_path: Path) -> None:
    m = Module("m")
    g = m.add_graph(Graph("forward", [TensorType((2,), DType.f32)], ["x"]))
    g.set_outputs([Builder.at_end(g).op("core.neg", g.inputs[0])])
    m.constants.add(np.zeros(2, np.float32), "dead")
    save_module(m, tmp_path / "m.oir")
    assert os.listdir(tmp_path) == ["m.oir"]  # no constants left, so no weights file
    assert "weights(" not in (tmp_path / "m.oir").read_text()
    assert len(load_module(tmp_path / "m.oir").constants) == 0


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.oir"
    target.write_text("old contents")
    with pytest.raises(TypeError):
        atomic_write(target, 123)  # type: ignore[arg-type]  # fails inside the write
    assert target.read_text() == "old contents"
    assert os.listdir(tmp_path) == ["out.oir"]  # the temporary file is gone
    atomic_write(tmp_path / "sub" / "new.oir", "hello")
    assert (tmp_path / "sub" / "new.oir").read_text() == "hello"
    assert os.listdir(tmp_path / "sub") == ["new.oir"]


def test_failing_save_writes_nothing(tmp_path: Path) -> None:
    m = _module()
    g = m.main
    bad = next(iter(g))
    bad.attrs["name"] = object()  # unprintable: printing fails after the weights are serialised
    m.constants.add(np.ones(1, np.float32), "only_in_table")
    with pytest.raises(TypeError, match="cannot print"):
        save_module(m, tmp_path / "tiny.oir")
    assert os.listdir(tmp_path) == []
    assert m.weights_file is None


def test_failing_save_keeps_previous_output(tmp_path: Path) -> None:
    m = _module()
    save_module(m, tmp_path / "tiny.oir")
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    m2 = _module()
    next(iter(m2.main)).attrs["name"] = object()
    with pytest.raises(TypeError):
        save_module(m2, tmp_path / "tiny.oir")
    assert {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)} == before


def test_missing_weights_file(tmp_path: Path) -> None:
    m = _module()
    path = save_module(m, tmp_path / "tiny.oir")
    (tmp_path / "tiny.safetensors").unlink()
    with pytest.raises(WeightsError) as ei:
        load_module(path)
    assert "tiny.safetensors" in str(ei.value) and "does not exist" in str(ei.value)
    assert "@tiny" in str(ei.value)
    assert isinstance(ei.value, IRError)


def test_corrupt_weights_file(tmp_path: Path) -> None:
    path = save_module(_module(), tmp_path / "tiny.oir")
    (tmp_path / "tiny.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(WeightsError, match="cannot read weights file '.*tiny.safetensors'"):
        load_module(path)


def test_weights_missing_a_constant_fail_verification(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from optllm.ir import VerifyError

    path = save_module(_module(), tmp_path / "tiny.oir")
    save_file({"wte": WEIGHTS["wte"]}, str(tmp_path / "tiny.safetensors"))
    loaded = load_module(path)
    with pytest.raises(VerifyError, match=r"'core.weight' at loc\(\"model\"\).*constant 'h16' is missing"):
        verify_module(loaded)


def test_unreadable_oir(tmp_path: Path) -> None:
    with pytest.raises(IRError, match="cannot read '.*nope.oir'"):
        load_module(tmp_path / "nope.oir")


def test_load_from_text_resolves_weights_beside_path(tmp_path: Path) -> None:
    m = _module()
    save_module(m, tmp_path / "tiny.oir")
    text = (tmp_path / "tiny.oir").read_text()
    loaded = load_module(tmp_path / "tiny.oir", text=text)
    assert loaded.constants.source == str(tmp_path / "tiny.safetensors")
    assert loaded.constants["ids"].tolist() == [3, 0, 2]


def test_resave_over_the_lazily_loaded_file(tmp_path: Path) -> None:
    path = save_module(_module(), tmp_path / "tiny.oir")
    loaded = load_module(path)  # weights still lazy, read from the file about to be replaced
    save_module(loaded, path)
    again = load_module(path)
    for key, arr in WEIGHTS.items():
        assert again.constants[key].tobytes() == arr.tobytes(), key
    assert sorted(os.listdir(tmp_path)) == ["tiny.oir", "tiny.safetensors"]


def test_save_under_another_name_moves_the_weights_reference(tmp_path: Path) -> None:
    m = _module()
    save_module(m, tmp_path / "a.oir")
    save_module(m, tmp_path / "b.oir")
    assert 'weights("b.safetensors")' in (tmp_path / "b.oir").read_text()
    assert 'weights("a.safetensors")' in (tmp_path / "a.oir").read_text()
    verify_module(load_module(tmp_path / "a.oir"))
