"""The example inputs a model is exported on, as a user has them, made fit for torch.export.

Two things a user's plain example does that torch.export cannot take as they are:

* **A KV cache.** ``transformers`` causal LMs default to ``use_cache=True`` and return a
  ``DynamicCache``, which torch.export refuses as an output. Until optllm runs generation
  with a KV cache, the export passes ``use_cache=False`` (when the forward takes that
  argument and the user did not set it): the compiled model returns the model's own output
  class with its cache field ``None``. ``cache_off`` decides this.
* **Size-1 dims.** torch.export specialises every dim whose example size is 0 or 1 (its
  "0/1 specialisation"), so an example at batch 1 would fix ``B=1``. torch's
  ``backed_size_oblivious`` switch avoids that, but then the ``S > 1`` test in the
  attention code of every HF causal LM becomes a symbolic bool that SDPA refuses at a
  sequence length of 1. So the export runs on an enlarged copy instead
  (``enlarged_example``): a dim meant to be dynamic whose example size is 1, in every input
  that shares its symbol, is made 2 by repeating the row. The copy holds the user's own
  values, only repeated, so the traced code path is the one the user's example takes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from optllm.frontends.common import FrontendError

CACHE_ARG = "use_cache"


def cache_off(params: list[str], named: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments to add so the export returns no KV cache (``{}`` or ``{use_cache: False}``).

    Raises:
        FrontendError: the user's example asks for the cache (``use_cache=True``).
    """
    if CACHE_ARG in named:
        if named[CACHE_ARG]:
            raise FrontendError("the example passes use_cache=True, but optllm compiles no KV cache yet; "
                                "leave use_cache out (the cache outputs are then dropped) or pass use_cache=False")
        return {}
    return {CACHE_ARG: False} if CACHE_ARG in params else {}


def _symbol_sizes(named: Mapping[str, Any], axes: Mapping[str, Mapping[int, str]]) -> dict[str, set[int]]:
    sizes: dict[str, set[int]] = {}
    for name, by_axis in axes.items():
        for ax, sym in by_axis.items():
            sizes.setdefault(sym, set()).add(int(named[name].shape[ax]))
    return sizes


def enlarged_axes(named: Mapping[str, Any], axes: Mapping[str, Mapping[int, str]]) -> set[tuple[str, int]]:
    """The ``(input, axis)`` pairs to double: dynamic axes whose symbol is 1 in every input."""
    ones = {sym for sym, sizes in _symbol_sizes(named, axes).items() if sizes == {1}}
    return {(name, ax) for name, by_axis in axes.items() for ax, sym in by_axis.items() if sym in ones}


def enlarge(name: str, value: Any, which: set[tuple[str, int]]) -> Any:
    """``value`` with every axis of ``which`` that belongs to ``name`` repeated to size 2."""
    import torch

    for input_name, ax in sorted(which):
        if input_name == name:
            value = torch.cat([value, value], dim=ax)
    return value


def fixed_dims(ep: Any, user_names: list[str], axes: Mapping[str, Mapping[int, str]]) -> list[tuple[str, int, int]]:
    """``(input, axis, size)`` for each axis meant to be dynamic that the export made static."""
    from torch.export.graph_signature import InputKind, TensorArgument

    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    specs = [s for s in ep.graph_signature.input_specs
             if s.kind == InputKind.USER_INPUT and isinstance(s.arg, TensorArgument)]
    out = []
    for name, spec in zip(user_names, specs):
        shape = placeholders[spec.arg.name].meta["val"].shape
        for ax in axes.get(name, {}):
            expr = getattr(getattr(shape[ax], "node", None), "expr", None)
            if expr is None or expr.is_number:  # a plain int, or a SymInt torch pinned to a number
                out.append((name, ax, int(shape[ax])))
    return out


def warn_fixed(model_name: str, fixed: list[tuple[str, int, int]], axes: Mapping[str, Mapping[int, str]]) -> None:
    """Tell the user (a ``UserWarning``) which dims torch fixed: calls at other sizes are refused."""
    for name, ax, size in fixed:
        warnings.warn(f"torch.export fixed {model_name} input '{name}' axis {ax} ({axes[name][ax]}) to {size}: "
                      f"the compiled model accepts only size {size} there (the model's code makes that dim "
                      f"static; pass dynamic= to choose the symbolic dims)", UserWarning, stacklevel=4)
