"""optllm.compile / CompiledModel / optllm.load on small models (fast; no model zoo)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import optllm
from optllm.backends import TargetError
from optllm.compiler import CompileError
from optllm.ir import parse_module

TINY = """module @tiny {
  func @forward(%x: f32[B,4], %y: f32[B,4]) -> (f32[B,4]) {
    %0 = core.constant {value = dense<f32[]: 1.0>} : f32[]
    %1 = core.mul %x, %0 : f32[B,4]
    %2 = core.add %1, %y : f32[B,4]
    %3 = core.tanh %2 : f32[B,4]
    %4 = core.exp %2 : f32[B,4]
    return %3
  }
}
"""


def test_compile_ir_module_runs_and_counts_nodes() -> None:
    cm = optllm.compile(parse_module(TINY), target="reference", passes="default")
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    y = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(cm(x, y), np.tanh(x + y), rtol=1e-6)
    assert cm.stats["nodes"]["before"] == 5
    assert cm.stats["nodes"]["after"] < cm.stats["nodes"]["before"]  # dead exp and x*1 go
    assert set(cm.stats["kernel_launches"]) == {"before", "after"}
    assert cm.stats["passes"], "per-pass statistics are reported"


def test_unknown_target_lists_valid_ones() -> None:
    with pytest.raises(TargetError, match="unknown target 'tpu'.*reference"):
        optllm.compile(parse_module(TINY), target="tpu")


@pytest.mark.parametrize("target", ["a100", "h100", "cuda"])
def test_unimplemented_targets_say_so(target: str) -> None:
    with pytest.raises(TargetError, match="not implemented yet"):
        optllm.compile(parse_module(TINY), target=target)


def test_compile_for_cpu_matches_reference_and_survives_save_load(tmp_path) -> None:
    cm = optllm.compile(parse_module(TINY), target="cpu")
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    y = np.ones((5, 4), np.float32)
    np.testing.assert_allclose(cm(x, y), np.tanh(x + y), rtol=1e-6, atol=1e-7)
    cm.save(tmp_path / "saved")
    again = optllm.load(tmp_path / "saved")
    assert again.target.name == "cpu"
    np.testing.assert_allclose(again(x, y), cm(x, y), rtol=0, atol=0)


def test_missing_onnx_file_is_a_clear_error(tmp_path) -> None:
    from optllm.frontends.fx import FrontendError

    with pytest.raises(FrontendError, match=r"m\.onnx: no such ONNX file"):
        optllm.compile(str(tmp_path / "m.onnx"))


def test_save_load_round_trip_ir_model(tmp_path) -> None:
    cm = optllm.compile(parse_module(TINY), passes="O0")
    cm.save(tmp_path / "saved")
    meta = json.loads((tmp_path / "saved" / "optllm.json").read_text())
    assert meta["target"] == "reference"
    cm2 = optllm.load(tmp_path / "saved")
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    np.testing.assert_array_equal(cm(x, x), cm2(x, x))
    assert str(cm2.module) == str(cm.module)


def test_load_rejects_a_folder_that_is_not_a_saved_model(tmp_path) -> None:
    with pytest.raises(CompileError, match="optllm.json is missing"):
        optllm.load(tmp_path)


torch = pytest.importorskip("torch")


class _Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(16, 32)
        self.down = torch.nn.Linear(32, 16)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return {"y": self.down(torch.nn.functional.gelu(self.up(x))) + x, "h": self.up(x)}


def test_compile_torch_module_keeps_calling_convention(tmp_path) -> None:
    torch.manual_seed(0)
    model = _Mlp().eval()
    x = torch.randn(2, 5, 16)
    cm = optllm.compile(model, (x,))
    x2 = torch.randn(3, 7, 16)  # other batch and sequence: the shapes are symbolic
    out, ref = cm(x2), model(x2)
    assert isinstance(out, dict) and set(out) == {"y", "h"}
    assert isinstance(out["y"], torch.Tensor)
    for k in ref:
        np.testing.assert_allclose(out[k].numpy(), ref[k].detach().numpy(), rtol=1e-5, atol=1e-5)
    cm.save(tmp_path / "mlp")
    cm2 = optllm.load(tmp_path / "mlp")
    np.testing.assert_array_equal(cm2(x2)["y"].numpy(), out["y"].numpy())


def test_hf_outputs_keep_their_fields() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, vocab_size=100)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    cm = optllm.compile(model, {"input_ids": ids, "attention_mask": mask})
    out = cm(input_ids=ids, attention_mask=mask)
    ref = model(input_ids=ids, attention_mask=mask)
    assert type(out).__name__ == type(ref).__name__
    np.testing.assert_allclose(out.last_hidden_state.numpy(), ref.last_hidden_state.detach().numpy(),
                               rtol=1e-5, atol=1e-5)


# -- transformers models as users have them (default config, plain examples) ----------------------
def _tiny_gpt2() -> Any:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=128)).eval()


def _rel(got: Any, want: Any) -> float:
    return float((got - want).abs().max() / want.abs().max())


@pytest.fixture(scope="module")
def gpt2_ids_only() -> Any:
    """A GPT-2 left at use_cache=True, compiled with ``(input_ids,)`` at batch 1."""
    model = _tiny_gpt2()
    assert model.config.use_cache
    return model, optllm.compile(model, (torch.randint(0, 128, (1, 5)),))


def test_causal_lm_with_its_cache_on_compiles_at_batch_one(gpt2_ids_only) -> None:
    model, cm = gpt2_ids_only
    assert [str(v.type) for v in cm.module.main.inputs] == ["i64[B,S]"]
    ids = torch.randint(0, 128, (3, 11))
    with torch.no_grad():
        want = model(ids)
    for got in (cm(ids), cm(input_ids=ids), cm(**{"input_ids": ids}), cm(ids, use_cache=False)):
        assert type(got) is type(want) and got.past_key_values is None
        assert _rel(got.logits, want.logits) <= 1e-5


def test_inputs_must_match_the_example(gpt2_ids_only) -> None:
    from optllm.frontends.signature import SignatureError

    _, cm = gpt2_ids_only
    ids = torch.randint(0, 128, (2, 4))
    with pytest.raises(SignatureError, match="unexpected input 'attention_mask' .not in the example at compile"):
        cm(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(SignatureError, match="missing input 'input_ids'"):
        cm()
    with pytest.raises(SignatureError, match="'use_cache' was fixed to False"):
        cm(ids, use_cache=True)


def test_example_as_dict_or_with_kwargs_and_a_required_mask() -> None:
    from optllm.frontends.signature import SignatureError

    model = _tiny_gpt2()
    ids, mask = torch.randint(0, 128, (1, 6)), torch.ones(1, 6, dtype=torch.long)
    by_dict = optllm.compile(model, {"input_ids": ids, "attention_mask": mask})
    by_kwargs = optllm.compile(model, (ids,), kwargs={"attention_mask": mask})
    ids, mask = torch.randint(0, 128, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        want = model(ids, attention_mask=mask).logits
    for cm in (by_dict, by_kwargs):
        assert _rel(cm(ids, attention_mask=mask).logits, want) <= 1e-5
        assert _rel(cm(input_ids=ids, attention_mask=mask).logits, want) <= 1e-5
        with pytest.raises(SignatureError, match="missing input 'attention_mask' .given in the example"):
            cm(ids)


def test_asking_for_the_cache_is_a_clear_error() -> None:
    from optllm.frontends.common import FrontendError

    with pytest.raises(FrontendError, match="use_cache=True.*no KV cache yet"):
        optllm.compile(_tiny_gpt2(), {"input_ids": torch.randint(0, 128, (1, 5)), "use_cache": True})


def test_encoder_with_every_input_at_batch_one() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                           intermediate_size=64, vocab_size=100)).eval()

    def inputs(b: int, s: int) -> dict[str, Any]:
        return {"input_ids": torch.randint(0, 100, (b, s)), "attention_mask": torch.ones(b, s, dtype=torch.long),
                "token_type_ids": (torch.arange(s) >= s // 2).long().expand(b, s).clone(),
                "position_ids": torch.arange(s).expand(b, s).clone()}

    cm = optllm.compile(model, inputs(1, 1))  # batch 1 and sequence 1: both stay symbolic
    assert [str(v.type) for v in cm.module.main.inputs] == ["i64[B,S]"] * 4
    x = inputs(3, 9)
    with torch.no_grad():
        want = model(**x)
    got = cm(**x)
    assert _rel(got.last_hidden_state, want.last_hidden_state) <= 1e-5
    assert _rel(got.pooler_output, want.pooler_output) <= 1e-5
