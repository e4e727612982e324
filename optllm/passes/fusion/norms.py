"""Norm fusions: decomposed RMSNorm and LayerNorm (as exported by Llama, T5, hand-written
modules) into ``nn.rms_norm`` / ``nn.layer_norm``, with the affine weight (and bias) folded in.

    rms:   x · rsqrt(mean(x², -1) + eps) [· w]
    layer: d = x - mean(x, -1);  d · rsqrt(mean(d², -1) + eps) [· w] [+ b]

The divide forms (``x / sqrt(..)``) and ``pow(x, 2)`` / ``x·x`` are accepted; the fused ops
round differently only in the last place.
"""

from __future__ import annotations

from dataclasses import dataclass

from optllm.ir.ops import Operation
from optllm.ir.values import Value
from optllm.passes.matchers import operand_with_splat, producer, single_use, splat_float, used_only_by
from optllm.passes.rewrite import Match, Pattern, Rewriter


@dataclass(frozen=True)
class _Stat:
    """``rsqrt(mean(sq) + eps)`` (or ``1/sqrt``, or ``sqrt`` when the caller divides)."""

    mean: Operation  # the core.reduce_mean of the squares
    eps: float
    ndim: int


def _square_of(v: Value) -> Value | None:
    """x for v = pow(x, 2) or mul(x, x)."""
    op = v.owner
    if op is None or op.name not in ("core.pow", "core.mul"):
        return None
    x, y = op.operands
    if op.name == "core.pow":
        return x if splat_float(y) == 2.0 and x.type == v.type else None
    return x if x is y else None


def _mean_stat(v: Value) -> _Stat | str:
    """The statistics under ``sqrt``/``rsqrt``: add(reduce_mean(..., last axes, keepdim), eps)."""
    add = producer(v, "core.add")
    if add is None or not single_use(v):
        return "the root's operand is not a single-use add of eps"
    pair = operand_with_splat(add)
    if pair is None or pair[0].type != v.type:
        return "eps is not a splat constant"
    mean = producer(pair[0], "core.reduce_mean")
    if mean is None or not single_use(pair[0]) or not mean.attrs["keepdim"]:
        return "the statistic is not a single-use keepdim reduce_mean"
    rank = mean.operands[0].type.rank
    axes = sorted(a % rank for a in mean.attrs["axes"])
    if axes != list(range(rank - len(axes), rank)):
        return f"reduce_mean axes {list(mean.attrs['axes'])} are not the last dims"
    return _Stat(mean, pair[1], len(axes))


def _normalised(op: Operation) -> tuple[Value, _Stat] | str:
    """(x, stat) for x · rsqrt(stat), rsqrt(stat) · x, x · reciprocal(sqrt(stat)) or x / sqrt(stat)."""
    if op.name == "core.div":
        x, den = op.operands
        sq = producer(den, "core.sqrt")
        if sq is None or not single_use(den):
            return "the divisor is not a single-use sqrt"
        stat = _mean_stat(sq.operands[0])
        return stat if isinstance(stat, str) else (x, stat)
    why = "neither factor is rsqrt(mean + eps)"
    for x, r in ((op.operands[0], op.operands[1]), (op.operands[1], op.operands[0])):
        inv = producer(r, "core.rsqrt", "core.reciprocal")
        if inv is None or not single_use(r) or x.type != op.result.type:
            continue
        arg = inv.operands[0]
        if inv.name == "core.reciprocal":
            sq = producer(arg, "core.sqrt")
            if sq is None or not single_use(arg):
                continue
            arg = sq.operands[0]
        stat = _mean_stat(arg)
        if isinstance(stat, str):
            why = stat
            continue
        return x, stat
    return why


def _affine(y: Value, x: Value, ndim: int, op_name: str) -> tuple[Operation, Value] | None:
    """(the op, the parameter) when y's only reader is op_name(y, p) with p of the normalised
    dims' shape (either operand order)."""
    if not single_use(y):
        return None
    op = y.uses[0].op
    if op.name != op_name or op.result.type != y.type:
        return None
    p = op.operands[1] if op.operands[0] is y else op.operands[0]
    if p is y or p.type.shape != x.type.shape[x.type.rank - ndim:] or p.type.dtype != x.type.dtype:
        return None
    return op, p


class RmsNormFusion(Pattern):
    # x · rsqrt(mean(x², -1) + eps) · w -> nn.rms_norm(x, w){eps}
    name = "rms-norm"
    root = "core.mul"

    def match(self, op: Operation) -> Match | str:
        got = _normalised(op)
        if isinstance(got, str):
            return got
        x, stat = got
        if _square_of(stat.mean.operands[0]) is not x:
            return "the mean is not of x² for the x being normalised"
        if not single_use(stat.mean.operands[0]):
            return "x² has other readers"
        if not x.type.dtype.is_float:
            return "x is not floating point"
        scaled = _affine(op.result, x, stat.ndim, "core.mul")
        return Match(op, x=x, eps=stat.eps, ndim=stat.ndim, weight=scaled)

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        last, operands = m.op, [m.x]
        if m.weight is not None:
            last, w = m.weight
            operands.append(w)
        new = rewriter.create(last, "nn.rms_norm", operands, {"eps": m.eps, "ndim": m.ndim})
        rewriter.replace_op(last, new.result)


class RmsNormDivFusion(RmsNormFusion):
    # x / sqrt(mean(x², -1) + eps) · w -> nn.rms_norm(x, w){eps}
    name = "rms-norm-div"
    root = "core.div"


class LayerNormFusion(Pattern):
    # (x - mean(x)) · rsqrt(mean((x - mean(x))²) + eps) · w + b -> nn.layer_norm(x, w, b){eps}
    name = "layer-norm"
    root = "core.mul"

    def match(self, op: Operation) -> Match | str:
        got = _normalised(op)
        if isinstance(got, str):
            return got
        d, stat = got
        sub = producer(d, "core.sub")
        if sub is None or _square_of(stat.mean.operands[0]) is not d:
            return "not a centred variance: the mean is not of (x - mean(x))²"
        sq = stat.mean.operands[0].owner
        assert sq is not None
        if not used_only_by(d, [op, sq]) or not single_use(stat.mean.operands[0]):
            return "the centred x has other readers"
        x, mu = sub.operands
        mean = producer(mu, "core.reduce_mean")
        if mean is None or mean.operands[0] is not x or not single_use(mu) or not mean.attrs["keepdim"]:
            return "x is not centred by its own keepdim reduce_mean"
        if sorted(a % x.type.rank for a in mean.attrs["axes"]) != sorted(a % x.type.rank for a in stat.mean.attrs["axes"]):
            return "the mean and the variance reduce different axes"
        if d.type != x.type or not x.type.dtype.is_float:
            return "the centring broadcasts x or x is not floating point"
        scaled = _affine(op.result, x, stat.ndim, "core.mul")
        shifted = None if scaled is None else _affine(scaled[0].result, x, stat.ndim, "core.add")
        return Match(op, x=x, eps=stat.eps, ndim=stat.ndim, weight=scaled, bias=shifted)

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        last, operands = m.op, [m.x]
        if m.weight is not None:
            last, w = m.weight
            operands.append(w)
        if m.bias is not None:
            last, b = m.bias
            operands.append(b)
        new = rewriter.create(last, "nn.layer_norm", operands, {"eps": m.eps, "ndim": m.ndim})
        rewriter.replace_op(last, new.result)


class LayerNormDivFusion(LayerNormFusion):
    # (x - mean(x)) / sqrt(var(x) + eps) · w + b -> nn.layer_norm(x, w, b){eps}
    name = "layer-norm-div"
    root = "core.div"


PATTERNS: list[Pattern] = [LayerNormFusion(), LayerNormDivFusion(), RmsNormFusion(), RmsNormDivFusion()]
