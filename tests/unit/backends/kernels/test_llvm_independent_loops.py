"""Independent loops: printed with parallel-access metadata, vectorised without runtime alias
checks, and still correct when the output is the input (in place)."""

from __future__ import annotations

import numpy as np

from optllm.backends.kernels.kir import F32, I64, For, Kernel, Load, Param, Store, Unary, c, v
from optllm.backends.kernels.llvm.codegen import emit_module
from optllm.backends.kernels.llvm.jit import compile_kernels, optimized_ir, pack_slots


def _tanh_kernel(name: str, independent: bool) -> Kernel:
    body = Store("out", v("j"), Unary("tanh", Load("x", v("j"), F32)) + Load("y", v("j"), F32))
    return Kernel(name, (Param("out", "buffer", F32), Param("x", "buffer", F32), Param("y", "buffer", F32),
                         Param("n", "scalar", I64)),
                  (For("j", c(0), v("n"), (body,), independent=independent),))


def test_metadata_is_distinct_and_self_referential() -> None:
    text = emit_module([_tanh_kernel("k_ind", True)])
    assert "!llvm.access.group" in text and "!llvm.loop" in text
    assert "optllm.access_group" not in text and "optllm.loop_id" not in text  # placeholders rewritten
    assert "distinct !{}" in text


def test_independent_loops_skip_the_runtime_alias_check() -> None:
    assert "vector.memcheck" in optimized_ir([_tanh_kernel("k_dep", False)])
    assert "vector.memcheck" not in optimized_ir([_tanh_kernel("k_ind2", True)])


def test_in_place_call_of_an_independent_loop_is_exact() -> None:
    k = _tanh_kernel("k_inplace", True)
    fn = compile_kernels([k])[k.name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1003).astype(np.float32)
    y = rng.standard_normal(1003).astype(np.float32)
    want = np.empty_like(x)
    fn(pack_slots(k, out=want, x=x, y=y, n=x.size))
    fn(pack_slots(k, out=x, x=x, y=y, n=x.size))  # out is x
    np.testing.assert_array_equal(x, want)
