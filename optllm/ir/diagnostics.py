"""Typed errors of the IR layer; each names what went wrong and where."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optllm.ir.ops import Operation


class OptllmError(Exception):
    """Base of every user-facing error (bad input, unsupported model, unknown pass, ...).

    The ``opt-llm`` command turns these into a one-paragraph message and exit code 2; any
    other exception is an internal error.
    """


class IRError(OptllmError):
    """Base of every error the IR layer raises."""


class ParseError(IRError):
    """Malformed ``.oir`` text, located at ``line:col`` of ``filename``."""

    def __init__(self, msg: str, line: int, col: int, filename: str = "<input>", source_line: str = "") -> None:
        self.msg = msg
        self.line = line
        self.col = col
        self.filename = filename
        self.source_line = source_line
        text = f"{filename}:{line}:{col}: error: {msg}"
        if source_line:
            text += f"\n  {source_line}\n  {' ' * (col - 1)}^"
        super().__init__(text)


class VerifyError(IRError):
    """An op or graph that breaks an IR invariant; names the op and its source location."""

    def __init__(self, msg: str, op: Operation | None = None, where: str = "") -> None:
        self.msg = msg
        self.op = op
        parts = []
        if op is not None:
            parts.append(f"'{op.name}'")
            if op.loc:
                parts.append(f'at loc("{op.loc}")')
        if where:
            parts.append(f"in {where}")
        prefix = " ".join(parts)
        super().__init__(f"{prefix}: {msg}" if prefix else msg)


class TypeInferenceError(IRError):
    """Operands or attributes an op cannot type; the verifier adds the op and location."""
