"""ONNX -> IR -> ONNX on an ONNX backend node test case, run by onnxruntime.

    result = roundtrip_case(case)     # CaseResult(name, op, status, detail)

The case's model is imported with ``optllm.frontends.onnx.Backend`` (for models whose shape
inputs are bound at run time, once per data set, as ``Backend`` runs them), exported with
``build_model`` at the case's opset (at least 17, at most the newest onnxruntime loads) and
run by onnxruntime. A case *passes* when, for every data set,

1. the exported model's outputs match the case's expected outputs under the suite's own
   tolerances (rtol 1e-3 / atol 1e-7 unless the case says otherwise), as the conformance
   count requires, and
2. they equal the *oracle* within ``tight_tolerance``: onnxruntime's outputs on the original
   model when onnxruntime runs it and agrees with the expected outputs under (1), else the
   expected outputs themselves (some of which are printed to four digits, hence onnxruntime
   first).

It *fails* on a mismatch, an export error or an onnxruntime error (the detail says which),
and is *skipped* when the data are not plain tensors.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from optllm.frontends.onnx.conformance import FAIL, PASS, SKIP, CaseResult, case_op, compare, load_data_sets

TIGHT = 1e-5


def tight_tolerance(dtype: np.dtype[Any]) -> float:
    """rtol = atol for the round trip: 1e-5, or one unit of the dtype's precision when that is
    coarser (f16: 2^-10, bf16: 2^-7, float8: 2^-3 or 2^-2), since two correct programs may
    round once differently."""
    import ml_dtypes

    if _is_ml_dtype(dtype):
        return max(TIGHT, float(ml_dtypes.finfo(dtype).eps)) if dtype.name.startswith(("bfloat", "float")) else TIGHT
    return max(TIGHT, float(np.finfo(dtype).eps)) if dtype.kind == "f" else TIGHT


@functools.cache
def ort_max_opset() -> int:
    """The newest default-domain opset the installed onnxruntime loads (probed once)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    info = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", info, out)
    for opset in range(onnx.defs.onnx_opset_version(), 0, -1):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 10
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime refuses opsets it does not know with various error types
            continue
        return opset
    raise RuntimeError("onnxruntime loads no opset")


def export_opset(model: Any) -> int:
    """The opset to export ``model`` at: its own, within [MIN_OPSET, ort_max_opset()]."""
    from optllm.backends.onnx_export import MIN_OPSET

    own = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    return min(max(own, MIN_OPSET), ort_max_opset())


def _session(model: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # refusals come back as exceptions; keep onnxruntime's log quiet
    options.intra_op_num_threads = 1  # the cases are tiny; threads only cost start-up time
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _ort_run(session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``session.run`` through OrtValues, so bfloat16 and float8 arrays (ml_dtypes, which
    onnxruntime's numpy bridge does not know) go in and come out as their raw bytes."""
    import onnxruntime as ort
    from onnx import helper

    values = {}
    for name, x in feeds.items():
        x = np.array(x, order="C", copy=None)  # ascontiguousarray would make a 0-d array 1-d
        if _is_ml_dtype(x.dtype):  # hand over the bytes with the ONNX element type
            raw = x.view(f"u{x.dtype.itemsize}")
            values[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, helper.np_dtype_to_tensor_dtype(x.dtype))
        else:
            values[name] = ort.OrtValue.ortvalue_from_numpy(x)
    outs = []
    for v in session.run_with_ort_values(None, values):
        want = np.dtype(helper.tensor_dtype_to_np_dtype(v.element_type()))
        if not _is_ml_dtype(want):
            outs.append(v.numpy())
            continue
        # copy the bytes out of the (CPU) tensor while it is alive
        data = ctypes.string_at(v.data_ptr(), v.tensor_size_in_bytes())
        outs.append(np.frombuffer(data, dtype=want).reshape(v.shape()).copy())
    return outs


def _is_ml_dtype(dt: np.dtype[Any]) -> bool:
    return dt.type.__module__.startswith("ml_dtypes")


def _ort_original(case: Any) -> Any:
    """A session on the case's own model, None when onnxruntime cannot load it."""
    try:
        return _session(case.model)
    except Exception:  # onnxruntime lacks a kernel or the opset: then the expected outputs are the oracle
        return None


def _tight(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> str | None:
    for i, (r, g) in enumerate(zip(ref, got)):
        tol = tight_tolerance(np.asarray(r).dtype)
        why = compare([np.asarray(r)], [g], tol, tol)
        if why:
            return why.replace("output 0", f"output {i}", 1)
    return None


def roundtrip_case(case: Any) -> CaseResult:
    """Import ``case``, export it back, run the export in onnxruntime and classify the outcome."""
    from optllm.backends.onnx_export import build_model
    from optllm.frontends.onnx.backend import Backend

    op = case_op(case)
    sets = load_data_sets(case)
    if sets is None:
        return CaseResult(case.name, op, SKIP, "sequence, optional, map or string data")
    original = _ort_original(case)
    opset = export_opset(case.model)
    with np.errstate(all="ignore"):
        rep = Backend.prepare(case.model)
        for ins, outs in sets:
            module, keep = rep.module_for(ins)
            try:
                exported = _session(build_model(module, opset))
                got = _ort_run(exported, {i.name: ins[k] for i, k in zip(exported.get_inputs(), keep)})
            except Exception as e:  # ExportError, or onnxruntime refusing or failing the exported model
                return CaseResult(case.name, op, FAIL, f"{type(e).__name__}: {' '.join(str(e).split())[:240]}")
            why = compare(outs, got, case.rtol, case.atol)
            if why:
                return CaseResult(case.name, op, FAIL, f"vs expected: {why}")
            oracle = _oracle(original, [i.name for i in case.model.graph.input], ins, outs, case)
            why = _tight(oracle, got)
            if why:
                return CaseResult(case.name, op, FAIL, f"vs oracle within {TIGHT:g}: {why}")
    return CaseResult(case.name, op, PASS)


def _oracle(original: Any, names: list[str], ins: list[np.ndarray], outs: list[np.ndarray], case: Any) -> list[Any]:
    """onnxruntime on the original model when it runs and agrees with the expected outputs."""
    if original is None:
        return outs
    init = {t.name for t in case.model.graph.initializer}
    feed = dict(zip([n for n in names if n not in init], ins))
    try:
        ref = _ort_run(original, feed)
    except Exception:  # a kernel failing on these data
        return outs
    return outs if compare(outs, ref, case.rtol, case.atol) else ref
