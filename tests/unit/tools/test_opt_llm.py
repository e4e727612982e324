"""The opt-llm command: verbs, exit codes, messages, and nothing written on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optllm.ir import Builder, DType, Graph, Module, TensorType
from optllm.ir.io import load_module, save_module
from optllm.tools.opt_llm import main, parse_dims, split_chunks

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parents[1] / "plugins" / "single_file_plugin.py"

IR = """module @m {
  func @forward(%x: f32[B,4]) -> (f32[B,4]) {
    %0 = core.constant {value = dense<f32[]: 1.0>} : f32[]
    %1 = core.mul %x, %0 : f32[B,4]
    %2 = core.exp %1 : f32[B,4]
    %3 = core.exp %1 : f32[B,4]
    %4 = core.add %2, %3 : f32[B,4]
    return %4
  }
}
"""


@pytest.fixture
def oir(tmp_path: Path) -> Path:
    path = tmp_path / "in.oir"
    path.write_text(IR)
    return path


def _weights_model(tmp_path: Path) -> Path:
    """An embedding model saved as model.oir + model.safetensors."""
    m = Module("emb")
    g = m.add_graph(Graph("forward", [_ids_type()], ["input_ids"]))
    b = Builder.at_end(g)
    table = m.constants.add(np.arange(24, dtype=np.float32).reshape(6, 4), "table")
    w = b.create("core.weight", [], {"name": table}, result_types=[TensorType((6, 4), DType.f32)]).result
    e = b.op("nn.embedding", w, g.inputs[0])
    g.set_outputs([b.op("core.add", e, e)])
    return save_module(m, tmp_path / "model.oir")


def _sym(name: str) -> object:
    from optllm.ir import parse_dim

    return parse_dim(name)


def _ids_type() -> TensorType:
    return TensorType((_sym("B"), _sym("S")), DType.i64)  # type: ignore[arg-type]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- the default verb ---------------------------------------------------------------------------
def test_pipeline_to_stdout(capsys: pytest.CaptureFixture[str], oir: Path) -> None:
    code, out, err = run(capsys, str(oir), "-p", "default")
    assert code == 0 and err == ""
    assert "core.mul" not in out and out.count("core.exp") == 1


def test_without_a_pipeline_the_module_round_trips(capsys: pytest.CaptureFixture[str], oir: Path) -> None:
    code, out, _ = run(capsys, str(oir))
    assert code == 0 and out == IR


def test_output_file_with_weights(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _weights_model(tmp_path)
    out = tmp_path / "out" / "opt.oir"
    code, stdout, _ = run(capsys, str(src), "-p", "cse", "-o", str(out))
    assert code == 0 and stdout == ""
    assert out.exists() and out.with_suffix(".safetensors").exists()
    m = load_module(out)
    assert m.weights_file == "opt.safetensors" and m.constants.names() == ["table"]


def test_report_json(capsys: pytest.CaptureFixture[str], oir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, _, _ = run(capsys, str(oir), "-p", "O1", "--report", str(report))
    data = json.loads(report.read_text())
    assert code == 0 and data["pipeline"] == "O1" and data["nodes"] == {"before": 5, "after": 2}


def test_split_input_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "split.oir"
    path.write_text(IR + "// -----\n" + IR.replace("@m", "@n"))
    code, out, _ = run(capsys, str(path), "-p", "cse", "--split-input-file")
    assert code == 0 and out.count("// -----\n") == 1 and "module @n" in out


def test_split_errors_keep_line_numbers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "split.oir"
    path.write_text(IR + "// -----\n" + IR.replace("core.exp %1", "core.exq %1"))
    code, _, err = run(capsys, str(path), "--split-input-file")
    assert code == 2 and f"{path}:16:" in err and "unknown op 'core.exq'" in err


def test_split_chunks_pads_line_numbers() -> None:
    chunks = split_chunks("a\n// -----\nb\nc\n// -----  \n\nd\n")
    assert chunks == ["a\n", "\n\nb\nc\n", "\n" * 5 + "\nd\n"]


def test_stdin_input(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(IR))
    code, out, _ = run(capsys, "-", "-p", "cse")
    assert code == 0 and out.count("core.exp") == 1


def test_list_passes_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--list-passes")
    assert code == 0
    assert "canonicalize" in out and "max-iterations: int (default 10)" in out
    assert "default" in out and "O0" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("opt-llm (optllm) ")


def test_list_passes_with_a_plugin_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--load-pass-plugin", str(PLUGIN), "--list-passes")
    assert code == 0 and "strip-locs" in out and "op: str (default core.add)" in out


# -- user errors: exit 2, one paragraph, nothing written -------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["-p", "csee"], "unknown pass 'csee' (did you mean 'cse'?)"),
    (["-p", "cse{bogus=1}"], "pass 'cse' has no option 'bogus' (valid options: none)"),
    (["-p", "canonicalize{max-iterations=x}"], "expected an integer, got 'x'"),
    (["-p", "cse", "--print-ir-after", "nope"], "--print-ir-after: unknown pass 'nope'"),
    (["-p", "cse", "--load-pass-plugin", "/no/such/plugin.py"], "plugin file '/no/such/plugin.py' does not exist"),
])
def test_bad_pipelines_and_options(capsys: pytest.CaptureFixture[str], oir: Path, tmp_path: Path,
                                   argv: list[str], words: str) -> None:
    out_file = tmp_path / "never.oir"
    code, out, err = run(capsys, str(oir), *argv, "-o", str(out_file))
    assert code == 2 and out == ""
    assert err.startswith("opt-llm: error: ") and words in err
    assert "Traceback" not in err
    assert not out_file.exists() and not out_file.with_suffix(".safetensors").exists()


def test_malformed_oir_reports_line_and_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.oir"
    bad.write_text(IR.replace("%3 = core.exp %1 : f32[B,4]", "%3 = core.exp %1 : f32[B,4"))
    out_file = tmp_path / "never.oir"
    code, _, err = run(capsys, str(bad), "-p", "cse", "-o", str(out_file))
    assert code == 2 and f"{bad}:7:5: error: expected ',' or ']' in the shape" in err
    assert not out_file.exists()


def test_ill_typed_input_is_a_verify_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.oir"
    bad.write_text(IR.replace("%4 = core.add %2, %3 : f32[B,4]", "%4 = core.add %2, %3 : f32[B,5]")
                   .replace("-> (f32[B,4])", "-> (f32[B,5])"))
    code, _, err = run(capsys, str(bad), "-p", "cse")
    assert code == 2 and "core.add" in err and "differ from the inferred" in err


def test_missing_input_and_missing_weights(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope.oir"))
    assert code == 2 and "cannot read" in err and "nope.oir" in err
    src = _weights_model(tmp_path)
    src.with_suffix(".safetensors").unlink()
    code, _, err = run(capsys, str(src), "-p", "cse")
    assert code == 2 and "model.safetensors" in err and "does not exist" in err


def test_a_pass_that_breaks_the_ir_is_named_and_nothing_is_written(
        capsys: pytest.CaptureFixture[str], oir: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "breaker_plugin.py"
    plugin.write_text(
        "from dataclasses import dataclass\n"
        "from typing import ClassVar\n"
        "from optllm.passes import Pass, PassResult\n"
        "@dataclass(frozen=True)\n"
        "class Breaker(Pass):\n"
        "    '''Drops an op that is still used.'''\n"
        "    name: ClassVar[str] = 'test-breaker'\n"
        "    def run(self, module, ctx):\n"
        "        op = module.main.first.next\n"
        "        op.drop_operands(); module.main.unlink(op)\n"
        "        return PassResult(True)\n"
        "PASSES = {'test-breaker': Breaker}\n")
    out_file = tmp_path / "never.oir"
    code, _, err = run(capsys, str(oir), "-p", "cse,test-breaker", "--load-pass-plugin", str(plugin),
                       "-o", str(out_file))
    assert code == 2 and "the IR is invalid after pass 'test-breaker'" in err
    assert not out_file.exists()
    code, out, _ = run(capsys, str(oir), "-p", "test-breaker", "--no-verify")
    assert code == 0 and "core.mul" not in out


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], oir: Path) -> None:
    code, _, err = run(capsys, str(oir), "-p", "csee", "--debug")
    assert code == 2 and "Traceback" in err and "opt-llm: error: " in err


def test_split_input_file_refuses_an_output_file(capsys: pytest.CaptureFixture[str], oir: Path) -> None:
    code, _, err = run(capsys, str(oir), "--split-input-file", "-o", "x.oir")
    assert code == 2 and "cannot be combined with -o" in err


# -- run and stats -----------------------------------------------------------------------------------
def test_run_random_inputs_respect_dtypes_and_table_sizes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _weights_model(tmp_path)
    out = tmp_path / "out.npz"
    code, stdout, err = run(capsys, "run", str(src), "--dims", "B=3,S=7", "-o", str(out))
    assert code == 0, err
    assert "dims: B=3, S=7" in stdout and "input %input_ids: int64[3, 7]" in stdout
    assert "output0  [3, 7, 4]  float32" in stdout
    y = np.load(out)["output0"]
    assert y.shape == (3, 7, 4) and y.max() <= 2 * 23  # ids stayed below the table size (6)


def test_run_with_npz_inputs(capsys: pytest.CaptureFixture[str], oir: Path, tmp_path: Path) -> None:
    x = np.array([[0.0, 1.0, -1.0, 2.0]], dtype=np.float32)
    npz = tmp_path / "in.npz"
    np.savez(npz, x=x)
    out = tmp_path / "out.npz"
    code, stdout, _ = run(capsys, "run", str(oir), "--inputs", str(npz), "-o", str(out))
    assert code == 0
    np.testing.assert_allclose(np.load(out)["output0"], 2 * np.exp(x), rtol=1e-6)
    np.savez(npz, y=x)
    code, _, err = run(capsys, "run", str(oir), "--inputs", str(npz))
    assert code == 2 and "no array for input #0 'x'" in err and "found: y" in err


def test_run_rejects_bad_dims(capsys: pytest.CaptureFixture[str], oir: Path) -> None:
    code, _, err = run(capsys, "run", str(oir), "--dims", "B=x")
    assert code == 2 and "--dims" in err
    assert parse_dims(" B=1, S=128 ") == {"B": 1, "S": 128}


def test_stats_text_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _weights_model(tmp_path)
    code, out, _ = run(capsys, "stats", str(src), "--dims", "B=1,S=10")
    assert code == 0 and "nodes:           3" in out and "parameters:      24" in out
    code, out, _ = run(capsys, "stats", str(src), "--json", "--dims", "B=2,S=10")
    data = json.loads(out)
    assert data["nodes"] == 3 and data["kernel_launches"] == 2 and data["parameters"] == 24
    assert data["parameter_bytes"] == 96 and data["dims"] == {"B": 2, "S": 10}
    assert data["ops"] == {"core.add": 1, "core.weight": 1, "nn.embedding": 1}
    assert data["flops"] == 2 * 10 * 4 * 2  # embedding and add: one flop per output element each


# -- the installed console script ------------------------------------------------------------------------
def test_console_script_exit_codes_and_fast_help(oir: Path) -> None:
    exe = str(BIN / "opt-llm")
    help_ = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "--pass-statistics" in help_.stdout and "opt-llm import" in help_.stdout
    bad = subprocess.run([exe, str(oir), "-p", "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("opt-llm: error: ")
    assert "unknown pass 'nope'" in bad.stderr and bad.stdout == ""
    usage = subprocess.run([exe, "--no-such-flag"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "unrecognized arguments" in usage.stderr


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys; from optllm.tools import opt_llm; opt_llm._opt_parser(); opt_llm._verb_parser(); "
            "heavy = [m for m in ('numpy', 'torch', 'optllm.ir', 'optllm.passes') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.slow
def test_import_verb_with_a_package_function_spec(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "tiny.oir"
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([str(BIN / "opt-llm"), "import", "tiny_torch_model:build", "-o", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "@forward(%input_ids: i64[B,S])" in proc.stdout
    m = load_module(out)
    assert sorted(m.constants.names()) == ["emb.weight", "proj.bias", "proj.weight"]
    ran = subprocess.run([str(BIN / "opt-llm"), "run", str(out), "--dims", "B=1,S=3"],
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and "output0  [1, 3, 8]  float32" in ran.stdout


def test_import_verb_errors_are_user_errors(tmp_path: Path) -> None:
    out = tmp_path / "never.oir"
    proc = subprocess.run([str(BIN / "opt-llm"), "import", "no_such_module_xyz:build", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no_such_module_xyz" in proc.stderr and not out.exists()
