"""``fold-linear-chain``: fold consecutive linear maps into ``nn.linear`` GEMMs and their weights.

Every pattern rewrites a chain of linear maps into fewer ones; the new weights are computed
once, in float64, and stored through ``ConstantTable.add`` (the old ones are left to ``dce``).
All folds are exact in real arithmetic; in floating point they reorder roundings, so outputs
agree within a few ulps (power-of-two scales such as the attention 1/8 stay bit-exact).

Weights that also feed something other than a GEMM (tied embeddings: GPT-2's ``lm_head``) are
never rescaled, so a fold never keeps two copies of a large matrix alive.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from optllm.ir.graph import Module
from optllm.ir.ops import Operation
from optllm.ir.symbolic import is_static
from optllm.ir.types import TensorType
from optllm.ir.values import Value
from optllm.passes.base import Pass, PassContext, PassResult, option
from optllm.passes.rewrite import Match, Pattern, Rewriter, apply_patterns_greedily, report_greedy
from optllm.passes.value_matchers import channel_vector, constant_array, is_constant, sole_user, strip_views, users_only

log = logging.getLogger(__name__)

MergeMode = Literal["auto", "always", "never"]
GEMM_READERS = frozenset({"core.matmul", "core.permute", "nn.linear"})


# -- weights -----------------------------------------------------------------------------------
class Weights:
    """The module's constants as the patterns see them: [K, N] float64 views, tied names, and
    new weights added to the table."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.tied = _tied_constants(module)

    def array(self, v: Value) -> np.ndarray | None:
        """A float64 copy of the constant ``v``."""
        arr = constant_array(self.module, v)
        return None if arr is None else arr.astype(np.float64)

    def gemm(self, op: Operation, native: bool = False) -> tuple[np.ndarray, np.ndarray | None] | str:
        """(W as [K, N], bias or None) of an ``nn.linear`` whose parameters are constants; with
        ``native``, W is the stored array itself (read-only, its own element type), for folds
        that compute blockwise (``scale_rows``, ``vec_mat``)."""
        wt = op.operands[1]
        if wt.owner is not None and wt.owner.name == "core.weight" and wt.owner.attrs["name"] in self.tied:
            return "the weight is tied to a non-GEMM use (folding would keep two copies)"
        w = constant_array(self.module, wt) if native else self.array(wt)
        if w is None:
            return "the weight is not a constant"
        if not op.attrs["bias"]:
            return (w.T if op.attrs["transpose_w"] else w), None
        b = self.array(op.operands[2])
        if b is None:
            return "the bias is not a constant"
        return (w.T if op.attrs["transpose_w"] else w), b

    def add(self, rewriter: Rewriter, before: Operation, arr: np.ndarray, hint: str, like: TensorType) -> Value:
        """A ``core.weight`` for ``arr`` (cast to ``like``'s dtype) created before ``before``."""
        # one conversion straight to C order (astype keeps a transposed view's F order, and the
        # table would then copy it again)
        name = self.module.constants.add(np.ascontiguousarray(arr, dtype=like.dtype.to_numpy()), hint)
        return rewriter.create(before, "core.weight", [], {"name": name},
                               result_types=[self.module.constants.type_of(name)]).result


def _tied_constants(module: Module) -> set[str]:
    """Constants some op other than a GEMM (or the permute feeding one) reads."""
    tied: set[str] = set()
    for op in module.walk():
        if op.name == "core.weight" and any(u.name not in GEMM_READERS for u in op.result.users):
            tied.add(op.attrs["name"])
    return tied


def _hint(v: Value, suffix: str) -> str:
    op = v.owner
    base = op.attrs["name"] if op is not None and op.name == "core.weight" else (op.loc if op else "") or "w"
    return f"{base}.{suffix}"


def plain_linear(op: Operation | None) -> bool:
    """An ``nn.linear`` with no activation and no residual: a purely affine map."""
    return (op is not None and op.name == "nn.linear" and not op.attrs["residual"]
            and op.attrs["activation"] == "none")


def rebuild_linear(rewriter: Rewriter, weights: Weights, old: Operation, x: Value, w: np.ndarray,
                   b: np.ndarray | None, suffix: str) -> Operation:
    """A copy of ``old`` reading ``x`` with new W ([K, N]) and bias, in ``old``'s weight layout."""
    wt = old.operands[1]
    layout = w.T if old.attrs["transpose_w"] else w
    operands = [x, weights.add(rewriter, old, layout, _hint(wt, suffix), wt.type)]
    if b is not None:
        like = TensorType((b.shape[0],), wt.type.dtype)
        hint = _hint(old.operands[2], suffix) if old.attrs["bias"] else _hint(wt, "bias")
        operands.append(weights.add(rewriter, old, b, hint, like))
    if old.attrs["residual"]:
        operands.append(old.operands[-1])
    attrs = dict(old.attrs, bias=b is not None)
    return rewriter.create(old, "nn.linear", operands, attrs)


def _weight_operand(b: Value) -> tuple[Value, bool] | None:
    """(weight, transposed) for a GEMM right operand: a rank-2 constant or permute{[1,0]} of one."""
    op = b.owner
    if op is not None and op.name == "core.permute" and list(op.attrs["perm"]) == [1, 0]:
        inner = op.operands[0]
        return (inner, True) if is_constant(inner) else None
    return (b, False) if is_constant(b) and b.type.rank == 2 else None


# -- patterns ----------------------------------------------------------------------------------
class FoldPattern(Pattern):
    def __init__(self, weights: Weights) -> None:
        self.w = weights


class MatmulToLinear(FoldPattern):
    # matmul(x, W) -> linear(x, W);  matmul(x, permute(W, [1,0])) -> linear{transpose_w}(x, W)
    name = "matmul-to-linear"
    root = "core.matmul"

    def match(self, op: Operation) -> Match | str:
        found = _weight_operand(op.operands[1])
        if found is None:
            return "rhs is not a constant rank-2 weight (or permute{[1,0]} of one)"
        w, transposed = found
        if w.type.rank != 2 or w.type.dtype != op.result.type.dtype:
            return f"weight {w.type} is not a rank-2 {op.result.type.dtype} matrix"
        return Match(op, w=w, transposed=transposed)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        new = rewriter.create(match.op, "nn.linear", [match.op.operands[0], match.w],
                              {"transpose_w": match.transposed})
        rewriter.replace_op(match.op, new.result)


class FlattenFold(FoldPattern):
    # reshape(linear(reshape(x, [M, K])), [..., N]) -> linear(x)   (x: [..., K], rows kept in order)
    name = "flatten-fold"
    root = "core.reshape"

    def match(self, op: Operation) -> Match | str:
        lin = op.operands[0].owner
        if lin is None or lin.name != "nn.linear" or lin.attrs["residual"]:
            return "operand is not an nn.linear without residual"
        if sole_user(lin.result) is not op:
            return "the linear has other users"
        inner = lin.operands[0].owner
        if inner is None or inner.name != "core.reshape":
            return "the linear's input is not a core.reshape"
        x = inner.operands[0]
        if x.type.rank < 1 or x.type.shape[-1] != lin.operands[0].type.shape[-1]:
            return "the input reshape changes the contracted dim"
        if tuple(op.result.type.shape) != tuple(x.type.shape[:-1]) + (lin.result.type.shape[-1],):
            return "the output reshape does not restore the input's leading dims"
        return Match(op, lin=lin, x=x)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        lin = match.lin
        new = rewriter.create(lin, "nn.linear", [match.x, *lin.operands[1:]], lin.attrs)
        rewriter.replace_op(match.op, new.result)


def _affine_operand(op: Operation) -> Iterator[tuple[Operation, Value, Value]]:
    """For a binary ``op``: (linear, its result, the other operand) for each operand that is an
    affine ``nn.linear`` read only by ``op`` and of ``op``'s result type (either order)."""
    for lin_v, c in ((op.operands[0], op.operands[1]), (op.operands[1], op.operands[0])):
        lin = lin_v.owner
        if lin is not None and plain_linear(lin) and sole_user(lin_v) is op and lin_v.type == op.result.type:
            yield lin, lin_v, c


class BiasFold(FoldPattern):
    # add(linear(x, W, b), c) -> linear(x, W, b + c)   (c a constant per-channel vector)
    name = "bias-fold"
    root = "core.add"

    def match(self, op: Operation) -> Match | str:
        why = "no operand is an affine nn.linear used only here"
        for lin, lin_v, c in _affine_operand(op):
            if not lin.attrs["bias"] and c.type == TensorType((lin_v.type.shape[-1],), lin_v.type.dtype):
                return Match(op, lin=lin, c=c, bias=None)  # c becomes the bias as it is
            arr = self.w.array(c)
            vec = None if arr is None else channel_vector(arr, lin_v.type)
            if vec is None:
                why = "the other operand is not a constant per-channel vector"
                continue
            old = self.w.array(lin.operands[2]) if lin.attrs["bias"] else np.zeros_like(vec)
            if old is None:
                why = "the linear's bias is not a constant"
                continue
            return Match(op, lin=lin, c=c, bias=old + vec)
        return why

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        lin, at = match.lin, match.op  # at the add: c may be defined after the linear
        if match.bias is None:
            new = rewriter.create(at, "nn.linear", [*lin.operands[:2], match.c], dict(lin.attrs, bias=True))
        else:
            wt = lin.operands[1]
            like = TensorType((match.bias.shape[0],), wt.type.dtype)
            b = self.w.add(rewriter, at, match.bias, _hint(wt, "bias"), like)
            new = rewriter.create(at, "nn.linear", [*lin.operands[:2], b], dict(lin.attrs, bias=True))
        rewriter.replace_op(match.op, new.result)


class ScaleOutput(FoldPattern):
    # mul(linear(x, W, b), c) -> linear(x, W·diag(c), b·c)
    name = "scale-output"
    root = "core.mul"

    def match(self, op: Operation) -> Match | str:
        why = "no operand is an affine nn.linear used only here"
        for lin, lin_v, c in _affine_operand(op):
            arr = self.w.array(c)
            vec = None if arr is None else channel_vector(arr, lin_v.type)
            params = self.w.gemm(lin)
            if vec is None or isinstance(params, str):
                why = params if isinstance(params, str) else "the scale is not a constant per-channel vector"
                continue
            w, b = params
            return Match(op, lin=lin, w=w * vec, b=None if b is None else b * vec)
        return why

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        new = rebuild_linear(rewriter, self.w, match.lin, match.lin.operands[0], match.w, match.b, "scaled")
        rewriter.replace_op(match.op, new.result)


ROW_BLOCK_BYTES = 8 << 20


def _row_blocks(w: np.ndarray) -> Iterator[slice]:
    rows = max(1, ROW_BLOCK_BYTES // max(1, 8 * w.shape[1]))
    for i in range(0, w.shape[0], rows):
        yield slice(i, i + rows)


def scale_rows(scale: np.ndarray, w: np.ndarray) -> np.ndarray:
    """diag(scale)·W in W's element type and memory order, computed in float64 one block of
    rows at a time: each element is rounded once, as from a whole float64 product, but a fold
    of a 125 MB lm_head holds its result and one block, not two 250 MB float64 copies."""
    out = np.empty_like(w)  # order "K": a transposed view gives back the stored layout
    for rows in _row_blocks(w):
        out[rows] = w[rows].astype(np.float64) * scale[rows, None]
    return out


def vec_mat(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """v·W in float64, one block of W's rows at a time."""
    acc = np.zeros(w.shape[1], np.float64)
    for rows in _row_blocks(w):
        acc += v[rows] @ w[rows].astype(np.float64)
    return acc


def _gemm_readers(weights: Weights, v: Value,
                  native: bool = False) -> list[tuple[Operation, np.ndarray, np.ndarray | None]] | str:
    """Each reader of ``v`` with its constant parameters, when every reader is an nn.linear
    reading ``v`` as its input x only (W as stored with ``native``, see ``Weights.gemm``)."""
    users = users_only(v)
    if users is None:
        return "the value is a graph output or unused"
    out = []
    for u in users:
        if u.name != "nn.linear" or any(use.index != 0 for use in v.uses if use.op is u):
            return f"a {u.name} reads it (not as the input of an nn.linear)"
        params = weights.gemm(u, native)
        if isinstance(params, str):
            return params
        out.append((u, *params))
    return out


class ScaleInput(FoldPattern):
    # linear(mul(x, c), W, b) -> linear(x, diag(c)·W, b)   (for every linear reading the mul)
    name = "scale-input"
    root = "core.mul"

    def match(self, op: Operation) -> Match | str:
        readers = _gemm_readers(self.w, op.result, native=True)
        if isinstance(readers, str):
            return readers
        for x, c in ((op.operands[0], op.operands[1]), (op.operands[1], op.operands[0])):
            arr = self.w.array(c)
            vec = None if arr is None else channel_vector(arr, op.result.type)
            if vec is not None and x.type == op.result.type:
                return Match(op, x=x, readers=[(u, scale_rows(vec, w), b) for u, w, b in readers])
        return "no operand is a constant per-channel scale of the other"

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        for lin, w, b in match.readers:
            new = rebuild_linear(rewriter, self.w, lin, match.x, w, b, "scaled")
            rewriter.replace_op(lin, new.result)


class NormAffine(FoldPattern):
    # linear(norm(x)·g + β, W, b) -> linear(norm(x), diag(g)·W, β·W + b)
    name = "norm-affine"
    root = "nn.layer_norm"

    def match(self, op: Operation) -> Match | str:
        if len(op.operands) < 2 or op.attrs["ndim"] != 1:
            return "the norm has no affine parameters (or normalises more than one dim)"
        params = [self.w.array(p) for p in op.operands[1:]]
        if any(p is None for p in params):
            return "gamma/beta are not constants"
        readers = _gemm_readers(self.w, op.result, native=True)
        if isinstance(readers, str):
            return readers
        gamma, beta = params[0], params[1] if len(params) > 1 else None
        assert gamma is not None
        folded = []
        for u, w, b in readers:
            shift = None if beta is None else vec_mat(beta, w)
            bias = shift if b is None else b if shift is None else b + shift
            folded.append((u, scale_rows(gamma, w), bias))
        return Match(op, readers=folded)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        norm = rewriter.create(match.op, match.op.name, [match.op.operands[0]], match.op.attrs)
        for lin, w, b in match.readers:
            new = rebuild_linear(rewriter, self.w, lin, norm.result, w, b, "affine")
            rewriter.replace_op(lin, new.result)


class RmsNormAffine(NormAffine):
    # linear(rms_norm(x)·g, W, b) -> linear(rms_norm(x), diag(g)·W, b)
    root = "nn.rms_norm"


def _q_columns(q: Value) -> tuple[Operation, int, int] | str:
    """The nn.linear whose output columns [lo, hi) are, through single-use views, all of ``q``."""
    if sole_user(q) is None:
        return "q has other readers than the attention"
    v, _ = strip_views(q)
    lo = hi = -1
    src = v.owner
    if src is not None and src.name == "core.split" and sole_user(src.operands[0]) is src:
        x = src.operands[0]
        if src.attrs["axis"] % x.type.rank != x.type.rank - 1 or not all(is_static(s) for s in src.attrs["sizes"]):
            return "q is split off its projection along another axis than the columns"
        sizes = [int(s) for s in src.attrs["sizes"]]
        lo = sum(sizes[:v.index])
        hi = lo + sizes[v.index]
        v = x
    lin = v.owner
    if not plain_linear(lin) or (lo < 0 and sole_user(v) is None):
        return "q does not come (through views) from an affine nn.linear used only there"
    assert lin is not None
    if lo < 0:
        lo, hi = 0, int(lin.result.type.shape[-1])  # type: ignore[arg-type]
    return lin, lo, hi


class AttentionScale(FoldPattern):
    # attention(q = linear(x, W, b)[:, cols], scale=s) -> attention(linear(x, W', b'), scale=1), W'[:, cols] = s·W
    name = "attention-scale"
    root = "nn.attention"

    def match(self, op: Operation) -> Match | str:
        e = op.operands[0].type.shape[-1]
        scale = op.attrs.get("scale")
        if scale is None and not is_static(e):
            return "default scale with a symbolic head dim"
        scale = 1.0 / math.sqrt(int(e)) if scale is None else scale  # type: ignore[arg-type]
        if scale == 1.0:
            return "the scale is already 1"
        found = _q_columns(op.operands[0])
        if isinstance(found, str):
            return found
        lin, lo, hi = found
        params = self.w.gemm(lin)
        if isinstance(params, str):
            return params
        w, b = params
        col = np.ones(w.shape[1])
        col[lo:hi] = scale
        return Match(op, lin=lin, w=w * col, b=None if b is None else b * col)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        lin = rebuild_linear(rewriter, self.w, match.lin, match.lin.operands[0], match.w, match.b, "qscaled")
        rewriter.replace_op(match.lin, lin.result)
        att = rewriter.create(match.op, "nn.attention", match.op.operands, dict(match.op.attrs, scale=1.0))
        rewriter.replace_op(match.op, att.result)


def merge_lowers_cost(k: int, h: int, n: int) -> bool:
    """x[K] -> [H] -> [N] as one [K, N] GEMM does less work: K·N < K·H + H·N per row (flops and
    weight bytes are both proportional)."""
    return k * n < k * h + h * n


class LinearMerge(FoldPattern):
    # linear(linear(x, W1, b1), W2, b2) -> linear(x, W1·W2, b1·W2 + b2)
    name = "linear-merge"
    root = "nn.linear"

    def __init__(self, weights: Weights, mode: MergeMode) -> None:
        super().__init__(weights)
        self.mode = mode

    def match(self, op: Operation) -> Match | str:
        if self.mode == "never":
            return "merge-linear=never"
        inner = op.operands[0].owner
        if not plain_linear(inner) or sole_user(op.operands[0]) is not op:
            return "the input is not an affine nn.linear used only here"
        assert inner is not None
        outer, first = self.w.gemm(op), self.w.gemm(inner)
        if isinstance(outer, str) or isinstance(first, str):
            return outer if isinstance(outer, str) else str(first)
        (w2, b2), (w1, b1) = outer, first
        k, h, n = w1.shape[0], w1.shape[1], w2.shape[1]
        if self.mode == "auto" and not merge_lowers_cost(k, h, n):
            return f"merging [{k}x{h}]·[{h}x{n}] would not lower the cost (merge-linear=always forces it)"
        shift = None if b1 is None else b1 @ w2
        bias = shift if b2 is None else b2 if shift is None else b2 + shift
        return Match(op, x=inner.operands[0], w=w1 @ w2, b=bias)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        new = rebuild_linear(rewriter, self.w, match.op, match.x, match.w, match.b, "merged")
        rewriter.replace_op(match.op, new.result)


def fold_patterns(module: Module, merge: MergeMode = "auto") -> list[Pattern]:
    w = Weights(module)
    return [MatmulToLinear(w), FlattenFold(w), BiasFold(w), ScaleOutput(w), ScaleInput(w), NormAffine(w), RmsNormAffine(w),
            AttentionScale(w), LinearMerge(w, merge)]


@dataclass(frozen=True)
class FoldLinearChain(Pass):
    """Fold consecutive linear maps: GEMMs with bias, scales, norm affines and transposes.

    matmul by a weight becomes ``nn.linear`` (a permute{[1,0]} of the weight becomes
    ``transpose_w``; flatten/unflatten reshapes around it go); constant bias adds join its
    bias; constant scalar or per-channel scales before or after it go into its weight; a
    LayerNorm/RMSNorm's gamma/beta go into the linears reading it; the attention scale goes
    into the Q columns of the projection; linear∘linear merges when cheaper (``merge-linear``).

    Before::

        %1 = core.reshape %x {shape = [B*S, 768]} : f32[B*S,768]
        %2 = core.matmul %1, %w : f32[B*S,2304]
        %3 = core.add %2, %b : f32[B*S,2304]
        %4 = core.reshape %3 {shape = [B, S, 2304]} : f32[B,S,2304]

    After::

        %4 = nn.linear %x, %w, %b {bias = true} : f32[B,S,2304]
    """

    name: ClassVar[str] = "fold-linear-chain"
    statistics: ClassVar[Mapping[str, str]] = {
        "num-matmul-to-linear": "matmuls by a weight turned into nn.linear",
        "num-flatten-fold": "reshape sandwiches around a linear removed",
        "num-bias-fold": "constant adds folded into a linear's bias",
        "num-scale-output": "scales after a linear folded into its weight",
        "num-scale-input": "scales before linears folded into their weights",
        "num-norm-affine": "norm gamma/beta folded into the following linears",
        "num-attention-scale": "attention scales folded into the Q projection",
        "num-linear-merge": "linear∘linear pairs merged into one GEMM",
        "num-rewrites": "patterns applied",
        "num-dead-erased": "dead pure ops erased",
        "num-iterations": "sweeps of the greedy driver",
        "num-non-converged": "runs that hit max-iterations",
    }

    merge_linear: MergeMode = option("auto", "merge linear∘linear: when the cost model says it is cheaper, always, never")
    max_iterations: int = option(10, "sweeps of the greedy driver before giving up")

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        patterns = fold_patterns(module, self.merge_linear)
        result = apply_patterns_greedily(module, patterns, max_iterations=self.max_iterations, ctx=ctx)
        report_greedy(result, ctx, self.name)
        return PassResult(changed=result.changed)
