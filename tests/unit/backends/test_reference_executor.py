"""The reference executor: symbol binding, input checks and errors "while executing <op>"."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from optllm.backends.reference import ExecutionError, InputError, Interpreter, bind_symbols, run_module
from optllm.ir import Builder, DType, Graph, Module, Operation, TensorType, get_opdef, parse_module

SIG = textwrap.dedent("""\
    module @m {
      func @forward(%x: f32[B,S,4], %ids: i64[B,S], %pos: f32[S,4], %flat: f32[B*S,4]) -> (f32[B,S,4], f32[B*S,4]) {
        %0 = core.add %x, %pos : f32[B,S,4] loc("embed.add")
        %1 = core.reshape %0 {shape = [B*S, 4]} : f32[B*S,4]
        %2 = core.add %1, %flat : f32[B*S,4]
        return %0, %2
      }
    }
    """)


def _inputs(b: int = 2, s: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((b, s, 4)).astype(np.float32), np.zeros((b, s), np.int64),
            rng.standard_normal((s, 4)).astype(np.float32), rng.standard_normal((b * s, 4)).astype(np.float32)]


def test_binds_symbols_from_inputs() -> None:
    m = parse_module(SIG)
    assert bind_symbols(m.main, _inputs(2, 3)) == {"B": 2, "S": 3}
    for b, s in [(1, 1), (3, 5)]:
        xs = _inputs(b, s)
        y0, y1 = run_module(m, xs)
        np.testing.assert_array_equal(y0, xs[0] + xs[2])
        np.testing.assert_array_equal(y1, (xs[0] + xs[2]).reshape(b * s, 4) + xs[3])


def test_inconsistent_dims_name_the_input() -> None:
    m = parse_module(SIG)
    xs = _inputs(2, 3)
    xs[2] = xs[2][:2]  # S = 2 here, 3 in %x
    with pytest.raises(InputError, match=r"input %pos: f32\[S,4\]: dim S is 3 elsewhere, got 2"):
        run_module(m, xs)
    xs = _inputs(2, 3)
    xs[3] = xs[3][:5]  # B*S must be 6
    with pytest.raises(InputError, match=r"input %flat: f32\[B\*S,4\] expects shape \[6, 4\], got \[5, 4\]"):
        run_module(m, xs)
    xs = _inputs(2, 3)
    xs[0] = xs[0][..., :3]  # a static dim
    with pytest.raises(InputError, match=r"input %x: f32\[B,S,4\] expects shape \[2, 3, 4\], got \[2, 3, 3\]"):
        run_module(m, xs)


def test_wrong_dtype_rank_and_count() -> None:
    m = parse_module(SIG)
    xs = _inputs()
    xs[1] = xs[1].astype(np.int32)
    with pytest.raises(InputError, match=r"input %ids: i64\[B,S\] expects element type i64, got int32"):
        run_module(m, xs)
    xs = _inputs()
    xs[0] = xs[0][0]
    with pytest.raises(InputError, match=r"input %x: f32\[B,S,4\] expects rank 3, got shape \[3, 4\]"):
        run_module(m, xs)
    with pytest.raises(InputError, match=r"@forward takes 4 inputs \(%x: f32\[B,S,4\], %ids.*got 3"):
        run_module(m, _inputs()[:3])


def test_unbindable_dim() -> None:
    g = Graph("forward", [TensorType((parse_dim("S+1"),), DType.f32)], ["x"])
    g.set_outputs([g.inputs[0]])
    m = Module("m")
    m.add_graph(g)
    with pytest.raises(InputError, match=r"input %x: f32\[S\+1\]: dim S\+1 cannot be bound"):
        run_module(m, [np.zeros(3, np.float32)])


def parse_dim(text: str):  # noqa: ANN201
    from optllm.ir.symbolic import parse_dim as p

    return p(text)


def test_errors_are_reraised_while_executing_the_op() -> None:
    text = textwrap.dedent("""\
        module @m {
          func @forward(%t: f32[10,4], %ids: i64[S]) -> (f32[S,4]) {
            %0 = nn.embedding %t, %ids : f32[S,4] loc("transformer.wte")
            return %0
          }
        }
        """)
    m = parse_module(text)
    with pytest.raises(ExecutionError) as ei:
        run_module(m, [np.zeros((10, 4), np.float32), np.array([1, 10])])
    msg = str(ei.value)
    assert "IndexError: nn.embedding id out of range [0, 10)" in msg
    assert 'while executing %0 = nn.embedding %t, %ids : f32[S,4] loc("transformer.wte")' in msg
    assert isinstance(ei.value.__cause__, IndexError)


def test_wrong_reference_result_is_caught() -> None:
    g = Graph("forward", [TensorType((2,), DType.f32)], ["x"])
    # a hand-made op whose declared type lies: the executor checks every result
    g.append(Operation(get_opdef("core.neg"), [g.inputs[0]], [TensorType((3,), DType.f32)], loc="liar"))
    g.set_outputs([g.last.result])  # type: ignore[union-attr]
    m = Module("m")
    m.add_graph(g)
    with pytest.raises(ExecutionError, match=r"(?s)result float32\[2\] does not match its type f32\[3\].*while executing.*liar"):
        run_module(m, [np.zeros(2, np.float32)])
    assert Interpreter(m, check_types=False).run([np.zeros(2, np.float32)])[0].shape == (2,)


def test_missing_weight_while_executing() -> None:
    m = Module("m")
    g = m.add_graph(Graph("forward", []))
    w = Builder.at_end(g, loc="lm_head").create("core.weight", [], {"name": "w"},
                                                 result_types=[TensorType((2,), DType.f32)])
    g.set_outputs([w.result])
    with pytest.raises(ExecutionError, match=r"(?s)KeyError.*no constant named 'w'.*while executing.*lm_head"):
        run_module(m, [])
    m.constants.add(np.ones(2, np.float32), "w")
    assert run_module(m, [])[0].tolist() == [1.0, 1.0]


def test_region_runs_its_body_and_inner_errors_name_the_inner_op() -> None:
    text = textwrap.dedent("""\
        module @m {
          func @forward(%x: f32[S,4], %i: i64[2]) -> (f32[S,4], f32[2,4]) {
            %0 = fused.region %x, %x : f32[S,4] {
              ^(%a: f32[S,4], %b: f32[S,4]):
              %0 = core.mul %a, %b : f32[S,4]
              %1 = core.exp %0 : f32[S,4]
              return %1
            } loc("blk")
            %1 = fused.region %x, %i : f32[2,4] {
              ^(%a: f32[S,4], %i: i64[2]):
              %0 = core.gather %a, %i {axis = 0} : f32[2,4] loc("inner.gather")
              return %0
            } loc("blk2")
            return %0, %1
          }
        }
        """)
    m = parse_module(text)
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    y, z = run_module(m, [x, np.array([2, -1])])
    np.testing.assert_allclose(y, np.exp(x * x), rtol=1e-6)
    np.testing.assert_array_equal(z, x[[2, -1]])
    with pytest.raises(ExecutionError, match=r"(?s)core.gather index out of range.*while executing.*inner.gather"):
        run_module(m, [x, np.array([0, 3])])


def test_intermediates_are_freed_but_outputs_and_reused_values_survive() -> None:
    g = Graph("forward", [TensorType((3,), DType.f32)], ["x"])
    b = Builder.at_end(g)
    x = g.inputs[0]
    a = b.op("core.exp", x)
    c = b.op("core.add", a, a)
    d = b.op("core.mul", c, a)
    g.set_outputs([d, a, x])
    m = Module("m")
    m.add_graph(g)
    xv = np.array([0.0, 1.0, 2.0], np.float32)
    d_v, a_v, x_v = run_module(m, [xv])
    e = np.exp(xv)
    np.testing.assert_allclose(d_v, (e + e) * e, rtol=1e-6)
    np.testing.assert_array_equal(a_v, e)
    np.testing.assert_array_equal(x_v, xv)


def test_python_lists_are_accepted_as_arrays() -> None:
    g = Graph("forward", [TensorType((2,), DType.i64)], ["x"])
    g.set_outputs([Builder.at_end(g).op("core.neg", g.inputs[0])])
    m = Module("m")
    m.add_graph(g)
    assert run_module(m, [[1, -2]])[0].tolist() == [-1, 2]
