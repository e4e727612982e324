"""``fuse``: recognise multi-op computations and fuse them into single-launch ops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from optllm.ir.graph import Module
from optllm.passes.base import Pass, PassContext, PassResult, option
from optllm.passes.fusion import activations, attention, elementwise, norms, qkv, rope
from optllm.passes.rewrite import Pattern, apply_patterns_greedily, report_greedy


def phases(module: Module, max_positions: int, regions: bool) -> list[tuple[str, Sequence[Pattern]]]:
    """The pattern sets, applied one after the other: recognise ops first, then merge GEMMs
    (before epilogues take their activations), then wrap what is left in regions."""
    out: list[tuple[str, Sequence[Pattern]]] = [
        ("recognise", attention.PATTERNS + norms.PATTERNS + activations.PATTERNS + [rope.RopeFusion()]),
        ("tables", [rope.RopeTable(module, max_positions)]),
        ("merge", [qkv.MergeProjections(module)]),
        ("epilogues", activations.EPILOGUE_PATTERNS),
    ]
    if regions:
        out.append(("regions", [elementwise.ElementwiseRegion()]))
        out.append(("prologues", [elementwise.NormPrologue(), elementwise.RmsNormPrologue()]))
    return out


def _drop_merged_constants(module: Module, patterns: Sequence[Pattern]) -> int:
    """Remove the table entries that merged projections replaced, once nothing reads them."""
    used = module.used_constants()
    dropped = 0
    for pat in patterns:
        for name in getattr(pat, "replaced", ()):
            if name not in used and name in module.constants:
                module.constants.remove(name)
                dropped += 1
    return dropped


@dataclass(frozen=True)
class Fuse(Pass):
    """Fuse attention, norms, activations, RoPE, projections and elementwise chains.

    Eager attention (``softmax(q @ kᵀ · c + mask) @ v``, GQA head expansions consumed) becomes
    ``nn.attention``; decomposed RMSNorm/LayerNorm, GELU (erf, tanh) and SiLU become
    ``nn.rms_norm``/``nn.layer_norm``/``nn.gelu``/``nn.silu``; rotate-half RoPE becomes
    ``nn.rope`` with cos/sin tables precomputed as constants; linears sharing an input (QKV,
    gate/up) become one GEMM plus a split; activations go into the GEMM epilogue; remaining
    elementwise chains become one ``fused.region``, merged into a norm that reads one
    (``fused.region {kind = "norm"}``: a row reduction with an elementwise prologue).
    ``--debug-patterns=NAME`` tells why a candidate did not fuse (names: attention,
    attention-gqa, rms-norm, rms-norm-div, layer-norm, layer-norm-div, gelu, gelu-doubled, silu,
    rope, rope-table, merge-projections, linear-activation, elementwise-region, norm-prologue).

    Before::

        %3 = core.permute %k {perm = [0, 1, 3, 2]} : f32[B,12,64,S]
        %4 = core.matmul %q, %3 : f32[B,12,S,S]
        %5 = core.constant {value = dense<f32[]: 0.125>} : f32[]
        %6 = core.mul %4, %5 : f32[B,12,S,S]
        %7 = core.add %6, %mask : f32[B,12,S,S]
        %8 = nn.softmax %7 {axis = 3} : f32[B,12,S,S]
        %9 = core.matmul %8, %v : f32[B,12,S,64]

    After::

        %9 = nn.attention %q, %k, %v, %mask {scale = 0.125} : f32[B,12,S,64]
    """

    name: ClassVar[str] = "fuse"
    statistics: ClassVar[Mapping[str, str]] = {
        "num-attention": "eager attention chains fused into nn.attention",
        "num-attention-gqa": "GQA k/v head expansions folded into nn.attention",
        "num-rms-norm": "decomposed RMSNorms fused (x · rsqrt)",
        "num-rms-norm-div": "decomposed RMSNorms fused (x / sqrt)",
        "num-layer-norm": "decomposed LayerNorms fused (d · rsqrt)",
        "num-layer-norm-div": "decomposed LayerNorms fused (d / sqrt)",
        "num-gelu": "decomposed GELUs fused",
        "num-silu": "x · sigmoid(x) fused",
        "num-rope": "rotate-half RoPEs fused into nn.rope",
        "num-rope-table": "RoPE cos/sin operands replaced by precomputed tables",
        "num-merge-projections": "linears sharing an input merged into one GEMM",
        "num-linear-activation": "activations folded into a GEMM epilogue",
        "num-elementwise-region": "elementwise chains fused into one region",
        "num-norm-prologue": "elementwise regions fused into the norm that reads them (one row kernel)",
        "num-constants-dropped": "weights merged away and no longer read",
        "num-rewrites": "patterns applied",
        "num-dead-erased": "dead pure ops erased",
        "num-iterations": "sweeps of the greedy driver (all phases)",
        "num-non-converged": "phases that hit max-iterations",
    }

    max_positions: int = option(2048, "length of precomputed RoPE tables (max_position_embeddings)")
    regions: bool = option(True, "wrap remaining elementwise chains in fused regions")
    max_iterations: int = option(10, "sweeps of the greedy driver per phase before giving up")

    def __post_init__(self) -> None:
        if self.max_positions < 1:
            raise ValueError(f"max-positions must be >= 1, got {self.max_positions}")
        if self.max_iterations < 1:
            raise ValueError(f"max-iterations must be >= 1, got {self.max_iterations}")

    def run(self, module: Module, ctx: PassContext) -> PassResult:
        changed = False
        used: list[Pattern] = []
        for _, patterns in phases(module, self.max_positions, self.regions):
            result = apply_patterns_greedily(module, patterns, max_iterations=self.max_iterations, ctx=ctx)
            report_greedy(result, ctx, self.name)
            changed |= result.changed
            used.extend(patterns)
        ctx.stat("num-constants-dropped", _drop_merged_constants(module, used))
        return PassResult(changed=changed)
