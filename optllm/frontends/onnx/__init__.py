"""ONNX frontend: ``import_onnx(path_or_proto) -> Imported`` (see ``importer``).

Converters live in ``ops_<family>.py`` modules listed in ``ops/__init__.py`` and register
themselves with ``registry.converter``; they build IR through ``context.ConvertContext``.
"""

from __future__ import annotations

from typing import Any

from optllm.frontends.common import FrontendError, Imported
from optllm.frontends.onnx.importer import import_onnx

__all__ = ["Backend", "FrontendError", "Imported", "import_onnx"]


def __getattr__(name: str) -> Any:
    if name == "Backend":  # onnx.backend is imported only when the backend is wanted
        from optllm.frontends.onnx.backend import Backend

        return Backend
    raise AttributeError(f"module 'optllm.frontends.onnx' has no attribute {name!r}")
