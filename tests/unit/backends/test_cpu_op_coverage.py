"""The cpu target runs every op the reference runs.

Walks the op registry (every op the built-in dialects declare): each must be supported by the
cpu target (``supports("cpu", op)``, derived from the lowering's handler table), and each must
have a sample below that is compiled for the cpu target and matches the reference executor. A
newly declared op without a cpu lowering, or without a sample, fails here by name. The samples
are small; the per-op edge cases live in ``tests/unit/backends/cpu/test_lower_*.py`` files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from optllm.backends import TARGETS, supports
from optllm.backends.cpu import CpuExecutable
from optllm.backends.reference import run_module
from optllm.ir import Builder, DType, Graph, Module, TensorType, Value
from optllm.ir.dialects import core
from optllm.ir.ops import all_opdefs, op_source
from optllm.ir.symbolic import SymExpr

B, S = SymExpr.symbol("B"), SymExpr.symbol("S")
RNG = np.random.default_rng(11)
F32, I64, BOOL = DType.f32, DType.i64, DType.bool

Sample = tuple[list[TensorType], Callable[[Builder, list[Value], Module], list[Value]], list[np.ndarray]]


def _builtin_ops() -> list[str]:
    return sorted(n for n in all_opdefs() if op_source(n).startswith("optllm.ir.dialects."))


def _f(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _t(shape: tuple, dtype: DType = F32) -> TensorType:
    return TensorType(tuple(shape), dtype)


def _unary_sample(name: str) -> Sample:
    x = _f(3, 5)
    if name in ("core.log", "core.sqrt", "core.rsqrt", "core.reciprocal"):
        x = np.abs(x) + 0.5
    elif name in ("core.asin", "core.acos", "core.atanh"):
        x = np.tanh(x)
    elif name == "core.acosh":
        x = np.abs(x) + 1.0
    dt = F32
    if name == "core.not":
        dt, x = BOOL, x > 0
    return [_t((B, S), dt)], lambda b, xs, m: [b.op(name, xs[0])], [x]


def _binary_sample(name: str, opdef: core.Binary) -> Sample:
    dt, x, y = F32, _f(3, 5), _f(1, 5)
    if opdef.allowed == "bool":
        dt, x, y = BOOL, x > 0, y > 0
    elif opdef.allowed == "int" or name in ("core.floordiv", "core.mod"):
        dt, x, y = I64, RNG.integers(-9, 9, (3, 5)), RNG.integers(1, 5, (1, 5))
    return [_t((B, S), dt), _t((1, S), dt)], lambda b, xs, m: [b.op(name, xs[0], xs[1])], [x, y]


def _weight(m: Module, b: Builder, arr: np.ndarray, name: str) -> Value:
    m.constants.add(arr, name)
    return b.create("core.weight", [], {"name": name}, result_types=[m.constants.type_of(name)]).result


def _region(b: Builder, xs: list[Value], m: Module) -> list[Value]:
    body = Graph("region", [xs[0].type, xs[1].type], ["a", "c"])
    bb = Builder.at_end(body)
    table = bb.op("core.constant", value=np.arange(12, dtype=np.float32).reshape(4, 3))
    g = bb.op("core.gather", table, body.inputs[1], axis=0)
    body.set_outputs([bb.op("core.mul", bb.op("core.tanh", body.inputs[0]), g)])
    return list(b.create("fused.region", list(xs), {"kind": "elementwise"}, regions=[body],
                         result_types=[xs[0].type]).results)


def _reduce_sample(kind: str) -> Sample:
    logical = kind in ("any", "all")
    x = _f(3, 4)
    return ([_t((B, S), BOOL if logical else F32)],
            lambda b, xs, m: [b.op(f"core.reduce_{kind}", xs[0], axes=[1])], [x > 0 if logical else x])


SAMPLES: dict[str, Sample] = {
    "core.arange": ([_t((B, S))], lambda b, xs, m: [b.op("core.arange", start=1, end=S, step=2, dtype=F32)], [_f(2, 7)]),
    "core.argmax": ([_t((B, S))], lambda b, xs, m: [b.op("core.argmax", xs[0], axis=-1)], [_f(3, 6)]),
    "core.argmin": ([_t((B, S))], lambda b, xs, m: [b.op("core.argmin", xs[0], axis=-1)], [_f(3, 6)]),
    "core.cast": ([_t((B, S))], lambda b, xs, m: [b.op("core.cast", xs[0], dtype=I64)], [_f(3, 6) * 4]),
    "core.concat": ([_t((B, S)), _t((B, 2))], lambda b, xs, m: [b.op("core.concat", xs[0], xs[1], axis=1)],
                    [_f(3, 4), _f(3, 2)]),
    "core.constant": ([], lambda b, xs, m: [b.op("core.constant", value=_f(2, 3))], []),
    "core.cumprod": ([_t((B, S))], lambda b, xs, m: [b.op("core.cumprod", xs[0], axis=0)], [_f(4, 5)]),
    "core.cumsum": ([_t((B, S), I64)], lambda b, xs, m: [b.op("core.cumsum", xs[0], axis=1)],
                    [RNG.integers(0, 2, (3, 9))]),
    "core.einsum": ([_t((B, S, 4)), _t((B, 4, 3))],
                    lambda b, xs, m: [b.op("core.einsum", xs[0], xs[1], equation="bij,bjk->bik")], [_f(2, 5, 4), _f(2, 4, 3)]),
    "core.expand": ([_t((1, S))], lambda b, xs, m: [b.op("core.neg", b.op("core.expand", xs[0], shape=[3, S]))], [_f(1, 4)]),
    "core.full": ([], lambda b, xs, m: [b.op("core.full", shape=[2, 3], value=-1.5, dtype=F32)], []),
    "core.gather": ([_t((B, S)), _t((4,), I64)], lambda b, xs, m: [b.op("core.gather", xs[0], xs[1], axis=1)],
                    [_f(3, 6), np.array([0, -1, 2, 5])]),
    "core.gather_elements": ([_t((B, S)), _t((B, 2), I64)],
                             lambda b, xs, m: [b.op("core.gather_elements", xs[0], xs[1], axis=1)],
                             [_f(3, 6), RNG.integers(-6, 6, (3, 2))]),
    "core.index": ([_t((B, S, 4)), _t((5,), I64), _t((5,), I64)],
                   lambda b, xs, m: [b.op("core.index", xs[0], xs[1], xs[2], axes=[0, 1])],
                   [_f(3, 6, 4), RNG.integers(-3, 3, 5), RNG.integers(-6, 6, 5)]),
    "core.matmul": ([_t((B, S, 4)), _t((4, 3))], lambda b, xs, m: [b.op("core.matmul", xs[0], xs[1])],
                    [_f(2, 5, 4), _f(4, 3)]),
    "core.permute": ([_t((B, S))], lambda b, xs, m: [b.op("core.neg", b.op("core.permute", xs[0], perm=[1, 0]))], [_f(3, 4)]),
    "core.reshape": ([_t((B, S))], lambda b, xs, m: [b.op("core.neg", b.op("core.reshape", xs[0], shape=[B * S]))], [_f(3, 4)]),
    "core.scatter_elements": ([_t((B, S)), _t((B, 2), I64), _t((B, 2))],
                              lambda b, xs, m: [b.op("core.scatter_elements", *xs, axis=1, reduction="add")],
                              [_f(3, 5), RNG.integers(-5, 5, (3, 2)), _f(3, 2)]),
    "core.scatter_nd": ([_t((B, S)), _t((2, 1), I64), _t((2, S))],
                        lambda b, xs, m: [b.op("core.scatter_nd", *xs, reduction="none")],
                        [_f(4, 5), np.array([[1], [-1]]), _f(2, 5)]),
    "core.slice": ([_t((B, S))], lambda b, xs, m: [b.op("core.neg", b.op("core.slice", xs[0], axis=1, start=1, end=S, step=2))],
                   [_f(3, 6)]),
    "core.split": ([_t((B, 5))], lambda b, xs, m: [b.op("core.neg", r) for r in
                                                   b.create("core.split", [xs[0]], {"axis": 1, "sizes": [2, 3]}).results],
                   [_f(3, 5)]),
    "core.topk": ([_t((B, S))], lambda b, xs, m: list(b.create("core.topk", [xs[0]], {"k": 3, "axis": 1}).results),
                  [np.round(_f(3, 7))]),
    "core.triangle": ([_t((B, S, S))], lambda b, xs, m: [b.op("core.triangle", xs[0], upper=False, diagonal=1)], [_f(2, 4, 4)]),
    "core.weight": ([_t((B, 3))], lambda b, xs, m: [b.op("core.add", xs[0], _weight(m, b, _f(3), "w"))], [_f(2, 3)]),
    "core.where": ([_t((B, S), BOOL), _t((B, S)), _t((1, S))], lambda b, xs, m: [b.op("core.where", *xs)],
                   [_f(3, 4) > 0, _f(3, 4), _f(1, 4)]),
    "fused.region": ([_t((B, 3)), _t((B,), I64)], _region, [_f(5, 3), RNG.integers(-4, 4, (5,))]),
    "nn.attention": ([_t((B, 2, S, 4))], lambda b, xs, m: [b.create("nn.attention", [xs[0]] * 3, {"causal": True}).result],
                     [_f(2, 2, 5, 4)]),
    "nn.embedding": ([_t((B, S), I64)], lambda b, xs, m: [b.op("nn.embedding", _weight(m, b, _f(7, 3), "emb"), xs[0])],
                     [RNG.integers(0, 7, (2, 5))]),
    "nn.gelu": ([_t((B, S))], lambda b, xs, m: [b.op("nn.gelu", xs[0], approximate="tanh")], [_f(3, 4)]),
    "nn.layer_norm": ([_t((B, 6))], lambda b, xs, m: [b.op("nn.layer_norm", xs[0], eps=1e-5, ndim=1)], [_f(3, 6)]),
    "nn.linear": ([_t((B, S, 4))], lambda b, xs, m: [b.op("nn.linear", xs[0], _weight(m, b, _f(3, 4), "lw"), transpose_w=True)],
                  [_f(2, 5, 4)]),
    "nn.relu": ([_t((B, S))], lambda b, xs, m: [b.op("nn.relu", xs[0])], [_f(3, 4)]),
    "nn.rms_norm": ([_t((B, 6))], lambda b, xs, m: [b.op("nn.rms_norm", xs[0], eps=1e-5, ndim=1)], [_f(3, 6)]),
    "nn.rope": ([_t((B, 2, S, 4)), _t((S, 4)), _t((S, 4))], lambda b, xs, m: [b.op("nn.rope", *xs)],
                [_f(2, 2, 5, 4), _f(5, 4), _f(5, 4)]),
    "nn.silu": ([_t((B, S))], lambda b, xs, m: [b.op("nn.silu", xs[0])], [_f(3, 4)]),
    "nn.skip_layer_norm": ([_t((B, 6)), _t((B, 6))],
                           lambda b, xs, m: list(b.create("nn.skip_layer_norm", xs, {"eps": 1e-5, "ndim": 1}).results),
                           [_f(3, 6), _f(3, 6)]),
    "nn.skip_rms_norm": ([_t((B, 6)), _t((B, 6))],
                         lambda b, xs, m: list(b.create("nn.skip_rms_norm", xs, {"eps": 1e-5, "ndim": 1}).results),
                         [_f(3, 6), _f(3, 6)]),
    "nn.softmax": ([_t((B, S))], lambda b, xs, m: [b.op("nn.softmax", xs[0], axis=0, log=True)], [_f(3, 4)]),
    **{f"core.reduce_{k}": _reduce_sample(k) for k in ("sum", "mean", "max", "min", "prod", "any", "all")},
}


def _sample(name: str) -> Sample | None:
    opdef = all_opdefs()[name]
    if name in SAMPLES:
        return SAMPLES[name]
    if isinstance(opdef, core.Unary) or (name.startswith("core.") and type(opdef).__mro__[1] is core.Unary):
        return _unary_sample(name)
    if isinstance(opdef, core.Binary):
        return _binary_sample(name, opdef)
    return None


def test_every_registered_op_is_supported_by_the_cpu_target() -> None:
    missing = {n: supports("cpu", n).reason for n in _builtin_ops() if not supports("cpu", n)}
    assert not missing, f"ops the reference runs and the cpu target does not: {missing}"
    assert all(TARGETS["reference"].supports(n) for n in _builtin_ops())


def test_the_registry_is_the_one_the_issue_counts() -> None:
    assert len(_builtin_ops()) >= 88


@pytest.mark.parametrize("name", _builtin_ops())
def test_every_op_runs_on_cpu_like_the_reference(name: str) -> None:
    sample = _sample(name)
    assert sample is not None, f"{name} has no sample in {__name__}.SAMPLES: add one"
    types, make, inputs = sample
    m = Module("m")
    g = m.add_graph(Graph("forward", types, [f"x{i}" for i in range(len(types))]))
    b = Builder.at_end(g, loc=f"sample.{name}")
    outs = make(b, list(g.inputs), m)
    g.set_outputs(outs)
    assert any(op.name == name for op in g), f"the sample of {name} does not use it"
    got = CpuExecutable(m).run(inputs)
    with np.errstate(all="ignore"):
        want = run_module(m, inputs)
    assert len(got) == len(want)
    for i, (a, e) in enumerate(zip(got, want)):
        assert a.shape == e.shape and a.dtype == e.dtype, f"output #{i}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(a, e, err_msg=f"{name} output #{i}")
        else:
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6, err_msg=f"{name} output #{i}")


def test_supports_gives_the_reason_and_the_lowering_error_quotes_it() -> None:
    assert supports("cpu", "core.cumsum") and supports("reference", "core.cumsum")
    no = supports("cpu", "nosuch.op")
    assert not no and "unknown op 'nosuch.op'" in no.reason
    cuda = TARGETS["a100"].supports("core.add")
    assert not cuda and "not implemented yet" in cuda.reason


def test_one_function_ops_name_a_kernel_function_and_get_their_rule_from_it() -> None:
    """``core.Unary`` / ``core.Binary`` ops declare their kernel IR function (``scalar``); the
    elementwise template's rules are derived from that, not from a second list."""
    from optllm.backends.kernels.kir import BINARY_OPS, UNARY_OPS
    from optllm.backends.kernels.templates.scalar import RULES

    for name, opdef in all_opdefs().items():
        if isinstance(opdef, core.Unary):
            assert opdef.scalar in UNARY_OPS, f"{name} names {opdef.scalar!r}, not a kir unary op"
            assert name in RULES
        elif isinstance(opdef, core.Binary):
            assert opdef.scalar in BINARY_OPS, f"{name} names {opdef.scalar!r}, not a kir binary op"
            assert name in RULES
