"""The PyTorch frontend on small modules: lowering, promotion, dynamic dims, locs, errors."""

from __future__ import annotations

import numpy as np
import pytest

from optllm.backends.reference import run_module
from optllm.frontends.fx import FrontendError, import_torch
from optllm.ir import parse_module, print_module, verify_module

torch = pytest.importorskip("torch")
nn = torch.nn


def _check(imported, *args, **kwargs):
    """Run the IR and the module on the same inputs; return (ours, torch's) as lists."""
    sig = imported.signature
    ours = run_module(imported.module, [np.asarray(t) for t in sig.flatten_inputs(args, kwargs)])
    verify_module(imported.module)
    text = print_module(imported.module)
    assert print_module(parse_module(text)) == text
    return ours


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, 8, bias=False)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.proj(x))
        return self.out(self.norm(h).softmax(-1)) + x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()

    def forward(self, x):
        return self.block(x)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = Net().eval()
    return model, import_torch(model, (torch.randn(2, 5, 8),))


def test_mlp_matches_torch_at_two_shapes(net):
    model, imported = net
    for shape in [(2, 5, 8), (4, 3, 8)]:
        x = torch.randn(*shape)
        (ours,) = _check(imported, x)
        np.testing.assert_allclose(ours, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_dims_become_symbols_and_inputs_keep_names(net):
    _, imported = net
    text = print_module(imported.module)
    assert "func @forward(%x: f32[B,S,8]) -> (f32[B,S,8])" in text
    assert imported.signature.input_names == ["x"]


def test_locs_are_innermost_module_paths(net):
    _, imported = net
    by_name = {}
    for op in imported.module.main:
        by_name.setdefault(op.name, set()).add(op.loc)
    assert by_name["nn.layer_norm"] == {"block.norm"}
    assert by_name["nn.gelu"] == {"block"}
    assert "block.proj" in by_name["core.matmul"] and "block.out" in by_name["core.matmul"]
    weights = {op.attrs["name"]: op.loc for op in imported.module.main if op.name == "core.weight"}
    assert weights["block.proj.weight"] == "block.proj"


def test_preserved_ops_stay_whole(net):
    _, imported = net
    names = {op.name for op in imported.module.main}
    assert {"nn.gelu", "nn.layer_norm", "nn.softmax", "core.matmul"} <= names
    assert "core.erf" not in names  # gelu was not decomposed


class Promote(nn.Module):
    def forward(self, ids, x):
        scaled = ids * 0.5 + x  # i64 * float -> f32
        mask = (ids > 2).to(torch.float32)
        return scaled * mask, (ids + 1).sum(-1)


def test_type_promotion_inserts_casts():
    model = Promote()
    ids = torch.arange(12).reshape(3, 4)
    x = torch.randn(3, 4)
    imported = import_torch(model, (ids, x))
    casts = [op for op in imported.module.main if op.name == "core.cast"]
    assert casts, "promotion from i64 to f32 must be an explicit cast"
    ours = _check(imported, ids, x)
    want = model(ids, x)
    np.testing.assert_allclose(ours[0], want[0].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(ours[1], want[1].numpy())
    packed = imported.signature.pack_outputs(ours)
    assert isinstance(packed, tuple) and len(packed) == 2


def test_static_and_explicit_dynamic_dims():
    model = Net().eval()
    x = torch.randn(2, 5, 8)
    static = import_torch(model, (x,), dynamic=None)
    assert str(static.module.main.inputs[0].type) == "f32[2,5,8]"
    explicit = import_torch(model, (x,), dynamic={"x": {0: "N"}})
    assert str(explicit.module.main.inputs[0].type) == "f32[N,5,8]"
    with pytest.raises(FrontendError, match="names input 'y'"):
        import_torch(model, (x,), dynamic={"y": {0: "N"}})


def test_batch_one_example_keeps_dims_symbolic():
    """torch.export fixes size-1 dims; the frontend exports on an enlarged copy instead."""
    model = Net().eval()
    imported = import_torch(model, (torch.randn(1, 1, 8),))
    assert str(imported.module.main.inputs[0].type) == "f32[B,S,8]"
    x = torch.randn(3, 4, 8)
    (ours,) = _check(imported, x)
    np.testing.assert_allclose(ours, model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


class Flat(nn.Module):
    """Needs its batch to be 1 (``view(-1)`` of a [1, 8] tensor to [8])."""

    def forward(self, x):
        return x.view(8) * 2


class Fixed(nn.Module):
    """Broadcasts its input against a [4, 8] buffer, so torch makes the batch 4."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.randn(4, 8))

    def forward(self, x):
        return x * self.table


def test_a_dim_torch_fixes_is_a_warning_naming_input_axis_and_size():
    with pytest.warns(UserWarning, match=r"input 'x' axis 0 \(B\) to 4"):
        imported = import_torch(Fixed().eval(), (torch.randn(4, 8),), dynamic={"x": {0: "B"}})
    assert str(imported.module.main.inputs[0].type) == "f32[4,8]"
    with pytest.warns(UserWarning, match=r"input 'x' axis 0 \(B\) to 1"):
        imported = import_torch(Flat().eval(), (torch.randn(1, 8),), dynamic={"x": {0: "B"}})
    assert str(imported.module.main.inputs[0].type) == "f32[1,8]"


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        with torch.no_grad():
            self.b.weight.copy_(self.a.weight)
            self.b.bias.copy_(self.a.bias)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, ids):
        h = self.emb(ids)
        return self.head(self.b(self.a(h)) * self.scale)


def test_identical_tensors_are_stored_once_and_scalars_inline():
    torch.manual_seed(0)
    model = Tied().eval()
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    imported = import_torch(model, (ids,))
    constants = imported.module.constants
    assert len(constants) == 3, constants.names()  # embedding (tied), a.weight == b.weight, a.bias == b.bias
    inline = [op for op in imported.module.main if op.name == "core.constant"]
    assert any(op.attrs["value"].to_array() == 2.0 for op in inline)
    (ours,) = _check(imported, ids)
    np.testing.assert_allclose(ours, model(ids).detach().numpy(), rtol=1e-5, atol=1e-6)


class Positions(nn.Module):
    """BERT-style: a static buffer sliced to the sequence length, and x[:, 0] pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("position_ids", torch.arange(32).unsqueeze(0), persistent=False)
        self.pos = nn.Embedding(32, 4)

    def forward(self, x):
        pos = self.pos(self.position_ids[:, : x.shape[1]])
        h = x + pos
        return h[:, 0], h[:, -1]


def test_bounded_slices_and_selects_on_symbolic_dims():
    torch.manual_seed(0)
    model = Positions().eval()
    imported = import_torch(model, (torch.randn(2, 7, 4),))
    assert str(imported.module.main.inputs[0].type) == "f32[B,S,4]"
    for shape in [(2, 7, 4), (3, 12, 4)]:
        x = torch.randn(*shape)
        ours = _check(imported, x)
        for got, want in zip(ours, model(x)):
            np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-6)


class Attn(nn.Module):
    def forward(self, q, k, v, mask):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def test_sdpa_becomes_nn_attention():
    q, k, v = (torch.randn(2, 4, 6, 8) for _ in range(3))
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
    imported = import_torch(Attn(), (q, k, v, mask), dynamic=None)
    assert [op.name for op in imported.module.main] == ["nn.attention"]
    (ours,) = _check(imported, q, k, v, mask)
    np.testing.assert_allclose(ours, Attn()(q, k, v, mask).numpy(), rtol=1e-5, atol=1e-6)


# -- unsupported models give one error listing every op and where -----------------------------------------
@torch.library.custom_op("optllm_test::wobble", mutates_args=())
def wobble(x: torch.Tensor) -> torch.Tensor:
    return x.sin()


@wobble.register_fake
def _(x):
    return torch.empty_like(x)


class Spectral(nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x).abs()


class Custom(nn.Module):
    def forward(self, x):
        return wobble(x)


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.spectral = Spectral()
        self.custom = Custom()
        self.also_custom = Custom()

    def forward(self, x):
        return self.spectral(x).sum(-1) + self.custom(x).sum(-1) + self.also_custom(x).sum(-1)


def test_unsupported_ops_are_listed_in_one_error():
    with pytest.raises(FrontendError) as info:
        import_torch(Unsupported(), (torch.randn(2, 8),))
    msg = str(info.value)
    assert "unsupported ops" in msg
    assert "optllm_test.wobble.default  at custom, also_custom" in msg
    assert "aten._fft_r2c.default  at spectral" in msg


def test_bad_example_inputs():
    with pytest.raises(FrontendError, match="example_inputs"):
        import_torch(Net(), 3.0)
    with pytest.raises(FrontendError, match="both positionally and by keyword"):
        import_torch(Net(), (torch.randn(2, 5, 8),), kwargs={"x": torch.randn(2, 5, 8)})


class SymScalar(nn.Module):
    """Sizes used as numbers: x * S and a tensor filled with S."""

    def forward(self, x, bias=None):
        y = x * x.shape[1] + torch.full((x.shape[0], 1), x.shape[1])
        return y if bias is None else y + bias


def test_symbolic_sizes_used_as_numbers_and_mixed_args():
    model = SymScalar()
    x, bias = torch.randn(2, 5), torch.randn(5)
    imported = import_torch(model, (x,), kwargs={"bias": bias})
    assert imported.signature.input_names == ["x", "bias"]
    text = print_module(imported.module)
    assert "func @forward(%x: f32[B,S], %bias: f32[S])" in text
    assert "core.arange {start = S, end = S+1}" in text
    for shape in [(2, 5), (3, 9)]:
        x, bias = torch.randn(*shape), torch.randn(shape[1])
        (ours,) = _check(imported, x, bias=bias)
        np.testing.assert_allclose(ours, model(x, bias).numpy(), rtol=1e-6)


class TakeAlong(nn.Module):
    """torch.gather with an index smaller than the input off the gather axis (HF BERT's
    buffered token type ids)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.arange(40.0).reshape(4, 10), persistent=False)

    def forward(self, idx):
        return torch.gather(self.table, 1, idx)


def test_torch_gather_becomes_gather_elements():
    model = TakeAlong()
    example = torch.tensor([[3, 1, 4], [1, 5, 9]])
    imported = import_torch(model, (example,))
    assert "core.gather_elements" in {op.name for op in imported.module.main}
    for idx in [example, torch.tensor([[9, 0], [2, 2], [7, 1]])]:
        (ours,) = _check(imported, idx)
        np.testing.assert_array_equal(ours, model(idx).numpy())


class Assorted(nn.Module):
    """Less common Core ATen ops: var/var_mean, max.dim, constant_pad_nd, repeat."""

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True)
        normed = (x - mean) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5) + var
        values, indices = normed.max(dim=1)
        padded = torch.nn.functional.pad(x, (1, 2, 0, -1), value=0.5)
        return values, indices, padded, x.repeat(1, 2, 1)


def test_assorted_core_aten_ops():
    model = Assorted()
    imported = import_torch(model, (torch.randn(2, 5, 8),))
    for shape in [(2, 5, 8), (3, 4, 8)]:
        x = torch.randn(*shape)
        ours = _check(imported, x)
        for got, want in zip(ours, model(x)):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


class MatrixOps(nn.Module):
    """Ops the model matrix found missing: log1p (RWKV-style), slice_scatter, full max/min."""

    def forward(self, x, y):
        tiny = torch.log1p(x * 1e-6)  # log(1 + x) alone would lose these low bits
        a = tiny + torch.log1p(x.abs())
        b = torch.slice_scatter(x, y, dim=1, start=1, end=3)
        c = torch.slice_scatter(x, y * 2, dim=1, start=x.shape[1] - 2)
        return tiny, a, b, c, x.max() + x.min()


def test_log1p_slice_scatter_and_full_reductions_match_torch():
    model = MatrixOps().eval()
    imported = import_torch(model, (torch.randn(2, 5), torch.randn(2, 2)), dynamic={"x": {0: "B"}, "y": {0: "B"}})
    x, y = torch.randn(3, 5), torch.randn(3, 2)
    ours = _check(imported, x, y)
    for got, want in zip(ours, model(x, y)):
        np.testing.assert_allclose(got, want.numpy(), rtol=2e-6, atol=0)


class ReturnsCache(nn.Module):
    """A forward with no ``use_cache`` parameter that still returns a transformers cache."""

    def forward(self, x):
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.update(x[None, None], x[None, None], 0)
        return x * 2, cache


def test_a_cache_output_the_frontend_cannot_switch_off_is_explained():
    pytest.importorskip("transformers")
    with pytest.raises(FrontendError, match=r"ReturnsCache \(positional example inputs bound as x=Tensor\[2, 3\]\)"
                                            r" \(the model returns a KV cache.*use_cache = False\)"):
        import_torch(ReturnsCache(), (torch.randn(2, 3),))
