"""What ONNX converters work with: the builder, known constants and known shape tensors.

ONNX graphs compute shapes at run time (``Shape -> Gather -> Concat -> Reshape``); the IR has
no shape ops, so the importer evaluates such chains while it converts. Every value may carry

* ``const_value``: its contents, when they are known at import time (initializers,
  ``Constant`` nodes, and any pure op whose operands are all known, evaluated with the op's
  numpy reference), and
* ``shape_value``: for a 1-D integer tensor, its elements as dims that may be symbolic
  (``Shape(x)`` of ``x: f32[B,S,768]`` is ``[B, S, 768]``).

Converters read both to turn computed shapes into attributes; values used only by shape
arithmetic are dropped at the end of the import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.ir import Builder, Dense, DType, Module, Operation, TensorType, Value
from optllm.ir.ops import Trait
from optllm.ir.symbolic import Dim, SymExpr

_MISSING: Any = object()
_FOLD_LIMIT = 1 << 16  # fold ops whose results have at most this many elements
_INLINE_LIMIT = 16  # constants with at most this many elements are inline core.constant ops

# onnx.TensorProto.DataType -> DType
ONNX_DTYPES: dict[int, DType] = {
    1: DType.f32, 2: DType.u8, 3: DType.i8, 4: DType.u16, 5: DType.i16, 6: DType.i32, 7: DType.i64,
    9: DType.bool, 10: DType.f16, 11: DType.f64, 12: DType.u32, 13: DType.u64, 16: DType.bf16,
    17: DType.f8e4m3fn, 18: DType.f8e4m3fnuz, 19: DType.f8e5m2, 20: DType.f8e5m2fnuz,
}


def onnx_dtype(elem_type: int, what: str = "") -> DType:
    """The optllm dtype of an ONNX element type (FrontendError if there is none)."""
    try:
        return ONNX_DTYPES[elem_type]
    except KeyError:
        import onnx

        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() \
            else str(elem_type)
        raise FrontendError(f"element type {name}{' of ' + what if what else ''} has no optllm "
                            "equivalent") from None


class ConvertContext:
    """State shared by the converters while one graph is imported."""

    def __init__(self, module: Module, builder: Builder, opset: int, source: str = "") -> None:
        self.module = module
        self.builder = builder
        self.opset = opset
        self.source = source  # the model file (for messages)
        self.loc = ""
        self.env: dict[str, Value] = {}  # ONNX value name -> IR value
        self._consts: dict[Value, np.ndarray] = {}
        self._shapes: dict[Value, list[Dim]] = {}
        self._weights: dict[Value, str] = {}  # core.weight values -> constant table name

    # -- node inputs and attributes ---------------------------------------------------------------
    def input(self, node: Any, index: int) -> Value | None:
        """The ``index``-th input of ``node`` (None when absent or left empty)."""
        if index >= len(node.input) or not node.input[index]:
            return None
        return self.env[node.input[index]]

    def inputs(self, node: Any) -> list[Value | None]:
        return [self.input(node, i) for i in range(len(node.input))]

    def need(self, node: Any, index: int) -> Value:
        v = self.input(node, index)
        if v is None:
            raise FrontendError(f"{node.op_type} node '{node.name}' needs input #{index}")
        return v

    def attr(self, node: Any, name: str, default: Any = _MISSING) -> Any:
        """The attribute ``name`` as a Python value (tensors as numpy arrays)."""
        from onnx import helper, numpy_helper

        for a in node.attribute:
            if a.name == name:
                if a.type == a.TENSOR:
                    return numpy_helper.to_array(a.t)
                if a.type == a.TENSORS:
                    return [numpy_helper.to_array(t) for t in a.tensors]
                value = helper.get_attribute_value(a)
                if isinstance(value, bytes):
                    return value.decode()
                if isinstance(value, list) and value and isinstance(value[0], bytes):
                    return [v.decode() for v in value]
                return value
        if default is _MISSING:
            raise FrontendError(f"{node.op_type} node '{node.name}' has no attribute '{name}'")
        return default

    # -- building -------------------------------------------------------------------------------
    def op(self, name: str, *operands: Value, **attrs: Any) -> Value:
        """Build a single-result op at the node's loc, folding it when its operands are known."""
        return self.create(name, list(operands), attrs).result

    def create(self, name: str, operands: Sequence[Value], attrs: dict[str, Any] | None = None,
               result_types: Sequence[TensorType] | None = None) -> Operation:
        op = self.builder.create(name, operands, attrs or {}, loc=self.loc, result_types=result_types)
        self._fold(op)
        return op

    def _fold(self, op: Operation) -> None:
        if not op.has_trait(Trait.PURE) or op.regions or not op.operands:
            return
        if any(not r.type.is_static or r.type.numel() > _FOLD_LIMIT for r in op.results):
            return
        args = [self._consts.get(v) for v in op.operands]
        if any(a is None for a in args):
            return
        outs = op.opdef.reference(args, op.attrs, {})  # type: ignore[arg-type]
        for r, a in zip(op.results, outs):
            self._consts[r] = np.asarray(a, dtype=r.type.dtype.to_numpy()).reshape(r.type.shape)  # type: ignore[arg-type]

    def constant(self, arr: Any, dtype: DType | None = None) -> Value:
        """``arr`` as a value: inline ``core.constant`` when small, else a ``core.weight``."""
        a = np.asarray(arr)
        if dtype is not None:
            a = a.astype(dtype.to_numpy())
        if a.size <= _INLINE_LIMIT:
            v = self.builder.op("core.constant", value=Dense.from_array(a), loc=self.loc)
        else:
            stored = self.module.constants.add(a, self.loc or "const")
            ttype = TensorType(tuple(int(d) for d in a.shape), DType.from_numpy(a.dtype))
            v = self.builder.create("core.weight", [], {"name": stored}, loc=self.loc,
                                    result_types=[ttype]).result
        self._consts[v] = a
        if a.ndim <= 1 and a.dtype.kind in "iu":
            self._shapes[v] = [int(d) for d in a.reshape(-1)]
        return v

    def weight(self, name: str, ttype: TensorType, loc: str) -> Value:
        """A ``core.weight`` over the module's constant table entry ``name``."""
        v = self.builder.create("core.weight", [], {"name": name}, loc=loc, result_types=[ttype]).result
        self._weights[v] = name
        return v

    def scalar(self, value: Any, dtype: DType) -> Value:
        return self.constant(np.asarray(value, dtype=dtype.to_numpy()))

    def cast(self, v: Value, dtype: DType) -> Value:
        return v if v.type.dtype == dtype else self.op("core.cast", v, dtype=dtype)

    def broadcast_dtype(self, *values: Value | None) -> DType:
        """The common element type (ONNX ops mostly require equal types already)."""
        dts = [v.type.dtype for v in values if v is not None]
        if not dts:
            raise FrontendError("no typed operands")
        for pick in (DType.f64, DType.f32, DType.bf16, DType.f16, DType.i64, DType.i32):
            if pick in dts:
                return pick
        return dts[0]

    def shape_tensor(self, dims: Sequence[Dim], scalar: bool = False) -> Value:
        """A 1-D i64 value holding ``dims`` (symbolic ones built from ``core.arange``);
        ``scalar``: a 0-D value holding the one dim."""
        dims = [d if isinstance(d, SymExpr) else int(d) for d in dims]
        if all(isinstance(d, int) for d in dims):
            arr = np.asarray(dims, dtype=np.int64)
            return self.constant(arr.reshape(()) if scalar else arr)
        if scalar:
            v = self.builder.op("core.reshape", self.shape_tensor(dims), shape=[], loc=self.loc)
            self._shapes[v] = list(dims)
            return v
        parts = []
        for d in dims:
            if isinstance(d, SymExpr):
                parts.append(self.builder.op("core.arange", start=d, end=d + 1, dtype=DType.i64, loc=self.loc))
            else:
                parts.append(self.constant(np.asarray([d], dtype=np.int64)))
        out = parts[0] if len(parts) == 1 else self.builder.op("core.concat", *parts, axis=0, loc=self.loc)
        self._shapes[out] = list(dims)
        return out

    # -- what is known --------------------------------------------------------------------------
    def const_value(self, v: Value | None) -> np.ndarray | None:
        """The contents of ``v`` when known at import time."""
        if v is None:
            return None
        if v in self._consts:
            return self._consts[v]
        if v in self._weights:
            arr = np.asarray(self.module.constants[self._weights[v]])
            self._consts[v] = arr
            return arr
        return None

    def shape_value(self, v: Value | None) -> list[Dim] | None:
        """The elements of a 1-D (or 0-D) integer ``v`` as dims, when known."""
        if v is None:
            return None
        if v in self._shapes:
            return list(self._shapes[v])
        c = self.const_value(v)
        if c is not None and c.dtype.kind in "iu" and c.ndim <= 1:
            return [int(x) for x in c.reshape(-1)]
        return None

    def set_shape_value(self, v: Value, dims: Sequence[Dim]) -> None:
        self._shapes[v] = list(dims)

    def ints(self, node: Any, index: int, what: str) -> list[int] | None:
        """Input ``index`` as a list of static ints (None when the input is absent)."""
        v = self.input(node, index)
        if v is None:
            return None
        c = self.const_value(v)
        if c is None:
            raise FrontendError(f"{node.op_type} node '{node.name}': {what} (input #{index}) must be known "
                                "at import time")
        return [int(x) for x in c.reshape(-1)]

    def dims(self, node: Any, index: int, what: str) -> list[Dim]:
        """Input ``index`` as a list of dims, possibly symbolic (must be known at import time)."""
        dims = self.shape_value(self.need(node, index))
        if dims is None:
            raise FrontendError(f"{node.op_type} node '{node.name}': {what} (input #{index}) is computed "
                                "from data; only shapes known at import time are supported")
        return dims
