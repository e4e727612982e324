"""``opt-llm compile`` / ``opt-llm run BUILD_DIR`` / ``opt-llm run --target cpu``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from optllm.tools.opt_llm import main

IR = """module @m {
  func @forward(%x: f32[B,4], %ids: i64[B]) -> (f32[B,4]) {
    %t = core.weight {name = "t"} : f32[3,4]
    %0 = nn.embedding %t, %ids : f32[B,4]
    %1 = core.mul %x, %0 : f32[B,4]
    %2 = nn.gelu %1 : f32[B,4]
    return %2
  }
}
"""


@pytest.fixture
def model(tmp_path: Path) -> Path:
    from optllm.ir import parse_module
    from optllm.ir.io import save_module

    m = parse_module(IR)
    m.constants.add(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "t")
    return save_module(m, tmp_path / "model.oir")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_compile_then_run_the_build_directory(capsys: pytest.CaptureFixture[str], model: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"
    code, out, err = _run(capsys, "compile", str(model), "--target", "cpu", "-o", str(build), "--dims", "B=3")
    assert code == 0, err
    assert "B=3: 3 kernel calls" in out and "lower bound" in out
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["target"] == "cpu" and manifest["plans"][0]["dims"] == {"B": 3}
    assert list((build / "kernels").glob("*.o")), "the compiled kernels travel with the build"
    ref_npz, cpu_npz = tmp_path / "ref.npz", tmp_path / "cpu.npz"
    assert _run(capsys, "run", str(model), "--dims", "B=3", "-o", str(ref_npz))[0] == 0
    code, out, err = _run(capsys, "run", str(build), "--dims", "B=3", "--repeat", "3", "-o", str(cpu_npz))
    assert code == 0, err
    assert "latency: median" in out
    np.testing.assert_allclose(np.load(cpu_npz)["output0"], np.load(ref_npz)["output0"], rtol=1e-5, atol=1e-6)


def test_run_oir_on_the_cpu_target(capsys: pytest.CaptureFixture[str], model: Path) -> None:
    code, out, err = _run(capsys, "run", str(model), "--target", "cpu", "--dims", "B=2")
    assert code == 0, err
    assert "output0  [2, 4]" in out


def test_compile_refuses_to_replace_a_directory_that_is_not_a_build(capsys: pytest.CaptureFixture[str],
                                                                     model: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    code, _, err = _run(capsys, "compile", str(model), "-o", str(precious))
    assert code == 2 and "not an optllm build directory" in err
    assert (precious / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.oir", "model.safetensors", "precious"]


def test_compile_for_an_unimplemented_target_is_a_user_error(capsys: pytest.CaptureFixture[str], model: Path,
                                                             tmp_path: Path) -> None:
    code, _, err = _run(capsys, "compile", str(model), "--target", "a100", "-o", str(tmp_path / "b"))
    assert code == 2 and "cpu target only" in err
    assert not (tmp_path / "b").exists()
