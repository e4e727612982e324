"""``nn.linear`` and ``nn.attention`` in f16, bf16 and f64 (``lower_loop_gemm.py``): loop-nest
kernels following the numpy references step by step; f32 stays on the BLAS / fused templates."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest

from tests.unit.backends.cpu.test_cpu_lowering import _module
from tests.unit.backends.cpu.test_lower_core import _check, _steps

RNG = np.random.default_rng(13)
TYPES = {"f16": (np.float16, 2e-2), "bf16": (ml_dtypes.bfloat16, 5e-2), "f64": (np.float64, 1e-12)}


def _x(dtype: str, *shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(TYPES[dtype][0])


@pytest.mark.parametrize("dtype", sorted(TYPES))
@pytest.mark.parametrize("transpose_w,bias,activation,residual",
                         list(itertools.product([False, True], [False, True], ["none", "gelu_tanh", "silu"], [False, True]))[::2])
def test_linear_other_float_types(dtype: str, transpose_w: bool, bias: bool, activation: str, residual: bool) -> None:
    w_shape = "5,4" if transpose_w else "4,5"
    operands = "%x, %w" + (", %b" if bias else "") + (", %r" if residual else "")
    sig = f"%x: {dtype}[B,S,4], %w: {dtype}[{w_shape}], %b: {dtype}[5], %r: {dtype}[B,S,5]"
    m = _module(f"""\
        %0 = nn.linear {operands} {{transpose_w = {str(transpose_w).lower()}, bias = {str(bias).lower()}, residual = {str(residual).lower()}, activation = "{activation}"}} : {dtype}[B,S,5]
        return %0
        """, sig, f"{dtype}[B,S,5]")
    tol = TYPES[dtype][1]
    w = _x(dtype, 5, 4) if transpose_w else _x(dtype, 4, 5)
    _check(m, [_x(dtype, 2, 3, 4), w, _x(dtype, 5), _x(dtype, 2, 3, 5)], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", sorted(TYPES))
@pytest.mark.parametrize("mask", ["none", "bool", "additive"])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_other_float_types_gqa_masks(dtype: str, mask: str, causal: bool) -> None:
    operands = "%q, %k, %v" + (", %m" if mask != "none" else "")
    mask_t = "bool[B,1,1,6]" if mask == "bool" else f"{dtype}[1,1,4,6]"
    m = _module(f"""\
        %0 = nn.attention {operands} {{causal = {str(causal).lower()}}} : {dtype}[B,4,4,3]
        return %0
        """, f"%q: {dtype}[B,4,4,3], %k: {dtype}[B,2,6,3], %v: {dtype}[B,2,6,3], %m: {mask_t}", f"{dtype}[B,4,4,3]")
    tol = TYPES[dtype][1]
    if mask == "bool":
        mv = RNG.random((2, 1, 1, 6)) > 0.3
        mv[..., 0] = True  # no fully masked row
    else:
        mv = np.where(RNG.random((1, 1, 4, 6)) > 0.3, 0.0, -1e4).astype(TYPES[dtype][0])
    exe = _check(m, [_x(dtype, 2, 4, 4, 3), _x(dtype, 2, 2, 6, 3), _x(dtype, 2, 2, 6, 3), mv], rtol=tol, atol=tol)
    assert "nn.attention" in _steps(exe)


def test_f32_keeps_the_blas_and_fused_templates() -> None:
    m = _module("""\
        %0 = nn.linear %x, %w : f32[B,5]
        %1 = nn.attention %q, %q, %q : f32[B,2,4,3]
        return %0, %1
        """, "%x: f32[B,4], %w: f32[4,5], %q: f32[B,2,4,3]", "f32[B,5], f32[B,2,4,3]")
    exe = _check(m, [_x("f64", 3, 4).astype(np.float32), _x("f64", 4, 5).astype(np.float32),
                     _x("f64", 3, 2, 4, 3).astype(np.float32)])
    names = [s.kernel.name for b in exe.programs.values() for s in b.program.steps]
    assert len(names) == 2  # one GEMM kernel and one fused attention kernel, no loop nests
