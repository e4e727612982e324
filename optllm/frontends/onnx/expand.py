"""Expand ONNX nodes that have no converter into the function body their op schema defines.

    model = expand_schema_functions(model)   # Attention -> MatMul, Softmax, ...; others untouched

Many ONNX ops (Attention, RotaryEmbedding, GroupNormalization, the window functions) are
defined by the standard as a function of simpler ops; some (LayerNormalization) by a
context-dependent function built for the node's attributes and input types. A node whose
op has no converter is replaced by that body, with its inputs, outputs and attributes
substituted and internal names prefixed, repeatedly until no expandable node is left.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)
_MAX_ROUNDS = 4


def _opset(model: Any, domain: str) -> int:
    for imp in model.opset_import:
        if (imp.domain or "") == domain or (domain in ("", "ai.onnx") and imp.domain in ("", "ai.onnx")):
            return int(imp.version)
    return 1


def _function_body(node: Any, opset: int, types: dict[str, Any]) -> Any | None:
    """The FunctionProto defining ``node`` at ``opset``, or None when its schema has none."""
    import onnx

    try:
        schema: Any = onnx.defs.get_schema(node.op_type, opset, domain=node.domain)
    except Exception:  # no schema: a custom op
        return None
    fn = onnx.FunctionProto()
    versions = [v for v in schema.function_opset_versions if v <= opset]
    if versions:
        fn.ParseFromString(schema.get_function_with_opset_version(max(versions)))
        return fn
    versions = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    if not versions:
        return None
    input_types = []
    for name in node.input:
        if name and name not in types:
            return None
        input_types.append(types[name].SerializeToString() if name else onnx.TypeProto().SerializeToString())
    node = _with_defaults(node, schema)
    data = schema.get_context_dependent_function_with_opset_version(max(versions), node.SerializeToString(),
                                                                   input_types)
    if not data:
        return None
    fn.ParseFromString(data)
    return fn


def _with_defaults(node: Any, schema: Any) -> Any:
    import onnx

    out = onnx.NodeProto()
    out.CopyFrom(node)
    have = {a.name for a in node.attribute}
    for name, spec in schema.attributes.items():
        if name not in have and spec.default_value and spec.default_value.name:
            out.attribute.append(spec.default_value)
    return out


def _inline(node: Any, fn: Any, prefix: str, schema_attrs: dict[str, Any]) -> list[Any]:
    """``fn``'s nodes with the node's inputs, outputs and attributes substituted."""
    import onnx

    names: dict[str, str] = {}
    for i, formal in enumerate(fn.input):
        names[formal] = node.input[i] if i < len(node.input) else ""
    for i, formal in enumerate(fn.output):
        if i < len(node.output) and node.output[i]:
            names[formal] = node.output[i]
    attrs = dict(schema_attrs)
    attrs.update({a.name: a for a in node.attribute})

    def rename(name: str) -> str:
        return names.get(name, prefix + name if name else "")

    body = []
    for inner in fn.node:
        new = onnx.NodeProto()
        new.CopyFrom(inner)
        new.ClearField("input")
        new.ClearField("output")
        new.ClearField("attribute")
        new.input.extend(rename(n) for n in inner.input)
        new.output.extend(rename(n) for n in inner.output)
        new.name = prefix + (inner.name or inner.op_type)
        for a in inner.attribute:
            if a.ref_attr_name:
                if a.ref_attr_name in attrs:
                    ref = onnx.AttributeProto()
                    ref.CopyFrom(attrs[a.ref_attr_name])
                    ref.name = a.name
                    new.attribute.append(ref)
            else:
                new.attribute.append(a)
        body.append(new)
    return body


def expand_schema_functions(model: Any, has_converter: Any) -> Any:
    """A copy of ``model`` where every node ``has_converter(node, opset)`` rejects and whose
    schema defines a function body is replaced by that body (nested ones too)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for round_ in range(_MAX_ROUNDS):
        try:
            inferred = onnx.shape_inference.infer_shapes(out)
        except Exception:
            inferred = out
        g = inferred.graph
        types = {vi.name: vi.type for vi in [*g.input, *g.value_info, *g.output]}
        types.update({t.name: onnx.helper.make_tensor_type_proto(t.data_type, t.dims) for t in g.initializer})
        nodes: list[Any] = []
        changed = False
        for i, node in enumerate(out.graph.node):
            opset = _opset(out, node.domain or "")
            fn = None if has_converter(node, opset) else _function_body(node, opset, types)
            if fn is None:
                nodes.append(node)
                continue
            schema = onnx.defs.get_schema(node.op_type, opset, domain=node.domain)
            defaults = {k: v.default_value for k, v in schema.attributes.items() if v.default_value.name}
            nodes.extend(_inline(node, fn, f"{node.name or node.op_type}_{round_}_{i}__", defaults))
            for imp in fn.opset_import:
                if imp.domain not in {o.domain for o in out.opset_import}:
                    out.opset_import.append(imp)
            changed = True
        if not changed:
            break
        del out.graph.node[:]
        out.graph.node.extend(nodes)
        log.debug("expanded schema functions (round %d)", round_ + 1)
    return out
