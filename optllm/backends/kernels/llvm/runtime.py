"""Native pieces the generated code links against, and the host-side thread count.

* **libgomp** (``GOMP_parallel``, ``omp_get_thread_num``, ``omp_get_num_threads``) runs the
  outlined parallel loops; found with ``ctypes.util.find_library("gomp")`` (Debian: ``libgomp1``).
* **numpy's OpenBLAS** (``numpy.libs/libscipy_openblas64_*.so``, ILP64) provides ``sgemm``; its
  ``scipy_cblas_sgemm64_`` and ``openblas_set_num_threads_local`` are registered with the JIT
  under the stable names :data:`SGEMM_SYMBOL` and :data:`BLAS_THREADS_SYMBOL`.
* :data:`NUM_THREADS_SYMBOL` names an ``i64`` in this process that every kernel reads for
  ``NumThreads()`` and as the team size of ``GOMP_parallel``; :func:`set_num_threads` writes it.

libgomp reads ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` when it is loaded. Its default (spin,
then sleep) hands work to the team fastest on an idle machine, but on an oversubscribed one it
is ruinous: on this 2-core machine under a load average of 7, a 2-thread region took ~24 ms
instead of ~1.3 ms, while ``OMP_WAIT_POLICY=passive`` gave 1.4 ms. Set it in the environment
before the first kernel is compiled where the machine is shared.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import logging
import os

from optllm.backends.kernels.kir import KIRError

log = logging.getLogger(__name__)

SGEMM_SYMBOL = "optllm_cblas_sgemm64"
BLAS_THREADS_SYMBOL = "optllm_blas_set_num_threads_local"
NUM_THREADS_SYMBOL = "optllm_num_threads"

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


@functools.cache
def load_runtime() -> None:
    """Make libgomp, the BLAS entry points and the thread-count variable visible to the JIT."""
    import llvmlite.binding as llvm

    gomp = ctypes.util.find_library("gomp")
    if gomp is None:
        raise KIRError("parallel kernels need libgomp (GNU OpenMP runtime); install the Debian package libgomp1")
    # Hold our own dlopen reference: LLVM closes its handles at exit, and unmapping libgomp while
    # its idle workers still spin in it crashes the process on the way out.
    _keep.append(ctypes.CDLL(gomp, mode=ctypes.RTLD_GLOBAL))
    llvm.load_library_permanently(gomp)
    llvm.add_symbol(NUM_THREADS_SYMBOL, ctypes.addressof(_num_threads))
    try:
        blas = ctypes.CDLL(_find_openblas())
    except (KIRError, OSError) as err:  # sgemm kernels fail at link time with this reason
        log.warning("no BLAS for sgemm: %s", err)
        return
    llvm.add_symbol(SGEMM_SYMBOL, ctypes.cast(blas.scipy_cblas_sgemm64_, ctypes.c_void_p).value)
    llvm.add_symbol(BLAS_THREADS_SYMBOL, ctypes.cast(blas.openblas_set_num_threads_local, ctypes.c_void_p).value)
    _keep.append(blas)
