"""Every ONNX node test case of the ops we claim passes through ``optllm.frontends.onnx.Backend``.

The cases come from the installed onnx (``onnx.backend.test``); ``CLAIMED_OPS`` lists the op
types whose cases must all pass. ``benchmarks/onnx_conformance.py`` runs the whole suite.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("onnx")

from optllm.frontends.onnx.backend import CLAIMED_OPS  # noqa: E402
from optllm.frontends.onnx.conformance import PASS, cases_by_op, run_case  # noqa: E402


@pytest.fixture(scope="module")
def claimed_cases() -> dict[str, list[Any]]:
    return cases_by_op(CLAIMED_OPS)


def test_claimed_ops_are_real_onnx_ops() -> None:
    import onnx.defs

    known = {s.name for s in onnx.defs.get_all_schemas_with_history()}
    assert sorted(set(CLAIMED_OPS) - known) == []


@pytest.mark.parametrize("op", CLAIMED_OPS)
def test_claimed_op_passes_all_node_cases(op: str, claimed_cases: dict[str, list[Any]]) -> None:
    cases = claimed_cases[op]
    assert cases, f"no node test case exercises {op}"
    bad = [r for r in (run_case(c, timeout=20.0) for c in cases) if r.status != PASS]
    assert not bad, "\n".join(f"{r.name}: {r.status}: {r.detail}" for r in bad)


def test_backend_api() -> None:
    import numpy as np
    from onnx import TensorProto, helper

    from optllm.frontends.onnx import Backend

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    node = helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[1], keepdims=0)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    assert Backend.supports_device("CPU") and not Backend.supports_device("CUDA")
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    (out,) = Backend.prepare(model).run([data])
    np.testing.assert_allclose(out, np.log(np.exp(data).sum(axis=1)), rtol=1e-6)
