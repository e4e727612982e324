"""Export an optllm module to standard ONNX.

    export_onnx(module, "model.onnx")   # model.onnx (+ model.data for weights over the threshold)

Every ``core``/``nn`` op becomes standard ONNX ops; symbolic dims become ``dim_param`` names
on the graph inputs and shape subgraphs (``Shape``/``Concat``) inside it; fused ops become
local functions in the ``optllm`` domain whose body is their decomposition (``core``,
``nn``, ``lower`` hold the lowerings). The file passes ``onnx.checker.check_model(full_check=
True)`` and is written atomically: temporary files renamed only on success.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from optllm.backends.onnx_export.context import DOMAIN, Emitter, ExportError, Functions, onnx_dtype
from optllm.backends.onnx_export.lower import check_lowerable, lower_graph
from optllm.ir.graph import Module
from optllm.ir.symbolic import SymExpr
from optllm.ir.types import TensorType

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

MIN_OPSET = 17
DEFAULT_EXTERNAL_THRESHOLD = 1024  # bytes; like onnx.save_model's size_threshold
_ALIGN = 64

__all__ = ["ExportError", "build_model", "export_onnx"]


def _value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    from onnx import helper

    dims: list[int | str | None] = []
    for d in t.shape:
        if isinstance(d, int):
            dims.append(d)
        else:
            dims.append(str(d) if isinstance(d, SymExpr) and d.is_symbol() else None)
    return helper.make_tensor_value_info(name, onnx_dtype(t.dtype), dims)


def _unique_input_names(module: Module) -> list[str]:
    names: list[str] = []
    for i, v in enumerate(module.main.inputs):
        base = v.name_hint or f"input{i}"
        name = base
        while name in names:
            name = f"{base}_{i}"
        names.append(name)
    return names


def build_model(module: Module, opset: int = MIN_OPSET) -> onnx.ModelProto:
    """The ONNX model of ``module.main`` with every tensor inline (no external data yet)."""
    from onnx import helper

    from optllm import __version__

    if opset < MIN_OPSET:
        raise ExportError(f"ONNX export needs opset {MIN_OPSET} or newer (LayerNormalization), got {opset}")
    check_lowerable(module)
    graph = module.main
    functions = Functions(opset, lambda name: module.constants[name])
    e = Emitter(functions, initializers=True)
    in_names = _unique_input_names(module)
    out_names = [f"output{i}" for i in range(len(graph.outputs))]
    lower_graph(e, graph, in_names, out_names)
    g = helper.make_graph(
        e.nodes, graph.name or "main",
        [_value_info(n, v.type) for n, v in zip(in_names, graph.inputs)],
        [_value_info(n, v.type) for n, v in zip(out_names, graph.outputs)],
        initializer=e.initializers)
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
        functions=functions.protos, producer_name="optllm", producer_version=__version__)
    model.ir_version = min(model.ir_version, 10)  # onnxruntime 1.2x reads IR version 10
    return model


def _externalize(model: onnx.ModelProto, data_name: str, threshold: int) -> bytes:
    """Move the raw data of initializers over ``threshold`` bytes out; returns the data blob."""
    from onnx import TensorProto

    chunks: list[bytes] = []
    offset = 0
    for t in model.graph.initializer:
        if not t.HasField("raw_data") or len(t.raw_data) < threshold:
            continue
        raw = t.raw_data
        pad = (-offset) % _ALIGN
        if pad:
            chunks.append(b"\0" * pad)
            offset += pad
        chunks.append(raw)
        del t.external_data[:]
        for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
        offset += len(raw)
    return b"".join(chunks)


def export_onnx(module: Module, path: str | os.PathLike[str], *, opset: int = MIN_OPSET,
                external_data_threshold: int = DEFAULT_EXTERNAL_THRESHOLD) -> Path:
    """Write ``module`` as ONNX to ``path`` (and ``<stem>.data`` for initializers of at least
    ``external_data_threshold`` bytes); checks the model with ``onnx.checker`` (full check).

    Raises:
        ExportError: an op without an ONNX lowering (named with its loc), an opset below 17,
            or a model the ONNX checker rejects. Nothing is written then.
    """
    path = Path(path)
    model = build_model(module, opset)
    data_path = path.with_suffix(".data")
    blob = _externalize(model, data_path.name, external_data_threshold)
    _write_checked(path, model.SerializeToString(), data_path if blob else None, blob, module.main.name)
    log.info("exported @%s to %s (%d nodes, %d functions)", module.main.name, path, len(model.graph.node),
             len(model.functions))
    return path


def _write_checked(path: Path, model_bytes: bytes, data_path: Path | None, blob: bytes, name: str) -> None:
    """Write both files under their final names into a temporary folder beside ``path``, run
    the full ONNX check there (it reads the external data), then rename them into place."""
    import shutil

    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staged = [(tmpdir / path.name, path, model_bytes)]
        if data_path is not None:
            staged.insert(0, (tmpdir / data_path.name, data_path, blob))
        for tmp, _, data in staged:
            tmp.write_bytes(data)
            os.chmod(tmp, 0o644)
        try:
            onnx.checker.check_model(str(tmpdir / path.name), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
            raise ExportError(f"the exported model of @{name} fails onnx.checker: {err}") from None
        for tmp, target, _ in staged:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
