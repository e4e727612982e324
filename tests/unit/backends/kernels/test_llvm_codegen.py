"""The LLVM printer and JIT on hand-written kernels: elementwise, reductions, parallel loops,
per-worker scratch, sgemm, the ABI and the compile caches."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from optllm.backends.kernels.kir import (
    BOOL,
    F32,
    F64,
    I32,
    I64,
    Addr,
    Assign,
    Binary,
    Cast,
    Declare,
    For,
    If,
    Kernel,
    KIRError,
    Let,
    NumThreads,
    Param,
    ScalarType,
    Store,
    ThreadIndex,
    Unary,
    c,
    call,
    load,
    v,
)
from optllm.backends.kernels.llvm import jit
from optllm.backends.kernels.llvm.codegen import PARALLEL_MIN_WORK, emit_module
from optllm.backends.kernels.llvm.jit import cache_stats, compile_kernels, pack_slots
from optllm.backends.kernels.llvm.runtime import get_num_threads, set_num_threads

RNG = np.random.default_rng(7)


def buf(name: str, t: ScalarType) -> Param:
    return Param(name, "buffer", t)


def scalar(name: str, t: ScalarType = I64) -> Param:
    return Param(name, "scalar", t)


def axpy(parallel: bool) -> Kernel:
    """out[i] = a * x[i] + y[i]"""
    body = Store("out", v("i"), v("a", F32) * load("x", v("i"), F32) + load("y", v("i"), F32))
    return Kernel(f"axpy_{'par' if parallel else 'ser'}",
                  (buf("out", F32), buf("x", F32), buf("y", F32), scalar("a", F32), scalar("n")),
                  (For("i", c(0), v("n"), (body,), parallel=parallel, work=4),))


def row_sum() -> Kernel:
    """out[r] = sum(x[r, :]) over a (rows, cols) array, rows in parallel."""
    inner = For("j", c(0), v("cols"), (Assign("acc", v("acc", F32) + load("x", v("r") * v("cols") + v("j"), F32)),))
    row = (Declare("acc", c(0.0, F32)), inner, Store("out", v("r"), v("acc", F32)))
    return Kernel("row_sum", (buf("out", F32), buf("x", F32), scalar("rows"), scalar("cols")),
                  (For("r", c(0), v("rows"), row, parallel=True, work=1024),))


def thread_scratch() -> Kernel:
    """Each row: copy into the worker's scratch slice, then write out[r] = 2 * sum of the slice."""
    base = ThreadIndex() * v("cols")
    fill = For("j", c(0), v("cols"), (Store("scratch", base + v("j"), load("x", v("r") * v("cols") + v("j"), F64)),))
    acc = For("j", c(0), v("cols"), (Assign("s", v("s", F64) + load("scratch", base + v("j"), F64)),))
    row = (fill, Declare("s", c(0.0, F64)), acc, Store("out", v("r"), v("s", F64) * c(2.0, F64)))
    return Kernel("thread_scratch", (buf("out", F64), buf("x", F64), buf("scratch", F64), buf("nt", I64),
                                     scalar("rows"), scalar("cols")),
                  (Store("nt", c(0), NumThreads()),
                   For("r", c(0), v("rows"), row, parallel=True, work=PARALLEL_MIN_WORK)))


def bmm() -> Kernel:
    """c[b] = alpha * op(a[b]) @ op(b) + beta * c[b], batches in parallel, with explicit lds."""
    m, n, k = v("m"), v("n"), v("k")
    sg = call("sgemm", v("ta"), v("tb"), m, n, k, c(1.5, F32), Addr("a", v("bi") * v("sa")), v("lda"),
              Addr("b", c(0)), v("ldb"), c(0.5, F32), Addr("c", v("bi") * m * v("ldc")), v("ldc"))
    return Kernel("bmm", (buf("c", F32), buf("a", F32), buf("b", F32)) + tuple(
        scalar(s) for s in ("batch", "ta", "tb", "m", "n", "k", "sa", "lda", "ldb", "ldc")),
        (For("bi", c(0), v("batch"), (sg,), parallel=True, work=PARALLEL_MIN_WORK),))


def control() -> Kernel:
    """Lets, If/else and casts: out[i] = x[i] > 0 ? i : -1 (as f64), flag[i] = i is even."""
    then = (Store("out", v("i"), Cast(v("i"), F64)),)
    orelse = (Store("out", v("i"), c(-1.0, F64)),)
    return Kernel("control", (buf("out", F64), buf("flag", BOOL), buf("x", I32), scalar("n")),
                  (For("i", c(0), v("n"), (
                      Let("xi", load("x", v("i"), I32)),
                      If(Binary("gt", v("xi", I32), c(0, I32)), then, orelse),
                      Store("flag", v("i"), Binary("eq", Binary("mod", v("i"), c(2)), c(0))),
                  )),))


def empty() -> Kernel:
    return Kernel("empty", (), ())


ALL = [axpy(False), axpy(True), row_sum(), thread_scratch(), bmm(), control(), empty()]


@pytest.fixture(scope="module")
def fns():
    return compile_kernels(ALL)


@pytest.fixture
def threads():
    before = get_num_threads()
    yield set_num_threads
    set_num_threads(before)


@pytest.mark.parametrize("n", [0, 1, 7, 1000, 200_003])
@pytest.mark.parametrize("parallel", [False, True])
def test_axpy(fns, threads, n: int, parallel: bool):
    threads(2)
    x, y = RNG.standard_normal(n).astype(np.float32), RNG.standard_normal(n).astype(np.float32)
    out = np.full(n + 1, 7.0, np.float32)  # the extra element must stay untouched
    k = axpy(parallel)
    fns[k.name](pack_slots(k, out=out, x=x, y=y, a=0.25, n=n))
    np.testing.assert_allclose(out[:n], np.float32(0.25) * x + y, rtol=1e-6, atol=1e-6)
    assert out[n] == 7.0


def test_axpy_in_place(fns, threads):
    threads(2)
    n = 100_001
    x, y = RNG.standard_normal(n).astype(np.float32), RNG.standard_normal(n).astype(np.float32)
    want = np.float32(2.0) * x + y
    k = axpy(True)
    fns[k.name](pack_slots(k, out=y, x=x, y=y, a=2.0, n=n))  # out aliases y
    np.testing.assert_allclose(y, want, rtol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (3, 0), (5, 1023), (257, 4097)])
def test_row_sum(fns, threads, shape):
    threads(2)
    x = RNG.standard_normal(shape).astype(np.float32)
    out = np.zeros(shape[0], np.float32)
    fns["row_sum"](pack_slots(row_sum(), out=out, x=x, rows=shape[0], cols=shape[1]))
    want = x.astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.sqrt(shape[1]))


@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_parallel_equals_serial(fns, threads, nthreads: int):
    threads(nthreads)
    rows, cols = 301, 777
    x = RNG.standard_normal((rows, cols)).astype(np.float32)
    out = np.zeros(rows, np.float32)
    fns["row_sum"](pack_slots(row_sum(), out=out, x=x, rows=rows, cols=cols))
    threads(1)
    ref = np.zeros(rows, np.float32)
    fns["row_sum"](pack_slots(row_sum(), out=ref, x=x, rows=rows, cols=cols))
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("nthreads", [1, 2, 4])
def test_thread_scratch(fns, threads, nthreads: int):
    threads(nthreads)
    rows, cols = 64, 1000
    x = RNG.standard_normal((rows, cols))
    scratch = np.full(nthreads * cols, np.nan)
    out, nt = np.zeros(rows), np.zeros(1, np.int64)
    fns["thread_scratch"](pack_slots(thread_scratch(), out=out, x=x, scratch=scratch, nt=nt, rows=rows, cols=cols))
    assert nt[0] == nthreads
    np.testing.assert_allclose(out, 2 * x.sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
def test_sgemm(fns, threads, ta: int, tb: int):
    threads(2)
    batch, m, n, k, pad = 5, 33, 17, 29, 3
    a_full = RNG.standard_normal((batch, k if ta else m, (m if ta else k) + pad)).astype(np.float32)
    b_full = RNG.standard_normal((n if tb else k, (k if tb else n) + pad)).astype(np.float32)
    c_full = RNG.standard_normal((batch, m, n + pad)).astype(np.float32)
    a = a_full[:, :, : a_full.shape[2] - pad]
    b = b_full[:, : b_full.shape[1] - pad]
    a_op = a.transpose(0, 2, 1) if ta else a
    b_op = b.T if tb else b
    want = 1.5 * (a_op @ b_op) + 0.5 * c_full[:, :, :n]
    fns["bmm"](pack_slots(bmm(), c=c_full, a=a_full, b=b_full, batch=batch, ta=ta, tb=tb, m=m, n=n, k=k,
                          sa=a_full[0].size, lda=a_full.shape[2], ldb=b_full.shape[1], ldc=n + pad))
    np.testing.assert_allclose(c_full[:, :, :n], want, rtol=1e-4, atol=1e-4)


def test_sgemm_kernel_restores_blas_threads(fns, threads):
    from optllm.backends.kernels.llvm import runtime

    blas = ctypes.CDLL(runtime._find_openblas())
    before = blas.scipy_openblas_get_num_threads64_()
    m = n = k = 8
    a, b, c = (np.ones((m, k), np.float32) for _ in range(3))
    for nthreads in (1, 2):
        threads(nthreads)
        fns["bmm"].run(c=c, a=a, b=b, batch=1, ta=0, tb=0, m=m, n=n, k=k, sa=0, lda=k, ldb=n, ldc=n)
        assert blas.scipy_openblas_get_num_threads64_() == before
    text = emit_module([bmm()])
    assert text.count("call i32 @\"optllm_blas_set_num_threads_local\"") == 2  # set on entry, restore on exit


def test_control_flow(fns):
    x = np.array([3, -1, 0, 5, -7], np.int32)
    out, flag = np.zeros(5), np.zeros(5, bool)
    fns["control"](pack_slots(control(), out=out, flag=flag, x=x, n=5))
    np.testing.assert_array_equal(out, [0, -1, -1, 3, -1])
    np.testing.assert_array_equal(flag.view(np.uint8), [1, 0, 1, 0, 1])


def test_call_by_address(fns):
    slots = (ctypes.c_int64 * 1)()
    fns["empty"](slots)
    fns["empty"](ctypes.addressof(slots))


def test_pack_slots_checks_dtypes():
    with pytest.raises(KIRError, match="buffer x is f32"):
        pack_slots(axpy(False), out=np.zeros(1, np.float32), x=np.zeros(1), y=np.zeros(1, np.float32), a=1, n=1)
    with pytest.raises(KIRError, match="no value for parameter n"):
        pack_slots(axpy(False), out=0, x=0, y=0, a=1.0)


def test_ir_text_flags():
    text = emit_module([axpy(True)])
    assert "fmul contract float" in text
    assert "nnan" not in text and "ninf" not in text and "noalias" not in text
    assert "GOMP_parallel" in text


def test_duplicate_names_rejected():
    with pytest.raises(KIRError, match="unique"):
        emit_module([empty(), empty()])


def test_parallel_assign_of_outer_accumulator_rejected():
    k = Kernel("race", (buf("x", F32), scalar("n")),
               (Declare("acc", c(0.0, F32)),
                For("i", c(0), v("n"), (Assign("acc", v("acc", F32) + load("x", v("i"), F32)),), parallel=True)))
    with pytest.raises(KIRError, match="race: parallel loop over i assigns acc"):
        emit_module([k])


def test_bf16_rounds_after_every_op():
    import ml_dtypes

    bf = ScalarType.BF16
    x_t = load("x", v("i"), bf)
    k = Kernel("bf", (buf("out", bf), buf("wide", F32), buf("x", bf), scalar("s", bf), scalar("n")),
               (For("i", c(0), v("n"), (Store("out", v("i"), x_t * v("s", bf) + c(0.1, bf)),
                                        Store("wide", v("i"), Cast(Unary("exp", x_t), F32)))),))
    fns = compile_kernels([k])
    x = RNG.standard_normal(1001).astype(ml_dtypes.bfloat16)
    x[:3] = [np.nan, np.inf, -0.0]
    out, wide = np.zeros(1001, ml_dtypes.bfloat16), np.zeros(1001, np.float32)
    fns["bf"](pack_slots(k, out=out, wide=wide, x=x, s=1.37, n=1001))
    s = np.array(1.37, ml_dtypes.bfloat16)
    want = (x * s) + np.array(0.1, ml_dtypes.bfloat16)
    np.testing.assert_array_equal(out.astype(np.float32), want.astype(np.float32))
    np.testing.assert_array_equal(wide, np.exp(x).astype(np.float32))


def test_disk_cache_hit_skips_optimizer(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTLLM_CACHE_DIR", str(tmp_path))
    k = Kernel("cache_probe", (buf("out", I64), scalar("n")),
               (For("i", c(0), v("n"), (Store("out", v("i"), v("i") * v("i")),)),))
    jit.clear_memory_cache()
    cache_stats.reset()
    jit.KernelLibrary().compile([k])
    assert (cache_stats.misses, cache_stats.optimizer_runs) == (1, 1)
    assert len(list(tmp_path.glob("*.o"))) == 1
    jit.clear_memory_cache()
    fns = jit.KernelLibrary().compile([k])
    assert (cache_stats.disk_hits, cache_stats.optimizer_runs) == (1, 1)
    out = np.zeros(5, np.int64)
    fns["cache_probe"](pack_slots(k, out=out, n=5))
    np.testing.assert_array_equal(out, [0, 1, 4, 9, 16])
    jit.KernelLibrary().compile([k])
    assert cache_stats.memory_hits == 1
    assert not list(tmp_path.glob("*.tmp"))


def reduction(name: str, update, init: float) -> Kernel:
    body = (Let("xi", load("x", v("i"), F32)), Assign("acc", update(v("acc", F32), v("xi", F32))))
    return Kernel(name, (buf("out", F32), buf("x", F32), scalar("n")),
                  (Declare("acc", c(init, F32)), For("i", c(0), v("n"), body), Store("out", c(0), v("acc", F32))))


REDUCTIONS = {
    "sum": (lambda a, x: a + x, 0.0, lambda x: x.astype(np.float64).sum()),
    "max": (lambda a, x: Binary("max", a, x), -np.inf, np.max),
    "min": (lambda a, x: Binary("min", a, x), np.inf, np.min),
    "sumexp": (lambda a, x: a + Unary("exp", x), 0.0, lambda x: np.exp(x.astype(np.float64)).sum()),
}


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_vectorise_and_keep_nan(name: str):
    import re

    from optllm.backends.kernels.llvm.jit import optimized_ir

    update, init, ref = REDUCTIONS[name]
    k = reduction(f"red_{name}", update, init)
    assert re.search(r"<\d+ x float>", optimized_ir([k])), "reduction did not vectorise"
    fn = compile_kernels([k])[k.name]
    for n in (0, 1, 5, 1000, 4099):
        x = RNG.uniform(-3, 3, n).astype(np.float32)
        out = np.zeros(1, np.float32)
        fn.run(out=out, x=x, n=n)
        want = ref(x) if n else init
        np.testing.assert_allclose(out[0], want, rtol=2e-6)
        if n > 3:
            x[n // 2] = np.nan
            fn.run(out=out, x=x, n=n)
            assert np.isnan(out[0])


def test_disk_cache_reused_by_another_process(tmp_path, monkeypatch):
    """Object code stored by one process loads and runs in another (relocations, not addresses)."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("OPTLLM_CACHE_DIR", str(tmp_path))
    jit.clear_memory_cache()
    compile_kernels([row_sum()])  # compiled and stored here
    script = (
        "import numpy as np, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import test_llvm_codegen as T\n"
        "from optllm.backends.kernels.llvm import jit, set_num_threads\n"
        "fns = jit.compile_kernels([T.row_sum()])\n"
        "set_num_threads(2)\n"
        "x = np.ones((300, 2000), np.float32); out = np.zeros(300, np.float32)\n"
        "fns['row_sum'].run(out=out, x=x, rows=300, cols=2000)\n"
        "print(jit.cache_stats.disk_hits, jit.cache_stats.misses, float(out.min()), float(out.max()))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], env=dict(os.environ),
                         capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["1", "0", "2000.0", "2000.0"]
