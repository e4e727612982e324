"""Signature: the model's calling convention <-> the graph's flat input and output lists."""

from __future__ import annotations

import collections
import json

import pytest

from optllm.frontends.signature import Signature, SignatureError

Pair = collections.namedtuple("Pair", ["first", "second"])


def _sig(**kw):
    base = dict(input_names=["input_ids", "attention_mask"], params=["input_ids", "attention_mask", "labels"])
    base.update(kw)
    return Signature(**base)


def test_flatten_positional_and_keyword():
    sig = _sig()
    assert sig.flatten_inputs((1,), {"attention_mask": 2}) == [1, 2]
    assert sig.flatten_inputs((), {"attention_mask": 2, "input_ids": 1}) == [1, 2]
    assert sig.flatten_inputs((1, 2)) == [1, 2]
    assert sig.flatten_inputs((1, 2), {"labels": None}) == [1, 2]  # None means absent


def test_flatten_errors_name_the_inputs():
    sig = _sig()
    with pytest.raises(SignatureError, match="missing input 'attention_mask'.*takes \\(input_ids, attention_mask\\)"):
        sig.flatten_inputs((1,), {})
    with pytest.raises(SignatureError, match="unexpected input 'labels'"):
        sig.flatten_inputs((1, 2), {"labels": 3})
    with pytest.raises(SignatureError, match="unexpected input 'bogus'"):
        sig.flatten_inputs((1, 2), {"bogus": 3})
    with pytest.raises(SignatureError, match="both positionally and by keyword"):
        sig.flatten_inputs((1,), {"input_ids": 1, "attention_mask": 2})
    with pytest.raises(SignatureError, match="at most 3 positional"):
        sig.flatten_inputs((1, 2, 3, 4))


def test_pack_nested_outputs():
    tree = {"kind": "tuple", "items": [
        {"kind": "tensor"},
        {"kind": "dict", "keys": ["a", "b"], "items": [{"kind": "tensor"}, {"kind": "none"}]},
        {"kind": "list", "items": [{"kind": "tensor"}, {"kind": "tensor"}]},
        {"kind": "class", "class": f"{__name__}.Pair", "keys": ["first", "second"],
         "items": [{"kind": "tensor"}, {"kind": "tensor"}]},
    ]}
    sig = _sig(output_tree=tree)
    assert sig.num_outputs() == 6
    out = sig.pack_outputs([1, 2, 3, 4, 5, 6])
    assert out == (1, {"a": 2, "b": None}, [3, 4], Pair(5, 6))
    with pytest.raises(SignatureError, match="holds 6 tensors, got 2"):
        sig.pack_outputs([1, 2])


def test_pack_model_output_keeps_fields():
    pytest.importorskip("transformers")
    tree = {"kind": "class", "class": "transformers.modeling_outputs.CausalLMOutputWithPast",
            "keys": ["logits"], "items": [{"kind": "tensor"}]}
    out = _sig(output_tree=tree).pack_outputs(["L"])
    assert out.logits == "L" and out[0] == "L"


def test_json_round_trip():
    sig = _sig(output_tree={"kind": "list", "items": [{"kind": "tensor"}]}, static={"use_cache": False})
    data = json.loads(json.dumps(sig.to_json()))
    assert Signature.from_json(data) == sig
    with pytest.raises(SignatureError, match="malformed"):
        Signature.from_json({"output_tree": {}})


def test_unknown_output_class_is_a_clear_error():
    tree = {"kind": "class", "class": "no_such_pkg.Thing", "keys": ["x"], "items": [{"kind": "tensor"}]}
    with pytest.raises(SignatureError, match="cannot rebuild the output class no_such_pkg.Thing"):
        _sig(output_tree=tree).pack_outputs([1])


def test_tree_from_export_spec():
    torch = pytest.importorskip("torch")
    from torch.utils import _pytree

    from optllm.frontends.signature import tree_from_pytree

    spec = _pytree.tree_structure((torch.ones(1), {"k": [torch.ones(1)]}, Pair(torch.ones(1), torch.ones(1))))
    tree = tree_from_pytree(spec)
    assert Signature(["x"], tree).pack_outputs([1, 2, 3, 4]) == (1, {"k": [2]}, Pair(3, 4))


def test_static_arguments_must_keep_their_import_value():
    sig = _sig(static={"labels": None, "use_cache": False})
    assert sig.flatten_inputs((1, 2), {"use_cache": False}) == [1, 2]
    with pytest.raises(SignatureError, match="'use_cache' was fixed to False at import"):
        sig.flatten_inputs((1, 2), {"use_cache": True})
