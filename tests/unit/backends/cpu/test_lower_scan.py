"""The cpu lowering of the ops that walk one axis (``lower_scan.py``): cumsum and cumprod in
every element type (numpy's per-step rounding, integer wrap, bool or/and), argmax (first
maximum, NaN wins), topk (stable order, NaN last, k > n an error), on strided views."""

from __future__ import annotations

import numpy as np
import pytest

from optllm.runtime.executor import RuntimeFault
from tests.unit.backends.cpu.test_cpu_lowering import _module
from tests.unit.backends.cpu.test_lower_core import _check, _steps

RNG = np.random.default_rng(3)


def _data(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bool":
        return RNG.random(shape) > 0.6
    if dtype.startswith(("i", "u")):
        return RNG.integers(-4, 5, shape).astype(dtype)
    return (RNG.random(shape) + 0.5).astype(dtype)  # positive: products stay well scaled


@pytest.mark.parametrize("op", ["cumsum", "cumprod"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", ["f32", "f16", "f64", "i64", "i32", "bool"])
def test_scans_every_axis_and_type(op: str, axis: int, dtype: str) -> None:
    m = _module(f"""\
        %0 = core.{op} %x {{axis = {axis}}} : {dtype}[B,S,5]
        return %0
        """, f"%x: {dtype}[B,S,5]", f"{dtype}[B,S,5]")
    np_dtype = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32", "bool": "bool"}[dtype]
    _check(m, [_data(np_dtype, (3, 7, 5))], rtol=2e-3 if dtype == "f16" else 1e-5)


def test_cumsum_of_a_long_f16_row_rounds_every_step_like_numpy() -> None:
    m = _module("""\
        %0 = core.cumsum %x {axis = 0} : f16[S]
        return %0
        """, "%x: f16[S]", "f16[S]")
    x = np.full(3000, 0.1, np.float16)  # 2048 + 0.1 rounds back to 2048 in f16: the sum stalls
    _check(m, [x], rtol=0, atol=0)


def test_cumsum_integers_wrap() -> None:
    m = _module("""\
        %0 = core.cumsum %x {axis = 0} : i32[S]
        return %0
        """, "%x: i32[S]", "i32[S]")
    _check(m, [np.array([2**31 - 1, 1, 5, -7], np.int32)])


def test_scans_read_permuted_views_in_place_and_the_position_ids_pattern() -> None:
    m = _module("""\
        %p = core.permute %x {perm = [1, 0]} : f32[S,B]
        %0 = core.cumprod %p {axis = 0} : f32[S,B]
        %c = core.cumsum %mask {axis = 1} : i64[B,S]
        %one = core.constant {value = dense<i64[]: 1>} : i64[]
        %pos = core.sub %c, %one : i64[B,S]
        return %0, %pos
        """, "%x: f32[B,S], %mask: i64[B,S]", "f32[S,B], i64[B,S]")
    exe = _check(m, [_data("float32", (3, 9)), np.array([[1] * 9, [0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9])])
    assert _steps(exe) == ["core.cumprod", "core.cumsum", "core.sub"]  # the permuted view is read in place


@pytest.mark.parametrize("axis,keepdim", [(0, False), (1, True), (-1, False), (2, True)])
def test_argmax_axes_keepdim_ties_and_nan(axis: int, keepdim: bool) -> None:
    shape = [3, 6, 4]
    ax = axis % 3
    out = [1 if i == ax else d for i, d in enumerate(shape)] if keepdim else [d for i, d in enumerate(shape) if i != ax]
    out_t = f"i64[{','.join(map(str, out))}]"
    m = _module(f"""\
        %0 = core.argmax %x {{axis = {axis}, keepdim = {str(keepdim).lower()}}} : {out_t}
        return %0
        """, "%x: f32[3,6,4]", out_t)
    x = np.round(RNG.standard_normal(shape)).astype(np.float32)  # many ties
    x[1, 2, 3] = np.nan
    x[2, 0, 0] = np.nan
    x[2, 3, 0] = np.nan
    _check(m, [x])


@pytest.mark.parametrize("dtype", ["i64", "i32", "bool", "f16"])
def test_argmax_other_types(dtype: str) -> None:
    np_dtype = {"i64": "int64", "i32": "int32", "bool": "bool", "f16": "float16"}[dtype]
    m = _module("""\
        %0 = core.argmax %x {axis = 1} : i64[B]
        return %0
        """, f"%x: {dtype}[B,S]", "i64[B]")
    _check(m, [_data(np_dtype, (5, 9))])


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("axis", [0, 1])
def test_topk_stable_order_ties_and_nan(largest: bool, axis: int) -> None:
    k = 3
    out_shape = "3,7" if axis == 0 else "5,3"
    m = _module(f"""\
        %0, %1 = core.topk %x {{k = {k}, axis = {axis}, largest = {str(largest).lower()}}} : f32[{out_shape}], i64[{out_shape}]
        return %0, %1
        """, "%x: f32[5,7]", f"f32[{out_shape}], i64[{out_shape}]")
    x = np.round(RNG.standard_normal((5, 7))).astype(np.float32)
    x[0, :3] = np.nan  # NaN after every number, in index order
    x[:, 6] = np.nan
    x[4] = np.nan
    _check(m, [x])


def test_topk_whole_row_integers_and_k_past_the_row_is_an_error() -> None:
    m = _module("""\
        %0, %1 = core.topk %x {k = 4, axis = -1} : i32[B,4], i64[B,4]
        return %0, %1
        """, "%x: i32[B,S]", "i32[B,4], i64[B,4]")
    exe = _check(m, [RNG.integers(-2, 3, (3, 4)).astype(np.int32)])  # k = n: a full stable sort
    _check(m, [RNG.integers(-2, 3, (2, 9)).astype(np.int32)])
    with pytest.raises(RuntimeFault, match=r"(.|\n)*core.topk"):
        exe.run([np.zeros((2, 3), np.int32)])


@pytest.mark.parametrize("op", ["cumsum", "cumprod"])
def test_scan_of_a_rank_0_tensor_keeps_its_shape(op: str) -> None:
    """The reference returned numpy's 1-element vector for a 0-d scan (its type says f32[])."""
    m = _module(f"""\
        %0 = core.{op} %x {{axis = 0}} : f32[]
        return %0
        """, "%x: f32[]", "f32[]")
    _check(m, [np.array(2.5, np.float32)])
