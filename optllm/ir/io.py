"""Reading and writing modules as ``NAME.oir`` text plus ``NAME.safetensors`` weights.

Writes go to a temporary file in the destination folder and are renamed only on success, so
a failure never leaves a half-written output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from optllm.ir.diagnostics import IRError
from optllm.ir.graph import Module
from optllm.ir.parser import parse_module
from optllm.ir.printer import print_module
from optllm.ir.types import DType, TensorType


class WeightsError(IRError):
    """A weights file that is missing, unreadable or lacks a constant the IR names."""


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
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
    for key in keys:
        sl = handle.get_slice(key)
        dtype = DType.from_numpy(_ST_DTYPES.get(sl.get_dtype(), "float32"))
        ttype = TensorType(tuple(int(d) for d in sl.get_shape()), dtype)
        module.constants.add_lazy(key, ttype, _tensor_loader(handle, key))
    module.constants.source = str(path)


def _tensor_loader(handle: Any, key: str) -> Callable[[], np.ndarray]:
    return lambda: handle.get_tensor(key)


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64", "I32": "int32",
              "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


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
    if len(module.constants):
        weights = path.with_suffix(".safetensors")
        blob = save({name: arr for name, arr in module.constants.items()})
        atomic_write(weights, blob)
        module.weights_file = weights.name
    else:
        module.weights_file = None
    atomic_write(path, print_module(module))
    return path
