"""Keeps ``benchmarks/memory_cpu.py`` from rotting: both modes on tiny models (a 2-layer GPT-2
and a 2-layer Llama shape), each runtime in its own subprocess as in a real run. Checks what it
prints and returns, never the figures' size against a bar (a tiny model's memory is all fixed
costs), only that they are measured and consistent."""

from __future__ import annotations

import importlib
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module("memory_cpu")


def test_resident_memory_table_on_a_tiny_model(script: ModuleType) -> None:
    out = io.StringIO()
    [row] = script.main(["--models", "tiny", "--seq", "8", "--threads", "1", "--timeout", "300"], file=out)
    text = out.getvalue()
    for rt in script.RUNTIMES:
        assert "error" not in row[rt], (rt, row[rt])
    base, ours, ort = (row[rt]["rss_mib"] for rt in script.RUNTIMES)
    assert 0 < base <= min(ours, ort) and row["ratio"] == pytest.approx(ours / ort)
    assert all(row[rt]["baseline_mib"] <= row[rt]["hwm_mib"] for rt in script.RUNTIMES)
    assert "tiny" in text and "ratio" in text and "goal" in text and "read once" in text


def test_compile_peak_on_a_tiny_llama(script: ModuleType) -> None:
    out = io.StringIO()
    [row] = script.main(["--compile-peak", "--llama", "64,2,128,1000", "--targets", "reference"], file=out)
    assert "error" not in row, row
    assert row["layers"] == 2 and row["weights_mib"] > row["largest_layer_mib"] > 0
    assert row["peak_mib"] >= row["rss_after_mib"] > 0 and row["added_mib"] >= 0
    assert row["import_s"] > 0 and "added/L" in out.getvalue()


def test_proc_status_reads_rss_and_peak(script: ModuleType) -> None:
    st = script.proc_status()
    assert st["VmHWM"] >= st["VmRSS"] > 0
