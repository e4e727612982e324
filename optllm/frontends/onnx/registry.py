"""The ONNX converter table: ``(domain, op_type)`` -> converters by the opset they start at.

    @converter("Softmax", since=13)
    def _softmax(ctx: ConvertContext, node: onnx.NodeProto) -> list[Value | None]:
        x = ctx.input(node, 0)
        return [ctx.op("nn.softmax", x, axis=ctx.attr(node, "axis", -1))]

A converter returns one entry per node output (``None`` for outputs it does not produce).
``lookup`` picks the converter with the largest ``since`` not above the model's opset for
the node's domain, so a changed op semantics is a second registration, not an ``if``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import onnx

    from optllm.frontends.onnx.context import ConvertContext
    from optllm.ir import Value


class OnnxConverter(Protocol):
    def __call__(self, ctx: ConvertContext, node: onnx.NodeProto) -> list[Value | None]: ...


# (domain, op_type) -> [(since, converter)], sorted by since
_TABLE: dict[tuple[str, str], list[tuple[int, OnnxConverter]]] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def converter(op_type: str, domain: str = "", since: int = 1) -> Callable[[OnnxConverter], OnnxConverter]:
    """Decorator: register ``fn`` for ``op_type`` in ``domain`` for opsets >= ``since``."""

    def register(fn: OnnxConverter) -> OnnxConverter:
        entries = _TABLE.setdefault((_norm_domain(domain), op_type), [])
        if any(s == since for s, _ in entries):
            raise ValueError(f"ONNX converter for {domain or 'ai.onnx'}::{op_type} since {since} "
                             "is registered twice")
        entries.append((since, fn))
        entries.sort(key=lambda e: e[0])
        return fn

    return register


def lookup(op_type: str, domain: str, opset: int) -> OnnxConverter | None:
    """The converter for ``op_type`` at ``opset`` (None if there is none)."""
    _load_converters()
    found: OnnxConverter | None = None
    for since, fn in _TABLE.get((_norm_domain(domain), op_type), []):
        if since <= opset:
            found = fn
    return found


def registered_ops() -> list[tuple[str, str]]:
    """Every (domain, op_type) with a converter."""
    _load_converters()
    return sorted(_TABLE)


def _load_converters() -> None:
    from optllm.frontends.onnx import ops  # noqa: F401  (imports every ops_*.py module)


@contextlib.contextmanager
def override(op_type: str, wrap: Callable[[OnnxConverter], OnnxConverter], domain: str = "") -> Iterator[None]:
    """Replace the newest converter of ``op_type`` by ``wrap(converter)`` while the block runs
    (a test hook: ``optllm.testing.onnx_fuzz`` plants bugs with it)."""
    _load_converters()
    entries = _TABLE[(_norm_domain(domain), op_type)]
    saved = list(entries)
    since, fn = entries[-1]
    entries[-1] = (since, wrap(fn))
    try:
        yield
    finally:
        entries[:] = saved
