"""fold-linear-chain and fold-residual keep the reference outputs of random transformer-shaped
graphs: chains of GEMMs (flattened or not, permuted weights), bias and scale constants, norms
with affines, residual adds and zero (pruned) branches, on finite random inputs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optllm.ir import Module
from optllm.ir.builder import Builder
from optllm.ir.graph import Graph
from optllm.ir.parser import parse_type
from optllm.ir.values import Value
from optllm.passes.manager import PassManager
from tests.property.graphs import assert_outputs_close, envs, modules, random_inputs, run_reference

D = 4  # the model width; GEMMs go D -> H -> D
Draw = Callable[..., object]


class _Block:
    def __init__(self, draw: Draw, m: Module) -> None:
        self.draw, self.m = draw, m
        self.b = Builder.at_end(m.main)
        self.rng = np.random.default_rng(int(draw(st.integers(0, 2**16))))  # type: ignore[call-overload]

    def const(self, shape: tuple[int, ...], zero: bool = False) -> Value:
        arr = np.zeros(shape, np.float32) if zero else self.rng.standard_normal(shape).astype(np.float32)
        if self.draw(st.booleans()):
            name = self.m.constants.add(arr, "w")
            return self.b.create("core.weight", [], {"name": name}, result_types=[self.m.constants.type_of(name)]).result
        return self.b.op("core.constant", value=arr)

    def gemm(self, x: Value, n: int, zero: bool = False) -> Value:
        k = int(x.type.shape[-1])  # type: ignore[arg-type]
        if self.draw(st.booleans()):
            w = self.b.op("core.permute", self.const((n, k), zero), perm=[1, 0])
        else:
            w = self.const((k, n), zero)
        flat = self.draw(st.booleans())
        if flat:
            x = self.b.op("core.reshape", x, shape=list(parse_type(f"f32[B*S,{k}]").shape))
        y = self.b.op("core.matmul", x, w)
        if self.draw(st.booleans()):
            y = self.b.op("core.add", y, self.const((n,), zero))
        if self.draw(st.integers(0, 3)) == 0:
            y = self.b.op("core.mul", y, self.const(self.draw(st.sampled_from([(), (n,)]))))  # type: ignore[arg-type]
        if flat:
            y = self.b.op("core.reshape", y, shape=list(parse_type(f"f32[B,S,{n}]").shape))
        return y

    def norm(self, x: Value) -> Value:
        kind = self.draw(st.sampled_from(["nn.layer_norm", "nn.rms_norm", "decomposed-scale"]))
        if kind == "decomposed-scale":
            return self.b.op("core.mul", self.const((D,)), x)
        params = [self.const((D,)) for _ in range(1 if kind == "nn.rms_norm" else 2)]
        return self.b.op(str(kind), x, *params)

    def layer(self, x: Value) -> Value:
        h = self.norm(x)
        h = self.gemm(h, int(self.draw(st.sampled_from([2, D, 8]))))  # type: ignore[call-overload]
        if self.draw(st.booleans()):
            h = self.b.op("nn.gelu", h)
        out = self.gemm(h, D, zero=self.draw(st.integers(0, 3)) == 0)
        return self.b.op("core.add", x, out) if self.draw(st.booleans()) else self.b.op("core.add", out, x)


@st.composite
def blocks(draw: Draw) -> Module:
    m = Module("blocks")
    g = m.add_graph(Graph("forward"))
    x = g.add_input(parse_type(f"f32[B,S,{D}]"), "x")
    block = _Block(draw, m)
    outs = []
    for _ in range(int(draw(st.integers(1, 3)))):  # type: ignore[call-overload]
        x = block.layer(x)
        if draw(st.integers(0, 3)) == 0:
            outs.append(x)
    g.set_outputs([*outs, block.norm(x)])
    return m


PIPELINES = ["fold-linear-chain", "fold-linear-chain{merge-linear=always}", "fold-residual",
             "fold-linear-chain,fold-residual,canonicalize,cse,dce"]


def _keeps_outputs(pipeline: str, m: Module, env: dict[str, int], seed: int) -> None:
    xs = random_inputs(m.main, env, seed)
    before = run_reference(m, xs)
    PassManager(pipeline).run(m)  # verifies after every pass
    assert_outputs_close(run_reference(m, xs), before)


@pytest.mark.parametrize("pipeline", PIPELINES)
@given(m=blocks(), env=envs(), seed=st.integers(0, 2**16))
def test_fold_keeps_outputs_of_transformer_blocks(pipeline: str, m: Module, env: dict[str, int], seed: int) -> None:
    _keeps_outputs(pipeline, m, env, seed)


@pytest.mark.parametrize("pipeline", ["fold-linear-chain", "fold-residual"])
@given(m=modules(), env=envs(), seed=st.integers(0, 2**16))
def test_fold_keeps_outputs_of_random_graphs(pipeline: str, m: Module, env: dict[str, int], seed: int) -> None:
    _keeps_outputs(pipeline, m, env, seed)
