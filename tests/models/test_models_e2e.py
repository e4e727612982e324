"""The four benchmark models, end to end: torch.export -> IR -> reference executor vs torch eager.

Each model is built straight from ``transformers`` with its default config (causal LMs keep
``use_cache=True``; ``model_matrix.benchmark_model``) and imported the plain way, once per
attention implementation: ``optllm.compile(model, {input_ids, attention_mask}, passes="O0")``
on an example at batch 1 (module-scoped fixtures). One imported module is then run at two
other batch/sequence sizes, which only works if the batch and sequence dims really are
symbolic. fp32 outputs must match torch eager within rtol=1e-5, atol=1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import optllm
from optllm.backends.reference import run_module
from optllm.frontends.common import Imported
from optllm.frontends.zoo import set_attn_implementation
from optllm.ir import graph_stats, parse_module, print_module, verify_module
from optllm.testing.model_matrix import BENCHMARK_MODELS, benchmark_inputs, benchmark_model

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

RTOL = ATOL = 1e-5
SHAPES = [(2, 16, 0), (3, 11, 3)]  # batch, sequence, padded positions in the last row
INNER_LOC = {  # an op that must carry the innermost module path
    "minilm": "encoder.layer.0.attention.self.query",
    "gpt2": "transformer.h.0.attn.c_attn",
    "llama-tiny": "model.layers.0.self_attn.q_proj",
    "bert-base": "encoder.layer.0.attention.self.query",
}


@dataclass
class Case:
    name: str
    impl: str
    model: Any
    imported: Imported
    _optimized: Any = None

    def optimized(self) -> Any:
        """The imported module after the ``default`` pipeline (computed once per case)."""
        if self._optimized is None:
            from optllm.passes import run_pipeline

            self._optimized = self.imported.module.clone()
            run_pipeline(self._optimized, "default")
        return self._optimized


CASES = [(name, impl) for name in BENCHMARK_MODELS for impl in ("sdpa", "eager")]
EXAMPLE = (1, 9)  # batch, sequence of the import's example


def example_kwargs(model: Any, batch: int, seq: int, *, pad: int = 0) -> dict[str, Any]:
    """``input_ids`` and ``attention_mask``, as a user calls the model."""
    return benchmark_inputs(model, batch, seq, pad=pad)


def plain_import(model: Any) -> Imported:
    """``optllm.compile(model, {"input_ids", "attention_mask"}, passes="O0")``: the import,
    unoptimized (by keyword: GPT-2's second parameter is ``past_key_values``)."""
    cm = optllm.compile(model, example_kwargs(model, *EXAMPLE), passes="O0")
    return Imported(cm.module, cm.signature)
_built: dict[str, Any] = {}


def _model(name: str) -> Any:
    """Each model is built once; only the latest one is kept alive."""
    if name not in _built:
        _built.clear()
        _built[name] = benchmark_model(name)
    return _built[name]


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}-{i}" for n, i in CASES])
def case(request: Any) -> Any:
    name, impl = request.param
    model = _model(name)
    set_attn_implementation(model, impl)
    yield Case(name, impl, model, plain_import(model))
    if request.param == CASES[-1]:
        _built.clear()


def _leaves(out: Any) -> dict[str, Any]:
    if isinstance(out, torch.Tensor):
        return {"output": out}
    if isinstance(out, dict):  # ModelOutput is an OrderedDict
        return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
    return {f"output[{i}]": v for i, v in enumerate(out) if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("batch,seq,pad", SHAPES, ids=[f"{b}x{s}" for b, s, _ in SHAPES])
def test_matches_torch_eager(case: Case, batch: int, seq: int, pad: int) -> None:
    set_attn_implementation(case.model, case.impl)
    kwargs = example_kwargs(case.model, batch, seq, pad=pad)
    with torch.no_grad():
        want = case.model(**kwargs)
    sig = case.imported.signature
    ours = run_module(case.imported.module, [t.numpy() for t in sig.flatten_inputs((), kwargs)])
    got = sig.pack_outputs([torch.from_numpy(a) for a in ours])
    assert type(got) is type(want)
    want_leaves, got_leaves = _leaves(want), _leaves(got)
    assert list(got_leaves) == list(want_leaves)
    for key, w in want_leaves.items():
        g, w = got_leaves[key].numpy(), w.numpy()
        assert g.shape == w.shape and g.dtype == w.dtype == np.float32
        err = np.abs(g.astype(np.float64) - w)
        big = np.abs(w) > 1e-3
        rel = (err[big] / np.abs(w[big])).max() if big.any() else 0.0
        used = (err / (ATOL + RTOL * np.abs(w))).max()
        print(f"{case.name}/{case.impl} {batch}x{seq} {key}: max abs {err.max():.2e}, "
              f"max rel (|ref|>1e-3) {rel:.2e}, tolerance used {used:.2f}")
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def test_ir_is_well_formed(case: Case) -> None:
    module = case.imported.module
    verify_module(module)
    text = print_module(module)
    assert print_module(parse_module(text)) == text
    stats = graph_stats(module.main)
    print(f"{case.name}/{case.impl}: {stats['nodes']} nodes, {stats['kernel_launches']} kernel launches, "
          f"{len(module.constants)} constants")


def test_dims_are_symbolic(case: Case) -> None:
    graph = case.imported.module.main
    assert [v.name_hint for v in graph.inputs] == case.imported.signature.input_names
    assert graph.inputs[0].name_hint == "input_ids"
    for v in graph.inputs:
        assert str(v.type) == "i64[B,S]"
    text = print_module(case.imported.module)
    assert "func @forward(%input_ids: i64[B,S]" in text
    assert "B*S" in text or case.name == "llama-tiny" or "[B,S," in text
    assert not any(f"s{i}" in str(v.type) for v in graph.outputs for i in range(100))


def test_locs_are_module_paths(case: Case) -> None:
    paths = {name for name, _ in case.model.named_modules()}
    locs = {op.loc for op in case.imported.module.main}
    assert locs - {""} <= paths, f"not module paths: {sorted(locs - paths)[:5]}"
    matmuls = {op.loc for op in case.imported.module.main if op.name == "core.matmul"}
    assert INNER_LOC[case.name] in matmuls
    attn = [op for op in case.imported.module.main if op.name in ("nn.attention", "nn.softmax")]
    assert attn and all(op.loc for op in attn)


def test_weights_are_shared_constants(case: Case) -> None:
    module = case.imported.module
    params = dict(case.model.named_parameters(remove_duplicate=False))
    used = module.used_constants()
    assert used <= set(module.constants.names())
    # every stored tensor is one of the model's parameters or buffers, stored once
    digests = {module.constants.digest(module.constants[n]) for n in module.constants.names()}
    assert len(digests) == len(module.constants)
    if case.name == "gpt2":  # tied input/output embeddings: one entry
        assert params["lm_head.weight"] is params["transformer.wte.weight"]
        names = [op.attrs["name"] for op in module.main if op.name == "core.weight"
                 and op.result.type.shape == (50257, 768)]
        assert len(set(names)) == 1


def test_default_pipeline_keeps_outputs_and_fuses(case: Case) -> None:
    """The `default` pipeline on a copy of the imported module: one nn.attention per layer, no
    softmax left, far fewer launches, and the same outputs as the unoptimized reference and
    as torch eager (rtol=atol=1e-5) at a shape other than the import's."""
    from optllm.passes import run_pipeline

    original = case.imported.module
    module = original.clone()
    report = run_pipeline(module, "default")
    assert not report.warnings, report.warnings
    before, after = graph_stats(original.main), graph_stats(module.main)
    ops = [op.name for op in module.main]
    layers = case.model.config.num_hidden_layers
    assert ops.count("nn.attention") == layers and "nn.softmax" not in ops
    assert after["kernel_launches"] <= 0.5 * before["kernel_launches"]
    print(f"{case.name}/{case.impl}: nodes {before['nodes']} -> {after['nodes']}, "
          f"launches {before['kernel_launches']} -> {after['kernel_launches']}")

    set_attn_implementation(case.model, case.impl)
    kwargs = example_kwargs(case.model, 3, 11, pad=3)
    inputs = [t.numpy() for t in case.imported.signature.flatten_inputs((), kwargs)]
    ref, opt = run_module(original, inputs), run_module(module, inputs)
    with torch.no_grad():
        want = _leaves(case.model(**kwargs))
    for key, r, o in zip(want, ref, opt):
        np.testing.assert_allclose(o, r, rtol=RTOL, atol=ATOL, err_msg=f"{key}: optimized vs unoptimized")
        np.testing.assert_allclose(o, want[key].numpy(), rtol=RTOL, atol=ATOL, err_msg=f"{key}: vs torch eager")


CPU_RTOL, CPU_ATOL = 1e-4, 1e-5


def test_cpu_target_matches_reference(case: Case) -> None:
    """The optimized module compiled for the cpu target vs the reference executor on the
    unoptimized import, within rtol 1e-4 (atol 1e-5): at a padded shape, and (sdpa imports) at
    an unpadded longer one. One CpuExecutable serves both shapes (one plan each)."""
    from optllm.backends.cpu import CpuExecutable

    set_attn_implementation(case.model, case.impl)
    exe = CpuExecutable(case.optimized())
    shapes = [(3, 11, 3)] + ([(1, 64, 0)] if case.impl == "sdpa" else [])
    for batch, seq, pad in shapes:
        kwargs = example_kwargs(case.model, batch, seq, pad=pad)
        inputs = [t.numpy() for t in case.imported.signature.flatten_inputs((), kwargs)]
        ref = run_module(case.imported.module, inputs)
        got = exe.run(inputs)
        for i, (g, r) in enumerate(zip(got, ref)):
            diff = np.abs(g.astype(np.float64) - r)
            norm_rel = float(np.linalg.norm(diff) / np.linalg.norm(r))
            print(f"{case.name}/{case.impl} {batch}x{seq} output {i}: max abs {diff.max():.2e}, "
                  f"norm-wise rel {norm_rel:.2e}")
            np.testing.assert_allclose(g, r, rtol=CPU_RTOL, atol=CPU_ATOL, err_msg=f"output {i}: cpu vs reference")
