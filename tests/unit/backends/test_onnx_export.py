"""ONNX export per op family: hand-written IR is exported, checked with onnx.checker (full
check), run by onnxruntime at two sizes of the symbolic dims, and compared with the reference
executor within rtol=atol=1e-5."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optllm.backends.onnx_export import ExportError, export_onnx
from optllm.backends.reference import run_module
from optllm.ir import Module, parse_module
from optllm.ir.types import DType

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = ATOL = 1e-5
SIZES = [{"B": 2, "S": 5}, {"B": 3, "S": 7}]
Gen = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def _inputs(module: Module, env: dict[str, int], gens: dict[int, Gen], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i, v in enumerate(module.main.inputs):
        shape = v.type.concrete_shape(env)
        if i in gens:
            out.append(gens[i](rng, shape))
        elif v.type.dtype is DType.bool:
            out.append(rng.random(shape) < 0.7)
        elif v.type.dtype.is_int:
            out.append(rng.integers(0, 4, size=shape).astype(v.type.dtype.to_numpy()))
        else:
            out.append(rng.standard_normal(shape).astype(v.type.dtype.to_numpy()))
    return out


def check(text: str, tmp_path: Path, gens: dict[int, Gen] | None = None,
          weights: dict[str, np.ndarray] | None = None, **kw: Any) -> Any:
    """Export ``text``; onnxruntime's outputs must equal the reference executor's at both sizes."""
    module = parse_module(text)
    for name, arr in (weights or {}).items():
        module.constants.add(arr, name)
    path = export_onnx(module, tmp_path / "m.onnx", **kw)
    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seed, env in enumerate(SIZES):
        ins = _inputs(module, env, gens or {}, seed)
        want = run_module(module, ins)
        got = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), ins)})
        for w, g in zip(want, got):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    return onnx.load(str(path), load_external_data=False)


def _func(name: str, sig: str, ret: str, body: str) -> str:
    return f"module @m {{\n  func @{name}({sig}) -> ({ret}) {{\n{body}\n  }}\n}}\n"


# -- core -----------------------------------------------------------------------------------------
UNARY = ["neg", "abs", "exp", "tanh", "erf", "sigmoid", "sin", "cos", "floor", "ceil", "tan", "atan", "sinh", "cosh",
         "asinh", "round"]


@pytest.mark.parametrize("op", UNARY)
def test_unary(op: str, tmp_path: Path) -> None:
    check(_func("f", "%x: f32[B,S]", "f32[B,S]", f"    %0 = core.{op} %x : f32[B,S]\n    return %0"), tmp_path)


def test_positive_unary(tmp_path: Path) -> None:
    body = """    %0 = core.abs %x : f32[B,S]
    %1 = core.constant {value = dense<f32[]: 0.5>} : f32[]
    %2 = core.add %0, %1 : f32[B,S]
    %3 = core.log %2 : f32[B,S]
    %4 = core.sqrt %2 : f32[B,S]
    %5 = core.rsqrt %2 : f32[B,S]
    %6 = core.reciprocal %2 : f32[B,S]
    %7 = core.pow %2, %1 : f32[B,S]
    %8 = core.div %x, %2 : f32[B,S]
    return %3, %4, %5, %6, %7, %8"""
    check(_func("f", "%x: f32[B,S]", ", ".join(["f32[B,S]"] * 6), body), tmp_path)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "max", "min"])
def test_binary_broadcast(op: str, tmp_path: Path) -> None:
    check(_func("f", "%x: f32[B,S], %y: f32[S]", "f32[B,S]", f"    %0 = core.{op} %x, %y : f32[B,S]\n    return %0"),
          tmp_path)


def test_compare_logic_where(tmp_path: Path) -> None:
    body = """    %0 = core.lt %x, %y : bool[B,S]
    %1 = core.le %x, %y : bool[B,S]
    %2 = core.gt %x, %y : bool[B,S]
    %3 = core.ge %x, %y : bool[B,S]
    %4 = core.eq %x, %y : bool[B,S]
    %5 = core.ne %x, %y : bool[B,S]
    %6 = core.and %0, %5 : bool[B,S]
    %7 = core.or %1, %4 : bool[B,S]
    %8 = core.xor %2, %3 : bool[B,S]
    %9 = core.not %8 : bool[B,S]
    %10 = core.where %6, %x, %y : f32[B,S]
    return %6, %7, %9, %10"""
    ints: Gen = lambda rng, s: rng.integers(0, 3, size=s).astype(np.float32)  # noqa: E731
    check(_func("f", "%x: f32[B,S], %y: f32[B,S]", "bool[B,S], bool[B,S], bool[B,S], f32[B,S]", body), tmp_path,
          gens={0: ints, 1: ints})


def test_integer_division_and_mod(tmp_path: Path) -> None:
    body = """    %0 = core.floordiv %x, %y : i64[B,S]
    %1 = core.mod %x, %y : i64[B,S]
    %2 = core.bitand %x, %y : i64[B,S]
    %3 = core.cast %x {dtype = f32} : f32[B,S]
    %4 = core.cast %y {dtype = f32} : f32[B,S]
    %5 = core.floordiv %3, %4 : f32[B,S]
    %6 = core.mod %3, %4 : f32[B,S]
    return %0, %1, %2, %5, %6"""
    signed: Gen = lambda rng, s: rng.integers(-9, 10, size=s)  # noqa: E731
    nonzero: Gen = lambda rng, s: rng.choice([-3, -2, 2, 3], size=s)  # noqa: E731
    check(_func("f", "%x: i64[B,S], %y: i64[B,S]", "i64[B,S], i64[B,S], i64[B,S], f32[B,S], f32[B,S]", body),
          tmp_path, gens={0: signed, 1: nonzero}, opset=18)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_float_mod_edge_cases(tmp_path: Path) -> None:
    # numpy's mod: the sign of y, x mod inf = x (or inf against the sign), inf or 0 divisors give nan
    special = np.asarray([5.5, -5.5, np.inf, -np.inf, 0.0, 7.0, -7.0, 3.0, np.nan, 1e30], np.float32)
    pick: Gen = lambda rng, s: rng.choice(special, size=s)  # noqa: E731
    body = "    %0 = core.mod %x, %y : f32[B,S]\n    return %0"
    check(_func("f", "%x: f32[B,S], %y: f32[B,S]", "f32[B,S]", body), tmp_path, gens={0: pick, 1: pick})


def test_topk_ties_keep_the_lower_index(tmp_path: Path) -> None:
    body = """    %0, %1 = core.topk %x {k = 3, axis = -1, largest = true} : f32[B,3], i64[B,3]
    %2, %3 = core.topk %x {k = 2, axis = 0, largest = false} : f32[2,6], i64[2,6]
    return %0, %1, %2, %3"""
    ties: Gen = lambda rng, s: rng.integers(0, 3, size=s).astype(np.float32)  # noqa: E731
    check(_func("f", "%x: f32[B,6]", "f32[B,3], i64[B,3], f32[2,6], i64[2,6]", body), tmp_path, gens={0: ties})


def test_views_with_symbolic_shapes(tmp_path: Path) -> None:
    body = """    %0 = core.reshape %x {shape = [B,S,2,3]} : f32[B,S,2,3]
    %1 = core.permute %0 {perm = [0, 2, 1, 3]} : f32[B,2,S,3]
    %2 = core.reshape %1 {shape = [B*2*S,3]} : f32[B*2*S,3]
    %3 = core.slice %x {axis = 1, start = 1, end = S, step = 1} : f32[B,S-1,6]
    %4 = core.slice %x {axis = 2, start = 0, end = 6, step = 2} : f32[B,S,3]
    %5, %6 = core.split %x {axis = 2, sizes = [2, 4]} : f32[B,S,2], f32[B,S,4]
    %7 = core.concat %6, %5 {axis = 2} : f32[B,S,6]
    %8 = core.reshape %y {shape = [1,S,1]} : f32[1,S,1]
    %9 = core.expand %8 {shape = [B,S,6]} : f32[B,S,6]
    %10, %11 = core.split %x {axis = 1, sizes = [1, S-1]} : f32[B,1,6], f32[B,S-1,6]
    return %2, %3, %4, %7, %9, %10, %11"""
    check(_func("f", "%x: f32[B,S,6], %y: f32[S]", "f32[B*2*S,3], f32[B,S-1,6], f32[B,S,3], f32[B,S,6], f32[B,S,6], "
                "f32[B,1,6], f32[B,S-1,6]", body), tmp_path)


def test_gather_index_embedding(tmp_path: Path) -> None:
    body = """    %0 = core.gather %t, %i {axis = 0} : f32[B,S,3]
    %1 = core.index %t, %i {axes = [0]} : f32[B,S,3]
    %2 = nn.embedding %t, %i : f32[B,S,3]
    %3 = core.gather_elements %t, %j {axis = 0} : f32[2,3]
    return %0, %1, %2, %3"""
    check(_func("f", "%t: f32[4,3], %i: i64[B,S], %j: i64[2,3]", "f32[B,S,3], f32[B,S,3], f32[B,S,3], f32[2,3]",
                body), tmp_path)


def _ints(lo: int, hi: int, dtype: Any = np.int64) -> Gen:
    return lambda rng, shape: rng.integers(lo, hi, size=shape).astype(dtype)


def test_advanced_indexing_is_gathernd(tmp_path: Path) -> None:
    # x[i, j] on leading axes and x[:, i, j] inside, with i32/i64 indices broadcast together, negatives too
    body = """    %0 = core.index %x, %i, %k {axes = [0, 1]} : f32[B,S,6]
    %1 = core.index %x, %j, %k {axes = [1, 2]} : f32[5,B,S]
    return %0, %1"""
    model = check(_func("f", "%x: f32[5,4,6], %i: i64[B,S], %j: i64[B,S], %k: i32[S]", "f32[B,S,6], f32[5,B,S]",
                        body), tmp_path, gens={1: _ints(-5, 5), 2: _ints(-4, 4), 3: _ints(-4, 4, np.int32)})
    assert [n.op_type for n in model.graph.node].count("GatherND") == 2


def test_gather_elements_keeps_its_axis(tmp_path: Path) -> None:
    body = "    %0 = core.gather_elements %x, %i {axis = 1} : f32[3,2]\n    return %0"
    check(_func("f", "%x: f32[3,4], %i: i64[3,2]", "f32[3,2]", body), tmp_path, gens={1: _ints(-4, 4)})


def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.stack([rng.permutation(4)[: shape[1]] for _ in range(shape[0])])  # no duplicate per row


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatters(reduction: str, tmp_path: Path) -> None:
    body = f"""    %0 = core.scatter_elements %x, %i, %u {{axis = 1, reduction = "{reduction}"}} : f32[3,4]
    %1 = core.scatter_nd %x, %n, %v {{reduction = "{reduction}"}} : f32[3,4]
    return %0, %1"""
    rows = lambda rng, shape: rng.permutation(3)[: shape[0]].reshape(shape).astype(np.int32)  # noqa: E731
    model = check(_func("f", "%x: f32[3,4], %i: i64[3,2], %u: f32[3,2], %n: i32[2,1], %v: f32[2,4]",
                        "f32[3,4], f32[3,4]", body), tmp_path, gens={1: _distinct, 3: rows}, opset=18)
    assert {n.op_type for n in model.graph.node} >= {"ScatterElements", "ScatterND"}


def test_scatter_max_needs_opset_18(tmp_path: Path) -> None:
    body = '    %0 = core.scatter_nd %x, %n, %v {reduction = "max"} : f32[3,4] loc("head.scatter")\n    return %0'
    module = parse_module(_func("f", "%x: f32[3,4], %n: i64[2,1], %v: f32[2,4]", "f32[3,4]", body))
    with pytest.raises(ExportError, match=r"'core.scatter_nd' at loc\(\"head.scatter\"\): .*'max' needs ONNX opset 18"):
        export_onnx(module, tmp_path / "m.onnx", opset=17)
    assert list(tmp_path.iterdir()) == []


def test_einsum(tmp_path: Path) -> None:
    # f16 goes through f32 (onnxruntime has no f16 Einsum); small integers keep it exact
    body = """    %0 = core.einsum %a, %b {equation = "bij,bjk->bik"} : f32[B,3,5]
    %1 = core.einsum %a {equation = "...ii->...i"} : f32[B,3]
    %2 = core.einsum %h, %h {equation = "ij,kj"} : f16[2,2]
    %3 = core.einsum %n {equation = "ij->"} : i64[]
    return %0, %1, %2, %3"""
    small = lambda rng, shape: rng.integers(-3, 4, size=shape).astype(np.float16)  # noqa: E731
    model = check(_func("f", "%a: f32[B,3,3], %b: f32[B,3,5], %h: f16[2,4], %n: i64[2,3]",
                        "f32[B,3,5], f32[B,3], f16[2,2], i64[]", body), tmp_path, gens={2: small})
    assert [n.op_type for n in model.graph.node].count("Einsum") == 4


@pytest.mark.parametrize("opset", [17, 26])
def test_cumprod(opset: int, tmp_path: Path) -> None:
    # opset 26 has CumProd; before it, a masked ReduceProd over a [.., n, n] broadcast
    body = """    %0 = core.cumprod %x {axis = 1} : f32[B,S,3]
    %1 = core.cumprod %x {axis = -1} : f32[B,S,3]
    %2 = core.cumprod %i {axis = 0} : i32[B,S,3]
    return %0, %1, %2"""
    model = check(_func("f", "%x: f32[B,S,3], %i: i32[B,S,3]", "f32[B,S,3], f32[B,S,3], i32[B,S,3]", body),
                  tmp_path, gens={1: _ints(-3, 4, np.int32)}, opset=opset)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("CumProd") == (3 if opset >= 26 else 0)


def test_cast_to_float8_keeps_numpy_overflow(tmp_path: Path) -> None:
    # the IR's cast overflows to NaN/inf like numpy; ONNX's float8 Cast would saturate without saturate=0
    body = """    %0 = core.cast %x {dtype = f8e4m3fn} : f8e4m3fn[B,S]
    %1 = core.cast %x {dtype = f8e5m2} : f8e5m2[B,S]
    %2 = core.cast %0 {dtype = f32} : f32[B,S]
    %3 = core.cast %1 {dtype = f32} : f32[B,S]
    return %2, %3"""
    wide: Gen = lambda rng, s: (rng.standard_normal(s) * 3e4).astype(np.float32)  # noqa: E731
    model = check(_func("f", "%x: f32[B,S]", "f32[B,S], f32[B,S]", body), tmp_path, gens={0: wide}, opset=19)
    assert [a.i for n in model.graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "saturate"] == [0, 0]
    with pytest.raises(ExportError, match=r"cast to f8e4m3fn needs ONNX opset 19"):
        export_onnx(parse_module(_func("f", "%x: f32[2]", "f8e4m3fn[2]",
                                       "    %0 = core.cast %x {dtype = f8e4m3fn} : f8e4m3fn[2]\n    return %0")),
                    tmp_path / "old.onnx", opset=17)


def test_reshape_to_an_empty_dim(tmp_path: Path) -> None:
    # a literal 0 in the IR's shape is an empty dim, not ONNX's "copy the input dim" (allowzero)
    body = "    %0 = core.reshape %x {shape = [3, 0, 2]} : f32[3,0,2]\n    return %0"
    check(_func("f", "%x: f32[0,6]", "f32[3,0,2]", body), tmp_path)


def test_reductions(tmp_path: Path) -> None:
    body = """    %0 = core.reduce_sum %x {axes = [-1]} : f32[B]
    %1 = core.reduce_mean %x {axes = [1], keepdim = true} : f32[B,1]
    %2 = core.reduce_max %x {axes = [0]} : f32[S]
    %3 = core.reduce_min %x {axes = [-1]} : f32[B]
    %4 = core.reduce_prod %x {axes = [-1]} : f32[B]
    %5 = core.reduce_any %m {axes = [-1]} : bool[B]
    %6 = core.reduce_all %m {axes = [-1]} : bool[B]
    %7 = core.argmax %x {axis = -1} : i64[B]
    %8 = core.cumsum %x {axis = 1} : f32[B,S]
    return %0, %1, %2, %3, %4, %5, %6, %7, %8"""
    check(_func("f", "%x: f32[B,S], %m: bool[B,S]",
                "f32[B], f32[B,1], f32[S], f32[B], f32[B], bool[B], bool[B], i64[B], f32[B,S]", body), tmp_path)


def test_generators(tmp_path: Path) -> None:
    body = """    %0 = core.arange {start = 0, end = S, step = 1, dtype = i64} : i64[S]
    %1 = core.arange {start = 1, end = S+1, step = 1, dtype = f32} : f32[S]
    %2 = core.full {shape = [B,1,S,S], value = -inf, dtype = f32} : f32[B,1,S,S]
    %3 = core.triangle %2 {upper = true, diagonal = 1} : f32[B,1,S,S]
    %4 = core.full {shape = [S,S], value = 1.0, dtype = bool} : bool[S,S]
    %5 = core.mul %x, %1 : f32[B,S]
    return %0, %5, %3, %4"""
    check(_func("f", "%x: f32[B,S]", "i64[S], f32[B,S], f32[B,1,S,S], bool[S,S]", body), tmp_path)


# -- nn and fused ---------------------------------------------------------------------------------------
def test_norms_softmax_activations(tmp_path: Path) -> None:
    body = """    %0 = nn.layer_norm %x, %g, %b {eps = 1.0e-05} : f32[B,S,8]
    %1 = nn.layer_norm %x {eps = 1.0e-05} : f32[B,S,8]
    %2 = nn.rms_norm %x, %g {eps = 1.0e-06} : f32[B,S,8]
    %3 = nn.softmax %x {axis = -1} : f32[B,S,8]
    %4 = nn.softmax %x {axis = 1, log = true} : f32[B,S,8]
    %5 = nn.gelu %x : f32[B,S,8]
    %6 = nn.gelu %x {approximate = "tanh"} : f32[B,S,8]
    %7 = nn.silu %x : f32[B,S,8]
    %8 = nn.relu %x : f32[B,S,8]
    %9, %10 = nn.skip_layer_norm %x, %y, %g, %b : f32[B,S,8], f32[B,S,8]
    %11, %12 = nn.skip_rms_norm %x, %y, %g {eps = 1.0e-06} : f32[B,S,8], f32[B,S,8]
    return %0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12"""
    model = check(_func("f", "%x: f32[B,S,8], %y: f32[B,S,8], %g: f32[8], %b: f32[8]",
                        ", ".join(["f32[B,S,8]"] * 13), body), tmp_path)
    assert {f.name for f in model.functions} == {"rms_norm_0", "skip_layer_norm_0", "skip_rms_norm_0"}
    assert all(f.domain == "optllm" for f in model.functions)


@pytest.mark.parametrize("act", ["none", "gelu", "gelu_tanh", "silu", "relu", "tanh"])
def test_linear_epilogues(act: str, tmp_path: Path) -> None:
    body = f"""    %w = core.weight {{name = "w"}} : f32[6,4]
    %0 = nn.linear %x, %w, %b, %r {{transpose_w = true, bias = true, residual = true, activation = "{act}"}} : f32[B,S,6]
    %1 = nn.linear %x, %v : f32[B,S,6]
    return %0, %1"""
    rng = np.random.default_rng(0)
    model = check(_func("f", "%x: f32[B,S,4], %v: f32[4,6], %b: f32[6], %r: f32[B,S,6]", "f32[B,S,6], f32[B,S,6]",
                        body), tmp_path, weights={"w": rng.standard_normal((6, 4)).astype(np.float32)},
                  external_data_threshold=16)
    assert [i.name for i in model.graph.initializer] == ["w"]
    assert (tmp_path / "m.data").exists()
    assert sorted(f.name for f in model.functions) == ["linear_0", "linear_1"]


MASKS = {"none": ("", ""), "bool": (", %m", ", %m: bool[B,1,S,S]"), "float": (", %m", ", %m: f32[B,1,S,S]")}


@pytest.mark.parametrize("mask", sorted(MASKS))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_attention(mask: str, causal: bool, kv_heads: int, tmp_path: Path) -> None:
    operand, arg = MASKS[mask]
    body = f"""    %0 = nn.attention %q, %k, %v{operand} {{causal = {str(causal).lower()}}} : f32[B,4,S,8]
    %1 = nn.attention %q, %k, %v {{scale = 0.3}} : f32[B,4,S,8]
    return %0, %1"""
    sig = f"%q: f32[B,4,S,8], %k: f32[B,{kv_heads},S,8], %v: f32[B,{kv_heads},S,8]{arg}"
    gens: dict[int, Gen] = {}
    if mask == "bool":  # at least one key per row stays visible
        gens[3] = lambda rng, s: np.broadcast_to(np.arange(s[-1]) < 2, s) | (rng.random(s) < 0.6)
    check(_func("f", sig, "f32[B,4,S,8], f32[B,4,S,8]", body), tmp_path, gens=gens)


@pytest.mark.parametrize("masked_rows", ["zero", "nan"])
def test_attention_fully_masked_rows(masked_rows: str, tmp_path: Path) -> None:
    # query row 1 masks every key: 0 (torch SDPA's, nn.attention's default) or NaN (softmax's)
    body = f"""    %0 = nn.attention %q, %k, %v, %m {{masked_rows = "{masked_rows}"}} : f32[B,4,S,8]
    return %0"""
    sig = "%q: f32[B,4,S,8], %k: f32[B,4,S,8], %v: f32[B,4,S,8], %m: bool[B,1,S,S]"

    def mask(rng: np.random.Generator, s: tuple[int, ...]) -> np.ndarray:
        m = np.broadcast_to(np.arange(s[-1]) < 1, s) | (rng.random(s) < 0.6)
        m[..., 1, :] = False
        return m

    check(_func("f", sig, "f32[B,4,S,8]", body), tmp_path, gens={3: mask})


def test_rope(tmp_path: Path) -> None:
    body = """    %0 = nn.rope %x, %c, %s : f32[B,2,S,8]
    return %0"""
    check(_func("f", "%x: f32[B,2,S,8], %c: f32[1,1,S,8], %s: f32[1,1,S,8]", "f32[B,2,S,8]", body), tmp_path)


def test_fused_region_is_a_function(tmp_path: Path) -> None:
    text = """module @m {
  func @f(%x: f32[B,S], %y: f32[S]) -> (f32[B,S], f32[B,S]) {
    %0 = fused.region %x, %y {kind = "elementwise"} : f32[B,S] {
      ^(%a: f32[B,S], %b: f32[S]):
      %1 = core.add %a, %b : f32[B,S]
      %2 = core.constant {value = dense<f32[]: 2.0>} : f32[]
      %3 = core.mul %1, %2 : f32[B,S]
      %4 = nn.gelu %3 : f32[B,S]
      return %4
    }
    %5 = fused.region %0, %y {kind = "elementwise"} : f32[B,S] {
      ^(%a: f32[B,S], %b: f32[S]):
      %1 = core.add %a, %b : f32[B,S]
      %2 = core.constant {value = dense<f32[]: 2.0>} : f32[]
      %3 = core.mul %1, %2 : f32[B,S]
      %4 = nn.gelu %3 : f32[B,S]
      return %4
    }
    return %5, %x
  }
}
"""
    model = check(text, tmp_path)
    assert [f.name for f in model.functions] == ["region_elementwise_0"]  # equal bodies share one
    assert [n.op_type for n in model.graph.node] == ["region_elementwise_0", "region_elementwise_0", "Identity"]
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["B", "S"]


# -- bad input ------------------------------------------------------------------------------------------------
def test_unlowerable_op_names_op_and_loc(tmp_path: Path) -> None:
    text = _func("f", "%x: f32[4,3], %i: bool[4]", "f32[N,3]",
                 '    %0 = core.index %x, %i {axes = [0]} : f32[N,3] loc("model.layers.0.mask")\n    return %0')
    module = parse_module(text)
    with pytest.raises(ExportError, match=r"'core.index' at loc\(\"model.layers.0.mask\"\)"):
        export_onnx(module, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_old_opset_is_refused(tmp_path: Path) -> None:
    module = parse_module(_func("f", "%x: f32[B]", "f32[B]", "    %0 = core.neg %x : f32[B]\n    return %0"))
    with pytest.raises(ExportError, match="opset 17"):
        export_onnx(module, tmp_path / "old.onnx", opset=13)
    assert list(tmp_path.iterdir()) == []


def test_compiled_model_export_onnx(tmp_path: Path) -> None:
    import optllm

    text = _func("f", "%x: f32[B,S]", "f32[B,S]", """    %0 = core.exp %x : f32[B,S]
    %1 = core.exp %x : f32[B,S]
    %2 = core.add %0, %1 : f32[B,S]
    return %2""")
    cm = optllm.compile(parse_module(text))
    path = cm.export_onnx(tmp_path / "cm.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], cm(x), rtol=RTOL, atol=ATOL)
