"""PyTorch frontend: ``torch.export`` -> Core ATen -> optllm IR.

    imported = import_torch(model, {"input_ids": ids, "attention_mask": mask})
    imported.module        # graph @forward(%input_ids: i64[B,S], %attention_mask: i64[B,S])
    imported.signature     # how to call it like the torch model and rebuild its outputs

Steps: export with dynamic batch / sequence dims; ``run_decompositions`` to the Core ATen
opset, keeping a short list of ops whole (``PRESERVE``: attention, linear, layer norm,
softmax, GELU, SiLU, embedding); then one walk over the FX graph that lowers each node
through the table in ``fx_ops``. Parameters, buffers and lifted constants become
``core.weight`` ops over the module's constant table (identical tensors stored once);
shape arithmetic on SymInts is folded into symbolic dims (``B``, ``S``, ``B*S``) in
attributes, so no shape ops reach the graph. Each op's ``loc`` is the innermost module path
from ``nn_module_stack``. Every lowered value is checked against the type torch recorded
for the node, so a lowering bug fails here with the node's name, not later as bad numbers.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError, Imported, graph_builder, scalar_dense
from optllm.frontends.fx_example import cache_off, enlarge, enlarged_axes, fixed_dims, warn_fixed
from optllm.frontends.signature import Signature, tree_from_pytree
from optllm.ir import DType, TensorType, Value
from optllm.ir.diagnostics import OptllmError
from optllm.ir.symbolic import Dim, SymExpr, floordiv, mod, sym_max, sym_min

log = logging.getLogger(__name__)


# Ops kept whole through run_decompositions (attr names under torch.ops.aten).
PRESERVE = (
    "scaled_dot_product_attention.default", "linear.default", "matmul.default", "layer_norm.default",
    "softmax.int", "log_softmax.int", "gelu.default", "silu.default", "embedding.default",
)


# -- the public entry point ---------------------------------------------------------------------
def import_torch(model: Any, example_inputs: Any = (), *, kwargs: Mapping[str, Any] | None = None,
                 dynamic: Any = "auto", name: str | None = None) -> Imported:
    """Export ``model`` on the example inputs and lower it to an optllm ``Module``.

    ``example_inputs`` is a tuple of positional tensors or a dict of keyword tensors (more
    keyword tensors may come in ``kwargs``). ``dynamic="auto"`` makes dim 0 of every input
    the symbol ``B`` and dim 1 of rank >= 2 inputs ``S``, at any example size (1 included);
    ``None`` keeps every dim static; ``{input_name: {axis: "SYMBOL"}}`` is explicit. A dim
    that torch still makes static is reported with a ``UserWarning``.

    A ``transformers`` model whose forward takes ``use_cache`` is exported with
    ``use_cache=False`` unless the example sets it: optllm has no KV cache yet, so the
    compiled model returns the model's own output class (``.logits``) with its cache field
    ``None`` (see ``fx_example``).
    """
    args, kw = _split_inputs(example_inputs, kwargs)
    params = _forward_params(model)
    named = _name_inputs(params, args, kw)
    axes = _dynamic_axes(named, dynamic)
    extra = cache_off(params, named)
    kw, named = {**kw, **extra}, {**named, **extra}
    model_name = type(model).__name__
    positional = list(named)[:len(args)]
    dyn = _dynamic_shapes_spec(params, args, kw, axes)
    grown = enlarged_axes(named, axes)
    bound = ", ".join(f"{n}={_describe(a)}" for n, a in zip(positional, args))
    ep = None
    if grown:
        try:
            ep = _export(model, tuple(enlarge(n, a, grown) for n, a in zip(positional, args)),
                         {k: enlarge(k, v, grown) for k, v in kw.items()}, dyn, bound)
        except FrontendError as e:  # the model needs that dim to be 1: export it as given
            log.info("%s does not export on the enlarged example (%s); exporting it as given", model_name, e)
    user_names = _user_input_names(ep, named) if ep is not None else []
    if ep is None or any((n, ax) in grown for n, ax, _ in fixed_dims(ep, user_names, axes)):
        # torch fixed a dim we enlarged: at 2 it would refuse the user's own size, so export
        # on the user's example as it is (the dim is then fixed at the user's size).
        ep = _export(model, tuple(args), kw, dyn, bound)
        user_names = _user_input_names(ep, named)
    fixed = fixed_dims(ep, user_names, axes)
    warn_fixed(model_name, fixed, axes)
    ep = _decompose(ep, model_name)
    symbols = _symbol_map(ep, user_names, axes)
    from optllm.frontends.fx_lower import lower_program

    try:
        module = lower_program(ep, user_names, symbols, name or _default_name(model))
    except FrontendError as e:  # name the model: the lowering only knows ops and module paths
        raise FrontendError(f"importing {model_name}: {e}") from e
    statics = {k: v for k, v in named.items() if not _is_tensor(v) and _jsonable(v)}
    sig = Signature(user_names, tree_from_pytree(ep.call_spec.out_spec), params, statics)
    return Imported(module, sig)


def _describe(x: Any) -> str:
    return f"Tensor{list(x.shape)}" if _is_tensor(x) else repr(x)


def _export(model: Any, args: tuple[Any, ...], kw: dict[str, Any], dyn: Any, bound: str = "") -> Any:
    """``torch.export.export`` in eval mode without gradients; failures become ``FrontendError``
    (naming how the positional example inputs bound to the forward's parameters: GPT-2's
    second parameter is ``past_key_values``, not ``attention_mask``)."""
    import torch

    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch's own export internals trip this deprecation (not the user's code)
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            return torch.export.export(model, args, kw, dynamic_shapes=dyn, strict=False)
    except OptllmError:
        raise
    except Exception as e:
        where = f" (positional example inputs bound as {bound})" if bound else ""
        if "Cache" in str(e) and "in output" in str(e):  # a forward without a use_cache parameter still made one
            where += " (the model returns a KV cache, which optllm does not compile yet: set " \
                     "model.config.use_cache = False)"
        raise FrontendError(f"torch.export failed on {type(model).__name__}{where}: {_first_line(e)}") from e
    finally:
        if was_training:
            model.train()


def _decompose(ep: Any, model_name: str) -> Any:
    """The exported program in Core ATen, keeping the ``PRESERVE`` ops whole."""
    import torch

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            return ep.run_decompositions(_decomposition_table())
    except Exception as e:
        raise FrontendError(f"decomposing the export of {model_name} to Core ATen failed: {_first_line(e)}") from e


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


# -- inputs and dynamic dims ------------------------------------------------------------------
def _is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _jsonable(x: Any) -> bool:
    return x is None or isinstance(x, (bool, int, float, str))


def _split_inputs(example_inputs: Any, kwargs: Mapping[str, Any] | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    kw = dict(kwargs or {})
    if isinstance(example_inputs, Mapping):
        return (), {**dict(example_inputs), **kw}
    if _is_tensor(example_inputs):
        return (example_inputs,), kw
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), kw
    raise FrontendError(f"example_inputs must be a tuple of tensors or a dict of named tensors, "
                        f"got {type(example_inputs).__name__}")


def _forward_params(model: Any) -> list[str]:
    fn = getattr(model, "forward", model)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in sig.parameters.values() if p.kind in kinds]


def _name_inputs(params: list[str], args: tuple[Any, ...], kw: dict[str, Any]) -> dict[str, Any]:
    """Every example argument by name (positional ones by the forward's parameter names)."""
    if len(args) > len(params):  # forward(*args): name the extra ones
        params = params + [f"input_{i}" for i in range(len(params), len(args))]
    named = dict(zip(params, args))
    for k, v in kw.items():
        if k in named:
            raise FrontendError(f"example input '{k}' given both positionally and by keyword")
        named[k] = v
    for k, v in named.items():
        if not _is_tensor(v) and not _jsonable(v):
            raise FrontendError(f"example input '{k}' is a {type(v).__name__}; only tensors and "
                                "plain Python constants are supported (no nested inputs)")
    return named


def _dynamic_axes(named: dict[str, Any], dynamic: Any) -> dict[str, dict[int, str]]:
    """{input name: {axis: symbol}} for the dims that should stay dynamic."""
    tensors = {k: v for k, v in named.items() if _is_tensor(v)}
    if dynamic is None or dynamic is False:
        return {}
    if dynamic == "auto":
        out: dict[str, dict[int, str]] = {}
        for k, v in tensors.items():
            axes = {0: "B"} if v.dim() >= 1 else {}
            if v.dim() >= 2:
                axes[1] = "S"
            out[k] = axes
        return out
    if not isinstance(dynamic, Mapping):
        raise FrontendError(f"dynamic must be 'auto', None or {{input: {{axis: 'SYMBOL'}}}}, got {dynamic!r}")
    out = {}
    for k, axes in dynamic.items():
        if k not in tensors:
            raise FrontendError(f"dynamic names input '{k}', but the tensor inputs are {', '.join(tensors)}")
        rank = tensors[k].dim()
        fixed: dict[int, str] = {}
        for ax, sym in dict(axes).items():
            if not -rank <= int(ax) < rank:
                raise FrontendError(f"dynamic axis {ax} is out of range for input '{k}' of rank {rank}")
            SymExpr.symbol(str(sym))  # validates the name
            fixed[int(ax) % rank] = str(sym)
        out[k] = fixed
    return out


def _dynamic_shapes_spec(params: list[str], args: tuple[Any, ...], kw: dict[str, Any],
                         axes: dict[str, dict[int, str]]) -> Any:
    if not axes:
        return None
    from torch.export import Dim

    def spec(name: str, value: Any) -> Any:
        if not _is_tensor(value):
            return None
        return {ax: Dim.AUTO for ax in axes.get(name, {})} or None

    names = params if len(params) >= len(args) else [f"input_{i}" for i in range(len(args))]
    if args and kw:
        return {**{names[i]: spec(names[i], a) for i, a in enumerate(args)},
                **{k: spec(k, v) for k, v in kw.items()}}
    if args:
        return tuple(spec(names[i], a) for i, a in enumerate(args))
    return {k: spec(k, v) for k, v in kw.items()}


def _decomposition_table() -> Any:
    import torch
    from torch.export import default_decompositions

    table = default_decompositions()
    for attr in PRESERVE:
        packet, overload = attr.split(".")
        table.pop(getattr(getattr(torch.ops.aten, packet), overload), None)
    return table


def _user_input_names(ep: Any, named: dict[str, Any]) -> list[str]:
    """The graph input names: the user's argument names, in the export's order."""
    from torch.export.graph_signature import InputKind, TensorArgument

    specs = [s for s in ep.graph_signature.input_specs
             if s.kind == InputKind.USER_INPUT and isinstance(s.arg, TensorArgument)]
    tensor_names = [k for k, v in named.items() if _is_tensor(v)]
    if len(specs) != len(tensor_names):
        raise FrontendError(f"the export has {len(specs)} tensor inputs, expected {len(tensor_names)} "
                            f"({', '.join(tensor_names)})")
    return tensor_names


def _symbol_map(ep: Any, user_names: list[str], axes: dict[str, dict[int, str]]) -> dict[str, str]:
    """torch's symbol names (``s43``) -> readable ones (``B``), from the input placeholders."""
    from torch.export.graph_signature import InputKind, TensorArgument

    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    specs = [s for s in ep.graph_signature.input_specs
             if s.kind == InputKind.USER_INPUT and isinstance(s.arg, TensorArgument)]
    out: dict[str, str] = {}
    for name, spec in zip(user_names, specs):
        shape = placeholders[spec.arg.name].meta["val"].shape
        for ax, want in axes.get(name, {}).items():
            d = shape[ax]
            expr = getattr(getattr(d, "node", None), "expr", None)
            if expr is None:
                log.info("torch specialised %s dim %d to %s; it stays static", name, ax, int(d))
                continue
            if not getattr(expr, "is_Symbol", False):
                log.info("%s dim %d is %s in torch, not a plain symbol; it is not renamed", name, ax, expr)
                continue
            prev = out.setdefault(str(expr), want)
            if prev != want:
                log.info("%s dim %d is the same torch symbol as %s; keeping the name %s", name, ax, want, prev)
    return out


def _default_name(model: Any) -> str:
    raw = type(model).__name__
    return "".join(c if c.isalnum() or c == "_" else "_" for c in raw) or "main"


# -- conversion helpers shared with fx_ops ---------------------------------------------------------
_DTYPES: dict[str, DType] = {
    "torch.float32": DType.f32, "torch.float16": DType.f16, "torch.bfloat16": DType.bf16,
    "torch.float64": DType.f64, "torch.int64": DType.i64, "torch.int32": DType.i32,
    "torch.int16": DType.i16, "torch.int8": DType.i8, "torch.uint8": DType.u8, "torch.bool": DType.bool,
}


def dtype_of(torch_dtype: Any) -> DType:
    try:
        return _DTYPES[str(torch_dtype)]
    except KeyError:
        raise FrontendError(f"element type {torch_dtype} has no optllm equivalent") from None


def torch_dtype(dtype: DType) -> Any:
    import torch

    return getattr(torch, {v: k for k, v in _DTYPES.items()}[dtype].split(".")[1])


def tensor_to_numpy(t: Any) -> np.ndarray:
    """A read-only numpy array over ``t``'s memory: no copy for a contiguous CPU tensor, so an
    imported model's weights stay where the user's parameters are (the array keeps the tensor
    alive). bf16 is viewed through int16 as ``ml_dtypes.bfloat16``. Read-only, because passes
    that fold constants must make new arrays, never write into the user's parameters."""
    import torch

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()  # a private copy: only contiguous memory has a numpy view
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        arr = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    else:
        arr = t.numpy()
    arr.flags.writeable = False
    return arr


class SymbolConverter:
    """sympy expressions from torch's shape environment -> optllm ``Dim``."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.cache: dict[Any, Dim] = {}

    def __call__(self, expr: Any) -> Dim:
        if expr not in self.cache:
            self.cache[expr] = self._convert(expr)
        return self.cache[expr]

    def _convert(self, e: Any) -> Dim:
        import sympy

        if e.is_Integer:
            return int(e)
        if e.is_Symbol:
            name = self.names.get(str(e))
            if name is None:
                raise FrontendError(f"dimension {e} is not tied to an input dim (data-dependent shapes "
                                    "are not supported)")
            return SymExpr.symbol(name)
        args = [self(a) for a in e.args]
        fn = type(e).__name__
        if isinstance(e, sympy.Add):
            return _fold(args, lambda a, b: a + b)
        if isinstance(e, sympy.Mul):
            return _fold(args, lambda a, b: a * b)
        if isinstance(e, sympy.Pow) and isinstance(args[1], int) and args[1] >= 1:
            return _fold([args[0]] * args[1], lambda a, b: a * b)
        if fn in ("FloorDiv", "CleanDiv", "IntTrueDiv") and len(args) == 2:
            return floordiv(args[0], args[1])
        if fn in ("Mod", "PythonMod") and len(args) == 2:
            return mod(args[0], args[1])
        if fn == "Max":
            return _fold(args, sym_max)
        if fn == "Min":
            return _fold(args, sym_min)
        raise FrontendError(f"cannot express the symbolic dimension {e} ({fn})")


def _fold(args: list[Dim], fn: Any) -> Dim:
    out = args[0]
    for a in args[1:]:
        out = fn(out, a)
    return out


# FrontendError, Imported, graph_builder and scalar_dense live in frontends.common; re-exported here.
__all__ = ["FrontendError", "Imported", "PRESERVE", "Signature", "TensorType", "Value", "graph_builder",
           "import_torch", "scalar_dense"]
