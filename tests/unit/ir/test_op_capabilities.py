"""Each op declares its interchange names once (``OpDef.onnx`` / ``OpDef.aten``); the ONNX
exporter, the torch frontend and each backend derive their tables from the declarations."""

from __future__ import annotations

import numpy as np
import pytest

from optllm.ir.ops import all_opdefs

DECLARED_ONNX = {d.name: d.onnx for d in all_opdefs().values() if d.onnx}
DECLARED_ATEN = {d.name: d.aten for d in all_opdefs().values() if d.aten}


def test_declarations_cover_the_elementwise_families() -> None:
    # A sample the tables must hold: unary math, binary arithmetic, comparisons, logic.
    for name, onnx in {"core.tanh": "Tanh", "core.asinh": "Asinh", "core.add": "Add", "core.ge": "GreaterOrEqual",
                       "core.not": "Not", "core.where": "Where", "core.matmul": "MatMul"}.items():
        assert DECLARED_ONNX.get(name) == onnx
    assert DECLARED_ATEN["core.rsqrt"] == "rsqrt"


@pytest.mark.parametrize("name", sorted(DECLARED_ONNX))
def test_onnx_export_emits_the_declared_operator(name: str) -> None:
    pytest.importorskip("onnx")
    from optllm.backends.onnx_export.core import LOWERINGS

    assert name in LOWERINGS, f"{name} declares ONNX {DECLARED_ONNX[name]} but the exporter has no lowering"


@pytest.mark.parametrize("name", sorted(DECLARED_ATEN))
def test_torch_frontend_lowers_the_declared_aten_op(name: str) -> None:
    from optllm.frontends.fx_ops import TABLE

    key = f"aten.{DECLARED_ATEN[name]}.default"
    assert key in TABLE, f"{name} declares {key} but the torch frontend has no handler"


@pytest.mark.parametrize("name", sorted(DECLARED_ATEN))
def test_declared_aten_op_computes_the_reference(name: str) -> None:
    """The declaration is a claim about numerics: torch's op and the IR reference agree."""
    torch = pytest.importorskip("torch")
    x = np.linspace(0.1, 0.9, 7, dtype=np.float32)
    want = getattr(torch.ops.aten, DECLARED_ATEN[name]).default(torch.from_numpy(x)).numpy()
    got = all_opdefs()[name].reference([x], {}, {})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(n for n, d in all_opdefs().items() if d.onnx and d.operands == ("x",)))
def test_onnx_frontend_converts_the_declared_unary_operator(name: str) -> None:
    pytest.importorskip("onnx")
    from optllm.frontends.onnx.ops_elementwise import _UNARY

    assert _UNARY[DECLARED_ONNX[name]] == name
