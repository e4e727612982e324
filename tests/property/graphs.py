"""Hypothesis strategies for random well-typed IR modules, plus inputs and tolerances to run them.

Every module is built through ``optllm.ir.Builder``, so what comes out is what a frontend or a
pass could build. Use it to check that a pass keeps the reference outputs::

    from hypothesis import given
    from tests.property.graphs import modules, random_inputs, run_reference, assert_outputs_close

    @given(modules(), envs())
    def test_my_pass_keeps_outputs(m, env):
        xs = random_inputs(m.main, env, seed=0)
        before = run_reference(m, xs)
        MyPass().run(m) ...
        assert_outputs_close(run_reference(m, xs), before)

Graphs mix static and symbolic (``B``, ``S``) shapes and use every op of the registry
(``GENERATED_OPS``): elementwise unary / binary ops with broadcasting (the trig functions on
their domains, integer floordiv/mod/bitand, bool logic), comparisons and ``where``, matmul,
nn.linear with every epilogue (now and then 256 -> 512 wide, so the cpu target's packed-weight
GEMM runs), reshape, permute, expand, slice, concat, split (several results), every reduction,
cumsum/cumprod, argmax/argmin, topk (ties included), softmax, layer/rms/skip norms, rope, attention
(causal, GQA, bool or additive mask), einsum, arange, gather / gather_elements / multi-index /
embedding and scatter_elements / scatter_nd with constant (also negative) indices valid at the
smallest sizes, triangle, duplicated ops (work for CSE), inline ``core.constant`` dense tensors,
``core.full``, weights from the constant table (some identical, so the table deduplicates them),
casts between f32/f16/i32/bool, and now and then a ``fused.region`` wrapping a few elementwise
ops (sometimes with two results).

Runtime sizes for the symbols come from ``envs()``; every symbolic length the generator makes
stays >= 1 for S >= 3 (slices take at most one element off a symbolic dim).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from optllm.backends.reference import run_module
from optllm.ir import Builder, DType, Graph, Module, TensorType, Value
from optllm.ir.diagnostics import TypeInferenceError
from optllm.ir.dialects._shapes import broadcast_shapes
from optllm.ir.symbolic import Dim, SymExpr, evaluate, is_static

__all__ = ["modules", "envs", "random_inputs", "run_reference", "assert_outputs_close", "tolerance",
           "SYMBOLS", "GENERATED_OPS", "CHOICE_LISTS"]

B = SymExpr.symbol("B")
S = SymExpr.symbol("S")
SYMBOLS = ("B", "S")
_DIMS: tuple[Dim, ...] = (B, S, 1, 2, 3, 4)
_FLOATS = (DType.f32, DType.f16)

Draw = Callable[[st.SearchStrategy[Any]], Any]


# -- running ----------------------------------------------------------------------------------------------
def envs() -> st.SearchStrategy[dict[str, int]]:
    """Runtime sizes for the symbols: B in 1..3, S in 3..6."""
    return st.fixed_dictionaries({"B": st.integers(1, 3), "S": st.integers(3, 6)})


def random_inputs(graph: Graph, env: Mapping[str, int], seed: int = 0) -> list[np.ndarray]:
    """Arrays matching ``graph``'s inputs at the sizes ``env``: normal floats, small ints, bools."""
    rng = np.random.default_rng(seed)
    out = []
    for v in graph.inputs:
        shape = v.type.concrete_shape(dict(env))
        dt = v.type.dtype
        if dt.is_float:
            out.append(rng.standard_normal(shape).astype(dt.to_numpy()))
        elif dt is DType.bool:
            out.append(rng.random(shape) > 0.5)
        else:
            out.append(rng.integers(-5, 6, shape).astype(dt.to_numpy()))
    return out


def run_reference(module: Module, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The reference outputs, with numpy's overflow / invalid warnings silenced (random graphs
    may legitimately produce inf and nan)."""
    with np.errstate(all="ignore"):
        return run_module(module, inputs)


def tolerance(dtype: DType) -> tuple[float, float]:
    """(rtol, atol) for comparing results of ``dtype`` computed in a different order."""
    return {DType.f64: (1e-10, 1e-12), DType.f32: (1e-4, 1e-5), DType.f16: (1e-2, 1e-2),
            DType.bf16: (5e-2, 5e-2)}.get(dtype, (0.0, 0.0))


def assert_outputs_close(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> None:
    """Same count, shapes and dtypes; values within ``tolerance`` (exact for ints and bools)."""
    assert len(actual) == len(expected), f"{len(actual)} outputs, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape and a.dtype == e.dtype, f"output #{i}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
        rtol, atol = tolerance(DType.from_numpy(e.dtype))
        if rtol == 0.0:
            np.testing.assert_array_equal(a, e, err_msg=f"output #{i}")
        else:
            np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol,
                                       err_msg=f"output #{i}")


# -- generation ---------------------------------------------------------------------------------------------
class _Gen:
    """The state of one generated module: its graph, a builder and the pool of usable values."""

    def __init__(self, draw: Draw, module: Module) -> None:
        self.draw = draw
        self.m = module
        self.g = module.main
        self.b = Builder.at_end(self.g, loc="gen")
        self.pool: list[Value] = []
        self.n_weights = 0
        self.rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    # -- choices
    def pick(self, ok: Callable[[Value], bool] = lambda v: True) -> Value | None:
        cands = [v for v in self.pool if ok(v)]
        if not cands:
            return None
        return cands[self.draw(st.integers(0, len(cands) - 1))]

    def one_of(self, options: Sequence[Any]) -> Any:
        return self.draw(st.sampled_from(list(options)))

    def dims(self, choices: Sequence[Dim] = _DIMS) -> list[Dim]:
        """The ``choices`` a new op may use: symbols only once an input binds them."""
        bound: set[str] = set()
        for v in self.g.inputs:
            bound |= v.type.symbols()
        return [d for d in choices if is_static(d) or d.symbols() <= bound]  # type: ignore[union-attr]

    def add(self, *vals: Value) -> Value:
        self.pool.extend(vals)
        return vals[0]

    # -- leaves
    def new_input(self, shape: tuple[Dim, ...] | None = None, dtype: DType | None = None) -> Value:
        if shape is None:
            rank = self.draw(st.integers(1, 4))
            shape = tuple(self.one_of(_DIMS) for _ in range(rank))
        dtype = dtype or self.one_of([DType.f32] * 4 + [DType.f16, DType.i64, DType.bool])
        v = self.g.add_input(TensorType(shape, dtype), f"in{len(self.g.inputs)}")
        return self.add(v)

    def random_array(self, shape: tuple[int, ...], dtype: DType) -> np.ndarray:
        if dtype.is_float:
            return self.rng.standard_normal(shape).astype(dtype.to_numpy())
        if dtype is DType.bool:
            return self.rng.random(shape) > 0.5
        return self.rng.integers(-4, 5, shape).astype(dtype.to_numpy())

    def leaf_like(self, shape: tuple[Dim, ...], dtype: DType) -> Value:
        """A value of exactly ``shape``: a weight or inline constant when static, else an input."""
        if not all(is_static(d) for d in shape):
            return self.new_input(shape, dtype)
        static = tuple(int(d) for d in shape)  # type: ignore[arg-type]
        kind = self.one_of(["weight", "constant", "splat", "input"])
        if kind == "input":
            return self.new_input(shape, dtype)
        if kind == "splat":
            arr = np.full(static, self.one_of([0.0, -0.0, 1.0, 0.5, -2.0]), dtype.to_numpy())
            return self.add(self.b.op("core.constant", value=arr))
        arr = self.random_array(static, dtype)
        if kind == "constant" and arr.size <= 16:
            return self.add(self.b.op("core.constant", value=arr))
        return self.weight(arr)

    def weight(self, arr: np.ndarray) -> Value:
        if self.n_weights and self.draw(st.booleans()):
            # an identical twin of an earlier weight: the table stores it once
            earlier = [self.m.constants[n] for n in self.m.constants.names()]
            same = [a for a in earlier if a.shape == arr.shape and a.dtype == arr.dtype]
            if same:
                arr = same[0].copy()
        name = self.m.constants.add(arr, f"w{self.n_weights}")
        self.n_weights += 1
        op = self.b.create("core.weight", [], {"name": name}, result_types=[self.m.constants.type_of(name)])
        return self.add(op.result)

    def broadcast_partner(self, x: Value) -> Value:
        """Another operand that broadcasts with ``x``: from the pool, or a new leaf."""
        if self.draw(st.booleans()):
            other = self.pick(lambda v: v.type.dtype == x.type.dtype and _broadcasts(v.type.shape, x.type.shape))
            if other is not None:
                return other
        shape = list(x.type.shape)
        drop = self.draw(st.integers(0, len(shape)))
        shape = shape[drop:]
        ones = [self.draw(st.booleans()) for _ in shape]
        shape = [1 if one else d for one, d in zip(ones, shape)]
        if self.draw(st.booleans()):  # prefer static partners: weights and inline constants
            shape = [d if is_static(d) else 1 for d in shape]
        return self.leaf_like(tuple(shape), x.type.dtype)


def _broadcasts(a: Sequence[Dim], b: Sequence[Dim]) -> bool:
    try:
        return tuple(broadcast_shapes(a, b)) == tuple(b)
    except TypeInferenceError:
        return False


def _is_float(v: Value) -> bool:
    return v.type.dtype.is_float


# Unary ops safe on any finite float input (no domain errors).
_SAFE_UNARY = ("core.neg", "core.abs", "core.tanh", "core.sigmoid", "core.sin", "core.cos", "core.erf",
               "core.floor", "nn.relu", "nn.gelu", "nn.silu", "core.exp", "core.ceil", "core.round",
               "core.tan", "core.atan", "core.sinh", "core.cosh", "core.asinh")
# Ops with a restricted domain get abs(x) + 1 first.
_POSITIVE_UNARY = ("core.sqrt", "core.rsqrt", "core.log", "core.reciprocal", "core.acosh")
# Ops defined on (-1, 1) get tanh(x) / 2 first.
_UNIT_UNARY = ("core.asin", "core.acos", "core.atanh")
_BINARY_FLOAT = ("core.add", "core.sub", "core.mul", "core.div", "core.max", "core.min", "core.pow")
_BINARY_INT = ("core.add", "core.sub", "core.mul", "core.max", "core.min", "core.floordiv", "core.mod",
               "core.bitand")
_BINARY_BOOL = ("core.and", "core.or", "core.xor")
_COMPARE = ("core.lt", "core.ge", "core.eq", "core.ne", "core.le", "core.gt")
_MIN_ENV = {"B": 1, "S": 3}  # the smallest sizes envs() and larger_envs() draw


def _min_size(d: Dim) -> int:
    """The smallest runtime size of dim ``d`` (index values drawn below it are always valid)."""
    return int(d) if is_static(d) else int(evaluate(d, _MIN_ENV))  # type: ignore[call-overload]


def _unary(gen: _Gen) -> None:
    x = gen.pick(_is_float)
    if x is None:
        return
    name = gen.one_of(_SAFE_UNARY + _POSITIVE_UNARY + _UNIT_UNARY)
    if name in _POSITIVE_UNARY:
        one = gen.add(gen.b.op("core.constant", value=np.ones((), x.type.dtype.to_numpy())))
        x = gen.add(gen.b.op("core.add", gen.b.op("core.abs", x), one))
    if name in _UNIT_UNARY:
        half = gen.add(gen.b.op("core.constant", value=np.full((), 0.5, x.type.dtype.to_numpy())))
        x = gen.add(gen.b.op("core.mul", gen.b.op("core.tanh", x), half))
    if name == "nn.gelu":
        gen.add(gen.b.op(name, x, approximate=gen.one_of(["none", "tanh"])))
        return
    gen.add(gen.b.op(name, x))


def _binary(gen: _Gen) -> None:
    x = gen.pick()
    if x is None:
        return
    y = gen.broadcast_partner(x)
    dt = x.type.dtype
    names = _BINARY_FLOAT if dt.is_float else _BINARY_BOOL if dt is DType.bool else _BINARY_INT
    a, b = (x, y) if gen.draw(st.booleans()) else (y, x)
    name = gen.one_of(names)
    if name == "core.pow":  # a positive base: no NaN from fractional powers of negatives
        one = gen.add(gen.b.op("core.constant", value=np.ones((), dt.to_numpy())))
        a = gen.add(gen.b.op("core.add", gen.b.op("core.abs", a), one))
        b = gen.add(gen.b.op("core.tanh", b))
    gen.add(gen.b.op(name, a, b))


def _int_arith(gen: _Gen) -> None:
    """Integer arithmetic (floor division and modulo by possibly zero divisors: numpy gives 0)."""
    x = gen.pick(lambda v: v.type.dtype.is_int)
    if x is None:
        f = gen.pick(_is_float)
        if f is None:
            return
        four = gen.add(gen.b.op("core.constant", value=np.full((), 4.0, f.type.dtype.to_numpy())))
        x = gen.add(gen.b.op("core.cast", gen.b.op("core.mul", gen.b.op("core.tanh", f), four), dtype=DType.i32))
    y = gen.broadcast_partner(x)
    gen.add(gen.b.op(gen.one_of(_BINARY_INT), x, y))


def _compare_where(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.dtype is not DType.bool)
    if x is None:
        return
    y = gen.broadcast_partner(x)
    c = gen.add(gen.b.op(gen.one_of(_COMPARE), x, y))
    if gen.draw(st.booleans()):
        c = gen.add(gen.b.op("core.not", c))
    gen.add(gen.b.op("core.where", c, x, y))


def _cast(gen: _Gen) -> None:
    x = gen.pick()
    if x is None:
        return
    src = x.type.dtype
    if src.is_float:
        dst = gen.one_of([d for d in _FLOATS if d is not src] + [DType.i32, DType.f32])
        if dst is DType.i32:  # a float -> int cast needs values in range
            x = gen.add(gen.b.op("core.tanh", x))
    else:
        dst = gen.one_of([DType.f32, DType.f16])
    gen.add(gen.b.op("core.cast", x, dtype=dst))


def _matmul(gen: _Gen) -> None:
    x = gen.pick(lambda v: _is_float(v) and v.type.rank >= 2)
    if x is None:
        return
    k = x.type.shape[-1]
    if is_static(k) and gen.draw(st.booleans()):
        n = gen.one_of([1, 2, 3, 5])
        w = gen.leaf_like((k, n), x.type.dtype)
    else:  # x @ x^T: [.., M, K] @ [.., K, M]
        perm = list(range(x.type.rank))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        w = gen.add(gen.b.op("core.permute", x, perm=perm))
    gen.add(gen.b.op("core.matmul", x, w))


def _reshape(gen: _Gen) -> None:
    x = gen.pick()
    if x is None:
        return
    shape = list(x.type.shape)
    choice = gen.one_of(["merge", "split", "flatten", "unsqueeze"])
    if choice == "merge" and len(shape) >= 2:
        i = gen.draw(st.integers(0, len(shape) - 2))
        shape[i:i + 2] = [shape[i] * shape[i + 1]]  # type: ignore[operator]
    elif choice == "split" and any(is_static(d) and int(d) % 2 == 0 for d in shape):  # type: ignore[call-overload]
        i = next(j for j, d in enumerate(shape) if is_static(d) and int(d) % 2 == 0)  # type: ignore[call-overload]
        shape[i:i + 1] = [2, int(shape[i]) // 2]  # type: ignore[call-overload]
    elif choice == "flatten":
        total: Dim = 1
        for d in shape:
            total = total * d  # type: ignore[operator]
        shape = [total]
    else:
        shape.insert(gen.draw(st.integers(0, len(shape))), 1)
    gen.add(gen.b.op("core.reshape", x, shape=shape))


def _permute(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 2)
    if x is None:
        return
    perm = gen.draw(st.permutations(list(range(x.type.rank))))
    gen.add(gen.b.op("core.permute", x, perm=perm))


def _expand(gen: _Gen) -> None:
    x = gen.pick(lambda v: 1 in v.type.shape or v.type.rank < 3)
    if x is None:
        return
    shape = [gen.one_of(gen.dims([B, S, 2, 3])) if d == 1 and gen.draw(st.booleans()) else d
             for d in x.type.shape]
    if x.type.rank < 3 and gen.draw(st.booleans()):
        shape.insert(0, gen.one_of(gen.dims([B, 2])))
    gen.add(gen.b.op("core.expand", x, shape=shape))


def _slice(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 1 and 0 not in v.type.shape)
    if x is None:
        return
    ax = gen.draw(st.integers(0, x.type.rank - 1))
    d = x.type.shape[ax]
    if is_static(d):
        n = int(d)  # type: ignore[call-overload]
        start = gen.draw(st.integers(0, n - 1))
        end = gen.draw(st.integers(start + 1, n + 2))  # past the end is clamped
        step = gen.draw(st.integers(1, 2))
    elif d == S:  # S >= 3 at run time: at most one element off
        start, end = gen.one_of([(0, S), (1, S), (0, S - 1), (0, 1), (0, 2)])
        step = 1
    else:
        start, end, step = 0, d, 1
    axis = ax - x.type.rank if gen.draw(st.booleans()) else ax
    gen.add(gen.b.op("core.slice", x, axis=axis, start=start, end=end, step=step))


def _concat(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 1)
    if x is None:
        return
    ax = gen.draw(st.integers(0, x.type.rank - 1))
    same = [v for v in gen.pool if v.type.dtype == x.type.dtype and v.type.rank == x.type.rank
            and all(v.type.shape[i] == x.type.shape[i] for i in range(x.type.rank) if i != ax)]
    n = gen.draw(st.integers(1, 3))
    parts = [x] + [same[gen.draw(st.integers(0, len(same) - 1))] for _ in range(n)]
    gen.add(gen.b.op("core.concat", *parts, axis=ax))


def _split(gen: _Gen) -> None:
    x = gen.pick(lambda v: any((is_static(d) and int(d) >= 2) or d == S for d in v.type.shape))  # type: ignore[call-overload]
    if x is None:
        return
    axes = [i for i, d in enumerate(x.type.shape) if (is_static(d) and int(d) >= 2) or d == S]  # type: ignore[call-overload]
    ax = gen.one_of(axes)
    d = x.type.shape[ax]
    if d == S:
        sizes: list[Dim] = gen.one_of([[1, S - 1], [S - 2, 2], [1, 1, S - 2]])
    else:
        n = int(d)  # type: ignore[call-overload]
        cut = gen.draw(st.integers(1, n - 1))
        sizes = [cut, n - cut]
    op = gen.b.create("core.split", [x], {"axis": ax, "sizes": sizes})
    gen.add(*op.results)


def _reduce(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 1 and v.type.dtype is not DType.bool)
    if x is None:
        return
    names = ["core.reduce_sum", "core.reduce_max", "core.reduce_min", "core.reduce_prod"]
    if x.type.dtype.is_float:
        names.append("core.reduce_mean")
    if gen.draw(st.integers(0, 3)) == 0:  # any / all of a comparison
        zero = gen.add(gen.b.op("core.constant", value=np.zeros((), x.type.dtype.to_numpy())))
        x = gen.add(gen.b.op("core.gt", x, zero))
        names = ["core.reduce_any", "core.reduce_all"]
    axes = sorted(gen.draw(st.sets(st.integers(0, x.type.rank - 1), min_size=1)))
    axes = [a - x.type.rank if gen.draw(st.booleans()) else a for a in axes]
    gen.add(gen.b.op(gen.one_of(names), x, axes=axes, keepdim=gen.draw(st.booleans())))


def _softmax(gen: _Gen) -> None:
    x = gen.pick(lambda v: _is_float(v) and v.type.rank >= 1)
    if x is None:
        return
    axis = gen.draw(st.integers(-x.type.rank, x.type.rank - 1))
    gen.add(gen.b.op("nn.softmax", x, axis=axis, log=gen.draw(st.booleans())))


def _norm(gen: _Gen) -> None:
    x = gen.pick(lambda v: _is_float(v) and v.type.rank >= 1)
    if x is None:
        return
    ndim = gen.draw(st.integers(1, min(2, x.type.rank)))
    name = gen.one_of(["nn.layer_norm", "nn.rms_norm"])
    norm_shape = x.type.shape[x.type.rank - ndim:]
    params: list[Value] = []
    if all(is_static(d) for d in norm_shape) and gen.draw(st.booleans()):
        count = gen.draw(st.integers(1, 2 if name == "nn.layer_norm" else 1))
        params = [gen.leaf_like(tuple(norm_shape), x.type.dtype) for _ in range(count)]
    eps = gen.one_of([1e-5, 1e-6, 1e-12, 0.1])
    gen.add(gen.b.op(name, x, *params, eps=eps, ndim=ndim))


def _gather(gen: _Gen) -> None:
    x = gen.pick(lambda v: any(is_static(d) and int(d) >= 1 for d in v.type.shape))  # type: ignore[call-overload]
    if x is None:
        return
    axes = [i for i, d in enumerate(x.type.shape) if is_static(d) and int(d) >= 1]  # type: ignore[call-overload]
    ax = gen.one_of(axes)
    n = int(x.type.shape[ax])  # type: ignore[call-overload]
    idx = gen.rng.integers(-n, n, gen.one_of([(), (2,), (2, 3)])).astype(np.int64)
    ids = gen.add(gen.b.op("core.constant", value=idx))
    gen.add(gen.b.op("core.gather", x, ids, axis=ax))


def _full(gen: _Gen) -> None:
    shape = [gen.one_of(gen.dims()) for _ in range(gen.draw(st.integers(0, 3)))]
    dtype = gen.one_of([DType.f32, DType.f32, DType.f16, DType.i64])
    value = gen.one_of([0.0, -0.0, 1.5, -3.0] + ([float("-inf")] if dtype.is_float else []))
    gen.add(gen.b.op("core.full", shape=shape, value=value, dtype=dtype))


def _arange(gen: _Gen) -> None:
    end = gen.one_of(gen.dims([S, 4, S - 1]))
    start = gen.one_of([0, 1]) if is_static(end) or end == S else 0
    r = gen.add(gen.b.op("core.arange", start=start, end=end, step=gen.one_of([1, 2]),
                         dtype=gen.one_of([DType.i64, DType.f32])))
    if r.type.dtype is DType.i64:
        gen.add(gen.b.op("core.cast", r, dtype=DType.f32))


def _attention(gen: _Gen) -> None:
    """Self-attention over x: [..., H, L, E]; k/v sometimes keep half the heads (GQA)."""
    x = gen.pick(lambda v: _is_float(v) and v.type.rank >= 3 and is_static(v.type.shape[-3]))
    if x is None:
        return
    kv = x
    heads = int(x.type.shape[-3])  # type: ignore[call-overload]
    if heads % 2 == 0 and gen.draw(st.booleans()):
        kv = gen.add(gen.b.op("core.slice", x, axis=-3, start=0, end=heads // 2))
    operands = [x, kv, kv]
    attrs: dict[str, Any] = {"causal": gen.draw(st.booleans())}
    if gen.draw(st.booleans()):  # a mask over [L, S], bool or additive
        length = x.type.shape[-2]
        if is_static(length):
            n = int(length)  # type: ignore[call-overload]
            keep = gen.rng.random((n, n)) > 0.3
            keep[:, 0] = True
            fully_masked = gen.draw(st.booleans())  # one query row with every key masked (left padding)
            if fully_masked:
                keep[int(gen.rng.integers(n))] = False
                attrs["masked_rows"] = "zero"  # 0 there, not NaN: the outputs stay comparable
            elif gen.draw(st.booleans()):
                attrs["masked_rows"] = "nan"  # no row fully masked: the same numbers as "zero"
            fill = -np.inf if fully_masked else -1e4
            mask = keep if gen.draw(st.booleans()) else np.where(keep, 0.0, fill).astype(x.type.dtype.to_numpy())
            operands.append(gen.add(gen.b.op("core.constant", value=mask)))
    if gen.draw(st.booleans()):
        attrs["scale"] = gen.one_of([0.125, 1.0, 0.3])
    gen.add(gen.b.create("nn.attention", operands, attrs).result)


def _duplicate(gen: _Gen) -> None:
    """Rebuild an existing op with the same operands and attributes (work for CSE)."""
    ops = [op for op in gen.g if not op.regions and op.name != "core.weight"]
    if not ops:
        return
    op = ops[gen.draw(st.integers(0, len(ops) - 1))]
    gen.add(*gen.b.create(op.name, list(op.operands), dict(op.attrs)).results)


def _region(gen: _Gen) -> None:
    x = gen.pick(_is_float)
    if x is None:
        return
    y = gen.broadcast_partner(x)
    body = Graph("region", [x.type, y.type], ["a", "b"])
    bb = Builder.at_end(body, loc="gen.region")
    vals = list(body.inputs)
    for _ in range(gen.draw(st.integers(1, 3))):
        kind = gen.one_of(["unary", "binary"])
        if kind == "unary":
            v = vals[gen.draw(st.integers(0, len(vals) - 1))]
            vals.append(bb.op(gen.one_of(["core.tanh", "nn.gelu", "core.neg", "nn.silu", "core.sigmoid"]), v))
        else:
            a, b = vals[-1], vals[gen.draw(st.integers(0, len(vals) - 1))]
            vals.append(bb.op(gen.one_of(["core.add", "core.mul", "core.sub", "core.max"]), a, b))
    outs = [vals[-1]]
    if gen.draw(st.booleans()):
        outs.append(vals[gen.draw(st.integers(0, len(vals) - 1))])
    body.set_outputs(outs)
    op = gen.b.create("fused.region", [x, y], {"kind": "elementwise"}, regions=[body],
                      result_types=[v.type for v in outs])
    gen.add(*op.results)


def _scan(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 1 and v.type.dtype is not DType.bool)
    if x is None:
        return
    axis = gen.draw(st.integers(-x.type.rank, x.type.rank - 1))
    name = gen.one_of(["core.cumsum", "core.cumsum", "core.cumprod"])
    if name == "core.cumprod" and x.type.dtype.is_float:  # factors near 1: products stay in range
        x = gen.add(gen.b.op("core.tanh", x))
    gen.add(gen.b.op(name, x, axis=axis))


def _argmax_topk(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 1 and v.type.dtype is not DType.bool)
    if x is None:
        return
    ax = gen.draw(st.integers(0, x.type.rank - 1))
    axis = ax - x.type.rank if gen.draw(st.booleans()) else ax
    if gen.draw(st.booleans()):
        name = gen.one_of(["core.argmax", "core.argmin"])
        gen.add(gen.b.op(name, x, axis=axis, keepdim=gen.draw(st.booleans())))
        return
    k = gen.draw(st.integers(1, min(3, _min_size(x.type.shape[ax]))))
    if gen.draw(st.booleans()) and x.type.dtype.is_float:  # ties: equal values order by index
        x = gen.add(gen.b.op("core.round", x))
    op = gen.b.create("core.topk", [x], {"k": k, "axis": axis, "largest": gen.draw(st.booleans())})
    gen.add(*op.results)


def _index_values(gen: _Gen, n: int, shape: tuple[int, ...], dtype: DType = DType.i64) -> Value:
    """Constant indices in [-n, n) (negative ones count from the end)."""
    arr = gen.rng.integers(-n, n, shape).astype(dtype.to_numpy())
    return gen.add(gen.b.op("core.constant", value=arr))


def _gather_elements(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 1 and 0 not in v.type.shape)
    if x is None:
        return
    ax = gen.draw(st.integers(0, x.type.rank - 1))
    shape = tuple(gen.draw(st.integers(1, min(3, _min_size(d)))) if i != ax else gen.draw(st.integers(1, 4))
                  for i, d in enumerate(x.type.shape))
    ids = _index_values(gen, _min_size(x.type.shape[ax]), shape, gen.one_of([DType.i64, DType.i32]))
    gen.add(gen.b.op("core.gather_elements", x, ids, axis=ax))


def _index(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 1 and 0 not in v.type.shape)
    if x is None:
        return
    first = gen.draw(st.integers(0, x.type.rank - 1))
    count = gen.draw(st.integers(1, min(2, x.type.rank - first)))
    shapes = gen.one_of([[(2,), (2,)], [(2, 1), (3,)], [(), ()], [(3,), ()]])
    ids = [_index_values(gen, _min_size(x.type.shape[first + i]), shapes[i]) for i in range(count)]
    gen.add(gen.b.op("core.index", x, *ids, axes=list(range(first, first + count))))


def _triangle(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 2)
    if x is None:
        return
    gen.add(gen.b.op("core.triangle", x, upper=gen.draw(st.booleans()), diagonal=gen.draw(st.integers(-2, 2))))


def _scatter(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 1 and 0 not in v.type.shape and v.type.dtype is not DType.bool)
    if x is None:
        return
    reduction = gen.one_of(["none", "add", "mul", "max", "min"])
    if gen.draw(st.booleans()):
        ax = gen.draw(st.integers(0, x.type.rank - 1))
        shape = tuple(gen.draw(st.integers(1, min(3, _min_size(d)))) for d in x.type.shape)
        ids = _index_values(gen, _min_size(x.type.shape[ax]), shape)
        upd = gen.leaf_like(shape, x.type.dtype)
        gen.add(gen.b.op("core.scatter_elements", x, ids, upd, axis=ax, reduction=reduction))
        return
    depth = gen.draw(st.integers(1, min(2, x.type.rank)))
    rows = gen.draw(st.integers(1, 3))
    cols = [gen.rng.integers(-_min_size(d), _min_size(d), rows) for d in x.type.shape[:depth]]
    ids = gen.add(gen.b.op("core.constant", value=np.stack(cols, axis=-1).astype(np.int64)))
    upd = gen.leaf_like((rows, *x.type.shape[depth:]), x.type.dtype)
    gen.add(gen.b.op("core.scatter_nd", x, ids, upd, reduction=reduction))


def _einsum(gen: _Gen) -> None:
    x = gen.pick(lambda v: v.type.rank >= 1 and v.type.dtype is not DType.bool)
    if x is None:
        return
    r = x.type.rank
    letters = "abcdefg"[:r]
    choice = gen.one_of(["contract", "transpose", "sum", "outer"])
    if choice == "contract" and is_static(x.type.shape[-1]):  # [.., k] x [k, n]
        w = gen.leaf_like((x.type.shape[-1], gen.one_of([1, 2, 3])), x.type.dtype)
        gen.add(gen.b.op("core.einsum", x, w, equation=f"...{letters[-1]},{letters[-1]}z->...z"))
    elif choice == "transpose":
        gen.add(gen.b.op("core.einsum", x, equation=f"{letters}->{letters[::-1]}"))
    elif choice == "sum":
        keep = "".join(c for c in letters if gen.draw(st.booleans()))
        gen.add(gen.b.op("core.einsum", x, equation=f"{letters}->{keep}"))
    else:  # an outer product with a small vector
        w = gen.leaf_like((2,), x.type.dtype)
        gen.add(gen.b.op("core.einsum", x, w, equation=f"{letters},z->{letters}z"))


def _embedding(gen: _Gen) -> None:
    dtype = gen.one_of(_FLOATS)
    vocab = gen.one_of([3, 5])
    table = gen.leaf_like((vocab, gen.one_of([2, 4])), dtype)
    ids = gen.add(gen.b.op("core.constant", value=gen.rng.integers(0, vocab, gen.one_of([(2,), (2, 3)]))))
    gen.add(gen.b.op("nn.embedding", table, ids))


def _linear(gen: _Gen) -> None:
    """nn.linear with every epilogue; now and then a chain wide enough (512 x 256) for the
    packed-weight GEMM of the cpu target (weights of at least PACKED_MIN_ELEMENTS)."""
    x = gen.pick(lambda v: _is_float(v) and v.type.rank >= 1 and is_static(v.type.shape[-1]))
    if x is None:
        return
    dt = x.type.dtype
    big = dt is DType.f32 and gen.draw(st.integers(0, 3)) == 0
    for n in ([256, 512] if big else [gen.one_of([1, 3, 6])]):
        k = int(x.type.shape[-1])  # type: ignore[call-overload]
        transpose_w = gen.draw(st.booleans())
        shape = (n, k) if transpose_w else (k, n)
        w = gen.weight((gen.rng.standard_normal(shape) / np.sqrt(k)).astype(np.float32)) if big else \
            gen.leaf_like(shape, dt)
        operands = [x, w]
        attrs: dict[str, Any] = {"transpose_w": transpose_w,
                                 "activation": gen.one_of(["none", "gelu", "gelu_tanh", "silu", "relu", "tanh"])}
        if gen.draw(st.booleans()):
            operands.append(gen.leaf_like((n,), dt))
            attrs["bias"] = True
        if gen.draw(st.booleans()):
            operands.append(gen.leaf_like((*x.type.shape[:-1], n), dt))
            attrs["residual"] = True
        x = gen.add(gen.b.create("nn.linear", operands, attrs).result)


def _skip_norm(gen: _Gen) -> None:
    x = gen.pick(lambda v: _is_float(v) and v.type.rank >= 1 and is_static(v.type.shape[-1]))
    if x is None:
        return
    skip = gen.pick(lambda v: v.type == x.type) or x
    name = gen.one_of(["nn.skip_layer_norm", "nn.skip_rms_norm"])
    params: list[Value] = []
    if gen.draw(st.booleans()):
        count = gen.draw(st.integers(1, 2 if name == "nn.skip_layer_norm" else 1))
        params = [gen.leaf_like((x.type.shape[-1],), x.type.dtype) for _ in range(count)]
    op = gen.b.create(name, [x, skip, *params], {"eps": gen.one_of([1e-5, 1e-6]), "ndim": 1})
    gen.add(*op.results)


def _rope(gen: _Gen) -> None:
    x = gen.pick(lambda v: _is_float(v) and v.type.rank >= 2 and is_static(v.type.shape[-1])
                 and int(v.type.shape[-1]) % 2 == 0)  # type: ignore[call-overload]
    if x is None:
        return
    rows = x.type.shape[-2] if is_static(x.type.shape[-2]) and gen.draw(st.booleans()) else 1
    cos, sin = (gen.leaf_like((rows, x.type.shape[-1]), x.type.dtype) for _ in range(2))
    gen.add(gen.b.op("nn.rope", x, cos, sin))


_STEPS: dict[str, tuple[Callable[[_Gen], None], int]] = {
    "unary": (_unary, 4), "binary": (_binary, 5), "compare_where": (_compare_where, 1), "cast": (_cast, 2),
    "matmul": (_matmul, 3), "reshape": (_reshape, 2), "permute": (_permute, 2), "expand": (_expand, 1),
    "slice": (_slice, 2), "concat": (_concat, 2), "split": (_split, 2), "reduce": (_reduce, 2),
    "softmax": (_softmax, 2), "norm": (_norm, 2), "gather": (_gather, 1), "full": (_full, 1),
    "region": (_region, 1), "arange": (_arange, 1), "attention": (_attention, 1), "duplicate": (_duplicate, 1),
    "int_arith": (_int_arith, 1), "scan": (_scan, 1), "argmax_topk": (_argmax_topk, 1), "gather_elements": (_gather_elements, 1),
    "index": (_index, 1), "triangle": (_triangle, 1), "scatter": (_scatter, 1), "einsum": (_einsum, 1),
    "embedding": (_embedding, 1), "linear": (_linear, 1), "skip_norm": (_skip_norm, 1), "rope": (_rope, 1),
}
_STEP_NAMES = [name for name, (_, weight) in _STEPS.items() for _ in range(weight)]

CHOICE_LISTS = (_SAFE_UNARY, _POSITIVE_UNARY, _UNIT_UNARY, _BINARY_FLOAT, _BINARY_INT, _BINARY_BOOL, _COMPARE)
"""The lists a step picks one op from uniformly (each member is as likely as the others)."""

GENERATED_OPS = frozenset({
    *(name for names in CHOICE_LISTS for name in names),
    "core.not", "core.where", "core.cast", "core.matmul", "core.reshape", "core.permute", "core.expand",
    "core.slice", "core.concat", "core.split", "nn.softmax", "nn.layer_norm", "nn.rms_norm", "core.gather",
    "core.full", "fused.region", "core.arange", "nn.attention", "core.constant", "core.weight",
    *(f"core.reduce_{k}" for k in ("sum", "mean", "max", "min", "prod", "any", "all")),
    "core.cumsum", "core.cumprod", "core.argmax", "core.argmin", "core.topk", "core.gather_elements", "core.index",
    "core.triangle", "core.scatter_elements", "core.scatter_nd", "core.einsum", "nn.embedding", "nn.linear",
    "nn.skip_layer_norm", "nn.skip_rms_norm", "nn.rope",
})
"""Every op ``modules()`` can generate (``test_cpu_matches_reference`` checks that this covers
the op registry and that a few hundred draws produce each of them)."""


@st.composite
def modules(draw: Draw, min_ops: int = 1, max_ops: int = 12, regions: bool = True) -> Module:
    """A random well-typed ``Module`` with one graph ``@forward``, built through the Builder."""
    m = Module("random")
    m.add_graph(Graph("forward"))
    gen = _Gen(draw, m)
    for _ in range(draw(st.integers(1, 3))):
        gen.new_input()
    steps = draw(st.integers(min_ops, max_ops))
    allowed = [s for s in _STEP_NAMES if regions or s != "region"]
    for _ in range(steps):
        _STEPS[gen.one_of(allowed)][0](gen)
    produced = [v for v in gen.pool if not v.is_arg]
    if not produced:  # every step found nothing to work on: make sure there is one op
        produced = [gen.add(gen.b.op("core.full", shape=[2], value=1.0, dtype=DType.f32))]
    outs = [produced[-1]]
    for v in produced[:-1]:
        if draw(st.integers(0, 3)) == 0:
            outs.append(v)
    gen.g.set_outputs(outs)
    return m
