"""Lowerings of the ``core`` gather/index/scatter family to ONNX.

``core.gather`` is ``Gather``, ``core.gather_elements`` is ``GatherElements`` and the two
scatters are ``ScatterElements``/``ScatterND`` with the same reduction (``max``/``min`` need
opset 18). Advanced indexing ``x[..., i0, i1, ...]`` on consecutive axes stacks the broadcast
index tensors into tuples for ``GatherND``, with the indexed axes moved to the front and the
gathered dims moved back to where numpy puts them.
"""

from __future__ import annotations

import numpy as np

from optllm.backends.onnx_export.context import Emitter, ExportError, onnx_dtype
from optllm.backends.onnx_export.core import _op
from optllm.ir.ops import Operation
from optllm.ir.types import DType

_REDUCTION_OPSET = {"none": 11, "add": 16, "mul": 16, "max": 18, "min": 18}


@_op("core.gather")
def _gather(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("Gather", ins, outs[0], axis=op.attrs["axis"])


@_op("core.gather_elements")
def _gather_elements(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("GatherElements", ins, outs[0], axis=op.attrs["axis"])


def _i64(e: Emitter, op: Operation, pos: int, name: str) -> str:
    """Operand ``pos`` (named ``name``) as int64, the index type GatherND/ScatterND take."""
    return name if op.operands[pos].type.dtype is DType.i64 else e.one("Cast", [name], to=onnx_dtype(DType.i64))


@_op("core.index")
def _index(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    # x[:first, i0, .., ik-1, ...] -> GatherND(x with the k indexed axes first, stack(broadcast(i), -1))
    if any(v.type.dtype is DType.bool for v in op.operands[1:]):
        raise ExportError("no ONNX lowering for boolean mask indexing (its result shape depends on the data)", op)
    rank = op.operands[0].type.rank
    first, k = op.attrs["axes"][0] % rank, len(ins) - 1
    if k == 1:
        e.one("Gather", ins, outs[0], axis=first)
        return
    idx = [_i64(e, op, pos, name) for pos, name in enumerate(ins[1:], start=1)]
    if len({v.type.shape for v in op.operands[1:]}) > 1:  # broadcast every index tensor to the common shape
        common = idx[0]
        for other in idx[1:]:
            common = e.one("Add", [common, other])
        shape = e.one("Shape", [common])
        idx = [e.one("Expand", [i, shape]) for i in idx]
    last = e.const(np.asarray([-1], np.int64))
    tuples = e.one("Concat", [e.one("Unsqueeze", [i, last]) for i in idx], axis=-1)
    if first == 0:
        e.one("GatherND", [ins[0], tuples], outs[0])
        return
    to_front = [*range(first, first + k), *range(first), *range(first + k, rank)]
    gathered = e.one("GatherND", [e.one("Transpose", [ins[0]], perm=to_front), tuples])  # [*B, lead, trail]
    nb = op.result.type.rank - (rank - k)
    back = [*range(nb, nb + first), *range(nb), *range(nb + first, nb + rank - k)]
    e.one("Transpose", [gathered], outs[0], perm=back)


def _reduction(e: Emitter, op: Operation) -> str | None:
    """The ``reduction`` attribute of a scatter (None for plain assignment), checked against the opset."""
    kind = op.attrs["reduction"]
    need = _REDUCTION_OPSET[kind]
    if e.opset < need:
        raise ExportError(f"scatter reduction {kind!r} needs ONNX opset {need} or newer, exporting at {e.opset}", op)
    return None if kind == "none" else kind


@_op("core.scatter_elements")
def _scatter_elements(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("ScatterElements", ins, outs[0], axis=op.attrs["axis"], reduction=_reduction(e, op))


@_op("core.scatter_nd")
def _scatter_nd(e: Emitter, op: Operation, ins: list[str], outs: list[str]) -> None:
    e.one("ScatterND", [ins[0], _i64(e, op, 1, ins[1]), ins[2]], outs[0], reduction=_reduction(e, op))
