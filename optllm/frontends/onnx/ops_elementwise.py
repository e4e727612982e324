"""ONNX converters (ops_elementwise)."""

from __future__ import annotations
