"""A test-only op with a side effect (no ``pure`` trait): passes must never erase or merge it.

Importing this module registers ``test_passes.emit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optllm.ir import OpDef, TensorType, register_op


@register_op
class Emit(OpDef):
    """``%1 = test_passes.emit %0 : f32[4]`` — an op with a side effect (not pure)."""

    name = "test_passes.emit"
    operands = ("x",)
    traits = frozenset()

    def infer(self, types: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        return [types[0]]

    def reference(self, inputs: Sequence[np.ndarray], attrs: Mapping[str, Any],
                  env: Mapping[str, int]) -> list[np.ndarray]:
        return [inputs[0]]
