"""Arithmetic on shape lists whose entries may be symbolic (``Dim``)."""

from __future__ import annotations

from collections.abc import Sequence

from optllm.frontends.common import FrontendError
from optllm.ir.symbolic import Dim, SymExpr, floordiv, product

BIG = 2**31  # ONNX writes "to the end" as INT64_MAX (or INT32_MAX)


def broadcast(a: Sequence[Dim], b: Sequence[Dim]) -> list[Dim]:
    """Numpy-style broadcast of two shapes (a symbolic dim against 1 wins)."""
    n = max(len(a), len(b))
    pa = [1] * (n - len(a)) + list(a)
    pb = [1] * (n - len(b)) + list(b)
    out: list[Dim] = []
    for x, y in zip(pa, pb):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif isinstance(x, int) and isinstance(y, SymExpr):
            out.append(x)
        elif isinstance(y, int) and isinstance(x, SymExpr):
            out.append(y)
        else:
            raise FrontendError(f"shapes {list(a)} and {list(b)} do not broadcast")
    return out


def exact_div(num: Sequence[Dim], den: Sequence[Dim]) -> Dim:
    """product(num) / product(den), cancelling equal factors first."""
    rest = list(num)
    left: list[Dim] = []
    for d in den:
        if d in rest:
            rest.remove(d)
        else:
            left.append(d)
    n, m = product(rest), product(left)
    if m == 1:
        return n
    if isinstance(n, int) and isinstance(m, int):
        if n % m:
            raise FrontendError(f"cannot reshape: {n} elements do not split into groups of {m}")
        return n // m
    return floordiv(n, m)


def reshape_target(src: Sequence[Dim], spec: Sequence[Dim], allowzero: bool = False) -> list[Dim]:
    """ONNX Reshape's target shape: 0 copies the input dim (unless allowzero), -1 is inferred."""
    out: list[Dim] = []
    infer = -1
    for i, d in enumerate(spec):
        if isinstance(d, int) and d == 0 and not allowzero:
            out.append(src[i])
        elif isinstance(d, int) and d == -1:
            infer = i
            out.append(-1)
        else:
            out.append(d)
    if infer >= 0:
        known = [d for i, d in enumerate(out) if i != infer]
        out[infer] = exact_div(src, known)
    return out


def _minmax_args(d: Dim) -> tuple[Dim, ...] | None:
    """The arguments of ``d`` when ``d`` is exactly ``min(a,b)`` or ``max(a,b)``."""
    if not isinstance(d, SymExpr) or len(d.terms) != 1:
        return None
    mono, coeff = d.terms[0]
    if coeff != 1 or len(mono) != 1 or isinstance(mono[0], str) or mono[0].fn not in ("min", "max"):
        return None
    return mono[0].args


def resolve_minmax(src: Sequence[Dim], target: list[Dim]) -> list[Dim]:
    """``target`` with ``min(a,b)``/``max(a,b)`` dims replaced by the argument that makes its
    element count equal ``src``'s, when exactly one choice does.

    A Reshape runs only when the counts are equal, so that choice is what the model assumes
    (dynamo exports write ``min(2048, S)`` for a window clamp that torch.export proved to be
    ``S``)."""
    want = product(tuple(src))
    if product(tuple(target)) == want:
        return target
    out = list(target)
    for i, d in enumerate(target):
        args = _minmax_args(d)
        if args is None:
            continue
        fits = [a for a in args if product(tuple(out[:i] + [a] + out[i + 1:])) == want]
        if len(fits) == 1:
            out[i] = fits[0]
    return out


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise FrontendError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def clamp_index(i: int, dim: Dim, step: int, is_end: bool) -> Dim:
    """One ONNX Slice bound against ``dim``: negative counts from the end, huge means the end."""
    if step > 0:
        if i >= BIG:
            return dim
        if i < 0:
            if i <= -BIG:
                return 0
            return dim + i if isinstance(dim, SymExpr) else max(dim + i, 0)
        return i if isinstance(dim, SymExpr) else min(i, dim)
    if i >= BIG:
        return dim - 1 if not is_end else dim  # unreachable for sane models
    if i < 0:
        if i <= -BIG:
            return -1
        return dim + i if isinstance(dim, SymExpr) else max(dim + i, -1)
    return i if isinstance(dim, SymExpr) else min(i, dim - 1 if not is_end else dim)


def dim_binop(op: str, a: Dim, b: Dim) -> Dim:
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Mul":
        return a * b
    if op == "Div":
        if isinstance(a, int) and isinstance(b, int):
            return int(a / b) if b else 0  # ONNX integer division truncates
        return floordiv(a, b)
    raise FrontendError(f"no dim arithmetic for {op}")
