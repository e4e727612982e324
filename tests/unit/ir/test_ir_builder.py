"""The builder: type-inferred, attribute-checked ops, and errors that name the op."""

from __future__ import annotations

import pytest

from optllm.ir import Builder, BuildError, DType, Graph, TensorType, VerifyError, get_opdef, verify_graph
from optllm.ir.symbolic import SymExpr

B = SymExpr.symbol("B")
S = SymExpr.symbol("S")


def _graph(*types: TensorType) -> tuple[Graph, Builder]:
    g = Graph("forward", list(types))
    return g, Builder.at_end(g, loc="model.layer")


def test_builder_infers_symbolic_types() -> None:
    g, b = _graph(TensorType((B, S, 64), DType.f32), TensorType((64, 128), DType.f32))
    x, w = g.inputs
    y = b.op("core.matmul", x, w)
    assert str(y.type) == "f32[B,S,128]"
    r = b.op("core.reshape", y, shape=[B * S, 128])
    assert str(r.type) == "f32[B*S,128]"
    p = b.op("core.permute", y, perm=[2, 0, 1])
    assert str(p.type) == "f32[128,B,S]"
    s = b.op("core.slice", y, axis=1, start=1, end=S)
    assert str(s.type) == "f32[B,S-1,128]"
    m = b.op("core.reduce_mean", y, axes=[-1], keepdim=True)
    assert str(m.type) == "f32[B,S,1]"
    c = b.op("core.concat", y, y, axis=1)
    assert str(c.type) == "f32[B,2*S,128]"
    g.set_outputs([y, r, p, s, m, c])
    verify_graph(g)
    assert all(op.loc == "model.layer" for op in g)


def test_builder_fills_defaults_and_canonicalises_attrs() -> None:
    g, b = _graph(TensorType((2, 3), DType.f32))
    ln = b.op("nn.layer_norm", g.inputs[0])
    assert ln.owner is not None and ln.owner.attrs == {"eps": 1e-5, "ndim": 1}
    ln2 = b.op("nn.layer_norm", g.inputs[0], eps=1)  # an int is a valid float
    assert ln2.owner is not None and isinstance(ln2.owner.attrs["eps"], float)
    c = b.op("core.cast", g.inputs[0], dtype="f16")  # dtype by name
    assert c.type.dtype is DType.f16


def test_builder_insertion_point_and_loc_override() -> None:
    g, b = _graph(TensorType((4,), DType.f32))
    x = g.inputs[0]
    last = b.op("core.neg", x)
    assert last.owner is not None
    first = Builder.before_op(last.owner).op("core.exp", x)
    other = Builder.before_op(last.owner, loc="other").op("core.abs", x)
    assert [op.name for op in g] == ["core.exp", "core.abs", "core.neg"]
    assert first.owner is not None and first.owner.loc == "model.layer"
    assert other.owner is not None and other.owner.loc == "other"
    assert b.op("core.sin", x, loc="here").owner.loc == "here"  # type: ignore[union-attr]


@pytest.mark.parametrize("name,operands,attrs,msg", [
    ("core.matmul", [(2, 3), (4, 5)], {}, "contracts 3 with 4"),
    ("core.add", [(2, 3), (4,)], {}, "do not broadcast"),
    ("core.add", [(2, 3)], {}, "expects 2 operands, got 1"),
    ("core.neg", [(2,), (2,)], {}, "expects 1 operands, got 2"),
    ("core.reshape", [(2, 3)], {"shape": [4, 2]}, "element counts differ"),
    ("core.reshape", [(2, 3)], {}, "missing required attribute 'shape'"),
    ("core.permute", [(2, 3)], {"perm": [0, 0]}, "not a permutation"),
    ("core.softmax", [(2,)], {}, "unknown op"),
    ("nn.softmax", [(2, 3)], {"axis": 2}, "axis 2 is out of range for rank 2"),
    ("nn.softmax", [(2, 3)], {"dim": 1}, "unknown attribute 'dim'"),
    ("nn.softmax", [(2, 3)], {"axis": 1.5}, "'axis' expects an int"),
    ("core.split", [(2, 6)], {"axis": 1, "sizes": [2, 3]}, "sizes sum to 5, not 6"),
])
def test_build_errors_name_the_op(name: str, operands: list[tuple[int, ...]], attrs: dict[str, object],
                                  msg: str) -> None:
    g, b = _graph(*(TensorType(s, DType.f32) for s in operands))
    with pytest.raises((BuildError, KeyError)) as ei:
        b.create(name, list(g.inputs), attrs)
    text = str(ei.value)
    assert msg in text
    if ei.type is BuildError:
        assert f"'{name}'" in text and 'loc("model.layer")' in text
        assert isinstance(ei.value, VerifyError)
    assert len(g) == 0  # nothing half-built is left behind


def test_build_error_dtype_mismatch() -> None:
    g, b = _graph(TensorType((2,), DType.f32), TensorType((2,), DType.f16))
    with pytest.raises(BuildError, match=r"'core.add'.*f32\[2\], f16\[2\].*share one element type"):
        b.op("core.add", *g.inputs)


def test_declared_type_ops_need_result_types() -> None:
    g, b = _graph()
    with pytest.raises(BuildError, match="needs explicit result_types"):
        b.create("core.weight", [], {"name": "w"})
    w = b.create("core.weight", [], {"name": "w"}, result_types=[TensorType((2,), DType.f32)])
    assert str(w.result.type) == "f32[2]"


def test_opdef_metadata() -> None:
    add = get_opdef("core.add")
    assert add.arity() == (2, 2) and not add.is_free
    assert get_opdef("core.concat").arity() == (0, None)  # variadic; infer wants >= 1
    assert get_opdef("nn.layer_norm").arity() == (1, 3)
    assert get_opdef("core.reshape").is_free and get_opdef("core.constant").is_free
    with pytest.raises(KeyError, match="unknown op 'nope.op'"):
        get_opdef("nope.op")


def test_negative_dims_are_build_errors() -> None:
    g, b = _graph(TensorType((2, 6), DType.f32))
    with pytest.raises(BuildError, match=r"'core.split'.*negative dimension -1"):
        b.create("core.split", [g.inputs[0]], {"axis": 1, "sizes": [-1, 7]})
    with pytest.raises(BuildError, match=r"'core.full'.*negative dimension -3"):
        b.op("core.full", shape=[-3], value=1.0, dtype=DType.f32)
