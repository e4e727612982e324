"""The CPU code generator: KIR kernels printed to LLVM IR (llvmlite), optimised at O3 and JIT-compiled.

``codegen.emit_module`` prints kernels to LLVM IR text, ``mathlib`` holds the vectorisable
elementary functions, ``runtime`` finds the native libraries (libgomp, numpy's OpenBLAS) and holds
the thread count, and ``jit.compile_kernels`` turns kernels into callable native code with an
in-process and an on-disk cache.
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
