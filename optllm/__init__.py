"""optllm: a compiler-style graph optimizer for transformer / LLM inference.

    import optllm
    cm = optllm.compile(model, example_inputs, target="reference", passes="default")
    y = cm(*inputs)
    cm.save("out/"); cm2 = optllm.load("out/")

Nothing heavy is imported here: torch, onnx and numpy-heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from optllm.compiler import CompiledModel


def compile(model: Any, example_inputs: Any = (), *, target: str = "reference", passes: str = "default",
            **options: Any) -> CompiledModel:
    """Import ``model``, run the pass pipeline ``passes`` and build it for ``target``.

    See ``optllm.compiler.compile`` for the options.
    """
    from optllm.compiler import compile as _compile

    return _compile(model, example_inputs, target=target, passes=passes, **options)


def load(path: str) -> CompiledModel:
    """Load a model saved with ``CompiledModel.save``."""
    from optllm.compiler import load as _load

    return _load(path)


def load_plugin(path_or_module: str) -> list[str]:
    """Load a pass plugin from a ``.py`` file or an importable module; returns the new pass names."""
    from optllm.passes.registry import load_plugin as _load_plugin

    return _load_plugin(path_or_module)


__all__ = ["__version__", "compile", "load", "load_plugin"]
