"""``core.argmin``: np.argmin's semantics (first minimum, the first NaN wins) on the reference
and the cpu target for every element type, and ONNX ``ArgMin`` through it against onnxruntime.
It replaced ``argmax(-x)``, which is wrong for unsigned ints (-x wraps; 0 stays 0) and for the
minimum signed int (-INT_MIN = INT_MIN)."""

from __future__ import annotations

import numpy as np
import pytest

from optllm.backends.cpu import CpuExecutable
from optllm.backends.reference import run_module
from optllm.ir import parse_module

RNG = np.random.default_rng(41)
TYPES = {"u8": np.uint8, "i8": np.int8, "i32": np.int32, "i64": np.int64,
         "f16": np.float16, "f32": np.float32, "f64": np.float64, "bool": np.bool_}


def _module(dtype: str, shape: tuple[int, ...], axis: int, keepdim: bool):  # type: ignore[no-untyped-def]
    ax = axis % len(shape)
    out = [1 if i == ax else d for i, d in enumerate(shape)] if keepdim else [d for i, d in enumerate(shape) if i != ax]
    out_t = f"i64[{','.join(map(str, out))}]"
    text = f"""module @m {{
  func @forward(%x: {dtype}[{','.join(map(str, shape))}]) -> ({out_t}) {{
    %0 = core.argmin %x {{axis = {axis}, keepdim = {str(keepdim).lower()}}} : {out_t}
    return %0
  }}
}}
"""
    return parse_module(text)


def _data(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    t = TYPES[dtype]
    if dtype == "bool":
        return RNG.random(shape) > 0.5
    if dtype.startswith("u"):
        x = RNG.integers(0, 4, shape).astype(t)
        x.flat[::7] = np.iinfo(t).max
        return x
    if dtype.startswith("i"):
        x = RNG.integers(-3, 4, shape).astype(t)
        x.flat[::5] = np.iinfo(t).min  # argmax(-x) took INT_MIN for the largest value
        return x
    x = np.round(RNG.standard_normal(shape)).astype(t)  # many ties
    x.flat[3] = np.nan
    x.flat[17] = np.nan
    return x


def test_reference_is_numpy_argmin() -> None:
    m = _module("u8", (2, 3), -1, False)
    x = np.array([[3, 0, 0], [255, 7, 1]], np.uint8)
    np.testing.assert_array_equal(run_module(m, [x])[0], [1, 2])
    m = _module("f32", (2, 3), 1, True)
    x = np.array([[1.0, np.nan, np.nan], [2.0, -1.0, -1.0]], np.float32)
    np.testing.assert_array_equal(run_module(m, [x])[0], [[1], [1]])
    m = _module("i8", (1, 3), 1, False)
    np.testing.assert_array_equal(run_module(m, [np.array([[5, -128, -128]], np.int8)])[0], [1])


@pytest.mark.parametrize("dtype", sorted(TYPES))
@pytest.mark.parametrize("axis,keepdim", [(0, False), (1, True), (-1, False)])
def test_cpu_matches_numpy(dtype: str, axis: int, keepdim: bool) -> None:
    shape = (4, 6, 5)
    m = _module(dtype, shape, axis, keepdim)
    x = _data(dtype, shape)
    got = CpuExecutable(m).run([x])[0]
    want = np.argmin(x, axis=axis, keepdims=keepdim)
    np.testing.assert_array_equal(run_module(m, [x])[0], want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["u8", "i32", "i64", "f32"])
@pytest.mark.parametrize("last", [0, 1])
def test_onnx_argmin_matches_onnxruntime(dtype: str, last: int, tmp_path: object) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import helper as h

    import optllm

    elem = {"u8": onnx.TensorProto.UINT8, "i32": onnx.TensorProto.INT32, "i64": onnx.TensorProto.INT64,
            "f32": onnx.TensorProto.FLOAT}[dtype]
    node = h.make_node("ArgMin", ["x"], ["y"], axis=1, keepdims=0, select_last_index=last)
    g = h.make_graph([node], "g", [h.make_tensor_value_info("x", elem, [3, 6])],
                     [h.make_tensor_value_info("y", onnx.TensorProto.INT64, [3])])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 8
    path = f"{tmp_path}/argmin.onnx"
    onnx.save(model, path)
    x = _data(dtype, (3, 6))
    if dtype == "f32":
        x = np.nan_to_num(x)  # onnxruntime's NaN handling is not numpy's; the IR follows numpy
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    for target in ("reference", "cpu"):
        cm = optllm.compile(path, {"x": x}, target=target)
        out = cm(x=x)
        got = out["y"] if isinstance(out, dict) else out
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=target)


@pytest.mark.parametrize("dim,keepdim", [(-1, False), (0, True), (None, False)])
def test_torch_argmin_imports_as_core_argmin(dim: int | None, keepdim: bool) -> None:
    import torch

    import optllm

    class M(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.argmin(x, dim=dim, keepdim=keepdim)

    x = torch.tensor([[3, -(2**63), -(2**63), 1], [0, 5, -1, -1], [7, 7, 7, 7]], dtype=torch.int64)
    want = M()(x).numpy()
    for target in ("reference", "cpu"):
        got = np.asarray(optllm.compile(M(), (x,), target=target, passes="O0")(x))
        np.testing.assert_array_equal(got, want, err_msg=target)
