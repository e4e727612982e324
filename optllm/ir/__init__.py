"""optllm's SSA IR: types, values, ops, graphs, text form, verifier, builder.

This package imports nothing else from optllm (the dependency root).
"""

from optllm.ir.attributes import AttrKind, AttrSpec, Dense, attr
from optllm.ir.builder import Builder, BuildError
from optllm.ir.diagnostics import IRError, OptllmError, ParseError, TypeInferenceError, VerifyError
from optllm.ir.graph import ConstantTable, Graph, Module, graph_stats
from optllm.ir.ops import Cost, OpDef, Operation, Trait, all_opdefs, get_opdef, register_op
from optllm.ir.parser import parse_module, parse_type
from optllm.ir.printer import print_graph, print_module, print_op
from optllm.ir.symbolic import Dim, SymExpr, parse_dim
from optllm.ir.types import DType, TensorType
from optllm.ir.values import Use, Value
from optllm.ir.verifier import verify_graph, verify_module

__all__ = [
    "AttrKind", "AttrSpec", "BuildError", "Builder", "ConstantTable", "Cost", "DType", "Dense", "Dim",
    "Graph", "IRError", "OptllmError", "Module", "OpDef", "Operation", "ParseError", "SymExpr", "TensorType", "Trait",
    "TypeInferenceError", "Use", "Value", "VerifyError", "all_opdefs", "attr", "get_opdef", "graph_stats",
    "parse_dim", "parse_module", "parse_type", "print_graph", "print_module", "print_op", "register_op",
    "verify_graph", "verify_module",
]
