"""ONNX RNN, GRU and LSTM unrolled over their static sequence length.

Each step is the ONNX recurrence written with ``core`` ops (gate order: LSTM i,o,f,c; GRU
z,r,h), per direction (forward, reverse or both). Y stacks every step's hidden state; Y_h and
Y_c are the last ones. Sequence lengths shorter than the input and ``clip`` are not supported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError
from optllm.frontends.onnx.context import ConvertContext
from optllm.frontends.onnx.ops_math import like, onnx_op
from optllm.ir import Value

Node = Any
Out = list[Value | None]
Act = Callable[[Value], Value]
Step = Callable[[ConvertContext, Value, list[Value], dict[str, Value]], list[Value]]

_ACTS = {"Sigmoid": "core.sigmoid", "Tanh": "core.tanh", "Relu": "nn.relu"}


def _act(ctx: ConvertContext, ir_name: str) -> Act:
    def apply(v: Value) -> Value:
        return ctx.op(ir_name, v)

    return apply


def _activations(ctx: ConvertContext, node: Node, defaults: list[str], dirs: int) -> list[list[Act]]:
    names = ctx.attr(node, "activations", None) or defaults * dirs
    acts: list[Act] = []
    for name in names:
        if name not in _ACTS:
            raise FrontendError(f"{node.op_type} activation {name!r} is not supported")
        acts.append(_act(ctx, _ACTS[name]))
    per = len(defaults)
    return [acts[d * per:(d + 1) * per] for d in range(dirs)]


def _row(ctx: ConvertContext, v: Value, d: int) -> Value:
    """v[d] of a [dirs, ...] tensor."""
    return ctx.op("core.reshape", ctx.op("core.slice", v, axis=0, start=d, end=d + 1), shape=list(v.type.shape[1:]))


def _gates(ctx: ConvertContext, v: Value, n: int) -> list[Value]:
    """Split the last dim of ``v`` into ``n`` equal gates."""
    size = int(v.type.shape[-1]) // n  # type: ignore[arg-type]
    return list(ctx.create("core.split", [v], {"axis": -1, "sizes": [size] * n}).results)


def _run(ctx: ConvertContext, node: Node, gates: int, defaults: list[str], step: Step, cell: bool) -> Out:
    x, w, r = ctx.need(node, 0), ctx.need(node, 1), ctx.need(node, 2)
    if ctx.attr(node, "clip", None) is not None:
        raise FrontendError(f"{node.op_type} clip is not supported")
    layout = int(ctx.attr(node, "layout", 0))
    if layout:
        x = ctx.op("core.permute", x, perm=[1, 0, 2])
    seq, batch = int(x.type.shape[0]), int(x.type.shape[1])  # type: ignore[arg-type]
    lens = ctx.const_value(ctx.input(node, 4))
    if ctx.input(node, 4) is not None and (lens is None or np.any(lens != seq)):
        raise FrontendError(f"{node.op_type} with sequence lengths other than {seq} is not supported")
    direction = ctx.attr(node, "direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    hidden = int(r.type.shape[-1])  # type: ignore[arg-type]
    acts = _activations(ctx, node, defaults, dirs)
    b, h0, c0 = ctx.input(node, 3), ctx.input(node, 5), ctx.input(node, 6) if cell else None
    peep = ctx.input(node, 7) if cell else None
    if layout and h0 is not None:
        h0 = ctx.op("core.permute", h0, perm=[1, 0, 2])
    if layout and c0 is not None:
        c0 = ctx.op("core.permute", c0, perm=[1, 0, 2])
    zeros = ctx.op("core.full", shape=[batch, hidden], value=0.0, dtype=x.type.dtype)
    ys, hs, cs = [], [], []
    for d in range(dirs):
        p: dict[str, Value] = {
            "wt": ctx.op("core.permute", _row(ctx, w, d), perm=[1, 0]),
            "rt": ctx.op("core.permute", _row(ctx, r, d), perm=[1, 0]),
        }
        if b is not None:
            wb, rb = _gates(ctx, _row(ctx, b, d), 2)
            p["wb"], p["rb"] = wb, rb
        if peep is not None:
            p["peep"] = _row(ctx, peep, d)
        state = [zeros if h0 is None else _row(ctx, h0, d)]
        if cell:
            state.append(zeros if c0 is None else _row(ctx, c0, d))
        steps = range(seq - 1, -1, -1) if direction == "reverse" or d == 1 else range(seq)
        outs: dict[int, Value] = {}
        for t in steps:
            xt = _row(ctx, ctx.op("core.slice", x, axis=0, start=t, end=t + 1), 0)
            p["acts"] = acts[d]  # type: ignore[assignment]
            state = step(ctx, xt, state, p)
            outs[t] = state[0]
        ys.append(ctx.op("core.concat", *[ctx.op("core.reshape", outs[t], shape=[1, 1, batch, hidden])
                                          for t in range(seq)], axis=0))
        hs.append(ctx.op("core.reshape", state[0], shape=[1, batch, hidden]))
        if cell:
            cs.append(ctx.op("core.reshape", state[1], shape=[1, batch, hidden]))
    y = ys[0] if dirs == 1 else ctx.op("core.concat", *ys, axis=1)
    yh = hs[0] if dirs == 1 else ctx.op("core.concat", *hs, axis=0)
    yc = (cs[0] if dirs == 1 else ctx.op("core.concat", *cs, axis=0)) if cell else None
    if layout:
        y = ctx.op("core.permute", y, perm=[2, 0, 1, 3])
        yh = ctx.op("core.permute", yh, perm=[1, 0, 2])
        yc = ctx.op("core.permute", yc, perm=[1, 0, 2]) if yc is not None else None
    outs_all: Out = [y, yh, yc] if cell else [y, yh]
    return outs_all[:len(node.output)]


def _affine(ctx: ConvertContext, xt: Value, h: Value, p: dict[str, Value]) -> tuple[Value, Value]:
    """x W^T + Wb and h R^T + Rb."""
    xw = ctx.op("core.matmul", xt, p["wt"])
    hr = ctx.op("core.matmul", h, p["rt"])
    if "wb" in p:
        xw, hr = ctx.op("core.add", xw, p["wb"]), ctx.op("core.add", hr, p["rb"])
    return xw, hr


def _rnn_step(ctx: ConvertContext, xt: Value, state: list[Value], p: dict[str, Any]) -> list[Value]:
    # H = f(x W^T + H R^T + Wb + Rb)
    xw, hr = _affine(ctx, xt, state[0], p)
    return [p["acts"][0](ctx.op("core.add", xw, hr))]


def _gru_step_fn(linear_before_reset: bool) -> Step:
    def step(ctx: ConvertContext, xt: Value, state: list[Value], p: dict[str, Any]) -> list[Value]:
        # z, r = f(..); h~ = g(xh + (r*H) Rh^T + Rbh) or g(xh + r*(H Rh^T + Rbh)); H = (1-z) h~ + z H
        h = state[0]
        f, g = p["acts"]
        xw = ctx.op("core.matmul", xt, p["wt"])
        if "wb" in p:
            xw = ctx.op("core.add", xw, p["wb"])
        xz, xr, xh = _gates(ctx, xw, 3)
        rz, rr, rh = _gates(ctx, p["rt"], 3)
        bz, br, bh = _gates(ctx, p["rb"], 3) if "rb" in p else (None, None, None)

        def rec(v: Value, rw: Value, rb: Value | None) -> Value:
            out = ctx.op("core.matmul", v, rw)
            return out if rb is None else ctx.op("core.add", out, rb)

        z = f(ctx.op("core.add", xz, rec(h, rz, bz)))
        r = f(ctx.op("core.add", xr, rec(h, rr, br)))
        if linear_before_reset:
            cand = g(ctx.op("core.add", xh, ctx.op("core.mul", r, rec(h, rh, bh))))
        else:
            cand = g(ctx.op("core.add", xh, rec(ctx.op("core.mul", r, h), rh, bh)))
        keep = ctx.op("core.mul", z, h)
        return [ctx.op("core.add", ctx.op("core.mul", ctx.op("core.sub", like(ctx, 1, z), z), cand), keep)]

    return step


def _lstm_step(ctx: ConvertContext, xt: Value, state: list[Value], p: dict[str, Any]) -> list[Value]:
    # i, o, f = f(.. + P*C); c~ = g(..); C' = f*C + i*c~; H' = o*h(C')
    h, c = state
    f_act, g_act, h_act = p["acts"]
    xw, hr = _affine(ctx, xt, h, p)
    gi, go, gf, gc = _gates(ctx, ctx.op("core.add", xw, hr), 4)
    if "peep" in p:
        pi, po, pf = _gates(ctx, p["peep"], 3)
        gi = ctx.op("core.add", gi, ctx.op("core.mul", pi, c))
        gf = ctx.op("core.add", gf, ctx.op("core.mul", pf, c))
    i, f = f_act(gi), f_act(gf)
    c_new = ctx.op("core.add", ctx.op("core.mul", f, c), ctx.op("core.mul", i, g_act(gc)))
    if "peep" in p:
        go = ctx.op("core.add", go, ctx.op("core.mul", po, c_new))
    h_new = ctx.op("core.mul", f_act(go), h_act(c_new))
    return [h_new, c_new]


@onnx_op("RNN", since=14)
def _rnn(ctx: ConvertContext, node: Node) -> Out:
    return _run(ctx, node, 1, ["Tanh"], _rnn_step, cell=False)


@onnx_op("GRU", since=14)
def _gru(ctx: ConvertContext, node: Node) -> Out:
    step = _gru_step_fn(bool(ctx.attr(node, "linear_before_reset", 0)))
    return _run(ctx, node, 3, ["Sigmoid", "Tanh"], step, cell=False)


@onnx_op("LSTM", since=14)
def _lstm(ctx: ConvertContext, node: Node) -> Out:
    return _run(ctx, node, 4, ["Sigmoid", "Tanh", "Tanh"], _lstm_step, cell=True)
