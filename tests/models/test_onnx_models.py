"""The four built-in models exported with ``torch.onnx.export`` (the graph-reduction
benchmark's recipe: legacy exporter, opset 17, dynamic B and S), imported by the ONNX
frontend once each, and run by the reference executor at two batch/sequence sizes: outputs
equal onnxruntime's on the same file within rtol=atol=1e-5. The default pipeline on the
imported graph keeps them (node counts are recorded as test properties), and so does the
optimized graph exported back to ONNX and run by onnxruntime (the round trip).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optllm.backends.reference import run_module
from optllm.frontends.onnx import import_onnx
from optllm.frontends.zoo import example_kwargs, export_onnx, load_model
from optllm.ir.graph import Module, graph_stats
from optllm.passes import run_pipeline

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = ATOL = 1e-5
MODELS = ["minilm", "llama-tiny", "gpt2", "bert-base"]  # the cheap ones first
SHAPES = [(2, 16, 0), (3, 11, 3)]  # batch, sequence, padded positions in the last row


@dataclass
class Imported:
    name: str
    path: Path
    module: Module
    input_names: list[str]
    feeds: dict[tuple[int, int], dict[str, np.ndarray]]
    session: Any
    times: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module", params=MODELS)
def imported(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    name = request.param
    t0 = time.perf_counter()
    model = load_model(name, attn_implementation="eager")[0]
    path = tmp_path_factory.mktemp(name) / f"{name}.onnx"
    export_onnx(model, example_kwargs(model, 2, 16), path)
    t1 = time.perf_counter()
    imp = import_onnx(path)
    t2 = time.perf_counter()
    feeds = {(b, s): {k: v.numpy() for k, v in example_kwargs(model, b, s, pad=pad).items()} for b, s, pad in SHAPES}
    del model
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    yield Imported(name, path, imp.module, imp.signature.input_names, feeds, session,
                   {"export_s": t1 - t0, "import_s": t2 - t1})


def _check(module: Module, imp: Imported, batch: int, seq: int) -> float:
    feeds = imp.feeds[(batch, seq)]
    got = run_module(module, [feeds[n] for n in imp.input_names])
    want = imp.session.run(None, {i.name: feeds[i.name] for i in imp.session.get_inputs()})
    assert len(got) == len(want)
    worst = 0.0
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
        worst = max(worst, float(np.max(np.abs(g - w))))
    return worst


@pytest.mark.parametrize("batch,seq", [(b, s) for b, s, _ in SHAPES], ids=[f"{b}x{s}" for b, s, _ in SHAPES])
def test_import_matches_onnxruntime(imported: Imported, batch: int, seq: int, record_property: Any) -> None:
    g = imported.module.main
    assert [str(v.type.shape[:2]) for v in g.inputs] == ["(B, S)"] * len(g.inputs) or all(
        v.type.rank == 2 for v in g.inputs)
    record_property("max_abs_err", _check(imported.module, imported, batch, seq))
    record_property("times", imported.times)


def test_no_shape_ops_reach_the_ir(imported: Imported) -> None:
    proto = onnx.load(str(imported.path), load_external_data=False)
    assert "Shape" in {n.op_type for n in proto.graph.node}
    # shape arithmetic is folded to attributes: no shape tensor is assembled in the IR
    shape_tensors = [op for op in imported.module.main
                     if op.name == "core.concat" and op.result.type.rank == 1 and not op.result.type.dtype.is_float]
    assert not shape_tensors


def test_default_pipeline_keeps_outputs(imported: Imported, record_property: Any) -> None:
    module = imported.module.clone()
    before = graph_stats(module.main)["nodes"]
    run_pipeline(module, "default")
    after = graph_stats(module.main)["nodes"]
    onnx_nodes = len(onnx.load(str(imported.path), load_external_data=False).graph.node)
    record_property("nodes", {"onnx": onnx_nodes, "imported": before, "default": after})
    for b, s, _ in SHAPES:
        _check(module, imported, b, s)
    assert after <= before

    # ONNX -> IR -> (default pipeline) -> ONNX: onnxruntime gives the same outputs on both files
    from optllm.backends.onnx_export import export_onnx as export_ir

    again = ort.InferenceSession(str(export_ir(module, imported.path.parent / "round_trip.onnx")),
                                 providers=["CPUExecutionProvider"])
    for b, s, _ in SHAPES:
        feeds = imported.feeds[(b, s)]
        want = imported.session.run(None, {i.name: feeds[i.name] for i in imported.session.get_inputs()})
        got = again.run(None, {i.name: feeds[i.name] for i in again.get_inputs()})
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
