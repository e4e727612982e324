"""``nn``: neural-network ops kept whole because kernels and fusions want them whole.

The references compute in the op's element type (float32 stays float32), reducing in the
same order numpy does; statistics of norms are taken in float32 like PyTorch's CPU kernels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optllm.ir.attributes import AttrKind, attr
from optllm.ir.diagnostics import TypeInferenceError
from optllm.ir.dialects._shapes import broadcast_shapes, norm_axis, require_float
from optllm.ir.ops import Cost, OpDef, Trait, register_op
from optllm.ir.types import DType, TensorType

PURE = frozenset({Trait.PURE})
EW = frozenset({Trait.PURE, Trait.ELEMENTWISE})
Arrays = Sequence[np.ndarray]
Attrs = Mapping[str, Any]
Env = Mapping[str, int]


@register_op
class Embedding(OpDef):
    """``%2 = nn.embedding %table, %ids : f32[B,S,768]`` — rows of ``table`` picked by ``ids``."""

    name = "nn.embedding"
    operands = ("table", "ids")

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        table, ids = types
        if table.rank != 2 or not ids.dtype.is_int:
            raise TypeInferenceError(f"nn.embedding needs a rank-2 table and integer ids, got {table}, {ids}")
        return [TensorType(ids.shape + (table.shape[1],), table.dtype)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        table, ids = inputs
        if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            raise IndexError(f"nn.embedding id out of range [0, {table.shape[0]})")
        return [table[ids]]


class _Norm(OpDef):
    """Normalise over the last ``ndim`` dims, then scale (and shift)."""

    attrs = {"eps": attr(AttrKind.FLOAT, 1e-5), "ndim": attr(AttrKind.INT, 1)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        x = types[0]
        require_float(x, self.name)
        nd = attrs["ndim"]
        if not 1 <= nd <= x.rank:
            raise TypeInferenceError(f"{self.name} ndim={nd} does not fit {x}")
        for t in types[1:]:
            if t.shape != x.shape[x.rank - nd:] or t.dtype != x.dtype:
                raise TypeInferenceError(f"{self.name} parameter {t} does not match the normalised dims of {x}")
        return [x]

    def cost(self, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: Attrs,
             env: Env) -> Cost:
        base = super().cost(in_types, out_types, attrs, env)
        return Cost(8.0 * in_types[0].numel(dict(env)), base.bytes_read, base.bytes_written)


def _eps(eps: float, dtype: np.dtype) -> np.ndarray:
    """eps in at least f32: a half-precision norm adds it in f32 (as PyTorch does), so a tiny
    eps such as 1e-12 does not round to 0 and turn a constant row into 0/0."""
    return np.asarray(eps, dtype if np.dtype(dtype).itemsize >= 4 else np.float32)


@register_op
class LayerNorm(_Norm):
    """``%3 = nn.layer_norm %x, %gamma, %beta {eps = 1.0e-05} : f32[B,S,768]``."""

    name = "nn.layer_norm"
    operands = ("x", "weight?", "bias?")

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x = inputs[0]
        axes = tuple(range(x.ndim - attrs["ndim"], x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        d = x - mean
        var = (d * d).mean(axis=axes, keepdims=True)
        y = d / np.sqrt(var + _eps(attrs["eps"], x.dtype))
        if len(inputs) > 1:
            y = y * inputs[1]
        if len(inputs) > 2:
            y = y + inputs[2]
        return [y.astype(x.dtype, copy=False)]


@register_op
class RmsNorm(_Norm):
    """``%2 = nn.rms_norm %x, %gamma {eps = 1.0e-06} : f32[B,S,512]`` — x / sqrt(mean(x²) + eps) · γ."""

    name = "nn.rms_norm"
    operands = ("x", "weight?")

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x = inputs[0]
        axes = tuple(range(x.ndim - attrs["ndim"], x.ndim))
        ms = (x * x).mean(axis=axes, keepdims=True)
        y = x * (1.0 / np.sqrt(ms + _eps(attrs["eps"], x.dtype))).astype(x.dtype)
        if len(inputs) > 1:
            y = y * inputs[1]
        return [y.astype(x.dtype, copy=False)]


@register_op
class Softmax(OpDef):
    """``%1 = nn.softmax %0 {axis = -1} : f32[B,12,S,S]`` — exp(x - max) / sum."""

    name = "nn.softmax"
    operands = ("x",)
    attrs = {"axis": attr(AttrKind.INT, -1), "log": attr(AttrKind.BOOL, False)}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        require_float(types[0], self.name)
        norm_axis(attrs["axis"], types[0].rank)
        return [types[0]]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x, ax = inputs[0], attrs["axis"]
        m = np.max(x, axis=ax, keepdims=True)
        m = np.where(np.isfinite(m), m, np.zeros_like(m))  # rows of -inf give NaN like torch
        e = np.exp(x - m)
        s = e.sum(axis=ax, keepdims=True)
        y = (x - m) - np.log(s) if attrs["log"] else e / s
        return [y.astype(x.dtype, copy=False)]


@register_op
class Gelu(OpDef):
    """``%1 = nn.gelu %0 {approximate = "tanh"} : f32[B,S,3072]`` — x·Φ(x) (erf or tanh form)."""

    name = "nn.gelu"
    operands = ("x",)
    attrs = {"approximate": attr(AttrKind.STR, "none")}
    traits = EW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        require_float(types[0], self.name)
        if attrs["approximate"] not in ("none", "tanh"):
            raise TypeInferenceError(f"nn.gelu approximate must be \"none\" or \"tanh\", got {attrs['approximate']!r}")
        return [types[0]]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x = inputs[0]
        dt = x.dtype
        if attrs["approximate"] == "tanh":
            c = np.asarray(math.sqrt(2.0 / math.pi), dt)
            inner = c * (x + np.asarray(0.044715, dt) * x * x * x)
            y = np.asarray(0.5, dt) * x * (np.asarray(1.0, dt) + np.tanh(inner))
        else:
            from scipy.special import erf

            y = x * np.asarray(0.5, dt) * (np.asarray(1.0, dt) + erf(x * np.asarray(1 / math.sqrt(2.0), dt)))
        return [y.astype(dt, copy=False)]


@register_op
class Silu(OpDef):
    """``%1 = nn.silu %0 : f32[B,S,1376]`` — x·sigmoid(x)."""

    name = "nn.silu"
    operands = ("x",)
    traits = EW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        require_float(types[0], self.name)
        return [types[0]]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        from scipy.special import expit

        x = inputs[0]
        return [(x * expit(x)).astype(x.dtype, copy=False)]


@register_op
class Relu(OpDef):
    """``%1 = nn.relu %0 : f32[N]`` — max(x, 0)."""

    name = "nn.relu"
    operands = ("x",)
    traits = EW

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        return [types[0]]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x = inputs[0]
        return [np.maximum(x, np.zeros((), x.dtype))]


MASKED_ROWS = ("zero", "nan")
"""``nn.attention``'s ``masked_rows`` settings: what a fully masked query row gives."""


@register_op
class Attention(OpDef):
    """Scaled dot-product attention with optional mask, causal masking and GQA::

        %o = nn.attention %q, %k, %v, %mask {scale = 0.125, causal = false} : f32[B,12,S,64]

    q: [..., Hq, L, E], k: [..., Hk, S, E], v: [..., Hk, S, Ev] with Hq a multiple of Hk
    (grouped-query attention repeats each k/v head Hq/Hk times). ``mask`` is bool (true =
    attend) or additive float, broadcast to [..., Hq, L, S]. ``scale`` defaults to 1/sqrt(E).

    A fully masked row — a query row whose every score is -inf after causal masking and the
    mask (bool all false, or an additive -inf on every key; a left-padded batch's padding
    rows) — gives, by ``masked_rows``:

    - ``"zero"`` (default): an output row of 0, as torch 2.13's ``scaled_dot_product_attention``
      (math and default backends, bool and float masks) and ONNX ``Attention`` (opset 23/24
      function body, onnxruntime 1.31) compute it;
    - ``"nan"``: NaN, as ``softmax`` over the row computes it (0/0): the eager chain
      ``softmax(q @ kᵀ · c + mask) @ v`` that the ``attention`` fusion keeps exact.

    An additive mask of finite values (HF eager's ``finfo.min``) never masks a row fully: its
    padding rows stay a uniform average of v under either setting. NaN in q, k or v stays NaN.
    """

    name = "nn.attention"
    operands = ("q", "k", "v", "mask?")
    attrs = {"scale": attr(AttrKind.FLOAT, optional=True), "causal": attr(AttrKind.BOOL, False),
             "masked_rows": attr(AttrKind.STR, "zero")}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        q, k, v = types[:3]
        require_float(q, self.name)
        if not (q.rank == k.rank == v.rank) or q.rank < 3:
            raise TypeInferenceError(f"nn.attention needs q, k, v of one rank >= 3, got {q}, {k}, {v}")
        if q.dtype != k.dtype or q.dtype != v.dtype:
            raise TypeInferenceError("nn.attention q, k, v must share one element type")
        if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] or k.shape[-3] != v.shape[-3]:
            raise TypeInferenceError(f"nn.attention shapes do not agree: q {q}, k {k}, v {v}")
        if attrs.get("masked_rows", "zero") not in MASKED_ROWS:
            raise TypeInferenceError(f"nn.attention masked_rows must be one of {', '.join(MASKED_ROWS)}, "
                                     f"got {attrs['masked_rows']!r}")
        hq, hk = q.shape[-3], k.shape[-3]
        if hq != hk and not (isinstance(hq, int) and isinstance(hk, int) and hk and hq % hk == 0):
            raise TypeInferenceError(f"nn.attention needs q heads ({hq}) to be a multiple of k/v heads ({hk})")
        batch = broadcast_shapes(q.shape[:-3], k.shape[:-3])
        if len(types) > 3:
            m = types[3]
            if m.dtype is not DType.bool and m.dtype != q.dtype:
                raise TypeInferenceError(f"nn.attention mask must be bool or {q.dtype}, got {m}")
            broadcast_shapes(m.shape, batch + (hq, q.shape[-2], k.shape[-2]))
        return [TensorType(batch + (hq, q.shape[-2], v.shape[-1]), q.dtype)]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        q, k, v = inputs[:3]
        dt = q.dtype
        rep = q.shape[-3] // k.shape[-3]
        if rep > 1:
            k = np.repeat(k, rep, axis=-3)
            v = np.repeat(v, rep, axis=-3)
        scale = attrs.get("scale")
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        s = np.matmul(q * np.asarray(scale, dt), np.swapaxes(k, -1, -2))
        L, S = s.shape[-2], s.shape[-1]
        if attrs["causal"]:
            keep = np.tril(np.ones((L, S), dtype=bool))
            s = np.where(keep, s, np.asarray(-np.inf, dt))
        if len(inputs) > 3:
            m = inputs[3]
            s = np.where(m, s, np.asarray(-np.inf, dt)) if m.dtype == np.bool_ else s + m
        mx = np.max(s, axis=-1, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, np.zeros_like(mx))
        e = np.exp(s - mx)
        total = e.sum(axis=-1, keepdims=True)
        if attrs.get("masked_rows", "zero") == "zero":  # only an all -inf row sums to 0 (its max gives exp(0) = 1)
            total = np.where(total == 0, np.asarray(np.inf, total.dtype), total)  # e / inf = 0
        p = e / total
        return [np.matmul(p.astype(dt, copy=False), v).astype(dt, copy=False)]

    def cost(self, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: Attrs,
             env: Env) -> Cost:
        base = super().cost(in_types, out_types, attrs, env)
        q = in_types[0].concrete_shape(dict(env))
        s = in_types[1].concrete_shape(dict(env))[-2]
        ev = in_types[2].concrete_shape(dict(env))[-1]
        rows = int(np.prod(q[:-1]))
        return Cost(2.0 * rows * s * (q[-1] + ev) + 5.0 * rows * s, base.bytes_read, base.bytes_written)


ACTIVATIONS = ("none", "gelu", "gelu_tanh", "silu", "relu", "tanh")


def apply_activation(y: np.ndarray, activation: str) -> np.ndarray:
    """The epilogue activations of ``nn.linear``, with the same numerics as the standalone ops."""
    if activation == "none":
        return y
    if activation in ("gelu", "gelu_tanh"):
        approx = "tanh" if activation == "gelu_tanh" else "none"
        return Gelu().reference([y], {"approximate": approx}, {})[0]
    if activation == "silu":
        return Silu().reference([y], {}, {})[0]
    if activation == "tanh":  # core.tanh's numerics: np.tanh in the input's dtype
        return np.asarray(np.tanh(y)).astype(y.dtype, copy=False)
    return Relu().reference([y], {}, {})[0]


@register_op
class Linear(OpDef):
    """GEMM with an epilogue — one kernel launch::

        %y = nn.linear %x, %w, %b, %r {bias = true, residual = true} : f32[B,S,768]

    y = act(x @ W + b) + r, where W is ``w`` ([K, N]) or, with ``transpose_w``, ``w``
    transposed (``w`` is [N, K], PyTorch's nn.Linear layout). ``bias`` ([N]) and ``residual``
    (the output's shape) are optional operands, present when the flag of the same name is true,
    in that order. ``activation`` is one of none, gelu, gelu_tanh, silu, relu, tanh.
    """

    name = "nn.linear"
    operands = ("x", "w", "bias?", "residual?")
    attrs = {"transpose_w": attr(AttrKind.BOOL, False), "bias": attr(AttrKind.BOOL, False),
             "residual": attr(AttrKind.BOOL, False), "activation": attr(AttrKind.STR, "none")}

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        x, w = types[0], types[1]
        want = 2 + int(attrs["bias"]) + int(attrs["residual"])
        if len(types) != want:
            raise TypeInferenceError(f"nn.linear with bias={attrs['bias']}, residual={attrs['residual']} "
                                     f"takes {want} operands, got {len(types)}")
        if attrs["activation"] not in ACTIVATIONS:
            raise TypeInferenceError(f"nn.linear activation must be one of {', '.join(ACTIVATIONS)}")
        require_float(x, self.name)
        if x.rank < 1 or w.rank != 2 or x.dtype != w.dtype:
            raise TypeInferenceError(f"nn.linear needs x [..., K] and a rank-2 w of one dtype, got {x}, {w}")
        k, n = (w.shape[1], w.shape[0]) if attrs["transpose_w"] else (w.shape[0], w.shape[1])
        if x.shape[-1] != k:
            raise TypeInferenceError(f"nn.linear contracts {x.shape[-1]} with {k} ({x} by {w})")
        out = TensorType(x.shape[:-1] + (n,), x.dtype)
        rest = list(types[2:])
        if attrs["bias"]:
            b = rest.pop(0)
            if b.shape != (n,) or b.dtype != x.dtype:
                raise TypeInferenceError(f"nn.linear bias must be {x.dtype}[{n}], got {b}")
        if attrs["residual"] and rest[0] != out:
            raise TypeInferenceError(f"nn.linear residual must be {out}, got {rest[0]}")
        return [out]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x, w = inputs[0], inputs[1]
        y = np.matmul(x, w.T if attrs["transpose_w"] else w)
        rest = list(inputs[2:])
        if attrs["bias"]:
            y = y + rest.pop(0)
        y = apply_activation(y, attrs["activation"])
        if attrs["residual"]:
            y = y + rest[0]
        return [y.astype(x.dtype, copy=False)]

    def cost(self, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: Attrs,
             env: Env) -> Cost:
        base = super().cost(in_types, out_types, attrs, env)
        k = in_types[0].concrete_shape(dict(env))[-1]
        return Cost(2.0 * out_types[0].numel(dict(env)) * k, base.bytes_read, base.bytes_written)


class _SkipNorm(_Norm):
    """A residual add fused into the norm that reads it: two results, the normalised sum and
    the sum itself (the residual stream flows on), like onnxruntime's SkipLayerNormalization."""

    num_results = 2
    norm: type[_Norm] = _Norm

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        x, skip = types[0], types[1]
        if skip != x:
            raise TypeInferenceError(f"{self.name} needs x and skip of one type, got {x} and {skip}")
        out = super().infer([x, *types[2:]], attrs)[0]
        return [out, out]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        s = inputs[0] + inputs[1]  # in the element type, exactly as core.add computes it
        return [self.norm().reference([s, *inputs[2:]], attrs, env)[0], s]

    def cost(self, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: Attrs,
             env: Env) -> Cost:
        base = super().cost(in_types, out_types, attrs, env)
        return Cost(9.0 * in_types[0].numel(dict(env)), base.bytes_read, base.bytes_written)


@register_op
class SkipLayerNorm(_SkipNorm):
    """``%y, %s = nn.skip_layer_norm %x, %skip, %gamma, %beta : f32[B,S,768], f32[B,S,768]`` —
    s = x + skip, y = layer_norm(s)·γ + β."""

    name = "nn.skip_layer_norm"
    operands = ("x", "skip", "weight?", "bias?")
    norm = LayerNorm


@register_op
class SkipRmsNorm(_SkipNorm):
    """``%y, %s = nn.skip_rms_norm %x, %skip, %gamma {eps = 1.0e-06} : f32[B,S,512], f32[B,S,512]`` —
    s = x + skip, y = rms_norm(s)·γ."""

    name = "nn.skip_rms_norm"
    operands = ("x", "skip", "weight?")
    norm = RmsNorm


@register_op
class Rope(OpDef):
    """``%y = nn.rope %x, %cos, %sin : f32[B,8,S,64]`` — rotary position embedding, rotate-half
    form: x·cos + cat(-x[..., d/2:], x[..., :d/2])·sin, with cos and sin broadcast to x."""

    name = "nn.rope"
    operands = ("x", "cos", "sin")

    def infer(self, types: Sequence[TensorType], attrs: Attrs) -> list[TensorType]:
        x, cos, sin = types
        require_float(x, self.name)
        if cos.dtype != x.dtype or sin.dtype != x.dtype:
            raise TypeInferenceError(f"nn.rope cos and sin must be {x.dtype}, got {cos}, {sin}")
        d = x.shape[-1] if x.rank else 0
        if not isinstance(d, int) or d % 2:
            raise TypeInferenceError(f"nn.rope needs a static, even last dim, got {x}")
        if broadcast_shapes(x.shape, cos.shape, sin.shape) != tuple(x.shape):
            raise TypeInferenceError(f"nn.rope cos {cos} and sin {sin} must broadcast to x {x}")
        return [x]

    def reference(self, inputs: Arrays, attrs: Attrs, env: Env) -> list[np.ndarray]:
        x, cos, sin = inputs
        h = x.shape[-1] // 2
        rotated = np.concatenate([np.negative(x[..., h:]), x[..., :h]], axis=-1)
        return [np.add(np.multiply(x, cos), np.multiply(rotated, sin)).astype(x.dtype, copy=False)]

    def cost(self, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: Attrs,
             env: Env) -> Cost:
        base = super().cost(in_types, out_types, attrs, env)
        return Cost(4.0 * out_types[0].numel(dict(env)), base.bytes_read, base.bytes_written)
