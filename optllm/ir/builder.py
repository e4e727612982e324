"""Builder: create type-inferred, attribute-checked ops at an insertion point.

    b = Builder.at_end(graph)
    y = b.op("core.add", x, w)                     # one result -> a Value
    q, k, v = b.create("core.split", [qkv], {"axis": 2, "sizes": [64, 64, 64]}).results
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optllm.ir.attributes import AttrError
from optllm.ir.diagnostics import TypeInferenceError, VerifyError
from optllm.ir.graph import Graph
from optllm.ir.ops import Operation, get_opdef
from optllm.ir.types import TensorType
from optllm.ir.values import Value


class BuildError(VerifyError):
    """An op the builder refused: bad attributes or operands it cannot type."""


class Builder:
    def __init__(self, graph: Graph, before: Operation | None = None, loc: str = "") -> None:
        self.graph = graph
        self.before = before  # insert before this op; None = at the end
        self.loc = loc

    @staticmethod
    def at_end(graph: Graph, loc: str = "") -> Builder:
        return Builder(graph, None, loc)

    @staticmethod
    def before_op(op: Operation, loc: str | None = None) -> Builder:
        assert op.parent is not None, "op is not in a graph"
        return Builder(op.parent, op, op.loc if loc is None else loc)

    def create(self, name: str, operands: Sequence[Value], attrs: Mapping[str, Any] | None = None,
               loc: str | None = None, regions: Sequence[Graph] = (),
               result_types: Sequence[TensorType] | None = None) -> Operation:
        opdef = get_opdef(name)
        where = loc if loc is not None else self.loc
        try:
            lo, hi = opdef.arity()
            if len(operands) < lo or (hi is not None and len(operands) > hi):
                want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
                raise TypeInferenceError(f"expects {want} operands, got {len(operands)}")
            canon = opdef.check_attrs(attrs or {})
            if opdef.declared_types:
                if result_types is None:
                    raise TypeInferenceError("this op needs explicit result_types")
                types = list(result_types)
            else:
                types = opdef.infer([v.type for v in operands], canon)
        except (AttrError, TypeInferenceError, ValueError) as e:  # ValueError: a type with a negative dim
            shown = ", ".join(str(v.type) for v in operands)
            raise BuildError(f"cannot build with operands ({shown}): {e}", None,
                             f"'{name}'" + (f' at loc("{where}")' if where else "")) from None
        op = Operation(opdef, operands, types, canon, where, regions)
        if self.before is None:
            self.graph.append(op)
        else:
            self.graph.insert_before(self.before, op)
        return op

    def op(self, name: str, *operands: Value, loc: str | None = None, **attrs: Any) -> Value:
        """Create a single-result op; attribute names with '-' are written with '_' here."""
        return self.create(name, list(operands), attrs, loc).result
