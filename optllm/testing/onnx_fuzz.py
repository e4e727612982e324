"""Differential fuzzing of the ONNX frontend: random valid ONNX graphs, run by optllm and by
onnxruntime, compared at dtype-aware tolerances; failures shrunk to their smallest form.

    case = generate(seed=7)                       # a random valid graph + its input data
    result = check(case, "cpu")                   # Outcome(kind="ok" | "mismatch" | "crash" | ...)
    small = shrink(case, "cpu", result)           # the fewest nodes that still fail the same way
    save_case(small, "tests/data/onnx_fuzz", "cpu-expand-gemm", result)

Graphs are built from the ops transformer exports use (MatMul, Gemm, elementwise math,
Softmax, LayerNormalization, reductions, the shape and indexing ops, ...). Every value's
element type and shape is tracked while the graph grows, so each node is valid by
construction: operands broadcast, axes are in range, indices in bounds. Input dims are
sometimes the dynamic symbols ``batch``/``seq``; the data are drawn for one binding of them.
Not generated (yet): tensors with no elements (the cpu executor crashes on them; saved case
``cpu-empty-result``), Concat along a symbolic axis, Slice windows that end inside a symbolic
axis, opsets other than 17 and 18, and element types other than f32, i64 and bool.

onnxruntime (graph optimizations off) is the oracle. A target's outcome is

* ``ok``: every output matches (floats within ``rtol=1e-4`` and ``atol=1e-4`` scaled by the
  largest reference magnitude; integers and bools exactly);
* ``mismatch``: it ran and some output differs;
* ``unsupported``: optllm refused with a clear error that names the op (a converter's
  "not supported", the cpu target's "no kernel for core.X");
* ``crash``: any other error;
* ``invalid``: onnxruntime itself rejected the graph (a generator bug; never expected).

Shrinking is delta debugging over nodes: drop a node, its outputs becoming fresh graph
inputs fed with the values onnxruntime computed for them, keep the change when the graph
still fails the same way, until no single removal does.

``inject_bug(name)`` perturbs one op (a converter or a reference implementation) so a run
shows the fuzzer catches a planted bug; see ``BUGS``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Dim = int | str  # a static size or a symbolic one ("batch", "seq")
SYMBOLS = ("batch", "seq")
OPSETS = (17, 18)
RTOL = 1e-4
ATOL = 1e-4
OUTCOMES = ("ok", "mismatch", "crash", "unsupported", "invalid")
_UNSUPPORTED = re.compile(r"not supported|unsupported|has no kernel for|no cpu lowering|has no optllm equivalent")


# -- the case: a graph being built, then run -----------------------------------------------------------
@dataclass
class Value:
    name: str
    dtype: Any  # numpy dtype
    shape: list[Dim]


@dataclass
class Case:
    """A graph (nodes, inputs, initializers, outputs, each value's type) and its input data."""

    seed: int
    opset: int
    env: dict[str, int]
    nodes: list[Any] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    types: dict[str, Value] = field(default_factory=dict)
    feeds: dict[str, np.ndarray] = field(default_factory=dict)

    def ops(self) -> list[str]:
        return [n.op_type for n in self.nodes]

    def model(self) -> Any:
        """The case as an ``onnx.ModelProto`` (IR version 8, so older onnxruntimes load it)."""
        from onnx import helper, numpy_helper

        def info(name: str) -> Any:
            v = self.types[name]
            shape = [d.replace("*", "_") if isinstance(d, str) else d for d in v.shape]
            return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)), shape)

        graph = helper.make_graph(
            list(self.nodes), f"fuzz_{self.seed}", [info(n) for n in self.inputs], [info(n) for n in self.outputs],
            [numpy_helper.from_array(a, n) for n, a in self.inits.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        return model


def _concrete(shape: list[Dim], env: dict[str, int]) -> tuple[int, ...]:
    return tuple(dim_value(d, env) for d in shape)


def dim_value(d: Dim, env: dict[str, int]) -> int:
    """A dim's size: symbolic dims are products written ``"2*batch*seq"``."""
    if isinstance(d, int):
        return d
    out = 1
    for part in d.split("*"):
        out *= int(part) if part.isdigit() else env[part]
    return out


def _product(dims: list[Dim]) -> Dim:
    """The product of ``dims`` as a dim: an int, or ``"k*sym*sym"`` in one canonical spelling."""
    k, syms = 1, []
    for d in dims:
        if isinstance(d, int):
            k *= d
            continue
        for part in d.split("*"):
            if part.isdigit():
                k *= int(part)
            else:
                syms.append(part)
    if not syms or k == 0:
        return k
    return "*".join(([str(k)] if k != 1 else []) + sorted(syms))


def _broadcast(a: list[Dim], b: list[Dim]) -> list[Dim] | None:
    n = max(len(a), len(b))
    pa, pb = [1] * (n - len(a)) + a, [1] * (n - len(b)) + b
    out: list[Dim] = []
    for x, y in zip(pa, pb):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return out


# -- the generator ------------------------------------------------------------------------------------------
class Generator:
    """Grows one random graph; each ``g_<op>`` method adds nodes or returns False when the
    values at hand do not fit the op."""

    def __init__(self, seed: int, max_nodes: int) -> None:
        self.rng = np.random.default_rng(seed)
        dynamic = self.rng.random() < 0.5
        env = {"batch": int(self.rng.integers(1, 4)), "seq": int(self.rng.integers(2, 7))} if dynamic else {}
        self.case = Case(seed, int(self.rng.choice(OPSETS)), env)
        self.max_nodes = max_nodes
        self.count = 0

    # -- values and constants --
    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def add_input(self, shape: list[Dim], dtype: Any = np.float32) -> Value:
        """A new graph input; a product dim (``5*batch*seq``) becomes 1, as an input names only
        plain symbols (its value would be a symbol of its own, unrelated to batch and seq)."""
        shape = [1 if isinstance(d, str) and d not in SYMBOLS else d for d in shape]
        name = self.fresh("in")
        v = Value(name, np.dtype(dtype), shape)
        self.case.types[name] = v
        self.case.inputs.append(name)
        conc = _concrete(shape, self.case.env)
        if np.dtype(dtype).kind == "f":
            self.case.feeds[name] = self.rng.uniform(-2, 2, conc).astype(dtype)
        else:
            self.case.feeds[name] = self.rng.integers(-3, 4, conc).astype(dtype)
        return v

    def const(self, arr: Any) -> Value:
        """A constant: an initializer or a ``Constant`` node, chosen at random."""
        from onnx import helper, numpy_helper

        a = np.asarray(arr)
        if self.rng.random() < 0.5:
            name = self.fresh("init")
            self.case.inits[name] = a
        else:
            name = self.fresh("const")
            self.case.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(a, name)))
        v = Value(name, a.dtype, list(a.shape))
        self.case.types[name] = v
        return v

    def node(self, op: str, ins: list[Value | None], outs: list[tuple[Any, list[Dim]]], **attrs: Any) -> list[Value]:
        from onnx import helper

        names = [self.fresh(op.lower()) for _ in outs]
        self.case.nodes.append(helper.make_node(op, [v.name if v else "" for v in ins], names, **attrs))
        vals = [Value(n, np.dtype(dt), list(shape)) for n, (dt, shape) in zip(names, outs)]
        for v in vals:
            self.case.types[v.name] = v
        return vals

    def pool(self, kind: str = "f", min_rank: int = 0, max_rank: int = 6) -> list[Value]:
        return [v for v in self.case.types.values() if v.dtype.kind == kind and min_rank <= len(v.shape) <= max_rank
                and not any(d == 0 for d in v.shape)]

    def pick(self, kind: str = "f", min_rank: int = 0, max_rank: int = 6) -> Value | None:
        vals = self.pool(kind, min_rank, max_rank)
        if not vals:
            return None
        # prefer recent values, so graphs grow chains rather than fans
        weights = np.arange(1, len(vals) + 1, dtype=np.float64) ** 2
        return vals[int(self.rng.choice(len(vals), p=weights / weights.sum()))]

    def static_shape(self, rank: int) -> list[Dim]:
        return [int(self.rng.choice([1, 2, 3, 4, 5])) for _ in range(rank)]

    def input_shape(self) -> list[Dim]:
        rank = int(self.rng.integers(1, 5))
        shape = self.static_shape(rank)
        if self.case.env and rank >= 2:
            shape[0] = "batch"
            if self.rng.random() < 0.7:
                shape[1] = "seq"
        return shape

    def partner_shape(self, shape: list[Dim]) -> list[Dim]:
        """A random shape that broadcasts against ``shape`` without growing it (mostly)."""
        k = int(self.rng.integers(0, len(shape) + 1))
        out = [1 if self.rng.random() < 0.3 else d for d in shape[len(shape) - k:]]
        if k == len(shape) and len(shape) < 5 and self.rng.random() < 0.2:  # a new leading dim
            out = [int(self.rng.integers(1, 3))] + out
        return out

    def operand(self, shape: list[Dim], low: float = -2.0, high: float = 2.0) -> Value:
        """An f32 operand broadcasting with ``shape``: an existing value, a new input or a constant."""
        want = self.partner_shape(shape)
        r = self.rng.random()
        if r < 0.35:
            fits = [v for v in self.pool("f") if _broadcast(shape, v.shape) is not None
                    and len(_broadcast(shape, v.shape) or []) <= 6]
            if fits:
                return fits[int(self.rng.integers(len(fits)))]
        if r < 0.55:
            return self.add_input(want)
        static = [1 if isinstance(d, str) else d for d in want]
        return self.const(self.rng.uniform(low, high, static).astype(np.float32))

    def positive(self, x: Value) -> Value:
        """``abs(x) + 0.5``: an operand for Sqrt, Reciprocal, Pow and divisors."""
        a = self.node("Abs", [x], [(x.dtype, x.shape)])[0]
        half = self.const(np.asarray(0.5, np.float32))
        return self.node("Add", [a, half], [(x.dtype, x.shape)])[0]

    def static_axes(self, x: Value) -> list[int]:
        return [i for i, d in enumerate(x.shape) if isinstance(d, int)]

    # -- elementwise --
    def g_unary(self) -> bool:
        x = self.pick()
        if x is None:
            return False
        op = str(self.rng.choice(["Sqrt", "Reciprocal", "Erf", "Tanh", "Sigmoid", "Relu", "Neg", "Abs"]))
        if op in ("Sqrt", "Reciprocal"):
            x = self.positive(x)
        self.node(op, [x], [(x.dtype, x.shape)])
        return True

    def g_binary(self) -> bool:
        x = self.pick()
        if x is None:
            return False
        op = str(self.rng.choice(["Add", "Sub", "Mul", "Div", "Min", "Max", "Pow"]))
        y = self.operand(x.shape, 0.5, 2.0) if op == "Pow" else self.operand(x.shape)
        if op == "Div":
            y = self.positive(y)
        if op == "Pow":
            x = self.positive(x)
            if self.rng.random() < 0.5:
                y = self.const(np.asarray(self.rng.choice([0.5, 2.0, 3.0, -1.0]), np.float32))
        out = _broadcast(x.shape, y.shape)
        assert out is not None
        ins = [x, y] if self.rng.random() < 0.8 else [y, x]
        self.node(op, ins, [(np.float32, out)])  # type: ignore[list-item]
        return True

    def g_compare(self) -> bool:
        x = self.pick()
        if x is None:
            return False
        op = str(self.rng.choice(["Less", "Greater", "Equal"]))
        if op == "Equal":  # equal floats are rare: compare integers
            xi = self.node("Cast", [x], [(np.int64, x.shape)], to=7)[0]
            yi = self.const(self.rng.integers(-1, 2, self.partner_shape([1 if isinstance(d, str) else d
                                                                        for d in x.shape])).astype(np.int64))
            out = _broadcast(xi.shape, yi.shape)
            self.node(op, [xi, yi], [(np.bool_, out)])  # type: ignore[list-item]
            return True
        y = self.operand(x.shape)
        out = _broadcast(x.shape, y.shape)
        self.node(op, [x, y], [(np.bool_, out)])  # type: ignore[list-item]
        return True

    def g_not(self) -> bool:
        c = self.pick("b")
        if c is None:
            return False
        self.node("Not", [c], [(np.bool_, c.shape)])
        return True

    def g_where(self) -> bool:
        c = self.pick("b")
        if c is None:
            return False
        x = self.operand(c.shape)
        y = self.operand(c.shape)
        out = _broadcast(_broadcast(c.shape, x.shape) or [], y.shape)
        if out is None or _broadcast(c.shape, x.shape) is None:
            return False
        self.node("Where", [c, x, y], [(np.float32, out)])
        return True

    def g_cast(self) -> bool:
        kinds = [k for k in "bif" if self.pool(k)]
        kind = str(self.rng.choice(kinds))
        x = self.pick(kind)
        assert x is not None
        if kind == "f":
            self.node("Cast", [x], [(np.int64, x.shape)], to=7)
        else:
            self.node("Cast", [x], [(np.float32, x.shape)], to=1)
        return True

    def g_clip(self) -> bool:
        x = self.pick()
        if x is None:
            return False
        lo = self.const(np.asarray(self.rng.uniform(-1.5, 0), np.float32)) if self.rng.random() < 0.8 else None
        hi = self.const(np.asarray(self.rng.uniform(0, 1.5), np.float32)) if self.rng.random() < 0.8 else None
        ins: list[Value | None] = [x, lo, hi]
        while ins and ins[-1] is None:
            ins.pop()
        self.node("Clip", ins, [(x.dtype, x.shape)])
        return True

    # -- nn --
    def g_softmax(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        axis = int(self.rng.integers(-len(x.shape), len(x.shape)))
        self.node("Softmax", [x], [(x.dtype, x.shape)], axis=axis)
        return True

    def g_layernorm(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        rank = len(x.shape)
        axes = [a for a in range(rank) if all(isinstance(d, int) for d in x.shape[a:])]
        if not axes:
            return False
        axis = int(self.rng.choice(axes))
        norm = [int(d) for d in x.shape[axis:]]
        w = self.const(self.rng.uniform(0.5, 1.5, norm).astype(np.float32))
        b = self.const(self.rng.uniform(-1, 1, norm).astype(np.float32)) if self.rng.random() < 0.7 else None
        neg = axis - rank if self.rng.random() < 0.5 else axis
        self.node("LayerNormalization", [x, w] + ([b] if b else []), [(x.dtype, x.shape)], axis=neg,
                  epsilon=float(self.rng.choice([1e-5, 1e-6, 1e-3])))
        return True

    def g_reduce(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        op = str(self.rng.choice(["ReduceMean", "ReduceSum", "ReduceMax"]))
        rank = len(x.shape)
        n = int(self.rng.integers(1, rank + 1))
        axes = sorted(int(a) for a in self.rng.choice(rank, n, replace=False))
        keep = int(self.rng.random() < 0.5)
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)] if keep else \
            [d for i, d in enumerate(x.shape) if i not in axes]
        written = [a - rank if self.rng.random() < 0.3 else a for a in axes]
        if op == "ReduceSum" or self.case.opset >= 18:
            ax = self.const(np.asarray(written, np.int64))
            self.node(op, [x, ax], [(x.dtype, shape)], keepdims=keep)
        else:
            self.node(op, [x], [(x.dtype, shape)], axes=written, keepdims=keep)
        return True

    def g_matmul(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        k = x.shape[-1]
        if not isinstance(k, int):
            return False
        n = int(self.rng.integers(1, 6))
        r = self.rng.random()
        if r < 0.15:  # x @ vector: the last dim contracts away
            w = self.const(self.rng.uniform(-1, 1, [k]).astype(np.float32))
            self.node("MatMul", [x, w], [(np.float32, x.shape[:-1])])
        elif r < 0.3 and len(x.shape) >= 2:  # vector @ x: x's -2 dim contracts
            m = x.shape[-2]
            if not isinstance(m, int):
                return False
            v = self.const(self.rng.uniform(-1, 1, [m]).astype(np.float32))
            self.node("MatMul", [v, x], [(np.float32, x.shape[:-2] + x.shape[-1:])])
        elif r < 0.5:  # batched right operand that broadcasts against x's batch dims
            batch = self.partner_shape(x.shape[:-2]) if len(x.shape) >= 2 else [int(self.rng.integers(1, 3))]
            static = [1 if isinstance(d, str) else d for d in batch]
            w = self.add_input(static + [k, n]) if self.rng.random() < 0.5 else \
                self.const(self.rng.uniform(-1, 1, static + [k, n]).astype(np.float32))
            lead = _broadcast(x.shape[:-2], static) if len(x.shape) >= 2 else static
            rows = x.shape[-2:-1] if len(x.shape) >= 2 else []
            self.node("MatMul", [x, w], [(np.float32, (lead or []) + rows + [n])])
        else:
            w = self.const(self.rng.uniform(-1, 1, [k, n]).astype(np.float32))
            self.node("MatMul", [x, w], [(np.float32, x.shape[:-1] + [n])])
        return True

    def g_gemm(self) -> bool:
        x = self.pick(min_rank=2, max_rank=2)
        if x is None:
            return False
        trans_a = int(self.rng.random() < 0.3)
        m, k = (x.shape[1], x.shape[0]) if trans_a else (x.shape[0], x.shape[1])
        if not isinstance(k, int):
            return False
        n = int(self.rng.integers(1, 6))
        trans_b = int(self.rng.random() < 0.5)
        w = self.const(self.rng.uniform(-1, 1, [n, k] if trans_b else [k, n]).astype(np.float32))
        ms = 1 if isinstance(m, str) else m
        cshape = [[], [1], [n], [1, n], [ms, 1], [ms, n], None][int(self.rng.integers(7))]
        ins: list[Value | None] = [x, w]
        if cshape is not None:
            ins.append(self.const(self.rng.uniform(-1, 1, cshape).astype(np.float32)))
        attrs: dict[str, Any] = {"transA": trans_a, "transB": trans_b}
        if self.rng.random() < 0.4:
            attrs["alpha"] = float(self.rng.choice([0.5, 2.0]))
        if self.rng.random() < 0.4:
            attrs["beta"] = float(self.rng.choice([0.5, 2.0, 0.0]))
        self.node("Gemm", ins, [(np.float32, [m, n])], **attrs)
        return True

    # -- shapes and layout --
    def g_reshape(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        shape = list(x.shape)
        r = self.rng.random()
        if r < 0.4 and len(shape) >= 2 and all(isinstance(d, int) for d in shape[-2:]):  # merge the last two
            spec = [0] * (len(shape) - 2) + [-1]
            out = shape[:-2] + [int(shape[-2]) * int(shape[-1])]  # type: ignore[operator]
        elif r < 0.7 and isinstance(shape[-1], int) and shape[-1] in (4, 6, 2):  # split the last dim
            a = 2
            spec = [0] * (len(shape) - 1) + [a, -1]
            out = shape[:-1] + [a, int(shape[-1]) // a]
        elif all(isinstance(d, int) for d in shape):  # flatten, maybe with an explicit shape
            total = int(np.prod(shape))
            spec = [-1] if self.rng.random() < 0.5 else [1, total]
            out = [total] if spec == [-1] else [1, total]
        elif len(shape) >= 2 and isinstance(shape[-1], int) and r < 0.8:  # fold the leading (symbolic) dims
            spec = [-1, int(shape[-1])]
            out = [_product(shape[:-1]), shape[-1]]
            flat = self.node("Reshape", [x, self.const(np.asarray(spec, np.int64))], [(x.dtype, out)])[0]
            if self.rng.random() < 0.5:  # and back, through Shape (what exporters write)
                shp = self.node("Shape", [x], [(np.int64, [len(shape)])])[0]
                self.node("Reshape", [flat, shp], [(x.dtype, shape)])
            return True
        elif len(shape) >= 3 and isinstance(shape[-1], int) and shape[-1] % 2 == 0:  # -1 inferred from symbols
            spec = [0, -1, 2]
            out = [shape[0], _product(shape[1:-1] + [int(shape[-1]) // 2]), 2]
        else:
            spec = [0] * len(shape) + [1]
            out = shape + [1]
        self.node("Reshape", [x, self.const(np.asarray(spec, np.int64))], [(x.dtype, out)])
        return True

    def g_transpose(self) -> bool:
        x = self.pick(min_rank=2)
        if x is None:
            return False
        perm = [int(p) for p in self.rng.permutation(len(x.shape))]
        self.node("Transpose", [x], [(x.dtype, [x.shape[p] for p in perm])], perm=perm)
        return True

    def g_unsqueeze(self) -> bool:
        x = self.pick(max_rank=4)
        if x is None:
            return False
        rank = len(x.shape) + 1
        axis = int(self.rng.integers(-rank, rank))
        out = list(x.shape)
        out.insert(axis % rank, 1)
        self.node("Unsqueeze", [x, self.const(np.asarray([axis], np.int64))], [(x.dtype, out)])
        return True

    def g_squeeze(self) -> bool:
        cands = [v for v in self.pool() + self.pool("i") if 1 in v.shape]
        if not cands:
            return False
        x = cands[int(self.rng.integers(len(cands)))]
        ones = [i for i, d in enumerate(x.shape) if d == 1]
        axis = int(self.rng.choice(ones))
        rank = len(x.shape)
        written = axis - rank if self.rng.random() < 0.5 else axis
        out = [d for i, d in enumerate(x.shape) if i != axis]
        if self.rng.random() < 0.2 and all(isinstance(d, int) for d in x.shape):  # a symbol may be 1 at run time
            self.node("Squeeze", [x], [(x.dtype, [d for d in x.shape if d != 1])])
        else:
            self.node("Squeeze", [x, self.const(np.asarray([written], np.int64))], [(x.dtype, out)])
        return True

    def g_concat(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        axis = int(self.rng.integers(len(x.shape)))
        other = list(x.shape)
        if isinstance(other[axis], int):
            other[axis] = int(self.rng.integers(1, 4))
        y = self.operand_exact(other)
        if y is None:
            return False
        total = (x.shape[axis] + other[axis]) if isinstance(x.shape[axis], int) else None  # type: ignore[operator]
        if total is None:
            return False  # a symbolic axis doubles (2*seq): not expressible as a Dim here
        out = list(x.shape)
        out[axis] = total
        written = axis - len(x.shape) if self.rng.random() < 0.3 else axis
        self.node("Concat", [x, y], [(x.dtype, out)], axis=written)
        return True

    def operand_exact(self, shape: list[Dim]) -> Value | None:
        fits = [v for v in self.pool("f") if v.shape == shape]
        if fits and self.rng.random() < 0.5:
            return fits[int(self.rng.integers(len(fits)))]
        if any(isinstance(d, str) and d not in SYMBOLS for d in shape):
            return None
        if any(isinstance(d, str) for d in shape) or self.rng.random() < 0.3:
            return self.add_input(shape)
        return self.const(self.rng.uniform(-2, 2, [int(d) for d in shape]).astype(np.float32))

    def g_split(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        axes = [a for a in self.static_axes(x) if int(x.shape[a]) >= 2]
        if not axes:
            return False
        axis = int(self.rng.choice(axes))
        dim = int(x.shape[axis])
        n = int(self.rng.integers(2, dim + 1))
        if self.rng.random() < 0.5 or self.case.opset < 18:
            cuts = sorted(int(c) for c in self.rng.choice(np.arange(1, dim), n - 1, replace=False))
            sizes = [b - a for a, b in zip([0] + cuts, cuts + [dim])]
            ins: list[Value | None] = [x, self.const(np.asarray(sizes, np.int64))]
            attrs: dict[str, Any] = {}
        else:
            chunk = -(-dim // n)
            n = -(-dim // chunk)
            sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
            ins, attrs = [x], {"num_outputs": n}
        outs = []
        for s in sizes:
            shape = list(x.shape)
            shape[axis] = s
            outs.append((x.dtype, shape))
        self.node("Split", ins, outs, axis=axis - len(x.shape) if self.rng.random() < 0.3 else axis, **attrs)
        return True

    def g_slice(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        rank = len(x.shape)
        n = int(self.rng.integers(1, rank + 1))
        axes = [int(a) for a in self.rng.choice(rank, n, replace=False)]
        starts, ends, steps, out = [], [], [], list(x.shape)
        for a in axes:
            dim = x.shape[a]
            if isinstance(dim, str):  # symbolic: the whole axis, forwards or backwards
                s, e, st = [(0, 2**63 - 1, 1), (-1, -(2**63), -1), (0, 2**31, 1)][int(self.rng.integers(3))]
            else:
                st = int(self.rng.choice([1, 1, 2, -1, -2, 3]))
                s = int(self.rng.integers(-dim - 2, dim + 3))
                e = int(self.rng.integers(-dim - 2, dim + 3))
                if self.rng.random() < 0.15:
                    e = 2**63 - 1 if st > 0 else -(2**63)
                out[a] = len(_onnx_slice_range(dim, s, e, st))
                if out[a] == 0:
                    return False
            starts.append(s)
            ends.append(e)
            steps.append(st)
        written = [a - rank if self.rng.random() < 0.3 else a for a in axes]
        ins = [x, self.const(np.asarray(starts, np.int64)), self.const(np.asarray(ends, np.int64)),
               self.const(np.asarray(written, np.int64))]
        if any(st != 1 for st in steps) or self.rng.random() < 0.5:
            ins.append(self.const(np.asarray(steps, np.int64)))
        self.node("Slice", ins, [(x.dtype, out)])
        return True

    def g_gather(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        axes = self.static_axes(x)
        if not axes:
            return False
        axis = int(self.rng.choice(axes))
        dim = int(x.shape[axis])
        irank = int(self.rng.choice([0, 1, 1, 2]))
        ishape = self.static_shape(irank)
        idx = self.rng.integers(-dim, dim, ishape).astype(np.int64)
        if self.rng.random() < 0.3:
            iv = self.add_input(ishape, np.int64)
            self.case.feeds[iv.name] = idx
        else:
            iv = self.const(idx)
        out = x.shape[:axis] + ishape + x.shape[axis + 1:]
        self.node("Gather", [x, iv], [(x.dtype, out)], axis=axis - len(x.shape) if self.rng.random() < 0.3 else axis)
        return True

    def g_gather_elements(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None or not all(isinstance(d, int) for d in x.shape):
            return False
        rank = len(x.shape)
        axis = int(self.rng.integers(rank))
        ishape = [int(self.rng.integers(1, int(d) + 1)) if i != axis else int(self.rng.integers(1, 5))
                  for i, d in enumerate(x.shape)]
        dim = int(x.shape[axis])
        idx = self.const(self.rng.integers(-dim, dim, ishape).astype(np.int64))
        self.node("GatherElements", [x, idx], [(x.dtype, ishape)], axis=axis)
        return True

    def g_expand(self) -> bool:
        x = self.pick(max_rank=4)
        if x is None:
            return False
        spec: list[int] = []
        for d in x.shape:
            if d == 1 and self.rng.random() < 0.6:
                spec.append(int(self.rng.integers(2, 4)))  # a size-1 dim grows
            elif isinstance(d, str) or self.rng.random() < 0.3:
                spec.append(1)  # 1 keeps the dim
            else:
                spec.append(int(d))
        if self.rng.random() < 0.4:
            spec = [int(self.rng.integers(1, 3))] + spec
        out = _broadcast(x.shape, list(spec))
        if out is None:
            return False
        self.node("Expand", [x, self.const(np.asarray(spec, np.int64))], [(x.dtype, out)])
        return True

    def g_shape_ops(self) -> bool:
        """Shape -> ConstantOfShape / Range / Expand chains (what exports build masks from)."""
        x = self.pick(min_rank=1)
        if x is None:
            return False
        r = self.rng.random()
        shp = self.node("Shape", [x], [(np.int64, [len(x.shape)])])[0]
        if r < 0.4:
            from onnx import numpy_helper

            fill = np.asarray([self.rng.uniform(-1, 1)], np.float32)
            c = self.node("ConstantOfShape", [shp], [(np.float32, x.shape)], value=numpy_helper.from_array(fill))[0]
            self.node("Add", [x, c], [(np.float32, x.shape)])
        elif r < 0.7:
            axis = int(self.rng.integers(len(x.shape)))
            one = self.const(np.asarray(axis, np.int64))
            n = self.node("Gather", [shp, one], [(np.int64, [])], axis=0)[0]
            start = self.const(np.asarray(0, np.int64))
            step = self.const(np.asarray(1, np.int64))
            rng_ = self.node("Range", [start, n, step], [(np.int64, [x.shape[axis]])])[0]
            f = self.node("Cast", [rng_], [(np.float32, [x.shape[axis]])], to=1)[0]
            # arange along `axis`, broadcast against x
            shape = [1] * len(x.shape)
            shape[axis] = -1
            col = self.node("Reshape", [f, self.const(np.asarray(shape, np.int64))],
                            [(np.float32, [x.shape[axis] if i == axis else 1 for i in range(len(x.shape))])])[0]
            self.node("Mul", [x, col], [(np.float32, x.shape)])
        else:
            k = int(self.rng.integers(1, 3))
            lead = self.const(np.asarray([k], np.int64))
            big = self.node("Concat", [lead, shp], [(np.int64, [len(x.shape) + 1])], axis=0)[0]
            self.node("Expand", [x, big], [(x.dtype, [k] + x.shape)])
        return True

    def g_cumsum(self) -> bool:
        x = self.pick(min_rank=1)
        if x is None:
            return False
        axis = int(self.rng.integers(-len(x.shape), len(x.shape)))
        ax = self.const(np.asarray(axis, np.int64 if self.rng.random() < 0.7 else np.int32))
        self.node("CumSum", [x, ax], [(x.dtype, x.shape)], exclusive=int(self.rng.random() < 0.3),
                  reverse=int(self.rng.random() < 0.3))
        return True

    def g_trilu(self) -> bool:
        x = self.pick(min_rank=2)
        if x is None:
            return False
        ins: list[Value | None] = [x]
        if self.rng.random() < 0.6:
            ins.append(self.const(np.asarray(int(self.rng.integers(-2, 3)), np.int64)))
        self.node("Trilu", ins, [(x.dtype, x.shape)], upper=int(self.rng.random() < 0.5))
        return True

    GENERATORS: tuple[tuple[str, float], ...] = (
        ("unary", 2), ("binary", 3), ("compare", 1), ("not", 0.5), ("where", 1), ("cast", 0.7), ("clip", 0.5),
        ("softmax", 1), ("layernorm", 1), ("reduce", 1), ("matmul", 2), ("gemm", 1), ("reshape", 1),
        ("transpose", 1), ("unsqueeze", 0.7), ("squeeze", 0.7), ("concat", 1), ("split", 1), ("slice", 1.5),
        ("gather", 1.5), ("gather_elements", 0.7), ("expand", 1), ("shape_ops", 1), ("cumsum", 0.7),
        ("trilu", 0.7),
    )

    def build(self) -> Case:
        self.add_input(self.input_shape())
        if self.rng.random() < 0.4:
            self.add_input(self.input_shape())
        names = [n for n, _ in self.GENERATORS]
        weights = np.asarray([w for _, w in self.GENERATORS])
        tries = 0
        while len(self.case.nodes) < self.max_nodes and tries < 200:
            tries += 1
            g = names[int(self.rng.choice(len(names), p=weights / weights.sum()))]
            getattr(self, f"g_{g}")()
        produced = [o for n in self.case.nodes for o in n.output if n.op_type != "Constant"]
        used = {i for n in self.case.nodes for i in n.input}
        sinks = [o for o in produced if o not in used and 0 not in self.case.types[o].shape]
        keep = sinks[-2:] if sinks else produced[-1:]
        self.case.outputs = keep
        return prune(self.case)


def _const_node_value(case: Case, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for n in case.nodes:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    raise KeyError(name)


def _onnx_slice_range(dim: int, start: int, end: int, step: int) -> range:
    """The indices ONNX ``Slice`` takes on one axis (the spec's clamping, not Python's)."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return range(start, end, step)


def generate(seed: int, max_nodes: int = 10) -> Case:
    """A random valid graph of about ``max_nodes`` nodes (helper nodes included)."""
    return Generator(seed, max_nodes).build()


def prune(case: Case) -> Case:
    """Drop nodes no output depends on, and inputs and initializers nobody reads."""
    live = set(case.outputs)
    kept = []
    for n in reversed(case.nodes):
        if any(o in live for o in n.output):
            kept.append(n)
            live.update(i for i in n.input if i)
    case.nodes = kept[::-1]
    case.inputs = [i for i in case.inputs if i in live]
    case.inits = {k: v for k, v in case.inits.items() if k in live}
    case.feeds = {k: v for k, v in case.feeds.items() if k in case.inputs}
    return case


# -- running ---------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    kind: str  # one of OUTCOMES
    detail: str = ""
    key: str = ""  # what the outcome is about: the unsupported op, the crash's error type

    def same_failure(self, other: Outcome) -> bool:
        return self.kind == other.kind and self.key == other.key


def run_onnxruntime(model: Any, feeds: dict[str, np.ndarray], extra_outputs: list[str] | None = None,
                    types: dict[str, Value] | None = None) -> list[np.ndarray]:
    """onnxruntime's outputs (graph optimizations off: the plain op semantics)."""
    import onnxruntime as ort
    from onnx import helper

    if extra_outputs:
        model = copy.deepcopy(model)
        assert types is not None
        for name in extra_outputs:
            v = types[name]
            model.graph.output.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)), None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return list(sess.run(None, feeds))


def run_optllm(model: Any, feeds: dict[str, np.ndarray], target: str, passes: str = "default") -> list[np.ndarray]:
    """optllm's outputs: ONNX import, the pass pipeline, the target's build, one run."""
    import optllm
    from optllm.frontends.onnx import import_onnx

    imported = import_onnx(model)
    cm = optllm.compile(imported.module, target=target, passes=passes)
    return cm.run_numpy([feeds[n] for n in imported.signature.input_names])


def compare(want: list[np.ndarray], got: list[np.ndarray]) -> str | None:
    """Why ``got`` differs from onnxruntime's ``want`` (None when every output matches)."""
    if len(got) != len(want):
        return f"{len(got)} outputs, onnxruntime has {len(want)}"
    for i, (w, g) in enumerate(zip(want, got)):
        g = np.asarray(g)
        if g.shape != w.shape:
            return f"output {i}: shape {list(g.shape)}, onnxruntime {list(w.shape)}"
        if g.dtype != w.dtype:
            return f"output {i}: dtype {g.dtype}, onnxruntime {w.dtype}"
        if w.dtype.kind in "biu":
            if not np.array_equal(g, w):
                return f"output {i}: {int(np.sum(g != w))} of {w.size} elements differ"
            continue
        wf, gf = w.astype(np.float64), g.astype(np.float64)
        finite = np.abs(wf[np.isfinite(wf)])
        scale = 1.0 + (float(finite.max()) if finite.size else 0.0)
        ok = np.isclose(gf, wf, rtol=RTOL, atol=ATOL * scale, equal_nan=True)
        if not ok.all():
            err = np.abs(gf - wf)[~ok]
            worst = float(np.nanmax(err)) if np.isfinite(err).any() else float("nan")
            return f"output {i}: max abs error {worst:.3g} ({int((~ok).sum())} of {w.size} off)"
    return None


def classify_error(e: BaseException) -> Outcome:
    text = " ".join(str(e).split())
    m = _UNSUPPORTED.search(text)
    if m is not None:
        op = re.search(r"\(([A-Za-z]+)\)|no kernel for ([\w.]+)|(non-uniform constant)|([A-Z]\w+) with", text)
        key = next((g for g in op.groups() if g), "?") if op else "?"
        return Outcome("unsupported", text[:300], key)
    return Outcome("crash", f"{type(e).__name__}: {text[:300]}", type(e).__name__)


def check(case: Case, target: str, want: list[np.ndarray] | None = None) -> Outcome:
    """Run ``case`` on ``target`` and onnxruntime and classify the outcome."""
    model = case.model()
    if want is None:
        try:
            want = run_onnxruntime(model, case.feeds)
        except Exception as e:
            return Outcome("invalid", f"onnxruntime: {type(e).__name__}: {' '.join(str(e).split())[:300]}",
                           "onnxruntime")
    try:
        with np.errstate(all="ignore"):
            got = run_optllm(model, case.feeds, target)
    except Exception as e:
        return classify_error(e)
    why = compare(want, got)
    return Outcome("ok") if why is None else Outcome("mismatch", why, "mismatch")


# -- shrinking ---------------------------------------------------------------------------------------------
def shrink(case: Case, target: str, failure: Outcome, max_rounds: int = 20) -> Case:
    """The smallest graph found that fails on ``target`` the way ``failure`` says.

    Delta debugging over nodes: each step drops one node (its outputs become graph inputs fed
    with onnxruntime's values for them) or one graph output, and keeps the change when the
    graph still fails the same way; it stops when no single step does."""
    best = copy.deepcopy(case)
    for _ in range(max_rounds):
        changed = False
        for cand in _candidates(best):
            # twice: a failure that comes and goes (uninitialised memory) must not steer the search
            if all(check(cand, target).same_failure(failure) for _ in range(2)):
                best, changed = cand, True
                break
        if not changed:
            return best
    return best


def _candidates(case: Case) -> Iterator[Case]:
    """Smaller graphs: one output kept, an earlier value made the output (the nodes after it
    cut), one node removed (its outputs fed as inputs)."""
    if len(case.outputs) > 1:
        for o in case.outputs:
            c = copy.deepcopy(case)
            c.outputs = [o]
            yield prune(c)
    for node in case.nodes:
        for o in node.output:
            if o and o not in case.outputs and node.op_type != "Constant" and 0 not in case.types[o].shape:
                c = copy.deepcopy(case)
                c.outputs = [o]
                yield prune(c)
    values: dict[str, np.ndarray] | None = None
    for i in reversed(range(len(case.nodes))):
        node = case.nodes[i]
        if values is None:
            values = _all_values(case)
        c = copy.deepcopy(case)
        del c.nodes[i]
        used = {x for n in c.nodes for x in n.input} | set(c.outputs)
        for o in node.output:
            if o in used and o in values:
                c.inputs.append(o)
                c.feeds[o] = values[o]
                if o in c.outputs and len(c.nodes) == 0:
                    break
        if not c.nodes or any(o in used and o not in values for o in node.output):
            continue
        yield prune(c)


def _all_values(case: Case) -> dict[str, np.ndarray]:
    """Every node output's value, computed by onnxruntime."""
    names = [o for n in case.nodes for o in n.output if o and o not in case.outputs]
    outs = run_onnxruntime(case.model(), case.feeds, names, case.types)
    return dict(zip(list(case.outputs) + names, outs))


# -- saving ------------------------------------------------------------------------------------------------
def save_case(case: Case, folder: str | Path, name: str, target: str, outcome: Outcome,
              known: str = "") -> Path:
    """Write ``<name>.onnxtxt`` (the graph in ONNX's text syntax, readable in a diff, with its
    inputs' data in ``<name>.npz``) and record the target and failure in the model's metadata;
    ``known`` names an open bug it reproduces. The text form round-trips the cases' constants
    exactly (checked on every saved case)."""
    from onnx import helper, printer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = case.model()
    meta = {"target": target, "outcome": outcome.kind, "detail": outcome.detail, "seed": str(case.seed),
            "env": json.dumps(case.env), "known": known}
    helper.set_model_props(model, meta)
    path = folder / f"{name}.onnxtxt"
    path.write_text(printer.to_text(model) + "\n")
    np.savez(folder / f"{name}.npz", **case.feeds)
    return path


def load_saved(path: str | Path) -> tuple[Any, dict[str, np.ndarray], dict[str, str]]:
    """A saved case (``.onnxtxt``, or a binary ``.onnx``): the model, its feeds and its metadata."""
    import onnx
    import onnx.parser

    path = Path(path)
    model = onnx.parser.parse_model(path.read_text()) if path.suffix == ".onnxtxt" else onnx.load(str(path))
    with np.load(path.with_suffix(".npz")) as data:
        feeds = {k: data[k] for k in data.files}
    return model, feeds, {p.key: p.value for p in model.metadata_props}


# -- planted bugs ------------------------------------------------------------------------------------------
def _bug_sub_swapped() -> Iterator[None]:
    """The Sub converter swaps its operands (a frontend bug: both targets see it)."""
    from optllm.frontends.onnx.registry import override

    def wrap(fn: Any) -> Any:
        def swapped(ctx: Any, node: Any) -> Any:
            node = copy.deepcopy(node)
            node.input[0], node.input[1] = node.input[1], node.input[0]
            return fn(ctx, node)

        return swapped

    with override("Sub", wrap):
        yield


def _bug_tanh_reference() -> Iterator[None]:
    """``core.tanh``'s numpy reference is off by 1e-2 (the reference target sees it)."""
    from optllm.ir.ops import get_opdef

    opdef = get_opdef("core.tanh")
    cls = type(opdef)
    saved = cls.reference

    def wrong(self: Any, inputs: Any, attrs: Any, env: Any) -> list[np.ndarray]:
        return [np.asarray(o) + np.asarray(1e-2, dtype=np.asarray(o).dtype) for o in saved(self, inputs, attrs, env)]

    cls.reference = wrong  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.reference = saved  # type: ignore[method-assign]


def _bug_gather_shifted() -> Iterator[None]:
    """Gather reads one position further along its axis (cyclically): a frontend bug."""
    from optllm.frontends.onnx.registry import override

    def wrap(fn: Any) -> Any:
        def shifted(ctx: Any, node: Any) -> Any:
            x, idx = ctx.need(node, 0), ctx.need(node, 1)
            axis = int(ctx.attr(node, "axis", 0)) % x.type.rank
            n = x.type.shape[axis]
            if not isinstance(n, int) or n == 1 or ctx.shape_value(x) is not None:
                return fn(ctx, node)
            dt = idx.type.dtype.to_numpy()
            # (idx + 1) mod n, for idx in [-n, n): wrong for every index
            moved = ctx.op("core.mod", ctx.op("core.add", idx, ctx.constant(np.asarray(n + 1, dt))),
                           ctx.constant(np.asarray(n, dt)))
            return [ctx.op("core.gather", x, moved, axis=axis)]

        return shifted

    with override("Gather", wrap):
        yield


BUGS: dict[str, Callable[[], Iterator[None]]] = {
    "sub-swapped": _bug_sub_swapped,
    "tanh-reference": _bug_tanh_reference,
    "gather-shifted": _bug_gather_shifted,
}


@contextlib.contextmanager
def inject_bug(name: str | None) -> Iterator[None]:
    """Plant the named bug (``BUGS``) while the block runs; ``None`` plants nothing."""
    if not name:
        yield
        return
    if name not in BUGS:
        raise ValueError(f"unknown bug {name!r}; known: {', '.join(BUGS)}")
    with contextlib.contextmanager(BUGS[name])():
        yield


# -- a campaign --------------------------------------------------------------------------------------------
@dataclass
class Report:
    """Counts per target and outcome, the unsupported ops, and the failures kept."""

    graphs: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    unsupported: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[tuple[int, str, Outcome]] = field(default_factory=list)  # (seed, target, outcome)

    def add(self, seed: int, target: str, outcome: Outcome) -> None:
        c = self.counts.setdefault(target, dict.fromkeys(OUTCOMES, 0))
        c[outcome.kind] += 1
        if outcome.kind == "unsupported":
            u = self.unsupported.setdefault(target, {})
            u[outcome.key] = u.get(outcome.key, 0) + 1
        elif outcome.kind != "ok":
            self.failures.append((seed, target, outcome))


def campaign(seeds: range | list[int], targets: tuple[str, ...] = ("reference", "cpu"), max_nodes: int = 10,
             on_case: Callable[[int, Case, dict[str, Outcome]], None] | None = None) -> Report:
    """Generate a graph per seed, run it on every target, count the outcomes."""
    report = Report()
    for seed in seeds:
        case = generate(seed, max_nodes)
        report.graphs += 1
        try:
            want = run_onnxruntime(case.model(), case.feeds)
        except Exception as e:
            out = Outcome("invalid", f"onnxruntime: {type(e).__name__}: {' '.join(str(e).split())[:300]}", "ort")
            for t in targets:
                report.add(seed, t, out)
            continue
        outcomes = {t: check(case, t, want) for t in targets}
        for t, o in outcomes.items():
            report.add(seed, t, o)
        if on_case is not None:
            on_case(seed, case, outcomes)
    return report
