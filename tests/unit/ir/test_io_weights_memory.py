"""Weights in memory once: an import shares the user's parameters, a load memory-maps the
safetensors file, a backend's re-laid-out weight replaces the heap copy of its source, and
hashing a constant copies nothing."""

from __future__ import annotations

import json
import mmap
import struct
import textwrap
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from optllm.backends.reference import run_module
from optllm.ir import Module, parse_module
from optllm.ir.graph import ConstantTable
from optllm.ir.io import WeightsError, load_module, save_module

RNG = np.random.default_rng(0)


def _base(arr: np.ndarray) -> object:
    base: object = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def _linear_module(n: int = 512, k: int = 384) -> Module:
    text = textwrap.dedent(f"""\
        module @m {{
          func @forward(%x: f32[B,{k}]) -> (f32[B,{n}], f32[{n}]) {{
            %w = core.weight {{name = "w"}} : f32[{n},{k}]
            %b = core.weight {{name = "b"}} : f32[{n}]
            %y = nn.linear %x, %w, %b {{transpose_w = true, bias = true}} : f32[B,{n}]
            return %y, %b
          }}
        }}
        """)
    m = parse_module(text)
    m.constants.add(RNG.standard_normal((n, k)).astype(np.float32), "w")
    m.constants.add(RNG.standard_normal(n).astype(np.float32), "b")
    return m


def test_load_maps_the_file_and_reads_nothing(tmp_path: Path) -> None:
    m = _linear_module()
    want = {n: np.array(a) for n, a in m.constants.items()}
    save_module(m, tmp_path / "m.oir")
    loaded = load_module(tmp_path / "m.oir")
    for name, arr in want.items():
        got = loaded.constants[name]
        np.testing.assert_array_equal(got, arr)
        assert isinstance(_base(got), mmap.mmap), name  # a view of the mapped file, not a heap copy
        assert not got.flags.writeable and not loaded.constants.owns_memory(name)
        assert got.ctypes.data % 64 == 0, name  # aligned: the cpu target uses it in place
    x = RNG.standard_normal((3, 384)).astype(np.float32)
    np.testing.assert_allclose(run_module(loaded, [x])[0], run_module(m, [x])[0], rtol=1e-6)


def test_saved_file_is_standard_safetensors(tmp_path: Path) -> None:
    """Every element type round-trips, and the safetensors library reads what we stream out."""
    from safetensors import safe_open

    m = Module("t")
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "odd": np.arange(3, dtype=np.int16),
              "b16": np.array([0.5, -2.0], ml_dtypes.bfloat16), "q4": np.array([[-8, 7]], ml_dtypes.int4),
              "f8": np.array([448.0, -0.0], ml_dtypes.float8_e4m3fn), "mask": np.array([True, False])}
    for name, arr in arrays.items():
        m.constants.add(arr, name)
    path = tmp_path / "t.safetensors"
    from optllm.ir.io import _atomic_write_with, _write_safetensors

    _atomic_write_with(path, lambda f: _write_safetensors(m, list(arrays), f))
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert (8 + n) % 64 == 0
    header = json.loads(path.read_bytes()[8:8 + n])
    assert header["__metadata__"] == {"optllm.i4": "q4", "optllm.bytes": "f8=f8e4m3fn"}
    with safe_open(str(path), framework="numpy") as f:
        np.testing.assert_array_equal(f.get_tensor("a"), arrays["a"])
        np.testing.assert_array_equal(f.get_tensor("odd"), arrays["odd"])
    (tmp_path / "t.oir").write_text('module @t weights("t.safetensors") {\n}\n')
    loaded = load_module(tmp_path / "t.oir")
    for name, arr in arrays.items():
        got = loaded.constants[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got.view(np.uint8), arr.view(np.uint8))


def test_truncated_weights_file_is_a_weights_error(tmp_path: Path) -> None:
    m = _linear_module()
    save_module(m, tmp_path / "m.oir")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[:-100])
    with pytest.raises(WeightsError, match="past the end of the file"):
        load_module(tmp_path / "m.oir")


def test_torch_parameters_are_shared_read_only() -> None:
    torch = pytest.importorskip("torch")
    from optllm.frontends.fx import tensor_to_numpy

    p = torch.nn.Parameter(torch.randn(4, 8))
    arr = tensor_to_numpy(p)
    assert arr.ctypes.data == p.data_ptr() and not arr.flags.writeable
    with torch.no_grad():
        p[0, 0] = 7.0
    assert arr[0, 0] == 7.0  # the same memory
    b16 = torch.randn(3, dtype=torch.bfloat16)
    assert tensor_to_numpy(b16).ctypes.data == b16.data_ptr()
    assert tensor_to_numpy(b16).dtype == ml_dtypes.bfloat16
    t = torch.randn(4, 8).t()  # not contiguous: its own contiguous copy
    np.testing.assert_array_equal(tensor_to_numpy(t), t.numpy())


def test_import_holds_no_copy_of_the_weights() -> None:
    torch = pytest.importorskip("torch")
    from optllm.frontends.fx import import_torch

    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8)).eval()
    imported = import_torch(model, (torch.randn(2, 16),))
    ptrs = {p.data_ptr() for p in model.parameters()}
    table = imported.module.constants
    assert len(table) == 4
    for name in table.names():
        assert table[name].ctypes.data in ptrs, name
        assert not table.owns_memory(name)


def test_spill_keeps_the_value_and_releases_the_heap_copy() -> None:
    t = ConstantTable()
    arr = RNG.standard_normal((64, 32)).astype(np.float32)
    name = t.add(arr, "w")
    assert t.owns_memory(name)
    assert t.spill(name) == arr.nbytes
    got = t[name]
    np.testing.assert_array_equal(got, arr)
    assert isinstance(_base(got), mmap.mmap) and not got.flags.writeable and not t.owns_memory(name)
    assert t.spill(name) == 0  # already mapped: nothing to release
    view = np.frombuffer(bytearray(arr.tobytes()), np.float32)  # someone else's memory
    other = t.add(view, "v")
    assert t.spill(other) == 0


def test_digest_reads_in_place() -> None:
    a = RNG.standard_normal((16, 16)).astype(np.float32)
    assert ConstantTable.digest(a) == ConstantTable.digest(a.copy())
    assert ConstantTable.digest(a) != ConstantTable.digest(a.reshape(256))  # shape is part of it
    assert ConstantTable.digest(a.T) == ConstantTable.digest(np.ascontiguousarray(a.T))
    b = a.copy()
    b[3, 3] += 1
    assert ConstantTable.digest(a) != ConstantTable.digest(b)


def test_cpu_packed_weight_replaces_its_heap_source(tmp_path: Path) -> None:
    """A weight the cpu target packs (or re-lays out) is not kept on the heap besides: the
    table entry moves to a mapped file, and the reference, saving and a reload still read it."""
    from optllm.backends.cpu import CpuExecutable
    from optllm.backends.kernels.llvm.runtime import packed_gemm

    m = _linear_module()
    exe = CpuExecutable(m)
    x = RNG.standard_normal((5, 384)).astype(np.float32)
    want = run_module(m, [x])
    got = exe.run([x])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got[1], want[1])
    relaid = [k for k in exe.weights if k.startswith("w@")]
    assert relaid and "w" not in exe.weights
    assert not m.constants.owns_memory("w") and exe.spilled_bytes == 512 * 384 * 4
    assert m.constants.owns_memory("b")  # read as it is (an aligned copy at most: 2 kB)
    held = exe.held_memory()
    assert held["weights_bytes"] == sum(a.nbytes for a in exe.weights.values())
    assert held["total_bytes"] == held["weights_bytes"] + held["arena_bytes"]
    if packed_gemm() is not None:
        assert any("@packed" in k for k in relaid)
    save_module(m, tmp_path / "m.oir")
    reloaded = load_module(tmp_path / "m.oir")
    np.testing.assert_allclose(CpuExecutable(reloaded).run([x])[0], want[0], rtol=1e-4, atol=1e-4)


def test_spill_bytes_moves_large_new_entries_to_mapped_files() -> None:
    t = ConstantTable()
    t.spill_bytes = 4096
    big = t.add(RNG.standard_normal(2048).astype(np.float32), "big")  # 8 kB, ours
    small = t.add(RNG.standard_normal(16).astype(np.float32), "small")
    assert not t.owns_memory(big) and isinstance(_base(t[big]), mmap.mmap)
    assert t.owns_memory(small)
    twin = t.add(np.array(t[big]), "twin")  # dedup still finds the mapped entry
    assert twin == big
    assert t.copy().spill_bytes == 4096


def test_torch_import_sets_the_spill_policy() -> None:
    torch = pytest.importorskip("torch")
    from optllm.frontends.fx import import_torch
    from optllm.frontends.fx_lower import SPILL_BYTES

    model = torch.nn.Linear(8, 4).eval()
    assert import_torch(model, (torch.randn(2, 8),)).module.constants.spill_bytes == SPILL_BYTES


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_release_drops_the_pages_of_a_mapped_entry(tmp_path: Path) -> None:
    m = _linear_module(n=4096, k=512)  # 8 MiB
    save_module(m, tmp_path / "m.oir")
    loaded = load_module(tmp_path / "m.oir")
    w = loaded.constants["w"]
    total = float(w.sum(dtype=np.float64))  # reads every page into this process
    before = _rss_bytes()
    released = loaded.constants.release("w")
    assert released >= w.nbytes - 2 * mmap.PAGESIZE
    assert before - _rss_bytes() >= w.nbytes * 3 // 4  # the pages left this process
    assert float(loaded.constants["w"].sum(dtype=np.float64)) == total  # read back from the file
    view = np.frombuffer(bytearray(8), np.float32)
    t = ConstantTable()
    assert t.release(t.add(view, "v")) == 0  # someone else's memory: left alone
