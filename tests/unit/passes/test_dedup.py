"""dedup: structural hashing on built modules (impure ops, weights by content, lazy tables,
statistics) and on a real imported model (outputs unchanged, fewer nodes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tests.unit.passes.side_effects  # noqa: F401  (registers test_passes.emit)
from optllm.backends.reference import run_module
from optllm.ir import Builder, DType, Graph, Module, TensorType, graph_stats, verify_module
from optllm.ir.parser import parse_module
from optllm.ir.printer import print_module
from optllm.passes import run_pipeline
from optllm.passes.dedup import Dedup, body_key, op_key, weight_twins

F4 = TensorType((4,), DType.f32)


def _weight(b: Builder, name: str, t: TensorType = F4) -> Any:
    return b.create("core.weight", [], {"name": name}, result_types=[t]).result


def test_impure_ops_and_their_users_stay_apart() -> None:
    g = Graph("forward", [F4], ["x"])
    b = Builder.at_end(g)
    x = g.inputs[0]
    r0, r1 = b.op("test_passes.emit", x), b.op("test_passes.emit", x)
    g.set_outputs([b.op("core.exp", r0), b.op("core.exp", r1)])
    m = Module()
    m.add_graph(g)
    report = run_pipeline(m, [Dedup()])
    assert report.passes[0].statistics["num-merged-ops"] == 0
    assert len(g) == 4
    assert op_key(g.ops[0], id) is None


def test_region_with_an_impure_body_does_not_merge() -> None:
    text = """module @m {
  func @forward(%x: f32[4]) -> (f32[4], f32[4]) {
    %0 = fused.region %x : f32[4] {
      ^(%a: f32[4]):
      %0 = test_passes.emit %a : f32[4]
      return %0
    }
    %1 = fused.region %x : f32[4] {
      ^(%a: f32[4]):
      %0 = test_passes.emit %a : f32[4]
      return %0
    }
    return %0, %1
  }
}
"""
    m = parse_module(text)
    assert body_key(m.main.ops[0].regions[0]) is None
    run_pipeline(m, "dedup")
    assert len(m.main) == 2


def _tied_module(lazy: bool) -> tuple[Module, np.ndarray]:
    """Two weights with equal bytes under different names (and one that differs)."""
    m = Module("tied")
    g = m.add_graph(Graph("forward", [F4], ["x"]))
    b = Builder.at_end(g)
    a = np.arange(4, dtype=np.float32)
    arrays = {"wte": a, "lm_head": a.copy(), "other": a + 1}
    for name, arr in arrays.items():
        if lazy:  # as loaded from a file: nothing hashed yet
            m.constants.add_lazy(name, F4, lambda arr=arr: arr)
        else:
            assert m.constants.add(arr, name) in ("wte", name)
    names = ["wte", "lm_head" if lazy else "wte", "other"]
    w0, w1, w2 = (_weight(b, n) for n in names)
    x = g.inputs[0]
    g.set_outputs([b.op("core.mul", b.op("core.add", x, w0), b.op("core.add", w1, x)), b.op("core.sub", x, w2)])
    return m, np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)


def test_tied_weights_are_stored_once() -> None:
    m, x = _tied_module(lazy=True)
    want = run_module(m, [x])
    assert weight_twins(m) == {"lm_head": "wte"}
    report = run_pipeline(m, "dedup")
    assert report.passes[0].statistics == {"num-merged-ops": 2, "num-merged-constants": 1, "bytes-saved": 16}
    assert sorted(m.constants.names()) == ["other", "wte"]
    assert [op.name for op in m.main] == ["core.weight", "core.weight", "core.add", "core.mul", "core.sub"]
    for got, exp in zip(run_module(m, [x]), want):
        np.testing.assert_array_equal(got, exp)
    # The survivor joined the table's dedup index: adding the same bytes again finds it.
    assert m.constants.add(np.arange(4, dtype=np.float32), "again") == "wte"


def test_weights_of_a_unique_type_are_never_read() -> None:
    m = Module("lazy")
    g = m.add_graph(Graph("forward", [], []))
    b = Builder.at_end(g)

    def boom() -> np.ndarray:
        raise AssertionError("a weight with no type twin was loaded")

    m.constants.add_lazy("big", TensorType((3, 5), DType.f32), boom)
    m.constants.add_lazy("small", F4, lambda: np.zeros(4, np.float32))
    g.set_outputs([_weight(b, "big", TensorType((3, 5), DType.f32)), _weight(b, "small")])
    run_pipeline(m, "dedup")
    assert sorted(m.constants.names()) == ["big", "small"]


def test_dedup_subsumes_cse_and_is_idempotent() -> None:
    m, x = _tied_module(lazy=False)
    run_pipeline(m, "dedup")
    text = print_module(m)
    report = run_pipeline(m, "dedup,cse")
    assert not report.changed
    assert print_module(m) == text


# -- a real model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama() -> tuple[Module, list[np.ndarray]]:
    """A two-layer Llama (GQA, rotary, tied embeddings) imported once with symbolic B and S."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from optllm.frontends.fx import import_torch

    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                      max_position_embeddings=64, tie_word_embeddings=True)
    model = transformers.LlamaForCausalLM(config).eval()
    model.config.use_cache = False
    ids = torch.randint(0, 128, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, -2:] = 0  # right padding: every query row keeps a key
    module = import_torch(model, {"input_ids": ids, "attention_mask": mask}).module
    return module, [ids.numpy(), mask.numpy()]


@pytest.mark.slow
def test_real_model_outputs_unchanged_and_fewer_nodes(llama: tuple[Module, list[np.ndarray]]) -> None:
    module, xs = llama
    want = run_module(module, xs)
    before = graph_stats(module.main)["nodes"]
    report = run_pipeline(module, "dedup")
    verify_module(module)
    stats = report.passes[0].statistics
    assert stats["num-merged-ops"] > 0
    assert graph_stats(module.main)["nodes"] == before - stats["num-merged-ops"]
    assert graph_stats(module.main)["nodes"] < before
    for got, exp in zip(run_module(module, xs), want):
        np.testing.assert_array_equal(got, exp)  # merging is exact
    # Per-layer copies are gone: one arange per symbol, one causal mask.
    assert sum(op.name == "core.arange" for op in module.main) <= 2
    assert not run_pipeline(module, "cse").changed
