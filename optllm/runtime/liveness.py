"""Liveness for the arena planner: buffer requests, in-place chains and the lower bound.

A buffer is live over the closed interval ``[first, last]`` of step indices. Two buffers whose
intervals intersect may not overlap in memory, with one exception: an *in-place pair*, where a
buffer reuses the storage of an input that dies at the very step that writes it (an elementwise
op writing over its input). Accepted pairs link into chains, and one chain is one *storage*: a
block at one offset whose size may step down along the chain (each member is no larger than
the one it reuses). This module decides the chains and measures the lower bound; the offsets
are chosen in :mod:`optllm.runtime.planner`. Nothing here knows about the IR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class BufferRequest:
    """One buffer the planner places.

    Attributes:
        id: the caller's id, unique among the requests.
        nbytes: concrete size in bytes (>= 0); zero-byte buffers take no space.
        first: index of the step that writes it first.
        last: index of the last step that reads it (>= first). A graph output, or a buffer
            that must survive the call, uses ``last = num_steps``.
        inplace_of: the id of an input whose storage this buffer MAY reuse. Legal only if that
            buffer's ``last`` equals this one's ``first`` and ``nbytes`` is no larger than its
            size; the planner decides and reports the pairs it accepted.
    """

    id: int
    nbytes: int
    first: int
    last: int
    inplace_of: int | None = None


@dataclass(frozen=True)
class Segment:
    """One member of a storage: live over ``[first, last]``, ``size`` bytes (rounded)."""

    first: int
    last: int
    size: int


@dataclass(frozen=True)
class Storage:
    """A chain of buffers sharing one offset: ``ids`` in chain order, one segment each."""

    ids: tuple[int, ...]
    segments: tuple[Segment, ...]

    @cached_property
    def first(self) -> int:
        return self.segments[0].first

    @cached_property
    def last(self) -> int:
        return max(s.last for s in self.segments)

    @cached_property
    def size(self) -> int:
        return max(s.size for s in self.segments)

    @cached_property
    def area(self) -> int:
        return sum(s.size * (s.last - s.first + 1) for s in self.segments)


def round_up(nbytes: int, alignment: int) -> int:
    """``nbytes`` rounded up to a multiple of ``alignment``."""
    return -(-nbytes // alignment) * alignment


def validate_requests(requests: Sequence[BufferRequest], num_steps: int | None = None) -> dict[int, BufferRequest]:
    """Check the requests and index them by id.

    Raises:
        ValueError: naming the buffer, for a duplicate id, a negative size, a negative
            ``first``, ``first > last``, ``last > num_steps`` or an ``inplace_of`` that names
            no request (or the buffer itself).
    """
    by_id: dict[int, BufferRequest] = {}
    for r in requests:
        if r.id in by_id:
            raise ValueError(f"buffer {r.id}: duplicate id")
        if r.nbytes < 0:
            raise ValueError(f"buffer {r.id}: negative size {r.nbytes}")
        if r.first < 0 or r.first > r.last:
            raise ValueError(f"buffer {r.id}: bad live interval [{r.first}, {r.last}]")
        if num_steps is not None and r.last > num_steps:
            raise ValueError(f"buffer {r.id}: last = {r.last} is past num_steps = {num_steps}")
        by_id[r.id] = r
    for r in requests:
        if r.inplace_of is not None and (r.inplace_of not in by_id or r.inplace_of == r.id):
            raise ValueError(f"buffer {r.id}: inplace_of names an unknown buffer {r.inplace_of}")
    return by_id


def inplace_legal(b: BufferRequest, a: BufferRequest) -> bool:
    """Whether ``b`` may reuse ``a``'s storage by itself (ignoring other claims on ``a``)."""
    return b.inplace_of == a.id and b.nbytes > 0 and a.last == b.first and b.nbytes <= a.nbytes


def resolve_inplace(by_id: dict[int, BufferRequest]) -> dict[int, int]:
    """Accept the legal in-place requests: ``{id: id whose storage it reuses}``.

    Candidates are taken in ``(first, id)`` order. A buffer's storage passes to at most one
    successor (the first legal claim wins), and a claim that would close a cycle (possible only
    among one-step buffers) is refused. Zero-byte buffers never share.
    """
    shared: dict[int, int] = {}
    taken: set[int] = set()
    for b in sorted(by_id.values(), key=lambda r: (r.first, r.id)):
        if b.inplace_of is None or b.inplace_of in taken:
            continue
        if not inplace_legal(b, by_id[b.inplace_of]) or _chain_head(shared, b.inplace_of) == b.id:
            continue
        shared[b.id] = b.inplace_of
        taken.add(b.inplace_of)
    return shared


def _chain_head(shared: dict[int, int], i: int) -> int:
    while i in shared:
        i = shared[i]
    return i


def build_storages(by_id: dict[int, BufferRequest], shared: dict[int, int], alignment: int) -> list[Storage]:
    """Group the non-empty buffers into storages (chains), ordered by ``(first, head id)``."""
    successor = {a: b for b, a in shared.items()}
    storages = []
    for r in sorted(by_id.values(), key=lambda r: (r.first, r.id)):
        if r.nbytes == 0 or r.id in shared:
            continue
        ids = [r.id]
        while ids[-1] in successor:
            ids.append(successor[ids[-1]])
        segs = tuple(Segment(by_id[i].first, by_id[i].last, round_up(by_id[i].nbytes, alignment)) for i in ids)
        storages.append(Storage(tuple(ids), segs))
    return storages


def live_profile(storages: Sequence[Storage]) -> dict[int, int]:
    """Bytes live at each step where the total changes: ``{step: bytes from there on}``.

    Each segment counts over its interval, minus the overlap step of consecutive chain members
    (counted once, at the larger, earlier member's size).
    """
    delta: dict[int, int] = {}

    def add(lo: int, hi: int, size: int) -> None:
        delta[lo] = delta.get(lo, 0) + size
        delta[hi + 1] = delta.get(hi + 1, 0) - size

    for st in storages:
        for seg in st.segments[1:]:
            add(seg.first, seg.first, -seg.size)
        for seg in st.segments:
            add(seg.first, seg.last, seg.size)
    profile, total = {}, 0
    for t in sorted(delta):
        total += delta[t]
        profile[t] = total
    return profile


def lower_bound(storages: Sequence[Storage]) -> int:
    """The most bytes live at any one step: no placement of these storages can use less."""
    return max(live_profile(storages).values(), default=0)
