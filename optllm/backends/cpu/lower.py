"""Lower an optimized graph to a ``Program`` of template kernels for one set of concrete sizes.

Each IR op becomes at most one kernel call; view ops become ``View`` arithmetic and cost
nothing::

    %15 = nn.linear %12, %13, %14 {bias = true} : f32[B,S,2304]   -> linear kernel (GEMM + bias)
    %16, %17, %18 = core.split %15 {axis = 2, ...}                 -> three views of one storage
    %19 = core.reshape %17 ... ; %20 = core.permute %19 ...        -> views (strides 2304, 64, 1)
    %25 = nn.attention %24, %20, %22, %11                          -> attention kernel reading
                                                                      the views in place
    %26 = core.permute %25 ; %27 = core.reshape %26                -> free: attention wrote its
                                                                      result in [B,S,H,D] order

Kernels are built per op *signature* (template, element types, ranks, inner-stride kinds), not
per size: sizes and strides are runtime arguments, so one compiled kernel serves every layer
and every (B, S). An op with no CPU lowering raises ``CpuLoweringError`` naming it and its loc;
there is no fallback to the reference executor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from optllm.backends.kernels.kir import I64, Binary, Cast, Const, Expr, Kernel, ScalarType
from optllm.backends.kernels.templates.elementwise import ElementContext, Operand, Table, elementwise_kernel
from optllm.backends.kernels.templates.gemm import gemm_blocks, linear_kernel
from optllm.backends.kernels.templates.scalar import has_scalar_rule, scalar_rule
from optllm.backends.support import Support
from optllm.ir.diagnostics import OptllmError
from optllm.ir.graph import Graph, Module
from optllm.ir.ops import Operation, Trait, get_opdef
from optllm.ir.printer import print_op_line
from optllm.ir.values import Value
from optllm.runtime.program import Arg, Program, Step, Storage
from optllm.runtime.views import View, broadcast_strides, collapse, contiguous_strides


class CpuLoweringError(OptllmError):
    """An op or a layout the CPU backend cannot lower; names the op and its loc."""


_op_text = print_op_line


class Lowering:
    """Builds the ``Program`` of ``graph`` at the sizes ``env``."""

    def __init__(self, module: Module, env: Mapping[str, int], threads: int,
                 weights: dict[str, np.ndarray]) -> None:
        self.module = module
        self.env = dict(env)
        self.threads = threads
        self.weights = weights  # pre-packed constants, shared by every Program of the module
        self.program = Program()
        self.views: dict[int, View] = {}
        self.kernels: dict[str, Kernel] = {}
        self._weight_storage: dict[str, Storage] = {}
        self.weight_ops: dict[int, str] = {}  # value id -> constant name, for layout choices
        self.err = self.program.new_storage("err", 8, what="error flag")

    # -- entry ----------------------------------------------------------------------------------
    def lower(self, graph: Graph) -> Program:
        for v in graph.inputs:
            shape = v.type.concrete_shape(self.env)
            dt = v.type.dtype.to_numpy()
            s = self.program.new_storage("input", int(np.prod(shape, dtype=np.int64)) * dt.itemsize,
                                         index=v.index, what=f"input %{v.name_hint or v.index}")
            view = View(s.id, 0, shape, contiguous_strides(shape), dt)
            self.views[id(v)] = view
            self.program.input_views.append(view)
        for op in graph:
            self.lower_op(op)
        self.program.outputs = [self.views[id(v)] for v in graph.outputs]
        self._drop_unused_weights()
        return self.program

    def _drop_unused_weights(self) -> None:
        """Forget packed weights no step reads (a weight re-packed in another layout), so a model
        holds each weight once."""
        used = {a.view.storage for st in self.program.steps for a in st.args.values() if a.view is not None}
        used |= {v.storage for v in self.program.outputs}
        for key, s in self._weight_storage.items():
            if s.id not in used:
                self.weights.pop(key, None)
                s.kind, s.array, s.nbytes = "unused", None, 0

    def lower_op(self, op: Operation) -> None:
        support = supports(op)
        if not support:
            raise CpuLoweringError(f"{support.reason}\n  at {_op_text(op)}")
        handler = _HANDLERS.get(op.name, Lowering._elementwise_op)
        try:
            handler(self, op)
        except CpuLoweringError:
            raise
        except Exception as e:  # a template or layout failure: name the op
            raise CpuLoweringError(f"{type(e).__name__}: {e}\n  while lowering {_op_text(op)}") from e

    # -- helpers --------------------------------------------------------------------------------
    def shape(self, v: Value) -> tuple[int, ...]:
        return tuple(int(d) for d in v.type.concrete_shape(self.env))

    def view(self, v: Value) -> View:
        return self.views[id(v)]

    def alloc(self, v: Value, what: str = "") -> View:
        """A fresh arena storage for ``v``. When ``v``'s only reader is a permute that keeps the
        last dim, the storage is laid out in the permuted order, so the permute (and the reshape
        usually after it) is free."""
        shape = self.shape(v)
        dt = v.type.dtype.to_numpy()
        s = self.program.new_storage("arena", int(np.prod(shape, dtype=np.int64)) * dt.itemsize, what=what)
        users = v.users
        if len(users) == 1 and users[0].name == "core.permute" and len(shape) > 1:
            perm = list(users[0].attrs["perm"])
            if perm[-1] == len(shape) - 1:
                pshape = tuple(shape[p] for p in perm)
                inv = [perm.index(i) for i in range(len(perm))]
                return View(s.id, 0, pshape, contiguous_strides(pshape), dt).permute(inv)
        return View(s.id, 0, shape, contiguous_strides(shape), dt)

    def inplace(self, out: View, candidates: Sequence[View]) -> None:
        """Let ``out``'s storage reuse the storage of the first candidate read with the same
        layout (contiguous, same shape and element size, the whole storage). The planner accepts
        it only if this step is that storage's last reader."""
        so = self.program.storages[out.storage]
        if not out.is_contiguous() or out.offset or so.kind != "arena":
            return
        for c in candidates:
            sc = self.program.storages[c.storage]
            if (sc.kind == "arena" and c.is_contiguous() and c.offset == 0 and c.shape == out.shape
                    and c.itemsize == out.itemsize and sc.nbytes == so.nbytes):
                so.inplace_of = sc.id
                return

    def kernel(self, k: Kernel) -> Kernel:
        """Name a kernel by its content, so equal kernels are compiled once."""
        named = dataclasses.replace(k, name=f"k_{dataclasses.replace(k, name='k').key()[:16]}")
        self.kernels.setdefault(named.name, named)
        return named

    def step(self, k: Kernel, args: dict[str, Arg], op: Operation, *, checked: bool = False) -> None:
        code = len(self.program.steps) + 1 if checked else 0
        if checked:
            args["err"] = Arg(View(self.err.id, 0, (1,), (1,), np.dtype(np.int64)))
            args["code"] = Arg(value=code)
        missing = [p.name for p in k.params if p.name not in args]
        if missing:
            raise CpuLoweringError(f"internal: kernel {k.name} is missing arguments {missing}\n  at {_op_text(op)}")
        self.program.steps.append(Step(self.kernel(k), args, op, code))

    def fresh(self, like: View, what: str) -> View:
        """A new contiguous arena storage with ``like``'s shape and element type."""
        s = self.program.new_storage("arena", like.numel * like.itemsize, what=what)
        return View(s.id, 0, like.shape, contiguous_strides(like.shape), like.dtype)

    def copy(self, src: View, op: Operation) -> View:
        """A contiguous copy of ``src`` (for layouts a template cannot read in place)."""
        dst = self.fresh(src, "copy")
        self._run_elementwise(dst, [src], lambda ctx: [ctx.let(ctx.load(0))], op)
        return dst

    def rows_of(self, v: View, op: Operation) -> tuple[View, tuple[int, int, int]]:
        """``v`` as ``(rows, row stride, n)`` rows, copied contiguous when its leading dims do not
        collapse or its rows overlap (a broadcast row, stride 0: BLAS needs a leading dimension
        of at least ``n``, and no template needs overlapping rows)."""
        r = v.rows()
        if r is None or (r[0] > 1 and r[1] < r[2]):
            v = self.copy(v, op)
            r = v.rows()
            assert r is not None
        return v, r

    # -- elementwise ----------------------------------------------------------------------------
    def _run_elementwise(self, out: View, inputs: Sequence[View], body: Callable[[ElementContext], Sequence[Expr]],
                         op: Operation, *, outs: Sequence[View] = (), extra: Sequence[tuple[View, tuple[int, ...]]] = (),
                         tables: Sequence[View] = (), collapse_dims: bool = True) -> None:
        """One elementwise kernel: ``outs`` (default ``[out]``) over ``out``'s shape; ``inputs``
        broadcast to it; ``extra`` inputs with explicit strides over the output dims."""
        outs = list(outs) or [out]
        shape = out.shape or (1,)
        strides = [list(o.strides) or [0] for o in outs]
        strides += [list(broadcast_strides(i, out.shape)) or [0] for i in inputs]
        strides += [list(s) or [0] for _, s in extra]
        if collapse_dims:
            cshape, cstrides = collapse(shape, strides)
        else:
            cshape, cstrides = list(shape), strides
        rank = len(cshape)
        views = list(outs) + list(inputs) + [v for v, _ in extra]
        operands = [Operand(ScalarType.of_numpy(v.dtype), _inner(s[-1])) for v, s in zip(views, cstrides)]
        n_out = len(outs)
        k = elementwise_kernel("k", rank, operands[:n_out], operands[n_out:], body,
                               tables=[Table(ScalarType.of_numpy(t.dtype), t.rank) for t in tables],
                               inner_hint=cshape[-1], doc=op.name)
        args: dict[str, Arg] = {}
        for i, (v, s) in enumerate(zip(views, cstrides)):
            name = f"o{i}" if i < n_out else f"a{i - n_out}"
            args[name] = Arg(v)
            for d, st in enumerate(s):
                args[f"{name}_s{d}"] = Arg(value=int(st))
        for d, n in enumerate(cshape):
            args[f"d{d}"] = Arg(value=int(n))
        for t, tv in enumerate(tables):
            args[f"g{t}"] = Arg(tv)
            for d in range(tv.rank):
                args[f"g{t}_s{d}"] = Arg(value=int(tv.strides[d]))
                args[f"g{t}_n{d}"] = Arg(value=int(tv.shape[d]))
        self.step(k, args, op, checked=bool(tables))

    def _elementwise_op(self, op: Operation) -> None:
        out = self.alloc(op.results[0], op.name)
        rule = scalar_rule(op.name)
        t = ScalarType.of(op.results[0].type.dtype)
        n = len(op.operands)
        ins = [self.view(x) for x in op.operands]
        self._run_elementwise(out, ins, lambda ctx: [ctx.let(rule([ctx.load(i) for i in range(n)], op.attrs, t))], op)
        self.inplace(out, ins)
        self.views[id(op.results[0])] = out

    def _region(self, op: Operation) -> None:
        kind = op.attrs.get("kind", "generic")
        body = op.regions[0]
        if kind == "elementwise":
            outs = [self.alloc(r, "region") for r in op.results]
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, r in enumerate(body.outputs):
                if r.is_arg:  # a region argument returned as it is: a copy
                    self._run_elementwise(outs[i], [self.view(op.operands[r.index])],
                                          lambda ctx: [ctx.let(ctx.load(0))], op)
                else:  # one kernel per distinct result shape (each loop nest runs over its output)
                    groups.setdefault(outs[i].shape, []).append(i)
            for idx in groups.values():
                self._lower_region_body(op, body, [body.outputs[i] for i in idx], [outs[i] for i in idx])
            if len(outs) == 1 and not body.outputs[0].is_arg:
                self.inplace(outs[0], [self.view(x) for x in op.operands])
            for r, o in zip(op.results, outs):
                self.views[id(r)] = o
            return
        if kind == "norm":
            from optllm.backends.cpu.lower_nn import norm_region

            norm_region(self, op)
            return
        raise CpuLoweringError(f"fused.region kind={kind!r} has no cpu template yet\n  at {_op_text(op)}")

    def _lower_region_body(self, op: Operation, body: Graph, results: Sequence[Value], outs: Sequence[View]) -> None:
        """The body ops computing ``results`` as one elementwise kernel over ``outs[0]``'s shape.

        Gathers (nn.embedding, core.gather) read their table at their ids. Either may be any
        body value: a region argument is read in place, a non-uniform ``core.constant`` from its
        weight storage, and a value the body computes is first computed into a buffer of its own
        shape by an elementwise kernel of the ops it needs (the gather reads it at computed
        indices, which the one loop nest over the output cannot evaluate in place). A
        non-uniform constant read by elementwise body ops is an input read through broadcast
        strides, like an argument."""
        out_shape = outs[0].shape
        arg_views = [self.view(x) for x in op.operands]
        inputs: list[View] = []
        extra: list[tuple[View, tuple[int, ...]]] = []
        tables: list[View] = []
        plan: list[tuple[str, Any]] = []  # how each body op is evaluated
        computed: dict[int, View] = {}  # body values materialised for a gather

        def add_input(av: View, strides: tuple[int, ...] | None = None) -> int:
            if strides is None:
                inputs.append(av)
                return len(inputs) - 1
            extra.append((av, strides))
            return -len(extra)

        def source(v: Value) -> View:
            """A view holding all of ``v`` (the table or the ids of a gather)."""
            if v.is_arg:
                return arg_views[v.index]
            if id(v) not in computed:
                owner = v.owner
                assert owner is not None
                if owner.name == "core.constant":
                    computed[id(v)] = _constant_view(self, owner)
                else:
                    shape = self.shape(v)
                    dt = v.type.dtype.to_numpy()
                    s = self.program.new_storage("arena", int(np.prod(shape, dtype=np.int64)) * dt.itemsize,
                                                 what="region gather operand")
                    view = View(s.id, 0, shape, contiguous_strides(shape), dt)
                    self._lower_region_body(op, body, [v], [view if shape else View(s.id, 0, (1,), (1,), dt)])
                    computed[id(v)] = view
            return computed[id(v)]

        needed: set[int] = set()
        stack = [r for r in results if not r.is_arg]
        while stack:  # only the ops the results depend on (a norm region's norm is not one)
            o = stack.pop().owner
            if o is not None and id(o) not in needed:
                needed.add(id(o))
                if o.name in ("nn.embedding", "core.gather"):
                    continue  # its operands are read through source(), not evaluated in this nest
                stack.extend(x for x in o.operands if not x.is_arg)
        for bop in body:
            if id(bop) not in needed:
                continue
            if bop.name in ("nn.embedding", "core.gather"):
                table, ids = bop.operands
                axis = 0 if bop.name == "nn.embedding" else bop.attrs["axis"] % table.type.rank
                tv = source(table)
                gshape = self.shape(bop.results[0])
                iv = source(ids)
                ids_rank = len(self.shape(ids))
                gstrides = [0] * axis + list(iv.strides[:ids_rank]) + [0] * (len(gshape) - axis - ids_rank)
                pseudo = View(iv.storage, iv.offset, gshape, tuple(gstrides), iv.dtype)
                ids_slot = add_input(iv, broadcast_strides(pseudo, out_shape))
                tables.append(tv)
                lead = len(out_shape) - len(gshape)
                plan.append(("gather", (bop, len(tables) - 1, ids_slot, axis, ids_rank, lead)))
            else:
                plan.append(("ew", bop))
        loaded: dict[int, int] = {}
        for bop_kind, item in plan:
            if bop_kind != "ew":
                continue
            if item.name == "core.constant" and not _is_uniform(item):
                loaded[id(item.results[0])] = add_input(_constant_view(self, item))
            for x in item.operands:
                if x.is_arg and id(x) not in loaded:
                    loaded[id(x)] = add_input(arg_views[x.index])

        def build(ctx: ElementContext) -> list[Expr]:
            vals: dict[int, Expr] = {}
            n_in = len(inputs)

            def arg(slot: int) -> Expr:
                return ctx.let(ctx.load(slot if slot >= 0 else n_in + (-slot - 1)))

            for v_id, slot in loaded.items():
                vals[v_id] = arg(slot)
            for bop_kind, item in plan:
                if bop_kind == "gather":
                    bop, t, ids_slot, axis, ids_rank, lead = item
                    ids_val = arg(ids_slot)
                    tshape_rank = tables[t].rank
                    idx: list[Expr | tuple[Expr, bool]] = []
                    for d in range(tshape_rank):
                        if d < axis:
                            idx.append(ctx.index(lead + d))
                        elif d == axis:
                            idx.append((ids_val, bop.name == "core.gather"))
                        else:
                            idx.append(ctx.index(lead + d - 1 + ids_rank))
                    vals[id(bop.results[0])] = ctx.let(ctx.gather(t, idx))
                elif id(item.results[0]) in vals:  # a non-uniform constant, loaded above
                    continue
                elif item.name in ("core.constant", "core.full"):  # a scalar splat inside the body
                    t_out = ScalarType.of(item.results[0].type.dtype)
                    vals[id(item.results[0])] = _scalar_const(_splat_value(item), t_out)
                else:
                    rule = scalar_rule(item.name)
                    t_out = ScalarType.of(item.results[0].type.dtype)
                    vals[id(item.results[0])] = ctx.let(rule([vals[id(x)] for x in item.operands], item.attrs, t_out))
            return [vals[id(r)] for r in results]

        self._run_elementwise(outs[0], inputs, build, op, outs=outs, extra=extra, tables=tables,
                              collapse_dims=not tables)

    # -- the rest is filled in by _HANDLERS below ----------------------------------------------


def _inner(stride: int) -> str:
    return "contig" if stride == 1 else "bcast" if stride == 0 else "strided"


_HANDLERS: dict[str, Callable[[Lowering, Operation], None]] = {}


def handler(*names: str) -> Callable[[Callable[[Lowering, Operation], None]], Callable[[Lowering, Operation], None]]:
    def deco(fn: Callable[[Lowering, Operation], None]) -> Callable[[Lowering, Operation], None]:
        for n in names:
            _HANDLERS[n] = fn
        return fn
    return deco


def registered(name: str) -> Callable[[Lowering, Operation], None]:
    """The handler registered for ``name`` (a module overriding it can delegate to it)."""
    return _HANDLERS[name]


handler("fused.region")(Lowering._region)

REGION_KINDS = ("elementwise", "norm")
"""The ``fused.region`` kinds the cpu target has a template for."""


def supports(op: str | Operation) -> Support:
    """Whether the cpu target lowers ``op`` (an op name, or an operation: then a region's kind
    and body ops are checked too), derived from the handler table and the scalar rules of the
    elementwise ops; the reason names what is missing. Complete once ``optllm.backends.cpu``
    (which imports every ``lower_*`` module) is imported."""
    name = op if isinstance(op, str) else op.name
    if name not in _HANDLERS:
        try:
            opdef = op.opdef if isinstance(op, Operation) else get_opdef(name)
        except KeyError as e:
            return Support(False, str(e.args[0]))
        if Trait.ELEMENTWISE not in opdef.traits:
            return Support(False, f"the cpu target has no kernel for {name} yet")
        if not has_scalar_rule(name):
            return Support(False, f"the cpu target has no scalar kernel rule for the elementwise op {name} yet")
    if isinstance(op, Operation) and op.regions:
        kind = op.attrs.get("kind", "generic")
        if kind not in REGION_KINDS:
            return Support(False, f"fused.region kind={kind!r} has no cpu template yet")
        for bop in op.regions[0]:
            if bop.name in ("nn.embedding", "core.gather", "core.constant", "core.full"):
                continue
            inner = supports(bop)
            if not inner:
                return inner
            if not bop.has_trait(Trait.ELEMENTWISE) and not (kind == "norm" and bop.name in _NORM_BODY_END):
                return Support(False, f"{bop.name} cannot be evaluated inside a fused {kind} region on the cpu target")
    return Support(True)


_NORM_BODY_END = ("nn.layer_norm", "nn.rms_norm", "nn.skip_layer_norm", "nn.skip_rms_norm")


def _is_uniform(op: Operation) -> bool:
    """A ``core.full``, or a ``core.constant`` all of whose elements are equal (a scalar splat)."""
    if op.name == "core.full":
        return True
    arr = op.attrs["value"].to_array()
    return bool(arr.size == 1 or (arr.size and (arr == arr.flat[0]).all()))


def _splat_value(op: Operation) -> Any:
    """The single value of a uniform constant or ``core.full`` inside a region body."""
    if op.name == "core.full":
        return op.attrs["value"]
    if not _is_uniform(op):
        raise CpuLoweringError(f"internal: a non-uniform constant taken as a splat\n  at {_op_text(op)}")
    return op.attrs["value"].to_array().flat[0].item()


def _constant_view(lw: Lowering, op: Operation) -> View:
    """A ``core.constant``'s value in a weight storage, built once per model (shared by the
    programs of every input shape and by every reader)."""
    return packed_weight(lw, f"__const_{id(op)}", lambda: op.attrs["value"].to_array())


def _scalar_const(value: Any, t: ScalarType) -> Const:
    return Const(float(value) if t.is_float else int(value), t)


def packed_weight(lw: Lowering, key: str, make: Callable[[], np.ndarray], *, in_place: bool = False) -> View:
    """A weight storage holding ``make()`` as an aligned contiguous array, built once per model
    (shared by the programs of every input shape) and once per program as a storage.
    ``in_place``: keep ``make()``'s array itself (a GEMM panel buffer may point into itself, so
    it must never be copied)."""
    if key not in lw.weights:
        lw.weights[key] = make() if in_place else aligned_copy(np.asarray(make()))
    arr = lw.weights[key]
    if key not in lw._weight_storage:
        lw._weight_storage[key] = lw.program.new_storage("weight", arr.nbytes, array=arr, what=key)
    s = lw._weight_storage[key]
    return View(s.id, 0, tuple(arr.shape), contiguous_strides(arr.shape), arr.dtype)


@handler("core.weight", "core.constant")
def _constant(lw: Lowering, op: Operation) -> None:
    if op.name == "core.weight":
        name = op.attrs["name"]
        lw.views[id(op.results[0])] = packed_weight(lw, name, lambda: lw.module.constants[name])
        lw.weight_ops[id(op.results[0])] = name
    else:
        lw.views[id(op.results[0])] = _constant_view(lw, op)


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buf = np.empty(nbytes + align, dtype=np.uint8)
    start = (-buf.ctypes.data) % align
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def mapped_empty(size: int, dtype: np.dtype) -> np.ndarray:
    """``size`` zeroed elements in fresh anonymous pages (page-aligned). MKL's panel buffer is
    sized for its worst case and the packing writes 1-2x the weight's bytes of it (measured:
    4.8 of 9.1 MB for a 768x768 weight); pages never written stay out of resident memory, which
    a heap allocation reusing freed, already resident pages would not guarantee."""
    import mmap

    nbytes = max(1, size * np.dtype(dtype).itemsize)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype, count=size)


def aligned_copy(arr: np.ndarray, align: int = 64) -> np.ndarray:
    """``arr`` itself when it is C-contiguous and element-aligned (a view of the user's
    parameters or of a memory-mapped file included: kernels only read weights, their loads
    assume element alignment only (``codegen.py``), and BLAS takes any address), else a copy
    starting on an ``align``-byte boundary. A model from ``from_pretrained`` maps its
    safetensors file, whose tensors start wherever the previous one ended: requiring 64 here
    copied MiniLM's 45 MB embedding table."""
    if arr.flags.c_contiguous and arr.flags.aligned:
        return arr
    out = aligned_empty(tuple(arr.shape), arr.dtype, align)
    out[...] = arr
    return out


@handler("core.reshape")
def _reshape(lw: Lowering, op: Operation) -> None:
    src = lw.view(op.operands[0])
    shape = lw.shape(op.results[0])
    out = src.reshape(shape)
    if out is None:
        out = lw.copy(src, op).reshape(shape)  # a contiguous copy always reshapes
    assert out is not None
    lw.views[id(op.results[0])] = out


@handler("core.permute")
def _permute(lw: Lowering, op: Operation) -> None:
    lw.views[id(op.results[0])] = lw.view(op.operands[0]).permute(op.attrs["perm"])


@handler("core.expand")
def _expand(lw: Lowering, op: Operation) -> None:
    lw.views[id(op.results[0])] = lw.view(op.operands[0]).expand(lw.shape(op.results[0]))


@handler("core.slice")
def _slice(lw: Lowering, op: Operation) -> None:
    src = lw.view(op.operands[0])
    axis = op.attrs["axis"] % src.rank
    start = int(_dim(op.attrs["start"], lw.env))
    stop = min(int(_dim(op.attrs["end"], lw.env)), src.shape[axis])
    lw.views[id(op.results[0])] = src.slice(axis, min(start, src.shape[axis]), stop, op.attrs["step"])


@handler("core.split")
def _split(lw: Lowering, op: Operation) -> None:
    src = lw.view(op.operands[0])
    axis = op.attrs["axis"] % src.rank
    start = 0
    for r in op.results:
        n = lw.shape(r)[axis]
        lw.views[id(r)] = src.slice(axis, start, start + n)
        start += n


def _dim(d: Any, env: Mapping[str, int]) -> int:
    from optllm.ir.symbolic import evaluate

    return int(d) if isinstance(d, int) else int(evaluate(d, env))


@handler("core.concat")
def _concat(lw: Lowering, op: Operation) -> None:
    out = lw.alloc(op.results[0], "concat")
    axis = op.attrs["axis"] % out.rank
    start = 0
    for x in op.operands:
        src = lw.view(x)
        n = src.shape[axis]
        dst = out.slice(axis, start, start + n)
        lw._run_elementwise(dst, [src], lambda ctx: [ctx.let(ctx.load(0))], op)
        start += n
    lw.views[id(op.results[0])] = out


@handler("core.arange")
def _arange(lw: Lowering, op: Operation) -> None:
    out = lw.alloc(op.results[0], "arange")
    t = ScalarType.of(op.results[0].type.dtype)
    start = _dim(op.attrs["start"], lw.env)
    step = int(op.attrs["step"])

    def body(ctx: ElementContext) -> list[Expr]:
        i = ctx.index(0)
        val: Expr = Binary("add", Const(start, I64), Binary("mul", i, Const(step, I64)))
        return [ctx.let(val if t == I64 else Cast(val, t))]

    lw._run_elementwise(out, [], body, op, collapse_dims=False)
    lw.views[id(op.results[0])] = out


@handler("core.full")
def _full(lw: Lowering, op: Operation) -> None:
    out = lw.alloc(op.results[0], "full")
    t = ScalarType.of(op.results[0].type.dtype)
    lw._run_elementwise(out, [], lambda ctx: [_scalar_const(op.attrs["value"], t)], op)
    lw.views[id(op.results[0])] = out


@handler("nn.embedding", "core.gather")
def _gather(lw: Lowering, op: Operation) -> None:
    out = lw.alloc(op.results[0], op.name)
    table, ids = (lw.view(x) for x in op.operands)
    axis = 0 if op.name == "nn.embedding" else op.attrs["axis"] % table.rank
    ids_rank = ids.rank
    strides = (0,) * axis + ids.strides + (0,) * (out.rank - axis - ids_rank)

    def body(ctx: ElementContext) -> list[Expr]:
        idx: list[Expr | tuple[Expr, bool]] = []
        for d in range(table.rank):
            if d < axis:
                idx.append(ctx.index(d))
            elif d == axis:
                idx.append((ctx.let(ctx.load(0)), op.name == "core.gather"))
            else:
                idx.append(ctx.index(d - 1 + ids_rank))
        return [ctx.let(ctx.gather(0, idx))]

    lw._run_elementwise(out, [], body, op, extra=[(ids, strides)], tables=[table], collapse_dims=False)
    lw.views[id(op.results[0])] = out


PACKED_MIN_ELEMENTS = 1 << 17
PACK_ROWS = 128
"""The row count weights are packed for. MKL's panel format follows the ``m`` it is packed for,
but any packing serves products of any row count; packed for 128 rows the multiply runs fastest
at every row count measured here (K=512, N=32000: 116-117 GFLOP/s single-threaded at M=128 and
1024, vs 37 when packed for m=4 and 95-98 when packed for m=1024)."""


def _packed_weight(lw: Lowering, name: str, w: View, transposed: bool, m: int, n: int,
                   k: int) -> tuple[View, int, int] | None:
    """The weight ``name`` packed once into the packed GEMM's panel format (MKL from the torch
    wheel), or ``None`` when that GEMM is unavailable or the weight is small (its fixed ~8 MB
    panel buffer would dwarf it). Workers split the rows of the product and share the one packed
    weight, packed for ``PACK_ROWS`` rows: one packing serves products of every row count and
    row offset (checked against the reference at several shapes in the tests).
    Returns (view of the packed buffer, block width = n, elements per block)."""
    from optllm.backends.kernels.llvm.runtime import packed_gemm

    if w.dtype != np.float32 or n * k < PACKED_MIN_ELEMENTS or m < 1:
        return None
    gemm = packed_gemm()
    if gemm is None:
        return None
    floats = gemm.packed_floats(PACK_ROWS, n, k)

    def make() -> np.ndarray:
        src = np.ascontiguousarray(lw.module.constants[name], dtype=np.float32)
        out = mapped_empty(floats, np.dtype(np.float32))
        gemm.pack(out.ctypes.data, src, transposed, PACK_ROWS, n, k)
        del src
        # the panels replace the source: drop its resident pages now, not after the whole model
        # (a spilled fold or a loaded build would otherwise be resident in full while packing)
        lw.module.constants.release(name)
        return out

    view = packed_weight(lw, f"{name}@packed:{'nk' if transposed else 'kn'}", make, in_place=True)
    return view, n, view.shape[0]


PREFER_TRANSPOSED_ELEMENTS = 1 << 21


def prefer_transposed(k: int, n: int) -> bool:
    """The weight layout OpenBLAS multiplies fastest here: stored [N, K] (``transpose_w``) for
    large weights, [K, N] for small ones. Measured single-threaded at M=128 on this machine:
    384x1152 and 1536x384 run 10% faster as [K, N]; 768x3072 and 3072x768 15-25% faster as
    [N, K] (OpenBLAS packs a transposed B panel with unit-stride reads)."""
    return k * n >= PREFER_TRANSPOSED_ELEMENTS


@handler("nn.linear")
def _linear(lw: Lowering, op: Operation) -> None:
    a = op.attrs
    x, (m, x_rs, k) = lw.rows_of(lw.view(op.operands[0]), op)
    w = lw.view(op.operands[1])
    transpose_w = bool(a["transpose_w"])
    n = w.shape[0] if transpose_w else w.shape[1]
    name = lw.weight_ops.get(id(op.operands[1]))
    packed = _packed_weight(lw, name, w, transpose_w, m, n, k) if name is not None else None
    if packed is None and name is not None and prefer_transposed(k, n) != transpose_w:
        src = lw.weights[name]  # re-pack the weight once, in the layout BLAS multiplies fastest
        w = packed_weight(lw, f"{name}@{'nk' if not transpose_w else 'kn'}", lambda: src.T)
        transpose_w = not transpose_w
    if w.strides[-1] != 1:
        w = lw.copy(w, op)
    out = lw.alloc(op.results[0], "linear")
    out_rows = out.rows()
    if out_rows is None:  # the permuted-layout trick does not fit a GEMM output
        out = lw.fresh(out, "linear")
        out_rows = out.rows()
        assert out_rows is not None
    args: dict[str, Arg] = {"out": Arg(out), "x": Arg(x), "w": Arg(w), "m": Arg(value=m), "n": Arg(value=n),
                            "k": Arg(value=k), "x_rs": Arg(value=x_rs), "w_ld": Arg(value=w.strides[0]),
                            "out_rs": Arg(value=out_rows[1])}
    rest = list(op.operands[2:])
    if a["bias"]:
        args["bias"] = Arg(lw.view(rest.pop(0)))
    if a["residual"]:
        res, (_, res_rs, _) = lw.rows_of(lw.view(rest.pop(0)), op)
        args["res"] = Arg(res)
        args["res_rs"] = Arg(value=res_rs)
    if packed is not None:  # row blocks, one per worker, all reading the one packed weight
        w_packed, bn, stride = packed
        bm = max(1, -(-m // lw.threads))
        args["w"], args["wp_stride"] = Arg(w_packed), Arg(value=stride)
        del args["w_ld"]
    else:
        bm, bn = gemm_blocks(m, n, lw.threads)
    args["bm"], args["bn"] = Arg(value=bm), Arg(value=bn)
    k_ = linear_kernel("k", ScalarType.of(op.results[0].type.dtype), transpose_w=transpose_w, bias=a["bias"],
                       activation=a["activation"], residual=a["residual"], packed=packed is not None)
    lw.step(k_, args, op)
    lw.views[id(op.results[0])] = out
