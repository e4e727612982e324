"""ONNX losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

The class pick is a one-hot compare with ``arange(C)`` and a sum over the class dim, so
ignored or out-of-range targets contribute nothing; weights, ``ignore_index`` and the
none / sum / mean reductions follow the ONNX definitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext
from optllm.frontends.onnx.ops_math import float_input, like, onnx_op
from optllm.ir import DType, Value

Node = Any
Out = list[Value | None]


def _nll(ctx: ConvertContext, node: Node, logp: Value, target: Value, weight: Value | None) -> Value:
    """NLL of log-probabilities ``logp[N,C,...]`` at ``target[N,...]`` with class weights.

    picked = sum_c (c == target) * logp; w = weight[target] (0 where target == ignore_index);
    loss = -picked * w, then none / sum / mean (sum of loss over sum of w).
    """
    rank, c = logp.type.rank, logp.type.shape[1]
    if not isinstance(c, int):
        raise FrontendError(f"the class dim must be static, got {logp.type}")
    classes = ctx.constant(np.arange(c, dtype=np.int64).reshape([c if i == 1 else 1 for i in range(rank)]))
    tgt = ctx.cast(target, DType.i64)
    t_shape = list(tgt.type.shape)
    hot = ctx.op("core.eq", ctx.op("core.reshape", tgt, shape=t_shape[:1] + [1] + t_shape[1:]), classes)
    zero = like(ctx, 0, logp)
    picked = ctx.op("core.reduce_sum", ctx.op("core.where", hot, logp, zero), axes=[1])
    if weight is None:
        w = ctx.op("core.cast", ctx.op("core.reduce_any", hot, axes=[1]), dtype=logp.type.dtype)
    else:
        wb = ctx.op("core.reshape", ctx.cast(weight, logp.type.dtype), shape=[c if i == 1 else 1 for i in range(rank)])
        w = ctx.op("core.reduce_sum", ctx.op("core.where", hot, wb, zero), axes=[1])
    ignore = ctx.attr(node, "ignore_index", None)
    if ignore is not None:
        keep = ctx.op("core.ne", tgt, like(ctx, int(ignore), tgt))
        w = ctx.op("core.where", keep, w, zero)
    loss = ctx.op("core.neg", ctx.op("core.mul", picked, w))
    reduction = ctx.attr(node, "reduction", "mean")
    if reduction == "none":
        return loss
    axes = list(range(loss.type.rank))
    total = ctx.op("core.reduce_sum", loss, axes=axes)
    if reduction == "sum":
        return total
    return ctx.op("core.div", total, ctx.op("core.reduce_sum", w, axes=axes))


@onnx_op("NegativeLogLikelihoodLoss", since=13)
def _nll_loss(ctx: ConvertContext, node: Node) -> Out:
    logp = float_input(ctx, node)
    return [_nll(ctx, node, logp, ctx.need(node, 1), ctx.input(node, 2))]


@onnx_op("SoftmaxCrossEntropyLoss", since=13)
def _softmax_cross_entropy(ctx: ConvertContext, node: Node) -> Out:
    # NLL(log_softmax(scores, axis=1), labels)
    scores = float_input(ctx, node)
    logp = ctx.op("nn.softmax", scores, axis=1, log=True)
    loss = _nll(ctx, node, logp, ctx.need(node, 1), ctx.input(node, 2))
    outs: Out = [loss, logp]
    return outs[: max(len(node.output), 1)]
