"""SSA values and their use-lists.

A ``Value`` is produced by exactly one op result or is a graph argument, and knows every
``(op, operand index)`` that reads it. All rewiring goes through ``Value.replace_all_uses_with``
and ``Operation.set_operand`` so the use-lists stay exact (the verifier checks them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optllm.ir.types import TensorType

if TYPE_CHECKING:
    from optllm.ir.graph import Graph
    from optllm.ir.ops import Operation


class Use:
    """One read of a value: operand ``index`` of ``op``."""

    __slots__ = ("op", "index")

    def __init__(self, op: Operation, index: int) -> None:
        self.op = op
        self.index = index

    def __repr__(self) -> str:
        return f"Use({self.op.name}#{self.index})"


class Value:
    """An SSA value: an op result (``owner`` set) or a graph argument (``arg_of`` set)."""

    __slots__ = ("type", "owner", "index", "uses", "arg_of", "name_hint")

    def __init__(self, type: TensorType, owner: Operation | None = None, index: int = 0,
                 arg_of: Graph | None = None, name_hint: str = "") -> None:
        self.type = type
        self.owner = owner
        self.index = index
        self.uses: list[Use] = []
        self.arg_of = arg_of
        self.name_hint = name_hint

    @property
    def is_arg(self) -> bool:
        return self.owner is None

    @property
    def users(self) -> list[Operation]:
        """Distinct ops reading this value, in use order."""
        seen: dict[int, Operation] = {}
        for u in self.uses:
            seen.setdefault(id(u.op), u.op)
        return list(seen.values())

    def has_uses(self) -> bool:
        return bool(self.uses)

    def _add_use(self, op: Operation, index: int) -> None:
        self.uses.append(Use(op, index))

    def _remove_use(self, op: Operation, index: int) -> None:
        for i, u in enumerate(self.uses):
            if u.op is op and u.index == index:
                del self.uses[i]
                return
        raise RuntimeError(f"use-list corrupt: {op.name} operand {index} not among the uses")

    def replace_all_uses_with(self, new: Value) -> None:
        """Make every reader of ``self`` read ``new`` instead (graph outputs included)."""
        if new is self:
            return
        for u in list(self.uses):
            u.op.set_operand(u.index, new)
        graph = self.owner.parent if self.owner is not None else self.arg_of
        if graph is not None:
            graph.replace_output(self, new)

    def __repr__(self) -> str:
        who = self.owner.name if self.owner is not None else "arg"
        return f"<Value {who}#{self.index}: {self.type}>"
