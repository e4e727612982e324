"""The planned executor: a ``Program`` bound to one arena and replayed as native calls.

Building (once per set of concrete sizes):

1. liveness of every arena storage over the steps, in-place candidates passed on;
2. ``plan_memory`` gives each an offset in one 64-byte-aligned arena (peak and lower bound are
   kept in ``memory``);
3. every step's argument slots (buffer addresses, sizes, strides, scalars) are written once
   into a ctypes array, so a call is ``fn(slots)`` with nothing converted per call.

Running: the caller's input arrays and fresh output arrays are the only addresses that change
between calls; their slots are patched (a list of (slot array, index, byte offset) per storage),
then the steps run in order. Checked gathers write a nonzero code into the shared error flag,
raised after the run as an error naming the op.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optllm.backends.kernels.llvm.jit import CompiledKernel
from optllm.ir.diagnostics import OptllmError
from optllm.ir.printer import print_op_line
from optllm.runtime.native import run_calls
from optllm.runtime.planner import BufferRequest, MemoryPlan, plan_memory
from optllm.runtime.program import Program
from optllm.runtime.views import View

ALIGN = 64


class RuntimeFault(OptllmError):
    """A failure while running compiled kernels (an out-of-range gather index, bad inputs)."""


@dataclass
class MemoryReport:
    arena_bytes: int
    lower_bound: int
    ratio: float
    weights_bytes: int
    buffers: int

    def as_dict(self) -> dict[str, Any]:
        return {"arena_bytes": self.arena_bytes, "lower_bound": self.lower_bound, "ratio": round(self.ratio, 4),
                "weights_bytes": self.weights_bytes, "buffers": self.buffers}


@dataclass
class _Patch:
    slots: Any
    index: int
    byte_offset: int


@dataclass
class BoundProgram:
    """A program with its arena and slot arrays, ready to run."""

    program: Program
    calls: list[tuple[Any, Any]]  # (ctypes function, slot array)
    arena: np.ndarray
    memory: MemoryReport
    plan: MemoryPlan
    patches: dict[int, list[_Patch]] = field(default_factory=dict)
    err: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    guards: list[tuple[int, int, str]] | None = None
    kernel_names: list[str] = field(default_factory=list)
    fn_table: Any = None  # int64[n]: kernel entry points, in call order
    slot_table: Any = None  # int64[n]: addresses of the slot arrays
    output_storages: list[int] = field(default_factory=list)  # allocated afresh on every call

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        prog = self.program
        keep: list[np.ndarray] = []
        for view, x in zip(prog.input_views, inputs):
            arr = np.ascontiguousarray(x)
            keep.append(arr)
            self._bind(view.storage, arr.ctypes.data)
        out_arrays: dict[int, np.ndarray] = {}
        for sid in self.output_storages:
            n = prog.storages[sid].nbytes
            buf = np.empty(max(1, n + (GUARD if self.guards is not None else 0)), np.uint8)
            if self.guards is not None:
                buf[n:] = 0xA5
            out_arrays[sid] = buf
            self._bind(sid, buf.ctypes.data)
        if self.guards is not None:
            self._run_checked(out_arrays)
        else:
            run_calls(len(self.calls), self.fn_table, self.slot_table)
        if self.err[0]:
            code = int(self.err[0])
            self.err[0] = 0
            op = prog.steps[code - 1].op
            raise RuntimeFault(f"index out of range (gather, scatter or topk)\n  while executing {print_op_line(op)}")
        outs = []
        for view in prog.outputs:
            outs.append(self._materialize(view, out_arrays, keep))
        return outs

    def _run_checked(self, out_arrays: Mapping[int, np.ndarray]) -> None:
        canary = np.uint8(0xA5)
        guards = list(self.guards or [])
        for off, n, _ in guards:
            self.arena[off:off + n] = canary
        for i, ((fn, slots), step) in enumerate(zip(self.calls, self.program.steps)):
            fn(slots)
            for off, n, what in guards:
                if not (self.arena[off:off + n] == canary).all():
                    raise RuntimeFault(f"step {i} ({step.kernel.name}) wrote past the end of {what}\n"
                                       f"  while executing {print_op_line(step.op)}")
            for sid, buf in out_arrays.items():
                n = self.program.storages[sid].nbytes
                if not (buf[n:] == canary).all():
                    raise RuntimeFault(f"step {i} ({step.kernel.name}) wrote past the end of output storage {sid}\n"
                                       f"  while executing {print_op_line(step.op)}")

    def _bind(self, storage: int, address: int) -> None:
        for p in self.patches.get(storage, ()):
            p.slots[p.index] = address + p.byte_offset

    def _materialize(self, view: View, out_arrays: Mapping[int, np.ndarray], inputs: Sequence[np.ndarray]) -> np.ndarray:
        if view.numel == 0:  # no element to read (its storage may hold none to view)
            return np.empty(view.shape, view.dtype)
        s = self.program.storages[view.storage]
        if s.kind == "output":
            base = out_arrays[s.id]
        elif s.kind == "input":
            base = inputs[s.index].reshape(-1).view(np.uint8)
        elif s.kind == "weight":
            assert s.array is not None
            base = s.array.reshape(-1).view(np.uint8)
        else:
            raise RuntimeFault(f"internal: graph output lives in {s.kind} storage {s.what}")
        item = view.itemsize
        arr = np.lib.stride_tricks.as_strided(base[view.offset * item:].view(view.dtype) if base.size else base.view(view.dtype),
                                              shape=view.shape, strides=tuple(st * item for st in view.strides))
        if s.kind != "output" or not _is_c_contiguous(view):
            return np.array(arr)  # a private, contiguous result
        return arr


def _is_c_contiguous(view: View) -> bool:
    return view.is_contiguous() and view.offset == 0


GUARD = 256  # bytes of canary after each storage in checked mode


def bind(program: Program, kernels: Mapping[str, CompiledKernel], *, checked: bool = False) -> BoundProgram:
    """Plan the arena, allocate it and write every step's slots.

    ``checked`` (a debugging mode, ``OPTLLM_CPU_CHECKED=1``): no sharing — every storage gets
    its own bytes followed by a canary, outputs too, and every step is followed by a canary
    check, so a kernel writing out of bounds is reported by name instead of corrupting memory.
    """
    t0 = time.perf_counter()
    outputs = {v.storage for v in program.outputs}
    for sid in outputs:
        if program.storages[sid].kind == "arena":
            program.storages[sid].kind = "output"
    live = program.liveness()
    requests = []
    for s in program.storages:
        if s.kind == "arena" and s.id in live:
            first, last = live[s.id]
            reuse = s.inplace_of if s.inplace_of in live and program.storages[s.inplace_of].kind == "arena" else None
            requests.append(BufferRequest(s.id, s.nbytes, first, last, reuse))  # never in place of an output
    plan = plan_memory(requests, alignment=ALIGN, num_steps=len(program.steps))
    if checked:
        offsets, at = {}, 0
        for r in requests:
            offsets[r.id] = at
            at += -(-(r.nbytes + GUARD) // ALIGN) * ALIGN
        plan = MemoryPlan(offsets, at, plan.lower_bound, {}, ALIGN, "checked")
    arena_raw = np.empty(plan.arena_bytes + ALIGN, np.uint8)
    start = (-arena_raw.ctypes.data) % ALIGN
    arena = arena_raw[start:start + max(plan.arena_bytes, 1)]
    err = np.zeros(1, np.int64)
    base: dict[int, int] = {}
    for s in program.storages:
        if s.kind == "arena":
            base[s.id] = arena.ctypes.data + plan.offsets.get(s.id, 0)
        elif s.kind == "weight":
            assert s.array is not None
            base[s.id] = s.array.ctypes.data
        elif s.kind == "err":
            base[s.id] = err.ctypes.data
    bound = BoundProgram(program, [], arena, MemoryReport(plan.arena_bytes, plan.lower_bound, plan.ratio(),
                                                          sum(s.nbytes for s in program.storages if s.kind == "weight"),
                                                          len(requests)), plan, err=err)
    bound.output_storages = [s.id for s in program.storages if s.kind == "output"]
    bound._arena_raw = arena_raw  # type: ignore[attr-defined]  # keeps the allocation alive
    addrs: list[tuple[int, int]] = []
    for step in program.steps:
        k = step.kernel
        slots = (ctypes.c_int64 * max(1, len(k.params)))()
        for i, p in enumerate(k.params):
            a = step.args[p.name]
            if p.kind == "buffer":
                assert a.view is not None
                off = a.view.offset * a.view.itemsize
                if a.view.storage in base:
                    slots[i] = base[a.view.storage] + off
                else:  # an input or output: patched per call
                    bound.patches.setdefault(a.view.storage, []).append(_Patch(slots, i, off))
            elif p.ctype.is_float:
                slots[i] = int(np.array(float(a.value), np.float64).view(np.int64))  # type: ignore[arg-type]
            else:
                slots[i] = int(a.value)  # type: ignore[arg-type]
        bound.calls.append((kernels[k.name]._fn, slots))
        addrs.append((kernels[k.name].address, ctypes.addressof(slots)))
    n = max(1, len(addrs))
    bound.fn_table = (ctypes.c_int64 * n)(*[a for a, _ in addrs])
    bound.slot_table = (ctypes.c_int64 * n)(*[b for _, b in addrs])
    bound.bind_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    if checked:
        bound.guards = [(plan.offsets[r.id] + r.nbytes, GUARD, program.storages[r.id].what) for r in requests]
    return bound
