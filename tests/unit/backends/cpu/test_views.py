"""``View`` arithmetic agrees with numpy's strided arrays (hypothesis), and ``collapse`` keeps
every operand's addressing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from optllm.runtime.views import View, collapse, contiguous_strides


def _materialize(base: np.ndarray, v: View) -> np.ndarray:
    item = base.itemsize
    return np.lib.stride_tricks.as_strided(base[v.offset:], shape=v.shape, strides=[s * item for s in v.strides])


def _numpy_view_reshape(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    b = a.view()
    try:
        b.shape = shape  # raises when numpy would have to copy
    except AttributeError:
        return None
    return b


@st.composite
def views(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, View]:
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    base = np.arange(int(np.prod(shape)) + 8, dtype=np.float32)
    arr = base[:int(np.prod(shape))].reshape(shape)
    view = View(0, 0, shape, contiguous_strides(shape), np.dtype(np.float32))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["permute", "slice", "expand", "reshape"]))
        if kind == "permute":
            perm = draw(st.permutations(range(arr.ndim)))
            arr, view = arr.transpose(perm), view.permute(perm)
        elif kind == "slice":
            ax = draw(st.integers(0, arr.ndim - 1))
            n = arr.shape[ax]
            start = draw(st.integers(0, n - 1))
            stop = draw(st.integers(start + 1, n))
            step = draw(st.integers(1, 2))
            idx = [slice(None)] * arr.ndim
            idx[ax] = slice(start, stop, step)
            arr, view = arr[tuple(idx)], view.slice(ax, start, stop, step)
        elif kind == "expand":
            new = tuple(draw(st.integers(1, 3)) if d == 1 else d for d in arr.shape)
            new = (draw(st.integers(1, 2)),) * draw(st.integers(0, 1)) + new
            arr, view = np.broadcast_to(arr, new), view.expand(new)
        else:
            flat = int(np.prod(arr.shape))
            divisors = [d for d in range(1, flat + 1) if flat % d == 0]
            d = draw(st.sampled_from(divisors))
            new = (d, flat // d)
            got = view.reshape(new)
            want = _numpy_view_reshape(arr, new)
            assert (got is None) == (want is None) or (got is not None and want is None and view.numel <= 1)
            if got is None or want is None:
                continue
            arr, view = want, got
    return base, arr, view


@settings(max_examples=300, deadline=None)
@given(views())
def test_views_address_the_same_elements_as_numpy(case: tuple[np.ndarray, np.ndarray, View]) -> None:
    base, arr, view = case
    assert view.shape == arr.shape
    np.testing.assert_array_equal(_materialize(base, view), arr)
    rows = view.rows()
    if rows is not None and arr.size:
        n_rows, row_stride, n = rows
        assert n_rows * n == arr.size
        flat = np.stack([base[view.offset + r * row_stride: view.offset + r * row_stride + n] for r in range(n_rows)])
        np.testing.assert_array_equal(flat.reshape(arr.shape), arr)


@settings(max_examples=200, deadline=None)
@given(views())
def test_collapse_keeps_addressing(case: tuple[np.ndarray, np.ndarray, View]) -> None:
    base, arr, view = case
    out_strides = contiguous_strides(view.shape)
    shape, (cs_out, cs_in) = collapse(view.shape, [out_strides, view.strides])
    assert int(np.prod(shape)) == arr.size
    got = np.lib.stride_tricks.as_strided(base[view.offset:], shape=shape, strides=[s * 4 for s in cs_in])
    np.testing.assert_array_equal(got.reshape(-1), arr.reshape(-1))
    nontrivial = [d for d in view.shape if d != 1]
    if nontrivial and nontrivial[-1] >= 16:  # a long inner dim stays the inner loop
        assert shape[-1] == nontrivial[-1]
