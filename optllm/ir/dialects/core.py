"""``core``: constants, elementwise math, comparisons, matmul, views, reductions, indexing.

Operand element types must agree exactly (frontends insert ``core.cast`` where the source
framework promotes types), so every op's numpy reference computes in its declared type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from optllm.ir.attributes import AttrKind, AttrSpec, attr
from optllm.ir.diagnostics import TypeInferenceError
from optllm.ir.dialects._shapes import (
    broadcast_shapes,
    concrete,
    norm_axes,
    norm_axis,
    require_float,
    same_dtype,
    same_numel,
)
from optllm.ir.ops import Cost, OpDef, Trait, register_op
from optllm.ir.symbolic import Dim, SymExpr, floordiv, sym_max, sym_min
from optllm.ir.types import DType, TensorType

PURE = frozenset({Trait.PURE})
EW = frozenset({Trait.PURE, Trait.ELEMENTWISE})
EWC = frozenset({Trait.PURE, Trait.ELEMENTWISE, Trait.COMMUTATIVE})
VIEW = frozenset({Trait.PURE, Trait.VIEW})
Arrays = Sequence[np.ndarray]
Attrs = Mapping[str, Any]
Env = Mapping[str, int]


# -- constants --------------------------------------------------------------------------------
@register_op
class Constant(OpDef):
    """A small inline tensor: ``%0 = core.constant {value = dense<f32[]: 0.125>} : f32[]``."""

    name = "core.constant"
    attrs = {"value": attr(AttrKind.DENSE)}
    traits = frozenset({Trait.PURE, Trait.CONSTANT})

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        return [attrs["value"].type]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [attrs["value"].to_array()]


@register_op
class Weight(OpDef):
    """A tensor of the module's constant table: ``%0 = core.weight {name = "wte"} : f32[50257,768]``."""

    name = "core.weight"
    attrs = {"name": attr(AttrKind.STR)}
    traits = frozenset({Trait.PURE, Trait.CONSTANT})
    declared_types = True

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        raise RuntimeError("core.weight is resolved by the executor from the constant table")


# -- elementwise ----------------------------------------------------------------------------------
class Unary(OpDef):
    """Elementwise ``y = f(x)``, same type in and out. ``scalar`` names the kernel IR function
    computing one element (``optllm.backends.kernels.kir.UNARY_OPS``; the op's own suffix for
    every op declared with ``_unary``): the kernel templates derive their rules from it."""

    operands = ("x",)
    traits = EW
    float_only: ClassVar[bool] = True
    scalar: ClassVar[str] = ""

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        if self.float_only:
            require_float(types[0], self.name)
        return [types[0]]

    def compute(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [np.asarray(self.compute(inputs[0])).astype(inputs[0].dtype, copy=False)]


def _unary(op_name: str, fn: Any, doc: str, float_only: bool = True, onnx: str = "", aten: bool = False) -> type[Unary]:
    """Declare a unary op; ``aten=True`` when ``aten.<suffix>.default`` is this op (see OpDef)."""
    suffix = op_name.split(".")[1]
    cls = type(suffix.title().replace("_", ""), (Unary,), {
        "name": op_name, "__doc__": doc, "float_only": float_only, "scalar": suffix,
        "onnx": onnx, "aten": suffix if aten else "",
        "compute": lambda self, x: fn(x), "__module__": __name__,
    })
    return register_op(cls)  # type: ignore[return-value]


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(x)


_unary("core.neg", np.negative, "``%1 = core.neg %0 : f32[N]`` — -x.", float_only=False, onnx="Neg", aten=True)
_unary("core.abs", np.abs, "``%1 = core.abs %0 : f32[N]`` — |x|.", float_only=False, onnx="Abs", aten=True)
_unary("core.exp", np.exp, "``%1 = core.exp %0 : f32[N]`` — e^x.", onnx="Exp", aten=True)
_unary("core.log", np.log, "``%1 = core.log %0 : f32[N]`` — ln x.", onnx="Log", aten=True)
_unary("core.sqrt", np.sqrt, "``%1 = core.sqrt %0 : f32[N]`` — sqrt(x).", onnx="Sqrt", aten=True)
_unary("core.rsqrt", lambda x: np.reciprocal(np.sqrt(x)), "``%1 = core.rsqrt %0 : f32[N]`` — 1/sqrt(x).", aten=True)
_unary("core.reciprocal", np.reciprocal, "``%1 = core.reciprocal %0 : f32[N]`` — 1/x.", onnx="Reciprocal", aten=True)
_unary("core.tanh", np.tanh, "``%1 = core.tanh %0 : f32[N]`` — tanh x.", onnx="Tanh", aten=True)
_unary("core.erf", _erf, "``%1 = core.erf %0 : f32[N]`` — the error function.", onnx="Erf", aten=True)
_unary("core.sigmoid", _sigmoid, "``%1 = core.sigmoid %0 : f32[N]`` — 1/(1+e^-x).", onnx="Sigmoid", aten=True)
_unary("core.sin", np.sin, "``%1 = core.sin %0 : f32[N]`` — sin x.", onnx="Sin", aten=True)
_unary("core.cos", np.cos, "``%1 = core.cos %0 : f32[N]`` — cos x.", onnx="Cos", aten=True)
_unary("core.floor", np.floor, "``%1 = core.floor %0 : f32[N]`` — floor x.", onnx="Floor", aten=True)
_unary("core.ceil", np.ceil, "``%1 = core.ceil %0 : f32[N]`` — ceil x.", onnx="Ceil", aten=True)


@register_op
class Not(Unary):
    """``%1 = core.not %0 : bool[N]`` — logical not."""

    name = "core.not"
    onnx = "Not"
    float_only = False
    scalar = "not"

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        if types[0].dtype is not DType.bool:
            raise TypeInferenceError(f"core.not needs bool, got {types[0]}")
        return [types[0]]

    def compute(self, x: np.ndarray) -> np.ndarray:
        return np.logical_not(x)


class Binary(OpDef):
    """Elementwise ``z = f(x, y)`` with numpy broadcasting; operands share one dtype."""

    operands = ("x", "y")
    traits = EW
    result_bool: ClassVar[bool] = False
    allowed: ClassVar[str] = "any"  # "any", "float", "bool", "int"
    scalar: ClassVar[str] = ""  # the kernel IR function (kir.BINARY_OPS), as for Unary

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        dt = same_dtype(types, f"{self.name} operands")
        if self.allowed == "float" and not dt.is_float:
            raise TypeInferenceError(f"{self.name} needs floating-point operands, got {dt}")
        if self.allowed == "bool" and dt is not DType.bool:
            raise TypeInferenceError(f"{self.name} needs bool operands, got {dt}")
        if self.allowed == "int" and not dt.is_int:
            raise TypeInferenceError(f"{self.name} needs integer operands, got {dt}")
        shape = broadcast_shapes(types[0].shape, types[1].shape)
        return [TensorType(shape, DType.bool if self.result_bool else dt)]

    def compute(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        out = np.asarray(self.compute(inputs[0], inputs[1]))
        return [out.astype(np.bool_ if self.result_bool else inputs[0].dtype, copy=False)]


def _binary(op_name: str, fn: Any, doc: str, traits: frozenset[Trait] = EW, allowed: str = "any",
            result_bool: bool = False, scalar: str = "", onnx: str = "") -> None:
    cls = type(op_name.split(".")[1].title().replace("_", ""), (Binary,), {
        "name": op_name, "__doc__": doc, "traits": traits, "allowed": allowed, "onnx": onnx,
        "scalar": scalar or op_name.split(".")[1],
        "result_bool": result_bool, "compute": lambda self, x, y: fn(x, y), "__module__": __name__,
    })
    register_op(cls)


def _int_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Truncating division like C and torch's rounding_mode="trunc".
    return np.trunc(np.true_divide(x, y)).astype(x.dtype) if x.dtype.kind == "f" else np.fix(x / y).astype(x.dtype)


_binary("core.add", np.add, "``%2 = core.add %0, %1 : f32[B,S,768]`` — x + y.", EWC, onnx="Add")
_binary("core.sub", np.subtract, "``%2 = core.sub %0, %1 : f32[B,S,768]`` — x - y.", onnx="Sub")
_binary("core.mul", np.multiply, "``%2 = core.mul %0, %1 : f32[B,S,768]`` — x * y.", EWC, onnx="Mul")
_binary("core.div", np.true_divide, "``%2 = core.div %0, %1 : f32[N]`` — x / y (floats).", allowed="float", onnx="Div")
_binary("core.floordiv", np.floor_divide, "``%2 = core.floordiv %0, %1 : i64[N]`` — floor(x / y).")
_binary("core.mod", np.remainder, "``%2 = core.mod %0, %1 : i64[N]`` — x mod y, sign of y (Python).")
_binary("core.pow", np.power, "``%2 = core.pow %0, %1 : f32[N]`` — x ** y.", allowed="float", onnx="Pow")
_binary("core.max", np.maximum, "``%2 = core.max %0, %1 : f32[N]`` — max(x, y), NaN-propagating.", EWC, onnx="Max")
_binary("core.min", np.minimum, "``%2 = core.min %0, %1 : f32[N]`` — min(x, y), NaN-propagating.", EWC, onnx="Min")
_binary("core.and", np.logical_and, "``%2 = core.and %0, %1 : bool[N]`` — x and y.", EWC, "bool", onnx="And")
_binary("core.or", np.logical_or, "``%2 = core.or %0, %1 : bool[N]`` — x or y.", EWC, "bool", onnx="Or")
_binary("core.xor", np.logical_xor, "``%2 = core.xor %0, %1 : bool[N]`` — x xor y.", EWC, "bool", onnx="Xor")
_binary("core.bitand", np.bitwise_and, "``%2 = core.bitand %0, %1 : i64[N]`` — x & y.", EWC, "int", scalar="and", onnx="BitwiseAnd")
_binary("core.eq", np.equal, "``%2 = core.eq %0, %1 : bool[N]`` — x == y.", EWC, result_bool=True, onnx="Equal")
_binary("core.ne", np.not_equal, "``%2 = core.ne %0, %1 : bool[N]`` — x != y.", EWC, result_bool=True)
_binary("core.lt", np.less, "``%2 = core.lt %0, %1 : bool[N]`` — x < y.", result_bool=True, onnx="Less")
_binary("core.le", np.less_equal, "``%2 = core.le %0, %1 : bool[N]`` — x <= y.", result_bool=True, onnx="LessOrEqual")
_binary("core.gt", np.greater, "``%2 = core.gt %0, %1 : bool[N]`` — x > y.", result_bool=True, onnx="Greater")
_binary("core.ge", np.greater_equal, "``%2 = core.ge %0, %1 : bool[N]`` — x >= y.", result_bool=True, onnx="GreaterOrEqual")


@register_op
class Where(OpDef):
    """``%3 = core.where %c, %x, %y : f32[B,1,S,S]`` — c ? x : y, broadcasting all three."""

    name = "core.where"
    onnx = "Where"
    operands = ("cond", "x", "y")
    traits = EW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        if types[0].dtype is not DType.bool:
            raise TypeInferenceError(f"core.where condition must be bool, got {types[0]}")
        dt = same_dtype(types[1:], "core.where branches")
        return [TensorType(broadcast_shapes(*(t.shape for t in types)), dt)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [np.where(inputs[0], inputs[1], inputs[2]).astype(inputs[1].dtype, copy=False)]


@register_op
class Cast(OpDef):
    """``%1 = core.cast %0 {dtype = f32} : f32[B,S]`` — convert element type (C semantics)."""

    name = "core.cast"
    operands = ("x",)
    attrs = {"dtype": attr(AttrKind.DTYPE)}
    traits = EW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        return [types[0].with_dtype(attrs["dtype"])]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [inputs[0].astype(attrs["dtype"].to_numpy())]


# -- linear algebra -----------------------------------------------------------------------------
@register_op
class MatMul(OpDef):
    """``%2 = core.matmul %0, %1 : f32[B,S,2304]`` — numpy matmul on rank >= 2, batch broadcast."""

    name = "core.matmul"
    onnx = "MatMul"
    operands = ("a", "b")

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        a, b = types
        dt = same_dtype(types, "core.matmul operands")
        if a.rank < 2 or b.rank < 2:
            raise TypeInferenceError(f"core.matmul needs rank >= 2 operands, got {a} and {b}")
        if a.shape[-1] != b.shape[-2]:
            raise TypeInferenceError(f"core.matmul contracts {a.shape[-1]} with {b.shape[-2]} ({a} @ {b})")
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return [TensorType(batch + (a.shape[-2], b.shape[-1]), dt)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        a, b = inputs
        if a.ndim > 2 and b.ndim == 2:
            # Fold the batch dims into rows, as torch's matmul/linear do: one GEMM, the same
            # blocking as torch (numpy's stacked matmul loops over rows several times slower).
            rows = np.matmul(a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1]), b)  # K may be 0
            return [rows.reshape(a.shape[:-1] + (b.shape[-1],)).astype(a.dtype, copy=False)]
        return [np.matmul(a, b).astype(a.dtype, copy=False)]  # ml_dtypes' bf16 matmul returns f32

    def cost(self, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: Attrs,
             env: Env) -> Cost:
        base = super().cost(in_types, out_types, attrs, env)
        k = concrete(in_types[0].shape[-1:], env)[0]
        return Cost(2.0 * out_types[0].numel(dict(env)) * k, base.bytes_read, base.bytes_written)


# -- views and data movement -------------------------------------------------------------------
@register_op
class Reshape(OpDef):
    """``%1 = core.reshape %0 {shape = [B,S,12,64]} : f32[B,S,12,64]`` — same elements, new shape."""

    name = "core.reshape"
    operands = ("x",)
    attrs = {"shape": attr(AttrKind.SHAPE)}
    traits = VIEW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        shape = attrs["shape"]
        if any(isinstance(d, int) and d < 0 for d in shape):
            raise TypeInferenceError(f"core.reshape needs explicit dims, got {list(map(str, shape))}")
        if not same_numel(types[0].shape, shape):
            raise TypeInferenceError(f"cannot reshape {types[0]} to [{','.join(map(str, shape))}]: element counts differ")
        return [TensorType(tuple(shape), types[0].dtype)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [np.reshape(inputs[0], concrete(attrs["shape"], env))]


@register_op
class Permute(OpDef):
    """``%1 = core.permute %0 {perm = [0, 2, 1, 3]} : f32[B,12,S,64]`` — out.dim[i] = in.dim[perm[i]]."""

    name = "core.permute"
    operands = ("x",)
    attrs = {"perm": attr(AttrKind.INTS)}
    traits = VIEW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        perm, t = attrs["perm"], types[0]
        if sorted(perm) != list(range(t.rank)):
            raise TypeInferenceError(f"perm {list(perm)} is not a permutation of the {t.rank} dims of {t}")
        return [t.with_shape(tuple(t.shape[p] for p in perm))]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [np.transpose(inputs[0], attrs["perm"])]


@register_op
class Expand(OpDef):
    """``%1 = core.expand %0 {shape = [B,12,S,S]} : f32[B,12,S,S]`` — broadcast to a shape."""

    name = "core.expand"
    operands = ("x",)
    attrs = {"shape": attr(AttrKind.SHAPE)}
    traits = VIEW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        shape = tuple(attrs["shape"])
        if broadcast_shapes(types[0].shape, shape) != shape:
            raise TypeInferenceError(f"cannot expand {types[0]} to [{','.join(map(str, shape))}]")
        return [types[0].with_shape(shape)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [np.broadcast_to(inputs[0], concrete(attrs["shape"], env))]


def _slice_len(size: Dim, start: Dim, end: Dim, step: int) -> Dim:
    """Length of ``range(start, end, step)`` clamped to ``size`` (starts/ends already >= 0)."""
    if isinstance(end, int) and isinstance(size, int):
        end = min(end, size)
    elif isinstance(end, int) and end >= 2**31:
        end = size
    elif isinstance(end - size, int):  # end = size + c: clamp statically (S-1 stays S-1)
        end = size if end - size >= 0 else end  # type: ignore[operator]
    else:
        end = sym_min(end, size)
    if isinstance(start, int) and isinstance(end, int):
        return max(0, (end - start + step - 1) // step)
    n = end - start  # type: ignore[operator]
    return n if step == 1 else floordiv(n + (step - 1), step)


@register_op
class Slice(OpDef):
    """``%1 = core.slice %0 {axis = 1, start = 0, end = S, step = 1} : f32[B,S,768]``.

    ``start``/``end`` are non-negative dims (possibly symbolic); ``end`` is clamped to the size.
    """

    name = "core.slice"
    operands = ("x",)
    attrs = {"axis": attr(AttrKind.INT), "start": attr(AttrKind.DIM, 0), "end": attr(AttrKind.DIM),
             "step": attr(AttrKind.INT, 1)}
    traits = VIEW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        t = types[0]
        ax = norm_axis(attrs["axis"], t.rank)
        start, end, step = attrs["start"], attrs["end"], attrs["step"]
        if step < 1 or (isinstance(start, int) and start < 0) or (isinstance(end, int) and end < 0):
            raise TypeInferenceError("core.slice needs start, end >= 0 and step >= 1 (frontends normalise)")
        shape = list(t.shape)
        shape[ax] = _slice_len(t.shape[ax], start, end, step)
        return [t.with_shape(tuple(shape))]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x = inputs[0]
        ax = attrs["axis"] % x.ndim
        start, end = concrete((attrs["start"], attrs["end"]), env)
        idx = [slice(None)] * x.ndim
        idx[ax] = slice(start, end, attrs["step"])
        return [x[tuple(idx)]]


@register_op
class Concat(OpDef):
    """``%2 = core.concat %0, %1 {axis = -1} : f32[B,S,128]`` — join along an axis."""

    name = "core.concat"
    operands = ("*xs",)
    attrs = {"axis": attr(AttrKind.INT)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        if not types:
            raise TypeInferenceError("core.concat needs at least one operand")
        dt = same_dtype(types, "core.concat operands")
        rank = types[0].rank
        ax = norm_axis(attrs["axis"], rank)
        total: Dim = 0
        for t in types:
            if t.rank != rank or any(t.shape[i] != types[0].shape[i] for i in range(rank) if i != ax):
                raise TypeInferenceError(f"core.concat operands {', '.join(map(str, types))} differ off axis {ax}")
            total = total + t.shape[ax]  # type: ignore[operator]
        shape = list(types[0].shape)
        shape[ax] = total
        return [TensorType(tuple(shape), dt)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [np.concatenate(list(inputs), axis=attrs["axis"])]


@register_op
class Split(OpDef):
    """``%1, %2, %3 = core.split %0 {axis = 2, sizes = [768, 768, 768]} : f32[..], f32[..], f32[..]``."""

    name = "core.split"
    operands = ("x",)
    num_results = None
    attrs = {"axis": attr(AttrKind.INT), "sizes": attr(AttrKind.SHAPE)}
    traits = VIEW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        t = types[0]
        ax = norm_axis(attrs["axis"], t.rank)
        total: Dim = 0
        for s in attrs["sizes"]:
            total = total + s  # type: ignore[operator]
        if total != t.shape[ax]:
            raise TypeInferenceError(f"core.split sizes sum to {total}, not {t.shape[ax]}")
        outs = []
        for s in attrs["sizes"]:
            shape = list(t.shape)
            shape[ax] = s
            outs.append(t.with_shape(tuple(shape)))
        return outs

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        sizes = concrete(attrs["sizes"], env)
        cuts = np.cumsum(sizes)[:-1]
        return list(np.split(inputs[0], cuts, axis=attrs["axis"]))


@register_op
class Gather(OpDef):
    """``%2 = core.gather %0, %1 {axis = 0} : f32[B,S,768]`` — take(x, indices, axis); negative
    indices count from the end."""

    name = "core.gather"
    operands = ("x", "indices")
    attrs = {"axis": attr(AttrKind.INT)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        x, idx = types
        if not idx.dtype.is_int:
            raise TypeInferenceError(f"core.gather indices must be integers, got {idx}")
        ax = norm_axis(attrs["axis"], x.rank)
        return [x.with_shape(x.shape[:ax] + idx.shape + x.shape[ax + 1:])]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x, idx = inputs
        ax = attrs["axis"] % x.ndim
        n = x.shape[ax]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"core.gather index out of range [{-n}, {n}) on axis {ax}")
        return [np.take(x, idx, axis=ax)]


@register_op
class GatherElements(OpDef):
    """``%2 = core.gather_elements %x, %idx {axis = 1} : f32[1,S]`` — torch.gather / ONNX
    GatherElements: ``out[i][j] = x[i][idx[i][j]]`` for axis 1; the result has the shape of
    ``idx``, whose other dims may be smaller than ``x``'s."""

    name = "core.gather_elements"
    operands = ("x", "indices")
    attrs = {"axis": attr(AttrKind.INT)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        x, idx = types
        if not idx.dtype.is_int:
            raise TypeInferenceError(f"core.gather_elements indices must be integers, got {idx}")
        if x.rank != idx.rank:
            raise TypeInferenceError(f"core.gather_elements needs x and indices of one rank, got {x} and {idx}")
        norm_axis(attrs["axis"], x.rank)
        return [x.with_shape(idx.shape)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x, idx = inputs
        ax = attrs["axis"] % x.ndim
        n = x.shape[ax]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"core.gather_elements index out of range [{-n}, {n}) on axis {ax}")
        if any(i > d for a, (i, d) in enumerate(zip(idx.shape, x.shape)) if a != ax):  # any length along the axis
            raise IndexError(f"core.gather_elements indices {list(idx.shape)} exceed x {list(x.shape)} off the axis")
        window = tuple(slice(None) if d == ax else slice(0, idx.shape[d]) for d in range(x.ndim))
        return [np.take_along_axis(x[window], idx, axis=ax)]


@register_op
class IndexTensor(OpDef):
    """``%3 = core.index %x, %i0, %i1 {axes = [0, 1]} : f32[N]`` — advanced indexing
    ``x[i0, i1]`` on consecutive leading ``axes`` (indices broadcast together)."""

    name = "core.index"
    operands = ("x", "*indices")
    attrs = {"axes": attr(AttrKind.INTS)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        x, idx = types[0], types[1:]
        axes = norm_axes(attrs["axes"], x.rank)
        if len(axes) != len(idx) or not idx or list(axes) != list(range(axes[0], axes[0] + len(axes))):
            raise TypeInferenceError("core.index needs one index tensor per consecutive axis")
        if any(not t.dtype.is_int and t.dtype is not DType.bool for t in idx):
            raise TypeInferenceError("core.index indices must be integers")
        bshape = broadcast_shapes(*(t.shape for t in idx))
        return [x.with_shape(x.shape[:axes[0]] + bshape + x.shape[axes[-1] + 1:])]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x = inputs[0]
        first = norm_axes(attrs["axes"], x.ndim)[0]
        key = (slice(None),) * first + tuple(inputs[1:])
        return [x[key]]


# -- reductions ----------------------------------------------------------------------------------
class Reduce(OpDef):
    """Reduce over ``axes``; ``keepdim`` keeps them as size 1."""

    operands = ("x",)
    attrs = {"axes": attr(AttrKind.INTS), "keepdim": attr(AttrKind.BOOL, False)}
    kind: ClassVar[str] = "float"

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        t = types[0]
        if self.kind == "float":
            require_float(t, self.name)
        axes = norm_axes(attrs["axes"], t.rank)
        shape = [1 if i in axes else d for i, d in enumerate(t.shape)] if attrs["keepdim"] else \
            [d for i, d in enumerate(t.shape) if i not in axes]
        return [TensorType(tuple(shape), DType.bool if self.kind == "bool" else t.dtype)]

    def compute(self, x: np.ndarray, axes: tuple[int, ...], keepdim: bool) -> np.ndarray:
        raise NotImplementedError

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x = inputs[0]
        axes = tuple(a % x.ndim for a in attrs["axes"]) if x.ndim else ()
        out = np.asarray(self.compute(x, axes, attrs["keepdim"]))
        return [out.astype(np.bool_ if self.kind == "bool" else x.dtype, copy=False)]

    def cost(self, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: Attrs,
             env: Env) -> Cost:
        base = super().cost(in_types, out_types, attrs, env)
        return Cost(float(in_types[0].numel(dict(env))), base.bytes_read, base.bytes_written)


def _reduce(op_name: str, fn: Any, doc: str, kind: str = "float") -> None:
    cls = type(op_name.split(".")[1].title().replace("_", ""), (Reduce,), {
        "name": op_name, "__doc__": doc, "kind": kind, "__module__": __name__,
        "compute": lambda self, x, axes, keepdim: fn(x, axis=axes, keepdims=keepdim),
    })
    register_op(cls)


_reduce("core.reduce_sum", np.sum, "``%1 = core.reduce_sum %0 {axes = [-1]} : f32[B,S]``.", "any")
_reduce("core.reduce_mean", np.mean, "``%1 = core.reduce_mean %0 {axes = [-1], keepdim = true} : f32[B,S,1]``.")
_reduce("core.reduce_max", np.max, "``%1 = core.reduce_max %0 {axes = [-1]} : f32[B,S]``.", "any")
_reduce("core.reduce_min", np.min, "``%1 = core.reduce_min %0 {axes = [-1]} : f32[B,S]``.", "any")
_reduce("core.reduce_prod", np.prod, "``%1 = core.reduce_prod %0 {axes = [0]} : i64[]``.", "any")
_reduce("core.reduce_any", np.any, "``%1 = core.reduce_any %0 {axes = [-1]} : bool[B]``.", "bool")
_reduce("core.reduce_all", np.all, "``%1 = core.reduce_all %0 {axes = [-1]} : bool[B]``.", "bool")


@register_op
class ArgMax(OpDef):
    """``%1 = core.argmax %0 {axis = -1} : i64[B,S]`` — index of the first maximum."""

    name = "core.argmax"
    operands = ("x",)
    attrs = {"axis": attr(AttrKind.INT), "keepdim": attr(AttrKind.BOOL, False)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        t = types[0]
        ax = norm_axis(attrs["axis"], t.rank)
        shape = [1 if i == ax else d for i, d in enumerate(t.shape)] if attrs["keepdim"] else \
            [d for i, d in enumerate(t.shape) if i != ax]
        return [TensorType(tuple(shape), DType.i64)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [np.asarray(np.argmax(inputs[0], axis=attrs["axis"], keepdims=attrs["keepdim"]), dtype=np.int64)]


@register_op
class ArgMin(ArgMax):
    """``%1 = core.argmin %0 {axis = -1} : i64[B,S]`` — index of the first minimum (np.argmin:
    a NaN is the minimum and the first NaN wins). Exact for every element type, unlike
    ``argmax(-x)``, which is wrong for unsigned ints (-0 = 0) and the minimum signed int."""

    name = "core.argmin"

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        return [np.asarray(np.argmin(inputs[0], axis=attrs["axis"], keepdims=attrs["keepdim"]), dtype=np.int64)]


class _Cumulative(OpDef):
    """A running reduction along ``axis`` (``scan`` is numpy's cumsum or cumprod)."""

    operands = ("x",)
    attrs = {"axis": attr(AttrKind.INT)}
    scan: ClassVar[Any]

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        norm_axis(attrs["axis"], types[0].rank)
        return [types[0]]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x = inputs[0]  # numpy scans a 0-d array as a 1-element vector: keep the declared shape
        return [self.scan(x, axis=attrs["axis"] if x.ndim else None, dtype=x.dtype).reshape(x.shape)]


@register_op
class CumSum(_Cumulative):
    """``%1 = core.cumsum %0 {axis = 1} : i64[B,S]`` — running sum along an axis."""

    name = "core.cumsum"
    scan = staticmethod(np.cumsum)


# -- generators ------------------------------------------------------------------------------------
@register_op
class Arange(OpDef):
    """``%0 = core.arange {start = 0, end = S, step = 1, dtype = i64} : i64[S]`` — [start, end)."""

    name = "core.arange"
    attrs = {"start": attr(AttrKind.DIM, 0), "end": attr(AttrKind.DIM), "step": attr(AttrKind.INT, 1),
             "dtype": attr(AttrKind.DTYPE, DType.i64)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        start, end, step = attrs["start"], attrs["end"], attrs["step"]
        if step == 0:
            raise TypeInferenceError("core.arange step must not be 0")
        if isinstance(start, int) and isinstance(end, int):
            n: Dim = max(0, -(-(end - start) // step))
        elif step == 1:
            n = end - start  # type: ignore[operator]
        else:
            n = floordiv(end - start + (step - (1 if step > 0 else -1)), step)  # type: ignore[operator]
        return [TensorType((n,), attrs["dtype"])]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        start, end = concrete((attrs["start"], attrs["end"]), env)
        return [np.arange(start, end, attrs["step"]).astype(attrs["dtype"].to_numpy())]


@register_op
class Full(OpDef):
    """``%0 = core.full {shape = [B,1,S,S], value = -inf, dtype = f32} : f32[B,1,S,S]``."""

    name = "core.full"
    attrs = {"shape": attr(AttrKind.SHAPE), "value": attr(AttrKind.FLOAT), "dtype": attr(AttrKind.DTYPE)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        return [TensorType(tuple(attrs["shape"]), attrs["dtype"])]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        value: Any = attrs["value"]
        dt = attrs["dtype"]
        if dt.is_int:
            value = int(value)
        elif dt is DType.bool:
            value = bool(value)
        return [np.full(concrete(attrs["shape"], env), value, dtype=dt.to_numpy())]


@register_op
class Triangle(OpDef):
    """``%1 = core.triangle %0 {upper = true, diagonal = 1} : f32[S,S]`` — triu/tril of the last
    two dims, zeros elsewhere."""

    name = "core.triangle"
    operands = ("x",)
    attrs = {"upper": attr(AttrKind.BOOL), "diagonal": attr(AttrKind.INT, 0)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        if types[0].rank < 2:
            raise TypeInferenceError(f"core.triangle needs rank >= 2, got {types[0]}")
        return [types[0]]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        fn = np.triu if attrs["upper"] else np.tril
        return [fn(inputs[0], attrs["diagonal"])]


__all__ = ["AttrSpec", "SymExpr", "sym_max"]


# -- more elementwise math (ONNX: no exact composition of the ops above) ---------------------------
_unary("core.tan", np.tan, "``%1 = core.tan %0 : f32[N]`` — tan x.", onnx="Tan")
_unary("core.asin", np.arcsin, "``%1 = core.asin %0 : f32[N]`` — arcsin x.", onnx="Asin")
_unary("core.acos", np.arccos, "``%1 = core.acos %0 : f32[N]`` — arccos x.", onnx="Acos")
_unary("core.atan", np.arctan, "``%1 = core.atan %0 : f32[N]`` — arctan x.", onnx="Atan")
_unary("core.sinh", np.sinh, "``%1 = core.sinh %0 : f32[N]`` — sinh x.", onnx="Sinh")
_unary("core.cosh", np.cosh, "``%1 = core.cosh %0 : f32[N]`` — cosh x.", onnx="Cosh")
_unary("core.asinh", np.arcsinh, "``%1 = core.asinh %0 : f32[N]`` — arsinh x.", onnx="Asinh")
_unary("core.acosh", np.arccosh, "``%1 = core.acosh %0 : f32[N]`` — arcosh x.", onnx="Acosh")
_unary("core.atanh", np.arctanh, "``%1 = core.atanh %0 : f32[N]`` — artanh x.", onnx="Atanh")
_unary("core.round", np.round, "``%1 = core.round %0 : f32[N]`` — round half to even.", onnx="Round")


@register_op
class CumProd(_Cumulative):
    """``%1 = core.cumprod %0 {axis = 1} : f32[B,S]`` — running product along an axis."""

    name = "core.cumprod"
    scan = staticmethod(np.cumprod)


def _einsum_parse(equation: str, ranks: Sequence[int]) -> tuple[list[str], str]:
    """Operand subscripts and output subscript of an explicit or implicit einsum equation
    (``...`` becomes the capital letters, which ONNX does not use)."""
    eq = equation.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(ranks):
        raise TypeInferenceError(f"einsum {equation!r} names {len(ins)} operands, got {len(ranks)}")
    ell = max((r - len(s.replace("...", "")) for s, r in zip(ins, ranks) if "..." in s), default=0)
    fill = "".join(chr(ord("A") + i) for i in range(ell))
    ins = [s.replace("...", fill[ell - (r - len(s.replace("...", ""))):]) for s, r in zip(ins, ranks)]
    if "->" in eq:
        out = rhs.replace("...", fill)
    else:
        letters = "".join(ins)
        out = fill + "".join(sorted(c for c in set(letters) if c.islower() and letters.count(c) == 1))
    return ins, out


@register_op
class Einsum(OpDef):
    """``%2 = core.einsum %0, %1 {equation = "bij,bjk->bik"} : f32[B,N,K]`` — numpy einsum."""

    name = "core.einsum"
    operands = ("*xs",)
    attrs = {"equation": attr(AttrKind.STR)}
    subscripts = staticmethod(_einsum_parse)  # (equation, operand ranks) -> (operand subscripts, output)

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        dt = same_dtype(types, "core.einsum operands")
        ins, out = _einsum_parse(attrs["equation"], [t.rank for t in types])
        dims: dict[str, Dim] = {}
        for subs, t in zip(ins, types):
            if len(subs) != t.rank:
                raise TypeInferenceError(f"einsum subscripts {subs!r} do not fit {t}")
            for c, d in zip(subs, t.shape):
                if dims.get(c, d) != d and dims.get(c) != 1 and d != 1:
                    raise TypeInferenceError(f"einsum index {c!r} is {dims[c]} and {d}")
                dims[c] = d if dims.get(c, 1) == 1 else dims[c]
        return [TensorType(tuple(dims[c] for c in out), dt)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        ins, out = _einsum_parse(attrs["equation"], [x.ndim for x in inputs])
        xs = [x.astype(np.float32) if x.dtype.name == "bfloat16" else x for x in inputs]  # numpy has no bf16 einsum
        return [np.asarray(np.einsum(",".join(ins) + "->" + out, *xs)).astype(inputs[0].dtype, copy=False)]


@register_op
class TopK(OpDef):
    """``%1, %2 = core.topk %0 {k = 3, axis = -1, largest = true} : f32[B,3], i64[B,3]`` — the k
    largest (smallest) values in order and their indices; ties keep the lower index first."""

    name = "core.topk"
    operands = ("x",)
    num_results = 2
    attrs = {"k": attr(AttrKind.INT), "axis": attr(AttrKind.INT, -1), "largest": attr(AttrKind.BOOL, True)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        t = types[0]
        ax = norm_axis(attrs["axis"], t.rank)
        shape = list(t.shape)
        shape[ax] = attrs["k"]
        return [t.with_shape(tuple(shape)), TensorType(tuple(shape), DType.i64)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x = inputs[0]
        ax = attrs["axis"] % x.ndim
        key = -x.astype(np.float64) if attrs["largest"] else x
        idx = np.argsort(key, axis=ax, kind="stable").take(np.arange(attrs["k"]), axis=ax)
        return [np.take_along_axis(x, idx, axis=ax), idx.astype(np.int64)]


_SCATTER_REDUCE = {"none": None, "add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@register_op
class ScatterElements(OpDef):
    """``%3 = core.scatter_elements %x, %idx, %upd {axis = 1, reduction = "none"} : f32[N,M]`` —
    out = x; out[..idx[i][j]..] (op)= upd[i][j] along ``axis``, the inverse of gather_elements."""

    name = "core.scatter_elements"
    operands = ("x", "indices", "updates")
    attrs = {"axis": attr(AttrKind.INT), "reduction": attr(AttrKind.STR, "none")}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        x, idx, upd = types
        same_dtype([x, upd], "core.scatter_elements data and updates")
        if not idx.dtype.is_int or idx.shape != upd.shape or idx.rank != x.rank:
            raise TypeInferenceError(f"core.scatter_elements needs int indices shaped like updates, got {idx}, {upd}")
        if attrs["reduction"] not in _SCATTER_REDUCE:
            raise TypeInferenceError(f"unknown scatter reduction {attrs['reduction']!r}")
        norm_axis(attrs["axis"], x.rank)
        return [x]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x, idx, upd = inputs
        ax = attrs["axis"] % x.ndim
        out = x.copy()
        full: list[Any] = list(np.indices(idx.shape, sparse=True))
        full[ax] = np.where(idx < 0, idx + x.shape[ax], idx)
        fn = _SCATTER_REDUCE[attrs["reduction"]]
        if fn is None:
            out[tuple(full)] = upd
        else:
            fn.at(out, tuple(full), upd)
        return [out]


@register_op
class ScatterND(OpDef):
    """``%3 = core.scatter_nd %x, %idx, %upd {reduction = "none"} : f32[4,4,4]`` — out = x;
    out[idx[i]] (op)= upd[i] for each index tuple in the last dim of ``idx``."""

    name = "core.scatter_nd"
    operands = ("x", "indices", "updates")
    attrs = {"reduction": attr(AttrKind.STR, "none")}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        x, idx, upd = types
        same_dtype([x, upd], "core.scatter_nd data and updates")
        if not idx.dtype.is_int or idx.rank < 1 or attrs["reduction"] not in _SCATTER_REDUCE:
            raise TypeInferenceError(f"core.scatter_nd needs int indices and a known reduction, got {idx}")
        return [x]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x, idx, upd = inputs
        out = x.copy()
        k = idx.shape[-1]
        flat_idx = idx.reshape(-1, k)
        flat_upd = upd.reshape((flat_idx.shape[0],) + x.shape[k:])
        fn = _SCATTER_REDUCE[attrs["reduction"]]
        for i, j in enumerate(flat_idx):
            key = tuple(int(v) for v in j)
            out[key] = flat_upd[i] if fn is None else fn(out[key], flat_upd[i])
        return [out]
