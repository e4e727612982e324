"""The emission context of the ONNX exporter: value names, nodes, constants, shape tensors.

One ``Emitter`` lowers one graph: the module's main graph (constants become initializers) or
the body of an ONNX local function (constants become ``Constant`` nodes). Symbolic dims are
computed from the graph's own inputs with ``Shape(x, start=a, end=a+1)``, so a function body
needs nothing from the graph that calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from optllm.ir.diagnostics import OptllmError
from optllm.ir.ops import Operation
from optllm.ir.symbolic import Dim, SymCall, SymExpr
from optllm.ir.types import DType, TensorType

if TYPE_CHECKING:
    import onnx

DOMAIN = "optllm"
I64_MAX = 2**63 - 1


class ExportError(OptllmError):
    """A module the ONNX exporter cannot write; names the op and its source loc."""

    def __init__(self, msg: str, op: Operation | None = None) -> None:
        self.op = op
        where = ""
        if op is not None:
            where = f"'{op.name}'" + (f' at loc("{op.loc}")' if op.loc else "") + ": "
        super().__init__(where + msg)


def onnx_dtype(dt: DType) -> int:
    """The ``TensorProto`` element type of ``dt``."""
    from onnx import TensorProto

    table = {DType.f64: TensorProto.DOUBLE, DType.f32: TensorProto.FLOAT, DType.f16: TensorProto.FLOAT16,
             DType.bf16: TensorProto.BFLOAT16, DType.i64: TensorProto.INT64, DType.i32: TensorProto.INT32,
             DType.i16: TensorProto.INT16, DType.i8: TensorProto.INT8, DType.u8: TensorProto.UINT8,
             DType.u16: TensorProto.UINT16, DType.u32: TensorProto.UINT32, DType.u64: TensorProto.UINT64,
             DType.i4: TensorProto.INT4, DType.bool: TensorProto.BOOL, DType.f8e4m3fn: TensorProto.FLOAT8E4M3FN,
             DType.f8e4m3fnuz: TensorProto.FLOAT8E4M3FNUZ, DType.f8e5m2: TensorProto.FLOAT8E5M2,
             DType.f8e5m2fnuz: TensorProto.FLOAT8E5M2FNUZ}
    return table[dt]


class Functions:
    """The local functions of one export, deduplicated by body: equal bodies share one name."""

    def __init__(self, opset: int, weight: Callable[[str], np.ndarray]) -> None:
        self.opset = opset
        self.weight = weight  # the module's constant table, by name
        self.protos: list[onnx.FunctionProto] = []
        self._by_key: dict[tuple[Any, ...], str] = {}
        self._count: dict[str, int] = {}

    def define(self, base: str, in_types: Sequence[TensorType], n_out: int,
               body: Callable[[Emitter, list[str], list[str]], None]) -> str:
        """Emit ``body`` into a fresh function with formal inputs ``in0..`` and outputs ``out0..``."""
        from onnx import helper

        sub = Emitter(self, initializers=False)
        ins = [f"in{i}" for i in range(len(in_types))]
        outs = [f"out{i}" for i in range(n_out)]
        for name, t in zip(ins, in_types):
            sub.bind_input(name, t)
        body(sub, ins, outs)
        key = (base, len(ins), tuple(n.SerializeToString(deterministic=True) for n in sub.nodes))
        if key in self._by_key:
            return self._by_key[key]
        n = self._count.get(base, 0)
        self._count[base] = n + 1
        name = f"{base}_{n}"
        opsets = [helper.make_opsetid("", self.opset), helper.make_opsetid(DOMAIN, 1)]
        self.protos.append(helper.make_function(DOMAIN, name, ins, outs, sub.nodes, opsets))
        self._by_key[key] = name
        return name


class Emitter:
    """Collects the nodes (and, for the main graph, the initializers) of one ONNX graph."""

    def __init__(self, functions: Functions, initializers: bool) -> None:
        self.functions = functions
        self.opset = functions.opset
        self.use_initializers = initializers
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: dict[int, str] = {}  # id(Value) -> tensor name
        self._symbols: dict[str, tuple[str, int]] = {}  # symbol -> (input name, axis)
        self._consts: dict[tuple[Any, ...], str] = {}
        self._dims: dict[str, str] = {}
        self._n = 0
        self.loc = ""

    # -- names ---------------------------------------------------------------------------
    def fresh(self, hint: str = "t") -> str:
        self._n += 1
        return f"{hint}{self._n}"

    def bind_input(self, name: str, t: TensorType) -> None:
        """Record ``name`` (of type ``t``) as the source of the symbols its dims are."""
        for axis, d in enumerate(t.shape):
            if isinstance(d, SymExpr) and d.is_symbol():
                self._symbols.setdefault(next(iter(d.symbols())), (name, axis))

    # -- nodes and constants ------------------------------------------------------------------
    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | int = 1,
             domain: str = "", **attrs: Any) -> list[str]:
        """Append one node; returns its output names (fresh ones when given a count)."""
        from onnx import helper

        outs = [self.fresh() for _ in range(outputs)] if isinstance(outputs, int) else list(outputs)
        name = f"{self.loc}/{op_type}_{len(self.nodes)}" if self.use_initializers else ""
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name or None, domain=domain or None,
                                           **{k: v for k, v in attrs.items() if v is not None}))
        return outs

    def one(self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        return self.node(op_type, inputs, [out] if out else 1, **attrs)[0]

    def const(self, value: Any, dtype: Any = None, name: str | None = None) -> str:
        """A constant tensor: an initializer in the main graph, a ``Constant`` node in a function."""
        from onnx import numpy_helper

        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if name is None else ("named", name)
        if key in self._consts:
            return self._consts[key]
        tname = name or self.fresh("c")
        tensor = numpy_helper.from_array(arr, tname)
        if self.use_initializers:
            self.initializers.append(tensor)
        else:
            self.node("Constant", [], [tname], value=tensor)
        self._consts[key] = tname
        return tname

    def scalar(self, value: float, dt: DType) -> str:
        return self.const(np.asarray(value, dtype=dt.to_numpy()))

    # -- shapes ----------------------------------------------------------------------------
    def dim(self, d: Dim) -> str:
        """A 1-D int64 tensor of one element holding ``d``."""
        if isinstance(d, int):
            return self.const(np.asarray([d], np.int64))
        key = str(d)
        if key not in self._dims:
            self._dims[key] = self._sym(d)
        return self._dims[key]

    def _sym(self, d: SymExpr) -> str:
        total: str | None = None
        for mono, coeff in d.terms:
            term: str | None = None if coeff == 1 else self.dim(coeff)
            for atom in mono:
                a = self._atom(atom)
                term = a if term is None else self.one("Mul", [term, a])
            term = term if term is not None else self.dim(coeff)
            total = term if total is None else self.one("Add", [total, term])
        assert total is not None
        return total

    def _atom(self, atom: str | SymCall) -> str:
        if isinstance(atom, str):
            if atom not in self._symbols:
                raise ExportError(f"symbolic dim {atom} cannot be computed from the inputs of the graph")
            src, axis = self._symbols[atom]
            return self.one("Shape", [src], start=axis, end=axis + 1)
        args = [self.dim(a) for a in atom.args]
        op = {"floordiv": "Div", "mod": "Mod", "max": "Max", "min": "Min"}[atom.fn]
        return self.one(op, args)

    def shape(self, dims: Sequence[Dim]) -> str:
        """A 1-D int64 shape tensor for ``dims`` (one constant when all are static)."""
        if all(isinstance(d, int) for d in dims):
            return self.const(np.asarray(list(dims), np.int64))
        return self.one("Concat", [self.dim(d) for d in dims], axis=0)

    def scalar_dim(self, d: Dim) -> str:
        """A 0-d int64 tensor holding ``d``."""
        if isinstance(d, int):
            return self.const(np.asarray(d, np.int64))
        return self.one("Squeeze", [self.dim(d), self.const(np.asarray([0], np.int64))])

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool, out: str | None = None) -> str:
        """``Reduce*`` over ``axes``: an attribute before opset 18 (but ReduceSum), an input since."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.one(op_type, [x, self.const(np.asarray(list(axes), np.int64))], out, keepdims=int(keepdims))
        return self.one(op_type, [x], out, axes=list(axes), keepdims=int(keepdims))

    def lower_mask(self, shape: str) -> str:
        """A bool tensor of ``shape`` (its last two dims square) true on and below the diagonal."""
        from onnx import TensorProto, numpy_helper

        ones = self.one("ConstantOfShape", [shape], value=numpy_helper.from_array(np.ones(1, np.float32)))
        return self.one("Cast", [self.one("Trilu", [ones], upper=0)], to=TensorProto.BOOL)

    def call(self, base: str, in_types: Sequence[TensorType], ins: Sequence[str], outs: Sequence[str],
             body: Callable[[Emitter, list[str], list[str]], None]) -> None:
        """Define (or reuse) the function ``body`` and call it."""
        fname = self.functions.define(base, in_types, len(outs), body)
        self.node(fname, ins, outs, domain=DOMAIN)
