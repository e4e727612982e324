"""Small, general helpers for writing pattern ``match`` methods: read producers and constants,
look through views, check who reads a value, open up commutative products. None mutates IR.

    mul = producer(v, "core.mul")
    if mul is None:
        return "operand is not a core.mul"
    pair = operand_with_splat(mul)   # (x, 0.5) for mul(x, 0.5) or mul(0.5, x)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from optllm.ir.graph import Module
from optllm.ir.ops import Operation, Trait
from optllm.ir.symbolic import is_static
from optllm.ir.types import TensorType
from optllm.ir.values import Value
from optllm.passes.canonicalize import splat_value

__all__ = ["channel_vector", "close_to", "constant_array", "is_constant", "is_output", "mul_factors",
           "operand_with_splat", "producer", "single_use", "sole_user", "splat_float", "splat_value",
           "strip_views", "used_only_by", "users_only"]

# Views that relabel a whole tensor (one operand, one result): safe to look through.
RELABELS = frozenset({"core.reshape", "core.permute"})


# -- producers and readers -------------------------------------------------------------------
def producer(v: Value, *names: str) -> Operation | None:
    """The op producing ``v`` when its name is one of ``names`` (any name if none given)."""
    op = v.owner
    if op is None or (names and op.name not in names):
        return None
    return op


def is_output(v: Value) -> bool:
    """``v`` is returned by the graph that defines it."""
    graph = v.owner.parent if v.owner is not None else v.arg_of
    return graph is not None and graph.is_output(v)


def users_only(v: Value) -> list[Operation] | None:
    """The distinct ops reading ``v``; ``None`` when the graph returns ``v`` or nothing reads it."""
    if is_output(v) or not v.uses:
        return None
    return v.users


def sole_user(v: Value) -> Operation | None:
    """The one op reading ``v`` (maybe through several operands); ``None`` when there are more,
    none, or the graph returns ``v``."""
    users = users_only(v)
    return users[0] if users is not None and len(users) == 1 else None


def single_use(v: Value) -> bool:
    """Exactly one operand anywhere reads ``v`` and the graph does not return it."""
    return len(v.uses) == 1 and not is_output(v)


def used_only_by(v: Value, ops: Iterable[Operation]) -> bool:
    """Every read of ``v`` is by one of ``ops`` and the graph does not return it."""
    ids = {id(op) for op in ops}
    return not is_output(v) and all(id(u.op) in ids for u in v.uses)


def strip_views(v: Value) -> tuple[Value, list[Operation]]:
    """Follow reshapes and permutes back from ``v`` while each view's input is read only by that
    view: (the first value that is not such a view, the views passed, outermost first)."""
    views: list[Operation] = []
    op = v.owner
    while op is not None and op.name in RELABELS and sole_user(op.operands[0]) is op:
        views.append(op)
        v = op.operands[0]
        op = v.owner
    return v, views


# -- constants ---------------------------------------------------------------------------------
def is_constant(v: Value) -> bool:
    """``v`` is produced by a constant op (``core.constant``, ``core.weight``) or a static ``core.full``."""
    op = v.owner
    if op is None:
        return False
    if op.has_trait(Trait.CONSTANT):
        return True
    return op.name == "core.full" and all(is_static(d) for d in op.attrs["shape"])


def constant_array(module: Module, v: Value) -> np.ndarray | None:
    """The data of a constant ``v`` (inline constant, table weight or static ``core.full``)."""
    op = v.owner
    if op is None or not is_constant(v):
        return None
    if op.name == "core.weight":
        name = op.attrs["name"]
        return module.constants[name] if name in module.constants else None
    if op.name == "core.constant":
        return np.asarray(op.attrs["value"].to_array())
    if op.name == "core.full":
        return np.asarray(op.opdef.reference([], op.attrs, {})[0])
    return None


def channel_vector(arr: np.ndarray, out: TensorType) -> np.ndarray | None:
    """``arr`` as a vector over the last dim of ``out`` ([N]), when broadcasting ``arr`` against
    ``out`` scales each channel (a scalar, [N], [1, .., N], [.., 1]) and enlarges nothing."""
    n = out.shape[-1] if out.rank else 1
    if not isinstance(n, int) or arr.ndim > out.rank:
        return None
    if any(d != 1 for d in arr.shape[:-1]):
        return None
    last = arr.shape[-1] if arr.ndim else 1
    if last not in (1, n):
        return None
    return np.broadcast_to(arr.reshape(-1), (n,)).copy()


def splat_float(v: Value) -> float | None:
    """The value of a floating-point splat constant (``core.constant`` splat or ``core.full``)."""
    if not v.type.dtype.is_float:
        return None
    got = splat_value(v)
    return None if got is None else float(got)


def close_to(got: float | None, want: float, rtol: float = 1e-6) -> bool:
    """``got`` equals ``want`` up to ``rtol`` (constants stored in lower precision)."""
    return got is not None and abs(got - want) <= rtol * abs(want)


def operand_with_splat(op: Operation) -> tuple[Value, float] | None:
    """For a binary op with a float splat operand: (the other operand, the splat); the right
    operand is looked at first (only commutative ops should accept a splat on the left)."""
    if len(op.operands) != 2:
        return None
    x, y = op.operands
    c = splat_float(y)
    if c is not None:
        return x, c
    c = splat_float(x)
    return None if c is None else (y, c)


def mul_factors(v: Value) -> list[Value]:
    """The leaves of the ``core.mul`` tree rooted at ``v``: inner products of ``v``'s type that
    are read only once are opened up, so ``mul(mul(x, 0.5), y)`` gives ``[x, 0.5, y]``."""
    op = producer(v, "core.mul")
    if op is None:
        return [v]
    out: list[Value] = []
    for a in op.operands:
        if producer(a, "core.mul") is not None and single_use(a) and a.type == op.result.type:
            out.extend(mul_factors(a))
        else:
            out.append(a)
    return out
