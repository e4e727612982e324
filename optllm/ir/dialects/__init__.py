"""Op families, one per file. Importing a dialect module registers its ops."""

from __future__ import annotations

import importlib

BUILTIN = ("core", "nn", "fused")
_loaded = False


def load_all() -> None:
    """Import every built-in dialect once (cheap after the first call)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN:
        importlib.import_module(f"optllm.ir.dialects.{name}")
