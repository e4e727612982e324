"""dce and cse on built modules: constants, impure ops, numerics unchanged."""

from __future__ import annotations

import numpy as np

import tests.unit.passes.side_effects  # noqa: F401  (registers test_passes.emit)
from optllm.backends.reference import run_module
from optllm.ir import Builder, DType, Graph, Module, TensorType, parse_module, print_module
from optllm.passes import run_pipeline
from optllm.passes.cse import attr_key, op_key

F4 = TensorType((4,), DType.f32)


def _weights_module() -> Module:
    m = Module("w")
    g = m.add_graph(Graph("forward", [F4], ["x"]))
    b = Builder.at_end(g)
    used = m.constants.add(np.arange(4, dtype=np.float32), "used")
    unused = m.constants.add(np.ones(4, dtype=np.float32), "unused")
    orphan = m.constants.add(np.full(4, 2, dtype=np.float32), "orphan")  # in the table, read by nothing
    w0 = b.create("core.weight", [], {"name": used}, result_types=[F4]).result
    w1 = b.create("core.weight", [], {"name": used}, result_types=[F4]).result
    dead = b.create("core.weight", [], {"name": unused}, result_types=[F4]).result
    b.op("core.neg", dead)
    g.set_outputs([b.op("core.add", b.op("core.mul", g.inputs[0], w0), w1)])
    assert orphan == "orphan"
    return m


def test_dce_drops_dead_ops_and_unread_constants() -> None:
    m = _weights_module()
    x = np.array([1, -2, 3, 0.5], dtype=np.float32)
    want = run_module(m, [x])[0]
    report = run_pipeline(m, "dce")
    assert report.passes[0].statistics == {"num-erased": 2, "num-constants-dropped": 2}
    assert m.constants.names() == ["used"]
    np.testing.assert_array_equal(run_module(m, [x])[0], want)


def test_cse_merges_weights_then_dce_cleans_up() -> None:
    m = _weights_module()
    report = run_pipeline(m, "cse,dce")
    assert report.passes[0].statistics == {"num-eliminated": 1}
    assert [op.name for op in m.main] == ["core.weight", "core.mul", "core.add"]


def test_impure_ops_are_neither_erased_nor_merged() -> None:
    m = parse_module("""module @m {
  func @forward(%x: f32[4]) -> (f32[4]) {
    %0 = test_passes.emit %x : f32[4]
    %1 = test_passes.emit %x : f32[4]
    %2 = test_passes.emit %x : f32[4]
    return %2
  }
}
""")
    before = print_module(m)
    report = run_pipeline(m, "cse,dce,canonicalize")
    assert not report.changed and print_module(m) == before


def test_attr_keys_tell_signed_zeros_and_types_apart() -> None:
    assert attr_key(0.0) != attr_key(-0.0)
    assert attr_key(float("nan")) == attr_key(float("nan"))
    assert attr_key((1, 2.0)) == attr_key((1, 2.0)) != attr_key((1, -2.0))
    assert attr_key(1) != attr_key(True) and attr_key(1) != attr_key(1.0)


def test_op_key_ignores_locations_but_not_result_types() -> None:
    m = parse_module("""module @m {
  func @forward(%x: f32[4]) -> (f32[4], f32[4], f16[4]) {
    %0 = core.exp %x : f32[4] loc("a")
    %1 = core.exp %x : f32[4] loc("b")
    %2 = core.cast %x {dtype = f16} : f16[4]
    return %0, %1, %2
  }
}
""")
    a, b, c = m.main.ops
    assert op_key(a) == op_key(b) != op_key(c)
    run_pipeline(m, "cse")
    assert len(m.main) == 2 and m.main.outputs[0] is m.main.outputs[1]
