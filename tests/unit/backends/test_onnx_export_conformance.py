"""ONNX -> IR -> ONNX on every node test case of the ops we claim (``CLAIMED_OPS``).

Each case's model is imported, exported back with ``build_model`` at the case's opset (17 at
least, onnxruntime's newest at most) and run by onnxruntime; ``roundtrip_case`` requires, for
every data set, the suite's tolerances against the case's expected outputs (rtol 1e-3 /
atol 1e-7, the conformance claim) and rtol = atol = 1e-5 against onnxruntime's outputs on the
original model (the expected outputs where onnxruntime cannot run it or disagrees with them;
some are printed to four digits). f16, bf16 and float8 outputs get one unit of their
precision (2^-10, 2^-7, 2^-3 or 2^-2) instead, since onnxruntime's fp16 softmax rounds
differently by one ulp. bf16 and float8 tensors pass to and from onnxruntime as raw bytes.

The full set runs (about 1,270 cases, 30-50 s on one core). The cases that cannot round-trip
are listed in ``NO_ROUNDTRIP`` with the reason; the test fails when one of them starts passing
(update the table) or when any other case fails.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from optllm.backends.onnx_export.roundtrip import roundtrip_case, tight_tolerance  # noqa: E402
from optllm.frontends.onnx.backend import CLAIMED_OPS  # noqa: E402
from optllm.frontends.onnx.conformance import PASS, cases_by_op  # noqa: E402

_BF16_KERNEL = "onnxruntime's CPU provider has no bfloat16 kernel for {}"
_INT_KERNEL = "onnxruntime's CPU provider has no {} kernel for {}"

# case name -> why its round trip cannot be checked in onnxruntime
NO_ROUNDTRIP: dict[str, str] = {
    **{f"test_attention_{name}{suffix}": _BF16_KERNEL.format(kernel)
       for name, kernel in [("4d_causal_bf16", "Mul"), ("3d_causal_bf16", "Mul"), ("4d_padded_kv_bf16", "Expand"),
                            ("4d_causal_padded_kv_bf16", "Expand"), ("4d_attn_mask_causal_bf16", "Add")]
       for suffix in ("", "_expanded")},
    "test_celu_bfloat16": _BF16_KERNEL.format("Div"),
    "test_celu_bfloat16_expanded": _BF16_KERNEL.format("Div"),
    "test_onehot_with_bfloat16_values": _BF16_KERNEL.format("Where"),
    # BitShift and integer Div select with Where, which onnxruntime lacks for these types
    **{f"test_bitshift_{d}_{t}": _INT_KERNEL.format(t, "Where") for d in ("left", "right")
       for t in ("int16", "uint16", "uint64")},
    **{f"test_div_{t}": _INT_KERNEL.format(t, "Where") for t in ("int16", "uint16", "uint64")},
    **{f"test_{op}_{t}": _INT_KERNEL.format(t, op.title()) for op in ("max", "min") for t in ("int16", "uint16")},
    "test_top_k_uint64": _INT_KERNEL.format("uint64", "TopK"),
}


@pytest.fixture(scope="module")
def claimed_cases() -> dict[str, list[Any]]:
    return cases_by_op(CLAIMED_OPS)


@pytest.mark.parametrize("op", CLAIMED_OPS)
def test_claimed_op_round_trips(op: str, claimed_cases: dict[str, list[Any]]) -> None:
    results = [roundtrip_case(c) for c in claimed_cases[op]]
    bad = [r for r in results if r.status != PASS and r.name not in NO_ROUNDTRIP]
    assert not bad, "\n".join(f"{r.name}: {r.status}: {r.detail}" for r in bad)
    fixed = [r.name for r in results if r.status == PASS and r.name in NO_ROUNDTRIP]
    assert not fixed, f"round-trips now, drop from NO_ROUNDTRIP: {fixed}"


def test_no_roundtrip_table_names_claimed_cases(claimed_cases: dict[str, list[Any]]) -> None:
    names = {c.name for cases in claimed_cases.values() for c in cases}
    assert sorted(set(NO_ROUNDTRIP) - names) == []


def test_tight_tolerance() -> None:
    import ml_dtypes
    import numpy as np

    assert tight_tolerance(np.dtype(np.float32)) == 1e-5
    assert tight_tolerance(np.dtype(np.float64)) == 1e-5
    assert tight_tolerance(np.dtype(np.float16)) == 2.0**-10
    assert tight_tolerance(np.dtype(ml_dtypes.bfloat16)) == 2.0**-7
    assert tight_tolerance(np.dtype(ml_dtypes.float8_e5m2)) == 2.0**-2
    assert tight_tolerance(np.dtype(np.int32)) == 1e-5


def test_ort_run_passes_bf16_and_float8_as_bytes() -> None:
    import ml_dtypes
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from optllm.backends.onnx_export.roundtrip import _ort_run

    types = [TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2, TensorProto.FLOAT]
    ins = [helper.make_tensor_value_info(f"x{i}", t, []) for i, t in enumerate(types)]
    outs = [helper.make_tensor_value_info(f"y{i}", t, []) for i, t in enumerate(types)]
    nodes = [helper.make_node("Identity", [f"x{i}"], [f"y{i}"]) for i in range(len(types))]
    model = helper.make_model(helper.make_graph(nodes, "g", ins, outs), opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x0": np.asarray(1.5, ml_dtypes.bfloat16), "x1": np.asarray(-448, ml_dtypes.float8_e4m3fn),
             "x2": np.asarray(np.inf, ml_dtypes.float8_e5m2), "x3": np.asarray(0.25, np.float32)}
    got = _ort_run(session, feeds)
    for (name, want), out in zip(feeds.items(), got):
        assert out.dtype == want.dtype and out.shape == () and out.tobytes() == want.tobytes(), name
