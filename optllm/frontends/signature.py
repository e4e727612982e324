"""The calling convention of an imported model: named inputs in, structured outputs out.

The IR graph takes a flat list of tensors and returns a flat list. ``Signature`` maps the
source model's own convention (positional and keyword arguments; a tensor, tuple, dict or a
transformers ``ModelOutput``) onto that list and back, and is JSON-able so a saved model
keeps it::

    sig.flatten_inputs((ids,), {"attention_mask": mask})   # -> [ids, mask]
    out = sig.pack_outputs([logits])                       # -> CausalLMOutput(logits=...)

Output trees are nested dicts: ``{"kind": "tensor"}``, ``{"kind": "none"}``,
``{"kind": "tuple" | "list", "items": [...]}``, ``{"kind": "dict", "keys": [...],
"items": [...]}`` and ``{"kind": "class", "class": "pkg.mod.Name", "keys": [...],
"items": [...]}`` for keyword-constructed containers such as ``ModelOutput``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from optllm.ir.diagnostics import OptllmError


class SignatureError(OptllmError):
    """Inputs that do not fit the imported model's signature, or an unrebuildable output."""


TENSOR: dict[str, Any] = {"kind": "tensor"}


@dataclass
class Signature:
    """Input names (graph order) and the output structure of an imported model.

    ``params`` are the source ``forward``'s parameter names in order (for binding positional
    arguments); ``static`` are non-tensor example arguments that the export baked in.
    """

    input_names: list[str]
    output_tree: dict[str, Any] = field(default_factory=lambda: dict(TENSOR))
    params: list[str] = field(default_factory=list)
    static: dict[str, Any] = field(default_factory=dict)

    # -- inputs ---------------------------------------------------------------------------
    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Name every argument: positional ones by ``params`` (or ``input_names``)."""
        order = self.params or self.input_names
        if len(args) > len(order):
            raise SignatureError(f"the model takes at most {len(order)} positional inputs "
                                 f"({', '.join(order)}), got {len(args)}")
        bound = dict(zip(order, args))
        for key, value in kwargs.items():
            if key in bound:
                raise SignatureError(f"input '{key}' given both positionally and by keyword")
            bound[key] = value
        return bound

    def flatten_inputs(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> list[Any]:
        """The graph's input list from the model's own calling convention."""
        bound = self.bind(tuple(args), dict(kwargs or {}))
        missing = [n for n in self.input_names if bound.get(n) is None]
        extra = [n for n, v in bound.items()
                 if n not in self.input_names and v is not None and n not in self.static]
        changed = [n for n in self.static if n in bound and bound[n] != self.static[n]]
        problems = []
        if changed:
            problems.append(", ".join(f"'{n}' was fixed to {self.static[n]!r} at import" for n in changed))
        if missing:  # every input of the compile-time example is required
            problems.append(f"missing input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                            "(given in the example at compile time, so required)")
        if extra:  # the graph was traced without it: its value would be ignored, so refuse it
            problems.append(f"unexpected input{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} "
                            "(not in the example at compile time; compile with it in the example to pass it)")
        if problems:
            raise SignatureError(f"{' and '.join(problems)}: the imported model takes "
                                 f"({', '.join(self.input_names)})")
        return [bound[n] for n in self.input_names]

    # -- outputs ------------------------------------------------------------------------------
    def num_outputs(self) -> int:
        return _count_leaves(self.output_tree)

    def pack_outputs(self, tensors: Sequence[Any]) -> Any:
        """Rebuild the model's output structure from the graph's flat output list."""
        want = self.num_outputs()
        if len(tensors) != want:
            raise SignatureError(f"the output structure holds {want} tensors, got {len(tensors)}")
        it = iter(tensors)
        return _build(self.output_tree, it)

    # -- serialisation ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"input_names": list(self.input_names), "output_tree": self.output_tree,
                "params": list(self.params), "static": dict(self.static)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Signature:
        try:
            return Signature(list(d["input_names"]), d.get("output_tree", dict(TENSOR)),
                             list(d.get("params", [])), dict(d.get("static", {})))
        except (KeyError, TypeError) as e:
            raise SignatureError(f"malformed signature: {e}") from None


def _count_leaves(tree: dict[str, Any]) -> int:
    kind = tree["kind"]
    if kind == "tensor":
        return 1
    if kind == "none":
        return 0
    return sum(_count_leaves(t) for t in tree["items"])


def _build(tree: dict[str, Any], it: Any) -> Any:
    kind = tree["kind"]
    if kind == "tensor":
        return next(it)
    if kind == "none":
        return None
    items = [_build(t, it) for t in tree["items"]]
    if kind == "tuple":
        return tuple(items)
    if kind == "list":
        return items
    if kind == "dict":
        return dict(zip(tree["keys"], items))
    if kind == "class":
        return _import_class(tree["class"])(**dict(zip(tree["keys"], items)))
    raise SignatureError(f"unknown output kind {kind!r}")


def _import_class(path: str) -> Any:
    mod_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(mod_name), name)
    except (ImportError, AttributeError) as e:
        raise SignatureError(f"cannot rebuild the output class {path}: {e}") from None


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def tree_from_pytree(spec: Any) -> dict[str, Any]:
    """Convert a ``torch.utils._pytree.TreeSpec`` (the export's output spec) to JSON."""
    if spec.is_leaf():
        return dict(TENSOR)
    typ = spec.type
    children = [tree_from_pytree(c) for c in spec.children()]
    if typ is type(None):
        return {"kind": "none"}
    if typ is tuple:
        return {"kind": "tuple", "items": children}
    if typ is list:
        return {"kind": "list", "items": children}
    if typ is dict:
        return {"kind": "dict", "keys": [str(k) for k in spec.context], "items": children}
    keys = spec.context
    named = keys if isinstance(keys, type) else typ  # pytree files namedtuples under their class
    if isinstance(named, type) and issubclass(named, tuple) and hasattr(named, "_fields"):
        return {"kind": "class", "class": class_path(named), "keys": list(named._fields), "items": children}
    if isinstance(keys, (list, tuple)) and all(isinstance(k, str) for k in keys) and len(keys) == len(children):
        return {"kind": "class", "class": class_path(typ), "keys": list(keys), "items": children}
    raise SignatureError(f"cannot describe an output of type {typ.__name__} (context {keys!r})")
