"""``opt-llm export``: writes a checked ONNX file that onnxruntime runs like the reference;
user errors exit with 2 and write nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optllm.backends.reference import run_module
from optllm.ir.io import load_module
from optllm.tools.opt_llm import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

BIN = Path(sys.executable).parent
IR = """module @m {
  func @forward(%x: f32[B,S,8], %w: f32[8,8]) -> (f32[B,S,8]) {
    %0 = nn.linear %x, %w {activation = "gelu"} : f32[B,S,8] loc("mlp.fc")
    %1 = nn.rms_norm %0 {eps = 1.0e-06} : f32[B,S,8] loc("norm")
    return %1
  }
}
"""
PLUGIN = '''
from optllm.ir.ops import OpDef, register_op

@register_op
class Opaque(OpDef):
    """``%1 = test.opaque %0 : f32[N]``."""

    name = "test.opaque"
    operands = ("x",)

    def infer(self, types, attrs):
        return [types[0]]

    def reference(self, inputs, attrs, env):
        return [inputs[0]]
'''


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_runs_in_onnxruntime(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.oir"
    src.write_text(IR)
    out_path = tmp_path / "out.onnx"
    code, out, err = run(capsys, "export", str(src), "-o", str(out_path), "--opset", "18")
    assert code == 0, err
    assert "exported @forward" in out
    model = onnx.load(str(out_path))
    assert model.opset_import[0].version == 18
    onnx.checker.check_model(str(out_path), full_check=True)
    sess = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 5, 8)).astype(np.float32), rng.standard_normal((8, 8)).astype(np.float32)
    (got,) = sess.run(None, {"x": x, "w": w})
    np.testing.assert_allclose(got, run_module(load_module(src), [x, w])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("argv,msg", [
    (["--opset", "13"], "needs opset 17 or newer"),
    (["--input-missing"], "cannot read"),
])
def test_user_errors_exit_2_and_write_nothing(argv: list[str], msg: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.oir"
    src.write_text(IR)
    out_path = tmp_path / "out" / "m.onnx"
    args = ["export", str(tmp_path / "missing.oir") if "--input-missing" in argv else str(src), "-o", str(out_path)]
    code, _, err = run(capsys, *args, *[a for a in argv if a != "--input-missing"])
    assert code == 2
    assert msg in err
    assert not out_path.parent.exists() or list(out_path.parent.iterdir()) == []


def test_op_without_lowering_names_op_and_loc(tmp_path: Path) -> None:
    # In a subprocess: the plugin registers an op for the whole process.
    plugin = tmp_path / "opaque_plugin.py"
    plugin.write_text(PLUGIN)
    src = tmp_path / "in.oir"
    src.write_text('module @m {\n  func @forward(%x: f32[4]) -> (f32[4]) {\n'
                   '    %0 = test.opaque %x : f32[4] loc("blocks.3.custom")\n    return %0\n  }\n}\n')
    out_path = tmp_path / "out.onnx"
    proc = subprocess.run([str(BIN / "opt-llm"), "export", str(src), "-o", str(out_path),
                           "--load-pass-plugin", str(plugin)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "'test.opaque' at loc(\"blocks.3.custom\"): no ONNX lowering" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.oir", "opaque_plugin.py"]
