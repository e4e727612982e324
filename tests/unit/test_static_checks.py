"""Lint and type-check gates: ruff over the project, mypy over the IR and the passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed in this environment")
        return found
    return str(path)


def test_ruff_clean() -> None:
    r = subprocess.run([_tool("ruff"), "check", "optllm", "tests", "benchmarks"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_ir_and_passes() -> None:
    r = subprocess.run([_tool("mypy"), "optllm/ir", "optllm/passes"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
