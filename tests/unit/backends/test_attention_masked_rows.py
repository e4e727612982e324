"""``nn.attention`` on a fully masked query row (a left-padded batch's padding rows).

Semantics (the op's docstring): ``masked_rows = "zero"`` (default) gives 0 there, as torch
2.13's ``scaled_dot_product_attention`` does for an all-false bool row and an all -inf float row
(math and default backends); ``"nan"`` keeps the eager chain's ``softmax`` 0/0, which the
``attention`` fusion sets so fusing never changes a result. A finite ``finfo.min`` additive mask
(HF eager) never masks a row fully: a uniform average of v either way. Checked here on the
reference, the cpu f32 fused kernel and the cpu loop-nest path (f64, f16), against torch.
"""

from __future__ import annotations

import numpy as np
import pytest

from optllm.backends.cpu import CpuExecutable
from optllm.backends.reference import run_module
from optllm.ir import Module, parse_module, print_module, verify_module
from optllm.passes.base import PassContext
from optllm.passes.fuse import Fuse

RNG = np.random.default_rng(29)
L, S, E = 3, 5, 4
DTYPES = {"f32": (np.float32, 1e-5), "f64": (np.float64, 1e-12), "f16": (np.float16, 2e-2)}


def _module(dtype: str, mask_t: str | None, masked_rows: str | None = None, causal: bool = False) -> Module:
    attrs = [f'masked_rows = "{masked_rows}"'] if masked_rows else []
    attrs += ["causal = true"] if causal else []
    attr_text = f" {{{', '.join(attrs)}}}" if attrs else ""
    mask_sig = f", %m: {mask_t}" if mask_t else ""
    mask_arg = ", %m" if mask_t else ""
    text = f"""module @m {{
  func @forward(%q: {dtype}[2,2,{L},{E}], %k: {dtype}[2,1,{S},{E}], %v: {dtype}[2,1,{S},{E}]{mask_sig}) -> ({dtype}[2,2,{L},{E}]) {{
    %0 = nn.attention %q, %k, %v{mask_arg}{attr_text} : {dtype}[2,2,{L},{E}]
    return %0
  }}
}}
"""
    return parse_module(text)


def _qkv(dtype: str) -> list[np.ndarray]:
    np_t = DTYPES[dtype][0]
    return [RNG.standard_normal(s).astype(np_t) for s in ((2, 2, L, E), (2, 1, S, E), (2, 1, S, E))]


def _bool_mask() -> np.ndarray:
    """[2,1,L,S]: batch 0 row 1 masks every key; the other rows keep some keys."""
    m = RNG.random((2, 1, L, S)) > 0.4
    m[..., 0] = True
    m[0, 0, 1, :] = False
    return m


def _torch_sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, *, math: bool) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    t = [torch.from_numpy(np.ascontiguousarray(x.astype(np.float64))) for x in (q, k, v)]
    tm = None if mask is None else torch.from_numpy(mask if mask.dtype == np.bool_ else mask.astype(np.float64))
    if math:
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(*t, attn_mask=tm, enable_gqa=True).numpy()
    return F.scaled_dot_product_attention(*t, attn_mask=tm, enable_gqa=True).numpy()


def _targets(m: Module, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    with np.errstate(invalid="ignore"):
        ref = run_module(m, inputs)[0]
    return {"reference": ref, "cpu": CpuExecutable(m).run(inputs)[0]}


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("kind", ["bool", "additive-inf"])
def test_fully_masked_row_is_zero_like_torch_sdpa(dtype: str, kind: str) -> None:
    q, k, v = _qkv(dtype)
    mask: np.ndarray = _bool_mask()
    if kind == "additive-inf":
        mask = np.where(mask, 0.0, -np.inf).astype(DTYPES[dtype][0])
    mask_t = f"bool[2,1,{L},{S}]" if kind == "bool" else f"{dtype}[2,1,{L},{S}]"
    got = _targets(_module(dtype, mask_t), [q, k, v, mask])
    tol = DTYPES[dtype][1]
    for backend_math in (True, False):
        want = _torch_sdpa(q, k, v, mask, math=backend_math)
        assert (want[0, :, 1] == 0).all()  # what torch 2.13 computes, the fact this test pins
        for target, y in got.items():
            assert np.isfinite(y).all(), target
            assert (y[0, :, 1] == 0).all(), target
            np.testing.assert_allclose(y.astype(np.float64), want, rtol=tol, atol=tol, err_msg=target)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_masked_rows_nan_keeps_softmax_nan(dtype: str) -> None:
    q, k, v = _qkv(dtype)
    mask = _bool_mask()
    got = _targets(_module(dtype, f"bool[2,1,{L},{S}]", masked_rows="nan"), [q, k, v, mask])
    for target, y in got.items():
        assert np.isnan(y[0, :, 1]).all(), target
        keep = np.ones(y.shape, bool)
        keep[0, :, 1] = False
        assert np.isfinite(y[keep]).all(), target
    np.testing.assert_allclose(got["cpu"].astype(np.float64), got["reference"].astype(np.float64),
                               rtol=DTYPES[dtype][1], atol=DTYPES[dtype][1])


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_finfo_min_mask_is_a_uniform_average_like_hf_eager(dtype: str) -> None:
    np_t = DTYPES[dtype][0]
    q, k, v = _qkv(dtype)
    mask = np.where(_bool_mask(), 0.0, np.finfo(np_t).min).astype(np_t)
    for masked_rows in ("zero", "nan"):
        got = _targets(_module(dtype, f"{dtype}[2,1,{L},{S}]", masked_rows=masked_rows), [q, k, v, mask])
        uniform = v[0, 0].astype(np.float64).mean(axis=0)
        for target, y in got.items():
            assert np.isfinite(y).all(), target
            for h in range(2):
                np.testing.assert_allclose(y[0, h, 1].astype(np.float64), uniform, rtol=1e-5, atol=1e-6,
                                           err_msg=target)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_nan_input_stays_nan_under_zero(dtype: str) -> None:
    q, k, v = _qkv(dtype)
    q[1, 0, 2, 0] = np.nan
    got = _targets(_module(dtype, None), [q, k, v])
    for target, y in got.items():
        assert np.isnan(y[1, 0, 2]).all(), target
        assert np.isfinite(y[0]).all(), target


def test_no_mask_and_causal_unchanged_by_setting() -> None:
    q, k, v = _qkv("f32")
    for causal in (False, True):
        a = _targets(_module("f32", None, causal=causal), [q, k, v])
        b = _targets(_module("f32", None, masked_rows="nan", causal=causal), [q, k, v])
        for target in a:
            np.testing.assert_array_equal(a[target], b[target])


def test_verifier_refuses_an_unknown_setting() -> None:
    m = _module("f32", None, masked_rows="one")
    with pytest.raises(Exception, match="masked_rows must be one of zero, nan"):
        verify_module(m)


# -- the attention fusion keeps the eager chain's result on a fully masked row ------------------------

EAGER = """module @eager {{
  func @forward(%q: f32[2,2,{L},{E}], %k: f32[2,2,{S},{E}], %v: f32[2,2,{S},{E}], %m: {mask_t}) -> (f32[2,2,{L},{E}]) {{
    %0 = core.permute %k {{perm = [0, 1, 3, 2]}} : f32[2,2,{E},{S}]
    %1 = core.matmul %q, %0 : f32[2,2,{L},{S}]
    %2 = core.constant {{value = dense<f32[]: 0.5>}} : f32[]
    %3 = core.mul %1, %2 : f32[2,2,{L},{S}]
{masking}
    %5 = nn.softmax %4 {{axis = 3}} : f32[2,2,{L},{S}]
    %6 = core.matmul %5, %v : f32[2,2,{L},{E}]
    return %6
  }}
}}
"""
MASKINGS = {
    "where-inf": (f"bool[2,1,{L},{S}]",
                  "    %n = core.constant {value = dense<f32[]: -inf>} : f32[]\n"
                  f"    %4 = core.where %m, %3, %n : f32[2,2,{L},{S}]"),
    "additive": (f"f32[2,1,{L},{S}]", f"    %4 = core.add %3, %m : f32[2,2,{L},{S}]"),
}


@pytest.mark.parametrize("masking,fill", [("where-inf", "inf"), ("additive", "inf"), ("additive", "finfo.min")])
def test_fusion_keeps_eager_semantics(masking: str, fill: str) -> None:
    mask_t, text = MASKINGS[masking]
    m = parse_module(EAGER.format(L=L, S=S, E=E, mask_t=mask_t, masking=text))
    q, k, v = (RNG.standard_normal(s).astype(np.float32) for s in ((2, 2, L, E), (2, 2, S, E), (2, 2, S, E)))
    mask: np.ndarray = _bool_mask()
    if masking == "additive":
        neg = -np.inf if fill == "inf" else np.finfo(np.float32).min
        mask = np.where(mask, 0.0, neg).astype(np.float32)
    inputs = [q, k, v, mask]
    with np.errstate(invalid="ignore"):
        before = run_module(m, inputs)[0]
    assert Fuse().run(m, PassContext()).changed
    assert 'nn.attention' in print_module(m) and 'masked_rows = "nan"' in print_module(m)
    after = _targets(m, inputs)
    fully_masked_nan = fill == "inf"
    assert np.isnan(before[0, :, 1]).all() == fully_masked_nan
    for target, y in after.items():
        np.testing.assert_allclose(y, before, rtol=1e-5, atol=1e-6, err_msg=target)  # NaN where before is NaN
