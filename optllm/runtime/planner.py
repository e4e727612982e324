"""The arena planner: byte offsets for every buffer of a schedule, from liveness alone.

``plan_memory`` first resolves the in-place chains (:mod:`optllm.runtime.liveness`), then
places each storage with TFLite's greedy offset calculation: take the storages in some order,
and put each one into the tightest gap left by the already-placed storages whose live intervals
intersect its own (best fit), or on top of them all when no gap fits. It runs that with a few
orders (by size, by the breadth of the busiest steps, by size x lifetime), each with best and
first fit, and keeps the smallest arena, stopping early at one that meets the lower bound. (By
start time never won on random schedules, so it is not tried.) All sizes are rounded up to the
alignment, and the lower bound is counted on the rounded sizes, so ``ratio()`` compares like
with like.

Example — a norm, an up-projection, a GELU in place, a down-projection (64-byte alignment)::

    x  = BufferRequest(0, 256, first=0, last=1)              # graph input, read by the norm
    n  = BufferRequest(1, 256, first=1, last=2)              # norm(x)
    u  = BufferRequest(2, 1024, first=2, last=3)             # up(n)
    g  = BufferRequest(3, 1024, first=3, last=4, inplace_of=2)  # gelu(u), may overwrite u
    d  = BufferRequest(4, 256, first=4, last=5)              # down(g), graph output (num_steps=5)

Before (one slot each): 2816 bytes. After ``plan_memory([x, n, u, g, d])``::

    offsets = {0: 0, 1: 1024, 2: 0, 3: 0, 4: 1024}   # x and u share bytes 0.. at disjoint times
    shared = {3: 2}                                   # g overwrites u
    arena_bytes = 1280 == lower_bound                 # step 2 holds n and u: 256 + 1024
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from optllm.runtime.liveness import (
    BufferRequest,
    Storage,
    build_storages,
    live_profile,
    lower_bound,
    resolve_inplace,
    validate_requests,
)

__all__ = ["BufferRequest", "MemoryPlan", "PlanError", "plan_memory", "verify_plan"]

logger = logging.getLogger(__name__)


class PlanError(ValueError):
    """A memory plan that breaks its requests: overlapping live buffers, a misaligned offset."""


@dataclass
class MemoryPlan:
    """Where each buffer lives in the arena.

    Attributes:
        offsets: id -> byte offset, a multiple of ``alignment`` (0 for zero-byte buffers).
        arena_bytes: the arena size, the peak of the planned bytes.
        lower_bound: the most bytes (rounded to ``alignment``) live at any one step, an in-place
            pair counted once; no plan can use less.
        shared: id -> id of the buffer whose storage it reuses in place.
        alignment: the alignment the plan was made for.
        strategy: the placement order that gave the smallest arena.
    """

    offsets: dict[int, int]
    arena_bytes: int
    lower_bound: int
    shared: dict[int, int] = field(default_factory=dict)
    alignment: int = 64
    strategy: str = ""

    def ratio(self) -> float:
        """``arena_bytes / lower_bound``; 1.0 for an empty plan."""
        return self.arena_bytes / self.lower_bound if self.lower_bound else 1.0


def plan_memory(requests: Sequence[BufferRequest], *, alignment: int = 64, num_steps: int | None = None) -> MemoryPlan:
    """Assign arena offsets so that no two simultaneously live buffers overlap.

    Buffers live over ``[first, last]``; a buffer written at step t and one last read at step t
    are both live at t. Accepted in-place pairs share one offset. Deterministic, and independent
    of the order of ``requests``.

    Args:
        requests: the buffers (see :class:`BufferRequest`).
        alignment: every offset is a multiple of it and every size is rounded up to it.
        num_steps: if given, no buffer may live past it.

    Raises:
        ValueError: naming the buffer, for invalid requests (duplicate id, negative size,
            ``first > last``, an unknown ``inplace_of``).
    """
    if alignment <= 0:
        raise ValueError(f"alignment must be positive, got {alignment}")
    by_id = validate_requests(requests, num_steps)
    shared = resolve_inplace(by_id)
    storages = build_storages(by_id, shared, alignment)
    bound = lower_bound(storages)
    arena, offsets, strategy = _best_placement(storages, bound)
    plan = MemoryPlan({r.id: 0 for r in requests}, arena, bound, shared, alignment, strategy)
    for st, off in zip(storages, offsets):
        plan.offsets.update(dict.fromkeys(st.ids, off))
    logger.debug("planned %d buffers: %d bytes, lower bound %d (%s)", len(requests), arena, bound, strategy)
    return plan


def _best_placement(storages: Sequence[Storage], bound: int) -> tuple[int, list[int], str]:
    """The smallest arena over the orders and fits tried: ``(arena, offsets, strategy)``.
    Stops at the first placement that meets the lower bound."""
    neighbors = _interval_neighbors(storages)
    best: tuple[int, list[int], str] = (0, [], "")
    for name, order in _orders(storages):
        for fit in ("best", "first"):
            offsets = _place(storages, neighbors, order, best_fit=fit == "best")
            arena = max((o + st.size for o, st in zip(offsets, storages)), default=0)
            if not best[1] or arena < best[0]:
                best = (arena, offsets, f"{name}/{fit}-fit")
            if arena == bound:
                return best
    return best


def _interval_neighbors(storages: Sequence[Storage]) -> list[list[tuple[int, int, int]]]:
    """For each storage ``s``, ``(j, lo, hi)`` for every storage ``j`` live at a step where
    ``s`` is: ``s`` may not start in ``[at + lo, at + hi)`` when ``j`` is placed at ``at``
    (one entry per clashing pair of segments; found by a sweep over the starts)."""
    neighbors: list[list[tuple[int, int, int]]] = [[] for _ in storages]
    active: list[int] = []
    for i in sorted(range(len(storages)), key=lambda i: storages[i].first):
        start = storages[i].first
        active = [j for j in active if storages[j].last >= start]
        si = storages[i]
        for j in active:
            sj = storages[j]
            if len(si.segments) == 1 == len(sj.segments):  # the common case, without the pairing
                neighbors[i].append((j, 1 - si.size, sj.size))
                neighbors[j].append((i, 1 - sj.size, si.size))
                continue
            neighbors[i].extend((j, lo, hi) for lo, hi in _blocked(si, sj))
            neighbors[j].extend((i, lo, hi) for lo, hi in _blocked(sj, si))
        active.append(i)
    return neighbors


def _blocked(s: Storage, p: Storage) -> list[tuple[int, int]]:
    """Offsets (relative to ``p``'s) where ``s`` would overlap ``p`` in a step both are live:
    segment a (size za) at offset o clashes with b at 0 iff o < zb and o + za > 0."""
    return [(1 - a.size, b.size) for a in s.segments for b in p.segments if a.first <= b.last and b.first <= a.last]


def _orders(storages: Sequence[Storage]) -> Iterator[tuple[str, list[int]]]:
    """The placement orders tried, best first, each a permutation of storage indices."""
    idx = range(len(storages))
    yield "size", sorted(idx, key=lambda i: (-storages[i].size, storages[i].first - storages[i].last, i))
    yield "breadth", _breadth_order(storages)
    yield "area", sorted(idx, key=lambda i: (-storages[i].area, -storages[i].size, i))


def _breadth_order(storages: Sequence[Storage]) -> list[int]:
    """TFLite's greedy by breadth: visit steps from the busiest down, and at each step take
    its not-yet-placed live storages from the largest down."""
    profile = live_profile(storages)
    steps = sorted(profile)
    live_at: dict[int, list[int]] = {t: [] for t in steps}
    for i, st in enumerate(storages):
        for t in steps[bisect_left(steps, st.first) : bisect_right(steps, st.last)]:
            live_at[t].append(i)
    order: list[int] = []
    seen: set[int] = set()
    for t in sorted(steps, key=lambda t: (-profile[t], t)):
        for i in sorted(live_at[t], key=lambda i: (-storages[i].size, i)):
            if i not in seen:
                seen.add(i)
                order.append(i)
    return order


def _place(
    storages: Sequence[Storage], neighbors: Sequence[list[tuple[int, int, int]]], order: list[int], *, best_fit: bool
) -> list[int]:
    """Greedy offsets in ``order``: each storage goes to the lowest offset of the tightest
    free range (best fit) or of the lowest one (first fit) among its placed neighbors."""
    offsets = [-1] * len(storages)
    for i in order:
        blocked = [(offsets[j] + lo, offsets[j] + hi) for j, lo, hi in neighbors[i] if offsets[j] >= 0]
        blocked.sort()
        offsets[i] = _choose(blocked, best_fit)
    return offsets


def _choose(blocked: list[tuple[int, int]], best_fit: bool) -> int:
    """The start of the chosen free range of offsets, given the sorted blocked ranges."""
    pick, slack, cur = -1, -1, 0
    for lo, hi in blocked:
        if lo > cur:
            if not best_fit:
                return cur
            if pick < 0 or lo - cur < slack:
                pick, slack = cur, lo - cur
        cur = max(cur, hi)
    return pick if pick >= 0 else cur


def verify_plan(requests: Sequence[BufferRequest], plan: MemoryPlan) -> None:
    """Check ``plan`` against ``requests``; the tests and the runtime's debug mode call this.

    Raises:
        PlanError: naming the buffers, if an offset is missing, negative or misaligned, a buffer
            runs past the arena, a shared pair is not a legal in-place pair (or an input is
            shared twice, or a pair is at different offsets), or two buffers live at the same
            step overlap in memory without being one in-place chain.
    """
    by_id = validate_requests(requests)
    for r in requests:
        off = plan.offsets.get(r.id)
        if off is None or off < 0 or off % plan.alignment:
            raise PlanError(f"buffer {r.id}: offset {off} is not a multiple of {plan.alignment}")
        if off + r.nbytes > plan.arena_bytes:
            raise PlanError(f"buffer {r.id}: [{off}, {off + r.nbytes}) runs past the arena ({plan.arena_bytes})")
    _verify_shared(by_id, plan)
    _verify_disjoint(by_id, plan)


def _verify_shared(by_id: dict[int, BufferRequest], plan: MemoryPlan) -> None:
    inputs = list(plan.shared.values())
    for b, a in plan.shared.items():
        rb, ra = by_id.get(b), by_id.get(a)
        if rb is None or ra is None or rb.inplace_of != a or ra.last != rb.first or rb.nbytes > ra.nbytes:
            raise PlanError(f"buffer {b}: sharing the storage of {a} is not a legal in-place pair")
        if inputs.count(a) > 1:
            raise PlanError(f"buffer {a}: its storage is reused in place by more than one buffer")
        if plan.offsets[b] != plan.offsets[a]:
            raise PlanError(f"buffer {b}: shares {a} in place but sits at another offset")


def _verify_disjoint(by_id: dict[int, BufferRequest], plan: MemoryPlan) -> None:
    def head(i: int) -> int:
        seen = set()
        while i in plan.shared and i not in seen:
            seen.add(i)
            i = plan.shared[i]
        return i

    live = sorted((r for r in by_id.values() if r.nbytes > 0), key=lambda r: (r.first, r.id))
    active: list[BufferRequest] = []
    for r in live:
        active = [q for q in active if q.last >= r.first]
        lo, hi = plan.offsets[r.id], plan.offsets[r.id] + r.nbytes
        for q in active:
            qlo = plan.offsets[q.id]
            if qlo < hi and lo < qlo + q.nbytes and head(q.id) != head(r.id):
                raise PlanError(f"buffers {q.id} and {r.id} are both live at step {r.first} and overlap in memory")
        active.append(r)
