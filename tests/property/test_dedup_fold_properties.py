"""dedup and fold-constants keep the reference outputs of random graphs.

dedup must be exact (bit for bit) and leave nothing for CSE; here every weight op first gets
its own table entry under its own name (as a file loaded lazily would have them), so equal
weights must be found by content. fold-constants runs with small limits too, so that inline
constants, splat generators and new table entries all occur; its outputs must stay within the
dtype-aware tolerance (a folded transpose feeds BLAS another memory layout) and a second
sweep must find nothing left to fold.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optllm.ir import Module
from optllm.passes import run_pipeline
from optllm.passes.fold_constants import FoldConstants
from tests.property.graphs import assert_outputs_close, envs, modules, random_inputs, run_reference


def _bitwise(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == e.dtype and a.shape == e.shape, f"output #{i}"
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(e).tobytes(), f"output #{i} changed"


def _split_weights(m: Module) -> int:
    """Give every core.weight op its own lazily loaded table entry; returns how many ops."""
    ops = [op for op in m.walk() if op.name == "core.weight"]
    for i, op in enumerate(ops):
        arr = m.constants[op.attrs["name"]].copy()
        name = f"split{i}"
        m.constants.add_lazy(name, op.results[0].type, lambda arr=arr: arr)
        op.attrs["name"] = name
    m.drop_unused_constants()
    return len(ops)


@given(m=modules(), env=envs(), seed=st.integers(0, 2**16))
def test_dedup_is_exact_and_complete(m: Module, env: dict[str, int], seed: int) -> None:
    n_weights = _split_weights(m)
    xs = random_inputs(m.main, env, seed)
    before = run_reference(m, xs)
    report = run_pipeline(m, "dedup")
    _bitwise(run_reference(m, xs), before)
    stats = report.passes[0].statistics
    assert len(m.constants) == n_weights - stats["num-merged-constants"]
    digests = [m.constants.digest_of(n) for n in m.constants.names()]
    assert len(set(digests)) == len(digests), "two table entries hold the same tensor"
    assert not run_pipeline(m, "dedup,cse").changed


@pytest.mark.parametrize("fold", [FoldConstants(), FoldConstants(max_elements=2, max_bytes=64)], ids=str)
@given(m=modules(), env=envs(), seed=st.integers(0, 2**16))
def test_fold_constants_keeps_outputs(fold: FoldConstants, m: Module, env: dict[str, int], seed: int) -> None:
    xs = random_inputs(m.main, env, seed)
    before = run_reference(m, xs)
    types = [v.type for v in m.main.outputs]
    run_pipeline(m, [fold])  # verifies afterwards
    assert [v.type for v in m.main.outputs] == types
    assert_outputs_close(run_reference(m, xs), before)
    again = run_pipeline(m, [fold])
    assert again.passes[0].statistics["num-folded"] == 0
