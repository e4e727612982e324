"""canonicalize: every identity fires where it should and is bit-exact in IEEE fp32 —
including on -0.0, infinities, NaN and subnormals."""

from __future__ import annotations

import numpy as np
import pytest

from optllm.backends.reference import run_module
from optllm.ir import parse_module, print_module
from optllm.passes import run_pipeline
from optllm.passes.canonicalize import PATTERNS, register_canonicalization, splat_value

SPECIAL = np.array([-0.0, 0.0, 1.5, -2.0, np.inf, -np.inf, np.nan, 1e-45], dtype=np.float32)


def _module(body: str, out_type: str = "f32[8]", x_type: str = "f32[8]") -> str:
    return (f"module @m {{\n  func @forward(%x: {x_type}) -> ({out_type}) {{\n"
            + "".join(f"    {line}\n" for line in body.strip().splitlines()) + "  }\n}\n")


# (body, ops left after canonicalize)
CASES = {
    "mul-one": ("%0 = core.constant {value = dense<f32[]: 1.0>} : f32[]\n%1 = core.mul %x, %0 : f32[8]\nreturn %1", 0),
    "mul-one-lhs": ("%0 = core.full {shape = [8], value = 1.0, dtype = f32} : f32[8]\n"
                    "%1 = core.mul %0, %x : f32[8]\nreturn %1", 0),
    "div-one": ("%0 = core.constant {value = dense<f32[]: 1.0>} : f32[]\n%1 = core.div %x, %0 : f32[8]\nreturn %1", 0),
    "sub-zero": ("%0 = core.constant {value = dense<f32[]: 0.0>} : f32[]\n%1 = core.sub %x, %0 : f32[8]\nreturn %1", 0),
    "add-neg-zero": ("%0 = core.constant {value = dense<f32[]: -0.0>} : f32[]\n"
                     "%1 = core.add %0, %x : f32[8]\nreturn %1", 0),
    "neg-neg": ("%0 = core.neg %x : f32[8]\n%1 = core.neg %0 : f32[8]\nreturn %1", 0),
    "cast-same": ("%0 = core.cast %x {dtype = f32} : f32[8]\nreturn %0", 0),
    "reshape-same": ("%0 = core.reshape %x {shape = [8]} : f32[8]\nreturn %0", 0),
    "reshape-reshape": ("%0 = core.reshape %x {shape = [2,4]} : f32[2,4]\n"
                        "%1 = core.reshape %0 {shape = [4,2]} : f32[4,2]\n"
                        "%2 = core.reshape %1 {shape = [8]} : f32[8]\nreturn %2", 0),
    "expand-same": ("%0 = core.expand %x {shape = [8]} : f32[8]\nreturn %0", 0),
    "slice-full": ("%0 = core.slice %x {axis = 0, start = 0, end = 8} : f32[8]\nreturn %0", 0),
    "permute-identity": ("%0 = core.reshape %x {shape = [2,4]} : f32[2,4]\n"
                         "%1 = core.permute %0 {perm = [0, 1]} : f32[2,4]\n"
                         "%2 = core.reshape %1 {shape = [8]} : f32[8]\nreturn %2", 0),
    "permute-permute": ("%0 = core.reshape %x {shape = [2,2,2]} : f32[2,2,2]\n"
                        "%1 = core.permute %0 {perm = [1, 2, 0]} : f32[2,2,2]\n"
                        "%2 = core.permute %1 {perm = [2, 0, 1]} : f32[2,2,2]\n"
                        "%3 = core.reshape %2 {shape = [8]} : f32[8]\nreturn %3", 0),
    "and-true": ("%0 = core.eq %x, %x : bool[8]\n%1 = core.full {shape = [], value = 1.0, dtype = bool} : bool[]\n"
                 "%2 = core.and %1, %0 : bool[8]\n%3 = core.cast %2 {dtype = f32} : f32[8]\n"
                 "%4 = core.mul %x, %3 : f32[8]\nreturn %4", 3),
    "or-false": ("%0 = core.eq %x, %x : bool[8]\n%1 = core.constant {value = dense<bool[]: false>} : bool[]\n"
                 "%2 = core.or %0, %1 : bool[8]\n%3 = core.cast %2 {dtype = f32} : f32[8]\n"
                 "%4 = core.mul %x, %3 : f32[8]\nreturn %4", 3),
    "ge-arange-nonnegative": ("%0 = core.arange {end = 8} : i64[8]\n%1 = core.constant {value = dense<i64[]: 0>} : i64[]\n"
                              "%2 = core.ge %0, %1 : bool[8]\n%3 = core.cast %2 {dtype = f32} : f32[8]\n"
                              "%4 = core.mul %x, %3 : f32[8]\nreturn %4", 3),
    "index-iota": ("%0 = core.reshape %x {shape = [2,4]} : f32[2,4]\n%1 = core.arange {end = 2} : i64[2]\n"
                   "%2 = core.reshape %1 {shape = [2,1]} : i64[2,1]\n%3 = core.arange {end = 4} : i64[4]\n"
                   "%4 = core.index %0, %2, %3 {axes = [0, 1]} : f32[2,4]\n"
                   "%5 = core.reshape %4 {shape = [8]} : f32[8]\nreturn %5", 0),
    "gather-scalar-split": ("%0 = core.reshape %x {shape = [1,8]} : f32[1,8]\n"
                            "%1 = core.constant {value = dense<i64[]: 0>} : i64[]\n"
                            "%2 = core.gather %0, %1 {axis = 0} : f32[8]\nreturn %2", 0),
    "gather-flat-iota": ("%9 = core.reshape %x {shape = [2, 4]} : f32[2,4]\n%10 = core.neg %9 : f32[2,4]\n"
                         "%0 = core.reshape %10 {shape = [8, 1]} : f32[8,1]\n%1 = core.arange {end = 2} : i64[2]\n"
                         "%2 = core.reshape %1 {shape = [2, 1]} : i64[2,1]\n"
                         "%3 = core.constant {value = dense<i64[]: 4>} : i64[]\n%4 = core.mul %2, %3 : i64[2,1]\n"
                         "%5 = core.arange {end = 4} : i64[4]\n%6 = core.add %4, %5 : i64[2,4]\n"
                         "%7 = core.gather %0, %6 {axis = 0} : f32[2,4,1]\n"
                         "%8 = core.reshape %7 {shape = [8]} : f32[8]\nreturn %8", 3),  # reshape, neg, reshape
}

# Identities that look right but are not exact (or not shape-preserving): nothing may change.
KEPT = {
    "add-pos-zero": "%0 = core.constant {value = dense<f32[]: 0.0>} : f32[]\n%1 = core.add %x, %0 : f32[8]\nreturn %1",
    "sub-neg-zero": "%0 = core.constant {value = dense<f32[]: -0.0>} : f32[]\n%1 = core.sub %x, %0 : f32[8]\nreturn %1",
    "mul-zero": "%0 = core.constant {value = dense<f32[]: 0.0>} : f32[]\n%1 = core.mul %x, %0 : f32[8]\nreturn %1",
    "one-div": "%0 = core.constant {value = dense<f32[]: 1.0>} : f32[]\n%1 = core.div %0, %x : f32[8]\nreturn %1",
    "mul-not-splat": ("%0 = core.constant {value = dense<f32[8]: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]>} : f32[8]\n"
                      "%1 = core.mul %x, %0 : f32[8]\nreturn %1"),
    "slice-strided": "%0 = core.slice %x {axis = 0, start = 0, end = 8, step = 2} : f32[4]\nreturn %0",
}


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_identity_fires_and_is_bit_exact(name: str) -> None:
    body, left = CASES[name]
    m = parse_module(_module(body))
    want = run_module(m, [SPECIAL])[0]
    report = run_pipeline(m, "canonicalize")
    assert len(m.main) == left, print_module(m)
    assert report.passes[0].statistics["num-rewrites"] >= 1
    np.testing.assert_array_equal(_bits(run_module(m, [SPECIAL])[0]), _bits(want))


@pytest.mark.parametrize("name", sorted(KEPT))
def test_inexact_lookalikes_are_left_alone(name: str) -> None:
    text = _module(KEPT[name], out_type="f32[4]" if "strided" in name else "f32[8]")
    m = parse_module(text)
    report = run_pipeline(m, "canonicalize")
    assert print_module(m) == print_module(parse_module(text))
    assert not report.changed


def test_add_pos_zero_really_would_be_wrong() -> None:
    """The reason add(x, +0.0) is not in the table: -0.0 + 0.0 is +0.0."""
    m = parse_module(_module(KEPT["add-pos-zero"]))
    out = run_module(m, [SPECIAL])[0]
    assert np.signbit(SPECIAL[0]) and not np.signbit(out[0])


def test_broadcasting_identity_is_kept() -> None:
    text = _module("%0 = core.full {shape = [3,8], value = 1.0, dtype = f32} : f32[3,8]\n"
                   "%1 = core.mul %x, %0 : f32[3,8]\nreturn %1", out_type="f32[3,8]")
    m = parse_module(text)
    assert not run_pipeline(m, "canonicalize").changed


def test_splat_values_come_from_constants_and_full() -> None:
    m = parse_module(_module(
        "%0 = core.constant {value = dense<f32[2]: splat -0.0>} : f32[2]\n"
        "%1 = core.full {shape = [2], value = 1.0000000001, dtype = f32} : f32[2]\n"
        "%2 = core.constant {value = dense<f32[2]: [1.0, 2.0]>} : f32[2]\n"
        "%3 = core.constant {value = dense<i64[]: 7>} : i64[]\n"
        "return %x"))
    c0, c1, c2, c3 = (op.result for op in m.main)
    v0 = splat_value(c0)
    assert v0 == 0.0 and np.signbit(v0)
    assert splat_value(c1) == 1.0  # the value as stored in f32
    assert splat_value(c2) is None and splat_value(c3) == 7 and splat_value(m.main.inputs[0]) is None


def test_every_pattern_has_a_unique_kebab_name_and_a_test() -> None:
    names = [p.name for p in PATTERNS]
    assert len(names) == len(set(names))
    assert set(names) <= set(CASES) | {"mul-one"}
    with pytest.raises(ValueError, match="already exists"):
        register_canonicalization(PATTERNS[0])


def test_works_on_symbolic_shapes_and_in_regions() -> None:
    m = parse_module("""module @m {
  func @forward(%x: f32[B,S,8]) -> (f32[B,S,8]) {
    %0 = fused.region %x : f32[B,S,8] {
      ^(%a: f32[B,S,8]):
      %0 = core.reshape %a {shape = [B*S,8]} : f32[B*S,8]
      %1 = core.reshape %0 {shape = [B,S,8]} : f32[B,S,8]
      %2 = core.neg %1 : f32[B,S,8]
      %3 = core.neg %2 : f32[B,S,8]
      return %3
    }
    return %0
  }
}
""")
    run_pipeline(m, "canonicalize")
    body = m.main.first.regions[0]  # type: ignore[union-attr]
    assert len(body) == 0 and body.outputs[0] is body.inputs[0]


def test_commutative_identities_try_both_operands() -> None:
    # mul(1 : f32[], 1 : f32[8]): keeping the f32[] one would change the type; the other is exact
    m = parse_module(_module("%0 = core.constant {value = dense<f32[]: 1.0>} : f32[]\n"
                             "%1 = core.full {shape = [8], value = 1.0, dtype = f32} : f32[8]\n"
                             "%2 = core.mul %0, %1 : f32[8]\nreturn %2"))
    run_pipeline(m, "canonicalize")
    assert [op.name for op in m.main] == ["core.full"]
