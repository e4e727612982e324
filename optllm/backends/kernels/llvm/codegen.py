"""Print KIR kernels to LLVM IR text (through ``llvmlite.ir``).

Every kernel becomes ``void @<name>(i64* slots)``; slot ``i`` holds parameter ``i`` (a buffer's
address, an integer scalar, or a floating scalar as a float64 bit pattern, converted here to the
parameter's type). What the printed code looks like::

    for i in [0, n):  x[i] = exp(y[i])        define void @k(i64* %slots) {
                                                  %x = inttoptr i64 %slot0 to float*  ...
                                                i.cond: %i = load i64, ...; icmp slt %i, %n
                                                i.body: %v = load float, float* %p, align 4
                                                        %e = call float @optllm.exp.f32(%v) ...

* **Scalar operations** (``scalar.py``) follow numpy: ``bool`` is a byte in buffers, ``bf16`` is
  rounded after every operation, integers wrap and never trap, NaN propagates.
* **Floating point**: arithmetic carries ``contract`` (multiply-adds fuse); the add/mul chain of
  an accumulator update (``Assign``) also carries ``reassoc`` so reductions vectorise. Elsewhere
  no ``reassoc``: it licenses rewrites such as ``x * pow(x, y) -> pow(x, y + 1)`` that turn
  numpy's NaN into a number. A ``max``/``min`` accumulator update becomes ``llvm.maximum`` /
  ``llvm.minimum`` (NaN-propagating, vectorisable; only ``-0 < +0`` differs from numpy's
  ``maximum``). Never ``nnan``/``ninf``: NaN and inf propagate as in numpy.
  Comparisons are ordered except ``ne`` (``nan != nan``).
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

import re
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
from optllm.backends.kernels.llvm.runtime import (
    BLAS_THREADS_SYMBOL,
    NUM_THREADS_SYMBOL,
    PACKED_THREADS_SYMBOL,
    SGEMM_PACKED_SYMBOL,
    SGEMM_SYMBOL,
)
from optllm.backends.kernels.llvm.scalar import (
    BF16,
    CONTRACT,
    FAST,
    cast,
    const,
    declare,
    float_binary,
    float_unary,
    int_binary,
    int_unary,
    lltype,
    memtype,
    regbits,
    round_bf16,
)

PARALLEL_MIN_WORK = 1 << 17
"""A parallel loop whose ``(stop - start) * work`` is below this runs on the calling thread: waking
the OpenMP team costs a few microseconds, about what 32K scalar operations take on one core."""

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_SLOTS = _I64.as_pointer()
_DATA = _I8.as_pointer()


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
    return _finish_metadata(str(module))


# llvmlite prints neither distinct nodes nor self-referential loop ids, which the parallel-access
# metadata of independent loops needs; they are printed as tagged placeholders and rewritten:
#   !5 = !{ !"optllm.access_group" }          ->  !5 = distinct !{}
#   !7 = !{ !"optllm.loop_id", !8 }           ->  !7 = distinct !{!7, !8}
_AG_RE = re.compile(r'^(![0-9]+) = !{ ?!"optllm\.access_group\.[0-9]+" ?}$', re.M)
_LOOP_RE = re.compile(r'^(![0-9]+) = !{ ?!"optllm\.loop_id\.[0-9]+", (![0-9]+) ?}$', re.M)


def _finish_metadata(text: str) -> str:
    text = _AG_RE.sub(lambda m: f"{m.group(1)} = distinct !{{}}", text)
    return _LOOP_RE.sub(lambda m: f"{m.group(1)} = distinct !{{{m.group(1)}, {m.group(2)}}}", text)


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
                gomp = declare(self.module, "GOMP_parallel", ir.VoidType(),
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
        tid = b.sext(b.call(declare(self.module, "omp_get_thread_num", _I32, []), []), _I64)
        nt = b.sext(b.call(declare(self.module, "omp_get_num_threads", _I32, []), []), _I64)
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
        self.access_group: ir.Value | None = None  # of the innermost independent loop
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
            value = b.bitcast(value, ir.IntType(regbits(t)))
        return value if t.bits == 64 else b.zext(value, _I64)

    def from_bits(self, kind: str, bits: ir.Value, t: ScalarType, name: str) -> Binding:
        b = self.b
        if kind == "buf":
            return ("buf", b.inttoptr(bits, memtype(t).as_pointer(), name=name), t)
        value = bits if t.bits == 64 else b.trunc(bits, ir.IntType(regbits(t)))
        if t.is_float:
            value = b.bitcast(value, lltype(t))
        if kind == "var":
            slot = self.alloca(lltype(t), name)
            b.store(value, slot)
            return ("var", slot, t)
        return ("val", value, t)

    def blas_single_thread(self) -> ir.Value:
        f = declare(self.module, BLAS_THREADS_SYMBOL, _I32, [_I32])
        return self.b.call(f, [_I32(1)])

    def blas_restore(self, saved: ir.Value) -> None:
        f = declare(self.module, BLAS_THREADS_SYMBOL, _I32, [_I32])
        self.b.call(f, [saved])

    def counted_loop(self, var: str, start: ir.Value, stop: ir.Value, body: Callable[[ir.Value], None],
                     loop_md: ir.Value | None = None) -> None:
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
        latch = b.branch(cond)
        if loop_md is not None:
            latch.set_metadata("llvm.loop", loop_md)
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
            st = b.store(value, ptr, align=env[s.buffer][2].itemsize)
            if self.access_group is not None:
                st.set_metadata("llvm.access.group", self.access_group)
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
        outer = self.access_group
        loop_md = None
        if s.independent:  # buffer accesses of this loop carry no cross-iteration dependence
            n = len(self.module.metadata)
            self.access_group = self.module.add_metadata([ir.MetaDataString(self.module, f"optllm.access_group.{n}")])
            par = self.module.add_metadata([ir.MetaDataString(self.module, "llvm.loop.parallel_accesses"),
                                            self.access_group])
            loop_md = self.module.add_metadata([ir.MetaDataString(self.module, f"optllm.loop_id.{n}"), par])
        self.counted_loop(s.var, start, stop, lambda i: self.block(s.body, {**env, s.var: ("val", i, I64)}),
                          loop_md=loop_md)
        self.access_group = outer

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
        if s.fn == "sgemm_packed":
            self._call_packed(s, env)
            return
        if s.fn != "sgemm":  # pragma: no cover - Call validates names against PRIMITIVES
            raise KIRError(f"kernel {self.kg.kernel.name}: no LLVM lowering for primitive {s.fn}")
        b = self.b
        f32p = ir.FloatType().as_pointer()
        a = dict(zip(kir.PRIMITIVES["sgemm"], s.args))
        val = {name: self.expr(e, env) for name, e in a.items()}
        sgemm = declare(self.module, SGEMM_SYMBOL, ir.VoidType(),
                         [_I32, _I32, _I32, _I64, _I64, _I64, ir.FloatType(), f32p, _I64, f32p, _I64,
                          ir.FloatType(), f32p, _I64])

        def trans(flag: ir.Value) -> ir.Value:
            return b.select(b.icmp_signed("!=", flag, _I64(0)), _I32(112), _I32(111))

        b.call(sgemm, [_I32(101), trans(val["trans_a"]), trans(val["trans_b"]), val["m"], val["n"], val["k"],
                       val["alpha"], b.inttoptr(val["a"], f32p), val["lda"], b.inttoptr(val["b"], f32p),
                       val["ldb"], val["beta"], b.inttoptr(val["c"], f32p), val["ldc"]])

    def _call_packed(self, s: Call, env: Env) -> None:
        """``cblas_sgemm_compute`` (MKL, LP64) with B packed; MKL is made single-threaded on the
        calling worker first (a thread-local setting), so the kernel's loop is the only pool."""
        b = self.b
        f32p = ir.FloatType().as_pointer()
        val = {name: self.expr(e, env) for name, e in zip(kir.PRIMITIVES["sgemm_packed"], s.args)}
        one = self.alloca(_I32, "mkl_one")
        b.store(_I32(1), one)
        b.call(declare(self.module, PACKED_THREADS_SYMBOL, _I32, [_I32.as_pointer()]), [one])
        compute = declare(self.module, SGEMM_PACKED_SYMBOL, ir.VoidType(),
                          [_I32, _I32, _I32, _I32, _I32, _I32, f32p, _I32, f32p, _I32, ir.FloatType(), f32p, _I32])

        def i32(v: ir.Value) -> ir.Value:
            return b.trunc(v, _I32)

        b.call(compute, [_I32(101), _I32(111), _I32(151), i32(val["m"]), i32(val["n"]), i32(val["k"]),
                         b.inttoptr(val["a"], f32p), i32(val["lda"]), b.inttoptr(val["b"], f32p), i32(val["n"]),
                         val["beta"], b.inttoptr(val["c"], f32p), i32(val["ldc"])])

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
            return const(e.value, e.ctype)
        if isinstance(e, Var):
            kind, value, _ = env[e.name]
            return b.load(value) if kind == "var" else value
        if isinstance(e, Load):
            ptr = self._elem_ptr(e.buffer, e.index, env)
            value = b.load(ptr, align=e.ctype.itemsize)
            if self.access_group is not None:
                value.set_metadata("llvm.access.group", self.access_group)
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


