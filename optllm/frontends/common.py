"""What every frontend shares: the error type, the import result, and IR-building helpers.

    from optllm.frontends.common import FrontendError, Imported

``fx`` (torch.export) and ``onnx`` both import from here, so neither frontend depends on the
other; ``optllm.frontends.fx`` re-exports these names for older imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from optllm.frontends.signature import Signature
from optllm.ir import Builder, Dense, DType, Graph, Module
from optllm.ir.diagnostics import OptllmError


class FrontendError(OptllmError):
    """A model the frontend cannot import (unsupported ops, bad inputs, export failures)."""


@dataclass
class Imported:
    """An imported model: the IR module (graph ``forward``) and its calling convention."""

    module: Module
    signature: Signature


def graph_builder(name: str) -> tuple[Module, Graph, Builder]:
    """A new module ``name`` holding an empty graph ``forward``, and a builder at its end."""
    module = Module(name)
    graph = module.add_graph(Graph("forward"))
    return module, graph, Builder.at_end(graph)


def scalar_dense(value: Any, dtype: DType) -> Dense:
    """``value`` (a Python or numpy scalar or array) as a constant of element type ``dtype``."""
    return Dense.from_array(np.asarray(value).astype(dtype.to_numpy()), dtype)


__all__ = ["FrontendError", "Imported", "graph_builder", "scalar_dense"]
