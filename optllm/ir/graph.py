"""Graphs (functions and region bodies), modules and the constant table."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from optllm.ir.ops import Operation
from optllm.ir.types import DType, TensorType
from optllm.ir.values import Value


class Graph:
    """A function or a region body: typed arguments, ops in topological order, outputs.

    Region bodies are isolated from above: they read only their own arguments.
    """

    def __init__(self, name: str = "forward", input_types: list[TensorType] | None = None,
                 input_names: list[str] | None = None) -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.first: Operation | None = None
        self.last: Operation | None = None
        self.parent_op: Operation | None = None
        self._len = 0
        names = input_names or []
        for i, t in enumerate(input_types or []):
            self.add_input(t, names[i] if i < len(names) else "")

    # -- arguments and outputs -------------------------------------------------------------
    def add_input(self, type: TensorType, name: str = "") -> Value:
        v = Value(type, None, len(self.inputs), arg_of=self, name_hint=name)
        self.inputs.append(v)
        return v

    def set_outputs(self, values: list[Value]) -> None:
        self.outputs = list(values)

    def replace_output(self, old: Value, new: Value) -> None:
        self.outputs = [new if v is old else v for v in self.outputs]

    def is_output(self, v: Value) -> bool:
        return any(o is v for o in self.outputs)

    # -- the op list -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Operation]:
        op = self.first
        while op is not None:
            nxt = op.next  # allow erasing the current op while iterating
            yield op
            op = nxt

    def __len__(self) -> int:
        return self._len

    @property
    def ops(self) -> list[Operation]:
        return list(self)

    def walk(self) -> Iterator[Operation]:
        """Every op, nested region ops included, in order."""
        for op in self:
            yield from op.walk()

    def _link(self, op: Operation, prev: Operation | None, nxt: Operation | None) -> None:
        if op.parent is not None:
            raise ValueError(f"{op.name} is already in a graph")
        op.parent, op.prev, op.next = self, prev, nxt
        if prev is None:
            self.first = op
        else:
            prev.next = op
        if nxt is None:
            self.last = op
        else:
            nxt.prev = op
        self._len += 1

    def append(self, op: Operation) -> Operation:
        self._link(op, self.last, None)
        return op

    def insert_before(self, anchor: Operation, op: Operation) -> Operation:
        self._check_anchor(anchor)
        self._link(op, anchor.prev, anchor)
        return op

    def insert_after(self, anchor: Operation, op: Operation) -> Operation:
        self._check_anchor(anchor)
        self._link(op, anchor, anchor.next)
        return op

    def _check_anchor(self, anchor: Operation) -> None:
        if anchor.parent is not self:
            raise ValueError(f"anchor {anchor.name} is not in graph {self.name}")

    def unlink(self, op: Operation) -> None:
        """Take ``op`` out of the list without touching its operands (to move it)."""
        if op.parent is not self:
            raise ValueError(f"{op.name} is not in graph {self.name}")
        if op.prev is None:
            self.first = op.next
        else:
            op.prev.next = op.next
        if op.next is None:
            self.last = op.prev
        else:
            op.next.prev = op.prev
        op.parent = op.prev = op.next = None
        self._len -= 1

    def erase(self, op: Operation) -> None:
        """Remove ``op``; its results must be unused."""
        for r in op.results:
            if r.uses or self.is_output(r):
                raise ValueError(f"cannot erase {op.name}: result #{r.index} is still used")
        op.drop_operands()
        self.unlink(op)

    def order(self) -> dict[int, int]:
        """Position of each op (by id) — for dominance checks."""
        return {id(op): i for i, op in enumerate(self)}


class ConstantTable:
    """Named tensors (weights) of a module. Identical tensors are stored once.

    ``add`` returns the name under which the data is stored: a tensor equal (dtype, shape and
    bytes) to one already present gets the existing name, so tied embeddings are one entry.
    Loading from safetensors is lazy: arrays are read on first access.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._lazy: dict[str, Callable[[], np.ndarray]] = {}
        self._types: dict[str, TensorType] = {}
        self._by_hash: dict[str, str] = {}
        self._digests: dict[str, str] = {}  # name -> digest, computed once
        # Cheap fingerprint -> names: a full digest is computed only when fingerprints collide,
        # so adding N distinct weights hashes none of them in full.
        self._by_fingerprint: dict[bytes, list[str]] = {}
        self._fingerprints: dict[str, bytes] = {}  # name -> fingerprint, kept from ``add``
        self.source: str | None = None  # the file the lazy entries come from
        # When set, a new entry of at least this many bytes whose memory the table owns is
        # moved to a mapped file at once (``spill``): set by importers whose weights stay in the
        # user's memory, so that weights passes derive (merged projections, folded scales)
        # do not accumulate on the heap while a large model compiles.
        self.spill_bytes: int | None = None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        return list(self._types)

    def type_of(self, name: str) -> TensorType:
        return self._types[name]

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._arrays:
            return self._arrays[name]
        if name in self._lazy:
            arr = self._lazy.pop(name)()
            self._arrays[name] = arr
            return arr
        raise KeyError(f"no constant named '{name}'")

    @staticmethod
    def digest(arr: np.ndarray) -> str:
        """Hash of dtype, shape and bytes, read in place (``tobytes`` would copy a whole weight)."""
        h = hashlib.blake2b(digest_size=20)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        if arr.size:
            flat = np.ascontiguousarray(arr).reshape(-1)  # no copy for the table's (contiguous) entries
            h.update(flat.view(np.uint8).data)
        return h.hexdigest()

    @staticmethod
    def fingerprint(arr: np.ndarray) -> bytes:
        """dtype, shape and 4096 elements in 64 evenly spaced runs of 64: tensors whose
        fingerprints differ differ, so only colliding ones need a full digest. Runs rather
        than single elements, so that fingerprinting a memory-mapped tensor reads at most
        about 128 of its pages, not every page (a 4096-element stride touched them all)."""
        flat = arr.reshape(-1)
        head = f"{arr.dtype.str}{arr.shape}".encode()
        runs = width = 64
        if flat.size <= runs * width:
            return head + flat.tobytes()
        n = flat.size
        return head + b"".join(flat[(2 * j + 1) * n // (2 * runs):][:width].tobytes() for j in range(runs))

    def fingerprint_of(self, name: str) -> bytes:
        """The fingerprint of the entry ``name``, remembered from ``add`` (a spilled entry is
        then not read back from its file, page by page, just to be fingerprinted again)."""
        fp = self._fingerprints.get(name)
        if fp is None:
            fp = self._fingerprints[name] = self.fingerprint(self[name])
        return fp

    def digest_of(self, name: str) -> str:
        """The digest of the tensor ``name`` (dtype, shape and bytes), computed once per entry.
        A lazily loaded entry is read here and from then on found by ``add`` like the others."""
        key = self._digests.get(name)
        if key is None:
            arr = self[name]
            key = self._digests[name] = self.digest(arr)
            self._by_hash.setdefault(key, name)
            names = self._by_fingerprint.setdefault(self.fingerprint_of(name), [])
            if name not in names:
                names.append(name)
        return key

    def add(self, arr: np.ndarray, name: str) -> str:
        """Store ``arr`` under ``name`` (made unique), or return the name of its twin."""
        arr = np.asarray(arr)
        arr = arr if arr.flags.c_contiguous else arr.copy(order="C")
        fp = self.fingerprint(arr)
        key: str | None = None
        candidates = self._by_fingerprint.get(fp, [])
        if candidates:
            key = self.digest(arr)
            for other in candidates:
                if self.digest_of(other) == key:
                    return other
        base, n = name, 1
        while name in self._types:
            name = f"{base}_{n}"
            n += 1
        ttype = TensorType(tuple(int(d) for d in arr.shape), DType.from_numpy(arr.dtype))  # may raise: first
        self._arrays[name] = arr
        self._types[name] = ttype
        self._by_fingerprint.setdefault(fp, []).append(name)
        self._fingerprints[name] = fp
        if key is not None:
            self._by_hash[key] = name
            self._digests[name] = key
        if self.spill_bytes is not None and arr.nbytes >= self.spill_bytes:
            self.spill(name)
        return name

    def add_lazy(self, name: str, type: TensorType, loader: Callable[[], np.ndarray]) -> None:
        """Register a tensor read on first access (no dedup: files are already deduplicated)."""
        self._lazy[name] = loader
        self._types[name] = type

    def copy(self) -> ConstantTable:
        """A table with the same entries (arrays and loaders shared, bookkeeping copied)."""
        out = ConstantTable()
        for key, value in vars(self).items():
            if key == "_by_fingerprint":
                value = {fp: list(names) for fp, names in value.items()}
            setattr(out, key, dict(value) if isinstance(value, dict) else value)
        return out

    def remove(self, name: str) -> None:
        self._arrays.pop(name, None)
        self._lazy.pop(name, None)
        self._types.pop(name, None)
        self._digests.pop(name, None)
        self._fingerprints.pop(name, None)
        self._by_hash = {k: v for k, v in self._by_hash.items() if v != name}
        for names in self._by_fingerprint.values():
            if name in names:
                names.remove(name)

    def owns_memory(self, name: str) -> bool:
        """Whether the entry ``name`` is loaded and its bytes live on this process's heap, as
        opposed to the user's parameters (a view over a torch tensor), a memory-mapped file or
        a lazy loader not called yet."""
        arr = self._arrays.get(name)
        if arr is None:
            return False
        base: Any = arr
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        return isinstance(base, np.ndarray) and not isinstance(base, np.memmap)

    def spill(self, name: str) -> int:
        """Move the heap bytes of ``name`` to an unlinked temporary file mapped read-only, and
        return the bytes released. The entry stays readable (pages come back from the file on
        access): a backend that re-laid a weight out into its own format calls this so the
        original is not held twice, while saving, exporting and the reference still read it."""
        if not self.owns_memory(name):
            return 0
        import mmap
        import tempfile

        arr = np.ascontiguousarray(self._arrays[name])
        if arr.nbytes == 0:
            return 0
        # unlinked at once: the mapping keeps the file, and its disk space goes with the last
        # view; OPTLLM_SPILL_DIR picks the folder (the default temp dir may be a RAM tmpfs)
        with tempfile.TemporaryFile(prefix="optllm-spill-", dir=os.environ.get("OPTLLM_SPILL_DIR") or None) as f:
            f.write(arr.reshape(-1).view(np.uint8).data)
            f.flush()
            mapped = mmap.mmap(f.fileno(), arr.nbytes, prot=mmap.PROT_READ)  # outlives the closed file
        view = np.frombuffer(mapped, dtype=arr.dtype, count=arr.size).reshape(arr.shape)
        self._arrays[name] = view
        return int(arr.nbytes)

    def release(self, name: str) -> int:
        """Say that this process will not read the entry ``name`` again soon (a backend holds it
        in another layout): heap bytes move to a mapped file (``spill``), and the pages of a
        mapped entry (spilled, or loaded from a safetensors file) that this process has read
        are dropped from it, to be read back from the file if something reads the entry again.
        The user's memory (a view over a torch tensor) is left alone. Returns the bytes
        released (whole pages of a mapped entry, counted whether resident or not)."""
        if self.owns_memory(name):
            return self.spill(name)
        arr = self._arrays.get(name)
        mapped = _mapping_of(arr) if arr is not None else None
        if mapped is None or arr is None:
            return 0
        import mmap

        start = np.frombuffer(mapped, np.uint8).ctypes.data
        page = mmap.PAGESIZE
        lo = -(-(arr.ctypes.data - start) // page) * page  # whole pages only: the edges may hold neighbours
        hi = (arr.ctypes.data - start + arr.nbytes) // page * page
        if hi <= lo:
            return 0
        mapped.madvise(mmap.MADV_DONTNEED, lo, hi - lo)  # read-only file pages: nothing is lost
        return hi - lo

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in list(self._types):
            yield name, self[name]


def _mapping_of(arr: np.ndarray) -> Any:
    """The read-only ``mmap`` a C-contiguous ``arr`` is a view of (through ``np.frombuffer``),
    or None."""
    import mmap

    base: Any = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if not isinstance(base, mmap.mmap) or not arr.flags.c_contiguous:
        return None
    return base


class Module:
    """A named set of graphs (``forward`` first) with their constant table."""

    def __init__(self, name: str = "main") -> None:
        self.name = name
        self.graphs: dict[str, Graph] = {}
        self.constants = ConstantTable()
        self.weights_file: str | None = None  # as written in the text, relative to the .oir
        self.attrs: dict[str, Any] = {}

    def add_graph(self, graph: Graph) -> Graph:
        if graph.name in self.graphs:
            raise ValueError(f"module already has a graph named '{graph.name}'")
        self.graphs[graph.name] = graph
        return graph

    @property
    def main(self) -> Graph:
        if "forward" in self.graphs:
            return self.graphs["forward"]
        if not self.graphs:
            raise ValueError(f"module '{self.name}' has no graphs")
        return next(iter(self.graphs.values()))

    def walk(self) -> Iterator[Operation]:
        for g in self.graphs.values():
            yield from g.walk()

    def used_constants(self) -> set[str]:
        return {op.attrs["name"] for op in self.walk() if op.name == "core.weight"}

    def drop_unused_constants(self) -> int:
        used = self.used_constants()
        dead = [n for n in self.constants.names() if n not in used]
        for n in dead:
            self.constants.remove(n)
        return len(dead)

    def clone(self) -> Module:
        """An independent copy: graphs rebuilt from the text form, constant table copied
        (the arrays themselves are shared; passes replace table entries, never mutate them)."""
        from optllm.ir.parser import parse_module
        from optllm.ir.printer import print_module

        out = parse_module(print_module(self), f"<clone of @{self.name}>")
        out.constants = self.constants.copy()
        out.attrs = dict(self.attrs)
        return out

    def __str__(self) -> str:
        from optllm.ir.printer import print_module

        return print_module(self)


def graph_stats(graph: Graph) -> Mapping[str, int]:
    """Top-level node and kernel-launch counts (views and constants launch nothing)."""
    nodes = launches = 0
    for op in graph:
        nodes += 1
        if not op.opdef.is_free:
            launches += 1
    return {"nodes": nodes, "kernel_launches": launches}
