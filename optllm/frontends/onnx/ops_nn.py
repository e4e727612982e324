"""ONNX converters (ops_nn)."""

from __future__ import annotations
