"""Rotary position embedding: the rotate-half form into ``nn.rope``, and its cos/sin operands
replaced by tables precomputed as constants.

    x·cos + cat(-x[..., d/2:], x[..., :d/2])·sin  ->  nn.rope(x, cos, sin)

A cos/sin operand that depends only on constants and the positions ``arange(0, S)`` (through
elementwise ops, casts, concats and views) is evaluated once for ``S = max_positions`` into a
constant table ``T`` (identical tables of different layers are stored once), and replaced by
``gather(T, arange(0, S), axis)``: row ``i`` of the table is what the chain computes for
position ``i``, so this is exact. It is a gather and not a slice because the IR types
``slice(T, 0, S)`` as ``min(P, S)`` long; positions past the table fail loudly (an index error).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from optllm.ir.graph import Module
from optllm.ir.ops import Operation, Trait
from optllm.ir.symbolic import SymExpr, is_static
from optllm.ir.values import Value
from optllm.passes.matchers import producer, single_use
from optllm.passes.rewrite import Match, Pattern, Rewriter

# Ops a position table may be built from (besides elementwise ops and constants).
TABLE_OPS = frozenset({"core.arange", "core.reshape", "core.permute", "core.expand", "core.concat",
                       "core.constant", "core.full", "core.weight"})
CHECK_LENGTH = 5  # the table's first rows must equal the chain evaluated at this length


def _half_slice(v: Value, x: Value, first: bool) -> bool:
    """v = x[..., :d/2] (first) or x[..., d/2:] along the last axis."""
    op = producer(v, "core.slice")
    if op is None or op.operands[0] is not x or op.attrs["step"] != 1:
        return False
    d = x.type.shape[-1]
    if not isinstance(d, int) or d % 2 or op.attrs["axis"] % x.type.rank != x.type.rank - 1:
        return False
    start, end = (0, d // 2) if first else (d // 2, d)
    return op.attrs["start"] == start and op.attrs["end"] == end


def _rotated_half_of(v: Value) -> Value | None:
    """x for v = cat(-x[..., d/2:], x[..., :d/2]) along the last axis."""
    cat = producer(v, "core.concat")
    if cat is None or len(cat.operands) != 2 or cat.attrs["axis"] % v.type.rank != v.type.rank - 1:
        return None
    neg = producer(cat.operands[0], "core.neg")
    if neg is None:
        return None
    hi = neg.operands[0]
    sl = producer(hi, "core.slice")
    if sl is None:
        return None
    x = sl.operands[0]
    if not _half_slice(hi, x, first=False) or not _half_slice(cat.operands[1], x, first=True):
        return None
    return x


class RopeFusion(Pattern):
    # x·cos + rotate_half(x)·sin -> nn.rope(x, cos, sin)
    name = "rope"
    root = "core.add"

    def match(self, op: Operation) -> Match | str:
        for a, b in ((op.operands[0], op.operands[1]), (op.operands[1], op.operands[0])):
            ma, mb = producer(a, "core.mul"), producer(b, "core.mul")
            if ma is None or mb is None or not single_use(a) or not single_use(b):
                continue
            for r, sin in ((mb.operands[0], mb.operands[1]), (mb.operands[1], mb.operands[0])):
                x = _rotated_half_of(r)
                if x is None or x not in ma.operands or a.type != x.type or b.type != x.type:
                    continue
                cos = ma.operands[1] if ma.operands[0] is x else ma.operands[0]
                if op.result.type != x.type or cos.type.dtype != x.type.dtype or sin.type.dtype != x.type.dtype:
                    return "cos/sin are of another type or broadcast x"
                return Match(op, x=x, cos=cos, sin=sin)
        return "not x·cos + cat(-x2, x1)·sin with single-use products"

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        new = rewriter.create(m.op, "nn.rope", [m.x, m.cos, m.sin])
        rewriter.replace_op(m.op, new.result)


def _cone(v: Value) -> list[Operation] | str:
    """The ops ``v`` is computed from, in topological order, if all are table ops."""
    order: list[Operation] = []
    seen: set[int] = set()
    stack: list[tuple[Operation, bool]] = []
    if v.owner is None:
        return "it is a graph input"
    stack.append((v.owner, False))
    while stack:
        op, done = stack.pop()
        if done:
            order.append(op)
            continue
        if id(op) in seen:
            continue
        seen.add(id(op))
        if op.regions or not (op.name in TABLE_OPS or op.has_trait(Trait.ELEMENTWISE)):
            return f"it is computed by {op.name}"
        stack.append((op, True))
        for a in op.operands:
            if a.owner is None:
                return "it depends on a graph input"
            if id(a.owner) not in seen:
                stack.append((a.owner, False))
    return order


def _evaluate(module: Module, ops: list[Operation], env: Mapping[str, int]) -> dict[int, np.ndarray]:
    vals: dict[int, np.ndarray] = {}
    for op in ops:
        if op.name == "core.weight":
            outs = [np.asarray(module.constants[op.attrs["name"]])]
        else:
            outs = op.opdef.reference([vals[id(a)] for a in op.operands], op.attrs, env)
        for r, arr in zip(op.results, outs):
            vals[id(r)] = np.asarray(arr)
    return vals


def _position_symbol(ops: list[Operation]) -> str | None:
    """The one symbol S such that every arange is arange(0, S) and no other symbol appears."""
    names: set[str] = set()
    for op in ops:
        for r in op.results:
            names |= r.type.symbols()
        if op.name == "core.arange":
            end = op.attrs["end"]
            if op.attrs["start"] != 0 or op.attrs["step"] != 1 or not isinstance(end, SymExpr) or not end.is_symbol():
                return None
            names |= end.symbols()
    return names.pop() if len(names) == 1 else None


class RopeTable(Pattern):
    # rope(x, f(arange(S)), ..) -> rope(x, gather(T, arange(S)), ..)   with T = f(arange(P)) a constant
    name = "rope-table"
    root = "nn.rope"

    def __init__(self, module: Module, max_positions: int) -> None:
        self.module = module
        self.max_positions = max_positions

    def match(self, op: Operation) -> Match | str:
        tables = {}
        why = "cos and sin are already tables"
        for i in (1, 2):
            got = self._table(op.operands[i])
            if isinstance(got, str):
                why = got
            else:
                tables[i] = got
        return Match(op, tables=tables) if tables else why

    def _table(self, v: Value) -> tuple[np.ndarray, int, str] | str:
        g = producer(v, "core.gather")
        if g is not None and producer(g.operands[0], "core.weight") is not None:
            return "already a table lookup"
        ops = _cone(v)
        if isinstance(ops, str):
            return f"the table is not a function of positions: {ops}"
        sym = _position_symbol(ops)
        if sym is None:
            return "the table does not depend on exactly one length arange(0, S)"
        axes = [i for i, d in enumerate(v.type.shape) if not is_static(d)]
        if len(axes) != 1 or v.type.shape[axes[0]] != SymExpr.symbol(sym):
            return "the table's type has other symbolic dims than one S axis"
        with np.errstate(all="ignore"):
            full = _evaluate(self.module, ops, {sym: self.max_positions})[id(v)]
            short = _evaluate(self.module, ops, {sym: CHECK_LENGTH})[id(v)]
        head = np.take(full, np.arange(CHECK_LENGTH), axis=axes[0])
        if head.tobytes() != short.tobytes():
            return "the rows are not a function of their position alone"
        return full, axes[0], sym

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        for i, (arr, axis, sym) in m.tables.items():
            name = self.module.constants.add(arr, "rope_table")
            ttype = self.module.constants.type_of(name)
            table = rewriter.create(m.op, "core.weight", [], {"name": name}, result_types=[ttype])
            pos = rewriter.create(m.op, "core.arange", [], {"end": SymExpr.symbol(sym)})
            rows = rewriter.create(m.op, "core.gather", [table.result, pos.result], {"axis": axis})
            rewriter.set_operand(m.op, i, rows.result)


__all__ = ["RopeFusion", "RopeTable"]
