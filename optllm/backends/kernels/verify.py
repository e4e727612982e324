"""Check a KIR kernel before any printer sees it.

``verify_kernel`` raises :class:`~optllm.backends.kernels.kir.KIRError` naming the kernel and the
statement (its first printed line) when:

* a ``Var`` is not a loop variable, scalar parameter, ``Let`` or ``Declare`` in scope, or its
  type differs from the binding's;
* a ``Load``/``Store``/``Addr`` names something other than a buffer parameter, a load's type is
  not the buffer's, or a stored value's type is not the buffer's;
* an ``Assign`` targets something other than a ``Declare`` of the same type;
* an index, a loop bound or an ``If`` condition has the wrong type (``i64``, ``i64``, ``bool``);
* an op is applied to a type it is not defined on (``exp`` of an int, ``and`` of floats);
* a ``Call`` argument does not match the primitive's signature (``kir.PRIMITIVES``).
"""

from __future__ import annotations

from collections.abc import Iterable

from optllm.backends.kernels import kir
from optllm.backends.kernels.kir import (
    BOOL,
    F32,
    I64,
    Addr,
    Assign,
    Binary,
    Call,
    Cast,
    Const,
    Declare,
    Expr,
    For,
    If,
    Kernel,
    KIRError,
    Let,
    Load,
    NumThreads,
    ScalarType,
    Select,
    Stmt,
    Store,
    ThreadIndex,
    Unary,
    Var,
)

FLOAT_ONLY_UNARY = kir.MATH_FUNCTIONS | {"sqrt", "rsqrt"}
NOT_FLOAT_BINARY = frozenset({"and", "or", "xor"})

_SGEMM_TYPES = {"alpha": F32, "beta": F32}
_SGEMM_MATRICES = ("a", "b", "c")

# A scope maps a name to (kind, type); kind is "param", "buffer", "loop", "let" or "var".
Scope = dict[str, tuple[str, ScalarType]]


def verify_kernel(k: Kernel) -> None:
    """Raise ``KIRError`` if ``k`` is malformed (see the module docstring for the rules)."""
    scope: Scope = {}
    for p in k.params:
        if p.name in scope:
            raise KIRError(f"kernel {k.name}: parameter {p.name} declared twice")
        scope[p.name] = ("buffer" if p.kind == "buffer" else "param", p.ctype)
    _Verifier(k).block(k.body, scope)


def stmt_text(s: Stmt) -> str:
    """The first printed line of a statement (what errors quote)."""
    lines: list[str] = []
    kir._print_block([s], 0, lines)
    return lines[0].rstrip(":")


class _Verifier:
    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.stmt: Stmt | None = None

    def fail(self, msg: str) -> KIRError:
        where = f" in `{stmt_text(self.stmt)}`" if self.stmt is not None else ""
        return KIRError(f"kernel {self.kernel.name}{where}: {msg}")

    def block(self, body: Iterable[Stmt], scope: Scope) -> None:
        scope = dict(scope)
        for s in body:
            self.stmt = s
            self.statement(s, scope)

    def statement(self, s: Stmt, scope: Scope) -> None:
        if isinstance(s, Store):
            t = self.buffer(s.buffer, scope)
            self.index(s.index, scope)
            if self.expr(s.value, scope) != t:
                raise self.fail(f"stores a {s.value.type} value into {s.buffer}, a {t} buffer")
        elif isinstance(s, Let | Declare):
            value = s.value if isinstance(s, Let) else s.init
            scope[s.name] = ("let" if isinstance(s, Let) else "var", self.expr(value, scope))
        elif isinstance(s, Assign):
            self.assign(s, scope)
        elif isinstance(s, For):
            for bound in (s.start, s.stop):
                if self.expr(bound, scope) != I64:
                    raise self.fail(f"loop bound {kir.expr_text(bound)} is {bound.type}, not i64")
            self.block(s.body, {**scope, s.var: ("loop", I64)})
        elif isinstance(s, If):
            if self.expr(s.cond, scope) != BOOL:
                raise self.fail(f"condition is {s.cond.type}, not bool")
            self.block(s.then, scope)
            self.stmt = s
            self.block(s.orelse, scope)
        elif isinstance(s, Call):
            self.call(s, scope)
        else:
            raise self.fail(f"unknown statement {s!r}")

    def assign(self, s: Assign, scope: Scope) -> None:
        kind, t = scope.get(s.name, ("", None))
        if kind != "var":
            what = f"a {kind}" if kind else "undeclared"
            raise self.fail(f"assigns {s.name}, which is {what} (only Declare'd locals can be assigned)")
        if self.expr(s.value, scope) != t:
            raise self.fail(f"assigns a {s.value.type} value to {s.name}, declared {t}")

    def call(self, s: Call, scope: Scope) -> None:
        for name, arg in zip(kir.PRIMITIVES[s.fn], s.args):
            if name in _SGEMM_MATRICES:
                if not isinstance(arg, Addr):
                    raise self.fail(f"{s.fn} argument {name} must be an Addr, got {kir.expr_text(arg)}")
                if self.buffer(arg.buffer, scope) != F32:
                    raise self.fail(f"{s.fn} argument {name} must address an f32 buffer, {arg.buffer} is not")
            want = _SGEMM_TYPES.get(name, I64)
            if self.expr(arg, scope) != want:
                raise self.fail(f"{s.fn} argument {name} must be {want}, got {arg.type}")

    def buffer(self, name: str, scope: Scope) -> ScalarType:
        kind, t = scope.get(name, ("", BOOL))
        if kind != "buffer":
            raise self.fail(f"{name} is not a buffer parameter")
        return t

    def index(self, e: Expr, scope: Scope) -> None:
        if self.expr(e, scope) != I64:
            raise self.fail(f"index {kir.expr_text(e)} is {e.type}, not i64")

    def expr(self, e: Expr, scope: Scope) -> ScalarType:
        """Check ``e`` and return its type."""
        if isinstance(e, Var):
            kind, t = scope.get(e.name, ("", e.ctype))
            if kind in ("", "buffer"):
                raise self.fail(f"{e.name} is not a loop variable, scalar parameter, let or declare in scope")
            if t != e.ctype:
                raise self.fail(f"{e.name} is {t} but used as {e.ctype}")
        elif isinstance(e, Load):
            t = self.buffer(e.buffer, scope)
            self.index(e.index, scope)
            if e.ctype != t:
                raise self.fail(f"loads {e.ctype} from {e.buffer}, a {t} buffer")
        elif isinstance(e, Addr):
            self.buffer(e.buffer, scope)
            self.index(e.index, scope)
        elif isinstance(e, Unary):
            t = self.expr(e.x, scope)
            if e.op in FLOAT_ONLY_UNARY and not t.is_float:
                raise self.fail(f"{e.op} needs a floating operand, got {t}")
        elif isinstance(e, Binary):
            t = self.expr(e.a, scope)
            self.expr(e.b, scope)
            if e.op in NOT_FLOAT_BINARY and t.is_float:
                raise self.fail(f"{e.op} is not defined on {t}")
        elif isinstance(e, Select):
            for sub in (e.cond, e.a, e.b):
                self.expr(sub, scope)
        elif isinstance(e, Cast):
            self.expr(e.x, scope)
        elif not isinstance(e, Const | ThreadIndex | NumThreads):
            raise self.fail(f"unknown expression {e!r}")
        return e.type
