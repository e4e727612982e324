"""The model matrix end to end, as a user runs it: ``optllm.compile(model, example, target=...)``.

Every family of ``optllm.testing.model_matrix`` is built from its small default config (the
cache left on for causal LMs), compiled ONCE per target from an example at batch 1, then
called at two other shapes (1x7 and 3x11) and compared with torch eager: max abs error over
max abs reference at most 1e-4. The example is the family's inputs positionally when they are
the forward's leading parameters (``(input_ids,)``, ``(input_ids, attention_mask)``), else by
keyword (Bloom's second parameter is ``past_key_values``). A family torch.export cannot take
must fail with a FrontendError that names the model and torch's reason.

The default run takes ``model_matrix.CORE`` (one family per distinct scheme); the whole matrix:
``OPTLLM_MATRIX=all pytest tests/models/test_model_matrix.py -s``. Reproduce one row:
``OPTLLM_MATRIX=all pytest tests/models/test_model_matrix.py -k 'llama and cpu' -s``.
"""

from __future__ import annotations

import inspect
import os
import warnings
from typing import Any

import pytest

import optllm
from optllm.frontends.common import FrontendError
from optllm.testing.model_matrix import FAMILIES, Family

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

TOL = 1e-4
EXAMPLE = (1, 5)  # batch, sequence of the compile-time example
SHAPES = [(1, 7), (3, 11)]
TARGETS = ["reference", "cpu"]
# The default run takes the core families (about 2 minutes on 2 cores); OPTLLM_MATRIX=all runs all.
SELECTED = [f for f in FAMILIES if f.core or os.environ.get("OPTLLM_MATRIX") == "all"]
RUNNABLE = [f for f in SELECTED if f.export_blocker is None]
BLOCKED = [f for f in SELECTED if f.export_blocker is not None]

_built: dict[str, Any] = {}


def _build(fam: Family) -> Any:
    """Each family is built once; only the latest one is kept alive."""
    if fam.name not in _built:
        _built.clear()
        _built[fam.name] = fam.build()
    return _built[fam.name]


def plain_example(model: Any, example: dict[str, Any]) -> Any:
    """The example as a user writes it: positional when the names lead the forward's parameters."""
    params = list(inspect.signature(model.forward).parameters)
    return tuple(example.values()) if list(example) == params[:len(example)] else example


def rel_error(got: Any, want: Any) -> float:
    """max |got - want| / max |want|."""
    return float((got.double() - want.double()).abs().max() / want.double().abs().max())


def compile_plain(fam: Family, model: Any, inputs: Any, target: str) -> Any:
    """``optllm.compile(model, example at batch 1, target=target)``; a dim torch fixed fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the frontend's warning for a fixed dim
        warnings.filterwarnings("ignore", module="transformers.*")
        warnings.filterwarnings("ignore", module="torch.*")
        return optllm.compile(model, plain_example(model, inputs(*EXAMPLE)), target=target)


_compiled: dict[str, Any] = {}


def compiled(fam: Family, target: str) -> Any:
    """The family compiled for ``target``. torch.export is most of a compile's time, so the
    import and the default pipeline run once per family (``optllm.compile(...,
    target="reference")``) and the cpu model is built from that same optimized module,
    which is what ``optllm.compile(..., target="cpu")`` builds (the pipeline does not depend
    on the target; ``test_cpu_compile_builds_the_same_module`` pins that)."""
    from optllm.backends import resolve_target
    from optllm.compiler import CompiledModel

    model, inputs = _build(fam)
    if fam.name not in _compiled:
        _compiled.clear()
        _compiled[fam.name] = compile_plain(fam, model, inputs, "reference")
    cm = _compiled[fam.name]
    if target == "reference":
        return cm
    return CompiledModel(cm.module.clone(), resolve_target(target), cm.signature, dict(cm.stats))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fam", RUNNABLE, ids=[f.name for f in RUNNABLE])
def test_family_matches_torch_eager(fam: Family, target: str) -> None:
    model, inputs = _build(fam)
    cm = compiled(fam, target)
    assert [str(v.type) for v in cm.module.main.inputs] == ["i64[B,S]"] * len(fam.inputs)
    errors = []
    for batch, seq in SHAPES:
        x = inputs(batch, seq)
        with torch.no_grad():
            want = model(**x)
        got = cm(**x)
        assert type(got) is type(want)
        if fam.task == "causal-lm":
            assert getattr(got, "past_key_values", None) is None
        errors.append(rel_error(getattr(got, fam.output), getattr(want, fam.output)))
    print(f"{fam.name} {target}: max rel error " + ", ".join(f"{b}x{s} {e:.2e}" for (b, s), e in zip(SHAPES, errors)))
    assert max(errors) <= TOL, errors


def test_cpu_compile_builds_the_same_module() -> None:
    """``optllm.compile(..., target="cpu")`` on a family builds the module the matrix's cpu rows
    run (the same import and pipeline as the reference compile), and runs it the same way."""
    from optllm.ir import print_module
    from optllm.testing.model_matrix import family

    fam = family("llama")
    model, inputs = _build(fam)
    cm = compile_plain(fam, model, inputs, "cpu")
    assert print_module(cm.module) == print_module(compiled(fam, "reference").module)
    x = inputs(3, 11)
    with torch.no_grad():
        want = model(**x).logits
    assert rel_error(cm(**x).logits, want) <= TOL


@pytest.mark.parametrize("fam", BLOCKED, ids=[f.name for f in BLOCKED])
def test_export_blocker_is_a_clear_frontend_error(fam: Family) -> None:
    model, inputs = _build(fam)
    with pytest.raises(FrontendError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Mamba's conv fixes S (a warning) before its import fails
        optllm.compile(model, plain_example(model, inputs(*EXAMPLE)))
    message = str(info.value)
    assert fam.model_class in message and fam.export_blocker in message, message


def test_real_minilm_on_cpu() -> None:
    """all-MiniLM-L6-v2's real weights through AutoModel, called with (input_ids, attention_mask)."""
    from transformers import AutoModel

    from optllm.frontends.zoo import minilm_path, minilm_tokenizer

    model = AutoModel.from_pretrained(minilm_path(), local_files_only=True).eval()
    tok = minilm_tokenizer()
    first = tok(["a batch of one"], return_tensors="pt")
    cm = optllm.compile(model, (first["input_ids"], first["attention_mask"]), target="cpu")
    texts = [["one sentence to embed"],
             ["three sentences", "of different lengths, so the batch", "is padded at the end"]]
    for batch in texts:
        enc = tok(batch, return_tensors="pt", padding=True)
        with torch.no_grad():
            want = model(enc["input_ids"], enc["attention_mask"]).last_hidden_state
        got = cm(enc["input_ids"], enc["attention_mask"]).last_hidden_state
        err = rel_error(got, want)
        print(f"minilm cpu {tuple(enc['input_ids'].shape)}: max rel error {err:.2e}")
        assert err <= TOL


def test_new_user_script_gpt2_and_bert_on_cpu() -> None:
    """The issue's script: a GPT-2 from its default config compiled with (input_ids,) at batch
    1 and called at batch 2; a BertModel with (input_ids, attention_mask). No config edits."""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=64, n_head=2)).eval()
    cm = optllm.compile(gpt2, (torch.randint(0, 50257, (1, 6)),), target="cpu")
    ids = torch.randint(0, 50257, (2, 9))
    with torch.no_grad():
        want = gpt2(ids)
    got = cm(ids)
    assert type(got) is type(want) and got.past_key_values is None
    assert rel_error(got.logits, want.logits) <= TOL

    bert = BertModel(BertConfig(num_hidden_layers=1, hidden_size=64, num_attention_heads=2,
                                intermediate_size=128)).eval()
    mask = torch.ones(1, 6, dtype=torch.long)
    cm = optllm.compile(bert, (torch.randint(0, 30522, (1, 6)), mask), target="cpu")
    ids, mask = torch.randint(0, 30522, (2, 9)), torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        want = bert(ids, mask)
    got = cm(ids, mask)
    assert rel_error(got.last_hidden_state, want.last_hidden_state) <= TOL
    assert rel_error(got.pooler_output, want.pooler_output) <= TOL
