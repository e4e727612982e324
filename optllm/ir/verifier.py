"""The IR verifier: dominance, use-lists, arity, attribute schema, types, constants.

Every message names the op (its printed form) and its ``loc``. The pass manager runs this
after every pass unless verification is switched off.
"""

from __future__ import annotations

from optllm.ir.attributes import AttrError
from optllm.ir.diagnostics import TypeInferenceError, VerifyError
from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation
from optllm.ir.printer import print_op_line
from optllm.ir.values import Value


def _fail(op: Operation, msg: str, where: str) -> VerifyError:
    return VerifyError(f"{msg}\n  in: {print_op_line(op)}", op, where)


def _check_uses(graph: Graph, op: Operation, where: str) -> None:
    for i, v in enumerate(op.operands):
        if not any(u.op is op and u.index == i for u in v.uses):
            raise _fail(op, f"use-list of operand #{i} does not record this op", where)
    for r in op.results:
        if r.owner is not op:
            raise _fail(op, f"result #{r.index} does not point back at its op", where)
        problem = _use_problem(r)
        if problem:
            raise _fail(op, f"result #{r.index} {problem}", where)


def _use_problem(v: Value) -> str:
    """What is wrong with ``v``'s use-list (stale, erased or repeated uses), or ""."""
    seen: set[tuple[int, int]] = set()
    for u in v.uses:
        if u.index >= len(u.op.operands) or u.op.operands[u.index] is not v:
            return f"lists a stale use by '{u.op.name}'"
        if u.op.parent is None:
            return f"is used by an erased '{u.op.name}'"
        if (id(u.op), u.index) in seen:
            return f"lists its use by '{u.op.name}' twice"
        seen.add((id(u.op), u.index))
    return ""


def _check_op(op: Operation, defined: set[int], graph: Graph, module: Module | None, where: str) -> None:
    od = op.opdef
    lo, hi = od.arity()
    n = len(op.operands)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
        raise _fail(op, f"expects {want} operands, got {n}", where)
    for i, v in enumerate(op.operands):
        if id(v) not in defined:
            if v.arg_of is not None and v.arg_of is not graph:
                raise _fail(op, f"operand #{i} is an argument of another graph (regions are isolated)", where)
            if v.owner is not None and v.owner.parent not in (None, graph):
                raise _fail(op, f"operand #{i} is defined in another graph (regions are isolated)", where)
            raise _fail(op, f"operand #{i} does not dominate its use (defined later or erased)", where)
    try:
        canon = od.check_attrs(op.attrs)
    except AttrError as e:
        raise _fail(op, str(e), where) from None
    if canon != op.attrs:
        raise _fail(op, "attributes are not in canonical form (build ops through the builder)", where)
    if od.has_region != bool(op.regions):
        raise _fail(op, "must have a region" if od.has_region else "must not have a region", where)
    declared = [r.type for r in op.results]
    try:
        inferred = declared if od.declared_types else od.infer([v.type for v in op.operands], op.attrs)
    except (TypeInferenceError, ValueError) as e:  # ValueError: a type with a negative dim
        raise _fail(op, str(e), where) from None
    if inferred != declared:
        raise _fail(op, f"result types ({', '.join(map(str, declared))}) differ from the inferred "
                        f"({', '.join(map(str, inferred))})", where)
    if op.name == "core.weight" and module is not None:
        name = op.attrs["name"]
        if name not in module.constants:
            raise _fail(op, f"constant '{name}' is missing from the weights", where)
        if module.constants.type_of(name) != declared[0]:
            raise _fail(op, f"constant '{name}' has type {module.constants.type_of(name)}, "
                            f"not {declared[0]}", where)
    od.verify(op)


def verify_graph(graph: Graph, module: Module | None = None, bound: set[str] | None = None) -> None:
    """Raise ``VerifyError`` on the first broken invariant of ``graph`` (regions included).

    ``bound``: the symbolic dims the arguments bind (a function's own; a region's from above).
    """
    where = f"@{graph.name}"
    defined = {id(v) for v in graph.inputs}
    if bound is None:
        bound = set().union(*(v.type.symbols() for v in graph.inputs))
    for i, v in enumerate(graph.inputs):
        problem = _use_problem(v)
        if problem:
            raise VerifyError(f"argument #{i} {problem}", None, where)
    count = 0
    prev = None
    for op in graph:
        if op.parent is not graph or op.prev is not prev:
            raise _fail(op, "op list links are corrupt", where)
        prev = op
        count += 1
        _check_op(op, defined, graph, module, where)
        _check_uses(graph, op, where)
        for r in op.results:
            free = r.type.symbols() - bound
            if free:
                raise _fail(op, f"result #{r.index} type {r.type} uses {', '.join(sorted(free))}, which no "
                                f"argument binds", where)
        for region in op.regions:
            if region.parent_op is not op:
                raise _fail(op, "region does not point back at its op", where)
            verify_graph(region, module, bound)
            if [v.type for v in region.outputs] != [r.type for r in op.results]:
                raise _fail(op, "region results do not match the op's result types", where)
        defined.update(id(r) for r in op.results)
    if count != len(graph):
        raise VerifyError(f"graph length {len(graph)} does not match its {count} ops", None, where)
    for i, v in enumerate(graph.outputs):
        if id(v) not in defined:
            raise VerifyError(f"output #{i} is not defined in the graph", None, where)


def verify_module(module: Module) -> None:
    for g in module.graphs.values():
        verify_graph(g, module)
