"""Element types, tensor types and typed attributes (text forms, Dense, schema coercion)."""

from __future__ import annotations

import math
import struct

import ml_dtypes
import numpy as np
import pytest

from optllm.ir import AttrKind, Dense, DType, TensorType, attr, parse_type
from optllm.ir.attributes import AttrError, coerce, format_attr, format_dense, format_float
from optllm.ir.parser import Parser
from optllm.ir.symbolic import SymExpr

B = SymExpr.symbol("B")
S = SymExpr.symbol("S")


# -- types ---------------------------------------------------------------------------------------
def test_tensor_type_prints_like_hlo() -> None:
    assert str(TensorType((B, S, 768), DType.f32)) == "f32[B,S,768]"
    assert str(TensorType((), DType.bool)) == "bool[]"
    assert str(TensorType((B * S, 768), DType.bf16)) == "bf16[B*S,768]"


def test_tensor_type_equality_and_hash() -> None:
    a = TensorType((S * B, 2), DType.f16)
    b = TensorType((B * S, 2), DType.f16)
    assert a == b and hash(a) == hash(b)
    assert a != a.with_dtype(DType.f32)
    assert TensorType([2, 3], DType.f32) == TensorType((2, 3), DType.f32)  # type: ignore[arg-type]
    assert TensorType((np.int64(2),), DType.f32).shape == (2,)  # type: ignore[arg-type]
    assert isinstance(TensorType((np.int64(2),), DType.f32).shape[0], int)  # type: ignore[arg-type]


def test_tensor_type_rejects_bad_dims() -> None:
    with pytest.raises(ValueError, match="negative"):
        TensorType((-1,), DType.f32)
    with pytest.raises(TypeError, match="invalid dimension"):
        TensorType((True,), DType.f32)
    with pytest.raises(TypeError, match="invalid dimension"):
        TensorType((2.0,), DType.f32)  # type: ignore[arg-type]


def test_tensor_type_queries() -> None:
    t = TensorType((B, S, 4), DType.f16)
    assert t.rank == 3 and not t.is_static and t.symbols() == {"B", "S"}
    assert t.concrete_shape({"B": 2, "S": 3}) == (2, 3, 4)
    assert t.numel({"B": 2, "S": 3}) == 24
    assert t.nbytes({"B": 2, "S": 3}) == 48
    assert TensorType((8,), DType.i4).nbytes() == 4
    assert TensorType((2, 3), DType.f32).is_static


@pytest.mark.parametrize("dt", list(DType))
def test_dtype_numpy_round_trip(dt: DType) -> None:
    assert DType.from_numpy(dt.to_numpy()) is dt
    assert DType.parse(str(dt)) is dt
    assert dt.bits == {DType.i4: 4, DType.bool: 8}.get(dt, np.dtype(dt.to_numpy()).itemsize * 8)


def test_dtype_numpy_extensions() -> None:
    assert DType.bf16.to_numpy() == np.dtype(ml_dtypes.bfloat16)
    assert DType.i4.to_numpy() == np.dtype(ml_dtypes.int4)
    assert DType.bf16.is_float and not DType.bf16.is_int and DType.i4.is_int and not DType.bool.is_int
    with pytest.raises(ValueError, match="no optllm DType"):
        DType.from_numpy(np.complex64)
    with pytest.raises(ValueError, match="expected one of"):
        DType.parse("f8")


@pytest.mark.parametrize("text", ["f32[B,S,768]", "bool[]", "i4[3]", "bf16[B*S,2*S+1]",
                                  "i64[floordiv(S,2),max(4,S)]", "u8[0]"])
def test_parse_type_round_trip(text: str) -> None:
    assert str(parse_type(text)) == text


# -- floats --------------------------------------------------------------------------------------
FLOATS = [0.0, -0.0, 1.0, -1.5, 1e-05, 1e-5 * 3, 0.1, 1 / 3, 1e300, 5e-324, 2.0**70, 123456789.0,
          float(np.float32(0.1)), math.pi, float("inf"), float("-inf")]


@pytest.mark.parametrize("x", FLOATS)
def test_float_text_round_trips_exactly(x: float) -> None:
    text = format_float(x)
    assert any(c in text for c in ".en"), text  # always reads as a float, never as an int
    p = Parser(text)
    back = p.atom(text, 0)
    assert isinstance(back, float)
    assert struct.pack("<d", back) == struct.pack("<d", x)  # bitwise: -0.0 stays -0.0


def test_float_special_spellings() -> None:
    assert format_float(-0.0) == "-0.0"
    assert format_float(1e-05) == "1e-05"
    assert format_float(float("nan")) == "nan"
    assert format_float(float("-inf")) == "-inf"
    assert format_float(3.0) == "3.0"
    assert math.isnan(Parser("nan").atom("nan", 0))


# -- attribute values ------------------------------------------------------------------------------
def test_format_attr_values() -> None:
    assert format_attr(True) == "true" and format_attr(np.bool_(False)) == "false"
    assert format_attr(3) == "3" and format_attr(np.int64(-2)) == "-2"
    assert format_attr(2.5) == "2.5" and format_attr(np.float32(0.5)) == "0.5"
    assert format_attr('a "q"\n\\') == '"a \\"q\\"\\n\\\\"'
    assert format_attr(DType.bf16) == "bf16"
    assert format_attr((B, S, 768)) == "[B, S, 768]"
    assert format_attr([]) == "[]"
    assert format_attr(None) == "none"
    with pytest.raises(TypeError, match="cannot print"):
        format_attr(object())


def _parse_attr(text: str) -> object:
    p = Parser(text)
    v = p.attr_value()
    p.ws()
    assert p.pos == len(text), f"trailing text in {text!r}"
    return v


@pytest.mark.parametrize("value", [
    3, -7, 2.5, -0.0, 1e-05, float("inf"), True, False, "gelu \"tanh\"\n", DType.i4, [1, 2, 3], [],
    [1.0, -0.0, 1e-05], [B, S * B, 768], [[1, 2], [3]],
])
def test_attr_text_round_trip(value: object) -> None:
    text = format_attr(value)
    back = _parse_attr(text)
    expected = list(value) if isinstance(value, tuple) else value
    assert format_attr(back) == text
    assert back == expected or (isinstance(value, float) and struct.pack("<d", back) == struct.pack("<d", value))


def test_coerce_by_schema() -> None:
    assert coerce("a", attr(AttrKind.FLOAT), 1) == 1.0 and isinstance(coerce("a", attr(AttrKind.FLOAT), 1), float)
    assert coerce("a", attr(AttrKind.INTS), [1, np.int64(2)]) == (1, 2)
    assert coerce("a", attr(AttrKind.SHAPE), [B, 2]) == (B, 2)
    assert coerce("a", attr(AttrKind.DTYPE), "f16") is DType.f16
    assert coerce("a", attr(AttrKind.DIM), S) == S
    with pytest.raises(AttrError, match="'a' expects an int, got true"):
        coerce("a", attr(AttrKind.INT), True)
    with pytest.raises(AttrError, match="expects a float"):
        coerce("a", attr(AttrKind.FLOAT), "x")
    with pytest.raises(AttrError, match="expects a list of ints"):
        coerce("a", attr(AttrKind.INTS), [1.5])
    with pytest.raises(AttrError, match="expects a string"):
        coerce("a", attr(AttrKind.STR), 3)
    with pytest.raises(AttrError, match="expects dense"):
        coerce("a", attr(AttrKind.DENSE), [1.0])


# -- Dense -------------------------------------------------------------------------------------------
def test_dense_splat_and_non_splat() -> None:
    assert format_dense(Dense.from_array(np.zeros((4, 4), np.float32))) == "dense<f32[4,4]: splat 0.0>"
    assert format_dense(Dense.from_array(np.array([1.0, 2.0], np.float32))) == "dense<f32[2]: [1.0, 2.0]>"
    assert format_dense(Dense.from_array(np.float32(0.125))) == "dense<f32[]: 0.125>"
    assert format_dense(Dense.from_array(np.array([7], np.int64))) == "dense<i64[1]: [7]>"
    assert format_dense(Dense.from_array(np.zeros((0, 3), np.float32))) == "dense<f32[0,3]: []>"
    assert format_dense(Dense.from_array(np.array([True, False]))) == "dense<bool[2]: [true, false]>"
    # 0.0 and -0.0 compare equal but are different constants: not a splat
    mixed = Dense.from_array(np.array([0.0, -0.0], np.float32))
    assert not mixed.is_splat()
    assert format_dense(mixed) == "dense<f32[2]: [0.0, -0.0]>"
    assert format_dense(Dense.from_array(np.full(3, np.nan, np.float32))) == "dense<f32[3]: splat nan>"


@pytest.mark.parametrize("arr", [
    np.array([1.0, -0.0, np.inf, -np.inf, 1e-05, 0.1], np.float32),
    np.array([[0.1, 1 / 3], [1e-30, 65504.0]], np.float64),
    np.array([0.1, -2.5, 65504.0, 6e-08], np.float16),
    np.array([0.1, 3.0, -1e30, 1 / 3], ml_dtypes.bfloat16),
    np.array([-8, 7, 0, 3], ml_dtypes.int4),
    np.array([-(2**63), 2**63 - 1, 0], np.int64),
    np.array([0, 255, 7], np.uint8),
    np.array([[True], [False]]),
    np.full((2, 3), -0.0, np.float32),
    np.full((3,), 0.1, ml_dtypes.bfloat16),
    np.array(-0.0, np.float32),
    np.array(5, np.int32),
])
def test_dense_text_round_trip_is_bitwise(arr: np.ndarray) -> None:
    d = Dense.from_array(arr)
    text = format_dense(d)
    back = _parse_attr(text)
    assert isinstance(back, Dense)
    assert back == d, text
    assert back.to_array().tobytes() == np.ascontiguousarray(arr).tobytes()
    assert format_dense(back) == text


def test_dense_nan_round_trip() -> None:
    d = Dense.from_array(np.array([np.nan, 1.0], np.float32))
    back = _parse_attr(format_dense(d))
    assert isinstance(back, Dense)
    np.testing.assert_array_equal(back.to_array(), d.to_array())


def test_dense_equality_hash_and_dtype_override() -> None:
    a = Dense.from_array([1.0, 2.0], DType.f16)
    assert a.type == TensorType((2,), DType.f16)
    assert a == Dense.from_array(np.array([1, 2], np.float16)) and hash(a) == hash(Dense.from_array(np.array([1, 2], np.float16)))
    assert a != Dense.from_array(np.array([1, 2], np.float32))
    assert a.to_array().dtype == np.float16
    arr = a.to_array()
    arr[0] = 9  # to_array copies: the attribute is immutable
    assert a.to_array()[0] == 1


@pytest.mark.parametrize("text,msg", [
    ("dense<f32[2]: [1.0]>", "needs 2 values, got 1"),
    ("dense<f32[S]: [1.0]>", "static shape"),
    ("dense<f32[2]: [1.0, 2.0]", "to close dense"),
    ("dense<i8[1]: [300]>", "out of range for i8"),
    ("dense<i4[2]: [1, -9]>", "out of range for i4"),
    ("dense<i32[1]: [1.5]>", "expected a i32 value"),
    ("dense<bool[1]: [1]>", "expected a bool value"),
    ("dense<f32[1]: [true]>", "expected a f32 value"),
])
def test_dense_parse_errors(text: str, msg: str) -> None:
    from optllm.ir import ParseError

    with pytest.raises(ParseError, match=msg):
        _parse_attr(text)


@pytest.mark.parametrize("arr,text", [
    (np.array([1e-05, 0.1, 1 / 3], np.float32), "dense<f32[3]: [1e-05, 0.1, 0.33333334]>"),
    (np.array([0.1, 65504.0], np.float16), "dense<f16[2]: [0.1, 6.55e+04]>"),
    (np.array([0.1, 3.0], ml_dtypes.bfloat16), "dense<bf16[2]: [0.1, 3.0]>"),
    (np.array([0.1], np.float64), "dense<f64[1]: [0.1]>"),
])
def test_dense_floats_print_shortest_for_their_type(arr: np.ndarray, text: str) -> None:
    assert format_dense(Dense.from_array(arr)) == text


def test_numpy_arrays_coerce_to_dense() -> None:
    d = coerce("value", attr(AttrKind.DENSE), np.array([1.0, 2.0], np.float32))
    assert isinstance(d, Dense) and d.type == TensorType((2,), DType.f32)
    with pytest.raises(AttrError, match="'value': numpy dtype complex64 has no optllm DType"):
        coerce("value", attr(AttrKind.DENSE), np.zeros(2, np.complex64))
    with pytest.raises(AttrError, match="'value' expects dense<...>, got array"):
        coerce("value", attr(AttrKind.DENSE), object.__new__(type("array", (), {"__repr__": lambda s: "array"})))
    with pytest.raises(AttrError, match="'dtype': unknown element type 'f8'"):
        coerce("dtype", attr(AttrKind.DTYPE), "f8")
