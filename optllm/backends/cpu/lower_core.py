"""CPU lowering of the general ``core`` ops that are not elementwise: reductions, batched matmul."""
