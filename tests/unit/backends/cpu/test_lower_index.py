"""The cpu lowering of the indexing ops (``lower_index.py``) against the reference executor:
gather_elements, multi-index core.index, triangle, scatter_elements and scatter_nd with
negative indices, every reduction and duplicates, other element types, and out-of-range
indices reported as an error naming the op. Also the fused-region cases: non-uniform constants
and gathers whose table or ids the body computes."""

from __future__ import annotations

import numpy as np
import pytest

from optllm.backends.cpu import CpuExecutable, CpuLoweringError
from optllm.runtime.executor import RuntimeFault
from tests.unit.backends.cpu.test_cpu_lowering import _module
from tests.unit.backends.cpu.test_lower_core import _check

RNG = np.random.default_rng(5)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_gather_elements_any_axis_negative_and_smaller_indices(axis: int) -> None:
    ax = axis % 3
    idx_shape = [2, 3, 2]
    idx_shape[ax] = 5  # along the axis any length; off the axis at most x's
    t = f"f32[{','.join(map(str, idx_shape))}]"
    m = _module(f"""\
        %0 = core.gather_elements %x, %i {{axis = {axis}}} : {t}
        return %0
        """, f"%x: f32[3,4,2], %i: i64[{','.join(map(str, idx_shape))}]", t)
    n = [3, 4, 2][ax]
    exe = _check(m, [_f32(3, 4, 2), RNG.integers(-n, n, idx_shape)])
    bad = RNG.integers(-n, n, idx_shape)
    bad.flat[3] = n
    with pytest.raises(RuntimeFault, match=r"index out of range(.|\n)*core.gather_elements"):
        exe.run([_f32(3, 4, 2), bad])


def test_gather_elements_bert_token_type_buffer_and_i32_indices() -> None:
    # BERT: token_type_ids = buffer[:, :S].expand(B, S) gathered from the type embedding
    m = _module("""\
        %s = core.slice %buf {axis = 1, start = 0, end = S, step = 1} : i64[1,S]
        %e = core.expand %s {shape = [B, S]} : i64[B,S]
        %z = core.gather_elements %x, %i {axis = 0} : f32[2,S]
        %t = core.gather_elements %e, %j {axis = 1} : i64[B,S]
        return %z, %t
        """, "%buf: i64[1,16], %x: f32[B,S], %i: i32[2,S], %j: i32[B,S]", "f32[2,S], i64[B,S]")
    _check(m, [np.arange(16)[None], _f32(3, 5), RNG.integers(-3, 3, (2, 5)).astype(np.int32),
               RNG.integers(-5, 5, (3, 5)).astype(np.int32)])


def test_index_with_one_two_and_broadcast_index_tensors() -> None:
    m = _module("""\
        %0 = core.index %x, %a {axes = [0]} : f32[2,3,S,S,4]
        %1 = core.index %x, %b, %c {axes = [1, 2]} : f32[B,2,3,4]
        %2 = core.index %x, %s, %s, %s {axes = [0, 1, 2]} : f32[4]
        return %0, %1, %2
        """, "%x: f32[B,S,S,4], %a: i64[2,3], %b: i64[2,1], %c: i32[3], %s: i64[]", "f32[2,3,S,S,4], f32[B,2,3,4], f32[4]")
    exe = _check(m, [_f32(3, 5, 5, 4), RNG.integers(-3, 3, (2, 3)), RNG.integers(-5, 5, (2, 1)),
                     RNG.integers(-5, 5, (3,)).astype(np.int32), np.array(-1)])
    with pytest.raises(RuntimeFault, match=r"index out of range(.|\n)*core.index"):
        exe.run([_f32(3, 5, 5, 4), np.full((2, 3), 3), RNG.integers(-5, 5, (2, 1)),
                 RNG.integers(-5, 5, (3,)).astype(np.int32), np.array(0)])


def test_index_by_a_bool_mask_is_refused_naming_the_op() -> None:
    m = _module("""\
        %0 = core.index %x, %m {axes = [0]} : f32[S,4]
        return %0
        """, "%x: f32[S,4], %m: bool[S]", "f32[S,4]")
    with pytest.raises(CpuLoweringError, match=r"bool mask(.|\n)*core.index"):
        CpuExecutable(m)


@pytest.mark.parametrize("upper", [True, False])
@pytest.mark.parametrize("diagonal", [-2, 0, 1, 3])
def test_triangle(upper: bool, diagonal: int) -> None:
    m = _module(f"""\
        %0 = core.triangle %x {{upper = {str(upper).lower()}, diagonal = {diagonal}}} : f32[B,S,5]
        %1 = core.triangle %m {{upper = {str(upper).lower()}, diagonal = {diagonal}}} : bool[S,S]
        %2 = core.triangle %k {{upper = {str(upper).lower()}, diagonal = {diagonal}}} : i64[2,S,3]
        return %0, %1, %2
        """, "%x: f32[B,S,5], %m: bool[S,S], %k: i64[2,S,3]", "f32[B,S,5], bool[S,S], i64[2,S,3]")
    _check(m, [_f32(2, 4, 5), RNG.random((4, 4)) > 0.3, RNG.integers(1, 9, (2, 4, 3))])


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, 1])
def test_scatter_elements_reductions_duplicates_negative(reduction: str, axis: int) -> None:
    m = _module(f"""\
        %0 = core.scatter_elements %x, %i, %u {{axis = {axis}, reduction = "{reduction}"}} : f32[4,6]
        %1 = core.scatter_elements %k, %i, %v {{axis = {axis}, reduction = "{reduction}"}} : i64[4,6]
        return %0, %1
        """, "%x: f32[4,6], %i: i64[3,4], %u: f32[3,4], %k: i64[4,6], %v: i64[3,4]", "f32[4,6], i64[4,6]")
    n = 4 if axis == 0 else 6
    idx = RNG.integers(-n, n, (3, 4))
    idx[1, 1] = idx[0, 1] if axis == 0 else idx[1, 0]  # a duplicate: last write wins / all combine
    exe = _check(m, [_f32(4, 6), idx, _f32(3, 4), RNG.integers(-5, 5, (4, 6)), RNG.integers(-5, 5, (3, 4))])
    idx[2, 3] = n
    with pytest.raises(RuntimeFault, match=r"index out of range(.|\n)*core.scatter_elements"):
        exe.run([_f32(4, 6), idx, _f32(3, 4), RNG.integers(-5, 5, (4, 6)), RNG.integers(-5, 5, (3, 4))])


def test_scatter_elements_in_place_on_a_dead_input_and_bool_max() -> None:
    m = _module("""\
        %y = core.neg %x : f32[B,S]
        %0 = core.scatter_elements %y, %i, %u {axis = 1, reduction = "none"} : f32[B,S]
        %1 = core.scatter_elements %b, %j, %c {axis = 0, reduction = "max"} : bool[3,4]
        return %0, %1
        """, "%x: f32[B,S], %i: i64[B,2], %u: f32[B,2], %b: bool[3,4], %j: i64[2,4], %c: bool[2,4]",
                "f32[B,S], bool[3,4]")
    _check(m, [_f32(3, 5), RNG.integers(-5, 5, (3, 2)), _f32(3, 2), RNG.random((3, 4)) > 0.5,
               RNG.integers(-3, 3, (2, 4)), RNG.random((2, 4)) > 0.5])


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_depths_reductions_duplicates(reduction: str) -> None:
    m = _module(f"""\
        %0 = core.scatter_nd %x, %i1, %u1 {{reduction = "{reduction}"}} : f32[4,3,2]
        %1 = core.scatter_nd %x, %i2, %u2 {{reduction = "{reduction}"}} : f32[4,3,2]
        %2 = core.scatter_nd %x, %i3, %u3 {{reduction = "{reduction}"}} : f32[4,3,2]
        return %0, %1, %2
        """, "%x: f32[4,3,2], %i1: i64[3,1], %u1: f32[3,3,2], %i2: i64[2,2,2], %u2: f32[2,2,2], "
             "%i3: i64[5,3], %u3: f32[5]", "f32[4,3,2], f32[4,3,2], f32[4,3,2]")
    i1 = np.array([[0], [-1], [0]])  # a duplicate row
    i2 = np.array([[[1, 2], [-1, 0]], [[1, -1], [0, 0]]])
    i3 = np.array([[0, 0, 0], [3, 2, 1], [-4, -3, -2], [0, 0, 0], [2, 1, 0]])
    exe = _check(m, [_f32(4, 3, 2), i1, _f32(3, 3, 2), i2, _f32(2, 2, 2), i3, _f32(5)])
    i3[4, 1] = 3
    with pytest.raises(RuntimeFault, match=r"index out of range(.|\n)*core.scatter_nd"):
        exe.run([_f32(4, 3, 2), i1, _f32(3, 3, 2), i2, _f32(2, 2, 2), i3, _f32(5)])


def test_region_with_a_non_uniform_constant_and_a_gather_of_computed_ids() -> None:
    m = _module("""\
        %0 = fused.region %x, %i {kind = "elementwise"} : f32[B,3] {
          ^(%a: f32[B,3], %j: i64[B]):
          %c = core.constant {value = dense<f32[3]: [1.0, -2.0, 0.5]>} : f32[3]
          %t = core.constant {value = dense<f32[4,3]: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 0.5, 0.25, 0.125]>} : f32[4,3]
          %one = core.constant {value = dense<i64[]: 1>} : i64[]
          %k = core.add %j, %one : i64[B]
          %g = core.gather %t, %k {axis = 0} : f32[B,3]
          %1 = core.mul %a, %c : f32[B,3]
          %2 = core.add %1, %g : f32[B,3]
          return %2
        }
        return %0
        """, "%x: f32[B,3], %i: i64[B]", "f32[B,3]")
    exe = _check(m, [_f32(5, 3), RNG.integers(-5, 3, (5,))])
    with pytest.raises(RuntimeFault, match=r"index out of range(.|\n)*fused.region"):
        exe.run([_f32(5, 3), np.array([0, 3, 1, 0, 0])])  # 3 + 1 is past the table
