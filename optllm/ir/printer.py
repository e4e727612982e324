"""The ``.oir`` text form. ``parse_module(print_module(m))`` rebuilds ``m`` and prints identically.

    module @tiny weights("tiny.safetensors") {
      func @forward(%x: f32[B,S,64]) -> (f32[B,S,64]) {
        %0 = core.weight {name = "w"} : f32[64,64] loc("proj")
        %1 = core.matmul %x, %0 : f32[B,S,64] loc("proj")
        return %1
      }
    }

Op results are numbered ``%0, %1, ...`` per graph; arguments keep their names; attributes
equal to their declared default are omitted; a region body follows the result types.
"""

from __future__ import annotations

import re

from optllm.ir.attributes import AttrSpec, coerce, format_attr
from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation
from optllm.ir.values import Value

_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _quote(s: str) -> str:
    return format_attr(s)


class _Namer:
    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.counter = 0
        self.used: set[str] = set()

    def arg(self, v: Value, index: int) -> str:
        hint = v.name_hint if _ARG_NAME.match(v.name_hint or "") else ""
        name = hint or f"arg{index}"
        base, n = name, 1
        while name in self.used:
            name = f"{base}_{n}"
            n += 1
        self.used.add(name)
        self.names[id(v)] = name
        return name

    def result(self, v: Value) -> str:
        name = str(self.counter)
        self.counter += 1
        self.names[id(v)] = name
        return name

    def __getitem__(self, v: Value) -> str:
        try:
            return self.names[id(v)]
        except KeyError:
            return "<<undefined>>"


def _default_text(key: str, spec: AttrSpec) -> str:
    return format_attr(coerce(key, spec, spec.default))


def _print_attrs(op: Operation) -> str:
    items = []
    for key, value in op.attrs.items():
        spec = op.opdef.attrs.get(key)
        # Compare texts, not values: -0.0 == 0.0 and 1 == True, but they print (and are) different.
        if spec is not None and spec.default is not None and format_attr(value) == _default_text(key, spec):
            continue
        items.append(f"{key} = {format_attr(value)}")
    return " {" + ", ".join(items) + "}" if items else ""


def _print_op(op: Operation, namer: _Namer, indent: str, out: list[str]) -> None:
    lhs = ", ".join(f"%{namer.result(r)}" for r in op.results)
    operands = ", ".join(f"%{namer[v]}" for v in op.operands)
    line = indent + (f"{lhs} = " if lhs else "") + op.name
    if operands:
        line += " " + operands
    line += _print_attrs(op)
    if op.results:
        line += " : " + ", ".join(str(r.type) for r in op.results)
    if not op.regions:
        out.append(line + (f' loc({_quote(op.loc)})' if op.loc else ""))
        return
    for region in op.regions:
        out.append(line + " {")
        _print_region(region, indent + "  ", out)
        line = indent + "}"
    out.append(line + (f' loc({_quote(op.loc)})' if op.loc else ""))


def _print_body(graph: Graph, namer: _Namer, indent: str, out: list[str]) -> None:
    for op in graph:
        _print_op(op, namer, indent, out)
    ret = ", ".join(f"%{namer[v]}" for v in graph.outputs)
    out.append(indent + ("return " + ret if ret else "return"))


def _print_region(region: Graph, indent: str, out: list[str]) -> None:
    namer = _Namer()
    args = ", ".join(f"%{namer.arg(v, i)}: {v.type}" for i, v in enumerate(region.inputs))
    out.append(f"{indent}^({args}):")
    _print_body(region, namer, indent, out)


def print_graph(graph: Graph, indent: str = "  ") -> str:
    out: list[str] = []
    namer = _Namer()
    args = ", ".join(f"%{namer.arg(v, i)}: {v.type}" for i, v in enumerate(graph.inputs))
    results = ", ".join(str(v.type) for v in graph.outputs)
    out.append(f"{indent}func @{graph.name}({args}) -> ({results}) {{")
    _print_body(graph, namer, indent + "  ", out)
    out.append(indent + "}")
    return "\n".join(out)


def print_module(module: Module) -> str:
    head = f"module @{module.name}"
    if module.weights_file:
        head += f" weights({_quote(module.weights_file)})"
    parts = [head + " {"]
    for g in module.graphs.values():
        parts.append(print_graph(g))
    parts.append("}")
    return "\n".join(parts) + "\n"


def _graph_namer(graph: Graph, stop: Operation) -> _Namer:
    """The names the printer gives ``graph``'s values up to (not including) ``stop``."""
    namer = _Namer()
    for i, v in enumerate(graph.inputs):
        namer.arg(v, i)
    for other in graph:
        if other is stop:
            break
        for r in other.results:
            namer.result(r)
    return namer


def print_op(op: Operation) -> str:
    """One op as it prints inside its graph (operand and result names as in the module's
    text), for messages; operands not defined before it show as %?."""
    out: list[str] = []
    namer = _graph_namer(op.parent, op) if op.parent is not None else _Namer()
    for v in op.operands:
        namer.names.setdefault(id(v), "?")
    _print_op(op, namer, "", out)
    return "\n".join(out)


def print_op_line(op: Operation) -> str:
    """The first line of ``print_op``: the op itself, without a region body (for messages)."""
    return print_op(op).strip().splitlines()[0]
