"""Native pieces the generated code links against, and the host-side thread count.

* **libgomp** (``GOMP_parallel``, ``omp_get_thread_num``, ``omp_get_num_threads``) runs the
  outlined parallel loops; found with ``ctypes.util.find_library("gomp")`` (Debian: ``libgomp1``).
* **numpy's OpenBLAS** (``numpy.libs/libscipy_openblas64_*.so``, ILP64) provides ``sgemm``; its
  ``scipy_cblas_sgemm64_`` and ``openblas_set_num_threads_local`` are registered with the JIT
  under the stable names :data:`SGEMM_SYMBOL` and :data:`BLAS_THREADS_SYMBOL`.
* :data:`NUM_THREADS_SYMBOL` names an ``i64`` in this process that every kernel reads for
  ``NumThreads()`` and as the team size of ``GOMP_parallel``; :func:`set_num_threads` writes it.

The kernels get a **private copy of libgomp**, opened by its full path (so not the copy torch
loaded under the same soname) and bound to the JIT by explicit symbols, because libgomp reads
``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` once, when it is loaded. Its default (spin ~300k
iterations, then sleep) hands work to the team fastest on an idle machine but is ruinous on an
oversubscribed one: on this 2-core machine under a load average of 7, a 2-thread region took
~24 ms instead of ~1.3 ms, while ``OMP_WAIT_POLICY=passive`` gave 1.4 ms. Our copy therefore
spins :data:`DEFAULT_SPINCOUNT` iterations (``OPTLLM_GOMP_SPINCOUNT`` overrides it) — long enough
to catch the next kernel of a plan, short enough to yield the core soon — unless the user set
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` themselves, which are then honoured.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import logging
import os
from typing import Any

from optllm.backends.kernels.kir import KIRError

log = logging.getLogger(__name__)

SGEMM_SYMBOL = "optllm_cblas_sgemm64"
BLAS_THREADS_SYMBOL = "optllm_blas_set_num_threads_local"
NUM_THREADS_SYMBOL = "optllm_num_threads"
SGEMM_PACKED_SYMBOL = "optllm_sgemm_packed_compute"
PACKED_THREADS_SYMBOL = "optllm_packed_set_num_threads_local"

_num_threads = ctypes.c_int64(0)
_keep: list[ctypes.CDLL] = []  # native libraries that must stay mapped for the life of the process


def default_num_threads() -> int:
    """``OMP_NUM_THREADS`` when set to a positive integer, else ``os.cpu_count()``."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Set how many workers parallel loops use (and what ``NumThreads()`` returns)."""
    if n < 1:
        raise ValueError(f"set_num_threads: need at least one thread, got {n}")
    _num_threads.value = int(n)


def get_num_threads() -> int:
    return int(_num_threads.value)


_num_threads.value = default_num_threads()


def _find_openblas() -> str:
    import numpy as np

    here = os.path.dirname(np.__file__)
    patterns = [os.path.join(os.path.dirname(here), "numpy.libs", "libscipy_openblas64_*.so*"),
                os.path.join(here, ".libs", "libscipy_openblas64_*.so*"),
                os.path.join(os.path.dirname(here), "scipy_openblas64", "lib", "libscipy_openblas64_*.so*")]
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise KIRError("sgemm: numpy's bundled OpenBLAS (numpy.libs/libscipy_openblas64_*.so) was not found; "
                   "install numpy from its manylinux wheel")


DEFAULT_SPINCOUNT = "20000"
_GOMP_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
              "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib")


def gomp_path() -> str:
    """The full path of the system's libgomp (``libgomp.so.1``)."""
    for d in _GOMP_DIRS:
        path = os.path.join(d, "libgomp.so.1")
        if os.path.exists(path):
            return path
    name = ctypes.util.find_library("gomp")
    if name and os.path.isabs(name):
        return name
    raise KIRError("parallel kernels need libgomp (GNU OpenMP runtime, libgomp.so.1); install the Debian "
                   "package libgomp1")


def _private_gomp() -> ctypes.CDLL:
    """Open our own libgomp with our spin policy in its environment (read at load time only)."""
    path = gomp_path()
    user_set = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
    if user_set:
        return ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    os.environ["GOMP_SPINCOUNT"] = os.environ.get("OPTLLM_GOMP_SPINCOUNT", DEFAULT_SPINCOUNT)
    try:
        return ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    finally:
        del os.environ["GOMP_SPINCOUNT"]


class PackedGemm:
    """Pre-packed GEMM through the MKL that the pinned torch wheel ships in ``libtorch_cpu.so``
    (``cblas_sgemm_pack`` / ``cblas_sgemm_compute``, LP64): a weight is re-laid out once into
    MKL's panel format, and every call multiplies by it without packing B again. Measured
    single-threaded on a 2-core Intel Xeon at M=128: 113-130 GFLOP/s, against 70-101 for
    OpenBLAS's ``sgemm`` (which packs B on every call) and 95-119 for onnxruntime's MLAS. Not
    so on other vendors' CPUs: see ``gemm_choice``."""

    CBLAS_ROW_MAJOR, CBLAS_B_MATRIX, NO_TRANS, TRANS = 101, 162, 111, 112

    def __init__(self, lib: ctypes.CDLL) -> None:
        i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
        self.lib = lib
        self.get_size = lib.cblas_sgemm_pack_get_size
        self.get_size.restype = ctypes.c_size_t
        self.get_size.argtypes = [i, i, i, i]
        self.pack_fn = lib.cblas_sgemm_pack
        self.pack_fn.argtypes = [i, i, i, i, i, i, f, p, i, p]
        self.set_local = lib.mkl_set_num_threads_local  # Fortran-style: takes int*

    def packed_floats(self, m: int, n: int, k: int) -> int:
        return -(-int(self.get_size(self.CBLAS_B_MATRIX, m, n, k)) // 4)

    def pack(self, dest_address: int, src: Any, transposed: bool, m: int, n: int, k: int) -> None:
        """Pack ``src`` (a C-contiguous-rows float32 array: [K, N], or [N, K] if ``transposed``)
        for products with m-row A; ``dest_address`` holds ``packed_floats(m, n, k)`` floats."""
        one = ctypes.c_int(1)
        saved = self.set_local(ctypes.byref(one))
        try:
            self.pack_fn(self.CBLAS_ROW_MAJOR, self.CBLAS_B_MATRIX, self.TRANS if transposed else self.NO_TRANS,
                         m, n, k, 1.0, src.ctypes.data, src.strides[0] // 4, dest_address)
        finally:
            restore = ctypes.c_int(saved)
            self.set_local(ctypes.byref(restore))


GEMM_CHOICES = ("auto", "mkl", "openblas")


def cpu_vendor() -> str:
    """The CPU's vendor string (``GenuineIntel``, ``AuthenticAMD``, ...), or ``""`` when this
    platform does not say: ``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    proc = platform.processor()
    return next((v for v in ("GenuineIntel", "AuthenticAMD") if v in proc), "")


def gemm_choice() -> str:
    """Which f32 GEMM the cpu target uses for large weights: ``OPTLLM_GEMM`` (``mkl``,
    ``openblas``; empty or ``auto``: by CPU vendor). ``auto`` takes MKL's packed GEMM on Intel
    CPUs only: MKL dispatches its fast (AVX-512) kernels on Intel CPUs alone, so on an AMD
    EPYC (Zen 4, AVX-512) the packed GEMM ran the small Llama's 128x512x32000 lm_head at
    41-50 ms on two threads where OpenBLAS, which picks its kernels by CPU features, took
    26-29 ms (whole model 1x128: 74 -> 54 ms median, interleaved in one process), and its
    panels held 289 MB of weights against OpenBLAS's 176 MB."""
    raw = os.environ.get("OPTLLM_GEMM", "").strip().lower() or "auto"
    if raw not in GEMM_CHOICES:
        raise ValueError(f"OPTLLM_GEMM={raw!r}: expected one of {', '.join(GEMM_CHOICES)}")
    if raw != "auto":
        return raw
    return "mkl" if cpu_vendor() == "GenuineIntel" else "openblas"


@functools.cache
def packed_gemm() -> PackedGemm | None:
    """The MKL packed GEMM from torch's ``libtorch_cpu.so``, or ``None``: when ``gemm_choice()``
    is ``openblas`` (not an Intel CPU, or ``OPTLLM_GEMM=openblas``), or (with the reason
    logged) when torch is not installed or its build has no MKL; with ``OPTLLM_GEMM=mkl`` the
    latter two raise instead."""
    choice = gemm_choice()
    if choice == "openblas":
        log.info("packed GEMM not used: OpenBLAS chosen (OPTLLM_GEMM=%s, CPU vendor %r)",
                 os.environ.get("OPTLLM_GEMM", ""), cpu_vendor())
        return None
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        if os.environ.get("OPTLLM_GEMM", "").strip().lower() == "mkl":
            raise RuntimeError("OPTLLM_GEMM=mkl: MKL's packed GEMM needs torch's MKL, and torch is not installed")
        log.info("packed GEMM unavailable: torch is not installed")
        return None
    path = os.path.join(os.path.dirname(spec.origin), "lib", "libtorch_cpu.so")
    try:
        lib = ctypes.CDLL(path)
        gemm = PackedGemm(lib)
        compute = ctypes.cast(lib.cblas_sgemm_compute, ctypes.c_void_p).value
    except (OSError, AttributeError) as err:
        if os.environ.get("OPTLLM_GEMM", "").strip().lower() == "mkl":  # asked for by name
            raise RuntimeError(f"OPTLLM_GEMM=mkl: MKL's packed GEMM is unavailable ({path}: {err})") from err
        log.info("packed GEMM unavailable (%s): %s", path, err)
        return None
    _keep.append(lib)
    import llvmlite.binding as llvm

    llvm.add_symbol(SGEMM_PACKED_SYMBOL, compute)
    llvm.add_symbol(PACKED_THREADS_SYMBOL, ctypes.cast(gemm.set_local, ctypes.c_void_p).value)
    return gemm


@functools.cache
def load_runtime() -> None:
    """Make libgomp, the BLAS entry points and the thread-count variable visible to the JIT."""
    import llvmlite.binding as llvm

    gomp = _private_gomp()
    # Hold our own dlopen reference: unmapping libgomp while its idle workers still spin in it
    # crashes the process on the way out.
    _keep.append(gomp)
    for name in ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads"):
        llvm.add_symbol(name, ctypes.cast(getattr(gomp, name), ctypes.c_void_p).value)
    llvm.add_symbol(NUM_THREADS_SYMBOL, ctypes.addressof(_num_threads))
    try:
        blas = ctypes.CDLL(_find_openblas())
    except (KIRError, OSError) as err:  # sgemm kernels fail at link time with this reason
        log.warning("no BLAS for sgemm: %s", err)
        return
    llvm.add_symbol(SGEMM_SYMBOL, ctypes.cast(blas.scipy_cblas_sgemm64_, ctypes.c_void_p).value)
    llvm.add_symbol(BLAS_THREADS_SYMBOL, ctypes.cast(blas.openblas_set_num_threads_local, ctypes.c_void_p).value)
    _keep.append(blas)
