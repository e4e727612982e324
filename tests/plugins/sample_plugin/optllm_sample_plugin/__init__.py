"""Entry point of the sample plugin: pass names -> lazy loaders (nothing heavy imported here)."""

from __future__ import annotations

import importlib
from typing import Any


def _square() -> Any:
    return importlib.import_module("optllm_sample_plugin.passes").SampleSquare


PASSES = {"sample-square": _square}
