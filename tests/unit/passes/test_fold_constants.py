"""fold-constants on built modules (placement, limits, impure ops, table entries) and on a real
imported model at static shapes (outputs within rtol 1e-5, fewer nodes and launches)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from optllm.backends.reference import run_module
from optllm.ir import Builder, DType, Graph, Module, OpDef, TensorType, graph_stats, register_op, verify_module
from optllm.passes import run_pipeline
from optllm.passes.fold_constants import FoldConstants, full_value

F4 = TensorType((4,), DType.f32)


@register_op
class Noise(OpDef):
    """``%0 = test_fold.noise {n = 4} : f32[4]`` — not pure (think of a random generator)."""

    name = "test_fold.noise"
    traits = frozenset()

    def infer(self, types: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        return [F4]

    def reference(self, inputs: Sequence[np.ndarray], attrs: Mapping[str, Any],
                  env: Mapping[str, int]) -> list[np.ndarray]:
        return [np.zeros(4, np.float32)]


def _module(inputs: Sequence[TensorType] = ()) -> tuple[Module, Graph, Builder]:
    m = Module()
    g = m.add_graph(Graph("forward", list(inputs), [f"x{i}" for i in range(len(inputs))]))
    return m, g, Builder.at_end(g)


def _weight(m: Module, b: Builder, arr: np.ndarray, name: str) -> Any:
    name = m.constants.add(arr, name)
    return b.create("core.weight", [], {"name": name}, result_types=[m.constants.type_of(name)]).result


def test_impure_ops_never_fold() -> None:
    m, g, b = _module()
    n = b.op("test_fold.noise")
    g.set_outputs([b.op("core.exp", n)])
    report = run_pipeline(m, "fold-constants")
    assert report.passes[0].statistics["num-folded"] == 0
    assert [op.name for op in g] == ["test_fold.noise", "core.exp"]


def test_weight_transpose_moves_to_the_table_and_the_source_is_dropped() -> None:
    x_t = TensorType((2, 8), DType.f32)
    m, g, b = _module([x_t])
    w = np.random.default_rng(0).standard_normal((256, 8)).astype(np.float32)
    wt = b.op("core.permute", _weight(m, b, w, "proj.weight"), perm=[1, 0], loc="proj")
    g.set_outputs([b.op("core.matmul", g.inputs[0], wt)])
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    want = run_module(m, [x])[0]
    report = run_pipeline(m, "fold-constants")
    assert report.passes[0].statistics == {"num-folded": 1, "num-new-constants": 1, "num-constants-dropped": 1}
    assert m.constants.names() == ["proj.permute"]
    assert [op.name for op in g] == ["core.weight", "core.matmul"]
    assert g.ops[0].loc == "proj"
    np.testing.assert_array_equal(m.constants["proj.permute"], w.T)
    np.testing.assert_allclose(run_module(m, [x])[0], want, rtol=1e-5, atol=1e-6)


def test_a_transposed_weight_read_elsewhere_is_not_copied() -> None:
    # A tied embedding: the table would hold the tensor twice.
    m, g, b = _module([TensorType((2, 64), DType.f32)])
    w = _weight(m, b, np.arange(64 * 8, dtype=np.float32).reshape(64, 8), "wte")
    g.set_outputs([b.op("core.permute", w, perm=[1, 0]), b.op("core.matmul", g.inputs[0], w)])
    report = run_pipeline(m, "fold-constants{max-elements=16}")
    assert report.passes[0].statistics["num-folded"] == 0
    assert m.constants.names() == ["wte"]


def test_max_bytes_limits_new_table_entries() -> None:
    for max_bytes, folded in ((0, 0), (1023, 0), (1024, 2)):
        m, g, b = _module()
        r = b.op("core.arange", end=256, dtype=DType.f32)
        g.set_outputs([b.op("core.exp", r)])
        p = FoldConstants(max_elements=16, max_bytes=max_bytes)
        report = run_pipeline(m, [p])
        assert report.passes[0].statistics["num-folded"] == folded, max_bytes
        assert len(m.constants) == (1 if folded else 0)  # the arange's entry left with it


def test_identical_folded_values_share_one_table_entry() -> None:
    m, g, b = _module()
    outs = [b.op("core.exp", b.op("core.arange", end=64, dtype=DType.f32, loc=f"l{i}"), loc=f"l{i}") for i in range(2)]
    g.set_outputs(outs)
    report = run_pipeline(m, "fold-constants{max-elements=8}")
    assert report.passes[0].statistics["num-new-constants"] == 2  # l0.arange (l1's is a twin), l0.exp
    assert {op.attrs["name"] for op in g} == {"l0.exp"}
    assert m.constants.names() == ["l0.exp"]


def test_full_value_is_exact() -> None:
    assert full_value(np.full(8, -0.0, np.float32), DType.f32) == 0.0
    assert np.signbit(full_value(np.full(8, -0.0, np.float32), DType.f32))  # type: ignore[arg-type]
    assert full_value(np.full(8, 2**60 + 1, np.int64), DType.i64) is None  # not exact through a float
    assert full_value(np.array([1.0, 2.0], np.float32), DType.f32) is None
    assert full_value(np.ones(3, bool), DType.bool) == 1.0


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max-elements"):
        FoldConstants(max_elements=-1)
    assert FoldConstants().set_options() == {}
    assert FoldConstants(max_bytes=0).set_options() == {"max-bytes": 0}


# -- a real model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_static() -> tuple[Module, list[np.ndarray]]:
    """A two-layer Llama imported once at static shapes: masks, position ids and rotary tables
    are constant subexpressions."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from optllm.frontends.fx import import_torch

    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                      max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(config).eval()
    model.config.use_cache = False
    ids = torch.randint(0, 128, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, -2:] = 0
    module = import_torch(model, {"input_ids": ids, "attention_mask": mask}, dynamic=None).module
    return module, [ids.numpy(), mask.numpy()]


@pytest.mark.slow
def test_real_model_outputs_kept_and_fewer_nodes(llama_static: tuple[Module, list[np.ndarray]]) -> None:
    module, xs = llama_static
    want = run_module(module, xs)
    before = graph_stats(module.main)
    names = {op.name for op in module.main}
    report = run_pipeline(module, "fold-constants")
    verify_module(module)
    after = graph_stats(module.main)
    assert report.passes[0].statistics["num-folded"] > 0
    assert after["nodes"] < before["nodes"] and after["kernel_launches"] < before["kernel_launches"]
    # The rotary tables and the position ids are precomputed.
    assert {"core.cos", "core.sin", "core.arange"} <= names
    assert not {"core.cos", "core.sin", "core.arange"} & {op.name for op in module.main}
    for got, exp in zip(run_module(module, xs), want):
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-6)
    assert not run_pipeline(module, "fold-constants").changed  # a fixpoint in one sweep
