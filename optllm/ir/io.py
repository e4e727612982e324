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
    """Register every tensor of the safetensors file ``path`` lazily in ``module.constants``."""
    from safetensors import safe_open

    if not path.exists():
        raise WeightsError(f"weights file '{path}' named by module @{module.name} does not exist")
    try:
        handle = safe_open(str(path), framework="numpy")
        keys = list(handle.keys())
    except Exception as e:  # safetensors raises its own SafetensorError for corrupt headers
        raise WeightsError(f"cannot read weights file '{path}': {e}") from None
    meta = handle.metadata() or {}
    int4 = set(meta.get(_I4_KEY, "").split(",")) - {""}
    views = _parse_views(meta.get(_VIEW_KEY, ""), path)
    for key in keys:
        sl = handle.get_slice(key)
        dtype = DType.i4 if key in int4 else views.get(key) or _ST_DTYPES.get(sl.get_dtype())
        if dtype is None:
            raise WeightsError(f"weights file '{path}': tensor '{key}' has unsupported dtype {sl.get_dtype()}")
        ttype = TensorType(tuple(int(d) for d in sl.get_shape()), dtype)
        module.constants.add_lazy(key, ttype, _tensor_loader(handle, key, dtype))
    module.constants.source = str(path)


def _tensor_loader(handle: Any, key: str, dtype: DType) -> Callable[[], np.ndarray]:
    if dtype in _AS_BYTES:  # stored as the raw U8 bytes
        return lambda: handle.get_tensor(key).view(dtype.to_numpy())
    return lambda: handle.get_tensor(key).astype(dtype.to_numpy(), copy=False)


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
    """Write ``path`` and, when the module has constants, ``<stem>.safetensors`` beside it."""
    from safetensors.numpy import save

    path = Path(path)
    module.drop_unused_constants()
    weights = path.with_suffix(".safetensors")
    blob = None
    if len(module.constants):
        arrays = dict(module.constants.items())
        int4 = [n for n, a in arrays.items() if DType.from_numpy(a.dtype) is DType.i4]
        arrays.update({n: arrays[n].astype(np.int8) for n in int4})
        raw = {n: DType.from_numpy(a.dtype) for n, a in arrays.items() if DType.from_numpy(a.dtype) in _AS_BYTES}
        arrays.update({n: np.ascontiguousarray(arrays[n]).view(np.uint8) for n in raw})
        meta = {_I4_KEY: ",".join(int4)} if int4 else {}
        meta.update({_VIEW_KEY: ",".join(f"{n}={dt}" for n, dt in raw.items())} if raw else {})
        blob = save(arrays, metadata=meta or None)
    # Everything is serialised before anything is written: a failure leaves no new file.
    old_weights, module.weights_file = module.weights_file, weights.name if blob is not None else None
    try:
        text = print_module(module)
    except BaseException:
        module.weights_file = old_weights
        raise
    if blob is not None:
        atomic_write(weights, blob)
    atomic_write(path, text)
    return path
