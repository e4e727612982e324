"""The cpu lowering of reductions and batched matmul (``lower_core.py``) on hand-written modules:
strided, permuted, sliced and broadcast operands, keepdim, every reduction kind and element
type, NaN propagation, batch broadcasting, BLAS orientations and the loop-nest fallback."""

from __future__ import annotations

import numpy as np
import pytest

from optllm.backends.cpu import CpuExecutable
from optllm.backends.kernels.kir import F64, I64, KIRError, ScalarType
from optllm.backends.kernels.templates.matmul import matmul_loop_kernel, matmul_sgemm_kernel
from optllm.backends.kernels.templates.reduce import reduce_kernel
from optllm.backends.reference import run_module
from optllm.ir import Module
from tests.unit.backends.cpu.test_cpu_lowering import _module

RNG = np.random.default_rng(7)


def _check(m: Module, inputs: list[np.ndarray], rtol: float = 1e-5, atol: float = 1e-5,
           threads: int | None = None) -> CpuExecutable:
    exe = CpuExecutable(m, threads=threads)
    got = exe.run(inputs)
    with np.errstate(all="ignore"):
        want = run_module(m, inputs)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"output #{i}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=f"output #{i}")
        else:
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol,
                                       err_msg=f"output #{i}")
    return exe


def _steps(exe: CpuExecutable) -> list[str]:
    bound = next(iter(exe.programs.values()))
    return [s.kernel.doc.split(" ")[0] if s.kernel.doc.startswith("core.") else s.op.name
            for s in bound.program.steps]


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# -- reductions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sum", "mean", "max", "min", "prod"])
@pytest.mark.parametrize("axes,keepdim", [([-1], False), ([1], True), ([0, 2], False), ([0, 2], True),
                                          ([0, 1, 2], False), ([1, 2], True)])
def test_reduce_kinds_axes_and_keepdim(kind: str, axes: list[int], keepdim: bool) -> None:
    shape = ["B", "S", "6"]
    out = [("1" if keepdim else None) if i in [a % 3 for a in axes] else d for i, d in enumerate(shape)]
    out_t = f"f32[{','.join(d for d in out if d is not None)}]"
    m = _module(f"""\
        %0 = core.reduce_{kind} %x {{axes = {axes}, keepdim = {str(keepdim).lower()}}} : {out_t}
        return %0
        """, "%x: f32[B,S,6]", out_t)
    x = (RNG.random((3, 5, 6)) + 0.5).astype(np.float32)  # prod stays well scaled
    _check(m, [x])


def test_reduce_reads_permuted_and_sliced_views_in_place() -> None:
    m = _module("""\
        %p = core.permute %x {perm = [2, 0, 1]} : f32[8,B,S]
        %s = core.slice %p {axis = 0, start = 1, end = 8, step = 2} : f32[4,B,S]
        %0 = core.reduce_sum %s {axes = [0]} : f32[B,S]
        %1 = core.reduce_max %p {axes = [1, 2], keepdim = true} : f32[8,1,1]
        %2 = core.reduce_mean %s {axes = [-1]} : f32[4,B]
        return %0, %1, %2
        """, "%x: f32[B,S,8]", "f32[B,S], f32[8,1,1], f32[4,B]")
    exe = _check(m, [_f32(3, 7, 8)])
    assert _steps(exe) == ["core.reduce_sum", "core.reduce_max", "core.reduce_mean"]  # no copies


def test_reduce_over_axes_that_do_not_collapse_copies_once() -> None:
    m = _module("""\
        %s = core.slice %x {axis = 2, start = 0, end = 5} : f32[B,S,5]
        %0 = core.reduce_sum %s {axes = [0, 2]} : f32[S]
        return %0
        """, "%x: f32[B,S,8]", "f32[S]")
    exe = _check(m, [_f32(3, 7, 8)])
    assert _steps(exe) == ["core.reduce_sum", "core.reduce_sum"]  # the copy, then the reduction
    kernels = [s.kernel.name for s in next(iter(exe.programs.values())).program.steps]
    assert len(set(kernels)) == 2


def test_reduce_of_a_broadcast_view() -> None:
    m = _module("""\
        %e = core.expand %x {shape = [3, B, 4]} : f32[3,B,4]
        %0 = core.reduce_sum %e {axes = [0, 2]} : f32[B]
        %1 = core.reduce_min %e {axes = [0]} : f32[B,4]
        return %0, %1
        """, "%x: f32[B,1]", "f32[B], f32[B,4]")
    _check(m, [_f32(5, 1)])


def test_reduce_max_min_propagate_nan() -> None:
    m = _module("""\
        %0 = core.reduce_max %x {axes = [1]} : f32[B]
        %1 = core.reduce_min %x {axes = [1]} : f32[B]
        %2 = core.reduce_max %x {axes = [0], keepdim = true} : f32[1,S]
        return %0, %1, %2
        """, "%x: f32[B,S]", "f32[B], f32[B], f32[1,S]")
    x = _f32(4, 9)
    x[1, 0] = np.nan
    x[2, 8] = np.nan
    x[3, 4] = np.inf
    exe = CpuExecutable(m)
    got = exe.run([x])
    want = run_module(m, [x])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(g[~np.isnan(g)], w[~np.isnan(w)])
    assert np.isnan(got[0][1]) and np.isnan(got[1][2]) and got[0][3] == np.inf


@pytest.mark.parametrize("dtype", ["i64", "i32", "i8"])
def test_reduce_integers_wrap_like_numpy(dtype: str) -> None:
    m = _module(f"""\
        %0 = core.reduce_sum %x {{axes = [1]}} : {dtype}[B]
        %1 = core.reduce_max %x {{axes = [0, 1]}} : {dtype}[]
        %2 = core.reduce_min %x {{axes = [1], keepdim = true}} : {dtype}[B,1]
        %3 = core.reduce_prod %x {{axes = [1]}} : {dtype}[B]
        return %0, %1, %2, %3
        """, f"%x: {dtype}[B,S]", f"{dtype}[B], {dtype}[], {dtype}[B,1], {dtype}[B]")
    info = np.iinfo(np.dtype(dtype.replace("i", "int")))
    x = RNG.integers(info.min // 2, info.max // 2, (3, 40)).astype(info.dtype)  # sums and products wrap
    _check(m, [x])


def test_reduce_bools_and_any_all() -> None:
    m = _module("""\
        %0 = core.reduce_sum %x {axes = [1]} : bool[B]
        %1 = core.reduce_max %x {axes = [1]} : bool[B]
        %2 = core.reduce_min %x {axes = [1]} : bool[B]
        %3 = core.reduce_any %y {axes = [0]} : bool[S]
        %4 = core.reduce_all %y {axes = [0]} : bool[S]
        return %0, %1, %2, %3, %4
        """, "%x: bool[B,S], %y: i64[B,S]", "bool[B], bool[B], bool[B], bool[S], bool[S]")
    x = RNG.random((4, 6)) > 0.5
    x[0] = False
    x[1] = True
    y = RNG.integers(0, 2, (4, 6))
    y[:, 0] = 1
    y[:, 1] = 0
    _check(m, [x, y])


@pytest.mark.parametrize("dtype,rtol", [("f16", 2e-3), ("f64", 1e-12)])
def test_reduce_float_types(dtype: str, rtol: float) -> None:
    m = _module(f"""\
        %0 = core.reduce_sum %x {{axes = [-1]}} : {dtype}[B]
        %1 = core.reduce_mean %x {{axes = [0, 1], keepdim = true}} : {dtype}[1,1]
        %2 = core.reduce_max %x {{axes = [0]}} : {dtype}[S]
        return %0, %1, %2
        """, f"%x: {dtype}[B,S]", f"{dtype}[B], {dtype}[1,1], {dtype}[S]")
    x = RNG.standard_normal((5, 300)).astype({"f16": np.float16, "f64": np.float64}[dtype])
    _check(m, [x], rtol=rtol, atol=rtol * 10)


def test_reduce_with_a_size_one_reduced_axis_and_a_scalar_input() -> None:
    m = _module("""\
        %0 = core.reduce_sum %x {axes = [1]} : f32[B,3]
        %1 = core.reduce_max %y {axes = []} : f32[]
        %2 = core.reduce_mean %x {axes = [1, 2], keepdim = true} : f32[B,1,1]
        return %0, %1, %2
        """, "%x: f32[B,1,3], %y: f32[]", "f32[B,3], f32[], f32[B,1,1]")
    _check(m, [_f32(4, 1, 3), np.array(2.5, np.float32)])


# -- matmul ------------------------------------------------------------------------------------


def test_matmul_batch_broadcast_and_transposed_operand_without_copies() -> None:
    m = _module("""\
        %t = core.permute %y {perm = [0, 2, 1]} : f32[3,8,S]
        %0 = core.matmul %x, %t : f32[B,3,S,S]
        return %0
        """, "%x: f32[B,1,S,8], %y: f32[3,S,8]", "f32[B,3,S,S]")
    exe = _check(m, [_f32(2, 1, 7, 8), _f32(3, 7, 8)])
    assert _steps(exe) == ["core.matmul"]
    step = next(iter(exe.programs.values())).program.steps[0]
    assert step.args["trans_b"].value == 1 and step.args["ldb"].value == 8


def test_matmul_transposed_left_operand_and_sliced_rows() -> None:
    m = _module("""\
        %w = core.weight {name = "w"} : f32[6,5]
        %s = core.slice %x {axis = 2, start = 0, end = 6} : f32[B,S,6]
        %t = core.permute %s {perm = [0, 2, 1]} : f32[B,6,S]
        %0 = core.matmul %t, %s : f32[B,6,6]
        %1 = core.matmul %s, %w : f32[B,S,5]
        return %0, %1
        """, "%x: f32[B,S,10]", "f32[B,6,6], f32[B,S,5]", {"w": _f32(6, 5)})
    exe = _check(m, [_f32(2, 9, 10)])
    assert _steps(exe) == ["core.matmul", "core.matmul"]


def test_matmul_copies_an_operand_blas_cannot_read() -> None:
    # a broadcast row (stride 0 on M) and a column-strided slice (inner stride 2, row stride 8)
    m = _module("""\
        %e = core.expand %x {shape = [B, 4, 8]} : f32[B,4,8]
        %s = core.slice %y {axis = 1, start = 0, end = 8, step = 2} : f32[8,4]
        %0 = core.matmul %e, %s : f32[B,4,4]
        return %0
        """, "%x: f32[B,1,8], %y: f32[8,8]", "f32[B,4,4]")
    exe = _check(m, [_f32(3, 1, 8), _f32(8, 8)])
    assert _steps(exe).count("core.matmul") == 3  # two copies and the GEMM


@pytest.mark.parametrize("mkn", [(1, 1, 1), (1, 7, 3), (5, 1, 4), (6, 4, 1), (70, 9, 33)])
def test_matmul_degenerate_and_row_split_sizes(mkn: tuple[int, int, int]) -> None:
    mm, k, n = mkn
    m = _module(f"""\
        %0 = core.matmul %a, %b : f32[B,{mm},{n}]
        %1 = core.matmul %a, %c : f32[B,{mm},{n}]
        return %0, %1
        """, f"%a: f32[B,{mm},{k}], %b: f32[B,{k},{n}], %c: f32[{k},{n}]", f"f32[B,{mm},{n}], f32[B,{mm},{n}]")
    _check(m, [_f32(1, mm, k), _f32(1, k, n), _f32(k, n)], threads=4)  # one batch item: rows split


def test_matmul_output_in_a_permuted_layout() -> None:
    m = _module("""\
        %0 = core.matmul %x, %y : f32[B,3,S,4]
        %1 = core.permute %0 {perm = [0, 2, 1, 3]} : f32[B,S,3,4]
        return %1
        """, "%x: f32[B,3,S,5], %y: f32[3,5,4]", "f32[B,S,3,4]")
    _check(m, [_f32(2, 3, 6, 5), _f32(3, 5, 4)])


@pytest.mark.parametrize("dtype", ["f64", "f16", "i64", "i32", "bool"])
def test_matmul_other_element_types_use_the_loop_kernel(dtype: str) -> None:
    m = _module(f"""\
        %t = core.permute %y {{perm = [1, 0]}} : {dtype}[7,S]
        %0 = core.matmul %x, %t : {dtype}[B,S,S]
        return %0
        """, f"%x: {dtype}[B,S,7], %y: {dtype}[S,7]", f"{dtype}[B,S,S]")
    np_t = {"f64": np.float64, "f16": np.float16, "i64": np.int64, "i32": np.int32, "bool": np.bool_}[dtype]
    if dtype == "bool":
        x, y = RNG.random((2, 5, 7)) > 0.6, RNG.random((5, 7)) > 0.6
    elif dtype.startswith("i"):
        x, y = RNG.integers(-9, 10, (2, 5, 7)).astype(np_t), RNG.integers(-9, 10, (5, 7)).astype(np_t)
    else:
        x, y = RNG.standard_normal((2, 5, 7)).astype(np_t), RNG.standard_normal((5, 7)).astype(np_t)
    rtol = 2e-3 if dtype == "f16" else 1e-12
    exe = _check(m, [x, y], rtol=rtol, atol=rtol)
    assert _steps(exe) == ["core.matmul"]


def test_matmul_with_empty_contraction_is_zero() -> None:
    m = _module("""\
        %0 = core.matmul %x, %y : f32[B,3,4]
        return %0
        """, "%x: f32[B,3,0], %y: f32[0,4]", "f32[B,3,4]")
    # (the reference executor cannot run this one: its batch-fold reshape(-1, 0) fails)
    got = CpuExecutable(m).run([np.zeros((2, 3, 0), np.float32), np.zeros((0, 4), np.float32)])
    np.testing.assert_array_equal(got[0], np.zeros((2, 3, 4), np.float32))


# -- templates ---------------------------------------------------------------------------------


def test_templates_reject_bad_arguments() -> None:
    with pytest.raises(KIRError, match="unknown reduction"):
        reduce_kernel("median", F64, 1)
    with pytest.raises(KIRError, match="floating"):
        reduce_kernel("mean", I64, 1)
    with pytest.raises(KIRError, match="rank >= 1"):
        reduce_kernel("sum", F64, 0)
    with pytest.raises(KIRError, match="rank >= 1"):
        matmul_sgemm_kernel(0)
    with pytest.raises(KIRError, match="rank >= 1"):
        matmul_loop_kernel(ScalarType.F16, 0)


def test_template_kernels_are_keyed_by_signature_not_size() -> None:
    assert reduce_kernel("sum", F64, 2).key() == reduce_kernel("sum", F64, 2).key()
    assert reduce_kernel("sum", F64, 2).key() != reduce_kernel("sum", F64, 2, inner="contig").key()
    assert matmul_loop_kernel(I64, 1).key() != matmul_loop_kernel(F64, 1).key()
