"""Small, general helpers for the ``match`` methods of multi-op patterns: producers by name,
single-use checks, splat constants, commutative operand pairs and product trees. Helpers about
constant data, sole users and view chains live in ``optllm.passes.value_matchers``. None
mutates IR.

    mul = producer(v, "core.mul")
    if mul is None:
        return "operand is not a core.mul"
    pair = operand_with_splat(mul)   # (x, 0.5) for mul(x, 0.5) or mul(0.5, x)
"""

from __future__ import annotations

from collections.abc import Iterable

from optllm.ir.ops import Operation
from optllm.ir.values import Value
from optllm.passes.value_matchers import is_output, splat_value

__all__ = ["close_to", "is_output", "mul_factors", "operand_with_splat", "producer", "single_use", "splat_float",
           "splat_value", "used_only_by"]


def producer(v: Value, *names: str) -> Operation | None:
    """The op producing ``v`` when its name is one of ``names`` (any name if none given)."""
    op = v.owner
    if op is None or (names and op.name not in names):
        return None
    return op


def single_use(v: Value) -> bool:
    """Exactly one operand anywhere reads ``v`` and the graph does not return it."""
    return len(v.uses) == 1 and not is_output(v)


def used_only_by(v: Value, ops: Iterable[Operation]) -> bool:
    """Every read of ``v`` is by one of ``ops`` and the graph does not return it."""
    ids = {id(op) for op in ops}
    return not is_output(v) and all(id(u.op) in ids for u in v.uses)


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
