"""The verifier: each broken invariant gives a VerifyError naming the op and its loc."""

from __future__ import annotations

import textwrap

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
    parse_module,
    verify_graph,
    verify_module,
)
from optllm.ir.values import Use

F4 = TensorType((4,), DType.f32)


def _verify_text(body: str, args: str = "%x: f32[B,S,64], %w: f32[32,16]", results: str = "f32[B,S,64]",
                 ret: str = "%x") -> None:
    text = textwrap.dedent(f"""\
        module @m {{
          func @forward({args}) -> ({results}) {{
        {textwrap.indent(textwrap.dedent(body), "    ")}    return {ret}
          }}
        }}
        """)
    verify_module(parse_module(text))


def test_ill_typed_matmul_in_text() -> None:
    with pytest.raises(VerifyError) as ei:
        _verify_text('%0 = core.matmul %x, %w : f32[B,S,16] loc("h.0.attn.c_proj")\n')
    msg = str(ei.value)
    assert msg.startswith("'core.matmul' at loc(\"h.0.attn.c_proj\") in @forward: ")
    assert "contracts 64 with 32" in msg
    assert "in: %0 = core.matmul %x, %w : f32[B,S,16]" in msg
    assert ei.value.op is not None and ei.value.op.name == "core.matmul"


def test_wrong_declared_result_type() -> None:
    with pytest.raises(VerifyError) as ei:
        _verify_text('%0 = core.add %x, %x : f32[B,S,65] loc("ln")\n')
    assert "'core.add' at loc(\"ln\")" in str(ei.value)
    assert "result types (f32[B,S,65]) differ from the inferred (f32[B,S,64])" in str(ei.value)


def test_wrong_declared_dtype_and_symbol() -> None:
    with pytest.raises(VerifyError, match=r"result types \(f16\[B,S,64\]\) differ"):
        _verify_text("%0 = core.neg %x : f16[B,S,64]\n")
    with pytest.raises(VerifyError, match=r"result types \(f32\[S,B,64\]\) differ"):
        _verify_text("%0 = core.neg %x : f32[S,B,64]\n")


def test_wrong_result_count_of_variadic_op() -> None:
    with pytest.raises(VerifyError, match=r"'core.split'.*result types \(f32\[B,S,32\]\) differ"):
        _verify_text("%0 = core.split %x {axis = 2, sizes = [32, 32]} : f32[B,S,32]\n")


def test_attribute_semantics_checked_by_inference() -> None:
    with pytest.raises(VerifyError, match=r"'nn.softmax'.*axis 3 is out of range for rank 3"):
        _verify_text("%0 = nn.softmax %x {axis = 3} : f32[B,S,64]\n")
    with pytest.raises(VerifyError, match=r"'nn.gelu'.*approximate must be"):
        _verify_text('%0 = nn.gelu %x {approximate = "fast"} : f32[B,S,64]\n')


def test_region_signature_checks() -> None:
    body = """\
        %0 = fused.region %x : f32[B,S,64] {
          ^(%a: f32[B,S,32]):
          return %a
        } loc("blk")
        """
    with pytest.raises(VerifyError, match=r"'fused.region' at loc\(\"blk\"\).*region arguments do not match"):
        _verify_text(body)
    body = """\
        %0 = fused.region %x : f32[B,S,64] {
          ^(%a: f32[B,S,64]):
          %0 = core.reduce_sum %a {axes = [2]} : f32[B,S]
          return %0
        } loc("blk")
        """
    with pytest.raises(VerifyError, match=r"'fused.region' at loc\(\"blk\"\).*region results do not match"):
        _verify_text(body)


def test_errors_inside_a_region_name_the_inner_op() -> None:
    body = """\
        %0 = fused.region %x : f32[B,S,64] {
          ^(%a: f32[B,S,64]):
          %0 = core.exp %a : f32[B,S,63] loc("inner")
          return %0
        } loc("blk")
        """
    with pytest.raises(VerifyError, match=r"^'core.exp' at loc\(\"inner\"\) in @region: result types"):
        _verify_text(body)


# -- invariants only reachable through the API ---------------------------------------------------------
def _graph() -> tuple[Graph, Builder]:
    g = Graph("forward", [F4, F4], ["x", "y"])
    return g, Builder.at_end(g, loc="layer.1")


def test_operand_defined_after_use() -> None:
    g, b = _graph()
    x, y = g.inputs
    a = b.op("core.add", x, y)
    n = b.op("core.neg", a)
    g.set_outputs([n])
    verify_graph(g)
    op = n.owner
    assert op is not None
    g.unlink(op)
    g.insert_before(a.owner, op)  # type: ignore[arg-type]
    with pytest.raises(VerifyError) as ei:
        verify_graph(g)
    assert str(ei.value).startswith("'core.neg' at loc(\"layer.1\") in @forward: operand #0 does not dominate")


def test_use_list_missing_entry() -> None:
    g, b = _graph()
    x, y = g.inputs
    b.op("core.add", x, y)
    y.uses.clear()
    with pytest.raises(VerifyError, match=r"'core.add' at loc\(\"layer.1\"\).*use-list of operand #1 does not record"):
        verify_graph(g)


def test_use_list_stale_entry() -> None:
    g, b = _graph()
    x, y = g.inputs
    a = b.op("core.add", x, y)
    n = b.op("core.neg", a)
    assert n.owner is not None
    a.uses.append(Use(n.owner, 0))  # recorded twice
    with pytest.raises(VerifyError, match=r"'core.add'.*result #0 lists its use by 'core.neg' twice"):
        verify_graph(g)
    a.uses.pop()
    a.uses.append(Use(n.owner, 3))  # an operand slot that does not exist
    with pytest.raises(VerifyError, match=r"'core.add'.*result #0 lists a stale use by 'core.neg'"):
        verify_graph(g)


def test_use_by_an_erased_op() -> None:
    g, b = _graph()
    x, y = g.inputs
    a = b.op("core.add", x, y)
    n = b.op("core.neg", a)
    g.unlink(n.owner)  # type: ignore[arg-type]  # unlinked but still reading a: a leak
    with pytest.raises(VerifyError, match=r"'core.add'.*result #0 is used by an erased 'core.neg'"):
        verify_graph(g)


def test_argument_use_list_is_checked() -> None:
    g, b = _graph()
    x, y = g.inputs
    n = b.op("core.neg", x)
    g.unlink(n.owner)  # type: ignore[arg-type]
    with pytest.raises(VerifyError, match=r"in @forward: argument #0 is used by an erased 'core.neg'"):
        verify_graph(g)


def test_wrong_arity_and_non_canonical_attrs() -> None:
    g, _ = _graph()
    x, y = g.inputs
    g.append(Operation(get_opdef("core.neg"), [x, y], [F4], loc="bad"))
    with pytest.raises(VerifyError, match=r"'core.neg' at loc\(\"bad\"\).*expects 1 operands, got 2"):
        verify_graph(g)
    g2, _ = _graph()
    g2.append(Operation(get_opdef("core.reshape"), [g2.inputs[0]], [TensorType((2, 2), DType.f32)],
                        {"shape": [2, 2]}, loc="r"))
    with pytest.raises(VerifyError, match=r"'core.reshape'.*attributes are not in canonical form"):
        verify_graph(g2)
    g3, _ = _graph()
    g3.append(Operation(get_opdef("core.neg"), [g3.inputs[0]], [F4], {"alpha": 1.0}))
    with pytest.raises(VerifyError, match=r"'core.neg'.*unknown attribute 'alpha'"):
        verify_graph(g3)


def test_region_isolation() -> None:
    g, b = _graph()
    x, y = g.inputs
    outer = b.op("core.add", x, y)
    body = Graph("region", [F4], ["a"])
    inner = Builder.at_end(body, loc="inner").op("core.mul", body.inputs[0], outer)  # reads from above
    body.set_outputs([inner])
    r = b.create("fused.region", [x], regions=[body], result_types=[F4])
    g.set_outputs([r.result])
    with pytest.raises(VerifyError, match=r"'core.mul' at loc\(\"inner\"\).*operand #1 is defined in another graph"):
        verify_graph(g)
    inner.owner.set_operand(1, y)  # type: ignore[union-attr]  # an argument of the outer graph
    with pytest.raises(VerifyError, match=r"'core.mul'.*operand #1 is an argument of another graph"):
        verify_graph(g)
    inner.owner.set_operand(1, body.inputs[0])  # type: ignore[union-attr]
    verify_graph(g)


def test_region_presence() -> None:
    g, _ = _graph()
    g.append(Operation(get_opdef("fused.region"), [g.inputs[0]], [F4], {"kind": "generic"}, loc="r"))
    with pytest.raises(VerifyError, match=r"'fused.region'.*must have a region"):
        verify_graph(g)


def test_missing_and_mistyped_constants() -> None:
    m = Module("m")
    g = m.add_graph(Graph("forward", []))
    b = Builder.at_end(g, loc="wte")
    w = b.create("core.weight", [], {"name": "wte"}, result_types=[TensorType((2, 3), DType.f32)])
    g.set_outputs([w.result])
    with pytest.raises(VerifyError, match=r"'core.weight' at loc\(\"wte\"\).*constant 'wte' is missing from the weights"):
        verify_module(m)
    m.constants.add(np.zeros((3, 2), np.float32), "wte")
    with pytest.raises(VerifyError, match=r"constant 'wte' has type f32\[3,2\], not f32\[2,3\]"):
        verify_module(m)
    verify_graph(g)  # without a module the constants are not checked


def test_undefined_output_and_corrupt_links() -> None:
    g, b = _graph()
    other = Graph("other", [F4])
    g.set_outputs([other.inputs[0]])
    with pytest.raises(VerifyError, match=r"in @forward: output #0 is not defined in the graph"):
        verify_graph(g)
    g.set_outputs([])
    n = b.op("core.neg", g.inputs[0])
    n.owner.prev = n.owner  # type: ignore[union-attr]
    with pytest.raises(VerifyError, match=r"'core.neg'.*op list links are corrupt"):
        verify_graph(g)


def test_verify_error_without_loc() -> None:
    g = Graph("forward", [F4])
    g.append(Operation(get_opdef("core.neg"), [g.inputs[0]], [TensorType((5,), DType.f32)]))
    with pytest.raises(VerifyError, match=r"^'core.neg' in @forward: result types"):
        verify_graph(g)


def test_symbols_must_be_bound_by_arguments() -> None:
    with pytest.raises(VerifyError, match=r"'core.full' at loc\(\"mask\"\).*result #0 type f32\[T,4\] uses T, which no argument binds"):
        _verify_text('%0 = core.full {shape = [T, 4], value = 0.0, dtype = f32} : f32[T,4] loc("mask")\n')
    _verify_text("%0 = core.full {shape = [S, B], value = 0.0, dtype = f32} : f32[S,B]\n")
    body = """\
        %0 = fused.region %x : f32[B,S,64] {
          ^(%a: f32[B,S,64]):
          %0 = core.arange {end = S} : i64[S]
          return %a
        }
        """
    _verify_text(body)  # a region sees the symbols bound above it


def test_negative_dims_from_attributes_are_verify_errors() -> None:
    with pytest.raises(VerifyError, match=r"'core.split'.*negative dimension -1"):
        _verify_text("%0, %1 = core.split %x {axis = 2, sizes = [-1, 65]} : f32[B,S,1], f32[B,S,65]\n")
    with pytest.raises(VerifyError, match=r"'core.full'.*negative dimension -2"):
        _verify_text("%0 = core.full {shape = [-2], value = 0.0, dtype = f32} : f32[2]\n")
