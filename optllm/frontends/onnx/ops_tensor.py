"""ONNX converters (ops_tensor)."""

from __future__ import annotations
