"""``opt-llm compile`` prints the memory a build holds when run (weights after packing, each
array once, plus one arena per prepared shape), and the manifest records it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from optllm.tools.opt_llm import main

IR = """module @m {
  func @forward(%x: f32[B,384], %ids: i64[B]) -> (f32[B,512]) {
    %t = core.weight {name = "t"} : f32[8,384]
    %w = core.weight {name = "w"} : f32[512,384]
    %0 = nn.embedding %t, %ids : f32[B,384]
    %1 = core.add %x, %0 : f32[B,384]
    %2 = nn.linear %1, %w {transpose_w = true} : f32[B,512]
    %3 = nn.gelu %2 : f32[B,512]
    return %3
  }
}
"""


def test_compile_prints_the_memory_it_will_hold(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from optllm.ir import parse_module
    from optllm.ir.io import save_module

    m = parse_module(IR)
    rng = np.random.default_rng(0)
    m.constants.add(rng.standard_normal((8, 384)).astype(np.float32), "t")
    m.constants.add(rng.standard_normal((512, 384)).astype(np.float32), "w")
    model = save_module(m, tmp_path / "model.oir")
    build = tmp_path / "build"
    assert main(["compile", str(model), "--target", "cpu", "-o", str(build), "--dims", "B=4", "--dims", "B=64"]) == 0
    out = capsys.readouterr().out
    held = json.loads((build / "manifest.json").read_text())["memory"]
    plans = json.loads((build / "manifest.json").read_text())["plans"]
    # the table's 8x384 is read in place; the 512x384 weight is held once, re-laid out or packed
    assert held["weights_bytes"] >= (8 + 512) * 384 * 4
    assert held["arena_bytes"] == sum(p["memory"]["arena_bytes"] for p in plans) > 0
    assert held["total_bytes"] == held["weights_bytes"] + held["arena_bytes"]
    line = re.search(r"memory held when run: ([\d.]+) MiB = weights ([\d.]+) MiB .* arenas ([\d.]+) MiB \(2 prepared shapes\)",
                     out)
    assert line is not None, out
    assert float(line.group(1)) == pytest.approx(held["total_bytes"] / 2**20, abs=0.06)
    assert float(line.group(2)) == pytest.approx(held["weights_bytes"] / 2**20, abs=0.06)
