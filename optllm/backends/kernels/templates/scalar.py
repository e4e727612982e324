"""Scalar semantics of the IR's elementwise ops, as KIR expressions.

Every template that evaluates an elementwise op at one element — the elementwise template for
``fused.region{kind=elementwise}`` bodies, the GEMM epilogue for ``nn.linear``'s activation —
asks this table, so one IR op has one scalar meaning in every kernel and every printer::

    %1 = nn.gelu %0 {approximate = "tanh"} : f32[N]
      ->  0.5 * x * (1 + tanh(0.7978846 * (x + 0.044715 * x * x * x)))        (KIR, f32)

The expressions follow the ops' numpy references (``optllm/ir/dialects``) operation by
operation, in the same element type, so the only differences from the reference executor are
the rounding of the printers' math functions (a few ulp).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optllm.backends.kernels.kir import (
    BINARY_OPS,
    UNARY_OPS,
    Binary,
    Cast,
    Const,
    Expr,
    KIRError,
    ScalarType,
    Select,
    Unary,
)

Rule = Callable[[Sequence[Expr], Mapping[str, Any], ScalarType], Expr]
"""(operand expressions, op attributes, result scalar type) -> the result expression."""


def _k(value: float, t: ScalarType) -> Const:
    return Const(float(value) if t.is_float else value, t)


def _unary(kir_op: str) -> Rule:
    return lambda a, attrs, t: Unary(kir_op, a[0])


def _binary(kir_op: str) -> Rule:
    return lambda a, attrs, t: Binary(kir_op, a[0], a[1])


def gelu(x: Expr, approximate: str = "none") -> Expr:
    """x·Φ(x): ``x * 0.5 * (1 + erf(x / sqrt 2))`` or the tanh form, as nn.gelu's reference."""
    t = x.type
    if approximate == "tanh":
        inner = _k(math.sqrt(2.0 / math.pi), t) * (x + _k(0.044715, t) * x * x * x)
        return _k(0.5, t) * x * (_k(1.0, t) + Unary("tanh", inner))
    return x * _k(0.5, t) * (_k(1.0, t) + Unary("erf", x * _k(1 / math.sqrt(2.0), t)))


def silu(x: Expr) -> Expr:
    return x * Unary("sigmoid", x)


def relu(x: Expr) -> Expr:
    return Binary("max", x, _k(0, x.type))


ACTIVATIONS: dict[str, Callable[[Expr], Expr]] = {
    "none": lambda x: x,
    "gelu": lambda x: gelu(x, "none"),
    "gelu_tanh": lambda x: gelu(x, "tanh"),
    "silu": silu,
    "relu": relu,
    "tanh": lambda x: Unary("tanh", x),
}
"""``nn.linear``'s epilogue activations, with the standalone ops' numerics."""


def _where(a: Sequence[Expr], attrs: Mapping[str, Any], t: ScalarType) -> Expr:
    return Select(a[0], a[1], a[2])


def _cast(a: Sequence[Expr], attrs: Mapping[str, Any], t: ScalarType) -> Expr:
    return a[0] if a[0].type == t else Cast(a[0], t)


def _declared_rule(op_name: str) -> Rule | None:
    """The rule of a one-function op, from its declaration: a ``core.Unary`` / ``core.Binary``
    op names its kernel IR function in ``scalar`` (plugins' subclasses included)."""
    from optllm.ir.dialects import core
    from optllm.ir.ops import get_opdef

    try:
        opdef = get_opdef(op_name)
    except KeyError:
        return None
    fn = getattr(opdef, "scalar", "")
    if isinstance(opdef, core.Unary) and fn in UNARY_OPS:
        return _unary(fn)
    if isinstance(opdef, core.Binary) and fn in BINARY_OPS:
        return _binary(fn)
    return None


def _declared_rules() -> dict[str, Rule]:
    from optllm.ir.ops import all_opdefs

    rules = {name: _declared_rule(name) for name in all_opdefs()}
    return {name: rule for name, rule in rules.items() if rule is not None}


RULES: dict[str, Rule] = {
    **_declared_rules(),
    "core.where": _where,
    "core.cast": _cast,
    "nn.gelu": lambda a, attrs, t: gelu(a[0], attrs.get("approximate", "none")),
    "nn.silu": lambda a, attrs, t: silu(a[0]),
    "nn.relu": lambda a, attrs, t: relu(a[0]),
}
"""The rules of the built-in elementwise ops: the one-function ops from their declarations
(``OpDef.scalar``), the composite ones written here."""


def has_scalar_rule(op_name: str) -> bool:
    return op_name in RULES or _declared_rule(op_name) is not None


def scalar_rule(op_name: str) -> Rule:
    """The scalar rule of an elementwise IR op; a clear error for ops no kernel implements yet."""
    rule = RULES.get(op_name) or _declared_rule(op_name)
    if rule is None:
        raise KIRError(f"{op_name} has no scalar kernel rule yet (elementwise ops with one: "
                       f"{', '.join(sorted(RULES))})")
    return rule

