"""The cpu target on hand-written modules: every lowering rule against the reference executor,
free views, the permuted-layout trick, in-place planning, checked gathers and clear errors."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from optllm.backends import build
from optllm.backends.cpu import CpuExecutable, CpuLoweringError
from optllm.backends.reference import InputError, run_module
from optllm.ir import Module, TensorType, parse_module
from optllm.ir.ops import OpDef, Operation
from optllm.runtime.executor import RuntimeFault

RTOL, ATOL = 1e-5, 1e-5


def _module(body: str, sig: str, outs: str, weights: dict[str, np.ndarray] | None = None) -> Module:
    text = f"module @m {{\n  func @forward({sig}) -> ({outs}) {{\n{textwrap.indent(textwrap.dedent(body), '    ')}  }}\n}}\n"
    m = parse_module(text)
    for name, arr in (weights or {}).items():
        m.constants.add(arr, name)
    return m


def _check(m: Module, inputs: list[np.ndarray], rtol: float = RTOL, atol: float = ATOL) -> CpuExecutable:
    exe = CpuExecutable(m)
    got = exe.run(inputs)
    want = run_module(m, inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return exe


RNG = np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_elementwise_broadcast_and_views_cost_no_kernel() -> None:
    m = _module("""\
        %0 = core.permute %x {perm = [0, 2, 1]} : f32[B,4,S]
        %1 = core.add %0, %b : f32[B,4,S]
        %2 = core.reshape %1 {shape = [B, 4*S]} : f32[B,4*S]
        return %2
        """, "%x: f32[B,S,4], %b: f32[4,1]", "f32[B,4*S]")
    exe = _check(m, [_f32(2, 5, 4), _f32(4, 1)])
    bound = next(iter(exe.programs.values()))
    assert [s.op.name for s in bound.program.steps] == ["core.add"]


def test_fused_region_with_gathers_and_checked_ids() -> None:
    table = _f32(10, 8)
    m = _module("""\
        %t = core.weight {name = "table"} : f32[10,8]
        %0 = fused.region %t, %ids, %x {kind = "elementwise"} : f32[B,S,8] {
          ^(%a: f32[10,8], %i: i64[B,S], %y: f32[B,S,8]):
          %0 = nn.embedding %a, %i : f32[B,S,8]
          %1 = core.mul %0, %y : f32[B,S,8]
          %2 = nn.gelu %1 : f32[B,S,8]
          return %2
        }
        return %0
        """, "%ids: i64[B,S], %x: f32[B,S,8]", "f32[B,S,8]", {"table": table})
    ids = RNG.integers(0, 10, (3, 7))
    exe = _check(m, [ids, _f32(3, 7, 8)])
    bad = ids.copy()
    bad[1, 2] = 10
    with pytest.raises(RuntimeFault, match=r"index out of range(.|\n)*fused.region"):
        exe.run([bad, _f32(3, 7, 8)])
    exe.run([ids, _f32(3, 7, 8)])  # the error flag was reset


@pytest.mark.parametrize("transpose_w,bias,activation,residual",
                         list(itertools.product([False, True], [False, True], ["none", "gelu", "gelu_tanh", "silu", "relu", "tanh"], [False, True]))[::3])
def test_linear_epilogues(transpose_w: bool, bias: bool, activation: str, residual: bool) -> None:
    k, n = 24, 40
    w = _f32(n, k) if transpose_w else _f32(k, n)
    operands = ["%x", "%w"] + (["%b"] if bias else []) + (["%r"] if residual else [])
    wtype = f"f32[{n},{k}]" if transpose_w else f"f32[{k},{n}]"
    m = _module(f"""\
        %w = core.weight {{name = "w"}} : {wtype}
        %b = core.weight {{name = "b"}} : f32[{n}]
        %y = nn.linear {", ".join(operands)} {{transpose_w = {str(transpose_w).lower()}, bias = {str(bias).lower()}, activation = "{activation}", residual = {str(residual).lower()}}} : f32[B,S,{n}]
        return %y
        """, f"%x: f32[B,S,{k}], %r: f32[B,S,{n}]", f"f32[B,S,{n}]", {"w": w, "b": _f32(n)})
    _check(m, [_f32(2, 9, k), _f32(2, 9, n)])


def test_linear_reads_a_strided_row_view() -> None:
    m = _module("""\
        %w = core.weight {name = "w"} : f32[8,6]
        %a, %c = core.split %x {axis = 2, sizes = [8, 4]} : f32[B,S,8], f32[B,S,4]
        %y = nn.linear %a, %w : f32[B,S,6]
        return %y
        """, "%x: f32[B,S,12]", "f32[B,S,6]", {"w": _f32(8, 6)})
    _check(m, [_f32(3, 5, 12)])


def test_attention_output_is_written_in_the_permuted_layout() -> None:
    m = _module("""\
        %q = core.permute %x {perm = [0, 2, 1, 3]} : f32[B,2,S,8]
        %o = nn.attention %q, %q, %q {causal = true} : f32[B,2,S,8]
        %p = core.permute %o {perm = [0, 2, 1, 3]} : f32[B,S,2,8]
        %r = core.reshape %p {shape = [B, S, 16]} : f32[B,S,16]
        return %r
        """, "%x: f32[B,S,2,8]", "f32[B,S,16]")
    exe = _check(m, [_f32(2, 11, 2, 8)])
    bound = next(iter(exe.programs.values()))
    assert [s.op.name for s in bound.program.steps] == ["nn.attention"]  # no copy for the reshape


def test_norms_in_place_and_memory_plan_meets_the_bound() -> None:
    m = _module("""\
        %g = core.weight {name = "g"} : f32[16]
        %b = core.weight {name = "b"} : f32[16]
        %0 = core.mul %x, %x : f32[B,S,16]
        %1 = nn.layer_norm %0, %g, %b : f32[B,S,16]
        %2, %3 = nn.skip_layer_norm %1, %x, %g, %b : f32[B,S,16], f32[B,S,16]
        %4 = nn.rms_norm %2, %g {eps = 1e-06} : f32[B,S,16]
        %5 = core.add %4, %3 : f32[B,S,16]
        return %5
        """, "%x: f32[B,S,16]", "f32[B,S,16]", {"g": _f32(16), "b": _f32(16)})
    exe = _check(m, [_f32(2, 33, 16)])
    mem = exe.memory({"B": 2, "S": 33})
    assert mem["arena_bytes"] <= 1.07 * mem["lower_bound"]
    bound = next(iter(exe.programs.values()))
    assert bound.plan.shared  # at least one result reuses its input's bytes


def test_new_shapes_get_their_own_plan_and_reuse_kernels() -> None:
    m = _module("""\
        %0 = nn.softmax %x {axis = -1} : f32[B,S,S]
        return %0
        """, "%x: f32[B,S,S]", "f32[B,S,S]")
    exe = _check(m, [_f32(1, 5, 5)])
    _check(m, [_f32(3, 7, 7)])
    exe.run([_f32(3, 7, 7)])
    assert len(exe.programs) == 2
    names = [b.kernel_names for b in exe.programs.values()]
    assert names[0] == names[1]


def test_outputs_that_alias_inputs_or_each_other_are_private_copies() -> None:
    m = _module("""\
        %0 = core.reshape %x {shape = [B*S]} : f32[B*S]
        %1 = core.neg %x : f32[B,S]
        %2 = core.permute %1 {perm = [1, 0]} : f32[S,B]
        return %0, %1, %2
        """, "%x: f32[B,S]", "f32[B*S], f32[B,S], f32[S,B]")
    x = _f32(3, 4)
    keep = x.copy()
    outs = build(m, "cpu").run([x])
    x[...] = 0  # the outputs must not be views of the caller's input
    np.testing.assert_array_equal(outs[0], keep.reshape(-1))
    np.testing.assert_array_equal(outs[1], -keep)
    np.testing.assert_array_equal(outs[2], -keep.T)


class _Unlowered(OpDef):
    """An op kind no backend lowers (declared here, never registered: the registry stays the
    built-in one)."""

    name = "test.unlowered"
    operands = ("x",)

    def infer(self, types: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        return [types[0]]


def test_unsupported_op_fails_at_build_time_naming_it() -> None:
    m = _module("""\
        %0 = core.neg %x : f32[B,S]
        return %0
        """, "%x: f32[B,S]", "f32[B,S]")
    neg = next(iter(m.main))
    odd = Operation(_Unlowered(), [m.main.inputs[0]], [neg.results[0].type], loc="user.layer")
    m.main.insert_before(neg, odd)
    neg.results[0].replace_all_uses_with(odd.results[0])
    m.main.erase(neg)
    with pytest.raises(CpuLoweringError, match=r"no kernel for test.unlowered.*\n.*test.unlowered"):
        CpuExecutable(m)


def test_bad_inputs_are_rejected_before_any_kernel_runs() -> None:
    m = _module("""\
        %0 = core.neg %x : f32[B,S]
        return %0
        """, "%x: f32[B,S]", "f32[B,S]")
    exe = CpuExecutable(m)
    with pytest.raises(InputError, match="element type f32"):
        exe.run([np.zeros((2, 3), np.float64)])
    with pytest.raises(InputError, match="rank 2"):
        exe.run([np.zeros((2, 3, 1), np.float32)])


def test_checked_mode_runs_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTLLM_CPU_CHECKED", "1")
    m = _module("""\
        %0 = core.exp %x : f32[B,S]
        %1 = core.sub %0, %x : f32[B,S]
        return %1
        """, "%x: f32[B,S]", "f32[B,S]")
    exe = _check(m, [_f32(4, 9)])
    assert next(iter(exe.programs.values())).guards is not None


def test_norm_region_with_a_skip_norm_and_rope_of_any_rank() -> None:
    m = _module("""\
        %g = core.weight {name = "g"} : f32[8]
        %0, %1 = fused.region %x, %y, %g {kind = "norm"} : f32[B,8], f32[B,8] {
          ^(%a: f32[B,8], %b: f32[B,8], %w: f32[8]):
          %0 = core.mul %a, %b : f32[B,8]
          %1 = core.exp %b : f32[B,8]
          %2, %3 = nn.skip_rms_norm %0, %1, %w {eps = 1e-06} : f32[B,8], f32[B,8]
          return %2, %3
        }
        %r = nn.rope %v, %c, %s : f32[8]
        return %0, %1, %r
        """, "%x: f32[B,8], %y: f32[B,8], %v: f32[8], %c: f32[8], %s: f32[8]", "f32[B,8], f32[B,8], f32[8]",
        {"g": _f32(8)})
    _check(m, [_f32(5, 8), _f32(5, 8), _f32(8), _f32(8), _f32(8)])


@pytest.fixture
def gemm_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set ``OPTLLM_GEMM`` for one test; the process-wide ``packed_gemm()`` choice is recomputed
    for it and again after it."""
    from optllm.backends.kernels.llvm.runtime import packed_gemm

    def choose(value: str) -> None:
        monkeypatch.setenv("OPTLLM_GEMM", value)
        packed_gemm.cache_clear()

    yield choose
    monkeypatch.undo()
    packed_gemm.cache_clear()


def test_gemm_choice_follows_the_env_and_the_cpu_vendor(gemm_env: Callable[[str], None],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """MKL's packed GEMM is the automatic choice on Intel CPUs only (MKL runs its slow paths on
    others); OPTLLM_GEMM names either one, and an unknown value is refused."""
    from optllm.backends.kernels.llvm import runtime

    gemm_env("")
    monkeypatch.setattr(runtime, "cpu_vendor", lambda: "GenuineIntel")
    assert runtime.gemm_choice() == "mkl"
    monkeypatch.setattr(runtime, "cpu_vendor", lambda: "AuthenticAMD")
    assert runtime.gemm_choice() == "openblas"
    assert runtime.packed_gemm() is None
    gemm_env("mkl")
    assert runtime.gemm_choice() == "mkl"
    gemm_env("openblas")
    monkeypatch.setattr(runtime, "cpu_vendor", lambda: "GenuineIntel")
    assert runtime.gemm_choice() == "openblas"
    gemm_env("fast")
    with pytest.raises(ValueError, match="OPTLLM_GEMM='fast'"):
        runtime.gemm_choice()


@pytest.mark.parametrize("gemm", ["mkl", "openblas"])
def test_large_weights_use_the_packed_gemm_at_every_row_count(gemm: str, gemm_env: Callable[[str], None]) -> None:
    """A weight above PACKED_MIN_ELEMENTS is packed once (MKL panels, when chosen and torch's
    MKL is there) and serves every input shape; the panel buffer is used where it was packed.
    Both GEMM choices run here whatever this machine's CPU would pick."""
    from optllm.backends.cpu.lower import PACKED_MIN_ELEMENTS

    gemm_env(gemm)

    k, n = 384, 512
    assert k * n >= PACKED_MIN_ELEMENTS
    m = _module(f"""\
        %w = core.weight {{name = "w"}} : f32[{n},{k}]
        %y = nn.linear %x, %w {{transpose_w = true, activation = "silu"}} : f32[B,S,{n}]
        return %y
        """, f"%x: f32[B,S,{k}]", f"f32[B,S,{n}]", {"w": _f32(n, k)})
    exe = CpuExecutable(m)
    for b, s in [(1, 1), (2, 9), (1, 130), (3, 7)]:
        x = _f32(b, s, k)
        np.testing.assert_allclose(exe.run([x])[0], run_module(m, [x])[0], rtol=1e-4, atol=1e-4)
    docs = {st.kernel.doc for bound in exe.programs.values() for st in bound.program.steps}
    from optllm.backends.kernels.llvm.runtime import packed_gemm

    assert any("packed=True" in d for d in docs) == (packed_gemm() is not None)


def test_calls_from_several_threads_take_turns_and_stay_correct() -> None:
    import threading

    m = _module("""\
        %0 = core.exp %x : f32[B,S]
        %1 = nn.softmax %0 {axis = -1} : f32[B,S]
        return %1
        """, "%x: f32[B,S]", "f32[B,S]")
    exe = CpuExecutable(m)
    inputs = [_f32(3, 50 + i) for i in range(6)]
    want = [run_module(m, [x])[0] for x in inputs]
    errors: list[str] = []

    def worker(i: int) -> None:
        for _ in range(20):
            got = exe.run([inputs[i]])[0]
            if not np.allclose(got, want[i], rtol=1e-5, atol=1e-6):
                errors.append(f"thread {i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_linear_of_a_broadcast_row_view_copies_it_for_blas() -> None:
    """Found by the ONNX fuzzer (saved case cpu-expand-gemm): Expand made x's rows one row with
    stride 0, which reached SGEMM as lda = 0 (refused, the output left as the arena held it)."""
    m = _module("""\
        %0 = core.reshape %x {shape = [1, 3]} : f32[1,3]
        %1 = core.expand %0 {shape = [4, 3]} : f32[4,3]
        %2 = nn.linear %1, %w : f32[4,2]
        %3 = nn.layer_norm %1 {eps = 1e-5, ndim = 1} : f32[4,3]
        return %2, %3
        """, "%x: f32[3], %w: f32[3,2]", "f32[4,2], f32[4,3]")
    _check(m, [_f32(3), _f32(3, 2)])


def test_results_without_elements() -> None:
    """Found by the ONNX fuzzer (saved case cpu-empty-result): viewing a zero-element output
    crashed in the executor."""
    m = _module("""\
        %0 = core.slice %x {axis = 0, start = 1, end = 3, step = 1} : f32[0,3]
        %1 = core.neg %0 : f32[0,3]
        %2 = core.cumsum %1 {axis = 0} : f32[0,3]
        return %1, %2, %0
        """, "%x: f32[1,3]", "f32[0,3], f32[0,3], f32[0,3]")
    _check(m, [_f32(1, 3)])
