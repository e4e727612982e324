"""A left-padded batch (``tokenizer(padding_side="left")``, what generation feeds) through GPT-2
and Llama built straight from ``transformers`` (tiny sizes, defaults otherwise: sdpa attention).

The padding positions' query rows have every key masked. torch's SDPA gives 0 there, so the
models' logits are finite everywhere; optllm must compute the same (``nn.attention``'s
``masked_rows = "zero"``), on ``reference`` and ``cpu``, with and without passes. Compared with
torch eager on the unpadded positions at 1e-4 relative (max abs error over max abs logit), and
required finite everywhere. A test fails if nn.attention gives NaN for those rows again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import optllm
from optllm.testing.model_matrix import seeded_model

VOCAB = 128
SIZES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", {"n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": VOCAB}),
    "llama": ("LlamaForCausalLM", "LlamaConfig", {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                                   "num_attention_heads": 4, "num_key_value_heads": 2,
                                                   "vocab_size": VOCAB}),
}
RTOL = 1e-4


def _model(family: str, attn: str = "sdpa") -> Any:
    import transformers

    model_cls, config_cls, sizes = SIZES[family]
    extra = {} if attn == "sdpa" else {"attn_implementation": attn}
    return seeded_model(getattr(transformers, model_cls), getattr(transformers, config_cls)(**sizes, **extra))


def _left_padded(batch: int, seq: int, pads: list[int]) -> tuple[Any, Any]:
    """Token ids and a mask whose row ``b`` starts with ``pads[b]`` padding positions."""
    import torch

    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1, VOCAB, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    for b, p in enumerate(pads):
        mask[b, :p] = 0
        ids[b, :p] = 0
    return ids, mask


def _logits(out: Any) -> np.ndarray:
    logits = out.logits if hasattr(out, "logits") else out[0]
    return np.asarray(logits.detach().numpy() if hasattr(logits, "detach") else logits)


# reference unoptimised and cpu optimised always run; the other two pairings are marked slow
CASES = [pytest.param(f, t, p, marks=() if (t, p) in (("reference", "O0"), ("cpu", "default")) else pytest.mark.slow)
         for f in sorted(SIZES) for t in ("reference", "cpu") for p in ("O0", "default")]


@pytest.mark.parametrize("family,target,passes", CASES)
def test_left_padded_batch_matches_torch(family: str, target: str, passes: str) -> None:
    model = _model(family)
    assert model.config._attn_implementation == "sdpa"  # the default the bug was found with
    _check(model, family, target, passes)


@pytest.mark.parametrize("family", sorted(SIZES))
def test_left_padded_batch_eager_attention(family: str) -> None:
    # eager attention: softmax over an additive finfo.min mask, fused into nn.attention by the
    # default passes; its padding rows are a uniform average (finite), which fusing must keep
    model = _model(family, "eager")
    assert model.config._attn_implementation == "eager"
    _check(model, family, "cpu", "default")


def _check(model: Any, family: str, target: str, passes: str) -> None:
    import torch

    ids, mask = _left_padded(3, 7, [3, 0, 6])
    with torch.no_grad():
        want = _logits(model(input_ids=ids, attention_mask=mask))
    assert np.isfinite(want).all()
    # by name: GPT-2's second positional parameter is past_key_values, not attention_mask
    cm = optllm.compile(model, {"input_ids": ids, "attention_mask": mask}, target=target, passes=passes)
    # a second shape from the same compile: another batch and length, left padded too
    ids2, mask2 = _left_padded(2, 5, [2, 4])
    with torch.no_grad():
        want2 = _logits(model(input_ids=ids2, attention_mask=mask2))
    for x, m, w in ((ids, mask, want), (ids2, mask2, want2)):
        got = _logits(cm(input_ids=x, attention_mask=m))
        assert got.shape == w.shape
        assert np.isfinite(got).all(), f"{family} {target} {passes}: non-finite logits on a left-padded batch"
        keep = m.numpy().astype(bool)
        err = np.abs(got[keep].astype(np.float64) - w[keep]).max() / np.abs(w[keep]).max()
        assert err <= RTOL, f"{family} {target} {passes}: relative error {err:.2e} on the unpadded positions"
