"""Collect ``tests/oir/**/*.oir`` FileCheck tests so that a plain ``pytest`` runs them.

Each ``// RUN: <command>`` line of a file becomes one test item, run like lit does: through
``bash -o pipefail`` with ``%s`` replaced by the file's path, ``%S`` by its folder, ``%t`` by a
temporary path and the venv's ``bin`` first on ``PATH`` (so ``opt-llm`` and ``filecheck`` are
the ones installed beside this Python). A line ending in ``\\`` continues on the next RUN line.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
RUN = "// RUN:"


def run_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command) for each RUN command of a test file."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if RUN not in line:
            continue
        cmd = line.split(RUN, 1)[1].strip()
        start, prefix = pending if pending is not None else (lineno, "")
        if cmd.endswith("\\"):
            pending = (start, prefix + cmd[:-1] + " ")
            continue
        out.append((start, prefix + cmd))
        pending = None
    return out


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix == ".oir":
        return OirFile.from_parent(parent, path=file_path)
    return None


class OirFile(pytest.File):
    def collect(self):  # type: ignore[no-untyped-def]
        lines = run_lines(self.path.read_text())
        if not lines:
            yield OirItem.from_parent(self, name="no-RUN-line", lineno=0, command="")
        for lineno, command in lines:
            yield OirItem.from_parent(self, name=f"RUN@{lineno}", lineno=lineno, command=command)


class OirFailure(Exception):
    pass


class OirItem(pytest.Item):
    def __init__(self, *, lineno: int, command: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.lineno = lineno
        self.command = command

    def runtest(self) -> None:
        if not self.command:
            raise OirFailure(f"{self.path} has no '// RUN:' line")
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"oir-{os.getpid()}-{self.path.stem}-{self.lineno}"
        cmd = (self.command.replace("%s", shlex.quote(str(self.path)))
               .replace("%S", shlex.quote(str(self.path.parent)))
               .replace("%t", shlex.quote(str(tmp))))
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                              env=env, cwd=self.path.parent, timeout=300)
        if proc.returncode != 0:
            raise OirFailure(f"command (exit {proc.returncode}):\n  {cmd}\n"
                             f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}")

    def repr_failure(self, excinfo, style=None):  # type: ignore[no-untyped-def]
        if isinstance(excinfo.value, OirFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):  # type: ignore[no-untyped-def]
        return self.path, self.lineno - 1, f"{self.path.name}:{self.lineno}: {self.command}"
