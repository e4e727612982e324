"""The reference executor: an op-by-op numpy interpreter, the oracle for every other path.

Shaped like ``torch.fx.Interpreter``: ``run`` binds the graph's symbolic dims from the input
shapes, then ``run_op`` evaluates each op through its declaration's numpy ``reference``.
Any failure is re-raised as ``ExecutionError`` "while executing <op>" with its source loc.
Each result is checked against its declared type, so a wrong reference or a wrong type
inference cannot pass silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optllm.ir.diagnostics import IRError
from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation
from optllm.ir.printer import print_op
from optllm.ir.symbolic import SymExpr, evaluate
from optllm.ir.types import TensorType
from optllm.ir.values import Value

log = logging.getLogger(__name__)


class ExecutionError(IRError):
    """A failure while running a graph; names the op and its loc."""


class InputError(ExecutionError):
    """Inputs that do not fit the graph's signature (count, dtype, shape)."""


def bind_symbols(graph: Graph, inputs: Sequence[np.ndarray]) -> dict[str, int]:
    """Bind each symbolic dim of the graph inputs from the actual shapes; check the rest."""
    if len(inputs) != len(graph.inputs):
        raise InputError(f"@{graph.name} takes {len(graph.inputs)} inputs "
                         f"({', '.join(_arg_desc(v) for v in graph.inputs)}), got {len(inputs)}")
    env: dict[str, int] = {}
    for v, x in zip(graph.inputs, inputs):
        t = v.type
        if x.ndim != t.rank:
            raise InputError(f"input {_arg_desc(v)} expects rank {t.rank}, got shape {list(x.shape)}")
        if np.dtype(x.dtype) != t.dtype.to_numpy():
            raise InputError(f"input {_arg_desc(v)} expects element type {t.dtype}, got {x.dtype}")
        for d, n in zip(t.shape, x.shape):
            if isinstance(d, SymExpr) and d.is_symbol():
                name = next(iter(d.symbols()))
                if n < 1:  # shape arithmetic assumes every symbol is a size >= 1
                    raise InputError(f"input {_arg_desc(v)}: dynamic dim {name} must be at least 1, got {n}")
                if env.setdefault(name, int(n)) != n:
                    raise InputError(f"input {_arg_desc(v)}: dim {name} is {env[name]} elsewhere, got {n}")
    for v, x in zip(graph.inputs, inputs):
        for d, n in zip(v.type.shape, x.shape):
            try:
                want = evaluate(d, env)
            except KeyError:
                raise InputError(f"input {_arg_desc(v)}: dim {d} cannot be bound from the inputs") from None
            if want != n:
                raise InputError(f"input {_arg_desc(v)} expects shape {list(v.type.concrete_shape(env))}, "
                                 f"got {list(x.shape)}")
    return env


def _arg_desc(v: Value) -> str:
    return f"%{v.name_hint or 'arg' + str(v.index)}: {v.type}"


class Interpreter:
    """Runs a ``Module``'s graphs op by op with numpy."""

    def __init__(self, module: Module, check_types: bool = True) -> None:
        self.module = module
        self.check_types = check_types

    def run(self, inputs: Sequence[Any], graph: Graph | None = None) -> list[np.ndarray]:
        g = graph or self.module.main
        arrays = [np.asarray(x) for x in inputs]
        env = bind_symbols(g, arrays)
        return self.run_graph(g, arrays, env)

    def run_graph(self, graph: Graph, inputs: Sequence[np.ndarray], env: Mapping[str, int]) -> list[np.ndarray]:
        values: dict[int, np.ndarray] = {id(v): x for v, x in zip(graph.inputs, inputs)}
        remaining = _last_uses(graph)
        for op in graph:
            args = [values[id(v)] for v in op.operands]
            outs = self.run_op(op, args, env)
            for r, x in zip(op.results, outs):
                values[id(r)] = x
            for v in remaining.get(id(op), ()):  # free what no later op reads
                values.pop(id(v), None)
        return [values[id(v)] for v in graph.outputs]

    def run_op(self, op: Operation, args: list[np.ndarray], env: Mapping[str, int]) -> list[np.ndarray]:
        try:
            if op.name == "core.weight":
                outs = [self.module.constants[op.attrs["name"]]]
            elif op.regions:
                outs = self.run_graph(op.regions[0], args, env)
            else:
                outs = op.opdef.reference(args, op.attrs, env)
        except ExecutionError:
            raise
        except Exception as e:  # any numpy / reference failure, re-raised with the op
            raise ExecutionError(f"{type(e).__name__}: {e}\n  while executing {print_op(op)}") from e
        if len(outs) != len(op.results):
            raise ExecutionError(f"reference returned {len(outs)} results, expected {len(op.results)}\n"
                                 f"  while executing {print_op(op)}")
        if self.check_types:
            for r, x in zip(op.results, outs):
                _check_result(op, r.type, x, env)
        return outs


def _check_result(op: Operation, t: TensorType, x: np.ndarray, env: Mapping[str, int]) -> None:
    want = t.concrete_shape(dict(env))
    if tuple(x.shape) != want or x.dtype != t.dtype.to_numpy():
        raise ExecutionError(f"result {x.dtype}{list(x.shape)} does not match its type {t} = "
                             f"{t.dtype}{list(want)}\n  while executing {print_op(op)}")


def _last_uses(graph: Graph) -> dict[int, list[Value]]:
    """For each op, the values whose last reader it is (graph outputs are never freed)."""
    last: dict[int, Operation] = {}
    for op in graph:
        for v in op.operands:
            last[id(v)] = op
    outputs = {id(v) for v in graph.outputs}
    out: dict[int, list[Value]] = {}
    for op in graph:
        for v in op.operands:
            if last.get(id(v)) is op and id(v) not in outputs:
                out.setdefault(id(op), []).append(v)
                last.pop(id(v))
    return out


def run_module(module: Module, inputs: Sequence[Any]) -> list[np.ndarray]:
    """Run ``module.main`` on numpy inputs with the reference executor."""
    return Interpreter(module).run(inputs)
