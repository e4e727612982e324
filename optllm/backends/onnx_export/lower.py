"""Lowering a whole graph: names for every value, one lowering per op, outputs by name."""

from __future__ import annotations

from collections.abc import Sequence

from optllm.backends.onnx_export.context import Emitter, ExportError
from optllm.backends.onnx_export.core import LOWERINGS
from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation


def check_lowerable(module: Module) -> None:
    """Fail before writing anything when an op (nested ones included) has no ONNX lowering."""
    import optllm.backends.onnx_export.indexing  # noqa: F401  (registers the gather/index/scatter lowerings)
    import optllm.backends.onnx_export.nn  # noqa: F401  (registers the nn and fused lowerings)

    for op in module.walk():
        if op.name != "core.weight" and op.name not in LOWERINGS:
            raise ExportError("no ONNX lowering for this op", op)


def lower_graph(e: Emitter, graph: Graph, in_names: Sequence[str], out_names: Sequence[str]) -> None:
    """Emit ``graph`` into ``e``: its inputs are ``in_names``, its outputs land in ``out_names``."""
    for v, name in zip(graph.inputs, in_names):
        e.names[id(v)] = name
        e.bind_input(name, v.type)
    wanted: dict[int, str] = {}
    for v, name in zip(graph.outputs, out_names):
        if id(v) not in e.names and id(v) not in wanted:
            wanted[id(v)] = name  # the producing op writes the output name directly
    for op in graph:
        _lower_op(e, op, wanted)
    for v, name in zip(graph.outputs, out_names):
        if e.names[id(v)] != name:  # an input or a value returned twice
            e.one("Identity", [e.names[id(v)]], name)


def _lower_op(e: Emitter, op: Operation, wanted: dict[int, str]) -> None:
    outs = [wanted.get(id(r)) or e.fresh("v") for r in op.results]
    for r, name in zip(op.results, outs):
        e.names[id(r)] = name
    if op.name == "core.weight":
        name = op.attrs["name"]
        tensor = e.const(e.functions.weight(name), name=name)
        if id(op.result) in wanted:
            e.one("Identity", [tensor], outs[0])
        else:
            e.names[id(op.result)] = tensor
        return
    e.loc = op.loc or op.name
    try:
        LOWERINGS[op.name](e, op, [e.names[id(v)] for v in op.operands], outs)
    except ExportError as err:
        if err.op is None:
            raise ExportError(str(err), op) from None
        raise
