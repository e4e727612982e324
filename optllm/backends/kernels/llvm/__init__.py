"""The CPU code generator: KIR kernels printed to LLVM IR (llvmlite), optimised at O3 and JIT-compiled.

``codegen.emit_module`` prints kernels to LLVM IR text, ``mathlib`` holds the vectorisable
elementary functions, ``runtime`` finds the native libraries (libgomp, numpy's OpenBLAS) and holds
the thread count, and ``jit.compile_kernels`` turns kernels into callable native code with an
in-process and an on-disk cache. What a runtime uses::

    fns = compile_kernels([k1, k2])            # {name: CompiledKernel}; verifies, caches
    slots = pack_slots(k1, out=y, x=x, n=n)    # ctypes int64 array, built once per call site
    fns["k1"](ctypes.addressof(slots))         # GIL released during the call
    set_num_threads(4); get_num_threads()      # workers of parallel loops, NumThreads()
"""

from optllm.backends.kernels.llvm.jit import (
    CompiledKernel,
    KernelLibrary,
    cache_stats,
    compile_kernels,
    pack_slots,
)
from optllm.backends.kernels.llvm.runtime import get_num_threads, set_num_threads

__all__ = ["CompiledKernel", "KernelLibrary", "cache_stats", "compile_kernels", "get_num_threads",
           "pack_slots", "set_num_threads"]
