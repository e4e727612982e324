"""Shape arithmetic shared by the dialects: broadcasting, axes, symbolic equality."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optllm.ir.diagnostics import TypeInferenceError
from optllm.ir.symbolic import Dim, evaluate, product
from optllm.ir.types import DType, TensorType


def broadcast_shapes(*shapes: Sequence[Dim]) -> tuple[Dim, ...]:
    """Numpy broadcasting over symbolic dims: equal dims, or one of them is 1."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dim: Dim = 1
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if dim == 1:
                dim = d
            elif dim != d:
                shown = " and ".join("[" + ",".join(map(str, s)) + "]" for s in shapes)
                raise TypeInferenceError(f"shapes {shown} do not broadcast (dim {i}: {dim} vs {d})")
        out.append(dim)
    return tuple(out)


def same_dtype(types: Sequence[TensorType], what: str = "operands") -> DType:
    dts = {t.dtype for t in types}
    if len(dts) != 1:
        raise TypeInferenceError(f"{what} must share one element type, got {', '.join(sorted(map(str, dts)))}")
    return types[0].dtype


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise TypeInferenceError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def norm_axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    out = tuple(sorted({norm_axis(a, rank) for a in axes}))
    if len(out) != len(axes):
        raise TypeInferenceError(f"repeated axis in {list(axes)}")
    return out


def same_numel(a: Sequence[Dim], b: Sequence[Dim]) -> bool:
    return product(list(a)) == product(list(b))


def concrete(dims: Sequence[Dim], env: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(evaluate(d, env) for d in dims)


def require_float(t: TensorType, what: str) -> None:
    if not t.dtype.is_float:
        raise TypeInferenceError(f"{what} needs a floating-point operand, got {t}")
