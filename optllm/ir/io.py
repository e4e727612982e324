"""Reading and writing modules as ``NAME.oir`` text plus ``NAME.safetensors`` weights.

Writes go to a temporary file in the destination folder and are renamed only on success, so
a failure never leaves a half-written output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from optllm.ir.diagnostics import IRError
from optllm.ir.graph import Module
from optllm.ir.parser import parse_module
from optllm.ir.printer import print_module
from optllm.ir.types import DType, TensorType


class WeightsError(IRError):
    """A weights file that is missing, unreadable or lacks a constant the IR names."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_weights(module: Module, path: Path) -> None:
    """Register every tensor of the safetensors file ``path`` lazily in ``module.constants``.

    The file is memory-mapped once, read-only: each tensor is a numpy view at its offset, so
    loading reads nothing, a weight's pages are read from the file when something touches
    them, and the system may drop them again (they are file pages, not the process's own).
    Only ``i4`` tensors (stored as ``I8``) are converted, hence copied, on first access."""
    if not path.exists():
        raise WeightsError(f"weights file '{path}' named by module @{module.name} does not exist")
    try:
        mapped, header, data_start = _map_safetensors(path)
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read weights file '{path}': {e}") from None
    meta = header.pop("__metadata__", None) or {}
    int4 = set(meta.get(_I4_KEY, "").split(",")) - {""}
    views = _parse_views(meta.get(_VIEW_KEY, ""), path)
    for key, entry in header.items():
        try:
            stored, shape, (begin, end) = entry["dtype"], tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"weights file '{path}': malformed header entry for tensor '{key}'") from None
        dtype = DType.i4 if key in int4 else views.get(key) or _ST_DTYPES.get(stored)
        if dtype is None or stored not in _ST_DTYPES:
            raise WeightsError(f"weights file '{path}': tensor '{key}' has unsupported dtype {stored}")
        np_stored = _ST_DTYPES[stored].to_numpy()
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * np.dtype(np_stored).itemsize or data_start + end > len(mapped):
            raise WeightsError(f"weights file '{path}': tensor '{key}' has {end - begin} bytes for shape "
                               f"{list(shape)} {stored}, or lies past the end of the file")
        ttype = TensorType(shape, dtype)
        module.constants.add_lazy(key, ttype, _tensor_loader(mapped, data_start + begin, np_stored, count, shape, dtype))
    module.constants.source = str(path)


def _map_safetensors(path: Path) -> tuple[Any, dict[str, Any], int]:
    """(read-only mapping of the whole file, parsed header, offset of the data section)."""
    import json
    import mmap
    import struct

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("file too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        size = os.fstat(f.fileno()).st_size
        if n > size - 8:
            raise ValueError(f"header length {n} exceeds the file size {size}")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    return mapped, header, 8 + n


def _tensor_loader(mapped: Any, offset: int, stored: Any, count: int, shape: tuple[int, ...],
                   dtype: DType) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        arr = np.frombuffer(mapped, dtype=stored, count=count, offset=offset).reshape(shape)
        if dtype in _AS_BYTES:  # stored as the raw U8 bytes
            return arr.view(dtype.to_numpy())
        return arr if np.dtype(stored) == np.dtype(dtype.to_numpy()) else arr.astype(dtype.to_numpy())

    return load


def _parse_views(text: str, path: Path) -> dict[str, DType]:
    """``name=dtype,...`` of the tensors stored as raw bytes."""
    out: dict[str, DType] = {}
    for item in filter(None, text.split(",")):
        name, _, dt = item.rpartition("=")
        try:
            out[name] = DType.parse(dt)
        except ValueError as e:
            raise WeightsError(f"weights file '{path}': metadata {_VIEW_KEY}: {e}") from None
    return out


_ST_DTYPES = {"F64": DType.f64, "F32": DType.f32, "F16": DType.f16, "BF16": DType.bf16, "I64": DType.i64,
              "I32": DType.i32, "I16": DType.i16, "I8": DType.i8, "U8": DType.u8, "U16": DType.u16,
              "U32": DType.u32, "U64": DType.u64, "BOOL": DType.bool}
# safetensors has no int4: i4 tensors are stored as I8 and listed under this metadata key.
_I4_KEY = "optllm.i4"
# nor float8 that numpy can read: their raw bytes are stored as U8, ``name=dtype`` under this key.
_VIEW_KEY = "optllm.bytes"
_AS_BYTES = frozenset({DType.f8e4m3fn, DType.f8e4m3fnuz, DType.f8e5m2, DType.f8e5m2fnuz})
_ST_NAMES = {dt: name for name, dt in _ST_DTYPES.items()}


def load_module(path: str | os.PathLike[str], text: str | None = None) -> Module:
    """Parse ``path`` (or ``text``, named ``path``) and attach its weights file, if any."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text()
        except OSError as e:
            raise IRError(f"cannot read '{path}': {e.strerror}") from None
    module = parse_module(text, str(path))
    if module.weights_file:
        load_weights(module, path.parent / module.weights_file)
    return module


def save_module(module: Module, path: str | os.PathLike[str]) -> Path:
    """Write ``path`` and, when the module has constants, ``<stem>.safetensors`` beside it.

    The weights are streamed tensor by tensor into the temporary file (never one blob of all
    of them in memory), with the data section starting on a 64-byte boundary and the tensors
    whose sizes are multiples of 64 bytes first, so that a memory-mapped load gives aligned
    arrays the cpu target uses in place."""
    path = Path(path)
    module.drop_unused_constants()
    weights = path.with_suffix(".safetensors")
    names = module.constants.names()
    # Everything is serialised before anything is written: a failure leaves no new file.
    old_weights, module.weights_file = module.weights_file, weights.name if names else None
    try:
        text = print_module(module)
    except BaseException:
        module.weights_file = old_weights
        raise
    if names:
        _atomic_write_with(weights, lambda f: _write_safetensors(module, names, f))
    atomic_write(path, text)
    return path


def _write_safetensors(module: Module, names: list[str], f: Any) -> None:
    import json
    import struct

    table = module.constants
    entries: list[tuple[str, str, DType]] = []  # (name, stored dtype, element type)
    int4: list[str] = []
    raw: list[str] = []
    for name in names:
        dt = table.type_of(name).dtype
        if dt is DType.i4:
            int4.append(name)
            stored = "I8"
        elif dt in _AS_BYTES:
            raw.append(f"{name}={dt}")
            stored = "U8"
        else:
            stored = _ST_NAMES[dt]
        entries.append((name, stored, dt))
    entries.sort(key=lambda e: table.type_of(e[0]).nbytes() % 64 != 0)  # stable: aligned sizes first
    header: dict[str, Any] = {}
    meta = {}
    if int4:
        meta[_I4_KEY] = ",".join(int4)
    if raw:
        meta[_VIEW_KEY] = ",".join(raw)
    if meta:
        header["__metadata__"] = meta
    at = 0
    for name, stored, _dt in entries:
        shape = [int(d) for d in table.type_of(name).shape]  # type: ignore[arg-type]
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(_ST_DTYPES[stored].to_numpy()).itemsize
        header[name] = {"dtype": stored, "shape": shape,
                        "data_offsets": [at, at + nbytes]}
        at += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * ((-(8 + len(blob))) % 64)  # the data section starts 64-byte aligned
    f.write(struct.pack("<Q", len(blob)) + blob)
    for name, _stored, dt in entries:
        arr = np.ascontiguousarray(table[name])
        if dt is DType.i4:
            arr = arr.astype(np.int8)
        f.write(arr.reshape(-1).view(np.uint8).data)


def _atomic_write_with(path: Path, write: Callable[[Any], None]) -> None:
    """Like ``atomic_write``, with ``write(file)`` producing the content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
