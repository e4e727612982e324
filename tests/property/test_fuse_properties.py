"""``fuse`` keeps the reference outputs of random graphs (elementwise chains, attention,
norms, softmax, views...), and fusing twice changes nothing more."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from optllm.ir import Module, print_module
from optllm.passes.base import PassContext
from optllm.passes.fuse import Fuse
from optllm.passes.manager import PassManager
from tests.property.graphs import assert_outputs_close, envs, modules, random_inputs, run_reference


@given(m=modules(max_ops=16), env=envs(), seed=st.integers(0, 2**16))
def test_fuse_keeps_reference_outputs(m: Module, env: dict[str, int], seed: int) -> None:
    xs = random_inputs(m.main, env, seed)
    before = run_reference(m, xs)
    types = [v.type for v in m.main.outputs]
    PassManager("fuse,canonicalize,cse,dce").run(m)  # verifies after every pass
    assert [v.type for v in m.main.outputs] == types
    assert_outputs_close(run_reference(m, xs), before)


@given(m=modules(max_ops=16))
def test_fuse_reaches_a_fixpoint(m: Module) -> None:
    Fuse().run(m, PassContext())
    text = print_module(m)
    assert not Fuse().run(m, PassContext()).changed
    assert print_module(m) == text
