"""Symbols denote sizes >= 1: min/max against constants simplify, and the executor rejects
empty dynamic dims."""

from __future__ import annotations

import numpy as np
import pytest

from optllm.backends.reference import InputError, run_module
from optllm.ir import parse_module


def test_min_max_use_that_symbols_are_sizes() -> None:
    from optllm.ir.symbolic import lower_bound, parse_dim, sym_max, sym_min

    s, b = parse_dim("S"), parse_dim("B")
    assert sym_min(1, s) == 1 and sym_max(1, s) == s
    assert sym_min(0, b * s) == 0 and sym_min(3, s + 2) == 3
    assert str(sym_min(2, s)) == "min(2,S)"  # S may be 1
    assert str(sym_min(1, s - 1)) == "min(1,S-1)"  # S-1 may be 0
    assert lower_bound(2 * s + b + 1) == 4 and lower_bound(s - 1) is None


def test_executor_rejects_an_empty_dynamic_dim() -> None:
    m = parse_module("""module @m {
  func @forward(%x: f32[B,4]) -> (f32[B,4]) {
    %0 = core.neg %x : f32[B,4]
    return %0
  }
}
""")
    with pytest.raises(InputError, match="dynamic dim B must be at least 1, got 0"):
        run_module(m, [np.zeros((0, 4), np.float32)])
