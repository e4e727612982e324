"""The model zoo: built-in names, package.module:function specs, the real MiniLM files."""

from __future__ import annotations

import pytest

from optllm.frontends.fx import FrontendError
from optllm.frontends.zoo import BUILTIN, load_model, minilm_tokenizer

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(x)


def tiny_model():
    return Tiny().train(), (torch.randn(3, 4),)


def not_a_pair():
    return Tiny()


def test_unknown_name_lists_the_builtins():
    with pytest.raises(FrontendError) as info:
        load_model("gpt3")
    for name in BUILTIN:
        assert name in str(info.value)


def test_spec_loads_a_function_and_puts_the_model_in_eval_mode():
    model, example = load_model(f"{__name__}:tiny_model")
    assert isinstance(model, Tiny) and not model.training
    assert example[0].shape == (3, 4)
    with pytest.raises(FrontendError, match="cannot load model spec"):
        load_model(f"{__name__}:missing")
    with pytest.raises(FrontendError, match="must return \\(model, example_inputs\\)"):
        load_model(f"{__name__}:not_a_pair")


def test_bad_attn_implementation():
    with pytest.raises(FrontendError, match="attn_implementation"):
        load_model("minilm", attn_implementation="flash")


def test_minilm_is_the_real_model_offline():
    model, kwargs = load_model("minilm", attn_implementation="eager", batch=3, seq=7)
    assert not model.training and model.config.use_cache is False
    assert model.config._attn_implementation == "eager"
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert set(kwargs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert kwargs["input_ids"].shape == (3, 7)
    from safetensors import safe_open

    from optllm.frontends.zoo import minilm_path

    with safe_open(f"{minilm_path()}/model.safetensors", framework="pt") as f:
        key = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))
        assert torch.equal(f.get_tensor(key), model.embeddings.word_embeddings.weight)


def test_minilm_tokenizer():
    tok = minilm_tokenizer()
    enc = tok(["A man is eating food.", "Hi"], padding=True, return_tensors="pt")
    assert enc["input_ids"][0, 0].item() == tok.cls_token_id
    assert enc["attention_mask"][1].tolist()[-1] == 0
