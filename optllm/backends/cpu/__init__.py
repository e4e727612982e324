"""The ``cpu`` target: template kernels printed to LLVM IR through llvmlite, BLAS for GEMMs,
one planned arena per input shape.

``CpuExecutable(module)`` lowers the main graph for the sizes of each new input shape
(``lower.py``, ``lower_nn.py``), compiles the kernels it needs (cached in memory and on disk
by content), plans the arena and binds the calls (``optllm/runtime/executor.py``); later calls
with the same sizes only patch the input and output addresses and replay the calls.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optllm.backends.cpu import lower_core as _lower_core  # noqa: F401  (registers the core handlers)
from optllm.backends.cpu import lower_einsum as _lower_einsum  # noqa: F401  (core.einsum)
from optllm.backends.cpu import lower_index as _lower_index  # noqa: F401  (gathers, scatters, triangle)
from optllm.backends.cpu import lower_loop_gemm as _lower_loop_gemm  # noqa: F401  (non-f32 linear, attention)
from optllm.backends.cpu import lower_nn as _lower_nn  # noqa: F401  (registers the nn handlers)
from optllm.backends.cpu import lower_scan as _lower_scan  # noqa: F401  (cumsum/cumprod, argmax, topk)
from optllm.backends.cpu.lower import CpuLoweringError, Lowering
from optllm.backends.kernels.llvm.jit import compile_kernels
from optllm.backends.kernels.llvm.runtime import get_num_threads
from optllm.backends.reference import bind_symbols
from optllm.ir.graph import Module
from optllm.runtime.executor import BoundProgram, bind

__all__ = ["CpuExecutable", "CpuLoweringError"]


class CpuExecutable:
    """The main graph of ``module`` compiled for this CPU; ``run`` takes and returns numpy arrays."""

    def __init__(self, module: Module, threads: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.module = module
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.threads = threads or get_num_threads()
        self.weights: dict[str, np.ndarray] = {}
        self.programs: dict[tuple[tuple[str, int], ...], BoundProgram] = {}  # (env, team) -> program
        self.build_seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._released: set[str] = set()
        self.spilled_bytes = 0  # bytes of constants released after packing (see _release_packed_sources)
        self.prepare(None)

    def prepare(self, env: dict[str, int] | None) -> BoundProgram | None:
        """Lower and bind for ``env``. With ``None``: lower once with every dynamic dim at 2, only
        so that unsupported ops are reported when the model is built, not at its first call."""
        graph = self.module.main
        if env is None:
            syms = sorted({s for v in graph.inputs for d in v.type.shape if not isinstance(d, int) for s in d.symbols()})
            env = {s: 2 for s in syms}
            Lowering(self.module, env, self.threads, self.weights).lower(graph)  # raises on unsupported ops
            self._release_packed_sources()
            return None
        key = (*sorted(env.items()), ("threads", get_num_threads()))  # scratch is sized for the team
        bound = self.programs.get(key)
        if bound is None:
            t0 = time.perf_counter()
            lw = Lowering(self.module, env, self.threads, self.weights)
            program = lw.lower(graph)
            self._release_packed_sources()
            t1 = time.perf_counter()
            kernels = compile_kernels(list(lw.kernels.values()), directory=self.cache_dir)
            t2 = time.perf_counter()
            bound = bind(program, kernels, checked=os.environ.get("OPTLLM_CPU_CHECKED", "") not in ("", "0"))
            bound.kernel_names = sorted(lw.kernels)
            self.build_seconds = {"lower": t1 - t0, "compile": t2 - t1, "bind": time.perf_counter() - t2}
            self.programs[key] = bound
            _trim_heap()
        return bound

    def _release_packed_sources(self) -> None:
        """Weights are held once: a constant that the programs read only re-laid out (MKL
        panels, a transposed copy for BLAS) keeps no resident copy beside that layout
        (``ConstantTable.release``). One this process computed (a folded constant) moves to a
        mapped file; the pages of a mapped one (a loaded build, a spilled fold), read while
        packing, are dropped again; the user's parameters are left alone. All stay readable
        by ``save``, ``export_onnx`` and the reference target."""
        consts = self.module.constants
        for key in list(self.weights):
            src = key.partition("@")[0]
            if src != key and src not in self.weights and src in consts and src not in self._released:
                self._released.add(src)  # packed once per model: later shapes reuse the panels
                self.spilled_bytes += consts.release(src)

    def held_memory(self) -> dict[str, int]:
        """What running this executable keeps in memory: ``weights_bytes``, every distinct weight
        array its programs read (packed panels and re-laid out copies included, each once; the
        weights of ``prepare(None)`` when no shape is prepared yet), and ``arena_bytes``, the
        arenas of the prepared shapes (one per shape)."""
        arrays: dict[int, int] = {id(a): a.nbytes for a in self.weights.values()}
        arena = 0
        for bound in self.programs.values():
            arena += bound.memory.arena_bytes
            for st in bound.program.storages:
                if st.kind == "weight" and st.array is not None:
                    arrays[id(st.array)] = st.array.nbytes
        weights = sum(arrays.values())
        return {"weights_bytes": weights, "arena_bytes": arena, "total_bytes": weights + arena}

    def run(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        arrays = [np.asarray(x) for x in inputs]
        env = bind_symbols(self.module.main, arrays)
        with self._lock:  # one arena and one set of slots per shape: calls take turns
            bound = self.prepare(env)
            assert bound is not None
            return bound.run(arrays)

    def memory(self, env: dict[str, int]) -> dict[str, Any]:
        with self._lock:
            bound = self.prepare(env)
        assert bound is not None
        return bound.memory.as_dict()


def _trim_heap() -> None:
    """Give the heap pages freed while building (LLVM's compile-time memory, spilled weights)
    back to the system: glibc keeps freed memory in its arenas, so without this a built model
    stays resident at the high-water mark of its build (measured on GPT-2: 69 MB). Not glibc:
    nothing to do."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()  # the importer's garbage (an exported program's cycles) first
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        return
    if trim is not None:
        trim(0)
