"""Typed op attributes.

Attribute values are plain frozen Python values so they hash (CSE and dedup key on them):
``int``, ``float``, ``bool``, ``str``, ``DType``, tuples of those or of ``Dim`` (shapes), and
``Dense`` for small inline tensors. Each op declares a schema (name -> ``AttrSpec``); the
parser and the builder coerce raw values through it and the verifier checks it.

Text forms: ``3``, ``1.0e-05``, ``true``, ``"str"``, ``f32``, ``[B,S,768]``,
``dense<f32[2]: [1.0, 2.0]>``, ``dense<f32[4,4]: splat 0.0>``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from optllm.ir.symbolic import SymExpr
from optllm.ir.types import DType, TensorType


class AttrKind(enum.Enum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"
    DTYPE = "dtype"
    INTS = "ints"
    FLOATS = "floats"
    SHAPE = "shape"  # list of Dim (ints or symbolic expressions)
    DIM = "dim"  # one Dim
    DENSE = "dense"


@dataclass(frozen=True)
class AttrSpec:
    """Schema of one attribute: its kind, whether it may be absent, and its default."""

    kind: AttrKind
    optional: bool = False
    default: Any = None
    doc: str = ""


def attr(kind: AttrKind, default: Any = None, *, optional: bool = False, doc: str = "") -> AttrSpec:
    """Declare an attribute; giving a default makes it optional."""
    return AttrSpec(kind, optional or default is not None, default, doc)


@dataclass(frozen=True, eq=False)
class Dense:
    """A small inline constant tensor (scalars, masks, shape tables)."""

    type: TensorType
    data: bytes

    @staticmethod
    def from_array(arr: Any, dtype: DType | None = None) -> Dense:
        a = np.asarray(arr)
        dt = dtype or DType.from_numpy(a.dtype)
        a = np.array(a, dtype=dt.to_numpy(), order="C")  # ascontiguousarray would make 0-d arrays 1-d
        return Dense(TensorType(tuple(int(d) for d in a.shape), dt), a.tobytes())

    def to_array(self) -> np.ndarray:
        shape = tuple(int(d) for d in self.type.shape)  # type: ignore[arg-type]
        return np.frombuffer(self.data, dtype=self.type.dtype.to_numpy()).reshape(shape).copy()

    def is_splat(self) -> bool:
        a = self.to_array().reshape(-1)
        return a.size > 1 and _same_bits(a)  # bitwise, so splat nan and -0.0 stay exact

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dense) and self.type == other.type and self.data == other.data

    def __hash__(self) -> int:
        return hash((self.type, self.data))


def _same_bits(a: np.ndarray) -> bool:
    # -0.0 == 0.0 and nan != nan: compare bit patterns so splat printing is exact.
    raw = a.view(np.uint8).reshape(a.size, -1)
    return bool(np.all(raw == raw[0]))


class AttrError(ValueError):
    """An attribute value that does not fit its schema."""


def coerce(name: str, spec: AttrSpec, value: Any) -> Any:
    """Convert a raw (parsed or user-given) value to the canonical form for ``spec``."""
    k = spec.kind
    if k is AttrKind.INT:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise AttrError(f"attribute '{name}' expects an int, got {_show(value)}")
        return int(value)
    if k is AttrKind.FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise AttrError(f"attribute '{name}' expects a float, got {_show(value)}")
        return float(value)
    if k is AttrKind.BOOL:
        if not isinstance(value, (bool, np.bool_)):
            raise AttrError(f"attribute '{name}' expects true/false, got {_show(value)}")
        return bool(value)
    if k is AttrKind.STR:
        if not isinstance(value, str):
            raise AttrError(f"attribute '{name}' expects a string, got {_show(value)}")
        return value
    if k is AttrKind.DTYPE:
        if isinstance(value, str):
            try:
                value = DType.parse(value)
            except ValueError as e:
                raise AttrError(f"attribute '{name}': {e}") from None
        if not isinstance(value, DType):
            raise AttrError(f"attribute '{name}' expects an element type, got {_show(value)}")
        return value
    if k is AttrKind.DIM:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, SymExpr)):
            raise AttrError(f"attribute '{name}' expects a dimension, got {_show(value)}")
        return value if isinstance(value, SymExpr) else int(value)
    if k is AttrKind.DENSE:
        if isinstance(value, (np.ndarray, np.generic)):
            try:
                return Dense.from_array(value)
            except ValueError as e:
                raise AttrError(f"attribute '{name}': {e}") from None
        if not isinstance(value, Dense):
            raise AttrError(f"attribute '{name}' expects dense<...>, got {_show(value)}")
        return value
    if not isinstance(value, (list, tuple)):
        raise AttrError(f"attribute '{name}' expects a list, got {_show(value)}")
    if k is AttrKind.INTS:
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value):
            raise AttrError(f"attribute '{name}' expects a list of ints, got {_show(value)}")
        return tuple(int(v) for v in value)
    if k is AttrKind.FLOATS:
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise AttrError(f"attribute '{name}' expects a list of floats, got {_show(value)}")
        return tuple(float(v) for v in value)
    # SHAPE
    if any(not isinstance(v, (int, SymExpr)) or isinstance(v, bool) for v in value):
        raise AttrError(f"attribute '{name}' expects a list of dims, got {_show(value)}")
    return tuple(int(v) if isinstance(v, int) else v for v in value)


def format_float(x: float) -> str:
    """Shortest text that parses back to the same float; always looks like a float."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    r = repr(float(x))
    return r if any(c in r for c in ".en") else r + ".0"


def _format_scalar(v: Any, dtype: DType) -> str:
    if dtype is DType.bool:
        return "true" if v else "false"
    if dtype.is_float:
        return _format_float_as(v, dtype)
    return str(int(v))


def _format_float_as(v: Any, dtype: DType) -> str:
    """Shortest text that reads back (through float64) as the same ``dtype`` value: an f32
    1e-05 prints as ``1e-05``, not as its float64 expansion ``9.999999747378752e-06``."""
    x = float(v)
    if dtype is DType.f64 or not math.isfinite(x):
        return format_float(x)
    npt = dtype.to_numpy()
    want = np.asarray(v, npt).tobytes()
    with np.errstate(over="ignore"):  # a too-short text may overflow the narrow type
        for digits in range(1, 18):
            text = f"{x:.{digits}g}"
            if np.asarray(float(text)).astype(npt).tobytes() == want:
                return text if any(c in text for c in ".e") else text + ".0"
    return format_float(x)


def format_dense(d: Dense) -> str:
    a = d.to_array().reshape(-1)
    if a.size == 0:
        return f"dense<{d.type}: []>"
    if d.is_splat():
        return f"dense<{d.type}: splat {_format_scalar(a[0], d.type.dtype)}>"
    if d.type.rank == 0:
        return f"dense<{d.type}: {_format_scalar(a[0], d.type.dtype)}>"
    body = ", ".join(_format_scalar(v, d.type.dtype) for v in a)
    return f"dense<{d.type}: [{body}]>"


def format_attr(v: Any) -> str:
    """The text form of an attribute value."""
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format_float(float(v))
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, DType):
        return v.value
    if isinstance(v, SymExpr):
        return str(v)
    if isinstance(v, Dense):
        return format_dense(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    if v is None:
        return "none"
    raise TypeError(f"cannot print attribute value {v!r}")


def _show(v: Any) -> str:
    """An attribute value for an error message (anything, printable or not)."""
    try:
        return format_attr(v)
    except TypeError:
        return repr(v)


def _quote(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'
