"""Attention fusions: the eager chain ``softmax(q @ k^T · c + mask) @ v`` into one
``nn.attention``, and grouped-query k/v head expansions folded into ``nn.attention``'s GQA.

The scale moves from the scores onto q (nn.attention computes ``(q·c) @ k^T``): exact for a
power-of-two ``c``, otherwise one rounding apart. Masks keep their form: an additive float mask
stays additive (``where(m, 0, finfo.min)`` is not turned into a bool mask, which would change
fully masked rows), and ``where(m, s, -inf)`` becomes the bool mask ``m``.

A fully masked row (every score -inf: ``where(m, s, -inf)`` with a row of m false, or an
additive -inf row) is NaN in the eager chain (softmax's 0/0) but 0 in ``nn.attention``'s
default (torch SDPA's): the fused op carries ``masked_rows = "nan"`` so it computes what the
chain did. HF eager's finite ``finfo.min`` mask never masks a row fully; its padding rows stay a
uniform average either way.
"""

from __future__ import annotations

from typing import Any

from optllm.ir.diagnostics import TypeInferenceError
from optllm.ir.dialects._shapes import broadcast_shapes
from optllm.ir.ops import Operation
from optllm.ir.types import DType, TensorType
from optllm.ir.values import Value
from optllm.passes.matchers import operand_with_splat, producer, single_use, splat_float
from optllm.passes.rewrite import Match, Pattern, Rewriter


def _untransposed(kt: Value) -> tuple[Value, list[int] | None] | None:
    """(k', p) with k = permute(k', p) (p None: k = k') for ``kt = permute(k', perm)`` = kᵀ;
    canonicalize may have merged k's own permute into the transpose."""
    op = producer(kt, "core.permute")
    if op is None or kt.type.rank < 2:
        return None
    perm = list(op.attrs["perm"])
    p = perm[:-2] + [perm[-1], perm[-2]]
    return op.operands[0], (None if p == list(range(len(p))) else p)


def _mask_fits(mask: Value, scores: Value) -> bool:
    """``mask`` broadcasts onto ``scores`` without enlarging it."""
    try:
        return broadcast_shapes(mask.type.shape, scores.type.shape) == tuple(scores.type.shape)
    except TypeInferenceError:
        return False


def _peel_mask(s: Value) -> tuple[Value, Value | None] | str:
    """(scores before the mask, mask or None) for ``add(s, m)`` / ``where(m, s, -inf)``."""
    op = s.owner
    if op is None or not single_use(s):
        return s, None
    if op.name == "core.add":
        for x, m in ((op.operands[0], op.operands[1]), (op.operands[1], op.operands[0])):
            if x.type == s.type and m.type.dtype == s.type.dtype and _mask_fits(m, s) and _is_scores(x):
                return x, m
        return s, None
    if op.name == "core.where":
        m, x, fill = op.operands
        if x.type == s.type and splat_float(fill) == float("-inf") and _mask_fits(m, s):
            return x, m
        return "where-masked scores do not fill with -inf (keep an exact form)"
    return s, None


def _is_scores(v: Value) -> bool:
    """``v`` is q @ kᵀ, maybe scaled by a splat: a matmul, or a mul/div of one."""
    op = v.owner
    if op is not None and op.name in ("core.mul", "core.div"):
        pair = _splat_factor(op)
        op = pair[0].owner if pair is not None else None
    return op is not None and op.name == "core.matmul"


def _splat_factor(op: Operation) -> tuple[Value, float] | None:
    """(x, c) for mul(x, c), mul(c, x) or div(x, c) with a splat c."""
    if op.name == "core.div":
        c = splat_float(op.operands[1])
        return None if c is None else (op.operands[0], c)
    return operand_with_splat(op)


def _peel_scale(s: Value) -> tuple[Value, float] | str:
    """(raw scores, scale) for ``s = raw · c``, ``c · raw`` or ``raw / c``; (s, 1) otherwise."""
    op = s.owner
    if op is None or op.name not in ("core.mul", "core.div") or not single_use(s):
        return s, 1.0
    pair = _splat_factor(op)
    if pair is None:
        return "the scores are scaled by a non-constant"
    raw, c = pair
    if raw.type != s.type:
        return "the scale broadcasts the scores"
    if op.name == "core.div":
        return (raw, 1.0 / c) if c != 0.0 else "the scores are divided by zero"
    return raw, c


def _peel_q_scale(q: Value) -> tuple[Value, float]:
    """(q, c) for q = q0 · c (q0 of q's type); else (q, 1)."""
    op = producer(q, "core.mul")
    if op is None or not single_use(q):
        return q, 1.0
    pair = operand_with_splat(op)
    if pair is None or pair[0].type != q.type:
        return q, 1.0
    return pair


class EagerAttention(Pattern):
    # matmul(softmax(matmul(q, kᵀ)·c + mask), v) -> nn.attention(q, k, v, mask){scale = c}
    name = "attention"
    root = "core.matmul"

    def match(self, op: Operation) -> Match | str:
        p, v = op.operands
        sm = producer(p, "nn.softmax")
        if sm is None:
            return "the left operand is not an nn.softmax"
        if sm.attrs["log"] or sm.attrs["axis"] % p.type.rank != p.type.rank - 1:
            return "the softmax is a log-softmax or not over the last axis"
        if not single_use(p):
            return "the probabilities have other readers (or are returned)"
        peeled = _peel_mask(sm.operands[0])
        if isinstance(peeled, str):
            return peeled
        scaled, mask = peeled
        raw_scale = _peel_scale(scaled)
        if isinstance(raw_scale, str):
            return raw_scale
        raw, scale = raw_scale
        qk = producer(raw, "core.matmul")
        if qk is None or not single_use(raw):
            return "the scores are not a single-use matmul"
        q, kt = qk.operands
        k_src = _untransposed(kt)
        if k_src is None:
            return "the right operand of q @ kᵀ is not a permute"
        q, q_scale = _peel_q_scale(q)
        return self._check(op, q, k_src, v, mask, scale * q_scale)

    def _check(self, op: Operation, q: Value, k_src: tuple[Value, list[int] | None], v: Value,
               mask: Value | None, scale: float) -> Match | str:
        src, perm = k_src
        shape = src.type.shape if perm is None else tuple(src.type.shape[i] for i in perm)
        k = TensorType(tuple(shape), src.type.dtype)
        if not (q.type.rank == k.rank == v.type.rank) or q.type.rank < 3:
            return "q, k, v are not of one rank >= 3"
        if not q.type.dtype.is_float or len({q.type.dtype, k.dtype, v.type.dtype}) != 1:
            return "q, k, v are not of one float type"
        if q.type.shape[:-2] != k.shape[:-2] or k.shape[:-1] != v.type.shape[:-1]:
            return "q, k, v batch/head dims differ (the matmuls would broadcast)"
        if mask is not None and mask.type.dtype not in (DType.bool, q.type.dtype):
            return "the mask is neither bool nor of q's type"
        return Match(op, q=q, k=src, k_perm=perm, v=v, mask=mask, scale=scale)

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        k = m.k
        if m.k_perm is not None:
            k = rewriter.create(m.op, "core.permute", [k], {"perm": m.k_perm}).result
        operands = [m.q, k, m.v] + ([m.mask] if m.mask is not None else [])
        # softmax(all -inf) is NaN: keep the chain's fully-masked-row result, not SDPA's 0
        attrs: dict[str, Any] = {"scale": m.scale, "causal": False, "masked_rows": "nan"}
        new = rewriter.create(m.op, "nn.attention", operands, attrs)
        rewriter.replace_op(m.op, new.result)


def unexpand_heads(v: Value) -> tuple[Value, int] | None:
    """(kv, r) when ``v`` = reshape(expand(reshape(kv, [.., H, 1, S, D]), [.., H, r, S, D]),
    [.., H·r, S, D]) — GQA's repeat_kv: head h of v is head h // r of kv."""
    outer = producer(v, "core.reshape")
    if outer is None:
        return None
    ex = producer(outer.operands[0], "core.expand")
    if ex is None or not single_use(outer.operands[0]):
        return None
    inner = producer(ex.operands[0], "core.reshape")
    if inner is None:
        return None
    kv = inner.operands[0]
    t, e = kv.type, ex.result.type
    if t.rank < 3 or e.rank != t.rank + 1:
        return None
    h = t.shape[-3]
    want_inner = t.shape[:-2] + (1,) + t.shape[-2:]
    if tuple(inner.result.type.shape) != tuple(want_inner) or e.shape[:-3] != t.shape[:-2]:
        return None
    r = e.shape[-3]
    if e.shape[-2:] != t.shape[-2:] or not isinstance(r, int) or not isinstance(h, int):
        return None
    if tuple(v.type.shape) != tuple(t.shape[:-3]) + (h * r,) + tuple(t.shape[-2:]):
        return None
    return kv, r


class AttentionGQA(Pattern):
    # attention(q, repeat_kv(k, r), repeat_kv(v, r)) -> attention(q, k, v)   (GQA: Hq = r·Hk)
    name = "attention-gqa"
    root = "nn.attention"

    def match(self, op: Operation) -> Match | str:
        k = unexpand_heads(op.operands[1])
        v = unexpand_heads(op.operands[2])
        if k is None or v is None:
            return "k and v are not both head expansions (reshape, expand, reshape)"
        if k[1] != v[1]:
            return f"k and v are repeated {k[1]} and {v[1]} times"
        if k[0].type.shape[:-1] != v[0].type.shape[:-1]:
            return "the unexpanded k and v disagree in batch, heads or length"
        return Match(op, k=k[0], v=v[0])

    def rewrite(self, m: Match, rewriter: Rewriter) -> None:
        operands = [m.op.operands[0], m.k, m.v, *m.op.operands[3:]]
        new = rewriter.create(m.op, "nn.attention", operands, dict(m.op.attrs))
        rewriter.replace_op(m.op, new.result)


PATTERNS: list[Pattern] = [EagerAttention(), AttentionGQA()]
