"""fold-residual: GEMM epilogues, skip norms (numerics identical to add + norm), zero branches
(and the documented sign-of-zero caveat), and a small Llama imported from PyTorch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from optllm.backends.reference import run_module
from optllm.ir import Module, parse_module
from optllm.ir.graph import graph_stats
from optllm.ir.ops import get_opdef
from optllm.passes import run_pipeline

RNG = np.random.default_rng(1)


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _run(m: Module, pipeline: str, *inputs: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], Any]:
    before = run_module(m, list(inputs))
    report = run_pipeline(m, pipeline)
    return before, run_module(m, list(inputs)), report


def test_skip_norm_references_match_add_then_norm_bitwise() -> None:
    x, skip, g, b = _x(3, 16), _x(3, 16), _x(16), _x(16)
    for name, norm, params in (("nn.skip_layer_norm", "nn.layer_norm", [g, b]), ("nn.skip_rms_norm", "nn.rms_norm", [g])):
        attrs = {"eps": 1e-6, "ndim": 1}
        y, s = get_opdef(name).reference([x, skip, *params], attrs, {})
        want = get_opdef(norm).reference([x + skip, *params], attrs, {})[0]
        assert s.tobytes() == (x + skip).tobytes() and y.tobytes() == want.tobytes()


BLOCK = """module @m {
  func @forward(%x: f32[B,8], %e: f32[B,8]) -> (f32[B,8]) {
    %0 = core.add %x, %e : f32[B,8]
    %1 = nn.layer_norm %0 : f32[B,8]
    %2 = core.constant {value = dense<f32[8,8]: splat 0.25>} : f32[8,8]
    %3 = core.matmul %1, %2 : f32[B,8]
    %4 = core.add %3, %0 : f32[B,8]
    return %4
  }
}
"""


def test_epilogue_and_skip_norm_keep_outputs_and_drop_launches() -> None:
    m = parse_module(BLOCK)
    s0 = dict(graph_stats(m.main))
    before, after, report = _run(m, "fold-linear-chain,fold-residual,dce", _x(2, 8), _x(2, 8))
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5, atol=1e-5)
    names = [op.name for op in m.main if op.name != "core.constant"]
    assert names == ["nn.skip_layer_norm", "nn.linear"]
    assert dict(graph_stats(m.main))["kernel_launches"] == 2 < s0["kernel_launches"]
    stats = report.passes[1].statistics
    assert stats["num-residual-into-linear"] == 1 and stats["num-residual-into-norm"] == 1


PRUNED = """module @m {
  func @forward(%x: f32[B,4]) -> (f32[B,4]) {
    %0 = nn.rms_norm %x : f32[B,4]
    %1 = core.constant {value = dense<f32[4,4]: splat 0.0>} : f32[4,4]
    %2 = core.matmul %0, %1 : f32[B,4]
    %3 = nn.silu %2 : f32[B,4]
    %4 = core.matmul %3, %1 : f32[B,4]
    %5 = core.add %x, %4 : f32[B,4]
    return %5
  }
}
"""


def test_pruned_block_is_removed_with_its_branch() -> None:
    m = parse_module(PRUNED)
    x = np.array([[-0.0, 1.0, -2.0, 3.0]], np.float32)
    before, after, report = _run(m, "fold-residual,dce", x)
    assert [op.name for op in m.main] == [] and m.main.outputs == m.main.inputs
    assert report.passes[0].statistics["num-zero-branch"] == 1
    # the documented caveat: -0.0 + (+0.0) is +0.0, the folded graph keeps -0.0
    np.testing.assert_array_equal(after[0], before[0])
    assert np.signbit(after[0][0, 0]) and not np.signbit(before[0][0, 0])


def test_pruned_block_kept_without_assume_finite() -> None:
    m = parse_module(PRUNED)
    with np.errstate(invalid="ignore"):
        before, after, _ = _run(m, "fold-residual{assume-finite=false},dce", np.array([[np.inf, 0, 0, 0]], np.float32))
    assert any(op.name == "core.add" for op in m.main)
    np.testing.assert_array_equal(after[0], before[0])  # inf·0 = nan is kept


# -- a real model ------------------------------------------------------------------------------
def tiny_llama() -> tuple[Any, Any]:
    """A 2-layer Llama with random RMSNorm weights, for load_model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from optllm.frontends.zoo import example_kwargs

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model, example_kwargs(model, 2, 8)


@pytest.mark.slow
def test_llama_residuals_fold_and_outputs_stay() -> None:
    from optllm.frontends.fx import import_torch
    from optllm.frontends.zoo import load_model

    model, kw = load_model("tests.unit.passes.test_fold_residual:tiny_llama")
    m = import_torch(model, kwargs=kw).module
    inputs = [kw["input_ids"].numpy(), kw["attention_mask"].numpy()]
    s0 = dict(graph_stats(m.main))
    before, after, report = _run(m, "fold-linear-chain,fold-residual,canonicalize,cse,dce", *inputs)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5, atol=1e-5)
    s1 = dict(graph_stats(m.main))
    assert report.passes[1].statistics["num-residual-into-linear"] == 2 * 2
    assert sum(op.attrs["residual"] for op in m.main if op.name == "nn.linear") == 4
    assert s1["nodes"] < s0["nodes"] and s1["kernel_launches"] < s0["kernel_launches"]
