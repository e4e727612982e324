"""Element types and tensor types.

``TensorType`` prints as ``f32[B,S,768]`` (scalars as ``f32[]``), like XLA's HLO text: the
element type first, then the dims, each an integer or a symbolic expression.
"""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

from optllm.ir.symbolic import Dim, SymExpr, evaluate, symbols_of


class DType(enum.Enum):
    """Element types. ``i4``, ``bf16`` and the float8 types use the ml_dtypes numpy extensions
    (``f8e4m3fn``: 4 exponent bits, 3 mantissa bits, finite and NaN only; ``fnuz``: no negative
    zero, NaN is 0x80; ``f8e5m2`` has infinities)."""

    f64 = "f64"
    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    f8e4m3fn = "f8e4m3fn"
    f8e4m3fnuz = "f8e4m3fnuz"
    f8e5m2 = "f8e5m2"
    f8e5m2fnuz = "f8e5m2fnuz"
    i64 = "i64"
    i32 = "i32"
    i16 = "i16"
    i8 = "i8"
    u8 = "u8"
    u16 = "u16"
    u32 = "u32"
    u64 = "u64"
    i4 = "i4"
    bool = "bool"

    def __str__(self) -> str:
        return self.value

    @property
    def is_float(self) -> builtins.bool:
        return self in (DType.f64, DType.f32, DType.f16, DType.bf16) or self in _FLOAT8

    @property
    def is_int(self) -> builtins.bool:
        return self in (DType.i64, DType.i32, DType.i16, DType.i8, DType.u8, DType.u16, DType.u32, DType.u64,
                        DType.i4)

    @property
    def is_unsigned(self) -> builtins.bool:
        return self in (DType.u8, DType.u16, DType.u32, DType.u64)

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def itemsize(self) -> float:
        """Bytes per element (0.5 for i4)."""
        return _BITS[self] / 8

    def to_numpy(self) -> np.dtype[Any]:
        if self in _ML_DTYPES:
            import ml_dtypes

            return np.dtype(getattr(ml_dtypes, _ML_DTYPES[self]))
        return np.dtype(_NUMPY[self])

    @staticmethod
    def from_numpy(dt: Any) -> DType:
        dt = np.dtype(dt)
        for k, v in _NUMPY.items():
            if np.dtype(v) == dt:
                return k
        for k, name in _ML_DTYPES.items():
            if dt.name == name:
                return k
        raise ValueError(f"numpy dtype {dt} has no optllm DType")

    @staticmethod
    def parse(text: str) -> DType:
        try:
            return DType(text)
        except ValueError:
            names = ", ".join(d.value for d in DType)
            raise ValueError(f"unknown element type {text!r} (expected one of {names})") from None


_FLOAT8 = frozenset({DType.f8e4m3fn, DType.f8e4m3fnuz, DType.f8e5m2, DType.f8e5m2fnuz})
# DType -> the ml_dtypes type of that name
_ML_DTYPES = {DType.bf16: "bfloat16", DType.i4: "int4", DType.f8e4m3fn: "float8_e4m3fn",
              DType.f8e4m3fnuz: "float8_e4m3fnuz", DType.f8e5m2: "float8_e5m2", DType.f8e5m2fnuz: "float8_e5m2fnuz"}
_BITS = {
    DType.f64: 64, DType.f32: 32, DType.f16: 16, DType.bf16: 16, **dict.fromkeys(_FLOAT8, 8), DType.i64: 64, DType.i32: 32,
    DType.i16: 16, DType.i8: 8, DType.u8: 8, DType.u16: 16, DType.u32: 32, DType.u64: 64, DType.i4: 4,
    DType.bool: 8,
}
_NUMPY = {
    DType.f64: np.float64, DType.f32: np.float32, DType.f16: np.float16, DType.i64: np.int64,
    DType.i32: np.int32, DType.i16: np.int16, DType.i8: np.int8, DType.u8: np.uint8, DType.u16: np.uint16,
    DType.u32: np.uint32, DType.u64: np.uint64, DType.bool: np.bool_,
}


@dataclass(frozen=True)
class TensorType:
    """A ranked tensor type: a shape of ``Dim`` (int or symbolic) and an element ``DType``."""

    shape: tuple[Dim, ...]
    dtype: DType

    def __post_init__(self) -> None:
        # Accept lists and numpy integers, store a tuple of int / SymExpr (types must hash).
        shape = tuple(int(d) if isinstance(d, np.integer) else d for d in self.shape)
        object.__setattr__(self, "shape", shape)
        for d in self.shape:
            if not isinstance(d, SymExpr) and (isinstance(d, bool) or not isinstance(d, int)):
                raise TypeError(f"invalid dimension {d!r} in tensor type")
            if isinstance(d, int) and d < 0:
                raise ValueError(f"negative dimension {d} in tensor type")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for d in self.shape:
            out |= symbols_of(d)
        return out

    def concrete_shape(self, env: dict[str, int]) -> tuple[int, ...]:
        return tuple(evaluate(d, env) for d in self.shape)

    def numel(self, env: dict[str, int] | None = None) -> int:
        n = 1
        for d in self.concrete_shape(env or {}):
            n *= d
        return n

    def nbytes(self, env: dict[str, int] | None = None) -> float:
        return self.numel(env) * self.dtype.itemsize

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        return f"{self.dtype.value}[{','.join(str(d) for d in self.shape)}]"

    def __repr__(self) -> str:
        return f"TensorType({self})"
