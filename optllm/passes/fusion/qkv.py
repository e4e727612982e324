"""Projection merging: ``nn.linear`` ops that read the same input with constant weights
(attention's Q, K and V; Llama's gate and up) become one GEMM over the concatenated weights,
followed by a ``core.split`` (a view) that hands each reader its columns.

    q = linear(x, Wq, bq); k = linear(x, Wk, bk); v = linear(x, Wv, bv)
      ->  qkv = linear(x, [Wq|Wk|Wv], [bq|bk|bv]);  q, k, v = split(qkv, -1)

Each output column is the same dot product as before, so the merge is exact.
"""

from __future__ import annotations

import numpy as np

from optllm.ir.graph import Module
from optllm.ir.ops import Operation
from optllm.ir.values import Value
from optllm.passes.rewrite import Match, Pattern, Rewriter
from optllm.passes.value_matchers import constant_array, is_constant


def _constant(v: Value) -> bool:
    return is_constant(v) and v.type.is_static


def _key(op: Operation) -> tuple[object, ...] | None:
    """What siblings must share to be merged; None when ``op`` cannot take part."""
    if op.name != "nn.linear" or op.attrs["residual"] or not _constant(op.operands[1]):
        return None
    if op.attrs["bias"] and not _constant(op.operands[2]):
        return None
    if any(u.index != 0 for u in op.operands[0].uses if u.op is op):
        return None
    w = op.operands[1].type
    k = w.shape[1 if op.attrs["transpose_w"] else 0]
    return (op.attrs["transpose_w"], op.attrs["bias"], op.attrs["activation"], k, w.dtype)


def _first(ops: list[Operation]) -> Operation:
    """The earliest of ``ops`` (all in one graph) in program order."""
    ids = {id(o) for o in ops}
    cur = ops[0].parent.first if ops[0].parent is not None else None
    while cur is not None and id(cur) not in ids:
        cur = cur.next
    assert cur is not None
    return cur


class MergeProjections(Pattern):
    # linear(x, W1, b1), linear(x, W2, b2), .. -> split(linear(x, [W1|W2|..], [b1|b2|..]))
    name = "merge-projections"
    root = "nn.linear"

    def __init__(self, module: Module) -> None:
        self.module = module
        self.replaced: set[str] = set()  # constants merged away (dropped by the pass if unused)

    def match(self, op: Operation) -> Match | str:
        key = _key(op)
        if key is None:
            return "not a residual-free linear with constant weights (and bias) reading x as input"
        # readers of x as the input, not as the weight (linear(x, W) and linear(W, V) share no input)
        siblings = [u for u in op.operands[0].users if u.operands[0] is op.operands[0] and _key(u) == key]
        if len(siblings) < 2:
            return "no other linear with the same flags and K reads this input"
        if not all(isinstance(s.result.type.shape[-1], int) for s in siblings):
            return "an output width is symbolic"
        return Match(op, group=siblings, first=_first(siblings))

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        group: list[Operation] = m.group
        lead = group[0]
        transpose = lead.attrs["transpose_w"]
        weights = [self._array(op.operands[1]) for op in group]
        w = np.concatenate(weights, axis=0 if transpose else 1)
        operands = [lead.operands[0], self._weight(m.first, w, "merged_proj.weight", rewriter)]
        if lead.attrs["bias"]:
            b = np.concatenate([self._array(op.operands[2]) for op in group])
            operands.append(self._weight(m.first, b, "merged_proj.bias", rewriter))
        merged = rewriter.create(m.first, "nn.linear", operands, dict(lead.attrs))
        sizes = [op.result.type.shape[-1] for op in group]
        split = rewriter.create(m.first, "core.split", [merged.result], {"axis": -1, "sizes": sizes})
        for op, part in zip(group, split.results):
            rewriter.replace_op(op, part)

    def _array(self, v: Value) -> np.ndarray:
        if v.owner is not None and v.owner.name == "core.weight":
            self.replaced.add(v.owner.attrs["name"])
        arr = constant_array(self.module, v)
        assert arr is not None
        return np.asarray(arr)

    def _weight(self, before: Operation, arr: np.ndarray, name: str, rewriter: Rewriter) -> Value:
        stored = self.module.constants.add(arr, name)
        op = rewriter.create(before, "core.weight", [], {"name": stored},
                             result_types=[self.module.constants.type_of(stored)])
        return op.result
