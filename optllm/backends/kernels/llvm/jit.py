"""JIT-compile KIR kernels to native code: verify, print, O3, MCJIT; cached in process and on disk.

    lib = KernelLibrary()                      # or compile_kernels([...]) -> {name: CompiledKernel}
    fns = lib.compile([kernel])
    slots = pack_slots(kernel, out=y, x=x, n=x.size)
    fns[kernel.name](slots)                    # releases the GIL for the call

The cache key is the SHA-256 of every kernel's KIR text, ``KIR_VERSION``, the llvmlite and LLVM
versions, the source of this package (any change to the printer or the math library invalidates
old code) and the host CPU name and features. A hit in
process reuses the loaded code; a hit on disk (``$OPTLLM_CACHE_DIR`` or
``~/.cache/optllm/kernels``, ``<key>.o``) skips the optimiser and LLVM's code generation: MCJIT
loads the stored object through its object cache. Files are written atomically (temp + rename).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optllm.backends.kernels import kir
from optllm.backends.kernels.kir import Kernel, KIRError
from optllm.backends.kernels.verify import verify_kernel

log = logging.getLogger(__name__)

_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@dataclass
class CacheStats:
    """Counters for the compile caches (module-level: :data:`cache_stats`)."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    optimizer_runs: int = 0

    def reset(self) -> None:
        self.memory_hits = self.disk_hits = self.misses = self.optimizer_runs = 0


cache_stats = CacheStats()
_memory: dict[str, dict[str, CompiledKernel]] = {}
_lock = threading.Lock()


@dataclass(eq=False)
class CompiledKernel:
    """A callable native kernel; ``__call__(slots)`` takes a ctypes int64 array or its address."""

    name: str
    address: int
    kernel: Kernel
    _engine: Any = field(repr=False, default=None)  # keeps the code alive
    _fn: Any = field(repr=False, default=None)

    def __post_init__(self) -> None:
        self._fn = _CFUNC(self.address)

    def __call__(self, slots: ctypes.Array | int) -> None:
        """Run on a slot array (or its address: the cheapest call, ~2 us from Python here)."""
        self._fn(slots if isinstance(slots, int) else ctypes.addressof(slots))

    @property
    def cfunc(self) -> Any:
        """The ctypes function (``void(void*)``): call it with a slot array's address."""
        return self._fn

    def run(self, **values: Any) -> None:
        """Pack ``values`` (see :func:`pack_slots`) and run: convenient, not for hot loops."""
        self(pack_slots(self.kernel, **values))


def pack_slots(kernel: Kernel, **values: Any) -> ctypes.Array:
    """The slot array for ``kernel``: numpy arrays for buffers (their data address), Python or
    numpy numbers for scalars (floats as float64 bit patterns). Every parameter is required."""
    slots = (ctypes.c_int64 * max(1, len(kernel.params)))()
    for i, p in enumerate(kernel.params):
        if p.name not in values:
            raise KIRError(f"kernel {kernel.name}: no value for parameter {p.name}")
        value = values[p.name]
        if p.kind == "buffer":
            if isinstance(value, np.ndarray):
                if value.dtype != p.ctype.to_numpy():
                    raise KIRError(f"kernel {kernel.name}: buffer {p.name} is {p.ctype}, got a {value.dtype} array")
                value = value.ctypes.data
            slots[i] = int(value)
        elif p.ctype.is_float:
            slots[i] = int(np.array(float(value), np.float64).view(np.int64))
        else:
            slots[i] = int(value)
    return slots


@functools.cache
def _host() -> tuple[str, str]:
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


@functools.cache
def _codegen_digest() -> str:
    """A hash of this package's sources: the code generator's version."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def cache_key(kernels: Sequence[Kernel]) -> str:
    import llvmlite
    import llvmlite.binding as llvm

    cpu, features = _host()
    h = hashlib.sha256()
    h.update(f"kir{kir.KIR_VERSION} codegen-{_codegen_digest()} llvmlite{llvmlite.__version__} "
             f"llvm{llvm.llvm_version_info} {cpu} {features}\n".encode())
    for k in kernels:
        h.update(k.text().encode() + b"\n\0")
    return h.hexdigest()


def cache_dir() -> Path:
    env = os.environ.get("OPTLLM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "optllm" / "kernels"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class KernelLibrary:
    """Compiles groups of kernels; ``disk=False`` bypasses the on-disk cache, ``directory``
    replaces its default location (a build directory keeps its own compiled kernels)."""

    def __init__(self, disk: bool = True, directory: Path | None = None):
        self.disk = disk
        self.directory = directory

    def _path(self, key: str) -> Path:
        return (self.directory or cache_dir()) / f"{key}.o"

    def compile(self, kernels: Sequence[Kernel]) -> dict[str, CompiledKernel]:
        key = cache_key(kernels)
        with _lock:
            hit = _memory.get(key)
            if hit is not None:
                cache_stats.memory_hits += 1
                if self.disk and hit:  # loaded in this process: still make sure this cache holds it
                    _store_object(self._path(key), next(iter(hit.values()))._engine[2].get("obj"), missing_only=True)
                return dict(hit)
            for k in kernels:
                verify_kernel(k)
            compiled = self._build(kernels, key)
            _memory[key] = compiled
            return dict(compiled)

    def _build(self, kernels: Sequence[Kernel], key: str) -> dict[str, CompiledKernel]:
        import llvmlite.binding as llvm

        from optllm.backends.kernels.llvm.codegen import emit_module
        from optllm.backends.kernels.llvm.runtime import load_runtime

        load_runtime()
        tm = _target_machine()
        module = llvm.parse_assembly(emit_module(kernels, _vector_width()))
        module.triple = tm.triple
        module.data_layout = str(tm.target_data)
        module.verify()
        path = self._path(key)
        cached = _read(path) if self.disk else None
        if cached is None:
            cache_stats.misses += 1
            _optimize(module, tm)
        else:
            cache_stats.disk_hits += 1
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target_machine())
        state: dict[str, bytes] = {}

        def notify(_mod: Any, data: bytes) -> None:
            state["obj"] = data

        def getbuffer(_mod: Any) -> bytes | None:
            return cached

        engine.set_object_cache(notify, getbuffer)
        engine.add_module(module)
        engine.finalize_object()
        if cached is not None:
            state.setdefault("obj", cached)
        elif self.disk:
            _store_object(path, state.get("obj"))
        out = {}
        for k in kernels:
            addr = engine.get_function_address(k.name)
            if not addr:
                raise KIRError(f"kernel {k.name}: JIT produced no code")
            out[k.name] = CompiledKernel(k.name, addr, k, _engine=(engine, module, state))
        return out


def _store_object(path: Path, obj: bytes | None, missing_only: bool = False) -> None:
    """Write compiled object code to the disk cache (atomically); a failure only warns."""
    if obj is None or (missing_only and path.exists()):
        return
    try:
        _write_atomic(path, obj)
    except OSError as err:
        log.warning("kernel cache not written (%s): %s", path, err)


def compile_kernels(kernels: Sequence[Kernel], disk: bool = True,
                    directory: Path | None = None) -> dict[str, CompiledKernel]:
    """Verify, print, optimise and load ``kernels`` (one LLVM module); ``{name: CompiledKernel}``.
    ``directory``: the on-disk cache to use instead of ``cache_dir()``."""
    return KernelLibrary(disk=disk, directory=directory).compile(kernels)


def clear_memory_cache() -> None:
    """Forget the in-process cache (tests use it to exercise the disk cache)."""
    with _lock:
        _memory.clear()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _vector_width() -> int | None:
    """512 on AVX-512 hosts (see ``emit_module``), else LLVM's choice."""
    return 512 if "+avx512f" in _host()[1].split(",") else None


def _target_machine() -> Any:
    """A fresh host target machine (an MCJIT engine takes ownership of the one it is given)."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    cpu, features = _host()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, opt=3, reloc="default", codemodel="jitdefault")


def _optimize(module: Any, tm: Any) -> None:
    import llvmlite.binding as llvm

    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pm = pb.getModulePassManager()
    pm.run(module, pb)
    cache_stats.optimizer_runs += 1


def optimized_ir(kernels: Sequence[Kernel]) -> str:
    """The O3-optimised LLVM IR of ``kernels`` for the host (for inspection and tests)."""
    import llvmlite.binding as llvm

    from optllm.backends.kernels.llvm.codegen import emit_module

    for k in kernels:
        verify_kernel(k)
    tm = _target_machine()
    module = llvm.parse_assembly(emit_module(kernels, _vector_width()))
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    _optimize(module, tm)
    return str(module)
