"""``dedup``: structural hashing of whole subgraphs, and identical constants stored once.

Hash-consing in topological order: an op's key is its name, the keys of its operands (the
survivors of earlier merges), its attributes and result types, and for ops with a region the
structure of the body. Once the leaves of two repeated subgraphs are merged their users have
equal keys too, so whole per-layer copies (attention masks, position ids, rotary tables) merge
in one sweep. Weights are keyed by their content, not their name: identical tensors under
different names (tied embeddings) become one table entry.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation, Trait
from optllm.ir.values import Value
from optllm.passes.base import Pass, PassContext, PassResult
from optllm.passes.cse import attr_key

Numbering = Callable[[Value], Hashable]


# -- weights: one table entry per distinct content -------------------------------------------
def weight_twins(module: Module) -> dict[str, str]:
    """Map each used weight name whose content equals an earlier one's to that earlier name.

    Only names whose type and sampled elements collide with another used name's get a full
    digest, each once: ``ConstantTable.digest_of`` caches them.
    """
    table = module.constants
    used = list(dict.fromkeys(op.attrs["name"] for op in module.walk() if op.name == "core.weight"))
    by_type: dict[Hashable, list[str]] = {}
    for name in used:
        by_type.setdefault(table.type_of(name), []).append(name)
    twins: dict[str, str] = {}
    for same_type in by_type.values():
        for names in _groups(same_type, table.fingerprint_of):
            first: dict[str, str] = {}
            for name in names:
                keep = first.setdefault(table.digest_of(name), name)
                if keep != name:
                    twins[name] = keep
    return twins


def _groups(names: list[str], key: Callable[[str], Hashable]) -> list[list[str]]:
    """``names`` grouped by ``key`` (in first-seen order), groups of one left out; a lone name
    is never keyed."""
    if len(names) < 2:
        return []
    groups: dict[Hashable, list[str]] = {}
    for name in names:
        groups.setdefault(key(name), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def merge_weight_twins(module: Module) -> tuple[int, int]:
    """Point every ``core.weight`` at its twin's name and drop the twins from the table.
    Returns (entries dropped, bytes saved)."""
    twins = weight_twins(module)
    if not twins:
        return 0, 0
    for op in module.walk():
        if op.name == "core.weight" and op.attrs["name"] in twins:
            op.attrs["name"] = twins[op.attrs["name"]]
    saved = 0
    for name in twins:
        saved += int(module.constants.type_of(name).nbytes())
        module.constants.remove(name)
    return len(twins), saved


# -- structural keys ------------------------------------------------------------------------------
def op_key(op: Operation, number: Numbering) -> Hashable | None:
    """What makes two ops interchangeable, with operands named by ``number``; ``None`` for
    ops that must not merge (impure, no results, or a body holding such an op)."""
    if not op.has_trait(Trait.PURE) or not op.results:
        return None
    operands = [number(v) for v in op.operands]
    if op.has_trait(Trait.COMMUTATIVE):  # add(x, y) == add(y, x) exactly
        operands[:2] = sorted(operands[:2], key=repr)
    bodies = tuple(body_key(g) for g in op.regions)
    if any(b is None for b in bodies):
        return None
    attrs = tuple(sorted((k, attr_key(v)) for k, v in op.attrs.items()))
    return (op.name, tuple(operands), attrs, tuple(r.type for r in op.results), bodies)


def body_key(graph: Graph) -> Hashable | None:
    """The structure of a region body: values named by position (argument index, or op index
    and result index), so equal bodies of different ops get equal keys."""
    names: dict[int, Hashable] = {id(v): ("arg", i) for i, v in enumerate(graph.inputs)}
    keys = []
    for k, op in enumerate(graph):
        key = op_key(op, lambda v: names[id(v)])
        if key is None:
            return None
        keys.append(key)
        names.update((id(r), ("op", k, j)) for j, r in enumerate(op.results))
    signature = tuple(v.type for v in graph.inputs)
    return (signature, tuple(keys), tuple(names[id(v)] for v in graph.outputs))


def hash_cons(graph: Graph) -> int:
    """Replace each mergeable op by the first op with the same key, in topological order;
    region bodies first, each its own scope (regions are isolated from above). Returns the
    number of ops erased, nested ones included."""
    seen: dict[Hashable, Operation] = {}
    merged = 0
    for op in graph:
        for region in op.regions:
            merged += hash_cons(region)
        key = op_key(op, id)
        if key is None:
            continue
        first = seen.setdefault(key, op)
        if first is op:
            continue
        for old, new in zip(op.results, first.results):
            old.replace_all_uses_with(new)
        graph.erase(op)
        merged += 1 + sum(1 for region in op.regions for _ in region.walk())
    return merged


@dataclass(frozen=True)
class Dedup(Pass):
    """Merge structurally identical subgraphs and identical constants (hash-consing).

    Pure ops with equal names, attributes, result types, region bodies and (already merged)
    operands become one; commutative operands match in either order; equal inline constants
    merge; weights with identical content (dtype, shape, bytes) merge whatever their names,
    and the constant table keeps one copy. Region bodies are deduplicated as their own scope.

    Before::

        %0 = core.weight {name = "wte"} : f32[8,4]
        %1 = core.weight {name = "lm_head"} : f32[8,4]      // same bytes as "wte"
        %2 = core.arange {end = S} : i64[S]
        %3 = core.reshape %2 {shape = [1, S]} : i64[1,S]
        %4 = core.arange {end = S} : i64[S]
        %5 = core.reshape %4 {shape = [1, S]} : i64[1,S]
        %6 = core.add %3, %5 : i64[1,S]

    After::

        %0 = core.weight {name = "wte"} : f32[8,4]          // "lm_head" left the table
        %1 = core.arange {end = S} : i64[S]
        %2 = core.reshape %1 {shape = [1, S]} : i64[1,S]
        %3 = core.add %2, %2 : i64[1,S]
    """

    name: ClassVar[str] = "dedup"
    statistics: ClassVar[Mapping[str, str]] = {
        "num-merged-ops": "ops replaced by a structurally identical earlier op",
        "num-merged-constants": "constant-table entries merged into an identical twin",
        "bytes-saved": "bytes of the constant-table entries merged away",
    }

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        constants, saved = merge_weight_twins(module)
        merged = sum(hash_cons(g) for g in module.graphs.values())
        ctx.stat("num-merged-ops", merged)
        ctx.stat("num-merged-constants", constants)
        ctx.stat("bytes-saved", saved)
        return PassResult(changed=merged + constants > 0)
