"""The GEMM template with a fused epilogue: ``nn.linear`` as one kernel launch.

    %y = nn.linear %x, %w, %b, %r {bias = true, activation = "gelu_tanh", residual = true}
      ->
    kernel linear_...(out, x, w, bias, res, m, n, k, x_rs, w_ld, out_rs, res_rs, bm, bn)
      for parallel t in [0, ceil(m/bm) * ceil(n/bn)):      # one output block per task
        r0 = (t / nbn) * bm ; c0 = (t % nbn) * bn ; rows, cols clipped at m, n
        sgemm(0, trans_w, rows, cols, k, 1.0, &x[r0*x_rs], x_rs, &w[block], w_ld, 0.0,
              &out[r0*out_rs + c0], out_rs)                # the target's single-threaded GEMM
        for i in [0, rows): for j in [0, cols):            # epilogue while the block is in cache
          y = act(out[..] + bias[c0+j]) + res[(r0+i)*res_rs + c0+j]

The kernel's parallel loop is the only thread pool (the GEMM primitive runs single-threaded
inside each task), so the block a task multiplies is the block its epilogue rewrites, hot in
cache, and no second pool competes for the cores. ``x`` rows and ``res`` rows may be strided
(``x_rs``, ``res_rs``); their inner dim is contiguous. ``w`` is ``[K, N]``, or ``[N, K]`` with
``transpose_w``, leading dimension ``w_ld``. ``bm``/``bn`` (the block shape) come from
:func:`gemm_blocks`, chosen by the runtime for the concrete sizes.
"""

from __future__ import annotations

from optllm.backends.kernels.kir import (
    F32,
    I64,
    Addr,
    Binary,
    Expr,
    For,
    Kernel,
    KIRError,
    Let,
    Load,
    Param,
    ScalarType,
    Stmt,
    Store,
    c,
    call,
    v,
)
from optllm.backends.kernels.templates.scalar import ACTIVATIONS


def gemm_blocks(m: int, n: int, threads: int) -> tuple[int, int]:
    """Block shape ``(bm, bn)``: one block per worker, cut along the longer side, columns in
    multiples of 16 (a vector register of f32) — equal shares, because the kernel's parallel
    loop hands each worker one contiguous chunk of tasks."""
    if threads <= 1:
        return max(m, 1), max(n, 1)
    if n >= m:
        bn = -(-n // threads)
        return max(m, 1), max(16, -(-bn // 16) * 16)
    return max(1, -(-m // threads)), max(n, 1)


def linear_kernel(name: str, dtype: ScalarType, *, transpose_w: bool, bias: bool, activation: str,
                  residual: bool, packed: bool = False) -> Kernel:
    """``out[m, n] = act(x[m, k] @ W + bias) + res`` as blocked GEMM tasks with an epilogue.

    With ``packed``, ``w`` holds the weight pre-packed per column block (block ``cb`` at element
    offset ``cb * wp_stride``, each packed with its own width) and the tasks call the
    ``sgemm_packed`` primitive; the ``w_ld`` parameter is replaced by ``wp_stride``. (The cpu
    lowering packs the whole weight as one block and splits rows.)"""
    if dtype != F32:
        raise KIRError(f"the GEMM template supports f32 only so far, got {dtype}")
    if activation not in ACTIVATIONS:
        raise KIRError(f"unknown activation {activation!r} (expected one of {', '.join(ACTIVATIONS)})")
    m, n, k, bm, bn = v("m"), v("n"), v("k"), v("bm"), v("bn")
    nbn = Binary("div", Binary("add", n, Binary("sub", bn, c(1))), bn)
    nbm = Binary("div", Binary("add", m, Binary("sub", bm, c(1))), bm)
    w_block: Expr = Binary("mul", v("c0"), v("w_ld")) if transpose_w else v("c0")
    out_block = Addr("out", Binary("add", Binary("mul", v("r0"), v("out_rs")), v("c0")))
    x_block = Addr("x", Binary("mul", v("r0"), v("x_rs")))
    if packed:
        gemm = call("sgemm_packed", v("rows"), v("cols"), k, x_block, v("x_rs"),
                    Addr("w", Binary("mul", Binary("mod", v("t"), nbn), v("wp_stride"))), c(0.0, F32),
                    out_block, v("out_rs"))
    else:
        gemm = call("sgemm", c(0), c(1 if transpose_w else 0), v("rows"), v("cols"), k, c(1.0, F32),
                    x_block, v("x_rs"), Addr("w", w_block), v("w_ld"), c(0.0, F32), out_block, v("out_rs"))
    body: list[Stmt] = [
        Let("r0", Binary("mul", Binary("div", v("t"), nbn), bm)),
        Let("c0", Binary("mul", Binary("mod", v("t"), nbn), bn)),
        Let("rows", Binary("min", bm, Binary("sub", m, v("r0")))),
        Let("cols", Binary("min", bn, Binary("sub", n, v("c0")))),
        gemm,
    ]
    if bias or residual or activation != "none":
        row = Binary("add", v("r0"), v("i"))
        at = Binary("add", Binary("mul", row, v("out_rs")), Binary("add", v("c0"), v("j")))
        y: Expr = Load("out", at, dtype)
        if bias:
            y = y + Load("bias", Binary("add", v("c0"), v("j")), dtype)
        y = ACTIVATIONS[activation](y)
        if residual:
            y = y + Load("res", Binary("add", Binary("mul", row, v("res_rs")), Binary("add", v("c0"), v("j"))), dtype)
        inner = For("j", c(0), v("cols"), (Store("out", at, y),), independent=True)
        body.append(For("i", c(0), v("rows"), (inner,)))
    tasks = Binary("mul", nbm, nbn)
    loop = For("t", c(0), tasks, tuple(body), parallel=True, work=1 << 20)

    params = [Param("out", "buffer", dtype), Param("x", "buffer", dtype), Param("w", "buffer", dtype)]
    if bias:
        params.append(Param("bias", "buffer", dtype))
    if residual:
        params.append(Param("res", "buffer", dtype))
    params += [Param(s, "scalar", I64) for s in ("m", "n", "k", "x_rs", "wp_stride" if packed else "w_ld", "out_rs")]
    if residual:
        params.append(Param("res_rs", "scalar", I64))
    params += [Param("bm", "scalar", I64), Param("bn", "scalar", I64)]
    return Kernel(name, tuple(params), (loop,),
                  doc=f"nn.linear (transpose_w={transpose_w}, bias={bias}, activation={activation}, "
                      f"residual={residual}, packed={packed})")
