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
    """Element types. ``i4`` and ``bf16`` use the ml_dtypes numpy extensions."""

    f64 = "f64"
    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
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
        return self in (DType.f64, DType.f32, DType.f16, DType.bf16)

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
        if self is DType.bf16 or self is DType.i4:
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16 if self is DType.bf16 else ml_dtypes.int4)
        return np.dtype(_NUMPY[self])

    @staticmethod
    def from_numpy(dt: Any) -> DType:
        dt = np.dtype(dt)
        for k, v in _NUMPY.items():
            if np.dtype(v) == dt:
                return k
        if dt.name == "bfloat16":
            return DType.bf16
        if dt.name == "int4":
            return DType.i4
        raise ValueError(f"numpy dtype {dt} has no optllm DType")

    @staticmethod
    def parse(text: str) -> DType:
        try:
            return DType(text)
        except ValueError:
            names = ", ".join(d.value for d in DType)
            raise ValueError(f"unknown element type {text!r} (expected one of {names})") from None


_BITS = {
    DType.f64: 64, DType.f32: 32, DType.f16: 16, DType.bf16: 16, DType.i64: 64, DType.i32: 32,
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
