"""The built-in passes, registered through the ``optllm.plugins`` entry point like any plugin.

Each value is a zero-argument loader so that listing pass names imports no pass module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from optllm.passes.base import Pass


def _lazy(module: str, cls: str) -> Callable[[], type[Pass]]:
    def load() -> type[Pass]:
        return getattr(importlib.import_module(f"optllm.passes.{module}"), cls)  # type: ignore[no-any-return]

    return load


PASSES: dict[str, Callable[[], type[Pass]]] = {
    "canonicalize": _lazy("canonicalize", "Canonicalize"),
    "cse": _lazy("cse", "CommonSubexpressionElimination"),
    "dce": _lazy("dce", "DeadCodeElimination"),
    "fuse": _lazy("fuse", "Fuse"),
    "dedup": _lazy("dedup", "Dedup"),
    "fold-constants": _lazy("fold_constants", "FoldConstants"),
    "fold-linear-chain": _lazy("fold_linear_chain", "FoldLinearChain"),
    "fold-residual": _lazy("fold_residual", "FoldResidual"),
}
