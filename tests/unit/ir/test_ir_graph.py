"""SSA values, use-lists, replace-all-uses, the op linked list, modules and the constant table."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from optllm.ir import (
    Builder,
    DType,
    Graph,
    Module,
    Operation,
    TensorType,
    VerifyError,
    get_opdef,
    graph_stats,
    verify_graph,
)
from optllm.ir.graph import ConstantTable

F = TensorType((4,), DType.f32)


def _graph(n_inputs: int = 2) -> tuple[Graph, Builder]:
    g = Graph("forward", [F] * n_inputs, ["x", "y", "z"][:n_inputs])
    return g, Builder.at_end(g)


def _uses(v: object) -> list[tuple[str, int]]:
    return [(u.op.name, u.index) for u in v.uses]  # type: ignore[attr-defined]


def test_use_lists_record_every_operand_slot() -> None:
    g, b = _graph()
    x, y = g.inputs
    s = b.op("core.add", x, x)
    m = b.op("core.mul", s, y)
    assert _uses(x) == [("core.add", 0), ("core.add", 1)]
    assert _uses(s) == [("core.mul", 0)]
    assert x.users == [s.owner]  # distinct users
    assert m.owner is not None and m.owner.operands == [s, y]
    assert not m.has_uses() and s.has_uses()
    assert x.is_arg and not s.is_arg and x.arg_of is g


def test_set_operand_moves_the_use() -> None:
    g, b = _graph()
    x, y = g.inputs
    s = b.op("core.add", x, x)
    op = s.owner
    assert op is not None
    op.set_operand(1, y)
    assert _uses(x) == [("core.add", 0)] and _uses(y) == [("core.add", 1)]
    op.set_operand(1, y)  # no-op
    assert _uses(y) == [("core.add", 1)]
    verify_graph(g)


def test_replace_all_uses_with_rewires_uses_and_outputs() -> None:
    g, b = _graph()
    x, y = g.inputs
    a = b.op("core.add", x, y)
    c = b.op("core.mul", a, a)
    n = b.op("core.neg", x)
    g.set_outputs([a, c])
    a.replace_all_uses_with(a)  # replacing with itself changes nothing
    assert _uses(a) == [("core.mul", 0), ("core.mul", 1)]
    a.replace_all_uses_with(n)
    assert _uses(a) == []
    assert _uses(n) == [("core.mul", 0), ("core.mul", 1)]
    assert g.outputs == [n, c]
    assert c.owner is not None and c.owner.operands == [n, n]
    g.erase(a.owner)  # type: ignore[arg-type]  # now dead
    # the mul now reads the neg defined after it: dominance is the caller's business
    with pytest.raises(VerifyError, match="does not dominate"):
        verify_graph(g)


def test_replace_all_uses_of_an_argument() -> None:
    g, b = _graph()
    x, y = g.inputs
    s = b.op("core.add", x, y)
    g.set_outputs([s, x])
    x.replace_all_uses_with(y)
    assert not x.uses and sorted(_uses(y)) == [("core.add", 0), ("core.add", 1)]
    assert g.outputs == [s, y]
    verify_graph(g)


def test_insert_before_after_and_order() -> None:
    g, b = _graph()
    x, y = g.inputs
    first = b.op("core.add", x, y).owner
    last = b.op("core.neg", x).owner
    assert first is not None and last is not None
    mid = Builder.before_op(last).op("core.mul", x, y).owner
    assert [op.name for op in g] == ["core.add", "core.mul", "core.neg"]
    head = Operation(get_opdef("core.exp"), [x], [F])
    g.insert_before(first, head)
    tail = Operation(get_opdef("core.abs"), [y], [F])
    g.insert_after(last, tail)
    after_mid = Operation(get_opdef("core.sqrt"), [y], [F])
    g.insert_after(mid, after_mid)  # type: ignore[arg-type]
    assert [op.name for op in g] == ["core.exp", "core.add", "core.mul", "core.sqrt", "core.neg", "core.abs"]
    assert g.first is head and g.last is tail and len(g) == 6
    assert [op.name for op in reversed(g.ops)] == [op.name for op in _walk_back(g)]
    assert g.order()[id(after_mid)] == 3
    verify_graph(g)


def _walk_back(g: Graph) -> list[Operation]:
    out, op = [], g.last
    while op is not None:
        out.append(op)
        op = op.prev
    return out


def test_linking_errors() -> None:
    g, b = _graph()
    x, y = g.inputs
    op = b.op("core.add", x, y).owner
    assert op is not None
    with pytest.raises(ValueError, match="already in a graph"):
        g.append(op)
    other = Graph("other", [F])
    stray = Operation(get_opdef("core.neg"), [x], [F])
    with pytest.raises(ValueError, match="not in graph other"):
        other.insert_before(op, stray)
    with pytest.raises(ValueError, match="not in graph other"):
        other.insert_after(op, stray)
    with pytest.raises(ValueError, match="not in graph other"):
        other.unlink(op)
    assert stray.parent is None and len(other) == 0 and len(g) == 1


def test_erase_refuses_used_values() -> None:
    g, b = _graph()
    x, y = g.inputs
    a = b.op("core.add", x, y)
    n = b.op("core.neg", a)
    g.set_outputs([n])
    with pytest.raises(ValueError, match=r"cannot erase core.add: result #0 is still used"):
        g.erase(a.owner)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"cannot erase core.neg"):
        g.erase(n.owner)  # type: ignore[arg-type]  # a graph output counts as a use
    g.set_outputs([a])
    g.erase(n.owner)  # type: ignore[arg-type]
    assert _uses(a) == [] and len(g) == 1 and g.last is a.owner
    verify_graph(g)


def test_erase_while_iterating() -> None:
    g, b = _graph()
    x, y = g.inputs
    for _ in range(4):
        b.op("core.add", x, y)
    for op in g:
        g.erase(op)
    assert len(g) == 0 and g.first is None and g.last is None and not x.uses


def test_unlink_keeps_operands_for_moving() -> None:
    g, b = _graph()
    x, y = g.inputs
    a = b.op("core.add", x, y)
    n = b.op("core.neg", x)
    g.set_outputs([a, n])
    op = n.owner
    assert op is not None
    g.unlink(op)
    assert op.parent is None and op.prev is None and op.next is None and len(g) == 1
    assert _uses(x) == [("core.add", 0), ("core.neg", 0)]  # still reads x
    g.insert_before(a.owner, op)  # type: ignore[arg-type]
    assert [o.name for o in g] == ["core.neg", "core.add"]
    verify_graph(g)


def test_multi_result_values() -> None:
    g = Graph("forward", [TensorType((2, 6), DType.f32)], ["x"])
    b = Builder.at_end(g)
    op = b.create("core.split", [g.inputs[0]], {"axis": 1, "sizes": [2, 4]})
    p, q = op.results
    assert (p.index, q.index) == (0, 1) and p.owner is op and q.owner is op
    assert str(q.type) == "f32[2,4]"
    with pytest.raises(ValueError, match="2 results, not one"):
        _ = op.result


def test_walk_includes_regions_and_stats() -> None:
    g, b = _graph()
    x, y = g.inputs
    body = Graph("region", [F, F])
    bb = Builder.at_end(body)
    body.set_outputs([bb.op("core.add", *body.inputs)])
    r = b.create("fused.region", [x, y], {"kind": "elementwise"}, regions=[body], result_types=[F])
    v = b.op("core.reshape", r.result, shape=[2, 2])
    g.set_outputs([v])
    assert [op.name for op in g.walk()] == ["fused.region", "core.add", "core.reshape"]
    assert graph_stats(g) == {"nodes": 2, "kernel_launches": 1}  # the reshape is a view
    assert body.parent_op is r
    verify_graph(g)


# -- module and constants ----------------------------------------------------------------------------
def test_constant_table_stores_identical_tensors_once() -> None:
    t = ConstantTable()
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert t.add(w, "wte") == "wte"
    assert t.add(w.copy(), "lm_head") == "wte"  # tied weights: one entry
    assert len(t) == 1 and t.names() == ["wte"]
    assert t.add(np.asfortranarray(w), "f") == "wte"  # layout does not matter, contents do


def test_constant_table_keeps_different_data_apart() -> None:
    t = ConstantTable()
    w = np.ones((2, 2), np.float32)
    assert t.add(w, "w") == "w"
    assert t.add(w * 2, "w") == "w_1"  # same name, different data: a fresh name
    assert t.add(w * 3, "w") == "w_2"
    assert t.add(w.astype(np.float16), "h") == "h"  # same values, other dtype
    assert t.add(w.reshape(4), "r") == "r"  # same bytes, other shape
    assert t.add(np.ones((2, 2), ml_dtypes.bfloat16), "b") == "b"
    assert len(t) == 6
    assert t.type_of("w_1") == TensorType((2, 2), DType.f32) and t.type_of("b").dtype is DType.bf16
    np.testing.assert_array_equal(t["w_2"], w * 3)
    assert dict(t.items()).keys() == {"w", "w_1", "w_2", "h", "r", "b"}


def test_constant_table_rejects_unsupported_dtypes_cleanly() -> None:
    t = ConstantTable()
    with pytest.raises(ValueError, match="no optllm DType"):
        t.add(np.zeros(2, np.complex64), "c")
    assert len(t) == 0 and "c" not in t
    with pytest.raises(KeyError):
        t["c"]


def test_constant_table_lazy_and_remove() -> None:
    t = ConstantTable()
    calls = []

    def load() -> np.ndarray:
        calls.append(1)
        return np.zeros(3, np.float32)

    t.add_lazy("z", TensorType((3,), DType.f32), load)
    assert "z" in t and not calls
    assert t["z"].shape == (3,) and t["z"].shape == (3,) and calls == [1]  # loaded once
    w = np.ones(2, np.float32)
    t.add(w, "w")
    t.remove("w")
    assert "w" not in t
    assert t.add(w, "w2") == "w2"  # the removed twin no longer answers for it
    with pytest.raises(KeyError, match="no constant named 'w'"):
        t["w"]


def test_module_graphs_and_unused_constants() -> None:
    m = Module("m")
    g = m.add_graph(Graph("forward", []))
    with pytest.raises(ValueError, match="already has a graph named 'forward'"):
        m.add_graph(Graph("forward", []))
    used = m.constants.add(np.ones(2, np.float32), "used")
    m.constants.add(np.zeros(2, np.float32), "dead")
    w = Builder.at_end(g).create("core.weight", [], {"name": used}, result_types=[m.constants.type_of(used)])
    g.set_outputs([w.result])
    assert m.used_constants() == {"used"}
    assert m.drop_unused_constants() == 1 and m.constants.names() == ["used"]
    assert m.main is g
    assert "core.weight" in str(m)
    with pytest.raises(ValueError, match="has no graphs"):
        _ = Module("empty").main
