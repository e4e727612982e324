"""The cpu lowering of ``core.einsum`` (``lower_einsum.py``): one loop nest for any equation,
checked against numpy's einsum through the reference executor."""

from __future__ import annotations

import numpy as np
import pytest

from optllm.ir import Builder, DType, Graph, Module, TensorType
from tests.unit.backends.cpu.test_lower_core import _check

RNG = np.random.default_rng(9)

CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 5, 4), (2, 3, 6, 4)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("ij->ji", [(3, 5)]),
    ("ij", [(3, 5)]),
    ("ji", [(3, 5)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,jk", [(2, 3, 3, 4), (4, 5)]),
    ("i,i->", [(7,), (7,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("bij->b", [(3, 4, 5)]),
    ("ijk->kji", [(2, 3, 4)]),
    ("iij->j", [(3, 3, 2)]),
    ("ij,jk->ki", [(3, 4), (4, 5)]),
    ("bij,bjk->kbi", [(2, 3, 4), (2, 4, 5)]),
    ("bqhd,bkhd->bhqk", [(2, 5, 3, 4), (2, 6, 3, 4)]),
    ("ik,jk->", [(3, 4), (5, 4)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("i,i->i", [(5,), (5,)]),
]


def _einsum_module(equation: str, shapes: list[tuple[int, ...]], dtype: DType) -> Module:
    m = Module("m")
    g = m.add_graph(Graph("forward", [TensorType(s, dtype) for s in shapes], [f"x{i}" for i in range(len(shapes))]))
    b = Builder.at_end(g)
    g.set_outputs([b.op("core.einsum", *g.inputs, equation=equation)])
    return m


@pytest.mark.parametrize("equation,shapes", CASES, ids=[c[0] for c in CASES])
def test_einsum_equations(equation: str, shapes: list[tuple[int, ...]]) -> None:
    xs = [RNG.standard_normal(s).astype(np.float32) for s in shapes]
    _check(_einsum_module(equation, shapes, DType.f32), xs)


@pytest.mark.parametrize("dtype,rtol", [(DType.f16, 2e-2), (DType.f64, 1e-12), (DType.i64, 0), (DType.i32, 0)])
def test_einsum_element_types(dtype: DType, rtol: float) -> None:
    shapes = [(2, 3, 4), (2, 4, 5)]
    if dtype.is_float:
        xs = [RNG.standard_normal(s).astype(dtype.to_numpy()) for s in shapes]
    else:
        xs = [RNG.integers(-4, 5, s).astype(dtype.to_numpy()) for s in shapes]
    _check(_einsum_module("bij,bjk->bik", shapes, dtype), xs, rtol=rtol, atol=rtol)


def test_einsum_broadcast_ellipsis_and_a_size_one_batch() -> None:
    shapes = [(1, 3, 4), (2, 4, 5)]
    xs = [RNG.standard_normal(s).astype(np.float32) for s in shapes]
    _check(_einsum_module("...ij,...jk->...ik", shapes, DType.f32), xs)


@pytest.mark.parametrize("equation,shapes,path", [
    ("bij,jk->bik", [(2, 3, 4), (4, 5)], "core.matmul"),
    ("bqhd,bkhd->bhqk", [(2, 5, 3, 4), (2, 6, 3, 4)], "core.matmul"),
    ("ii->i", [(4, 4)], "core.einsum"),
    ("ij,ij->i", [(3, 4), (1, 4)], "core.einsum"),  # a broadcast size-1 dim: the loop nest
])
def test_matrix_products_take_the_gemm_lowering(equation: str, shapes: list[tuple[int, ...]], path: str) -> None:
    xs = [RNG.standard_normal(s).astype(np.float32) for s in shapes]
    exe = _check(_einsum_module(equation, shapes, DType.f32), xs)
    docs = [s.kernel.doc for b in exe.programs.values() for s in b.program.steps]
    assert any(d.startswith(path) for d in docs), docs
