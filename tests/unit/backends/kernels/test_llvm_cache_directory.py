"""``compile_kernels(directory=...)``: a build directory gets the object code of its kernels,
even when this process already holds them compiled (an in-memory hit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optllm.backends.kernels.kir import F32, I64, For, Kernel, Load, Param, Store, c, v
from optllm.backends.kernels.llvm.jit import cache_key, compile_kernels, pack_slots


def test_a_memory_hit_still_fills_the_directory(tmp_path: Path) -> None:
    k = Kernel("k_cache_dir", (Param("out", "buffer", F32), Param("x", "buffer", F32), Param("n", "scalar", I64)),
               (For("j", c(0), v("n"), (Store("out", v("j"), Load("x", v("j"), F32) * 3.0),)),))
    first = compile_kernels([k], directory=tmp_path / "a")
    again = compile_kernels([k], directory=tmp_path / "b")  # the in-process cache answers
    assert again[k.name].address == first[k.name].address
    for d in ("a", "b"):
        assert (tmp_path / d / f"{cache_key([k])}.o").is_file()
    x = np.arange(5, dtype=np.float32)
    out = np.empty_like(x)
    again[k.name](pack_slots(k, out=out, x=x, n=5))
    np.testing.assert_array_equal(out, 3 * x)
