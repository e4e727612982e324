"""The cpu target computes what the reference executor computes, on random graphs.

Every module from ``tests.property.graphs.modules()`` is compiled with ``CpuExecutable`` and run
on random inputs; the outputs must match the reference executor within the dtype-aware
``tolerance``. A graph using an op the cpu target does not lower yet must fail at construction
with ``CpuLoweringError`` naming the op; such examples are skipped (``assume``) only when the
message names an op of the explicit ``UNSUPPORTED`` list below, so a lowering that newly fails
on a supported op fails the test.

Kernels compile once per signature and are cached on disk, so after the first examples the
test mostly replays cached objects.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from optllm.backends.cpu import CpuExecutable, CpuLoweringError
from optllm.ir import DType, Graph, Module, parse_module, print_module
from optllm.ir.ops import all_opdefs, op_source
from optllm.passes.manager import PassManager
from tests.property.graphs import (
    CHOICE_LISTS,
    GENERATED_OPS,
    assert_outputs_close,
    envs,
    modules,
    random_inputs,
    run_reference,
    tolerance,
)

UNSUPPORTED: tuple[tuple[str, str, str], ...] = (
    # (op, a pattern only its CpuLoweringError message matches, why the cpu target does not lower it yet)
    # Empty: the cpu target lowers every op of the registry in every element type generated here
    # (nn.linear / nn.attention in f16 and f64 through lower_loop_gemm.py since issue 9).
)
"""The known gaps of the cpu target: a ``CpuLoweringError`` matching one of these makes an
example irrelevant rather than a failure. Keep the list short and explicit; any other
``CpuLoweringError`` fails the test."""

_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _known_gap(err: CpuLoweringError) -> bool:
    """Whether ``err`` is the documented failure of an entry of ``UNSUPPORTED``."""
    text = str(err)
    return any(re.search(pattern, text) for _, pattern, _ in UNSUPPORTED)


def _compile(m: Module, note: str = "") -> CpuExecutable:
    try:
        return CpuExecutable(m)
    except CpuLoweringError as e:
        assume(not _known_gap(e))
        e.add_note(f"while compiling\n{print_module(m)}{note}")
        raise


def _float_types(graph: Graph) -> set[DType]:
    """Every floating element type a value of ``graph`` (region bodies included) has."""
    out = {v.type.dtype for v in graph.inputs if v.type.dtype.is_float}
    for op in graph:
        out |= {r.type.dtype for r in op.results if r.type.dtype.is_float}
        for body in op.regions:
            out |= _float_types(body)
    return out


def _assert_close(got: list[np.ndarray], want: list[np.ndarray], graph: Graph) -> None:
    """``assert_outputs_close``, except that a floating output is compared at the tolerance of
    the least precise floating type in the graph: an f32 output cast from an f16 result carries
    that result's f16 rounding (the cpu templates round f16 norms once from f32, the reference
    after every numpy op), so one f16 ulp is no error there."""
    loosest = max((tolerance(t) for t in _float_types(graph)), default=(0.0, 0.0))
    if loosest == (0.0, 0.0) or all(tolerance(DType.from_numpy(w.dtype)) >= loosest for w in want):
        assert_outputs_close(got, want)
        return
    assert len(got) == len(want), f"{len(got)} outputs, expected {len(want)}"
    for i, (a, e) in enumerate(zip(got, want)):
        assert a.shape == e.shape and a.dtype == e.dtype, f"output #{i}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
        if e.dtype.kind == "f":
            rtol, atol = max(tolerance(DType.from_numpy(e.dtype)), loosest)
            np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol,
                                       err_msg=f"output #{i}")
        else:
            assert_outputs_close([a], [e])


def _run(exe: CpuExecutable, reference: Module, env: dict[str, int], seed: int, what: str) -> None:
    """Run ``exe`` and the reference executor on ``reference`` with the same inputs; any
    failure carries the module text (and sizes) as a note."""
    try:
        xs = random_inputs(reference.main, env, seed)
        want = run_reference(reference, xs)
        with np.errstate(all="ignore"):
            got = exe.run(xs)
        _assert_close(got, want, reference.main)
    except Exception as e:
        e.add_note(f"{what} at {env}, seed {seed}:\n{print_module(reference)}")
        raise


@_SETTINGS
@given(m=modules(), env=envs(), seed=st.integers(0, 2**16))
def test_cpu_matches_reference(m: Module, env: dict[str, int], seed: int) -> None:
    _run(_compile(m), m, env, seed, "cpu != reference")


def larger_envs() -> st.SearchStrategy[dict[str, int]]:
    """Sizes past the vector width and the parallel threshold (``envs()`` keeps S <= 6, where
    every loop is short and serial): odd and power-of-two lengths, so vector tails and the
    split of parallel loops across workers run too."""
    return st.fixed_dictionaries({"B": st.integers(1, 4), "S": st.sampled_from([7, 16, 17, 33, 64, 129])})


@settings(_SETTINGS, max_examples=30)
@given(m=modules(), env=larger_envs(), seed=st.integers(0, 2**16))
def test_cpu_matches_reference_at_larger_sizes(m: Module, env: dict[str, int], seed: int) -> None:
    _run(_compile(m), m, env, seed, "cpu != reference")


@_SETTINGS
@given(m=modules(), env=envs(), seed=st.integers(0, 2**16))
def test_cpu_matches_reference_after_default_pipeline(m: Module, env: dict[str, int], seed: int) -> None:
    original = m.clone()
    PassManager("default").run(m)  # verifies after every pass
    exe = _compile(m, f"\noptimized from:\n{print_module(original)}")
    _run(exe, original, env, seed, f"cpu(default pipeline) != reference; optimized:\n{print_module(m)}\noriginal")


def test_the_generator_covers_the_op_registry() -> None:
    """Every op the built-in dialects declare is in ``GENERATED_OPS``, and a few hundred
    (derandomized) draws of ``modules()`` do generate each of them: every op a step builds
    itself, and some op of each list a step picks from uniformly (``CHOICE_LISTS``; a rare
    member of a long list would need thousands of draws, and the list is read in one place)."""
    registry = {n for n in all_opdefs() if op_source(n).startswith("optllm.ir.dialects.")}
    assert not registry - GENERATED_OPS, f"ops the random graphs never build: {sorted(registry - GENERATED_OPS)}"
    seen: set[str] = set()

    def walk(graph: Graph) -> None:
        for op in graph:
            seen.add(op.name)
            for body in op.regions:
                walk(body)

    @settings(max_examples=600, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(m=modules())
    def draw(m: Module) -> None:
        walk(m.main)

    draw()
    chosen = {name for names in CHOICE_LISTS for name in names}
    missing = GENERATED_OPS - chosen - seen
    assert not missing, f"listed but not generated in 600 draws: {sorted(missing)}"
    assert all(seen & set(names) for names in CHOICE_LISTS)


def test_no_storage_is_planned_in_place_of_a_graph_output() -> None:
    """Found by the random graphs (fixed in runtime/executor.py ``bind``): %1 asked to reuse
    %0's storage in place, %0 became a graph output (no arena request), and the planner
    rejected ``inplace_of`` naming an unknown buffer."""
    m = parse_module("""module @m {
  func @forward(%x: f32[B]) -> (f32[B], f32[B]) {
    %0 = core.neg %x : f32[B]
    %1 = core.neg %0 : f32[B]
    %2 = core.neg %x : f32[B]
    return %2, %0
  }
}
""")
    xs = [np.arange(3, dtype=np.float32)]
    assert_outputs_close(CpuExecutable(m).run(xs), run_reference(m, xs))


# -- what the random graphs found ------------------------------------------------------------------
# Bugs found by the tests above: fixed ones stay as regression tests; an open one is pinned as a
# strict xfail (when a fix lands the test passes, xfail(strict=True) fails it, and the marker goes).

_REGION_RESULTS = {
    "results of two shapes (the second is computed only over the first's shape)": (
        "%x: f32[4], %y: f32[3,4]", "f32[4], f32[3,4]",
        "%0 = core.tanh %a : f32[4]\n      %1 = core.add %0, %b : f32[3,4]\n      return %0, %1"),
    "results of two shapes, the larger first (IndexError in collapse)": (
        "%x: f32[4], %y: f32[3,4]", "f32[3,4], f32[4]",
        "%0 = core.tanh %a : f32[4]\n      %1 = core.add %0, %b : f32[3,4]\n      return %1, %0"),
    "a region argument no body op reads returned as a result (KeyError)": (
        "%x: f32[4], %y: f32[3,4]", "f32[3,4], f32[4]",
        "%0 = core.tanh %b : f32[3,4]\n      return %0, %a"),
}


@pytest.mark.parametrize("case", sorted(_REGION_RESULTS))
def test_elementwise_region_results_of_several_shapes_and_returned_arguments(case: str) -> None:
    """Fixed in Lowering._region: one kernel per distinct result shape; a returned argument is
    copied."""
    sig, outs, body = _REGION_RESULTS[case]
    m = parse_module(f"""module @m {{
  func @forward({sig}) -> ({outs}) {{
    %1, %2 = fused.region %x, %y {{kind = "elementwise"}} : {outs} {{
      ^(%a: f32[4], %b: f32[3,4]):
      {body}
    }}
    return %1, %2
  }}
}}
""")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4,)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)]
    assert_outputs_close(CpuExecutable(m).run(xs), run_reference(m, xs))


def test_f16_layer_norm_of_a_constant_row() -> None:
    """Fixed in the nn.layer_norm reference: eps is added in f32 for half types (1e-12 rounded
    to f16 was 0, so a constant row gave 0/0 = NaN; the cpu template and PyTorch give 0)."""
    m = parse_module("""module @m {
  func @forward(%x: f16[2,1]) -> (f16[2,1]) {
    %0 = nn.layer_norm %x {eps = 1e-12} : f16[2,1]
    return %0
  }
}
""")
    xs = [np.array([[0.5], [-1.0]], np.float16)]
    assert_outputs_close(CpuExecutable(m).run(xs), run_reference(m, xs))
