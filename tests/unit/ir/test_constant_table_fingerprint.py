"""ConstantTable.add hashes a tensor in full only when its cheap fingerprint collides."""

from __future__ import annotations

import numpy as np

from optllm.ir import ConstantTable


def test_distinct_tensors_are_never_digested() -> None:
    t = ConstantTable()
    rng = np.random.default_rng(0)
    names = [t.add(rng.standard_normal((64, 64)).astype(np.float32), f"w{i}") for i in range(20)]
    assert len(set(names)) == 20
    assert t._digests == {}  # no full hash was needed


def test_twins_are_found_through_fingerprint_collisions() -> None:
    t = ConstantTable()
    a = np.arange(100_000, dtype=np.float32)
    b = a.copy()
    b[1] = -1.0  # differs off the sampled elements: same fingerprint, different content
    assert t.fingerprint(a) == t.fingerprint(b)
    na, nb = t.add(a, "a"), t.add(b, "b")
    assert na != nb
    assert t.add(a.copy(), "a_again") == na and t.add(b.copy(), "b_again") == nb
    t.remove(na)
    assert t.add(a.copy(), "a3") == "a3"


def test_copy_keeps_indexes_independent() -> None:
    t = ConstantTable()
    t.add(np.ones(4, np.float32), "ones")
    c = t.copy()
    c.remove("ones")
    assert t.add(np.ones(4, np.float32), "x") == "ones"
    assert c.add(np.ones(4, np.float32), "x") == "x"

