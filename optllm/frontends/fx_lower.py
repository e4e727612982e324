"""The walk over an exported FX graph that builds the IR (the per-op rules are in ``fx_ops``).

``Lowering`` keeps the map from FX nodes to what they became: an IR ``Value``, a list of
them (multi-output ops), a ``Dim`` (SymInt arithmetic, folded), or a plain Python value.
Handlers in ``fx_ops`` receive the lowered arguments and this object as ``cx``, which offers
the few helpers they share: the type torch recorded for the node, dtype promotion, casts,
scalar constants and the builder.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optllm.frontends.fx import FrontendError, SymbolConverter, dtype_of, graph_builder, scalar_dense, tensor_to_numpy
from optllm.ir import BuildError, Dense, DType, Module, Operation, TensorType, Value, get_opdef
from optllm.ir.symbolic import Dim, SymExpr

log = logging.getLogger(__name__)

# Keyword arguments that say where a tensor lives, never what it holds.
SPILL_BYTES = 1 << 20
"""Weights passes derive from an imported model's (which stay in the user's memory) and that are
at least this large live in mapped files (``ConstantTable.spill_bytes``)."""
IGNORED_KWARGS = frozenset({"layout", "device", "pin_memory", "memory_format", "non_blocking", "requires_grad"})


@dataclass
class _Lazy:
    """A parameter, buffer or lifted constant, emitted as an op at its first use."""

    target: str
    tensor: Any
    is_parameter: bool


def target_key(target: Any) -> str:
    """``aten.add.Tensor`` for ATen overloads, ``getitem`` / ``mul`` for Python builtins."""
    if isinstance(target, str):
        return target
    name = getattr(target, "__name__", "")
    if getattr(target, "__module__", None) in ("_operator", "operator"):
        return name
    text = str(target)
    return text if "." in text and " " not in text else f"{getattr(target, '__module__', '?')}.{name}"


def node_loc(node: Any) -> str:
    """The innermost module path of ``node`` (``transformer.h.0.attn.c_attn``); '' at the root."""
    stack = node.meta.get("nn_module_stack") or {}
    for key, value in reversed(list(stack.items())):
        if key.startswith("_empty_nn_module_stack"):
            continue
        return str(value[0])
    return ""


class Lowering:
    """One FX graph -> one ``Module`` with graph ``forward``."""

    def __init__(self, ep: Any, user_names: list[str], symbols: dict[str, str], module_name: str) -> None:
        from optllm.frontends.fx_ops import TABLE

        self.ep = ep
        self.table = TABLE
        self.user_names = user_names
        self.module, self.graph, self.b = graph_builder(module_name)
        self.sym = SymbolConverter(symbols)
        self.env: dict[Any, Any] = {}
        self.node: Any = None

    # -- driver -----------------------------------------------------------------------------------
    def run(self) -> Module:
        self.check_supported()
        self.bind_placeholders()
        for node in self.ep.graph.nodes:
            if node.op == "call_function":
                self.env[node] = self.lower_node(node)
            elif node.op == "output":
                self.set_outputs(node)
            elif node.op != "placeholder":
                raise FrontendError(f"unexpected FX node kind {node.op!r} ({node.format_node()})")
        return self.module

    def is_shape_node(self, node: Any) -> bool:
        import torch

        val = node.meta.get("val")
        return isinstance(val, (torch.SymInt, torch.SymBool, torch.SymFloat)) or (
            isinstance(val, (int, bool)) and not target_key(node.target).startswith("aten."))

    def check_supported(self) -> None:
        """One error listing every op without a lowering, with the module paths using it."""
        missing: dict[str, list[str]] = {}
        for node in self.ep.graph.nodes:
            if node.op != "call_function" or self.is_shape_node(node):
                continue
            key = target_key(node.target)
            if key not in self.table:
                paths = missing.setdefault(key, [])
                loc = node_loc(node) or "<root>"
                if loc not in paths:
                    paths.append(loc)
        if not missing:
            return
        lines = [f"  {op}  at {', '.join(paths[:6])}{' ...' if len(paths) > 6 else ''}"
                 for op, paths in sorted(missing.items())]
        raise FrontendError(f"{len(missing)} unsupported op{'s' if len(missing) > 1 else ''} in the exported "
                            "graph (op, then the module paths using it):\n" + "\n".join(lines))

    def bind_placeholders(self) -> None:
        from torch.export.graph_signature import InputKind, TensorArgument

        placeholders = [n for n in self.ep.graph.nodes if n.op == "placeholder"]
        names = iter(self.user_names)
        for node, spec in zip(placeholders, self.ep.graph_signature.input_specs):
            if spec.kind == InputKind.USER_INPUT:
                if isinstance(spec.arg, TensorArgument):
                    self.env[node] = self.graph.add_input(self.tensor_type(node.meta["val"]), next(names))
                else:
                    self.env[node] = getattr(spec.arg, "value", None)
                continue
            if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
                raise FrontendError(f"unsupported graph input kind {spec.kind.name} ({spec.arg})")
            tensor = self.ep.state_dict.get(spec.target)
            if tensor is None:
                tensor = self.ep.constants[spec.target]
            self.env[node] = _Lazy(spec.target, tensor, spec.kind == InputKind.PARAMETER)

    def set_outputs(self, node: Any) -> None:
        from torch.export.graph_signature import OutputKind

        specs = self.ep.graph_signature.output_specs
        outs = []
        for arg, spec in zip(node.args[0], specs):
            if spec.kind != OutputKind.USER_OUTPUT:
                raise FrontendError(f"the model mutates state ({spec.kind.name} {spec.target}); "
                                    "only pure inference graphs can be imported")
            v = self.value_of(arg) if hasattr(arg, "op") else arg
            if not isinstance(v, Value):
                raise FrontendError(f"output {arg} is not a tensor ({v!r}); only tensor outputs are supported")
            outs.append(v)
        self.graph.set_outputs(outs)

    # -- one node -------------------------------------------------------------------------------------
    def lower_node(self, node: Any) -> Any:
        import torch
        from torch.fx.node import map_arg

        if self.is_shape_node(node):
            val = node.meta["val"]
            return self.dim(val) if isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool) else None
        self.node = node
        self.b.loc = node_loc(node)
        handler = self.table[target_key(node.target)]
        args = map_arg(node.args, self.value_of)
        kwargs = {k: map_arg(v, self.value_of) for k, v in node.kwargs.items() if k not in IGNORED_KWARGS}
        try:
            out = handler(self, *args, **kwargs)
        except FrontendError as e:
            raise FrontendError(f"{e}\n  while lowering {node.format_node()}{self.where()}") from None
        except (BuildError, TypeError, ValueError, IndexError, KeyError) as e:
            raise FrontendError(f"cannot lower {node.format_node()}{self.where()}: "
                                f"{type(e).__name__}: {e}") from e
        self.check(node, out)
        return out

    def where(self) -> str:
        loc = node_loc(self.node) if self.node is not None else ""
        return f' at loc("{loc}")' if loc else ""

    def value_of(self, node: Any) -> Any:
        v = self.env[node]
        if isinstance(v, _Lazy):
            v = self.env[node] = self.materialize(v)
        return v

    def materialize(self, lazy: _Lazy) -> Value:
        arr = tensor_to_numpy(lazy.tensor)
        owner = lazy.target.rpartition(".")[0]
        if not lazy.is_parameter and arr.size <= 1:
            return self.b.op("core.constant", value=Dense.from_array(arr), loc=owner)
        # Identical tensors are stored once; each parameter still gets its own op (and loc),
        # which CSE merges when a pipeline wants that.
        table = self.module.constants
        # the weights are views of the user's parameters (tensor_to_numpy): weights derived
        # from them later (folds, merged projections) go to mapped files, not the heap
        table.spill_bytes = SPILL_BYTES
        stored = table.add(arr, lazy.target)
        ttype = TensorType(tuple(int(d) for d in arr.shape), DType.from_numpy(arr.dtype))
        return self.b.create("core.weight", [], {"name": stored}, loc=owner, result_types=[ttype]).result

    def check(self, node: Any, out: Any) -> None:
        """The lowered value must have exactly the type torch recorded for the node."""
        import torch

        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            self._check_one(node, out, val)
        elif isinstance(val, (tuple, list)) and isinstance(out, (tuple, list)):
            for o, v in zip(out, val):
                if isinstance(v, torch.Tensor) and o is not None:
                    self._check_one(node, o, v)

    def _check_one(self, node: Any, out: Any, val: Any) -> None:
        want = self.tensor_type(val)
        if not isinstance(out, Value) or out.type != want:
            got = out.type if isinstance(out, Value) else repr(out)
            raise FrontendError(f"internal error: {node.format_node()}{self.where()} lowered to {got}, "
                                f"but torch says {want}")

    # -- helpers for handlers --------------------------------------------------------------------------
    def dim(self, x: Any) -> Dim:
        import torch

        if isinstance(x, SymExpr):
            return x
        if isinstance(x, torch.SymInt):
            return self.sym(x.node.expr)
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            return int(x)
        raise FrontendError(f"expected a dimension, got {x!r}")

    def tensor_type(self, val: Any) -> TensorType:
        return TensorType(tuple(self.dim(d) for d in val.shape), dtype_of(val.dtype))

    def out_type(self, index: int | None = None) -> TensorType:
        val = self.node.meta["val"]
        return self.tensor_type(val if index is None else val[index])

    def out_dtype(self) -> DType:
        return self.out_type().dtype

    def out_shape(self) -> tuple[Dim, ...]:
        return self.out_type().shape

    def op(self, name: str, *operands: Value, **attrs: Any) -> Value:
        return self.b.op(name, *operands, **attrs)

    def create(self, name: str, operands: Sequence[Value], attrs: dict[str, Any] | None = None) -> Operation:
        return self.b.create(name, operands, attrs or {})

    def infer(self, name: str, operands: Sequence[Value], attrs: dict[str, Any]) -> list[TensorType]:
        """The result types ``name`` would have, without building it."""
        opdef = get_opdef(name)
        return opdef.infer([v.type for v in operands], opdef.check_attrs(attrs))

    def cast(self, v: Value, dtype: DType) -> Value:
        return v if v.type.dtype == dtype else self.op("core.cast", v, dtype=dtype)

    def tensor(self, x: Any, dtype: DType) -> Value:
        """``x`` (a value, a Python scalar or a symbolic int) as a tensor of ``dtype``."""
        if isinstance(x, Value):
            return self.cast(x, dtype)
        if isinstance(x, SymExpr):  # a symbolic scalar: the one element of arange(x, x+1)
            one = self.op("core.arange", start=x, end=x + 1, dtype=DType.i64)
            return self.cast(self.op("core.reshape", one, shape=[]), dtype)
        if isinstance(x, (bool, int, float, np.number)):
            return self.op("core.constant", value=scalar_dense(x, dtype))
        raise FrontendError(f"expected a tensor or a number, got {x!r}")

    def promote(self, *xs: Any) -> DType:
        """torch's result dtype for an elementwise op over ``xs`` (tensors, 0-d tensors, numbers)."""
        import torch

        from optllm.frontends.fx import torch_dtype

        groups: list[list[Any]] = [[], [], []]
        for x in xs:
            if isinstance(x, Value):
                groups[0 if x.type.rank else 1].append(torch_dtype(x.type.dtype))
            elif isinstance(x, bool):
                groups[2].append(torch.bool)
            elif isinstance(x, (int, SymExpr)):
                groups[2].append(torch.int64)
            elif isinstance(x, float):
                groups[2].append(torch.get_default_dtype())
        result = None
        for group in groups:
            if not group:
                continue
            g = functools.reduce(torch.promote_types, group)
            if result is None or _category(g) > _category(result):
                result = g
        if result is None:
            raise FrontendError("no operand to take an element type from")
        return dtype_of(result)


def _category(dt: Any) -> int:
    import torch

    if dt == torch.bool:
        return 0
    return 2 if (dt.is_floating_point or dt.is_complex) else 1


def lower_program(ep: Any, user_names: list[str], symbols: dict[str, str], module_name: str) -> Module:
    """Lower an ``ExportedProgram`` (already decomposed) to a ``Module``."""
    return Lowering(ep, user_names, symbols, module_name).run()


__all__ = ["Lowering", "lower_program", "node_loc", "target_key"]
