"""fold-linear-chain: each fold keeps the reference outputs (rtol=atol=1e-5) with non-trivial
weights, counts drop, statistics count, and a small GPT-2 imported from PyTorch folds its
Conv1D GEMMs, norm affines and attention scale."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from optllm.backends.reference import run_module
from optllm.ir import Module
from optllm.ir.builder import Builder
from optllm.ir.graph import Graph, graph_stats
from optllm.ir.parser import parse_type
from optllm.ir.types import DType, TensorType
from optllm.ir.values import Value
from optllm.passes import run_pipeline
from optllm.passes.fold_linear_chain import merge_lowers_cost

RNG = np.random.default_rng(0)


def _weight(m: Module, b: Builder, arr: np.ndarray, name: str) -> Value:
    name = m.constants.add(arr.astype(np.float32), name)
    return b.create("core.weight", [], {"name": name}, result_types=[m.constants.type_of(name)]).result


def _module(shape: tuple[Any, ...] = ("B", "S", 8)) -> tuple[Module, Builder, Value]:
    m = Module("t")
    g = m.add_graph(Graph("forward"))
    x = g.add_input(parse_type(f"f32[{','.join(map(str, shape))}]"), "x")
    return m, Builder.at_end(g), x


def _check(m: Module, pipeline: str, *inputs: np.ndarray) -> tuple[dict[str, int], dict[str, int], Any]:
    before = run_module(m, list(inputs))
    s0 = dict(graph_stats(m.main))
    report = run_pipeline(m, pipeline)
    after = run_module(m, list(inputs))
    for a, e in zip(after, before):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)
    return s0, dict(graph_stats(m.main)), report


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_layer_norm_affine_and_bias_fold_into_two_projections() -> None:
    m, b, x = _module()
    g, beta = _weight(m, b, 1 + RNG.random(8), "g"), _weight(m, b, RNG.standard_normal(8), "beta")
    n = b.op("nn.layer_norm", x, g, beta)
    flat = b.op("core.reshape", n, shape=list(parse_type("f32[B*S,8]").shape))
    w1 = _weight(m, b, RNG.standard_normal((8, 6)), "w1")
    y1 = b.op("core.add", b.op("core.matmul", flat, w1), _weight(m, b, RNG.standard_normal(6), "b1"))
    y1 = b.op("core.reshape", y1, shape=list(parse_type("f32[B,S,6]").shape))
    w2 = b.op("core.permute", _weight(m, b, RNG.standard_normal((5, 8)), "w2"), perm=[1, 0])
    y2 = b.op("core.matmul", n, w2)
    m.main.set_outputs([y1, y2])
    s0, s1, report = _check(m, "fold-linear-chain,dce", _x(2, 3, 8))
    ops = [op.name for op in m.main]
    assert ops.count("nn.linear") == 2 and "core.matmul" not in ops and "core.add" not in ops
    norm = next(op for op in m.main if op.name == "nn.layer_norm")
    assert len(norm.operands) == 1  # gamma and beta went into the weights
    assert s1["kernel_launches"] < s0["kernel_launches"] and s1["nodes"] < s0["nodes"]
    stats = report.passes[0].statistics
    assert stats["num-norm-affine"] == 1 and stats["num-bias-fold"] == 1 and stats["num-flatten-fold"] == 1
    assert stats["num-matmul-to-linear"] == 2


def test_scales_before_and_after_fold() -> None:
    m, b, x = _module((4, 8))
    c_in = _weight(m, b, RNG.standard_normal(8), "c_in")
    w = _weight(m, b, RNG.standard_normal((8, 4)), "w")
    y = b.op("core.matmul", b.op("core.mul", x, c_in), w)
    y = b.op("core.mul", y, b.op("core.constant", value=np.array(0.3, np.float32)))
    m.main.set_outputs([y])
    s0, s1, _ = _check(m, "fold-linear-chain,dce", _x(4, 8))
    assert [op.name for op in m.main if op.name != "core.weight"] == ["nn.linear"]
    assert s1["kernel_launches"] == 1 < s0["kernel_launches"]


def test_attention_scale_goes_into_q_columns_only() -> None:
    m, b, x = _module((1, 5, 8))
    w = _weight(m, b, RNG.standard_normal((8, 24)), "c_attn")
    qkv = b.op("nn.linear", x, w, _weight(m, b, RNG.standard_normal(24), "c_attn.b"), bias=True)
    q, k, v = b.create("core.split", [qkv], {"axis": 2, "sizes": [8, 8, 8]}).results
    heads = [b.op("core.permute", b.op("core.reshape", t, shape=[1, 5, 2, 4]), perm=[0, 2, 1, 3]) for t in (q, k, v)]
    o = b.op("nn.attention", *heads, scale=0.3)
    m.main.set_outputs([o])
    _check(m, "fold-linear-chain,dce", _x(1, 5, 8))
    att = next(op for op in m.main if op.name == "nn.attention")
    assert att.attrs["scale"] == 1.0


@pytest.mark.parametrize("mode, merged", [("auto", True), ("always", True), ("never", False)])
def test_linear_merge_modes(mode: str, merged: bool) -> None:
    m, b, x = _module((3, 4))
    h = b.op("nn.linear", x, _weight(m, b, RNG.standard_normal((4, 4)), "w1"),
             _weight(m, b, RNG.standard_normal(4), "b1"), bias=True)
    y = b.op("nn.linear", h, _weight(m, b, RNG.standard_normal((4, 4)), "w2"))
    m.main.set_outputs([y])
    _check(m, f"fold-linear-chain{{merge-linear={mode}}},dce", _x(3, 4))
    assert sum(op.name == "nn.linear" for op in m.main) == (1 if merged else 2)


def test_cost_model() -> None:
    assert merge_lowers_cost(768, 768, 768)  # square: one GEMM instead of two
    assert not merge_lowers_cost(768, 64, 768)  # low-rank bottleneck: keep it factored


def test_tied_weight_is_not_rescaled() -> None:
    m, b, x = _module((3, 4))
    table = _weight(m, b, RNG.standard_normal((10, 4)), "wte")
    ids = m.main.add_input(TensorType((3,), DType.i64), "ids")
    emb = b.op("nn.embedding", table, ids)
    n = b.op("nn.rms_norm", b.op("core.add", x, emb), _weight(m, b, 1 + RNG.random(4), "g"))
    logits = b.op("core.matmul", n, b.op("core.permute", table, perm=[1, 0]))
    m.main.set_outputs([logits])
    _check(m, "fold-linear-chain,dce", _x(3, 4), np.array([1, 2, 3]))
    assert len(next(op for op in m.main if op.name == "nn.rms_norm").operands) == 2
    assert len(m.constants) == 2


# -- a real model ------------------------------------------------------------------------------
def tiny_gpt2() -> tuple[Any, Any]:
    """A 2-layer GPT-2 with random (non-identity) LayerNorm affines, for load_model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from optllm.frontends.zoo import example_kwargs

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=64))
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.1)
    return model, example_kwargs(model, 2, 8)


@pytest.mark.slow
def test_gpt2_folds_and_keeps_outputs() -> None:
    from optllm.frontends.fx import import_torch
    from optllm.frontends.zoo import load_model

    model, kw = load_model("tests.unit.passes.test_fold_linear_chain:tiny_gpt2")
    m = import_torch(model, kwargs=kw).module
    inputs = [kw["input_ids"].numpy(), kw["attention_mask"].numpy()]
    s0, s1, _ = _check(m, "fold-linear-chain,canonicalize,cse,dce", *inputs)
    names = [op.name for op in m.main]
    assert names.count("nn.linear") == 2 * 4 + 1 and "core.matmul" not in names
    assert all(op.attrs["scale"] == 1.0 for op in m.main if op.name == "nn.attention")
    assert s1["nodes"] < 0.75 * s0["nodes"] and s1["kernel_launches"] < s0["kernel_launches"]
