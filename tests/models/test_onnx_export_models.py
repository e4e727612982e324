"""The four built-in models, imported from PyTorch, optimized with the default pipeline and
exported to ONNX: onnxruntime runs each file at two batch/sequence sizes (the dims really are
dynamic) and its outputs equal the reference executor's within rtol=atol=1e-5.

Each model is built, imported, optimized and exported once (module-scoped fixture).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optllm.backends.onnx_export import export_onnx
from optllm.backends.reference import run_module
from optllm.frontends.fx import import_torch
from optllm.frontends.zoo import BUILTIN, example_kwargs, load_model
from optllm.ir.graph import Module, graph_stats
from optllm.passes import run_pipeline

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = ATOL = 1e-5
SHAPES = [(2, 16, 0), (3, 11, 3)]  # batch, sequence, padded positions in the last row


@dataclass
class Exported:
    name: str
    module: Module
    inputs: dict[tuple[int, int], list[np.ndarray]]
    path: Path
    session: Any


@pytest.fixture(scope="module", params=BUILTIN)
def exported(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    name = request.param
    model = load_model(name)[0]
    imported = import_torch(model, example_kwargs(model, 2, 16))
    run_pipeline(imported.module, "default")
    sig = imported.signature
    inputs = {(b, s): [t.numpy() for t in sig.flatten_inputs((), example_kwargs(model, b, s, pad=pad))]
              for b, s, pad in SHAPES}
    del model
    path = export_onnx(imported.module, tmp_path_factory.mktemp(name) / f"{name}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    yield Exported(name, imported.module, inputs, path, session)


@pytest.mark.parametrize("batch,seq", [(b, s) for b, s, _ in SHAPES], ids=[f"{b}x{s}" for b, s, _ in SHAPES])
def test_onnxruntime_matches_reference(exported: Exported, batch: int, seq: int) -> None:
    ins = exported.inputs[(batch, seq)]
    want = run_module(exported.module, ins)
    got = exported.session.run(None, {i.name: x for i, x in zip(exported.session.get_inputs(), ins)})
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        print(f"{exported.name} {batch}x{seq} output{i}: max abs {np.abs(g - w).max():.2e}")
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def test_file_is_standard_onnx(exported: Exported) -> None:
    onnx.checker.check_model(str(exported.path), full_check=True)
    model = onnx.load(str(exported.path), load_external_data=False)
    assert exported.path.with_suffix(".data").exists()
    assert all(n.domain in ("", "optllm") for n in model.graph.node)
    assert all(n.domain == "" for f in model.functions for n in f.node)
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["B", "S"]
    attention = [n for n in model.graph.node if n.op_type.startswith("attention_")]
    assert len(attention) == sum(op.name == "nn.attention" for op in exported.module.main)
    fn_nodes = sum(len(f.node) for f in model.functions)
    print(f"{exported.name}: IR {graph_stats(exported.module.main)['nodes']} nodes -> ONNX {len(model.graph.node)} "
          f"nodes + {len(model.functions)} functions ({fn_nodes} nodes in their bodies)")


def test_round_trip_through_the_onnx_importer(exported: Exported, tmp_path: Path) -> None:
    """ONNX -> IR -> ONNX: the re-exported file runs like the first one (MiniLM)."""
    if exported.name != "minilm":
        pytest.skip("round trip checked on MiniLM")
    frontend = pytest.importorskip("optllm.frontends.onnx")
    again = frontend.import_onnx(exported.path)
    run_pipeline(again.module, "default")
    path = export_onnx(again.module, tmp_path / "again.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for ins in exported.inputs.values():
        first = exported.session.run(None, {i.name: x for i, x in zip(exported.session.get_inputs(), ins)})
        second = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), ins)})
        for a, b in zip(first, second):
            np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)
