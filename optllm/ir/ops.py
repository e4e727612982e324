"""Operation declarations (``OpDef``), the op registry and ``Operation`` instances.

An op kind is declared once as an ``OpDef`` subclass: dotted name, operand names, attribute
schema, traits, type inference, a numpy reference implementation and a cost. Graph nodes are
``Operation`` objects that point at their ``OpDef``. Plugins add op kinds the same way::

    @register_op
    class Relu(UnaryElementwise):
        '''%1 = nn.relu %0 : f32[B,S,768]'''
        name = "nn.relu"
        def compute(self, x): return np.maximum(x, 0)
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from optllm.ir.attributes import AttrError, AttrSpec, coerce
from optllm.ir.diagnostics import TypeInferenceError, VerifyError
from optllm.ir.types import TensorType
from optllm.ir.values import Value

if TYPE_CHECKING:
    from optllm.ir.graph import Graph


class Trait(enum.Enum):
    PURE = "pure"  # no side effects: removable when unused, mergeable by CSE
    ELEMENTWISE = "elementwise"  # out[i] depends on in[i] only (after broadcasting)
    VIEW = "view"  # a relabelling of the same data: costs no kernel launch
    COMMUTATIVE = "commutative"  # operands 0 and 1 may be swapped
    CONSTANT = "constant"  # produces a constant: costs no kernel launch


@dataclass(frozen=True)
class Cost:
    """Work of one op at concrete shapes: floating-point operations and bytes moved."""

    flops: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes_read + other.bytes_read,
                    self.bytes_written + other.bytes_written)


class OpDef:
    """Declaration of one op kind. Subclasses set the class variables and override hooks.

    ``operands`` lists operand names; a trailing ``?`` marks an optional operand (only at the
    end), a leading ``*`` one variadic operand. ``num_results`` is ``None`` when type
    inference decides it.
    """

    name: ClassVar[str] = ""
    operands: ClassVar[tuple[str, ...]] = ()
    num_results: ClassVar[int | None] = 1
    attrs: ClassVar[Mapping[str, AttrSpec]] = {}
    traits: ClassVar[frozenset[Trait]] = frozenset({Trait.PURE})
    has_region: ClassVar[bool] = False
    # Result types are given by whoever creates the op (e.g. core.weight takes its type from
    # the constant table) instead of inferred; the verifier checks them by other means.
    declared_types: ClassVar[bool] = False
    # Interchange names, declared here once so frontends and exporters derive their tables:
    # ``onnx`` is the standard ONNX operator computing exactly this op on the same operands with
    # no attributes (ONNX export emits it; the ONNX frontend maps it back); ``aten`` is the
    # ``torch.ops.aten`` packet whose ``.default`` overload is this op after casting the operand
    # to the result's element type (the torch frontend lowers it so).
    onnx: ClassVar[str] = ""
    aten: ClassVar[str] = ""

    # -- hooks ----------------------------------------------------------------------------
    def infer(self, types: Sequence[TensorType], attrs: Mapping[str, Any]) -> list[TensorType]:
        """Result types from operand types and attributes (raise ``TypeInferenceError``)."""
        raise NotImplementedError(f"{self.name} has no type inference")

    def reference(self, inputs: Sequence[np.ndarray], attrs: Mapping[str, Any],
                  env: Mapping[str, int]) -> list[np.ndarray]:
        """Numpy semantics: the oracle every backend is compared against."""
        raise NotImplementedError(f"{self.name} has no reference implementation")

    def cost(self, in_types: Sequence[TensorType], out_types: Sequence[TensorType],
             attrs: Mapping[str, Any], env: Mapping[str, int]) -> Cost:
        """Default: one flop per output element, all operands read and results written."""
        read = sum(t.nbytes(dict(env)) for t in in_types)
        written = sum(t.nbytes(dict(env)) for t in out_types)
        flops = 0.0 if self.is_free else float(sum(t.numel(dict(env)) for t in out_types))
        return Cost(flops, read, written)

    def verify(self, op: Operation) -> None:
        """Op-specific checks beyond arity, attributes and types (raise ``VerifyError``)."""

    # -- derived ----------------------------------------------------------------------------
    @property
    def is_free(self) -> bool:
        """Views and constants need no kernel launch."""
        return Trait.VIEW in self.traits or Trait.CONSTANT in self.traits

    def arity(self) -> tuple[int, int | None]:
        """(min, max) operand count; max is None for variadic."""
        lo = sum(1 for n in self.operands if not n.endswith("?") and not n.startswith("*"))
        if any(n.startswith("*") for n in self.operands):
            return lo, None
        return lo, len(self.operands)

    def check_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Coerce ``attrs`` through the schema, fill defaults, reject unknown names."""
        out: dict[str, Any] = {}
        for key in attrs:
            if key not in self.attrs:
                known = ", ".join(self.attrs) or "none"
                raise AttrError(f"unknown attribute '{key}' (known: {known})")
        for key, spec in self.attrs.items():
            if key in attrs and attrs[key] is not None:
                out[key] = coerce(key, spec, attrs[key])
            elif spec.default is not None:
                out[key] = coerce(key, spec, spec.default)
            elif not spec.optional:
                raise AttrError(f"missing required attribute '{key}'")
        return out


_REGISTRY: dict[str, OpDef] = {}
_SOURCES: dict[str, str] = {}


class RegistryError(Exception):
    """Two declarations of the same op or pass name."""


def register_op(cls: type[OpDef]) -> type[OpDef]:
    """Class decorator: declare ``cls`` as the op kind ``cls.name``. Clashes are errors."""
    if not cls.name or "." not in cls.name:
        raise RegistryError(f"op class {cls.__qualname__} needs a dotted name such as 'nn.relu'")
    source = f"{cls.__module__}.{cls.__qualname__}"
    if cls.name in _REGISTRY and _SOURCES[cls.name] != source:
        raise RegistryError(f"op '{cls.name}' is declared twice: by {_SOURCES[cls.name]} and by {source}")
    _REGISTRY[cls.name] = cls()
    _SOURCES[cls.name] = source
    return cls


def get_opdef(name: str) -> OpDef:
    """The declaration of ``name``; loads the built-in dialects on first use."""
    from optllm.ir import dialects

    dialects.load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op '{name}' (is the dialect or plugin that defines it loaded?)") from None


def all_opdefs() -> dict[str, OpDef]:
    from optllm.ir import dialects

    dialects.load_all()
    return dict(_REGISTRY)


def op_source(name: str) -> str:
    return _SOURCES.get(name, "?")


class Operation:
    """A node of a graph: an ``OpDef`` applied to operand values, with attributes and a loc.

    Ops form an intrusive doubly linked list inside their graph so insertion and erasure are
    O(1) however large the model.
    """

    __slots__ = ("opdef", "operands", "results", "attrs", "loc", "regions", "parent", "prev", "next")

    def __init__(self, opdef: OpDef, operands: Sequence[Value], result_types: Sequence[TensorType],
                 attrs: Mapping[str, Any] | None = None, loc: str = "",
                 regions: Sequence[Graph] = ()) -> None:
        self.opdef = opdef
        self.operands: list[Value] = []
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.loc = loc
        self.regions: list[Graph] = list(regions)
        self.parent: Graph | None = None
        self.prev: Operation | None = None
        self.next: Operation | None = None
        for region in self.regions:
            region.parent_op = self
        for i, v in enumerate(operands):
            self.operands.append(v)
            v._add_use(self, i)
        self.results = [Value(t, self, i) for i, t in enumerate(result_types)]

    @property
    def name(self) -> str:
        return self.opdef.name

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise ValueError(f"{self.name} has {len(self.results)} results, not one")
        return self.results[0]

    def has_trait(self, trait: Trait) -> bool:
        return trait in self.opdef.traits

    def set_operand(self, index: int, value: Value) -> None:
        old = self.operands[index]
        if old is value:
            return
        old._remove_use(self, index)
        self.operands[index] = value
        value._add_use(self, index)

    def drop_operands(self) -> None:
        """Unlink from every operand's use-list (before erasing)."""
        for i, v in enumerate(self.operands):
            v._remove_use(self, i)
        self.operands = []

    def infer_types(self) -> list[TensorType]:
        return self.opdef.infer([v.type for v in self.operands], self.attrs)

    def walk(self) -> Iterator[Operation]:
        """This op, then every op nested in its regions."""
        yield self
        for region in self.regions:
            yield from region.walk()

    def __repr__(self) -> str:
        return f"<Operation {self.name} at {self.loc or '?'}>"


def infer_or_raise(opdef: OpDef, types: Sequence[TensorType], attrs: Mapping[str, Any],
                   op: Operation | None = None) -> list[TensorType]:
    try:
        return opdef.infer(types, attrs)
    except (TypeInferenceError, ValueError) as e:  # ValueError: a type with a negative dim
        raise VerifyError(str(e), op) from None


def declared_in(cls: type) -> str:
    """File and line of a declaration, for messages about clashes."""
    try:
        return f"{inspect.getsourcefile(cls)}:{inspect.getsourcelines(cls)[1]}"
    except (OSError, TypeError):
        return cls.__module__
