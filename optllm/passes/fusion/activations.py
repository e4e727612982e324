"""Activation fusions: decomposed GELU (erf and tanh forms) and SiLU into ``nn.gelu`` /
``nn.silu``, and activations of an ``nn.linear`` folded into its epilogue.

    gelu (erf):  x · 0.5 · (1 + erf(x / √2))              (or x · (1/√2))
    gelu (tanh): 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))   (x³ as pow or x·x·x)
    silu:        x · sigmoid(x)

The products may be associated either way (``mul_factors`` opens single-use mul trees).
"""

from __future__ import annotations

import math

from optllm.ir.attributes import Dense
from optllm.ir.ops import Operation
from optllm.ir.values import Value
from optllm.passes.matchers import close_to, mul_factors, operand_with_splat, producer, single_use, splat_float
from optllm.passes.rewrite import Match, Pattern, Rewriter

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)


def _cube_of(v: Value) -> Value | None:
    """x for v = pow(x, 3), x·x·x in any association."""
    op = v.owner
    if op is None:
        return None
    if op.name == "core.pow":
        x, e = op.operands
        return x if splat_float(e) == 3.0 and x.type == v.type else None
    factors = mul_factors(v)
    if len(factors) == 2:  # mul(x, x²) with x² read elsewhere too
        a, b = factors
        for x, sq in ((a, b), (b, a)):
            sq_op = producer(sq, "core.mul")
            if sq_op is not None and sq_op.operands[0] is x and sq_op.operands[1] is x:
                return x
    if len(factors) == 3 and factors[0] is factors[1] is factors[2]:
        return factors[0]
    return None


def _tanh_arg(v: Value) -> Value | None:
    """x for v = √(2/π) · (x + 0.044715 · x³)."""
    op = producer(v, "core.mul")
    pair = None if op is None else operand_with_splat(op)
    if pair is None or not close_to(pair[1], SQRT_2_OVER_PI):
        return None
    add = producer(pair[0], "core.add")
    if add is None:
        return None
    for x, t in ((add.operands[0], add.operands[1]), (add.operands[1], add.operands[0])):
        mul = producer(t, "core.mul")
        inner = None if mul is None else operand_with_splat(mul)
        if inner is not None and close_to(inner[1], 0.044715) and _cube_of(inner[0]) is x:
            return x
    return None


def _erf_arg(v: Value) -> Value | None:
    """x for v = x / √2 or x · (1/√2)."""
    op = producer(v, "core.mul", "core.div")
    if op is None:
        return None
    if op.name == "core.div":
        c = splat_float(op.operands[1])
        return op.operands[0] if close_to(c, math.sqrt(2.0)) else None
    pair = operand_with_splat(op)
    return pair[0] if pair is not None and close_to(pair[1], INV_SQRT_2) else None


def _one_plus(v: Value) -> tuple[str, Value] | None:
    """(approximate, x) for v = 1 + tanh(..x..) or 1 + erf(x/√2)."""
    add = producer(v, "core.add")
    pair = None if add is None else operand_with_splat(add)
    if pair is None or pair[1] != 1.0:
        return None
    f = producer(pair[0], "core.tanh", "core.erf")
    if f is None:
        return None
    if f.name == "core.tanh":
        x = _tanh_arg(f.operands[0])
        return None if x is None else ("tanh", x)
    x = _erf_arg(f.operands[0])
    return None if x is None else ("none", x)


class GeluFusion(Pattern):
    # x · 0.5 · (1 + erf(x/√2)) -> nn.gelu(x);  0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) -> nn.gelu{tanh}
    name = "gelu"
    root = "core.mul"

    def match(self, op: Operation) -> Match | str:
        factors = mul_factors(op.result)
        if len(factors) != 3:
            return f"the product has {len(factors)} factors, not x, 0.5 and (1 + tanh|erf(..))"
        halves = [f for f in factors if splat_float(f) == 0.5]
        forms = [g for g in map(_one_plus, factors) if g is not None]
        if len(halves) != 1 or len(forms) != 1:
            return "no factor 0.5 and one factor 1 + tanh(..)/erf(..) of the right form"
        approx, x = forms[0]
        if x not in factors or x.type != op.result.type or not x.type.dtype.is_float:
            return "the remaining factor is not the activation's input (or it broadcasts)"
        return Match(op, x=x, approximate=approx)

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        new = rewriter.create(m.op, "nn.gelu", [m.x], {"approximate": m.approximate})
        rewriter.replace_op(m.op, new.result)


class DoubledGeluFusion(GeluFusion):
    # x · (1 + erf(x/√2)) -> 2 · nn.gelu(x)  (the 0.5 already folded into the next GEMM; · 2 is exact)
    name = "gelu-doubled"

    def match(self, op: Operation) -> Match | str:
        users = op.result.users
        if len(users) == 1 and users[0].name == "core.mul" and single_use(op.result):
            return "part of a larger product (the gelu pattern takes it from the root)"
        factors = mul_factors(op.result)
        forms = [g for g in map(_one_plus, factors) if g is not None]
        if len(factors) != 2 or len(forms) != 1:
            return "the product is not x · (1 + tanh(..)/erf(..))"
        approx, x = forms[0]
        if x not in factors or x.type != op.result.type or not x.type.dtype.is_float:
            return "the other factor is not the activation's input (or it broadcasts)"
        return Match(op, x=x, approximate=approx)

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        gelu = rewriter.create(m.op, "nn.gelu", [m.x], {"approximate": m.approximate}).result
        two = rewriter.create(m.op, "core.constant", [], {"value": Dense.from_array(2.0, m.x.type.dtype)}).result
        new = rewriter.create(m.op, "core.mul", [gelu, two])
        rewriter.replace_op(m.op, new.result)


class SiluFusion(Pattern):
    # x · sigmoid(x) -> nn.silu(x)
    name = "silu"
    root = "core.mul"

    def match(self, op: Operation) -> Match | str:
        for x, s in ((op.operands[0], op.operands[1]), (op.operands[1], op.operands[0])):
            sig = producer(s, "core.sigmoid")
            if sig is not None and sig.operands[0] is x and x.type == op.result.type:
                return Match(op, x=x)
        return "no operand is sigmoid of the other"

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        new = rewriter.create(m.op, "nn.silu", [m.x])
        rewriter.replace_op(m.op, new.result)


def _epilogue_name(op: Operation) -> str:
    if op.name == "nn.gelu":
        return "gelu_tanh" if op.attrs["approximate"] == "tanh" else "gelu"
    return {"nn.silu": "silu", "core.tanh": "tanh"}.get(op.name, "relu")


class LinearActivation(Pattern):
    # gelu(linear(x, W, b)) -> linear(x, W, b){activation = gelu}   (the GEMM's epilogue)
    name = "linear-activation"
    root = "nn.gelu"

    def match(self, op: Operation) -> Match | str:
        lin = producer(op.operands[0], "nn.linear")
        if lin is None:
            return "the input is not an nn.linear"
        if lin.attrs["activation"] != "none" or lin.attrs["residual"]:
            return "the linear already has an activation or a residual"
        if not single_use(lin.result):
            return "the linear's output has other readers"
        return Match(op, lin=lin, activation=_epilogue_name(op))

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        attrs = dict(m.lin.attrs, activation=m.activation)
        new = rewriter.create(m.op, "nn.linear", list(m.lin.operands), attrs, loc=m.lin.loc)
        rewriter.replace_op(m.op, new.result)


class LinearSilu(LinearActivation):
    # silu(linear(x, W, b)) -> linear(x, W, b){activation = silu}
    root = "nn.silu"


class LinearRelu(LinearActivation):
    # relu(linear(x, W, b)) -> linear(x, W, b){activation = relu}
    root = "nn.relu"


class LinearTanh(LinearActivation):
    # tanh(linear(x, W, b)) -> linear(x, W, b){activation = tanh}   (BERT's pooler)
    root = "core.tanh"


PATTERNS: list[Pattern] = [GeluFusion(), DoubledGeluFusion(), SiluFusion()]
EPILOGUE_PATTERNS: list[Pattern] = [LinearActivation(), LinearSilu(), LinearRelu(), LinearTanh()]
