"""Elementwise fusion: a chain (a tree, or a DAG whose inner values are read only inside it)
of elementwise ops becomes one ``fused.region {kind = "elementwise"}``: one kernel launch.

The body holds the chain's ops in order; its arguments are the chain's external operands.
Small constants the chain reads (``core.constant``, static ``core.full``) are copied into the
body, so the kernel sees them as immediates. The body computes exactly what the ops did.

A region read only by a LayerNorm/RMSNorm is merged with it into ``fused.region {kind =
"norm"}``: a row-reduction kernel with an elementwise prologue (BERT's embedding sum).
"""

from __future__ import annotations

from optllm.ir.builder import Builder
from optllm.ir.graph import Graph
from optllm.ir.ops import Operation, Trait
from optllm.ir.symbolic import is_static
from optllm.ir.values import Value
from optllm.passes.matchers import is_output
from optllm.passes.rewrite import Match, Pattern, Rewriter

MAX_INLINE = 16  # elements of a constant copied into the body instead of passed in


def fusible(op: Operation | None) -> bool:
    """An elementwise op without regions, with one result."""
    return op is not None and op.has_trait(Trait.ELEMENTWISE) and not op.regions and len(op.results) == 1


def _inline_constant(v: Value) -> bool:
    op = v.owner
    if op is None:
        return False
    if op.name == "core.constant":
        return v.type.rank == 0 or op.attrs["value"].is_splat() or op.attrs["value"].to_array().size <= MAX_INLINE
    return op.name == "core.full" and all(is_static(d) for d in op.attrs["shape"])


def _is_root(op: Operation) -> bool:
    """No elementwise op could take ``op`` in: it is returned, read twice, or read by a non-fusible op."""
    r = op.result
    users = r.users
    return is_output(r) or len(users) != 1 or not fusible(users[0])


def collect_chain(root: Operation) -> list[Operation]:
    """The fusible ops whose results are read only inside the chain ending at ``root``, in
    program order (ops join once all their readers have)."""
    group: dict[int, Operation] = {id(root): root}
    changed = True
    while changed:
        changed = False
        for op in list(group.values()):
            for a in op.operands:
                p = a.owner
                if p is None or id(p) in group or not fusible(p) or is_output(a):
                    continue
                if all(id(u.op) in group for u in a.uses):
                    group[id(p)] = p
                    changed = True
    return _in_order(root, group)


def _in_order(root: Operation, group: dict[int, Operation]) -> list[Operation]:
    """The group's ops in program order (walking back from ``root``)."""
    out: list[Operation] = []
    cur: Operation | None = root
    left = len(group)
    while cur is not None and left:
        if id(cur) in group:
            out.append(cur)
            left -= 1
        cur = cur.prev
    return out[::-1]


class ElementwiseRegion(Pattern):
    # f(g(x, y), z) -> fused.region{elementwise}(x, y, z) { f(g(a, b), c) }
    name = "elementwise-region"
    root = None

    def match(self, op: Operation) -> Match | str:
        if not fusible(op):
            return "not an elementwise op"
        if op.parent is not None and op.parent.parent_op is not None:
            return "already inside a region"
        if not _is_root(op):
            return "its only reader is elementwise (the chain is fused from there)"
        chain = collect_chain(op)
        if len(chain) < 2:
            return "a single-op chain (nothing to fuse)"
        return Match(op, chain=chain)

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        chain: list[Operation] = m.chain
        inside = {id(op) for op in chain}
        external: list[Value] = []
        for op in chain:
            for a in op.operands:
                if (a.owner is None or id(a.owner) not in inside) and not _inline_constant(a) and \
                        all(a is not e for e in external):
                    external.append(a)
        body = Graph("region", [v.type for v in external])
        mapping = {id(v): arg for v, arg in zip(external, body.inputs)}
        b = Builder.at_end(body)
        for op in chain:
            for a in op.operands:
                if id(a) not in mapping:  # an inlined constant
                    assert a.owner is not None
                    mapping[id(a)] = b.create(a.owner.name, [], dict(a.owner.attrs), loc=a.owner.loc).result
            new = b.create(op.name, [mapping[id(a)] for a in op.operands], dict(op.attrs), loc=op.loc)
            mapping[id(op.result)] = new.result
        body.set_outputs([mapping[id(m.op.result)]])
        region = rewriter.create(m.op, "fused.region", external, {"kind": "elementwise"}, regions=[body],
                                 result_types=[m.op.result.type])
        rewriter.replace_op(m.op, region.result)
        for op in reversed(chain[:-1]):
            rewriter.erase_op(op)


def _embedding_read_once(v: Value) -> Operation | None:
    """The ``nn.embedding`` producing ``v`` when nothing else reads it (a norm region takes the
    row gather into its prologue, like onnxruntime's EmbedLayerNormalization)."""
    op = v.owner
    if op is None or op.name != "nn.embedding" or len(v.uses) != 1 or is_output(v):
        return None
    return op


class NormPrologue(Pattern):
    # layer_norm(region{elementwise}(a, ..){f}, w, b) -> region{norm}(a, .., w, b){ layer_norm(f(a, ..), w, b) }
    # (an operand a = embedding(T, ids) read only by the region enters as T, ids: the gather joins the prologue)
    name = "norm-prologue"
    root = "nn.layer_norm"

    def match(self, op: Operation) -> Match | str:
        if op.parent is not None and op.parent.parent_op is not None:
            return "already inside a region"
        x = op.operands[0]
        reg = x.owner
        if reg is None or reg.name != "fused.region" or reg.attrs["kind"] != "elementwise":
            return "the normalised input is not an elementwise fused.region"
        if len(reg.results) != 1:  # the rewrite inlines the region's only result
            return "the region has several results"
        if len(x.uses) != 1 or is_output(x):
            return "the region's result has other readers"
        return Match(op, region=reg)

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        reg: Operation = m.region
        gathers = [_embedding_read_once(v) for v in reg.operands]  # embedding(T, ids) -> the row gather
        external: list[Value] = []
        for a, emb in zip([*reg.operands, *m.op.operands[1:]], gathers + [None] * (len(m.op.operands) - 1)):
            for v in [a] if emb is None else list(emb.operands):
                if all(v is not e for e in external):
                    external.append(v)
        body = Graph("region", [v.type for v in external])
        inner = reg.regions[0]
        mapping = {id(v): arg for v, arg in zip(external, body.inputs)}
        b = Builder.at_end(body)
        for old, outer, emb in zip(inner.inputs, reg.operands, gathers):
            if emb is None:
                mapping[id(old)] = mapping[id(outer)]
                continue
            mapping[id(old)] = b.create(emb.name, [mapping[id(a)] for a in emb.operands], dict(emb.attrs),
                                        loc=emb.loc).result
        for op in inner:
            new = b.create(op.name, [mapping[id(a)] for a in op.operands], dict(op.attrs), loc=op.loc)
            mapping[id(op.result)] = new.result
        operands = [mapping[id(inner.outputs[0])]] + [mapping[id(a)] for a in m.op.operands[1:]]
        norm = b.create(m.op.name, operands, dict(m.op.attrs), loc=m.op.loc)
        body.set_outputs([norm.result])
        fused = rewriter.create(m.op, "fused.region", external, {"kind": "norm"}, regions=[body],
                                result_types=[m.op.result.type])
        rewriter.replace_op(m.op, fused.result)
        rewriter.erase_op(reg)
        for emb in gathers:
            if emb is not None:
                rewriter.erase_op(emb)


class RmsNormPrologue(NormPrologue):
    # rms_norm(region{elementwise}(a, ..){f}, w) -> region{norm}(a, .., w){ rms_norm(f(a, ..), w) }
    root = "nn.rms_norm"
