"""Kernel templates: builders that return :class:`~optllm.backends.kernels.kir.Kernel` objects.

Each module builds one family (row norms, softmax, attention, rope, elementwise, GEMM) from
target-neutral KIR, so the LLVM printer and the CUDA printer compile the very same kernels.
Every tensor operand is a flat base buffer addressed through ``i64`` element strides passed as
scalar parameters; the parameter list of each builder is its contract with the runtime.
"""
