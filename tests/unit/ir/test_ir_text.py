"""The .oir text form: print(parse(t)) == t on hand-written modules, and located parse errors."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from optllm.ir import Builder, DType, Graph, Module, ParseError, TensorType, parse_module, print_module, verify_module
from optllm.ir.printer import print_op

ROUND_TRIP = {
    "symbolic": """\
        module @tiny weights("tiny.safetensors") {
          func @forward(%x: f32[B,S,64], %ids: i64[B,S]) -> (f32[B,S,64], f32[B*S,64]) {
            %0 = core.weight {name = "w"} : f32[64,64] loc("proj")
            %1 = core.matmul %x, %0 : f32[B,S,64] loc("proj")
            %2 = core.reshape %1 {shape = [B*S, 64]} : f32[B*S,64]
            %3 = core.slice %1 {axis = 1, start = 1, end = S} : f32[B,S-1,64]
            %4 = core.concat %1, %3 {axis = 1} : f32[B,2*S-1,64]
            %5 = core.arange {end = floordiv(S,2)} : i64[floordiv(S,2)]
            return %1, %2
          }
        }
        """,
    "multi_result": """\
        module @m {
          func @forward(%x: f32[2,S,96]) -> (f32[2,S,32], f32[2,S,32], f32[2,S,32]) {
            %0, %1, %2 = core.split %x {axis = 2, sizes = [32, 32, 32]} : f32[2,S,32], f32[2,S,32], f32[2,S,32] loc("attn.qkv")
            return %0, %1, %2
          }
        }
        """,
    "region": """\
        module @m {
          func @forward(%x: f32[B,S,8], %y: f32[8]) -> (f32[B,S,8]) {
            %0 = fused.region %x, %y {kind = "elementwise"} : f32[B,S,8] {
              ^(%a: f32[B,S,8], %b: f32[8]):
              %0 = core.add %a, %b : f32[B,S,8]
              %1 = nn.gelu %0 {approximate = "tanh"} : f32[B,S,8] loc("mlp.act")
              return %1
            } loc("mlp")
            %1 = core.mul %0, %0 : f32[B,S,8]
            return %1
          }
        }
        """,
    "dense_and_floats": """\
        module @m {
          func @forward(%x: f32[B,S,4]) -> (f32[B,S,4]) {
            %0 = core.constant {value = dense<f32[]: 0.125>} : f32[]
            %1 = core.constant {value = dense<f32[4]: [1.0, -0.0, inf, 1e-05]>} : f32[4]
            %2 = core.constant {value = dense<bool[2,2]: splat true>} : bool[2,2]
            %3 = core.constant {value = dense<bf16[2]: [0.1, -3.0]>} : bf16[2]
            %4 = core.constant {value = dense<i4[3]: [-8, 0, 7]>} : i4[3]
            %5 = core.constant {value = dense<f32[2,2]: splat nan>} : f32[2,2]
            %6 = core.constant {value = dense<i64[0]: []>} : i64[0]
            %7 = core.constant {value = dense<u16[2]: [0, 65535]>} : u16[2]
            %8 = core.constant {value = dense<u32[2]: [1, 4294967295]>} : u32[2]
            %9 = core.constant {value = dense<u64[3]: [0, 9223372036854775808, 18446744073709551615]>} : u64[3]
            %10 = core.constant {value = dense<f8e4m3fn[4]: [4.5e+02, -0.0, nan, 0.02]>} : f8e4m3fn[4]
            %11 = core.constant {value = dense<f8e5m2[3]: [-inf, 6e+04, 0.09]>} : f8e5m2[3]
            %12 = core.constant {value = dense<f8e4m3fnuz[2]: [2.4e+02, nan]>} : f8e4m3fnuz[2]
            %13 = core.constant {value = dense<f8e5m2fnuz[2]: [0.5, -3.0]>} : f8e5m2fnuz[2]
            %14 = core.full {shape = [B, S, 4], value = -inf, dtype = f32} : f32[B,S,4]
            %15 = core.full {shape = [B, S, 4], value = -0.0, dtype = f32} : f32[B,S,4]
            %16 = nn.layer_norm %x {eps = 1e-12} : f32[B,S,4]
            %17 = nn.rms_norm %x {eps = 1.5e-06, ndim = 2} : f32[B,S,4]
            %18 = core.mul %x, %0 : f32[B,S,4]
            return %18
          }
        }
        """,
    "strings_and_two_funcs": """\
        module @m {
          func @forward(%arg0: f32[2], %arg1: f32[2]) -> (f32[2]) {
            %0 = core.add %arg0, %arg1 : f32[2] loc("a \\"quoted\\" \\\\ name\\nline2")
            return %0
          }
          func @empty() -> () {
            return
          }
        }
        """,
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_print_parse_is_identity(name: str) -> None:
    text = textwrap.dedent(ROUND_TRIP[name])
    m = parse_module(text)
    assert print_module(m) == text
    assert print_module(parse_module(print_module(m))) == text


@pytest.mark.parametrize("name", ["multi_result", "region", "dense_and_floats", "strings_and_two_funcs"])
def test_round_trip_modules_verify(name: str) -> None:
    verify_module(parse_module(textwrap.dedent(ROUND_TRIP[name])))


def test_parsed_structure() -> None:
    m = parse_module(textwrap.dedent(ROUND_TRIP["region"]))
    g = m.main
    region_op, mul = g.ops
    assert region_op.name == "fused.region" and region_op.loc == "mlp"
    assert region_op.attrs == {"kind": "elementwise"}
    body = region_op.regions[0]
    assert body.parent_op is region_op and [v.name_hint for v in body.inputs] == ["a", "b"]
    assert [op.loc for op in body] == ["", "mlp.act"]
    assert mul.operands == [region_op.result, region_op.result]
    loc = parse_module(textwrap.dedent(ROUND_TRIP["strings_and_two_funcs"])).main.ops[0].loc
    assert loc == 'a "quoted" \\ name\nline2'


def test_printer_canonicalises_layout_and_defaults() -> None:
    messy = """
    // a comment
    module @m {   func @forward(%x: f32[ S , 2 * B ]) -> (f32[S,2*B]) {
        %a = nn.softmax %x {axis = -1, log = false} : f32[S, B*2]  // defaults are dropped
        %b = core.add %a,%a : f32[S,2*B]
        return %b }
    }
    """
    out = print_module(parse_module(messy))
    assert out == textwrap.dedent("""\
        module @m {
          func @forward(%x: f32[S,2*B]) -> (f32[S,2*B]) {
            %0 = nn.softmax %x : f32[S,2*B]
            %1 = core.add %0, %0 : f32[S,2*B]
            return %1
          }
        }
        """)


def test_printer_names_arguments_uniquely() -> None:
    g = Graph("forward", [TensorType((2,), DType.f32)] * 4, ["x", "x", "", "9bad"])
    g.set_outputs([Builder.at_end(g).op("core.add", g.inputs[0], g.inputs[1])])
    m = Module("m")
    m.add_graph(g)
    text = print_module(m)
    assert "func @forward(%x: f32[2], %x_1: f32[2], %arg2: f32[2], %arg3: f32[2])" in text
    assert "%0 = core.add %x, %x_1 : f32[2]" in text
    assert print_module(parse_module(text)) == text


def test_built_module_round_trips() -> None:
    m = Module("built")
    g = m.add_graph(Graph("forward", [TensorType((3, 4), DType.f16)], ["x"]))
    b = Builder.at_end(g, loc="blk")
    c = b.op("core.constant", value=np.array([[0.5], [1.5], [-0.0]], np.float16))
    y = b.op("core.mul", g.inputs[0], c)
    g.set_outputs([y])
    text = print_module(m)
    assert "dense<f16[3,1]: [0.5, 1.5, -0.0]>" in text
    assert print_module(parse_module(text)) == text


def test_print_op_for_messages() -> None:
    m = parse_module(textwrap.dedent(ROUND_TRIP["multi_result"]))
    # names as in the module's text; an op outside any graph shows its operands as %?
    assert print_op(m.main.ops[0]).startswith("%0, %1, %2 = core.split %x {axis = 2")
    op = m.main.ops[0]
    m.main.unlink(op)
    assert print_op(op).startswith("%0, %1, %2 = core.split %? {axis = 2")


# -- parse errors ---------------------------------------------------------------------------------------
GOOD = """\
module @m {
  func @forward(%x: f32[B,S,8]) -> (f32[B,S,8]) {
    %0 = core.add %x, %x : f32[B,S,8] loc("a.b")
    return %0
  }
}
"""
LINE3 = '    %0 = core.add %x, %x : f32[B,S,8] loc("a.b")'


def _col(line: str, needle: str) -> int:
    return line.index(needle) + 1


@pytest.mark.parametrize("bad_line,line,needle,expected", [
    # malformed types
    (LINE3.replace("f32[B,S,8]", "f33[B,S,8]"), 3, "f33", "unknown element type 'f33' (expected one of"),
    (LINE3.replace("f32[B,S,8]", "f32[B,S*,8]"), 3, ",8]", "bad dimension 'S*': expected a dimension"),
    (LINE3.replace("f32[B,S,8]", "f32(B,S,8)"), 3, "(B,", "expected '[' after the element type"),
    (LINE3.replace("f32[B,S,8]", "f32[B,,8]"), 3, ",8]", "expected a dimension"),
    (LINE3.replace(": f32[B,S,8]", ": 7"), 3, "7 loc", "expected a tensor type such as f32[B,S,768]"),
    # ops and attributes
    (LINE3.replace("core.add", "core.addd"), 3, "core.addd", "unknown op 'core.addd'"),
    (LINE3.replace("%x, %x :", "%x, %x {foo = 1} :"), 3, "foo", "'core.add': unknown attribute 'foo'"),
    (LINE3.replace("%x, %x :", "%x, %x {foo 1} :"), 3, "1}", "expected '=' after attribute name 'foo'"),
    (LINE3.replace("%x, %x :", "%x, %x {a = 1, a = 2} :"), 3, "a = 2", "duplicate attribute 'a'"),
    (LINE3.replace("%x, %x :", "%x, %x {a = ?} :"), 3, "?", "unrecognised attribute value '?'"),
    # values
    (LINE3.replace("%x, %x :", "%x, %y :"), 3, "%y", "use of undefined value '%y'"),
    (LINE3.replace("%0 =", "%x ="), 3, "%x =", "redefinition of value '%x'"),
    (LINE3.replace("%x, %x :", "%x %x :"), 3, "%x :", "expected ',' between operands"),
    # result counts
    (LINE3.replace("%0 =", "%0, %1 ="), 3, "core.add", "'core.add' has 2 result names but 1 result types"),
    (LINE3.replace("f32[B,S,8] loc", "f32[B,S,8], f32[B,S,8] loc"), 3, "core.add",
     "'core.add' has 1 result names but 2 result types"),
    # strings
    (LINE3.replace('loc("a.b")', 'loc("a.b)'), 3, '"a.b)', "unterminated string literal"),
    (LINE3.replace('loc("a.b")', "loc(a.b)"), 3, "a.b)", "expected a string literal"),
])
def test_parse_errors_on_line_three(bad_line: str, line: int, needle: str, expected: str) -> None:
    text = GOOD.replace(LINE3, bad_line)
    with pytest.raises(ParseError) as ei:
        parse_module(text, "model.oir")
    e = ei.value
    assert expected in e.msg, e.msg
    assert (e.line, e.col) == (line, _col(bad_line, needle)), str(e)
    assert str(e).startswith(f"model.oir:{line}:{e.col}: error: ")
    assert e.source_line == bad_line
    assert str(e).endswith("\n  " + bad_line + "\n  " + " " * (e.col - 1) + "^")


def test_wrong_result_count_for_fixed_arity_op() -> None:
    text = GOOD.replace(LINE3, "    %0, %1 = core.add %x, %x : f32[B,S,8], f32[B,S,8]")
    with pytest.raises(ParseError) as ei:
        parse_module(text)
    assert "'core.add' produces 1 result(s), not 2" in ei.value.msg
    assert (ei.value.line, ei.value.col) == (3, 14)


def test_dense_value_error_points_at_the_value() -> None:
    bad = "    %0 = core.constant {value = dense<i8[2]: [1, 300]>} : i8[2]"
    with pytest.raises(ParseError) as ei:
        parse_module(GOOD.replace(LINE3, bad))
    assert "value 300 is out of range for i8" in ei.value.msg
    assert (ei.value.line, ei.value.col) == (3, _col(bad, "300"))


def test_bad_attribute_value_points_at_the_value() -> None:
    bad = "    %0 = nn.softmax %x {axis = 1.5} : f32[B,S,8]"
    with pytest.raises(ParseError) as ei:
        parse_module(GOOD.replace(LINE3, bad))
    assert "'nn.softmax': attribute 'axis' expects an int, got 1.5" in ei.value.msg
    assert (ei.value.line, ei.value.col) == (3, _col(bad, "1.5"))


def test_missing_required_attribute() -> None:
    bad = "    %0 = core.reshape %x : f32[B,S,8]"
    with pytest.raises(ParseError, match="missing required attribute 'shape'") as ei:
        parse_module(GOOD.replace(LINE3, bad))
    assert ei.value.line == 3


def test_missing_return() -> None:
    text = GOOD.replace("    return %0\n", "")
    with pytest.raises(ParseError) as ei:
        parse_module(text)
    assert "expected 'return' at the end of the graph body" in ei.value.msg
    assert (ei.value.line, ei.value.col) == (4, 3)


def test_missing_return_at_end_of_input() -> None:
    with pytest.raises(ParseError, match="expected 'return'") as ei:
        parse_module("module @m {\n  func @f() -> () {\n")
    assert ei.value.line == 3


def test_trailing_text() -> None:
    with pytest.raises(ParseError) as ei:
        parse_module(GOOD + "\n  junk\n")
    assert "unexpected text after the module" in ei.value.msg
    assert (ei.value.line, ei.value.col) == (8, 3)


def test_declared_results_must_match_return() -> None:
    text = GOOD.replace("-> (f32[B,S,8])", "-> (f32[B,S,9])")
    with pytest.raises(ParseError) as ei:
        parse_module(text)
    assert "declares results (f32[B,S,9]) but returns (f32[B,S,8])" in ei.value.msg
    assert ei.value.line == 2


@pytest.mark.parametrize("text,expected,line", [
    ("", "expected 'module' at the start of the module, found 'end of input'", 1),
    ("module m {}", "expected a module name such as @model", 1),
    ("module @m {\n  fun @f() -> () {\n    return\n  }\n}\n", "expected 'func'", 2),
    ("module @m {\n  func @f() -> () {\n    return\n  }\n  func @f() -> () {\n    return\n  }\n}\n",
     "duplicate function @f", 5),
    ("module @m {\n  func @f(%a: f32[2], %a: f32[2]) -> () {\n    return\n  }\n}\n", "redefinition of value '%a'", 2),
    ("module @m weights(w.st) {\n}\n", "expected a string literal", 1),
    ("module @m {\n  func @f(%a: f32[2]) -> (f32[2]) {\n    return %a\n  }\n", "expected 'func'", 5),
    ("module @m {\n  func @f(%a: f32[2]) -> (f32[2]) {\n    %0 = fused.region %a : f32[2] {\n"
     "      ^(%b: f32[2]):\n      return %a\n    }\n    return %0\n  }\n}\n", "use of undefined value '%a'", 5),
])
def test_module_level_parse_errors(text: str, expected: str, line: int) -> None:
    with pytest.raises(ParseError) as ei:
        parse_module(text)
    assert expected in ei.value.msg, ei.value.msg
    assert ei.value.line == line


def test_attribute_equal_to_default_only_by_value_is_printed() -> None:
    from optllm.ir import AttrKind, OpDef, attr, register_op

    @register_op
    class LeakyForTest(OpDef):
        """``%1 = test.leaky %0 {alpha = -0.0} : f32[N]`` (a plugin-style op with a 0.0 default)."""

        name = "test.leaky"
        operands = ("x",)
        attrs = {"alpha": attr(AttrKind.FLOAT, 0.0)}

        def infer(self, types, attrs):  # type: ignore[no-untyped-def]
            return [types[0]]

    g = Graph("forward", [TensorType((2,), DType.f32)], ["x"])
    b = Builder.at_end(g)
    g.set_outputs([b.op("test.leaky", g.inputs[0], alpha=-0.0), b.op("test.leaky", g.inputs[0], alpha=0.0)])
    m = Module("m")
    m.add_graph(g)
    text = print_module(m)
    assert "%0 = test.leaky %x {alpha = -0.0} : f32[2]" in text  # -0.0 == 0.0, yet not the default
    assert "%1 = test.leaky %x : f32[2]" in text
    back = parse_module(text).main.ops[0].attrs["alpha"]
    assert str(back) == "-0.0"
