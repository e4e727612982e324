"""Properties of random well-typed modules: text round trip, verifier, reference executor, save/load."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from optllm.ir import Module, parse_module, print_module, verify_module
from optllm.ir.io import load_module, save_module
from tests.property.graphs import envs, modules, random_inputs, run_reference


def _bitwise_equal(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype and x.shape == y.shape, f"output #{i}"
        assert np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes(), f"output #{i} differs"


@given(modules())
def test_print_parse_round_trip_is_exact(m: Module) -> None:
    text = print_module(m)
    again = parse_module(text)
    assert print_module(again) == text
    again.constants = m.constants  # weights are not part of the text
    verify_module(again)


@given(modules())
def test_verifier_accepts_what_the_builder_builds(m: Module) -> None:
    verify_module(m)


@given(modules(), envs(), st.integers(0, 2**16))
def test_reference_runs_with_declared_shapes_and_dtypes(m: Module, env: dict[str, int], seed: int) -> None:
    xs = random_inputs(m.main, env, seed)
    outs = run_reference(m, xs)  # the executor also checks every intermediate result against its type
    assert len(outs) == len(m.main.outputs)
    for v, y in zip(m.main.outputs, outs):
        assert y.shape == v.type.concrete_shape(env), f"{v.type} at {env}"
        assert y.dtype == v.type.dtype.to_numpy()


@given(modules(), envs())
def test_text_round_trip_keeps_reference_outputs(m: Module, env: dict[str, int]) -> None:
    xs = random_inputs(m.main, env, seed=1)
    reparsed = parse_module(print_module(m))
    reparsed.constants = m.constants  # weights are not part of the text
    _bitwise_equal(run_reference(reparsed, xs), run_reference(m, xs))


@given(modules(), envs())
def test_save_load_round_trip_keeps_reference_outputs(m: Module, env: dict[str, int]) -> None:
    xs = random_inputs(m.main, env, seed=2)
    before = run_reference(m, xs)
    with TemporaryDirectory() as tmp:
        path = save_module(m, Path(tmp) / "random.oir")
        loaded = load_module(path)
        verify_module(loaded)
        assert print_module(loaded) == print_module(m)
        _bitwise_equal(run_reference(loaded, xs), before)


@given(modules(min_ops=4, max_ops=12), envs(), envs())
def test_one_module_runs_at_several_sizes(m: Module, env1: dict[str, int], env2: dict[str, int]) -> None:
    for env in (env1, env2):
        outs = run_reference(m, random_inputs(m.main, env))
        for v, y in zip(m.main.outputs, outs):
            assert y.shape == v.type.concrete_shape(env)
