"""Matching helpers about values: constant data, sole users, view chains, per-channel vectors.

For patterns that read weight data:

    arr = constant_array(module, op.operands[1])      # None unless a constant / weight / full
    user = sole_user(v)                               # the one op reading v (not a graph output)
    root, views = strip_views(q)                      # back through single-use reshapes/permutes

None of these mutate the IR.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

from optllm.ir.graph import Module
from optllm.ir.ops import Operation
from optllm.ir.symbolic import is_static
from optllm.ir.types import TensorType
from optllm.ir.values import Value

# Views that only relabel elements (a bijection between input and output elements).
VIEW_CHAIN = frozenset({"core.reshape", "core.permute"})


def constant_array(module: Module, v: Value) -> np.ndarray | None:
    """The value of ``v`` when it is a ``core.constant``, ``core.weight`` or static ``core.full``."""
    op = v.owner
    if op is None:
        return None
    if op.name == "core.constant":
        return op.attrs["value"].to_array()  # type: ignore[no-any-return]
    if op.name == "core.weight":
        name = op.attrs["name"]
        return module.constants[name] if name in module.constants else None
    if op.name == "core.full" and v.type.is_static:
        shape = tuple(int(d) for d in v.type.shape)  # type: ignore[arg-type]
        return np.full(shape, op.attrs["value"], dtype=v.type.dtype.to_numpy())
    return None


def is_output(v: Value) -> bool:
    """``v`` is returned by the graph that defines it."""
    graph = v.owner.parent if v.owner is not None else v.arg_of
    return graph is not None and graph.is_output(v)


def is_constant(v: Value) -> bool:
    """``v`` is produced by ``core.constant``, ``core.weight`` or ``core.full``."""
    return v.owner is not None and v.owner.name in ("core.constant", "core.weight", "core.full")


def sole_user(v: Value) -> Operation | None:
    """The only op reading ``v``, through exactly one use, when the graph does not return ``v``."""
    if len(v.uses) != 1 or is_output(v):
        return None
    return v.uses[0].op


def users_only(v: Value) -> list[Operation] | None:
    """Every op reading ``v`` (each once), or None when ``v`` is a graph output or unused."""
    if not v.uses or is_output(v):
        return None
    return v.users


def strip_views(v: Value, kinds: Collection[str] = VIEW_CHAIN) -> tuple[Value, list[Operation]]:
    """Walk from ``v`` back through ops named in ``kinds`` whose operand is read by that op
    alone; returns the first value that is not such a view and the views passed (outermost first)."""
    views: list[Operation] = []
    while v.owner is not None and v.owner.name in kinds and sole_user(v.owner.operands[0]) is v.owner:
        views.append(v.owner)
        v = v.owner.operands[0]
    return v, views


def channel_vector(arr: np.ndarray, out: TensorType) -> np.ndarray | None:
    """``arr`` as a vector over the last dim of ``out`` when it broadcasts along that dim only
    (shape [], [1], [N] or [1, .., 1, N] of rank <= out's); else None."""
    n = out.shape[-1] if out.rank else 1
    if arr.ndim > out.rank or any(d != 1 for d in arr.shape[:-1]) or not is_static(n):
        return None
    last = arr.shape[-1] if arr.ndim else 1
    if last not in (1, n):
        return None
    return np.broadcast_to(arr.reshape(-1), (int(n),))  # type: ignore[arg-type]


__all__ = ["VIEW_CHAIN", "channel_vector", "constant_array", "is_constant", "is_output", "sole_user", "strip_views",
           "users_only"]


def splat_value(v: Value) -> float | int | bool | None:
    """The single value every element of ``v`` holds, when ``v`` is a constant splat."""
    op = v.owner
    if op is None:
        return None
    if op.name == "core.constant":
        dense = op.attrs["value"]
        arr = dense.to_array().reshape(-1)
        if arr.size == 0 or (arr.size > 1 and not dense.is_splat()):
            return None
        return arr[0].item()  # type: ignore[no-any-return]
    if op.name == "core.full":
        return np.array(op.attrs["value"]).astype(op.attrs["dtype"].to_numpy()).item()  # type: ignore[no-any-return]
    return None


def is_splat_of(v: Value, want: float, *, signed_zero: float | None = None) -> bool:
    """``v`` is a splat equal to ``want``; for a float zero its sign must be ``signed_zero``'s."""
    got = splat_value(v)
    if got is None or got != want:
        return False
    if signed_zero is not None and isinstance(got, float):
        return math.copysign(1.0, got) == math.copysign(1.0, signed_zero)
    return True
