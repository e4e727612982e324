"""``optllm.compile``: frontend -> pass pipeline -> backend, as one callable ``CompiledModel``.

    cm = optllm.compile(model, {"input_ids": ids, "attention_mask": mask}, target="reference")
    out = cm(input_ids=ids, attention_mask=mask)     # same convention and output type as model
    out.logits; cm.stats["nodes"]; cm.module         # HF outputs keep their fields
    cm.save("out/"); cm2 = optllm.load("out/")

A ``transformers`` model is compiled with its default config: a causal LM (``use_cache=True``
by default) is exported without its KV cache, so its output keeps its class and ``.logits``
with ``past_key_values=None`` until optllm runs generation with a KV cache.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from optllm.backends import Executable, Target, build, resolve_target
from optllm.ir.diagnostics import OptllmError
from optllm.ir.graph import Module, graph_stats
from optllm.ir.io import atomic_write, load_module, save_module
from optllm.ir.verifier import verify_module

log = logging.getLogger(__name__)

MODEL_FILE = "model.oir"
META_FILE = "optllm.json"


class CompileError(OptllmError):
    """A model ``compile`` cannot take, or a saved model ``load`` cannot read."""


class CompiledModel:
    """An optimized model bound to a target, callable like the original model.

    Attributes:
        module: the optimized IR.
        target: the ``Target`` it was built for.
        signature: the input names and output structure of the source model (None for IR input).
        stats: ``{"nodes": {"before", "after"}, "kernel_launches": {...}, "passes": [...],
            "pipeline": str, "seconds": {"import", "passes", "build"}}``.
    """

    def __init__(self, module: Module, target: Target, signature: Any, stats: dict[str, Any]) -> None:
        self.module = module
        self.target = target
        self.signature = signature
        self.stats = stats
        self._exe: Executable = build(module, target)

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.signature is None:
            if kwargs:
                raise CompileError("a model compiled from IR takes positional inputs only")
            outs = self._exe.run([np.asarray(a) for a in args])
            return outs[0] if len(outs) == 1 else outs
        flat = self.signature.flatten_inputs(args, kwargs)
        torch_in = any(type(x).__module__.startswith("torch") for x in flat)
        arrays = [_to_numpy(x) for x in flat]
        outs = self._exe.run(arrays)
        if torch_in:
            import torch

            return self.signature.pack_outputs([torch.from_numpy(np.ascontiguousarray(o)) for o in outs])
        return self.signature.pack_outputs(outs)

    def run_numpy(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run on numpy arrays in graph-input order; returns the flat outputs."""
        return self._exe.run(inputs)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.oir``, ``model.safetensors`` and ``optllm.json`` into the folder ``path``."""
        from optllm import __version__

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        save_module(self.module, folder / MODEL_FILE)
        meta = {
            "optllm_version": __version__,
            "target": self.target.name,
            "signature": self.signature.to_json() if self.signature is not None else None,
            "stats": self.stats,
        }
        atomic_write(folder / META_FILE, json.dumps(meta, indent=2, default=str) + "\n")
        return folder

    def export_onnx(self, path: str | os.PathLike[str], *, opset: int = 17) -> Path:
        """Write the optimized module as standard ONNX (fused ops as ``optllm`` local functions,
        large weights in ``<stem>.data`` beside it); see ``optllm.backends.onnx_export``."""
        from optllm.backends.onnx_export import export_onnx

        return export_onnx(self.module, path, opset=opset)

    def __repr__(self) -> str:
        n = self.stats.get("nodes", {})
        return (f"CompiledModel(target={self.target.name!r}, nodes {n.get('before')} -> {n.get('after')}, "
                f"pipeline={self.stats.get('pipeline')!r})")


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _import(model: Any, example_inputs: Any, kwargs: dict[str, Any] | None, dynamic: Any) -> tuple[Module, Any]:
    """Pick the frontend for ``model``: an IR module, an ``.oir`` or ``.onnx`` path, or a torch module."""
    if isinstance(model, Module):
        return model, None
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if p.suffix == ".oir":
            return load_module(p), None
        if p.suffix == ".onnx":
            from optllm.frontends.onnx import import_onnx

            onnx_imported = import_onnx(p)  # inputs by ONNX input name, outputs a dict by output name
            return onnx_imported.module, onnx_imported.signature
        raise CompileError(f"cannot compile '{p}': expected a .oir or .onnx file, a torch.nn.Module or an "
                           "optllm Module")
    try:
        import torch
    except ImportError:
        raise CompileError("compiling a PyTorch model needs torch (pip install 'optllm[torch]')") from None
    if not isinstance(model, torch.nn.Module):
        raise CompileError(f"cannot compile a {type(model).__name__}: expected a torch.nn.Module, "
                           "an optllm Module or a path to a .oir file")
    from optllm.frontends.fx import import_torch

    imported = import_torch(model, example_inputs, kwargs=kwargs, dynamic=dynamic)
    return imported.module, imported.signature


def compile(model: Any, example_inputs: Any = (), *, kwargs: dict[str, Any] | None = None,
            target: str = "reference", passes: str = "default", dynamic: Any = "auto",
            verify: bool = True) -> CompiledModel:
    """Import ``model``, optimize it with the pipeline ``passes`` and build it for ``target``.

    Args:
        model: a ``torch.nn.Module`` (imported through torch.export), an optllm ``Module``, a
            path to a ``.oir`` file or to an ``.onnx`` model (called with inputs by ONNX input
            name, returning a dict by ONNX output name).
        example_inputs: a tuple of positional tensors or a dict of keyword tensors (torch
            models), as the model's own forward takes them: ``(input_ids,)``,
            ``(input_ids, attention_mask)``, ``{"input_ids": ..., "token_type_ids": ...}``.
            Every input given here is required at call time; one not given here is refused.
        kwargs: more keyword tensors, beside positional ``example_inputs``.
        target: one of ``optllm.backends.TARGETS``; unknown or unimplemented targets raise.
        passes: a pipeline in text form (``"dce,cse"``) or a named one (``default``, ``O0``).
        dynamic: ``"auto"`` (batch and sequence dims symbolic at any example size, 1 included),
            ``None`` (static) or an explicit ``{input: {axis: "SYMBOL"}}`` mapping. A dim torch
            still fixes is reported with a ``UserWarning``.
        verify: verify the IR after import and after every pass.
    """
    from optllm.passes import run_pipeline

    tgt = resolve_target(target)  # fail on a bad target before the slow import
    t0 = time.perf_counter()
    module, signature = _import(model, example_inputs, kwargs, dynamic)
    if verify:
        verify_module(module)
    t1 = time.perf_counter()
    before = graph_stats(module.main)
    report = run_pipeline(module, passes, verify=verify).to_dict()
    t2 = time.perf_counter()
    after = graph_stats(module.main)
    stats = {
        "pipeline": report.get("pipeline", passes),
        "nodes": {"before": before["nodes"], "after": after["nodes"]},
        "kernel_launches": {"before": before["kernel_launches"], "after": after["kernel_launches"]},
        "passes": report.get("passes", []),
        "seconds": {"import": t1 - t0, "passes": t2 - t1},
    }
    cm = CompiledModel(module, tgt, signature, stats)
    stats["seconds"]["build"] = time.perf_counter() - t2
    log.info("compiled for %s: nodes %d -> %d", tgt.name, before["nodes"], after["nodes"])
    return cm


def load(path: str | os.PathLike[str]) -> CompiledModel:
    """Load a folder written by ``CompiledModel.save``."""
    folder = Path(path)
    meta_path = folder / META_FILE
    if not meta_path.exists():
        raise CompileError(f"'{folder}' is not a saved optllm model: {META_FILE} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise CompileError(f"'{meta_path}' is corrupt: {e}") from None
    module = load_module(folder / MODEL_FILE)
    verify_module(module)
    signature = None
    if meta.get("signature") is not None:
        from optllm.frontends.signature import Signature

        signature = Signature.from_json(meta["signature"])
    return CompiledModel(module, resolve_target(meta.get("target", "reference")), signature, meta.get("stats", {}))
