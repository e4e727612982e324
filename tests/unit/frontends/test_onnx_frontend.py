"""ONNX frontend: small hand-built models against onnxruntime, shape folding, external data,
functions, and the errors for unsupported or broken input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from optllm.backends.reference import run_module  # noqa: E402
from optllm.frontends.onnx import FrontendError, import_onnx  # noqa: E402
from optllm.ir import verify_module  # noqa: E402

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=(), opset=17, functions=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions))
    m.ir_version = 8
    return m


def _ort(model_or_path, feeds):
    src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)


def _mlp(w_size=(8, 4)):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal(w_size).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(w_size[1]).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["hb"], name="add"),
             helper.make_node("Relu", ["hb"], ["y"], name="relu")]
    x = helper.make_tensor_value_info("x", F, ["batch", "sequence", w_size[0]])
    y = helper.make_tensor_value_info("y", F, ["batch", "sequence", w_size[1]])
    return _model(nodes, [x], [y], [w, b])


def test_mlp_matches_onnxruntime_with_symbolic_dims() -> None:
    m = _mlp()
    imp = import_onnx(m)
    g = imp.module.main
    assert str(g.inputs[0].type) == "f32[B,S,8]"
    assert imp.signature.input_names == ["x"]
    verify_module(imp.module)
    assert {op.loc for op in g if op.name not in ("core.weight", "core.constant")} == {"mm", "add", "relu"}
    for shape in ((2, 3, 8), (1, 5, 8)):
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(run_module(imp.module, [x])[0], _ort(m, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_shape_arithmetic_becomes_attributes() -> None:
    # y = Reshape(x, Concat(Shape(x)[0], Shape(x)[1] * Shape(x)[2])): x[B,S,4] -> [B, S*4]
    c = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(v, np.int64)))  # noqa: E731
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             c("i0", 0), c("i1", 1), c("i2", 2), c("ax", [0]),
             helper.make_node("Gather", ["s", "i0"], ["d0"], name="g0"),
             helper.make_node("Gather", ["s", "i1"], ["d1"], name="g1"),
             helper.make_node("Gather", ["s", "i2"], ["d2"], name="g2"),
             helper.make_node("Mul", ["d1", "d2"], ["d12"], name="mul"),
             helper.make_node("Unsqueeze", ["d0", "ax"], ["u0"], name="u0"),
             helper.make_node("Unsqueeze", ["d12", "ax"], ["u1"], name="u1"),
             helper.make_node("Concat", ["u0", "u1"], ["shp"], axis=0, name="cat"),
             helper.make_node("Reshape", ["x", "shp"], ["y"], name="reshape")]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, ["B", None, 4])],
               [helper.make_tensor_value_info("y", F, None)])
    imp = import_onnx(m)
    ops = [op.name for op in imp.module.main]
    assert ops == ["core.reshape"], ops
    out = imp.module.main.outputs[0].type
    assert str(out).startswith("f32[B,") and out.rank == 2
    x = np.ones((2, 3, 4), np.float32)
    np.testing.assert_allclose(run_module(imp.module, [x])[0], _ort(m, {"x": x})[0])


def test_external_data_is_read_lazily(tmp_path: Path) -> None:
    m = _mlp((64, 32))
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="m.data",
              size_threshold=0)
    imp = import_onnx(path)
    table = imp.module.constants
    assert table._lazy, "external initializers are registered lazily"
    x = np.random.default_rng(2).standard_normal((2, 3, 64)).astype(np.float32)
    np.testing.assert_allclose(run_module(imp.module, [x])[0], _ort(str(path), {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_local_functions_are_inlined() -> None:
    fn = helper.make_function("local", "Double", ["a"], ["b"],
                              [helper.make_node("Add", ["a", "a"], ["b"])], [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("Double", ["x"], ["y"], domain="local", name="dbl")]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, ["N"])], [helper.make_tensor_value_info("y", F, ["N"])],
               functions=[fn])
    m.opset_import.append(helper.make_opsetid("local", 1))
    imp = import_onnx(m)
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_allclose(run_module(imp.module, [x])[0], 2 * x)


def test_unsupported_ops_are_listed_in_one_error() -> None:
    nodes = [helper.make_node("FancyOp", ["x"], ["a"], name="first", domain="my.domain"),
             helper.make_node("OtherOp", ["a"], ["y"], name="second", domain="my.domain")]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, [2])], [helper.make_tensor_value_info("y", F, [2])])
    m.opset_import.append(helper.make_opsetid("my.domain", 1))
    with pytest.raises(FrontendError) as e:
        import_onnx(m)
    msg = str(e.value)
    assert "'first' (my.domain::FancyOp" in msg and "'second' (my.domain::OtherOp" in msg


def test_old_opset_and_bad_dtype_are_errors() -> None:
    m = _model([helper.make_node("Relu", ["x"], ["y"], name="r")],
               [helper.make_tensor_value_info("x", TensorProto.COMPLEX64, [2])],
               [helper.make_tensor_value_info("y", TensorProto.COMPLEX64, [2])], opset=11)
    with pytest.raises(FrontendError, match=r"opset 11 is not supported(.|\n)*COMPLEX64"):
        import_onnx(m)


# -- bad input (issue 4 item 6) --------------------------------------------------------------------------
def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    data = _mlp((64, 32)).SerializeToString()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrontendError, match=r"bad\.onnx.*(truncated|corrupt)"):
        import_onnx(path)


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\xfe not a protobuf at all \x00\x01" * 10)
    with pytest.raises(FrontendError, match=r"junk\.onnx"):
        import_onnx(path)


def test_missing_external_data_names_file_and_tensor(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_mlp((64, 32)), str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    (tmp_path / "w.bin").unlink()
    with pytest.raises(FrontendError, match=r"m\.onnx(.|\n)*initializer 'w'(.|\n)*w\.bin.*missing"):
        import_onnx(path)


def test_output_depending_on_missing_input_names_the_node(tmp_path: Path) -> None:
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add_ghost")]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, [2])], [helper.make_tensor_value_info("y", F, [2])])
    path = tmp_path / "ghost.onnx"
    onnx.save(m, str(path))
    with pytest.raises(FrontendError, match=r"ghost\.onnx(.|\n)*node 'add_ghost' \(Add\) reads 'ghost'"):
        import_onnx(path)


@pytest.mark.parametrize("kind", ["truncated", "ghost"])
def test_cli_import_of_bad_onnx_exits_2_and_writes_nothing(tmp_path: Path, capsys, kind: str) -> None:
    from optllm.tools.opt_llm import main

    path = tmp_path / "bad.onnx"
    if kind == "truncated":
        data = _mlp((64, 32)).SerializeToString()
        path.write_bytes(data[: len(data) // 2])
    else:
        nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add_ghost")]
        onnx.save(_model(nodes, [helper.make_tensor_value_info("x", F, [2])],
                         [helper.make_tensor_value_info("y", F, [2])]), str(path))
    out = tmp_path / "x.oir"
    assert main(["import", str(path), "-o", str(out)]) == 2
    assert "bad.onnx" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_cli_import_and_compile_of_onnx(tmp_path: Path) -> None:
    import optllm
    from optllm.tools.opt_llm import main

    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), str(path))
    assert main(["import", str(path), "-o", str(tmp_path / "mlp.oir")]) == 0
    assert (tmp_path / "mlp.oir").exists()
    cm = optllm.compile(str(path))
    x = np.random.default_rng(3).standard_normal((2, 3, 8)).astype(np.float32)
    out = cm(x=x)
    assert list(out) == ["y"]
    np.testing.assert_allclose(out["y"], _ort(str(path), {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_truncated_external_data_names_file_and_tensor(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_mlp((64, 32)), str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    data = (tmp_path / "w.bin").read_bytes()
    (tmp_path / "w.bin").write_bytes(data[:100])
    with pytest.raises(FrontendError, match=r"m\.onnx(.|\n)*initializer 'w'(.|\n)*w\.bin.*truncated"):
        import_onnx(path)


@pytest.mark.parametrize("opset", [13, 17, 18, 21, 28])
def test_opset_range(opset: int) -> None:
    # y = Softmax(x - ReduceMean(x, axes=[-1])) then Unsqueeze/Squeeze round trip
    axes = numpy_helper.from_array(np.asarray([-1], np.int64), "axes")
    ax0 = numpy_helper.from_array(np.asarray([0], np.int64), "ax0")
    if opset >= 18:
        mean = helper.make_node("ReduceMean", ["x", "axes"], ["m"], name="mean")
    else:
        mean = helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1], name="mean")
    nodes = [mean, helper.make_node("Sub", ["x", "m"], ["d"], name="sub"),
             helper.make_node("Softmax", ["d"], ["s"], axis=-1, name="softmax"),
             helper.make_node("Unsqueeze", ["s", "ax0"], ["u"], name="unsq"),
             helper.make_node("Squeeze", ["u", "ax0"], ["y"], name="sq")]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, ["batch", 5])],
               [helper.make_tensor_value_info("y", F, ["batch", 5])], [axes, ax0], opset=opset)
    imp = import_onnx(m)
    x = np.random.default_rng(4).standard_normal((3, 5)).astype(np.float32)
    d = x - x.mean(-1, keepdims=True)
    want = np.exp(d) / np.exp(d).sum(-1, keepdims=True)
    np.testing.assert_allclose(run_module(imp.module, [x])[0], want, rtol=1e-5, atol=1e-6)


def test_external_data_over_2gb_is_memory_mapped(tmp_path: Path) -> None:
    # a 2.2 GB f32 table in a sparse file (no disk, no time): zeros but for a few rows written at
    # known offsets; Gather reads three rows, so only their pages are touched
    rows, width = 550_000, 1000
    nbytes = rows * width * 4
    assert nbytes > 2**31
    data = tmp_path / "table.bin"
    special = {7: 1.5, 123_456: -2.0, rows - 1: 3.25}
    with open(data, "wb") as f:
        f.truncate(nbytes)
        for row, value in special.items():
            f.seek(row * width * 4)
            f.write(np.arange(width, dtype="<f4").__mul__(value).tobytes())
    table = TensorProto(name="table", data_type=F, dims=[rows, width], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", data.name), ("offset", "0"), ("length", str(nbytes))):
        entry = table.external_data.add()
        entry.key, entry.value = key, value
    nodes = [helper.make_node("Gather", ["table", "ids"], ["y"], axis=0, name="lookup")]
    m = _model(nodes, [helper.make_tensor_value_info("ids", I64, ["N"])],
               [helper.make_tensor_value_info("y", F, ["N", width])], inits=[table])
    path = tmp_path / "big.onnx"
    onnx.save(m, str(path))
    imp = import_onnx(path)
    (name,) = imp.module.constants.names()
    arr = imp.module.constants[name]
    assert isinstance(arr, np.memmap) and arr.shape == (rows, width) and not arr.flags.writeable
    ids = np.asarray([7, 0, 123_456, rows - 1], np.int64)
    (y,) = run_module(imp.module, [ids])
    want = np.zeros((4, width), np.float32)
    for i, row in enumerate(ids):
        want[i] = np.arange(width, dtype=np.float32) * special.get(row, 0.0)
    np.testing.assert_array_equal(y, want)
    assert data.stat().st_blocks * 512 < 2**20, "the table file stays sparse"


@pytest.mark.parametrize("elem", [TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64])
def test_unsigned_integers(elem: int) -> None:
    from onnx.reference import ReferenceEvaluator

    # shifts, bitwise not, add/sub that wrap, min/max and compares on the full unsigned range
    dt = helper.tensor_dtype_to_np_dtype(elem)
    top = np.iinfo(dt).max
    x = np.asarray([0, 1, 5, top // 2 + 1, top - 1, top], dt)
    s = np.asarray([0, 1, 3, 1, np.iinfo(dt).bits - 1, 2], dt)
    names = ["shl", "shr", "not", "sum", "diff", "big", "less"]
    nodes = [helper.make_node("BitShift", ["x", "s"], ["shl"], direction="LEFT"),
             helper.make_node("BitShift", ["x", "s"], ["shr"], direction="RIGHT"),
             helper.make_node("BitwiseNot", ["x"], ["not"]),
             helper.make_node("Add", ["x", "s"], ["sum"]),
             helper.make_node("Sub", ["s", "x"], ["diff"]),
             helper.make_node("Max", ["x", "s"], ["big"]),
             helper.make_node("Less", ["s", "x"], ["less"])]
    ins = [helper.make_tensor_value_info(n, elem, [6]) for n in ("x", "s")]
    outs = [helper.make_tensor_value_info(n, TensorProto.BOOL if n == "less" else elem, [6]) for n in names]
    m = _model(nodes, ins, outs, opset=18)
    imp = import_onnx(m)
    got = run_module(imp.module, [x, s])
    want = ReferenceEvaluator(m).run(None, {"x": x, "s": s})  # onnxruntime has no u16 BitShift
    for name, g, w in zip(names, got, want):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("elem", [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
                                  TensorProto.FLOAT8E5M2FNUZ])
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_to_float8_saturates_unless_told_not_to(elem: int, saturate: int) -> None:
    from onnx.reference import ReferenceEvaluator

    x = np.asarray([1e6, -1e6, np.inf, -np.inf, np.nan, 0.3, -2.75, 300.0], np.float32)
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=elem, saturate=saturate),
             helper.make_node("Cast", ["y"], ["z"], to=F)]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, [8])],
               [helper.make_tensor_value_info("y", elem, [8]), helper.make_tensor_value_info("z", F, [8])], opset=21)
    y, z = run_module(import_onnx(m).module, [x])
    want_y, want_z = ReferenceEvaluator(m).run(None, {"x": x})
    assert y.dtype == helper.tensor_dtype_to_np_dtype(elem)
    np.testing.assert_array_equal(y.astype(np.float32), want_y.astype(np.float32))
    np.testing.assert_array_equal(z, want_z)


def test_float8_quantize_dequantize() -> None:
    import ml_dtypes
    from onnx.reference import ReferenceEvaluator

    x = np.asarray([[0.0, 1.1, -3.7, 1e5], [np.inf, -1e-3, 50.0, 2.5]], np.float32)
    scale = numpy_helper.from_array(np.asarray([0.5, 2.0], np.float32), "scale")
    zp = numpy_helper.from_array(np.zeros(2, ml_dtypes.float8_e4m3fn), "zp")
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], axis=0),
             helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], axis=0)]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 4])],
               [helper.make_tensor_value_info("q", TensorProto.FLOAT8E4M3FN, [2, 4]),
                helper.make_tensor_value_info("y", F, [2, 4])], inits=[scale, zp], opset=21)
    q, y = run_module(import_onnx(m).module, [x])
    want_q, want_y = ReferenceEvaluator(m).run(None, {"x": x})
    assert q.tobytes() == want_q.astype(q.dtype).tobytes()
    np.testing.assert_array_equal(y, want_y)
