"""Run ONNX backend node test cases through ``optllm.frontends.onnx.Backend`` and classify them.

    cases = load_node_cases()                      # onnx.backend.test's ~1,900 node cases
    result = run_case(cases[0])                    # CaseResult(name, op, status, detail)

A case *passes* when every data set matches the expected outputs the way onnx's own runner
checks them (``Runner.assert_similar_outputs``: same shape and dtype, then
``assert_allclose(rtol, atol)`` with the case's tolerances, 1e-3 / 1e-7 by default). It
*fails* on wrong numbers (the detail gives the largest error), on a crash while running, and
on an import error when the frontend claims every op of the model (each has a converter at
the model's opset) and every element type: a converter that refuses or breaks on a case of
its own op is a failure, not a skip. A case is *skipped* only when the model holds an op
without a converter or an element type optllm lacks, or the data are not plain tensors
(sequences, optionals).
"""

from __future__ import annotations

import functools
import re
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one node test case."""

    name: str
    op: str
    status: str  # PASS, FAIL or SKIP
    detail: str = ""


class CaseTimeout(Exception):
    """A case ran past its time limit."""


def load_node_cases(ops: Sequence[str] | None = None) -> list[Any]:
    """The node test cases of the installed onnx (``onnx.backend.test`` generates them),
    only those testing ``ops`` when given (then only the case modules named after them run)."""
    import importlib
    import pkgutil
    import warnings

    import onnx.backend.test.case.node as node_cases
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if ops is None:
            return list(load_model_tests(kind="node"))
        wanted = {op.lower(): op for op in ops}
        modules = [m.name for m in pkgutil.iter_modules(node_cases.__path__)
                   if m.name.replace("_", "") in wanted]
        if len(modules) < len(wanted):  # some op's module is named otherwise: generate them all
            cases = list(load_model_tests(kind="node"))
        else:
            for name in modules:
                importlib.import_module(f"{node_cases.__name__}.{name}")
            cases = list(node_cases._NodeTestCases)
    return [c for c in cases if case_op(c) in set(ops)]


def cases_by_op(ops: Sequence[str]) -> dict[str, list[Any]]:
    """The node test cases of ``ops``, grouped by the op each tests (every op keyed, maybe empty)."""
    by_op: dict[str, list[Any]] = {op: [] for op in ops}
    for case in load_node_cases(ops):
        by_op[case_op(case)].append(case)
    return by_op


# test-name prefixes that abbreviate the op
_ALIASES = {"sce": "SoftmaxCrossEntropyLoss", "nllloss": "NegativeLogLikelihoodLoss"}


@functools.cache
def _op_names() -> dict[str, str]:
    """snake_case-free lower-case op name -> op type, for every ONNX schema."""
    import onnx.defs

    return {s.name.lower(): s.name for s in onnx.defs.get_all_schemas_with_history()}


def case_op(case: Any) -> str:
    """The operator a case tests: its single op type, else the op its name starts with."""
    ops = {n.op_type for n in case.model.graph.node}
    if len(ops) == 1:
        return next(iter(ops))
    stem = re.sub(r"^test_", "", case.name).replace("_", "").lower()
    for prefix, name in _ALIASES.items():
        if stem.startswith(prefix):
            return name
    best = ""
    for low, name in _op_names().items():
        if stem.startswith(low) and len(low) > len(best.lower()):
            best = name
    return best or "+".join(sorted(ops))


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``CaseTimeout`` after ``seconds`` (main thread, POSIX; no limit elsewhere)."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"ran past {seconds:g} s")

    try:
        old = signal.signal(signal.SIGALRM, on_alarm)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _is_plain(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype != object


def _normalize(x: Any) -> Any:
    from onnx import TensorProto, numpy_helper

    if isinstance(x, TensorProto):
        return numpy_helper.to_array(x)
    return np.asarray(x) if isinstance(x, np.generic) else x


def compare(ref: Sequence[np.ndarray], out: Sequence[np.ndarray], rtol: float, atol: float) -> str | None:
    """Why ``out`` differs from ``ref`` under onnx's runner rules (None when it matches)."""
    if len(out) != len(ref):
        return f"{len(out)} outputs, expected {len(ref)}"
    for i, (r, o) in enumerate(zip(ref, out)):
        o = np.asarray(o)
        if o.shape != r.shape:
            return f"output {i}: shape {list(o.shape)}, expected {list(r.shape)}"
        if o.dtype != r.dtype:
            return f"output {i}: dtype {o.dtype}, expected {r.dtype}"
        tol = max(rtol, 2**-6) if o.dtype.name == "bfloat16" else rtol
        a, b = (o.astype(np.float64), r.astype(np.float64)) if o.dtype.kind in "fcV" or \
            o.dtype.name == "bfloat16" else (o, r)
        if o.dtype == np.bool_ or o.dtype.kind in "iu":
            if not np.array_equal(o, r):
                return f"output {i}: {int(np.sum(o != r))} of {o.size} elements differ"
            continue
        ok = np.isclose(a, b, rtol=tol, atol=atol, equal_nan=True)
        if not ok.all():
            err = np.abs(a - b)[~ok]
            return f"output {i}: max abs err {np.nanmax(err) if np.isfinite(err).any() else float('nan'):.3g} " \
                   f"({int((~ok).sum())}/{o.size} off)"
    return None


def load_data_sets(case: Any) -> list[tuple[list[np.ndarray], list[np.ndarray]]] | None:
    """The case's (inputs, expected outputs) pairs as arrays; None when some are not plain tensors."""
    sets = [([_normalize(x) for x in ins], [_normalize(y) for y in outs]) for ins, outs in case.data_sets]
    if not all(_is_plain(x) for ins, outs in sets for x in [*ins, *outs]):
        return None
    return sets


def run_case(case: Any, timeout: float = 30.0) -> CaseResult:
    """Run one node test case through our ``Backend`` and classify the outcome."""
    from optllm.backends.reference import ExecutionError
    from optllm.frontends.common import FrontendError
    from optllm.frontends.onnx.backend import Backend

    op = case_op(case)
    sets = load_data_sets(case)
    if sets is None:
        return CaseResult(case.name, op, SKIP, "sequence, optional, map or string data")
    try:
        with time_limit(timeout), np.errstate(all="ignore"):
            rep = Backend.prepare(case.model)
            for ins, outs in sets:
                got = rep.run(ins)
                why = compare(outs, got, case.rtol, case.atol)
                if why:
                    return CaseResult(case.name, op, FAIL, why)
    except FrontendError as e:
        unclaimed = unclaimed_reason(case.model)
        if unclaimed is not None:
            return CaseResult(case.name, op, SKIP, unclaimed)
        return CaseResult(case.name, op, FAIL, f"converter: {_first_line(e)}")
    except CaseTimeout as e:
        return CaseResult(case.name, op, FAIL, f"timeout: {e}")
    except ExecutionError as e:
        return CaseResult(case.name, op, FAIL, f"crash: {_first_line(e)}")
    except Exception as e:  # a converter bug: report it as a failure with its type
        return CaseResult(case.name, op, FAIL, f"crash: {type(e).__name__}: {_first_line(e)}")
    return CaseResult(case.name, op, PASS)


def unclaimed_reason(model: Any) -> str | None:
    """Why the frontend does not claim ``model`` (an op without a converter at the model's
    opset, an element type with no optllm equivalent), or None when it claims all of it."""
    from optllm.frontends.onnx.context import ONNX_DTYPES
    from optllm.frontends.onnx.registry import lookup

    opsets = {o.domain or "": int(o.version) for o in model.opset_import}
    default = opsets.get("", opsets.get("ai.onnx", 0))
    for node in model.graph.node:
        opset = default if node.domain in ("", "ai.onnx") else opsets.get(node.domain, 1)
        if lookup(node.op_type, node.domain, opset) is None:
            return f"no converter for {node.domain or 'ai.onnx'}::{node.op_type} at opset {opset}"
    g = model.graph
    types = [t.data_type for t in g.initializer] + [
        vi.type.tensor_type.elem_type for vi in [*g.input, *g.output] if vi.type.HasField("tensor_type")]
    for node in g.node:
        for a in node.attribute:
            if a.name in ("to", "dtype", "output_dtype") and a.type == a.INT:
                types.append(a.i)
    missing = sorted({t for t in types if t and t not in ONNX_DTYPES})
    if missing:
        import onnx

        names = [onnx.TensorProto.DataType.Name(t) for t in missing]
        return f"element type(s) {', '.join(names)} have no optllm equivalent"
    return None


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).replace("<ModelProto>: ", "").split())
    return text[:240] if text else type(e).__name__
