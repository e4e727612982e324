"""ONNX ops at the corners of their spec, each a one-node graph run by the reference target
and compared with onnxruntime: Gemm's broadcasting C, MatMul with 1-D and broadcast batch
operands, Slice with negative steps and out-of-range bounds, Gather with negative, scalar and
2-D indices, Min of shape values, and a Reshape target holding min(c, S)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402

from optllm.frontends.onnx.dims import resolve_minmax  # noqa: E402
from optllm.ir.symbolic import SymExpr, sym_min  # noqa: E402
from optllm.testing.onnx_fuzz import Case, Value, check  # noqa: E402

F = np.dtype(np.float32)
RNG = np.random.default_rng(0)


def one_node(op: str, inputs: dict[str, np.ndarray], inits: dict[str, np.ndarray], out_rank: int,
             dims: dict[str, list[Any]] | None = None, **attrs: Any) -> Case:
    case = Case(0, 18, {"batch": 2, "seq": 3})
    case.nodes = [helper.make_node(op, list(inputs) + list(inits), ["y"], **attrs)]
    case.inputs, case.outputs, case.inits = list(inputs), ["y"], dict(inits)
    case.types = {n: Value(n, a.dtype, (dims or {}).get(n, list(a.shape))) for n, a in inputs.items()}
    case.types["y"] = Value("y", F, [f"d{i}" for i in range(out_rank)])
    case.feeds = dict(inputs)
    return case


def f32(*shape: int) -> np.ndarray:
    return RNG.uniform(-2, 2, shape).astype(np.float32)


@pytest.mark.parametrize("cshape", [[], [1], [4], [1, 4], [3, 1], [3, 4]])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_c_broadcasts(cshape: list[int], trans_b: int) -> None:
    w = f32(4, 5) if trans_b else f32(5, 4)
    case = one_node("Gemm", {"a": f32(3, 5)}, {"w": w, "c": f32(*cshape)}, 2, transB=trans_b, alpha=0.5, beta=2.0)
    assert check(case, "reference").kind == "ok"


@pytest.mark.parametrize("ashape,bshape", [([4], [4, 3]), ([2, 3, 4], [4]), ([4], [2, 4, 3]), ([4], [4]),
                                           ([2, 1, 3, 4], [5, 4, 2]), ([3, 4], [2, 4, 2])])
def test_matmul_numpy_semantics(ashape: list[int], bshape: list[int]) -> None:
    out_rank = len(np.matmul(np.zeros(ashape), np.zeros(bshape)).shape)
    case = one_node("MatMul", {"a": f32(*ashape)}, {"b": f32(*bshape)}, out_rank)
    assert check(case, "reference").kind == "ok"


BIG = 2**63 - 1


@pytest.mark.parametrize("start,end,step", [(-1, -BIG - 1, -1), (4, 0, -2), (10, -10, -1), (-100, 100, 1),
                                            (2, -1, 1), (-2, BIG, 1), (3, 3, -1), (0, -1, -3)])
def test_slice_spec_bounds(start: int, end: int, step: int) -> None:
    consts = {"s": np.asarray([start], np.int64), "e": np.asarray([end], np.int64),
              "ax": np.asarray([1], np.int64), "st": np.asarray([step], np.int64)}
    case = one_node("Slice", {"x": f32(2, 5)}, consts, 2)
    assert check(case, "reference").kind == "ok"


@pytest.mark.parametrize("start,end,step", [(-1, -BIG - 1, -1), (BIG, -BIG - 1, -1), (0, BIG, 1), (-2, BIG, 1)])
def test_slice_symbolic_axis(start: int, end: int, step: int) -> None:
    """Slices of a dynamic axis: reversed whole, or a window at one end."""
    consts = {"s": np.asarray([start], np.int64), "e": np.asarray([end], np.int64),
              "ax": np.asarray([1], np.int64), "st": np.asarray([step], np.int64)}
    case = one_node("Slice", {"x": f32(2, 3)}, consts, 2, {"x": [2, "seq"]})
    assert check(case, "reference").kind == "ok"


@pytest.mark.parametrize("idx", [np.asarray(-1), np.asarray([-3, 0, 2, -1]), np.asarray([[-1, 0], [1, -2]])])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("as_input", [False, True])
def test_gather_indices_any_sign_and_rank(idx: np.ndarray, axis: int, as_input: bool) -> None:
    x = f32(3, 4)
    idx = idx.astype(np.int64)
    inputs, inits = ({"x": x, "i": idx}, {}) if as_input else ({"x": x}, {"i": idx})
    case = one_node("Gather", inputs, inits, 2 - 1 + idx.ndim, axis=axis)
    assert check(case, "reference").kind == "ok"


def test_gather_table_with_negative_ids() -> None:
    """A constant rank-2 table gathered on axis 0 becomes nn.embedding, which needs ids >= 0."""
    case = one_node("Gather", {"i": np.asarray([[-1, 2], [0, -4]], np.int64)}, {"x": f32(5, 3)}, 3)
    case.nodes[0].input[:] = ["x", "i"]
    assert check(case, "reference").kind == "ok"


def test_reshape_resolves_min_by_element_count() -> None:
    s = SymExpr.symbol("S")
    b = SymExpr.symbol("B")
    assert resolve_minmax([b, s, 4, 16], [b, sym_min(2048, s), 64]) == [b, s, 64]
    assert resolve_minmax([b, s, 64], [b, sym_min(2048, s), 64]) == [b, s, 64]
    assert resolve_minmax([b, 7], [b, sym_min(2048, s)]) == [b, sym_min(2048, s)]  # no choice fits: unchanged


@pytest.mark.parametrize("pads", [[0, 1, 0, 0, -1, 0], [0, 2, 0, 0, 1, 0], [0, -1, 0, 0, 2, 0]])
def test_constant_pad_on_symbolic_axis(pads: list[int]) -> None:
    """RWKV's time shift: ZeroPad2d((0, 0, 1, -1)) pads one step in front of S and crops one at the end."""
    case = one_node("Pad", {"x": f32(2, 3, 3)}, {"p": np.asarray(pads, np.int64)}, 3, {"x": ["batch", "seq", 3]},
                    mode="constant")
    assert check(case, "reference").kind == "ok"
