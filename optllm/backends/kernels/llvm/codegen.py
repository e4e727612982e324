"""Print KIR kernels to LLVM IR text (through ``llvmlite.ir``).

Every kernel becomes ``void @<name>(i64* slots)``; slot ``i`` holds parameter ``i`` (a buffer's
address, an integer scalar, or a floating scalar as a float64 bit pattern, converted here to the
parameter's type). What the printed code looks like::

    for i in [0, n):  x[i] = exp(y[i])        define void @k(i64* %slots) {
                                                  %x = inttoptr i64 %slot0 to float*  ...
                                                i.cond: %i = load i64, ...; icmp slt %i, %n
                                                i.body: %v = load float, float* %p, align 4
                                                        %e = call float @optllm.exp.f32(%v) ...

* **Types**: ``bool`` is ``i1`` in registers and one byte (0/1) in buffers; ``u8`` is ``i8``
  with unsigned division, comparison and widening. ``bf16`` is ``i16`` in buffers and ``float`` in
  registers, rounded to bfloat16 (nearest even) after every operation, as ml_dtypes computes it.
* **Floating point**: arithmetic carries ``contract`` (multiply-adds fuse); the add/mul chain of
  an accumulator update (``Assign``) also carries ``reassoc`` so reductions vectorise. Elsewhere
  no ``reassoc``: it licenses rewrites such as ``x * pow(x, y) -> pow(x, y + 1)`` that turn
  numpy's NaN into a number. A ``max``/``min`` accumulator update becomes ``llvm.maximum`` /
  ``llvm.minimum`` (NaN-propagating, vectorisable; only ``-0 < +0`` differs from numpy's
  ``maximum``). Never ``nnan``/``ninf``: NaN and inf propagate as in numpy.
  Comparisons are ordered except ``ne`` (``nan != nan``).
* **Integers** follow numpy: wrapping arithmetic; ``div`` truncates, ``floordiv``/``mod`` floor;
  division by zero gives 0 and ``MIN // -1`` wraps (no trap).
* **Loops** are plain counted loops over an ``alloca`` counter (mem2reg and O3 do the rest);
  buffer accesses are ``inbounds`` GEPs with element alignment. Buffers are *not* ``noalias``
  (an output may be an input: in-place kernels), so the vectoriser adds runtime overlap checks.
* **Parallel loops**: every ``For(parallel=True)`` not nested in another parallel loop is
  outlined into ``<kernel>.par<k>.range(data, lo, hi, tid)``; the kernel either calls it for the
  whole range (``(stop-start)*work < PARALLEL_MIN_WORK`` or one thread) or hands
  ``<kernel>.par<k>.omp`` to ``GOMP_parallel``, which gives every worker one contiguous chunk.
  The values the body uses from outside (parameters, lets, loop variables, accumulators' current
  values) travel in an ``[N x i64]`` array. A parallel body may not assign an outer accumulator.
* **Primitives**: ``sgemm`` calls numpy's ILP64 OpenBLAS ``cblas_sgemm``. A kernel with a call
  makes BLAS single-threaded for its whole run, so its own parallel loop is the only thread pool:
  ``openblas_set_num_threads_local(1)`` on entry, the previous count restored on exit, both on
  the calling thread only. In the bundled OpenBLAS (0.3.31, pthreads) the "local" setter changes
  the *global* count, so calling it from every worker would race on save/restore; it also means
  a numpy matmul running on another Python thread during such a kernel runs single-threaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import llvmlite.ir as ir

from optllm.backends.kernels import kir
from optllm.backends.kernels.kir import (
    BOOL,
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
from optllm.backends.kernels.llvm import mathlib
from optllm.backends.kernels.llvm.runtime import BLAS_THREADS_SYMBOL, NUM_THREADS_SYMBOL, SGEMM_SYMBOL

BF16 = ScalarType.BF16

PARALLEL_MIN_WORK = 1 << 15
"""A parallel loop whose ``(stop - start) * work`` is below this runs on the calling thread: waking
the OpenMP team costs a few microseconds, about what 32K scalar operations take on one core."""

FAST = ("reassoc", "contract")  # accumulator updates (Assign): lets reductions vectorise
CONTRACT = ("contract",)  # everything else: a*b+c may fuse; no algebraic rewrites that change NaN/inf

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_SLOTS = _I64.as_pointer()
_DATA = _I8.as_pointer()

_LLTYPES: dict[ScalarType, ir.Type] = {
    ScalarType.F64: ir.DoubleType(), ScalarType.F32: ir.FloatType(), ScalarType.F16: ir.HalfType(),
    ScalarType.BF16: ir.FloatType(),
    ScalarType.I64: _I64, ScalarType.I32: _I32, ScalarType.I16: ir.IntType(16), ScalarType.I8: _I8,
    ScalarType.U8: _I8, ScalarType.BOOL: _I1,
}


def lltype(t: ScalarType) -> ir.Type:
    """The register type of a KIR scalar type."""
    try:
        return _LLTYPES[t]
    except KeyError:
        raise KIRError(f"the LLVM printer does not support {t} yet") from None


def memtype(t: ScalarType) -> ir.Type:
    """The in-buffer type (``bool`` is a byte)."""
    return {BOOL: _I8, BF16: ir.IntType(16)}.get(t) or lltype(t)


def _regbits(t: ScalarType) -> int:
    return 32 if t == BF16 else t.bits


def emit_module(kernels: Sequence[Kernel], vector_width: int | None = None) -> str:
    """LLVM IR text defining one ``void @<name>(i64*)`` per kernel (names must be unique).

    ``vector_width`` (bits) sets ``prefer-vector-width`` on every kernel function: the JIT asks
    for 512 on AVX-512 hosts, where LLVM otherwise stays at 256 (measured on this host's Rocket
    Lake: exp, tanh and erf loops 25-30% faster; memory-bound loops unchanged)."""
    module = ir.Module(name="optllm_kernels")
    names = [k.name for k in kernels]
    if len(set(names)) != len(names):
        raise KIRError(f"kernel names must be unique in one module: {names}")
    for k in kernels:
        _KernelGen(module, k, vector_width).emit()
    return str(module)


# --- module-level declarations --------------------------------------------------------------


def _declare(module: ir.Module, name: str, ret: ir.Type, args: Sequence[ir.Type]) -> ir.Function:
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ret, list(args)), name=name)


def intrinsic(module: ir.Module, name: str, ty: ir.Type, nargs: int = 1) -> ir.Function:
    """``llvm.<name>.<f32|f64|...>`` taking ``nargs`` arguments of ``ty``."""
    return _declare(module, f"llvm.{name}.{_suffix(ty)}", ty, [ty] * nargs)


def _suffix(ty: ir.Type) -> str:
    if isinstance(ty, ir.FloatType):
        return "f32"
    if isinstance(ty, ir.DoubleType):
        return "f64"
    if isinstance(ty, ir.HalfType):
        return "f16"
    return f"i{ty.width}"


def _num_threads_global(module: ir.Module) -> ir.GlobalVariable:
    if NUM_THREADS_SYMBOL in module.globals:
        return module.globals[NUM_THREADS_SYMBOL]
    g = ir.GlobalVariable(module, _I64, NUM_THREADS_SYMBOL)
    g.linkage = "external"
    return g


# --- kernels --------------------------------------------------------------------------------

Binding = tuple[str, ir.Value, ScalarType]  # (kind: "val" | "var" | "buf", value, type)
Env = dict[str, Binding]


class _KernelGen:
    """Prints one kernel: the entry function plus one outlined pair per parallel loop."""

    def __init__(self, module: ir.Module, kernel: Kernel, vector_width: int | None = None):
        self.module = module
        self.kernel = kernel
        self.vector_width = vector_width
        self.num_par = 0
        self.has_call = _contains_call(kernel.body)

    def emit(self) -> None:
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [_SLOTS]), name=self.kernel.name)
        self.attributes(fn)
        g = _FnGen(self, fn, tid=None)
        env = g.unpack_params(fn.args[0])
        saved = g.blas_single_thread() if self.has_call else None
        g.block(self.kernel.body, env)
        if saved is not None:
            g.blas_restore(saved)
        g.b.ret_void()

    def attributes(self, fn: ir.Function) -> None:
        fn.attributes.add("nounwind")
        if self.vector_width:  # a string attribute llvmlite does not know: bypass its name check
            set.add(fn.attributes, f'"prefer-vector-width"="{self.vector_width}"')

    def outline(self, caller: _FnGen, loop: For, env: Env) -> None:
        """Emit ``loop`` as a parallel region called from ``caller``'s current position."""
        _check_parallel_assigns(self.kernel, loop)
        k = self.num_par
        self.num_par += 1
        names = sorted(env)
        start, stop = caller.expr(loop.start, env), caller.expr(loop.stop, env)
        range_fn = self._range_fn(f"{self.kernel.name}.par{k}.range", loop, names, env)
        omp_fn = self._omp_fn(f"{self.kernel.name}.par{k}.omp", range_fn, len(names))
        b = caller.b
        data = caller.alloca(ir.ArrayType(_I64, len(names) + 2), "par.data")
        for i, name in enumerate(names):
            b.store(caller.to_bits(env[name]), b.gep(data, [_I64(0), _I64(i)], inbounds=True))
        b.store(start, b.gep(data, [_I64(0), _I64(len(names))], inbounds=True))
        b.store(stop, b.gep(data, [_I64(0), _I64(len(names) + 1)], inbounds=True))
        raw = b.bitcast(data, _DATA)
        n = b.sub(stop, start)
        nthreads = b.load(_num_threads_global(self.module))
        small = b.icmp_signed("<", b.mul(n, _I64(max(1, loop.work))), _I64(PARALLEL_MIN_WORK))
        serial = b.or_(small, b.icmp_signed("<=", nthreads, _I64(1)))
        with b.if_else(serial) as (then, otherwise):
            with then:
                b.call(range_fn, [raw, start, stop, _I64(0)])
            with otherwise:
                team = b.select(b.icmp_signed("<", n, nthreads), n, nthreads)
                gomp = _declare(self.module, "GOMP_parallel", ir.VoidType(),
                                [ir.FunctionType(ir.VoidType(), [_DATA]).as_pointer(), _DATA, _I32, _I32])
                b.call(gomp, [omp_fn, raw, b.trunc(team, _I32), _I32(0)])

    def _range_fn(self, name: str, loop: For, names: list[str], outer: Env) -> ir.Function:
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [_DATA, _I64, _I64, _I64]), name=name)
        fn.linkage = "internal"
        self.attributes(fn)
        data, lo, hi, tid = fn.args
        g = _FnGen(self, fn, tid=tid)
        arr = g.b.bitcast(data, _SLOTS)
        env: Env = {}
        for i, nm in enumerate(names):
            kind, _, ctype = outer[nm]
            bits = g.b.load(g.b.gep(arr, [_I64(i)], inbounds=True))
            env[nm] = g.from_bits(kind, bits, ctype, nm)
        g.counted_loop(loop.var, lo, hi, lambda i: g.block(loop.body, {**env, loop.var: ("val", i, I64)}))
        g.b.ret_void()
        return fn

    def _omp_fn(self, name: str, range_fn: ir.Function, nvals: int) -> ir.Function:
        # Static schedule: worker t of T runs [start + t*chunk, min(start + (t+1)*chunk, stop)).
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [_DATA]), name=name)
        fn.linkage = "internal"
        self.attributes(fn)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        arr = b.bitcast(fn.args[0], _SLOTS)
        start = b.load(b.gep(arr, [_I64(nvals)], inbounds=True))
        stop = b.load(b.gep(arr, [_I64(nvals + 1)], inbounds=True))
        tid = b.sext(b.call(_declare(self.module, "omp_get_thread_num", _I32, []), []), _I64)
        nt = b.sext(b.call(_declare(self.module, "omp_get_num_threads", _I32, []), []), _I64)
        chunk = b.sdiv(b.add(b.sub(stop, start), b.sub(nt, _I64(1))), nt)
        lo = b.add(start, b.mul(tid, chunk))
        hi_raw = b.add(lo, chunk)
        hi = b.select(b.icmp_signed("<", hi_raw, stop), hi_raw, stop)
        with b.if_then(b.icmp_signed("<", lo, hi)):
            b.call(range_fn, [fn.args[0], lo, hi, tid])
        b.ret_void()
        return fn


def _walk(body: Iterable[Stmt]) -> Iterable[Stmt]:
    for s in body:
        yield s
        if isinstance(s, For):
            yield from _walk(s.body)
        elif isinstance(s, If):
            yield from _walk(s.then)
            yield from _walk(s.orelse)


def _contains_call(body: Iterable[Stmt]) -> bool:
    return any(isinstance(s, Call) for s in _walk(body))


def _contains_parallel(body: Iterable[Stmt]) -> bool:
    return any(isinstance(s, For) and s.parallel for s in _walk(body))


def _check_parallel_assigns(kernel: Kernel, loop: For) -> None:
    declared = {s.name for s in _walk(loop.body) if isinstance(s, Declare)}
    for s in _walk(loop.body):
        if isinstance(s, Assign) and s.name not in declared:
            raise KIRError(f"kernel {kernel.name}: parallel loop over {loop.var} assigns {s.name}, "
                           "declared outside it (a data race); reduce per worker into a buffer instead")


class _FnGen:
    """Statement and expression printing into one LLVM function."""

    def __init__(self, kg: _KernelGen, fn: ir.Function, tid: ir.Value | None):
        self.kg = kg
        self.module = kg.module
        self.fn = fn
        self.tid = tid  # ThreadIndex() inside an outlined parallel body, else None (0)
        entry = fn.append_basic_block("entry")
        self.alloca_b = ir.IRBuilder(entry)
        self.b = ir.IRBuilder(fn.append_basic_block("body"))
        self.alloca_b.branch(self.b.block)
        self.alloca_b.position_at_start(entry)

    # -- plumbing --

    def alloca(self, ty: ir.Type, name: str) -> ir.Value:
        return self.alloca_b.alloca(ty, name=name)

    def unpack_params(self, slots: ir.Value) -> Env:
        env: Env = {}
        b = self.b
        for i, p in enumerate(self.kg.kernel.params):
            slot = b.load(b.gep(slots, [_I64(i)], inbounds=True), name=f"slot.{p.name}")
            if p.kind == "buffer":
                env[p.name] = ("buf", b.inttoptr(slot, memtype(p.ctype).as_pointer(), name=p.name), p.ctype)
            else:
                env[p.name] = ("val", self._scalar_from_slot(slot, p.ctype), p.ctype)
        return env

    def _scalar_from_slot(self, slot: ir.Value, t: ScalarType) -> ir.Value:
        b = self.b
        if t.is_float:
            d = b.bitcast(slot, ir.DoubleType())
            v = d if t == ScalarType.F64 else b.fptrunc(d, lltype(t))
            return round_bf16(b, v) if t == BF16 else v
        if t == BOOL:
            return b.icmp_unsigned("!=", slot, _I64(0))
        return slot if t == I64 else b.trunc(slot, lltype(t))

    def to_bits(self, binding: Binding) -> ir.Value:
        """A binding's current value as an i64 (to pass into an outlined region)."""
        kind, value, t = binding
        b = self.b
        if kind == "buf":
            return b.ptrtoint(value, _I64)
        if kind == "var":
            value = b.load(value)
        if t.is_float:
            value = b.bitcast(value, ir.IntType(_regbits(t)))
        return value if t.bits == 64 else b.zext(value, _I64)

    def from_bits(self, kind: str, bits: ir.Value, t: ScalarType, name: str) -> Binding:
        b = self.b
        if kind == "buf":
            return ("buf", b.inttoptr(bits, memtype(t).as_pointer(), name=name), t)
        value = bits if t.bits == 64 else b.trunc(bits, ir.IntType(_regbits(t)))
        if t.is_float:
            value = b.bitcast(value, lltype(t))
        if kind == "var":
            slot = self.alloca(lltype(t), name)
            b.store(value, slot)
            return ("var", slot, t)
        return ("val", value, t)

    def blas_single_thread(self) -> ir.Value:
        f = _declare(self.module, BLAS_THREADS_SYMBOL, _I32, [_I32])
        return self.b.call(f, [_I32(1)])

    def blas_restore(self, saved: ir.Value) -> None:
        f = _declare(self.module, BLAS_THREADS_SYMBOL, _I32, [_I32])
        self.b.call(f, [saved])

    def counted_loop(self, var: str, start: ir.Value, stop: ir.Value, body: Callable[[ir.Value], None]) -> None:
        b = self.b
        ctr = self.alloca(_I64, var)
        b.store(start, ctr)
        cond = self.fn.append_basic_block(f"{var}.cond")
        loop_body = self.fn.append_basic_block(f"{var}.body")
        end = self.fn.append_basic_block(f"{var}.end")
        b.branch(cond)
        b.position_at_end(cond)
        i = b.load(ctr, name=var)
        b.cbranch(b.icmp_signed("<", i, stop), loop_body, end)
        b.position_at_end(loop_body)
        body(i)
        b.store(b.add(i, _I64(1), flags=["nsw"]), ctr)
        b.branch(cond)
        b.position_at_end(end)

    # -- statements --

    def block(self, body: Iterable[Stmt], env: Env) -> None:
        env = dict(env)  # lets and declares are visible to the rest of this block only
        for s in body:
            self.stmt(s, env)

    def stmt(self, s: Stmt, env: Env) -> None:
        b = self.b
        if isinstance(s, Store):
            ptr = self._elem_ptr(s.buffer, s.index, env)
            value = self.expr(s.value, env)
            if s.value.type == BOOL:
                value = b.zext(value, _I8)
            elif s.value.type == BF16:  # exact: registers hold bfloat16 values
                value = b.trunc(b.lshr(b.bitcast(value, _I32), _I32(16)), ir.IntType(16))
            b.store(value, ptr, align=env[s.buffer][2].itemsize)
        elif isinstance(s, Let):
            env[s.name] = ("val", self.expr(s.value, env), s.value.type)
        elif isinstance(s, Declare):
            slot = self.alloca(lltype(s.init.type), s.name)
            b.store(self.expr(s.init, env), slot)
            env[s.name] = ("var", slot, s.init.type)
        elif isinstance(s, Assign):
            b.store(self.expr(s.value, env, reduce=True), env[s.name][1])
        elif isinstance(s, For):
            self._for(s, env)
        elif isinstance(s, If):
            self._if(s, env)
        elif isinstance(s, Call):
            self._call(s, env)
        else:
            raise KIRError(f"kernel {self.kg.kernel.name}: unknown statement {s!r}")

    def _for(self, s: For, env: Env) -> None:
        if s.parallel and self.tid is None:
            self.kg.outline(self, s, env)
            return
        start, stop = self.expr(s.start, env), self.expr(s.stop, env)
        self.counted_loop(s.var, start, stop, lambda i: self.block(s.body, {**env, s.var: ("val", i, I64)}))

    def _if(self, s: If, env: Env) -> None:
        cond = self.expr(s.cond, env)
        if not s.orelse:
            with self.b.if_then(cond):
                self.block(s.then, env)
            return
        with self.b.if_else(cond) as (then, otherwise):
            with then:
                self.block(s.then, env)
            with otherwise:
                self.block(s.orelse, env)

    def _call(self, s: Call, env: Env) -> None:
        if s.fn != "sgemm":  # pragma: no cover - Call validates names against PRIMITIVES
            raise KIRError(f"kernel {self.kg.kernel.name}: no LLVM lowering for primitive {s.fn}")
        b = self.b
        f32p = ir.FloatType().as_pointer()
        a = dict(zip(kir.PRIMITIVES["sgemm"], s.args))
        val = {name: self.expr(e, env) for name, e in a.items()}
        sgemm = _declare(self.module, SGEMM_SYMBOL, ir.VoidType(),
                         [_I32, _I32, _I32, _I64, _I64, _I64, ir.FloatType(), f32p, _I64, f32p, _I64,
                          ir.FloatType(), f32p, _I64])

        def trans(flag: ir.Value) -> ir.Value:
            return b.select(b.icmp_signed("!=", flag, _I64(0)), _I32(112), _I32(111))

        b.call(sgemm, [_I32(101), trans(val["trans_a"]), trans(val["trans_b"]), val["m"], val["n"], val["k"],
                       val["alpha"], b.inttoptr(val["a"], f32p), val["lda"], b.inttoptr(val["b"], f32p),
                       val["ldb"], val["beta"], b.inttoptr(val["c"], f32p), val["ldc"]])

    # -- expressions --

    def _elem_ptr(self, buffer: str, index: Expr, env: Env) -> ir.Value:
        kind, ptr, _ = env[buffer]
        if kind != "buf":
            raise KIRError(f"kernel {self.kg.kernel.name}: {buffer} is not a buffer")
        return self.b.gep(ptr, [self.expr(index, env, nsw=True)], inbounds=True)

    def expr(self, e: Expr, env: Env, nsw: bool = False, reduce: bool = False) -> ir.Value:
        """Print ``e``; ``nsw`` marks i64 index arithmetic as non-wrapping (lets SCEV see strides);
        ``reduce`` marks the top add/mul chain of an accumulator update as reassociable."""
        b = self.b
        if isinstance(e, Const):
            return _const(e.value, e.ctype)
        if isinstance(e, Var):
            kind, value, _ = env[e.name]
            return b.load(value) if kind == "var" else value
        if isinstance(e, Load):
            ptr = self._elem_ptr(e.buffer, e.index, env)
            value = b.load(ptr, align=e.ctype.itemsize)
            if e.ctype == BF16:
                return b.bitcast(b.shl(b.zext(value, _I32), _I32(16)), ir.FloatType())
            return b.icmp_unsigned("!=", value, _I8(0)) if e.ctype == BOOL else value
        if isinstance(e, Addr):
            return b.ptrtoint(self._elem_ptr(e.buffer, e.index, env), _I64)
        if isinstance(e, Unary):
            return self.unary(e.op, self.expr(e.x, env), e.x.type)
        if isinstance(e, Binary):
            chain = reduce and e.op in ("add", "sub", "mul", "max", "min")
            a = self.expr(e.a, env, nsw, chain and isinstance(e.a, Binary) and e.a.op == e.op)
            c = self.expr(e.b, env, nsw, chain and isinstance(e.b, Binary) and e.b.op == e.op)
            return self.binary(e.op, a, c, e.a.type, nsw, FAST if chain else CONTRACT)
        if isinstance(e, Select):
            return b.select(self.expr(e.cond, env), self.expr(e.a, env, nsw), self.expr(e.b, env, nsw))
        if isinstance(e, Cast):
            return cast(b, self.expr(e.x, env), e.x.type, e.to)
        if isinstance(e, ThreadIndex):
            return self.tid if self.tid is not None else _I64(0)
        if isinstance(e, NumThreads):
            return b.load(_num_threads_global(self.module))
        raise KIRError(f"kernel {self.kg.kernel.name}: unknown expression {e!r}")

    def unary(self, op: str, x: ir.Value, t: ScalarType) -> ir.Value:
        try:
            if t.is_float:
                y = float_unary(self.module, self.b, op, x, t)
                return round_bf16(self.b, y) if t == BF16 and y.type == x.type else y
            return int_unary(self.module, self.b, op, x, t)
        except KIRError as err:
            raise KIRError(f"kernel {self.kg.kernel.name}: {err}") from None

    def binary(self, op: str, x: ir.Value, y: ir.Value, t: ScalarType, nsw: bool = False,
               flags: tuple[str, ...] = CONTRACT) -> ir.Value:
        try:
            if t.is_float:
                z = float_binary(self.module, self.b, op, x, y, flags)
                return round_bf16(self.b, z) if t == BF16 and z.type == x.type else z
            return int_binary(self.module, self.b, op, x, y, t, nsw)
        except KIRError as err:
            raise KIRError(f"kernel {self.kg.kernel.name}: {err}") from None


def _const(value: float | int | bool, t: ScalarType) -> ir.Constant:
    if t == BF16:
        import ml_dtypes
        import numpy as np

        return ir.Constant(ir.FloatType(), float(np.float32(value).astype(ml_dtypes.bfloat16)))
    if t.is_float:
        return ir.Constant(lltype(t), float(value))
    if t == BOOL:
        return _I1(int(bool(value)))
    return ir.Constant(lltype(t), int(value))


# --- scalar operations (numpy semantics) ----------------------------------------------------

_FCMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=="}
_ICMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def float_unary(module: ir.Module, b: ir.IRBuilder, op: str, x: ir.Value, t: ScalarType) -> ir.Value:
    ty = x.type
    if op == "neg":
        return b.fneg(x)
    if op in ("abs", "sqrt", "floor", "ceil"):
        name = {"abs": "fabs"}.get(op, op)
        return b.call(intrinsic(module, name, ty), [x])
    if op == "round":
        return b.call(intrinsic(module, "roundeven", ty), [x])
    if op == "rsqrt":
        return b.fdiv(ir.Constant(ty, 1.0), b.call(intrinsic(module, "sqrt", ty), [x]))
    if op == "reciprocal":
        return b.fdiv(ir.Constant(ty, 1.0), x)
    if op == "isnan":
        return b.fcmp_unordered("uno", x, x)
    if op == "isinf":
        return b.fcmp_ordered("==", b.call(intrinsic(module, "fabs", ty), [x]), ir.Constant(ty, float("inf")))
    if op == "sign":  # nan -> nan, +-0 -> 0 (numpy.sign)
        one, zero = ir.Constant(ty, 1.0), ir.Constant(ty, 0.0)
        s = b.select(b.fcmp_ordered(">", x, zero), one,
                     b.select(b.fcmp_ordered("<", x, zero), ir.Constant(ty, -1.0), zero))
        return b.select(b.fcmp_unordered("uno", x, x), x, s)
    if op in mathlib.FUNCTIONS:
        if t == ScalarType.F16:  # evaluate in f32 and round once, as numpy does for float16
            wide = b.call(mathlib.get(module, op, ir.FloatType()), [b.fpext(x, ir.FloatType())])
            return b.fptrunc(wide, ty)
        return b.call(mathlib.get(module, op, ty), [x])
    raise KIRError(f"{op} is not defined on {t}")


def float_binary(module: ir.Module, b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value,
                 flags: tuple[str, ...] = CONTRACT) -> ir.Value:
    ty = x.type
    if op in ("add", "sub", "mul", "div"):
        return getattr(b, "f" + op)(x, y, flags=flags)
    if op in _FCMP:
        return b.fcmp_ordered(_FCMP[op], x, y)
    if op == "ne":
        return b.fcmp_unordered("!=", x, y)
    if op in ("max", "min") and "reassoc" in flags:
        # In a reduction: llvm.maximum/minimum (NaN-propagating; the vectoriser knows them). They
        # differ from numpy only in ordering -0 < +0, invisible to a max/min over values.
        return b.call(intrinsic(module, "maximum" if op == "max" else "minimum", ty, 2), [x, y])
    if op in ("max", "min"):  # numpy: (x >= y || isnan(x)) ? x : y
        keep_x = b.or_(b.fcmp_ordered(">=" if op == "max" else "<=", x, y), b.fcmp_unordered("uno", x, x))
        return b.select(keep_x, x, y)
    if op == "pow":
        return b.call(intrinsic(module, "pow", ty, 2), [x, y])
    if op in ("mod", "floordiv"):
        mod, div = _float_divmod(module, b, x, y)
        return mod if op == "mod" else div
    raise KIRError(f"{op} is not defined on floating types")


def _float_divmod(module: ir.Module, b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> tuple[ir.Value, ir.Value]:
    """numpy's ``npy_divmod``: the floored remainder (sign of the divisor) and quotient."""
    ty = x.type
    zero, one = ir.Constant(ty, 0.0), ir.Constant(ty, 1.0)
    copysign = intrinsic(module, "copysign", ty, 2)
    mod = b.frem(x, y)
    div = b.fdiv(b.fsub(x, mod), y)
    adjust = b.and_(b.fcmp_ordered("!=", mod, zero),
                    b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
    mod_nz = b.select(adjust, b.fadd(mod, y), mod)
    div = b.select(adjust, b.fsub(div, one), div)
    mod = b.select(b.fcmp_ordered("==", mod, zero), b.call(copysign, [zero, y]), mod_nz)
    fl = b.call(intrinsic(module, "floor", ty), [div])
    fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), ir.Constant(ty, 0.5)), b.fadd(fl, one), fl)
    quot = b.fdiv(x, y)
    floordiv = b.select(b.fcmp_ordered("==", div, zero), b.call(copysign, [zero, quot]), fl)
    by_zero = b.fcmp_ordered("==", y, zero)
    return b.select(by_zero, b.frem(x, y), mod), b.select(by_zero, quot, floordiv)


def int_unary(module: ir.Module, b: ir.IRBuilder, op: str, x: ir.Value, t: ScalarType) -> ir.Value:
    ty = x.type
    zero = ir.Constant(ty, 0)
    if op == "not":
        return b.xor(x, ir.Constant(ty, -1) if t != BOOL else _I1(1))
    if op in ("isnan", "isinf"):
        return _I1(0)
    if op in ("floor", "ceil", "round") or (op == "abs" and not t.is_signed):
        return x
    if t == BOOL:
        raise KIRError(f"{op} is not defined on bool")
    if op == "neg":
        return b.sub(zero, x)
    if op == "abs":
        return b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x)
    if op == "sign":
        one = ir.Constant(ty, 1)
        if not t.is_signed:
            return b.select(b.icmp_unsigned("!=", x, zero), one, zero)
        return b.select(b.icmp_signed(">", x, zero), one,
                        b.select(b.icmp_signed("<", x, zero), ir.Constant(ty, -1), zero))
    if op == "reciprocal":
        return int_binary(module, b, "div", ir.Constant(ty, 1), x, t)
    raise KIRError(f"{op} is not defined on {t}")


def int_binary(module: ir.Module, b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, t: ScalarType,
               nsw: bool = False) -> ir.Value:
    ty = x.type
    if t == BOOL:  # numpy: + is or, * is and, max/min are or/and
        op = {"add": "or", "mul": "and", "max": "or", "min": "and"}.get(op, op)
        if op not in ("and", "or", "xor", *_ICMP):
            raise KIRError(f"{op} is not defined on bool")
    flags = ["nsw"] if nsw and t == I64 else []
    if op in ("add", "sub", "mul"):
        return getattr(b, op)(x, y, flags=flags)
    if op in ("and", "or", "xor"):
        return getattr(b, op + "_" if op != "xor" else op)(x, y)
    if op in _ICMP:
        cmp = b.icmp_signed if t.is_signed else b.icmp_unsigned
        return cmp(_ICMP[op], x, y)
    if op in ("max", "min"):
        cmp = b.icmp_signed if t.is_signed else b.icmp_unsigned
        return b.select(cmp(">=" if op == "max" else "<=", x, y), x, y)
    if op in ("div", "floordiv", "mod"):
        return _int_div(b, op, x, y, t)
    if op == "pow":
        return b.call(_ipow(module, t, ty), [x, y])
    raise KIRError(f"{op} is not defined on {t}")


def _int_div(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, t: ScalarType) -> ir.Value:
    """Division without traps: ``x / 0 == 0`` and ``x % 0 == 0`` (numpy), ``MIN / -1`` wraps."""
    ty = x.type
    zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
    by_zero = b.icmp_unsigned("==", y, zero)
    if not t.is_signed:
        safe = b.select(by_zero, one, y)
        r = b.urem(x, safe) if op == "mod" else b.udiv(x, safe)
        return b.select(by_zero, zero, r)
    minus_one = b.icmp_signed("==", y, ir.Constant(ty, -1))
    safe = b.select(b.or_(by_zero, minus_one), one, y)
    q, r = b.sdiv(x, safe), b.srem(x, safe)
    if op != "div":  # floor: step toward -inf when the remainder's sign differs from the divisor's
        fix = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("<", b.xor(r, y), zero))
        q = b.select(fix, b.sub(q, one), q)
        r = b.select(fix, b.add(r, y), r)
    result = r if op == "mod" else b.select(minus_one, b.sub(zero, x), q)
    if op == "mod":
        result = b.select(minus_one, zero, result)
    return b.select(by_zero, zero, result)


def _ipow(module: ir.Module, t: ScalarType, ty: ir.IntType) -> ir.Function:
    """``x ** y`` on integers by squaring; a negative exponent gives ``1 / x**-y`` truncated."""
    name = f"optllm.ipow.{t}"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ty, [ty, ty]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    base0, exp0 = fn.args
    entry, loop, done = fn.append_basic_block("entry"), fn.append_basic_block("loop"), fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
    b.cbranch(b.icmp_unsigned("==", exp0, zero), done, loop)
    b.position_at_end(loop)
    acc, base, e = b.phi(ty), b.phi(ty), b.phi(ty)
    acc2 = b.select(b.icmp_unsigned("!=", b.and_(e, one), zero), b.mul(acc, base), acc)
    base2 = b.mul(base, base)
    e2 = b.lshr(e, one)
    b.cbranch(b.icmp_unsigned("!=", e2, zero), loop, done)
    acc.add_incoming(one, entry)
    acc.add_incoming(acc2, loop)
    base.add_incoming(base0, entry)
    base.add_incoming(base2, loop)
    e.add_incoming(exp0, entry)
    e.add_incoming(e2, loop)
    b.position_at_end(done)
    res = b.phi(ty)
    res.add_incoming(one, entry)
    res.add_incoming(acc2, loop)
    if t.is_signed:  # 1 ** -k == 1, (-1) ** -k == +-1, anything else ** -k truncates to 0
        odd = b.icmp_unsigned("!=", b.and_(exp0, one), zero)
        neg = b.select(b.icmp_signed("==", base0, one), one,
                       b.select(b.icmp_signed("==", base0, ir.Constant(ty, -1)),
                                b.select(odd, ir.Constant(ty, -1), one), zero))
        b.ret(b.select(b.icmp_signed("<", exp0, zero), neg, res))
    else:
        b.ret(res)
    return fn


def cast(b: ir.IRBuilder, x: ir.Value, src: ScalarType, dst: ScalarType) -> ir.Value:
    """numpy ``astype``: float->int truncates (saturating, NaN -> 0, never poison); to bool is ``!= 0``."""
    if src == dst:
        return x
    if src == BF16:  # registers hold bf16 values as f32
        return cast(b, x, ScalarType.F32, dst)
    if dst == BF16:
        return round_bf16(b, cast(b, x, src, ScalarType.F32))
    ty = lltype(dst)
    if dst == BOOL:
        if src.is_float:
            return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
        return b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))
    if src.is_float and dst.is_float:
        return b.fpext(x, ty) if dst.bits > src.bits else b.fptrunc(x, ty)
    if src.is_float:  # narrow ints go through i32 then wrap, like C's (int8_t)(int32_t)x
        wide = _I64 if dst == I64 else _I32
        module = b.module
        sat = _declare(module, f"llvm.fptosi.sat.{_suffix(wide)}.{_suffix(x.type)}", wide, [x.type])
        v = b.call(sat, [x])
        return v if wide == ty else b.trunc(v, ty)
    if dst.is_float:
        return b.sitofp(x, ty) if src.is_signed else b.uitofp(x, ty)
    if dst.bits < src.bits:
        return b.trunc(x, ty)
    return b.sext(x, ty) if src.is_signed else b.zext(x, ty)


def round_bf16(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Round an f32 to the nearest bfloat16 (ties to even), kept in an f32; NaN stays a quiet NaN."""
    bits = b.bitcast(x, _I32)
    lsb = b.and_(b.lshr(bits, _I32(16)), _I32(1))
    rounded = b.and_(b.add(bits, b.add(lsb, _I32(0x7FFF))), _I32(-65536))
    quiet = b.and_(b.or_(bits, _I32(0x00400000)), _I32(-65536))
    isnan = b.fcmp_unordered("uno", x, x)
    return b.bitcast(b.select(isnan, quiet, rounded), ir.FloatType())
