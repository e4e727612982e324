"""Every built-in pass (and each named pipeline) keeps the reference outputs of random graphs.

Passes that claim to be exact (structural clean-ups) must keep the outputs bit for bit;
the others within the dtype-aware ``tolerance``. New built-in passes are picked up from the
registry's built-in table automatically.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optllm.ir import Module, print_module
from optllm.passes.builtin import PASSES
from optllm.passes.manager import PassManager
from optllm.passes.pipeline import NAMED_PIPELINES
from tests.property.graphs import assert_outputs_close, envs, modules, random_inputs, run_reference

# Rewrites exact in IEEE arithmetic: the outputs must not change in a single bit.
EXACT = {"dce", "cse", "canonicalize"}
PIPELINES = sorted(PASSES) + sorted(NAMED_PIPELINES)


def _bitwise(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == e.dtype and a.shape == e.shape, f"output #{i}"
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(e).tobytes(), (
            f"output #{i} changed:\n{a}\nexpected\n{e}")


@pytest.mark.parametrize("pipeline", PIPELINES)
@given(m=modules(), env=envs(), seed=st.integers(0, 2**16))
def test_pass_keeps_reference_outputs(pipeline: str, m: Module, env: dict[str, int], seed: int) -> None:
    xs = random_inputs(m.main, env, seed)
    before = run_reference(m, xs)
    types = [v.type for v in m.main.outputs]
    text = print_module(m)
    PassManager(pipeline).run(m)  # verifies after every pass
    assert [v.type for v in m.main.outputs] == types, f"{pipeline} changed the signature of\n{text}"
    after = run_reference(m, xs)
    if set(pipeline.split(",")) <= EXACT:
        _bitwise(after, before)
    else:
        assert_outputs_close(after, before)
