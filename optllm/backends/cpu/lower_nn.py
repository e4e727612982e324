"""CPU lowering of the row-wise ``nn`` ops: norms, softmax, attention, RoPE, and norm regions.

Each op maps to one template kernel called on views in place::

    %32, %33 = nn.skip_layer_norm %31, %6, %g, %b    -> norm_kernel("layer", skip, write_sum)
    %25 = nn.attention %24, %20, %22, %11             -> attention_kernel(mask="bool"): q/k/v
                                                         read through their [B,H,S,D] strides
    %7 = fused.region ... {kind = "norm"}             -> the prologue as one elementwise kernel
                                                         into a row buffer, then the norm kernel
"""

from __future__ import annotations

import math

import numpy as np

from optllm.backends.cpu.lower import CpuLoweringError, Lowering, _op_text, handler
from optllm.backends.kernels.kir import ScalarType
from optllm.backends.kernels.llvm.runtime import get_num_threads
from optllm.backends.kernels.templates.attention import attention_kernel, default_tile
from optllm.backends.kernels.templates.rope import rope_kernel
from optllm.backends.kernels.templates.rownorm import norm_kernel
from optllm.backends.kernels.templates.softmax import softmax_kernel
from optllm.ir.ops import Operation
from optllm.runtime.program import Arg
from optllm.runtime.views import View, broadcast_strides

_NORMS = {"nn.layer_norm": ("layer", False), "nn.rms_norm": ("rms", False),
          "nn.skip_layer_norm": ("layer", True), "nn.skip_rms_norm": ("rms", True)}


def _flatten_norm_rows(lw: Lowering, x: View, ndim: int, op: Operation) -> tuple[View, tuple[int, int, int]]:
    if ndim > 1:
        shape = x.shape[:x.rank - ndim] + (int(np.prod(x.shape[x.rank - ndim:])),)
        flat = x.reshape(shape)
        x = flat if flat is not None else lw.copy(x, op).reshape(shape)  # type: ignore[assignment]
    return lw.rows_of(x, op)


def norm_step(lw: Lowering, op: Operation, x: View, params: list[View], out: View,
              skip: View | None = None, sum_out: View | None = None) -> None:
    kind, _ = _NORMS[op.name]
    ndim = op.attrs["ndim"]
    x, (rows, x_rs, n) = _flatten_norm_rows(lw, x, ndim, op)
    out_flat, (_, out_rs, _) = _flatten_norm_rows(lw, out, ndim, op)
    has_weight = len(params) > 0
    has_bias = len(params) > 1
    args: dict[str, Arg] = {"out": Arg(out_flat), "x": Arg(x), "rows": Arg(value=rows), "n": Arg(value=n),
                            "x_rs": Arg(value=x_rs), "out_rs": Arg(value=out_rs), "eps": Arg(value=float(op.attrs["eps"]))}
    if skip is not None:
        skip, (_, skip_rs, _) = _flatten_norm_rows(lw, skip, ndim, op)
        args["skip"], args["skip_rs"] = Arg(skip), Arg(value=skip_rs)
    if sum_out is not None:
        sum_flat, (_, sum_rs, _) = _flatten_norm_rows(lw, sum_out, ndim, op)
        args["sum_out"], args["sum_rs"] = Arg(sum_flat), Arg(value=sum_rs)
    if has_weight:
        args["weight"] = Arg(params[0])
    if has_bias:
        args["bias"] = Arg(params[1])
    k = norm_kernel(kind, ScalarType.of_numpy(x.dtype), skip=skip is not None, has_weight=has_weight,
                    has_bias=has_bias, write_sum=sum_out is not None)
    lw.step(k, args, op)


@handler(*_NORMS)
def _norm(lw: Lowering, op: Operation) -> None:
    kind, skip = _NORMS[op.name]
    x = lw.view(op.operands[0])
    out = lw.alloc(op.results[0], op.name)
    if out.rows() is None:
        out = lw.fresh(out, op.name)
    if skip:
        sum_out = lw.alloc(op.results[1], op.name + " sum")
        if sum_out.rows() is None:
            sum_out = lw.fresh(sum_out, op.name + " sum")
        params = [lw.view(p) for p in op.operands[2:]]
        norm_step(lw, op, x, params, out, skip=lw.view(op.operands[1]), sum_out=sum_out)
        lw.inplace(sum_out, [lw.view(op.operands[1])])  # the residual stream flows on in place
        lw.inplace(out, [x])
        lw.views[id(op.results[1])] = sum_out
    else:
        norm_step(lw, op, x, [lw.view(p) for p in op.operands[1:]], out)
        lw.inplace(out, [x])
    lw.views[id(op.results[0])] = out


def norm_region(lw: Lowering, op: Operation) -> None:
    """``fused.region{kind=norm}``: an elementwise prologue feeding one norm, its last op (a
    plain or a skip norm). The prologue values the norm reads (x, and skip) are computed by one
    elementwise kernel; the norm kernel then reads them as rows."""
    body = op.regions[0]
    last = list(body)[-1]
    returned = list(body.outputs)
    if last.name not in _NORMS or not returned or any(r.owner is not last for r in returned):
        raise CpuLoweringError(f"a norm region must end in a norm op whose results it returns\n  at {_op_text(op)}")
    _, skip = _NORMS[last.name]
    n_in = 2 if skip else 1
    inputs: list[View | None] = []
    computed = []
    for v in last.operands[:n_in]:
        inputs.append(lw.view(op.operands[v.index]) if v.is_arg else None)
        if not v.is_arg:
            computed.append(v)
    if computed:
        views = [lw.alloc(v, "norm prologue") for v in computed]
        views = [lw.fresh(w, "norm prologue") if w.rows() is None else w for w in views]
        lw._lower_region_body(op, body, computed, views)
        it = iter(views)
        inputs = [w if w is not None else next(it) for w in inputs]
    params = []
    for p in last.operands[n_in:]:
        if not p.is_arg:
            raise CpuLoweringError(f"norm region parameters must be region arguments\n  at {_op_text(op)}")
        params.append(lw.view(op.operands[p.index]))
    result_of = {id(r): res for r, res in zip(returned, op.results)}
    outs = []
    for r in last.results:
        res = result_of.get(id(r))
        view = lw.alloc(res, "norm region") if res is not None else lw.fresh(inputs[0], "norm sum")  # type: ignore[arg-type]
        outs.append(lw.fresh(view, "norm region") if view.rows() is None else view)
    x = inputs[0]
    assert x is not None
    if skip:
        norm_step(lw, last, x, params, outs[0], skip=inputs[1], sum_out=outs[1])
    else:
        norm_step(lw, last, x, params, outs[0])
    for r, res in zip(returned, op.results):
        lw.views[id(res)] = outs[list(last.results).index(r)]




@handler("nn.softmax")
def _softmax(lw: Lowering, op: Operation) -> None:
    """Rows over the last axis; another axis is permuted last (a view, copied only if its rows
    are not unit-stride) and the result is that permuted layout, viewed back."""
    x = lw.view(op.operands[0])
    axis = op.attrs["axis"] % max(x.rank, 1)
    k = softmax_kernel(ScalarType.of_numpy(x.dtype), log=bool(op.attrs["log"]))
    if x.rank > 0 and axis != x.rank - 1:
        perm = [i for i in range(x.rank) if i != axis] + [axis]
        inv = [perm.index(i) for i in range(x.rank)]
        xp, (rows, x_rs, n) = lw.rows_of(x.permute(perm), op)
        outp = lw.fresh(xp, "softmax")
        lw.step(k, {"out": Arg(outp), "x": Arg(xp), "rows": Arg(value=rows), "n": Arg(value=n),
                    "x_rs": Arg(value=x_rs), "out_rs": Arg(value=n)}, op)
        lw.views[id(op.results[0])] = outp.permute(inv)
        return
    x, (rows, x_rs, n) = lw.rows_of(x, op)
    out = lw.alloc(op.results[0], "softmax")
    if out.rows() is None:
        out = lw.fresh(out, "softmax")
    _, out_rs, _ = out.rows()  # type: ignore[misc]
    lw.step(k, {"out": Arg(out), "x": Arg(x), "rows": Arg(value=rows), "n": Arg(value=n),
                "x_rs": Arg(value=x_rs), "out_rs": Arg(value=out_rs)}, op)
    lw.inplace(out, [x])
    lw.views[id(op.results[0])] = out


def _batch3(v: View, batch: tuple[int, ...], what: str, op: Operation) -> tuple[int, list[int]]:
    """Collapse the batch dims of a [..., H, L, E] view (broadcast to ``batch``) into one dim;
    returns (batch stride, [head, row, col strides])."""
    lead = len(batch)
    bstr = broadcast_strides(View(v.storage, v.offset, v.shape[:-3], v.strides[:-3], v.dtype), batch) if lead else ()
    dims = [(d, s) for d, s in zip(batch, bstr) if d != 1]
    for (_d0, s0), (d1, s1) in zip(dims, dims[1:]):
        if s0 != s1 * d1:
            raise CpuLoweringError(f"nn.attention {what}: batch dims cannot be collapsed\n  at {_op_text(op)}")
    return (dims[-1][1] if dims else 0), list(v.strides[-3:])


@handler("nn.attention")
def _attention(lw: Lowering, op: Operation) -> None:
    q, k, v = (lw.view(x) for x in op.operands[:3])
    q, k, v = (t if t.strides[-1] == 1 else lw.copy(t, op) for t in (q, k, v))
    out = lw.alloc(op.results[0], "attention")
    if out.strides[-1] != 1:
        out = lw.fresh(out, "attention")
    batch = out.shape[:-3]
    nb = int(np.prod(batch, dtype=np.int64)) if batch else 1
    hq, L, E = q.shape[-3:]
    hk, S, Ev = k.shape[-3], k.shape[-2], v.shape[-1]
    args: dict[str, Arg] = {"out": Arg(out), "q": Arg(q), "k": Arg(k), "v": Arg(v)}
    for name, t in (("q", q), ("k", k), ("v", v), ("o", out)):
        b, s = _batch3(t, batch, name, op)
        for d, st in enumerate([b, s[0], s[1]]):
            args[f"{name}_s{d}"] = Arg(value=int(st))
    mask_kind = None
    if len(op.operands) > 3:
        m = lw.view(op.operands[3])
        mask_kind = "bool" if m.dtype == np.bool_ else "additive"
        full = batch + (hq, L, S)
        ms = broadcast_strides(m, full)
        mv = View(m.storage, m.offset, full, ms, m.dtype)
        mb, _ = _batch3(mv, batch, "mask", op)
        args["mask"] = Arg(mv)
        for d, st in enumerate([mb, *ms[-3:]]):
            args[f"m_s{d}"] = Arg(value=int(st))
    tile = default_tile(L, S, lw.threads, batch_heads=nb * hq)
    team = max(lw.threads, get_num_threads())  # the kernel indexes scratch by the running team's ids
    scratch = lw.program.new_storage("arena", team * tile * S * 4, what="attention scratch")
    args["scratch"] = Arg(View(scratch.id, 0, (team * tile * S,), (1,), np.dtype(np.float32)))
    scale = op.attrs.get("scale")
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    for name, val in (("nb", nb), ("hq", hq), ("hk", hk), ("L", L), ("S", S), ("E", E), ("Ev", Ev),
                      ("tile", tile), ("scale", scale)):
        args[name] = Arg(value=val)
    kern = attention_kernel(ScalarType.of_numpy(q.dtype), mask=mask_kind, causal=bool(op.attrs["causal"]),
                            masked_rows=str(op.attrs.get("masked_rows", "zero")))
    lw.step(kern, args, op)
    lw.views[id(op.results[0])] = out


@handler("nn.rope")
def _rope(lw: Lowering, op: Operation) -> None:
    x, cos, sin = (lw.view(t) for t in op.operands)
    if x.strides[-1] != 1:
        x = lw.copy(x, op)
    cos, sin = (t if broadcast_strides(t, x.shape)[-1] == 1 else lw.copy(t, op) for t in (cos, sin))
    out = lw.alloc(op.results[0], "rope")
    if out.strides[-1] != 1:
        out = lw.fresh(out, "rope")
    rank = x.rank - 1
    args: dict[str, Arg] = {"out": Arg(out), "x": Arg(x), "cos": Arg(cos), "sin": Arg(sin),
                            "n": Arg(value=x.shape[-1])}
    for d in range(rank):
        args[f"d{d}"] = Arg(value=x.shape[d])
    for name, t in (("x", x), ("cos", cos), ("sin", sin), ("out", out)):
        st = broadcast_strides(t, x.shape)
        for d in range(rank):
            args[f"{name}_s{d}"] = Arg(value=int(st[d]))
    lw.step(rope_kernel(ScalarType.of_numpy(x.dtype), rank), args, op)
    lw.views[id(op.results[0])] = out
