"""The arena planner: validation, in-place chains, the lower bound, and plans on synthetic
transformer and random schedules (properties with hypothesis)."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optllm.runtime.liveness import inplace_legal, round_up
from optllm.runtime.planner import BufferRequest, MemoryPlan, PlanError, plan_memory, verify_plan
from tests.unit.runtime.schedules import random_schedule, transformer_schedule

R = BufferRequest


def _plan(requests: list[BufferRequest], **kw: int) -> MemoryPlan:
    plan = plan_memory(requests, **kw)
    verify_plan(requests, plan)
    return plan


# --- the docstring example and small cases -------------------------------------------------


def test_docstring_example() -> None:
    reqs = [R(0, 256, 0, 1), R(1, 256, 1, 2), R(2, 1024, 2, 3), R(3, 1024, 3, 4, inplace_of=2), R(4, 256, 4, 5)]
    plan = _plan(reqs, num_steps=5)
    assert plan.offsets == {0: 0, 1: 1024, 2: 0, 3: 0, 4: 1024}
    assert plan.shared == {3: 2}
    assert plan.arena_bytes == plan.lower_bound == 1280
    assert plan.ratio() == 1.0


def test_empty_and_zero_byte_buffers() -> None:
    empty = plan_memory([])
    assert (empty.offsets, empty.arena_bytes, empty.lower_bound, empty.shared, empty.ratio()) == ({}, 0, 0, {}, 1.0)
    plan = _plan([R(0, 0, 0, 3), R(1, 128, 0, 3), R(2, 0, 1, 2, inplace_of=1), R(3, 64, 3, 3, inplace_of=0)])
    assert plan.offsets[0] == plan.offsets[2] == 0
    assert plan.shared == {}  # a zero-byte buffer never shares, and nothing fits in zero bytes
    assert plan.arena_bytes == plan.lower_bound == 192


def test_sizes_round_up_to_the_alignment() -> None:
    reqs = [R(0, 1, 0, 0), R(1, 65, 0, 0)]
    plan = _plan(reqs)
    assert plan.lower_bound == plan.arena_bytes == 64 + 128
    assert all(off % 64 == 0 for off in plan.offsets.values())
    assert _plan(reqs, alignment=1).arena_bytes == 66


def test_a_buffer_read_last_where_another_is_written_does_not_overlap_it() -> None:
    plan = _plan([R(0, 64, 0, 1), R(1, 64, 1, 2), R(2, 64, 2, 2)])
    assert plan.offsets[0] != plan.offsets[1] and plan.offsets[1] != plan.offsets[2]
    assert plan.offsets[0] == plan.offsets[2]
    assert plan.arena_bytes == 128


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([R(7, 64, 0, 1), R(7, 64, 1, 2)], "buffer 7: duplicate id"),
        ([R(7, -1, 0, 1)], "buffer 7: negative size"),
        ([R(7, 64, 2, 1)], r"buffer 7: bad live interval \[2, 1\]"),
        ([R(7, 64, -1, 1)], "buffer 7: bad live interval"),
        ([R(7, 64, 0, 1, inplace_of=3)], "buffer 7: inplace_of names an unknown buffer 3"),
        ([R(7, 64, 0, 1, inplace_of=7)], "buffer 7: inplace_of names an unknown buffer 7"),
        ([R(7, 64, 0, 9)], "buffer 7: last = 9 is past num_steps = 5"),
    ],
)
def test_invalid_requests_name_the_buffer(requests: list[BufferRequest], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_memory(requests, num_steps=5)


def test_alignment_must_be_positive() -> None:
    with pytest.raises(ValueError, match="alignment"):
        plan_memory([R(0, 1, 0, 0)], alignment=0)


# --- in place ------------------------------------------------------------------------------


def test_inplace_chain_shares_one_offset() -> None:
    # u -> gelu in place -> scale in place; x lives across all of it
    reqs = [R(0, 512, 0, 4), R(1, 1024, 1, 2), R(2, 1024, 2, 3, inplace_of=1), R(3, 1024, 3, 4, inplace_of=2)]
    plan = _plan(reqs)
    assert plan.shared == {2: 1, 3: 2}
    assert plan.offsets[1] == plan.offsets[2] == plan.offsets[3]
    assert plan.arena_bytes == plan.lower_bound == 1536


@pytest.mark.parametrize(
    "requests",
    [
        [R(0, 256, 0, 2), R(1, 256, 1, 2, inplace_of=0)],  # the input is still read after step 1
        [R(0, 256, 0, 1), R(1, 256, 2, 3, inplace_of=0)],  # the input died before step 2
        [R(0, 256, 0, 1), R(1, 320, 1, 2, inplace_of=0)],  # larger than the input
    ],
)
def test_illegal_inplace_is_refused(requests: list[BufferRequest]) -> None:
    plan = _plan(requests)
    assert plan.shared == {}


def test_one_input_is_reused_by_one_buffer_only() -> None:
    plan = _plan([R(0, 256, 0, 1), R(5, 256, 1, 2, inplace_of=0), R(3, 256, 1, 2, inplace_of=0)])
    assert plan.shared == {3: 0}  # ties at the same step go to the lower id
    assert plan.arena_bytes == 512


def test_a_cycle_of_one_step_buffers_is_broken() -> None:
    plan = _plan([R(0, 256, 1, 1, inplace_of=1), R(1, 256, 1, 1, inplace_of=0)])
    assert plan.shared == {0: 1}


def test_lower_bound_counts_an_inplace_pair_once_at_the_larger_size() -> None:
    # step 1: a (256) is overwritten by b (128, in place) while c (128) is live: 256 + 128
    plan = _plan([R(0, 256, 0, 1), R(1, 128, 1, 2, inplace_of=0), R(2, 128, 1, 1)])
    assert plan.shared == {1: 0}
    assert plan.lower_bound == plan.arena_bytes == 384


# --- verify_plan ---------------------------------------------------------------------------


def test_verify_plan_rejects_broken_plans() -> None:
    reqs = [R(0, 256, 0, 1), R(1, 256, 1, 2, inplace_of=0), R(2, 128, 1, 1)]
    good = _plan(reqs)
    broken = {
        "overlap": MemoryPlan({0: 0, 1: 0, 2: 128}, 384, 384, {1: 0}),
        "misaligned": MemoryPlan({0: 0, 1: 0, 2: 260}, 512, 384, {1: 0}),
        "past the arena": MemoryPlan({0: 0, 1: 0, 2: 256}, 320, 384, {1: 0}),
        "missing": MemoryPlan({0: 0, 1: 0}, 384, 384, {1: 0}),
        "not in place": MemoryPlan({0: 0, 1: 0, 2: 256}, 384, 384, {}),
        "illegal pair": MemoryPlan({0: 0, 1: 256, 2: 0}, 512, 384, {2: 0}),
        "pair apart": MemoryPlan({0: 0, 1: 256, 2: 512}, 640, 384, {1: 0}),
    }
    verify_plan(reqs, good)
    for why, plan in broken.items():
        with pytest.raises(PlanError):
            verify_plan(reqs, plan)
            pytest.fail(f"verify_plan accepted a plan with {why}")


# --- synthetic transformer and random schedules --------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {},  # GPT-2 small, batch 1, sequence 128, with the 25.7 MB logits
        {"logits": False},
        {"batch": 8, "logits": False},
        {"batch": 4, "seq": 512, "logits": False},
        {"layers": 6, "hidden": 384, "heads": 12, "logits": False},  # MiniLM-sized
    ],
)
def test_transformer_schedule_is_within_7_percent_of_the_lower_bound(config: dict) -> None:
    reqs = transformer_schedule(**config)
    plan = _plan(reqs)
    assert plan.ratio() <= 1.07, (plan.arena_bytes, plan.lower_bound, plan.strategy)
    layers = config.get("layers", 12)
    assert len(plan.shared) == 4 * layers  # softmax, both residual adds, gelu


def test_random_dag_schedules_are_close_to_the_lower_bound() -> None:
    rng = random.Random(0)
    ratios = [_plan(random_schedule(rng, rng.randint(20, 300))).ratio() for _ in range(30)]
    assert statistics.median(ratios) <= 1.01 and max(ratios) <= 1.07, sorted(ratios)


def test_plan_is_independent_of_request_order() -> None:
    reqs = random_schedule(random.Random(3), 200)
    assert plan_memory(reqs) == plan_memory(list(reversed(reqs)))


# --- properties ----------------------------------------------------------------------------

SIZES = st.one_of(st.sampled_from([0, 1, 63, 64, 65, 128, 256, 1024]), st.integers(0, 5000))


@st.composite
def schedules(draw: st.DrawFn) -> list[BufferRequest]:
    """Random buffers over a dozen steps; about half ask to reuse an earlier buffer, and
    half of those are made legal (start where it dies, no larger)."""
    reqs: list[BufferRequest] = []
    for i in range(draw(st.integers(0, 24))):
        nbytes, first = draw(SIZES), draw(st.integers(0, 12))
        target = draw(st.none() | st.sampled_from(reqs)) if reqs else None
        if target is not None and draw(st.booleans()):
            nbytes, first = draw(st.integers(0, target.nbytes)), target.last
        last = first + draw(st.integers(0, 6))
        reqs.append(R(3 * i + 1, nbytes, first, last, target.id if target is not None else None))
    return reqs


def brute_force_lower_bound(reqs: list[BufferRequest], shared: dict[int, int], alignment: int) -> int:
    by_id = {r.id: r for r in reqs}
    best = 0
    for t in range(max((r.last for r in reqs), default=-1) + 1):
        live = sum(round_up(r.nbytes, alignment) for r in reqs if r.first <= t <= r.last)
        once = sum(round_up(by_id[b].nbytes, alignment) for b in shared if by_id[b].first == t)
        best = max(best, live - once)
    return best


@given(schedules(), st.sampled_from([1, 16, 64]))
def test_plans_are_valid_and_bounded(reqs: list[BufferRequest], alignment: int) -> None:
    plan = plan_memory(reqs, alignment=alignment)
    verify_plan(reqs, plan)
    assert plan.lower_bound == brute_force_lower_bound(reqs, plan.shared, alignment)
    assert plan.lower_bound <= plan.arena_bytes <= sum(round_up(r.nbytes, alignment) for r in reqs)


@given(schedules())
def test_inplace_is_honoured_only_when_legal_and_whenever_free(reqs: list[BufferRequest]) -> None:
    plan = plan_memory(reqs)
    by_id = {r.id: r for r in reqs}
    for b, a in plan.shared.items():
        assert inplace_legal(by_id[b], by_id[a])
    assert len(set(plan.shared.values())) == len(plan.shared)
    for r in reqs:
        if r.inplace_of is None or r.id in plan.shared or not inplace_legal(r, by_id[r.inplace_of]):
            continue
        head = r.inplace_of
        while head in plan.shared:
            head = plan.shared[head]
        assert r.inplace_of in plan.shared.values() or head == r.id, f"legal in-place request {r} refused"


@given(schedules(), st.data())
def test_plans_are_deterministic(reqs: list[BufferRequest], data: st.DataObject) -> None:
    plan = plan_memory(reqs)
    assert plan_memory(reqs) == plan
    assert plan_memory(data.draw(st.permutations(reqs))) == plan
