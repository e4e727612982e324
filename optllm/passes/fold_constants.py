"""``fold-constants``: evaluate ops whose operands are all constant, with the ops' own numpy
references, and replace them by their values.

Constants are ``core.constant`` (inline), ``core.weight`` (the table) and whatever this pass
folded earlier in the same sweep, so symbol-free subexpressions fold whole in one topological
sweep: ``arange`` with a static end, shape arithmetic on integer constants, cos/sin tables from
a constant ``inv_freq``, transposed weights. Where a folded value goes:

- at most ``max-elements`` elements: an inline ``core.constant`` (scalars, small masks, index
  tables; the text stays readable);
- larger, and every element the same: a ``core.full`` (a generator, no storage) in place of
  an op that needed a kernel anyway;
- larger: a new ``core.weight`` in the constant table, if it has at most ``max-bytes`` bytes
  (``0``: never add to the table) — identical tensors share one entry;
- otherwise the op stays. So does a large view (reshape, permute, slice, expand: no launch)
  whose copy would cost bytes (a broadcast, or a transpose of a weight something else reads,
  such as a tied embedding) or a launch (a splat).

Only ops with the ``pure`` trait and static result types fold; an op whose reference raises
(e.g. an out-of-range gather) stays, so the error still happens at run time.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from optllm.ir.attributes import Dense
from optllm.ir.builder import Builder
from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation, Trait
from optllm.ir.types import DType, TensorType
from optllm.ir.values import Value
from optllm.passes.base import Pass, PassContext, PassResult, option
from optllm.passes.rewrite import is_trivially_dead

log = logging.getLogger(__name__)

Place = Literal["inline", "full", "table"]


def is_constant(v: Value) -> bool:
    """``v`` is an inline constant or a weight of the table."""
    return v.owner is not None and v.owner.name in ("core.constant", "core.weight")


# -- evaluation -----------------------------------------------------------------------------------
def evaluate(op: Operation, args: Sequence[np.ndarray], module: Module) -> list[np.ndarray]:
    """``op``'s results at no symbols, through its reference (region bodies op by op)."""
    if op.name == "core.weight":
        return [module.constants[op.attrs["name"]]]
    if op.regions:
        return evaluate_graph(op.regions[0], args, module)
    return op.opdef.reference(args, op.attrs, {})


def evaluate_graph(graph: Graph, args: Sequence[np.ndarray], module: Module) -> list[np.ndarray]:
    values: dict[Value, np.ndarray] = dict(zip(graph.inputs, args))
    for op in graph:
        values.update(zip(op.results, evaluate(op, [values[v] for v in op.operands], module)))
    return [values[v] for v in graph.outputs]


def fits(arr: np.ndarray, t: TensorType) -> bool:
    """The array has exactly the static type ``t`` (the executor checks the same)."""
    return tuple(arr.shape) == t.shape and arr.dtype == t.dtype.to_numpy()


def full_value(arr: np.ndarray, dtype: DType) -> float | None:
    """The ``value`` attribute of a ``core.full`` that rebuilds ``arr`` bit for bit, if any."""
    if arr.size == 0 or not _same_bits(arr.flat[:: max(1, arr.size // 1024)]):
        return None  # a cheap sample first: large values are rarely splats
    flat = arr.reshape(-1)
    if not _same_bits(flat):
        return None
    value = float(flat[0]) if dtype is not DType.bool else float(bool(flat[0]))
    rebuilt = np.asarray(value).astype(dtype.to_numpy())
    return value if rebuilt.tobytes() == flat[:1].tobytes() else None


def _same_bits(flat: np.ndarray) -> bool:
    raw = np.ascontiguousarray(flat).view(np.uint8).reshape(flat.size, -1)
    return bool(np.all(raw == raw[0]))


# -- the sweep ----------------------------------------------------------------------------------------
@dataclass
class Folder:
    """One sweep over a module: known constant values and where folded values go."""

    module: Module
    max_elements: int
    max_bytes: int
    folded: int = 0
    new_constants: int = 0

    def __post_init__(self) -> None:
        self.known: dict[Value, np.ndarray] = {}
        self.released: set[str] = set()  # weights whose op this sweep erased
        self.weight_reads = Counter(op.attrs["name"] for op in self.module.walk() if op.name == "core.weight")

    def value_of(self, v: Value) -> np.ndarray:
        if v not in self.known:
            op = v.owner
            assert op is not None and is_constant(v)
            const = self.module.constants[op.attrs["name"]] if op.name == "core.weight" else op.attrs["value"].to_array()
            self.known[v] = const
        return self.known[v]

    def foldable(self, op: Operation) -> bool:
        return (op.has_trait(Trait.PURE) and not op.has_trait(Trait.CONSTANT) and bool(op.results)
                and all(r.type.is_static for r in op.results))

    def place(self, op: Operation, arr: np.ndarray, t: TensorType) -> Place | None:
        """Where the folded value ``arr`` of type ``t`` goes (``None``: it cannot)."""
        if arr.size <= self.max_elements:
            return "inline"
        if op.opdef.is_free and not self.copy_is_free(op, arr):
            return None  # a view stays a view where a copy would cost storage or a launch
        if full_value(arr, t.dtype) is not None:
            return None if op.opdef.is_free or op.name == "core.full" else "full"
        if 0 < arr.nbytes <= self.max_bytes:
            return "table"
        return None

    def copy_is_free(self, op: Operation, arr: np.ndarray) -> bool:
        """A copy of the view ``op`` costs nothing: it is no larger than its operands (no
        broadcast), and no other op reads a weight it views (a tied embedding and its
        transpose would be stored twice)."""
        if arr.nbytes > sum(v.type.nbytes() for v in op.operands):
            return False
        for v in op.operands:
            if v.owner is not None and v.owner.name == "core.weight":
                if len(v.users) > 1 or self.weight_reads[v.owner.attrs["name"]] > 1:
                    return False
        return True

    def materialize(self, op: Operation, index: int, arr: np.ndarray, place: Place) -> Value:
        """Build the op holding ``arr`` just before ``op``, with ``op``'s loc."""
        b = Builder.before_op(op)
        t = op.results[index].type
        if place == "inline":
            return b.op("core.constant", value=Dense.from_array(arr, t.dtype))
        if place == "full":
            return b.op("core.full", shape=list(t.shape), value=full_value(arr, t.dtype), dtype=t.dtype)
        base = f"{op.loc or 'const'}.{op.name.split('.')[-1]}" + (f".{index}" if len(op.results) > 1 else "")
        before = len(self.module.constants)
        # a fresh result is stored as it is; a view (of a weight, say) gets its own bytes
        own = arr if arr.flags.c_contiguous and arr.flags.owndata else np.array(arr, order="C", copy=True)
        name = self.module.constants.add(own, base)
        self.new_constants += len(self.module.constants) - before
        return b.create("core.weight", [], {"name": name}, result_types=[t]).result

    def try_fold(self, op: Operation) -> None:
        if not all(v in self.known or is_constant(v) for v in op.operands):
            return  # decided before loading any weight
        args = [self.value_of(v) for v in op.operands]
        try:
            with np.errstate(all="ignore"):  # inf and nan fold like they would run
                outs = evaluate(op, args, self.module)
        except Exception as e:  # the error is kept for run time
            log.debug("not folding %s at %s: %s", op.name, op.loc, e)
            return
        if len(outs) != len(op.results) or not all(fits(a, r.type) for a, r in zip(outs, op.results)):
            return
        self.known.update(zip(op.results, outs))  # users may fold even if this op stays
        places = [self.place(op, a, r.type) for a, r in zip(outs, op.results)]
        if any(p is None for p in places):
            return
        for i, (r, arr, place) in enumerate(zip(op.results, outs, places)):
            new = self.materialize(op, i, arr, place)  # type: ignore[arg-type]
            self.known[new] = arr
            r.replace_all_uses_with(new)
        self.erase(op)
        self.folded += 1

    def erase(self, op: Operation) -> None:
        """Erase the folded ``op``, then the evaluated producers only erased ops read."""
        work = [op]
        while work:
            dead = work.pop()
            if dead.parent is None:
                continue
            producers = dict.fromkeys(v.owner for v in dead.operands if v.owner is not None)
            if dead.name == "core.weight":
                self.released.add(dead.attrs["name"])
            dead.parent.erase(dead)
            work.extend(p for p in producers if self.evaluated(p) and is_trivially_dead(p))

    def evaluated(self, op: Operation) -> bool:
        return op.has_trait(Trait.CONSTANT) or all(r in self.known for r in op.results)

    def fold_graph(self, graph: Graph) -> None:
        for op in graph:
            for region in op.regions:
                self.fold_graph(region)
            if op.parent is graph and self.foldable(op):
                self.try_fold(op)

    def drop_released(self) -> int:
        """Remove from the table the weights no op reads any more because of this sweep."""
        dead = self.released - self.module.used_constants()
        for name in dead:
            self.module.constants.remove(name)
        return len(dead)


MAX_SWEEPS = 8


@dataclass(frozen=True)
class FoldConstants(Pass):
    """Evaluate pure ops whose operands are all constant and replace them by their values.

    Small results become inline ``core.constant``; larger ones a ``core.full`` (splats) or a new
    constant-table entry (``max-bytes``); constants only the folded ops read are erased.

    Before::

        %0 = core.arange {end = 4} : i64[4]
        %1 = core.constant {value = dense<i64[]: 2>} : i64[]
        %2 = core.mul %0, %1 : i64[4]
        %3 = core.add %x, %2 : i64[4]

    After::

        %0 = core.constant {value = dense<i64[4]: [0, 2, 4, 6]>} : i64[4]
        %1 = core.add %x, %0 : i64[4]
    """

    name: ClassVar[str] = "fold-constants"
    statistics: ClassVar[Mapping[str, str]] = {
        "num-folded": "ops evaluated and replaced by their value",
        "num-new-constants": "constant-table entries added for large folded values",
        "num-constants-dropped": "constant-table entries only folded ops read",
    }

    max_elements: int = option(1024, "largest folded value (elements) kept inline as core.constant")
    max_bytes: int = option(64 << 20, "largest folded value (bytes) added to the constant table; 0: never")

    def __post_init__(self) -> None:
        if self.max_elements < 0 or self.max_bytes < 0:
            raise ValueError(f"max-elements and max-bytes must be >= 0, got {self.max_elements}, {self.max_bytes}")

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        # Sweep until a sweep folds nothing: whether a view may be copied depends on how many
        # ops read its weight, which folding later ops of the same sweep can lower, so one
        # sweep alone would not leave a module a second run cannot change.
        folded = 0
        for _ in range(MAX_SWEEPS):
            folder = Folder(module, self.max_elements, self.max_bytes)
            for g in module.graphs.values():
                folder.fold_graph(g)
            ctx.stat("num-new-constants", folder.new_constants)
            ctx.stat("num-constants-dropped", folder.drop_released())
            folded += folder.folded
            if not folder.folded:
                break
        ctx.stat("num-folded", folded)
        return PassResult(changed=folded > 0)
