"""Lowerings of ``nn`` and ``fused`` ops.

Ops with a standard ONNX equivalent become that op (``Softmax``, ``LayerNormalization``,
``Gather``). Fused ops (attention, RMSNorm, RoPE, linear epilogues, skip norms, fused regions)
become calls of ONNX local functions in the ``optllm`` domain whose body is the op's
decomposition, so any ONNX runtime can run the file and one that knows the pattern can fuse it.
"""

from __future__ import annotations

import math

import numpy as np

from optllm.backends.onnx_export.context import Emitter, ExportError
from optllm.backends.onnx_export.core import LOWERINGS, _op
from optllm.ir.ops import Operation
from optllm.ir.types import DType, TensorType


def _types(op: Operation) -> list[TensorType]:
    return [v.type for v in op.operands]


@_op("nn.embedding")
def _embedding(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("Gather", ins, outs[0], axis=0)


@_op("nn.softmax")
def _softmax(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("LogSoftmax" if op.attrs["log"] else "Softmax", ins, outs[0], axis=op.attrs["axis"])


@_op("nn.relu")
def _relu(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("Relu", ins, outs[0])


def gelu(e: Emitter, x: str, dt: DType, approximate: str, out: str | None = None) -> str:
    """The reference's GELU: x·0.5·(1 + erf(x/√2)), or the tanh form."""
    if approximate == "tanh":
        # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        cube = e.one("Mul", [e.one("Mul", [e.one("Mul", [e.scalar(0.044715, dt), x]), x]), x])
        inner = e.one("Mul", [e.scalar(math.sqrt(2.0 / math.pi), dt), e.one("Add", [x, cube])])
        half_x = e.one("Mul", [e.scalar(0.5, dt), x])
        return e.one("Mul", [half_x, e.one("Add", [e.scalar(1.0, dt), e.one("Tanh", [inner])])], out)
    erf = e.one("Erf", [e.one("Mul", [x, e.scalar(1 / math.sqrt(2.0), dt)])])
    half_x = e.one("Mul", [x, e.scalar(0.5, dt)])
    return e.one("Mul", [half_x, e.one("Add", [e.scalar(1.0, dt), erf])], out)


def silu(e: Emitter, x: str, out: str | None = None) -> str:
    return e.one("Mul", [x, e.one("Sigmoid", [x])], out)


@_op("nn.gelu")
def _gelu(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    gelu(e, ins[0], op.result.type.dtype, op.attrs["approximate"], outs[0])


@_op("nn.silu")
def _silu(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    silu(e, ins[0], outs[0])


def _norm_axes(op: Operation) -> list[int]:
    rank = op.operands[0].type.rank
    return list(range(rank - op.attrs["ndim"], rank))


def layer_norm(e: Emitter, op: Operation, ins: list[str], out: str) -> None:
    """``LayerNormalization`` (opset 17); missing scale/bias become ones/zeros."""
    x_t = op.operands[0].type
    nd = op.attrs["ndim"]
    norm_shape = x_t.shape[x_t.rank - nd:]
    if len(ins) < 2:
        if not all(isinstance(d, int) for d in norm_shape):
            raise ExportError("nn.layer_norm without a weight needs static normalised dims", op)
        ins = [ins[0], e.const(np.ones(norm_shape, x_t.dtype.to_numpy()))]  # type: ignore[arg-type]
    e.node("LayerNormalization", ins, [out], axis=-nd, epsilon=float(op.attrs["eps"]))


def rms_norm(e: Emitter, op: Operation, ins: list[str], out: str) -> None:
    """x · 1/sqrt(mean(x²) + eps) · γ, in the reference's order."""
    dt = op.operands[0].type.dtype
    x = ins[0]
    ms = e.reduce("ReduceMean", e.one("Mul", [x, x]), _norm_axes(op), True)
    inv = e.one("Reciprocal", [e.one("Sqrt", [e.one("Add", [ms, e.scalar(op.attrs["eps"], dt)])])])
    if len(ins) < 2:
        e.one("Mul", [x, inv], out)
        return
    e.one("Mul", [e.one("Mul", [x, inv]), ins[1]], out)


@_op("nn.layer_norm")
def _layer_norm(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    layer_norm(e, op, ins, outs[0])


@_op("nn.rms_norm")
def _rms_norm(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.call("rms_norm", _types(op), ins, outs, lambda f, i, o: rms_norm(f, op, i, o[0]))


def _skip_norm(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    norm = layer_norm if op.name == "nn.skip_layer_norm" else rms_norm

    def body(f: Emitter, i: list[str], o: list[str]) -> None:
        s = f.one("Add", [i[0], i[1]], o[1])
        norm(f, op, [s, *i[2:]], o[0])

    e.call(op.name.split(".")[1], _types(op), ins, outs, body)


LOWERINGS["nn.skip_layer_norm"] = _skip_norm
LOWERINGS["nn.skip_rms_norm"] = _skip_norm


@_op("nn.rope")
def _rope(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    d = op.operands[0].type.shape[-1]
    assert isinstance(d, int)

    def body(f: Emitter, i: list[str], o: list[str]) -> None:
        # x·cos + cat(-x[..., d/2:], x[..., :d/2])·sin
        x, cos, sin = i
        last = f.const(np.asarray([-1], np.int64))
        lo = f.one("Slice", [x, f.dim(0), f.dim(d // 2), last])
        hi = f.one("Slice", [x, f.dim(d // 2), f.dim(d), last])
        rotated = f.one("Concat", [f.one("Neg", [hi]), lo], axis=-1)
        f.one("Add", [f.one("Mul", [x, cos]), f.one("Mul", [rotated, sin])], o[0])

    e.call("rope", _types(op), ins, outs, body)


@_op("nn.linear")
def _linear(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    a = op.attrs
    dt = op.result.type.dtype

    def body(f: Emitter, i: list[str], o: list[str]) -> None:
        # act(x @ W + b) + r
        w = f.one("Transpose", [i[1]], perm=[1, 0]) if a["transpose_w"] else i[1]
        y = f.one("MatMul", [i[0], w])
        rest = list(i[2:])
        if a["bias"]:
            y = f.one("Add", [y, rest.pop(0)])
        y = _activation(f, y, dt, a["activation"])
        if a["residual"]:
            y = f.one("Add", [y, rest[0]])
        f.one("Identity", [y], o[0])

    e.call("linear", _types(op), ins, outs, body)


def _activation(e: Emitter, y: str, dt: DType, activation: str) -> str:
    if activation == "none":
        return y
    if activation in ("gelu", "gelu_tanh"):
        return gelu(e, y, dt, "tanh" if activation == "gelu_tanh" else "none")
    if activation == "silu":
        return silu(e, y)
    return e.one("Tanh" if activation == "tanh" else "Relu", [y])


@_op("nn.attention")
def _attention(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    types = _types(op)
    q_t, k_t = types[0], types[1]
    dt = q_t.dtype
    rank = q_t.rank
    hq, hk = q_t.shape[-3], k_t.shape[-3]
    rep = hq // hk if isinstance(hq, int) and isinstance(hk, int) else 1
    scale = op.attrs.get("scale")
    if scale is None:
        e_dim = q_t.shape[-1]
        if not isinstance(e_dim, int):
            raise ExportError("nn.attention without a scale needs a static head size", op)
        scale = 1.0 / math.sqrt(e_dim)
    has_mask = len(ins) > 3
    bool_mask = has_mask and types[3].dtype is DType.bool
    zero_rows = (has_mask or bool(op.attrs["causal"])) and op.attrs.get("masked_rows", "zero") == "zero"

    def body(f: Emitter, i: list[str], o: list[str]) -> None:
        q, k, v = i[:3]
        if rep > 1:
            k, v = _repeat_heads(f, k, rank, rep), _repeat_heads(f, v, rank, rep)
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        s = f.one("MatMul", [f.one("Mul", [q, f.scalar(scale, dt)]), f.one("Transpose", [k], perm=perm)])
        neg_inf = f.scalar(-np.inf, dt)
        if op.attrs["causal"]:
            keep = f.lower_mask(f.one("Shape", [s], start=-2))
            s = f.one("Where", [keep, s, neg_inf])
        if has_mask:
            s = f.one("Where", [i[3], s, neg_inf]) if bool_mask else f.one("Add", [s, i[3]])
        p = f.one("Softmax", [s], axis=-1)
        if zero_rows:  # masked_rows = "zero": a row of -inf gives 0 where Softmax gives 0/0 = NaN
            empty = f.one("Equal", [f.reduce("ReduceMax", s, [-1], True), neg_inf])
            p = f.one("Where", [empty, f.scalar(0.0, dt), p])
        f.one("MatMul", [p, v], o[0])

    e.call("attention", types, ins, outs, body)


def _repeat_heads(f: Emitter, x: str, rank: int, rep: int) -> str:
    """[..., H, S, E] -> [..., H·rep, S, E], each head repeated ``rep`` times (np.repeat)."""
    axes = f.const(np.asarray([rank - 2], np.int64))
    expanded = f.one("Expand", [f.one("Unsqueeze", [x, axes]),
                                f.const(np.asarray([1] * (rank - 2) + [rep, 1, 1], np.int64))])
    lead = f.one("Shape", [x], end=rank - 3) if rank > 3 else None
    heads = f.one("Mul", [f.one("Shape", [x], start=rank - 3, end=rank - 2), f.dim(rep)])
    tail = f.one("Shape", [x], start=rank - 2)
    shape = f.one("Concat", [t for t in (lead, heads, tail) if t is not None], axis=0)
    return f.one("Reshape", [expanded, shape])


@_op("fused.region")
def _region(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    from optllm.backends.onnx_export.lower import lower_graph

    body_graph = op.regions[0]
    e.call(f"region_{op.attrs['kind']}", _types(op), ins, outs, lambda f, i, o: lower_graph(f, body_graph, i, o))
