"""Kernel IR (KIR): the target-neutral form every kernel template is written in.

A template (``elementwise``, ``rownorm``, ``gemm``, ``attention``) fills a loop nest with the
fused region's scalar expression tree and returns a :class:`Kernel`. Code generators print a
``Kernel`` for one target: ``kernels/llvm`` to LLVM IR through llvmlite (the CPU backend); the
CUDA backend will print the very same ``Kernel`` objects to CUDA C. Nothing in this module
knows about a target: there are no vector widths, no thread pools, no pointers-to-functions.

Shape of the IR (a small, Halide-like loop language)::

    Kernel(name, params=(Param("out", "buffer", F32), Param("x", "buffer", F32),
                         Param("n", "scalar", I64)),
           body=(For("i", c(0), v("n"), (Store("out", v("i"), exp(load("x", v("i")))),),
                     parallel=True),))

* **Buffers** are flat arrays of one scalar type, indexed in elements (never bytes). Views with
  strides are index arithmetic the template writes out. ``bool`` buffers hold one byte per
  element (numpy's layout); loads yield ``BOOL`` values.
* **Scalars** are ``i64`` (sizes, strides, offsets) or floating parameters (eps, scale).
* **Loops** run ``start <= var < stop`` with step 1. A loop marked ``parallel`` may have its
  iterations split across workers (CPU threads, CUDA blocks); only the outermost parallel loop
  of a kernel is split, nested ones run serially inside a worker. ``work`` estimates the
  scalar operations of one iteration so a printer can run small loops on one worker.
* **Reductions** are written with a mutable local: ``Declare`` then ``Assign`` inside the loop.
  Floating reductions may be reassociated by a printer (vectorised sums), so results match a
  sequential sum to rounding, not bit for bit.
* **Primitives** (``Call``) are the few operations a target provides natively rather than as a
  loop nest: ``sgemm`` (BLAS on the CPU, cuBLAS or a tile kernel on CUDA).
* An ``independent`` loop promises that no iteration reads memory another iteration writes,
  so in-place kernels (an output that is also an input) vectorise without alias checks.
* ``ThreadIndex`` / ``NumThreads`` give the worker running the current iteration of the
  parallel loop, for per-worker scratch space (``scratch + ThreadIndex() * size``).

A ``Kernel``'s ``key()`` is a content hash of its printed form; code generators cache compiled
code under it, so equal templates compile once.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from optllm.ir.types import DType

KIR_VERSION = 1  # bump when printing or semantics change, so cached code is not reused


class ScalarType(enum.Enum):
    """Element and scalar types of KIR."""

    F64 = "f64"
    F32 = "f32"
    F16 = "f16"
    BF16 = "bf16"
    I64 = "i64"
    I32 = "i32"
    I16 = "i16"
    I8 = "i8"
    U8 = "u8"
    BOOL = "bool"

    def __str__(self) -> str:
        return self.value

    @property
    def is_float(self) -> bool:
        return self in (ScalarType.F64, ScalarType.F32, ScalarType.F16, ScalarType.BF16)

    @property
    def is_int(self) -> bool:
        return self in (ScalarType.I64, ScalarType.I32, ScalarType.I16, ScalarType.I8, ScalarType.U8)

    @property
    def is_signed(self) -> bool:
        return self in (ScalarType.I64, ScalarType.I32, ScalarType.I16, ScalarType.I8)

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def itemsize(self) -> int:
        """Bytes per element in a buffer (``bool`` is stored in one byte)."""
        return max(1, _BITS[self] // 8)

    @staticmethod
    def of(dtype: DType) -> ScalarType:
        """The KIR type that holds an IR element type; ``i4`` has none (packed, not addressable)."""
        try:
            return _FROM_DTYPE[dtype]
        except KeyError:
            raise KIRError(f"element type {dtype} has no kernel representation yet") from None

    @staticmethod
    def of_numpy(dtype: np.dtype) -> ScalarType:
        """The KIR type of a numpy element type (``bool`` included)."""
        for t in ScalarType:
            if DType(t.value).to_numpy() == np.dtype(dtype):
                return t
        raise KIRError(f"numpy element type {dtype} has no kernel representation yet")

    def to_numpy(self) -> np.dtype:
        return DType(self.value).to_numpy()


_BITS = {ScalarType.F64: 64, ScalarType.F32: 32, ScalarType.F16: 16, ScalarType.BF16: 16,
         ScalarType.I64: 64, ScalarType.I32: 32, ScalarType.I16: 16, ScalarType.I8: 8,
         ScalarType.U8: 8, ScalarType.BOOL: 1}
_FROM_DTYPE = {DType(t.value): t for t in ScalarType}

F32, F64, I64, I32, BOOL = ScalarType.F32, ScalarType.F64, ScalarType.I64, ScalarType.I32, ScalarType.BOOL


class KIRError(ValueError):
    """A malformed kernel (unknown buffer or variable, type mismatch, unknown op)."""


# --- expressions ---------------------------------------------------------------------------

MATH_FUNCTIONS = frozenset({
    "exp", "log", "tanh", "erf", "sigmoid", "sin", "cos", "tan", "asin", "acos", "atan",
    "sinh", "cosh", "asinh", "acosh", "atanh",
})
"""The transcendental functions, defined on floating operands only, which every printer takes
from its math library (``llvm/mathlib.py`` for the LLVM printer). The one list of them: the
verifier, the LLVM scalar printer and the math library read it, and the IR's unary ops name
theirs through ``OpDef.scalar`` (so the kernel templates' rules come from the declarations)."""

UNARY_OPS = frozenset({
    "neg", "abs", "sqrt", "rsqrt", "floor", "ceil", "round", "reciprocal", "not", "sign", "isnan", "isinf",
}) | MATH_FUNCTIONS
"""Unary ops. ``round`` is half-to-even; ``not`` is logical on BOOL, bitwise on ints;
``isnan``/``isinf`` yield BOOL."""

BINARY_OPS = frozenset({
    "add", "sub", "mul", "div", "max", "min", "pow", "mod", "floordiv",
    "and", "or", "xor", "lt", "le", "gt", "ge", "eq", "ne",
})
"""Binary ops on operands of one type. ``div`` on ints truncates toward zero; ``floordiv`` and
``mod`` follow Python (floor) semantics on ints and floats; ``max``/``min`` propagate NaN
(as numpy's ``maximum``); comparisons yield BOOL."""

_CMP = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})


@dataclass(frozen=True)
class Expr:
    """A scalar expression; ``type`` is its ScalarType."""

    @property
    def type(self) -> ScalarType:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    # Operator sugar keeps templates readable: ``(x - mean) * rstd``.
    def __add__(self, o: ExprLike) -> Expr:
        return Binary("add", self, as_expr(o, self.type))

    def __radd__(self, o: ExprLike) -> Expr:
        return Binary("add", as_expr(o, self.type), self)

    def __sub__(self, o: ExprLike) -> Expr:
        return Binary("sub", self, as_expr(o, self.type))

    def __rsub__(self, o: ExprLike) -> Expr:
        return Binary("sub", as_expr(o, self.type), self)

    def __mul__(self, o: ExprLike) -> Expr:
        return Binary("mul", self, as_expr(o, self.type))

    def __rmul__(self, o: ExprLike) -> Expr:
        return Binary("mul", as_expr(o, self.type), self)

    def __truediv__(self, o: ExprLike) -> Expr:
        return Binary("div", self, as_expr(o, self.type))

    def __neg__(self) -> Expr:
        return Unary("neg", self)


ExprLike = Expr | int | float | bool


@dataclass(frozen=True)
class Const(Expr):
    value: float | int | bool
    ctype: ScalarType

    @property
    def type(self) -> ScalarType:
        return self.ctype


@dataclass(frozen=True)
class Var(Expr):
    """A loop variable, a scalar parameter, or a ``Let``/``Declare`` name."""

    name: str
    ctype: ScalarType = I64

    @property
    def type(self) -> ScalarType:
        return self.ctype


@dataclass(frozen=True)
class Load(Expr):
    """``buffer[index]``; ``ctype`` must be the buffer's element type."""

    buffer: str
    index: Expr
    ctype: ScalarType

    @property
    def type(self) -> ScalarType:
        return self.ctype


@dataclass(frozen=True)
class Unary(Expr):
    op: str
    x: Expr

    def __post_init__(self) -> None:
        if self.op not in UNARY_OPS:
            raise KIRError(f"unknown unary op {self.op!r}")

    @property
    def type(self) -> ScalarType:
        return BOOL if self.op in ("isnan", "isinf") else self.x.type


@dataclass(frozen=True)
class Binary(Expr):
    op: str
    a: Expr
    b: Expr

    def __post_init__(self) -> None:
        if self.op not in BINARY_OPS:
            raise KIRError(f"unknown binary op {self.op!r}")
        if self.a.type != self.b.type:
            raise KIRError(f"{self.op}: operand types differ ({self.a.type} vs {self.b.type})")

    @property
    def type(self) -> ScalarType:
        return BOOL if self.op in _CMP else self.a.type


@dataclass(frozen=True)
class Select(Expr):
    """``cond ? a : b``; both branches are evaluated (no side effects exist in expressions)."""

    cond: Expr
    a: Expr
    b: Expr

    def __post_init__(self) -> None:
        if self.cond.type != BOOL:
            raise KIRError(f"select condition must be bool, got {self.cond.type}")
        if self.a.type != self.b.type:
            raise KIRError(f"select branches differ ({self.a.type} vs {self.b.type})")

    @property
    def type(self) -> ScalarType:
        return self.a.type


@dataclass(frozen=True)
class Cast(Expr):
    """Numeric conversion with numpy's ``astype`` semantics (float->int truncates; to BOOL is
    ``!= 0``)."""

    x: Expr
    to: ScalarType

    @property
    def type(self) -> ScalarType:
        return self.to


@dataclass(frozen=True)
class ThreadIndex(Expr):
    """The worker (0 .. NumThreads()-1) running the current parallel-loop iteration."""

    @property
    def type(self) -> ScalarType:
        return I64


@dataclass(frozen=True)
class NumThreads(Expr):
    """How many workers the kernel may use (the bound of ``ThreadIndex``)."""

    @property
    def type(self) -> ScalarType:
        return I64


@dataclass(frozen=True)
class Addr(Expr):
    """The address of ``buffer[index]``: only as an argument of a ``Call`` primitive."""

    buffer: str
    index: Expr

    @property
    def type(self) -> ScalarType:
        return I64


# --- statements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stmt:
    """A statement of a loop body."""


@dataclass(frozen=True)
class Store(Stmt):
    buffer: str
    index: Expr
    value: Expr


@dataclass(frozen=True)
class Let(Stmt):
    """Bind ``name`` to a value for the rest of the enclosing block (immutable)."""

    name: str
    value: Expr


@dataclass(frozen=True)
class Declare(Stmt):
    """A mutable local (an accumulator) with an initial value, visible in the rest of the block."""

    name: str
    init: Expr


@dataclass(frozen=True)
class Assign(Stmt):
    """Update a ``Declare``d local."""

    name: str
    value: Expr


@dataclass(frozen=True)
class For(Stmt):
    var: str
    start: Expr
    stop: Expr
    body: tuple[Stmt, ...]
    parallel: bool = False
    work: int = 1  # estimated scalar ops per iteration, for the serial/parallel decision
    independent: bool = False  # no iteration reads what another writes (an in-place
    # elementwise loop qualifies: out[j] = f(out[j])), so a printer may vectorise it without
    # runtime alias checks even when an output buffer is also an input


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] = ()


PRIMITIVES: dict[str, tuple[str, ...]] = {
    # C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, row-major, single-threaded: the
    # kernel's own parallel loop splits the work, so one thread pool serves everything.
    "sgemm": ("trans_a", "trans_b", "m", "n", "k", "alpha", "a", "lda", "b", "ldb", "beta",
              "c", "ldc"),
    # C[M,N] = A[M,K] @ B + beta * C with B pre-packed once (by the runtime, for exactly these
    # m, n, k) into the target's GEMM panel format: weights are re-laid out once, not per call.
    "sgemm_packed": ("m", "n", "k", "a", "lda", "b", "beta", "c", "ldc"),
}
"""Target-provided primitives and their argument names. ``trans_a``/``trans_b`` are I64 0 or 1
(1: the operand is stored transposed), sizes and leading dims I64 (in elements), ``alpha``/
``beta`` F32, matrices ``Addr`` expressions."""


@dataclass(frozen=True)
class Call(Stmt):
    fn: str
    args: tuple[Expr, ...]

    def __post_init__(self) -> None:
        if self.fn not in PRIMITIVES:
            raise KIRError(f"unknown primitive {self.fn!r} (known: {', '.join(PRIMITIVES)})")
        if len(self.args) != len(PRIMITIVES[self.fn]):
            raise KIRError(f"{self.fn} takes {len(PRIMITIVES[self.fn])} arguments "
                           f"({', '.join(PRIMITIVES[self.fn])}), got {len(self.args)}")


# --- kernels -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A kernel parameter: a ``buffer`` of ``ctype`` elements or a ``scalar`` of ``ctype``."""

    name: str
    kind: str  # "buffer" | "scalar"
    ctype: ScalarType

    def __post_init__(self) -> None:
        if self.kind not in ("buffer", "scalar"):
            raise KIRError(f"parameter {self.name}: kind must be 'buffer' or 'scalar', got {self.kind!r}")


@dataclass(frozen=True)
class Kernel:
    """A complete kernel. Calling convention (every target): one argument, a pointer to an
    array of 64-bit slots, one per parameter in order — a buffer's address, an integer scalar's
    value, or a floating scalar's value stored as a float64 bit pattern."""

    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    doc: str = field(default="", compare=False)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KIRError(f"kernel {self.name} has no parameter {name!r}")

    def text(self) -> str:
        """A readable, deterministic listing (what ``key`` hashes)."""
        lines = [f"kernel {self.name}({', '.join(f'{p.kind} {p.name}: {p.ctype}' for p in self.params)})"]
        _print_block(self.body, 1, lines)
        return "\n".join(lines)

    def key(self) -> str:
        return hashlib.sha256(f"kir{KIR_VERSION}\n{self.text()}".encode()).hexdigest()[:32]


def _print_block(body: Iterable[Stmt], depth: int, out: list[str]) -> None:
    pad = "  " * depth
    for s in body:
        if isinstance(s, For):
            par = (" parallel" if s.parallel else "") + (" independent" if s.independent else "")
            out.append(f"{pad}for{par} {s.var} in [{expr_text(s.start)}, {expr_text(s.stop)}) work={s.work}:")
            _print_block(s.body, depth + 1, out)
        elif isinstance(s, If):
            out.append(f"{pad}if {expr_text(s.cond)}:")
            _print_block(s.then, depth + 1, out)
            if s.orelse:
                out.append(f"{pad}else:")
                _print_block(s.orelse, depth + 1, out)
        elif isinstance(s, Store):
            out.append(f"{pad}{s.buffer}[{expr_text(s.index)}] = {expr_text(s.value)}")
        elif isinstance(s, Let):
            out.append(f"{pad}let {s.name} = {expr_text(s.value)}")
        elif isinstance(s, Declare):
            out.append(f"{pad}var {s.name} = {expr_text(s.init)}")
        elif isinstance(s, Assign):
            out.append(f"{pad}{s.name} = {expr_text(s.value)}")
        elif isinstance(s, Call):
            out.append(f"{pad}{s.fn}({', '.join(expr_text(a) for a in s.args)})")
        else:  # pragma: no cover
            raise KIRError(f"unknown statement {s!r}")


def expr_text(e: Expr) -> str:
    if isinstance(e, Const):
        return f"{e.value!r}:{e.ctype}"
    if isinstance(e, Var):
        return e.name if e.ctype == I64 else f"{e.name}:{e.ctype}"
    if isinstance(e, Load):
        return f"{e.buffer}[{expr_text(e.index)}]"
    if isinstance(e, Addr):
        return f"&{e.buffer}[{expr_text(e.index)}]"
    if isinstance(e, Unary):
        return f"{e.op}({expr_text(e.x)})"
    if isinstance(e, Binary):
        return f"{e.op}({expr_text(e.a)}, {expr_text(e.b)})"
    if isinstance(e, Select):
        return f"select({expr_text(e.cond)}, {expr_text(e.a)}, {expr_text(e.b)})"
    if isinstance(e, Cast):
        return f"cast<{e.to}>({expr_text(e.x)})"
    if isinstance(e, ThreadIndex):
        return "thread_index()"
    if isinstance(e, NumThreads):
        return "num_threads()"
    raise KIRError(f"unknown expression {e!r}")


# --- builders ------------------------------------------------------------------------------


def as_expr(x: ExprLike, like: ScalarType = I64) -> Expr:
    """Wrap a Python number as a ``Const`` of type ``like``."""
    if isinstance(x, Expr):
        return x
    return Const(x, like)


def c(value: float | int | bool, ctype: ScalarType = I64) -> Const:
    return Const(value, ctype)


def v(name: str, ctype: ScalarType = I64) -> Var:
    return Var(name, ctype)


def load(buffer: str, index: ExprLike, ctype: ScalarType) -> Load:
    return Load(buffer, as_expr(index), ctype)


def call(fn: str, *args: ExprLike) -> Call:
    return Call(fn, tuple(as_expr(a) for a in args))


def block(*stmts: Stmt | Sequence[Stmt]) -> tuple[Stmt, ...]:
    """Flatten statements and statement lists into one body."""
    out: list[Stmt] = []
    for s in stmts:
        if isinstance(s, Stmt):
            out.append(s)
        else:
            out.extend(s)
    return tuple(out)
