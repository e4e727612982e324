"""The native call loop: one ctypes call runs a whole bound program.

Replaying a plan from Python costs a ctypes call per kernel (about a microsecond each, with
the GIL taken and released every time). Instead the executor hands this loop two arrays —
kernel entry points and their slot arrays — and it calls them in order in native code, with
the GIL released once for the whole program::

    void optllm_run_calls(i64 n, i64* fns, i64* slots) {
      for (i64 i = 0; i < n; ++i) ((void (*)(i64*)) fns[i])((i64*) slots[i]);
    }

It is compiled once per process through llvmlite (the same LLVM the kernels use).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

_IR = r"""
define void @optllm_run_calls(i64 %n, i64* %fns, i64* %slots) {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %fp = getelementptr i64, i64* %fns, i64 %i
  %f = load i64, i64* %fp
  %sp = getelementptr i64, i64* %slots, i64 %i
  %s = load i64, i64* %sp
  %fn = inttoptr i64 %f to void (i64*)*
  %sl = inttoptr i64 %s to i64*
  call void %fn(i64* %sl)
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}
"""

_RUNNER = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)


@functools.lru_cache(maxsize=1)
def _compiled() -> tuple[Any, Any]:
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    tm = target.create_target_machine(opt=2)
    mod = llvm.parse_assembly(_IR)
    mod.verify()
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    return engine, _RUNNER(engine.get_function_address("optllm_run_calls"))


def run_calls(n: int, fns: ctypes.Array, slots: ctypes.Array) -> None:
    """Call ``fns[i](slots[i])`` for ``i < n`` in native code (GIL released)."""
    _compiled()[1](n, ctypes.addressof(fns), ctypes.addressof(slots))
