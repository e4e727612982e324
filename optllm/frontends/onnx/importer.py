"""ONNX model -> optllm ``Module``.

Steps: read the protobuf without its external data; check opsets, element types, missing
inputs and converters for every node, and report all problems in one ``FrontendError``;
inline local functions; run ONNX shape inference (to check converted types); register
initializers as lazily read constants (external data is memory-mapped with numpy from its
file, offset and length on first use, never passing through a protobuf, so models over 2 GB
import and only the pages used are read); turn dynamic input dims into
symbols; convert the nodes in order through the converter table; drop what only shape
arithmetic used.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from optllm.frontends.common import FrontendError, Imported
from optllm.frontends.onnx.context import ONNX_DTYPES, ConvertContext, onnx_dtype
from optllm.frontends.onnx.registry import lookup
from optllm.frontends.signature import TENSOR, Signature
from optllm.ir import Builder, BuildError, DType, Graph, Module, OptllmError, TensorType, Value
from optllm.ir.diagnostics import TypeInferenceError
from optllm.ir.symbolic import Dim, SymExpr

log = logging.getLogger(__name__)

MIN_OPSET = 13
_HOLD_BYTES = 4096  # initializers larger than this are read lazily and skipped by shape inference
_SYMBOLS = {"batch": "B", "batch_size": "B", "b": "B", "n": "B",
            "sequence": "S", "seq": "S", "seq_len": "S", "sequence_length": "S", "s": "S", "seqlen": "S"}


# -- the public entry point ---------------------------------------------------------------------
def import_onnx(model: str | os.PathLike[str] | Any, *, name: str | None = None) -> Imported:
    """Import an ONNX model (a path or an ``onnx.ModelProto``) into an optllm ``Module``."""
    proto, source, base_dir = _load(model)
    opset = _check_model(proto, source, base_dir)
    proto = _prepare(proto)
    module_name = name or _module_name(proto, source)
    return _convert(proto, opset, source, base_dir, module_name)


def _load(model: Any) -> tuple[Any, str, Path | None]:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model, "<ModelProto>", None
    path = Path(model)
    if not path.is_file():
        raise FrontendError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise FrontendError(f"{path}: not a readable ONNX model (truncated or corrupt?): "
                            f"{type(e).__name__}: {str(e).strip()[:200]}") from None
    if not proto.HasField("graph") or (not proto.graph.node and not proto.graph.output):
        raise FrontendError(f"{path}: not a readable ONNX model (no graph; truncated or corrupt?)")
    return proto, str(path), path.parent


def _module_name(proto: Any, source: str) -> str:
    raw = proto.graph.name or Path(source).stem or "main"
    return re.sub(r"\W", "_", raw) or "main"


def _opset_of(proto: Any) -> int | None:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


# -- checks: every problem in one error --------------------------------------------------------------
def _check_model(proto: Any, source: str, base_dir: Path | None) -> int:
    import onnx

    problems: list[str] = []
    opset = _opset_of(proto)
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        problems.append("the model imports no default-domain (ai.onnx) opset")
        opset = newest
    elif not MIN_OPSET <= opset <= newest:
        problems.append(f"opset {opset} is not supported (supported: {MIN_OPSET}..{newest})")
    domains = {imp.domain: int(imp.version) for imp in proto.opset_import}
    local_fns = {(f.domain, f.name) for f in proto.functions}
    g = proto.graph
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    missing_dtype: list[str] = []
    for t in g.initializer:
        if t.data_type not in ONNX_DTYPES:
            missing_dtype.append(f"initializer '{t.name}' ({onnx.TensorProto.DataType.Name(t.data_type)})")
        if base_dir is not None and _is_external(t):
            info = _external_info(t)
            f = base_dir / info["location"]
            if not f.is_file():
                problems.append(f"initializer '{t.name}': external data file '{f}' is missing")
            elif _external_end(t) > f.stat().st_size:
                problems.append(f"initializer '{t.name}': external data file '{f}' is truncated "
                                f"({f.stat().st_size} bytes, the tensor ends at byte {_external_end(t)})")
    for vi in list(g.input) + list(g.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.elem_type not in ONNX_DTYPES:
            missing_dtype.append(f"'{vi.name}' ({onnx.TensorProto.DataType.Name(tt.elem_type)})")
    unsupported: list[str] = []
    undefined: list[str] = []
    for i, node in enumerate(g.node):
        where = node.name or f"#{i}"
        for inp in node.input:
            if inp and inp not in defined:
                undefined.append(f"node '{where}' ({node.op_type}) reads '{inp}', which no input, "
                                 "initializer or earlier node defines")
        defined.update(o for o in node.output if o)
        if (node.domain, node.op_type) in local_fns:
            continue
        node_opset = opset if node.domain in ("", "ai.onnx") else domains.get(node.domain, 1)
        if lookup(node.op_type, node.domain, node_opset) is None:
            unsupported.append(f"'{where}' ({node.domain or 'ai.onnx'}::{node.op_type}, opset {node_opset})")
    for o in g.output:
        if o.name not in defined:
            undefined.append(f"graph output '{o.name}' is not computed by any node")
    if unsupported:
        problems.append(f"{len(unsupported)} node(s) with unsupported ops: {', '.join(unsupported)}")
    if missing_dtype:
        problems.append(f"unsupported element types: {', '.join(missing_dtype)}")
    problems.extend(undefined)
    if problems:
        raise FrontendError(f"{source}: cannot import:\n  " + "\n  ".join(problems))
    return opset


def _prepare(proto: Any) -> Any:
    """Inline local functions; run shape inference (best effort)."""
    import onnx

    if proto.functions:
        from onnx import inliner

        proto = inliner.inline_local_functions(proto)
    # Inference serializes the model: hold the large initializers' bytes aside meanwhile.
    held = [(t, t.raw_data) for t in proto.graph.initializer if len(t.raw_data) > _HOLD_BYTES]
    for t, _ in held:
        t.ClearField("raw_data")
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
        proto.graph.ClearField("value_info")
        proto.graph.value_info.extend(inferred.graph.value_info)
    except Exception as e:  # inference is only used to check converted types
        log.info("ONNX shape inference failed (%s); converting without it", e)
    finally:
        for t, raw in held:
            t.raw_data = raw
    return proto


# -- initializers and external data --------------------------------------------------------------------
def _is_external(t: Any) -> bool:
    import onnx

    return t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL


def _external_info(t: Any) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def _external_end(t: Any) -> int:
    info = _external_info(t)
    count = int(np.prod([int(d) for d in t.dims])) if t.dims else 1
    size = count * ONNX_DTYPES[t.data_type].to_numpy().itemsize
    return int(info.get("offset", 0)) + int(info.get("length", size))


def _external_loader(t: Any, base_dir: Path, source: str) -> Any:
    info = _external_info(t)
    path = base_dir / info["location"]
    offset = int(info.get("offset", 0))
    dtype = ONNX_DTYPES[t.data_type]
    shape = tuple(int(d) for d in t.dims)
    count = int(np.prod(shape)) if shape else 1
    np_dtype = dtype.to_numpy()
    name = t.name

    def load() -> np.ndarray:
        # memory-mapped read-only: pages are read when touched, so a tensor of any size costs
        # no memory up front and a gather reads only its rows
        nbytes = count * np_dtype.itemsize
        try:
            size = path.stat().st_size
            if offset + nbytes > size:
                raise FrontendError(f"{source}: initializer '{name}': external data '{path}' is truncated "
                                    f"(wanted {nbytes} bytes at offset {offset}, the file has {size})")
            if count == 0:
                return np.empty(shape, np_dtype)
            arr = np.memmap(path, dtype=np_dtype.newbyteorder("<"), mode="r", offset=offset, shape=shape)
        except OSError as e:
            raise FrontendError(f"{source}: initializer '{name}': cannot read external data '{path}': {e}") from None
        return arr if arr.dtype == np_dtype else arr.astype(np_dtype)  # big-endian hosts: a converted copy

    return load


def _proto_loader(t: Any) -> Any:
    return lambda: _initializer_array(t)


def _initializer_array(t: Any) -> np.ndarray:
    from onnx import numpy_helper

    arr = numpy_helper.to_array(t)
    want = ONNX_DTYPES[t.data_type].to_numpy()
    # np.ascontiguousarray makes a 0-D array 1-D: reshape keeps scalar initializers scalars
    return np.ascontiguousarray(arr.astype(want, copy=False)).reshape(arr.shape)


# -- dynamic dims ----------------------------------------------------------------------------------
class _Symbols:
    """ONNX dim params -> optllm symbols (B, S, sanitized names, fresh names for unnamed dims)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.used: set[str] = set()
        self.fresh = 0

    def named(self, param: str) -> SymExpr:
        if param not in self.names:
            want = _SYMBOLS.get(param.lower()) or _sanitize(param)
            self.names[param] = self._unique(want) if want not in self.names.values() else want
        return SymExpr.symbol(self.names[param])

    def unnamed(self) -> SymExpr:
        return SymExpr.symbol(self._unique(f"D{self.fresh}"))

    def _unique(self, want: str) -> str:
        name, n = want, 1
        while name in self.used:
            name = f"{want}_{n}"
            n += 1
        self.used.add(name)
        if want.startswith("D") and want[1:].isdigit():
            self.fresh += 1
        return name


def _sanitize(param: str) -> str:
    s = re.sub(r"\W", "_", param)
    return s if s and (s[0].isalpha() or s[0] == "_") else f"d_{s}"


def _input_type(vi: Any, symbols: _Symbols, source: str) -> TensorType:
    if not vi.type.HasField("tensor_type"):
        raise FrontendError(f"{source}: input '{vi.name}' is not a tensor (sequences, maps and optionals "
                            "are not supported)")
    tt = vi.type.tensor_type
    dtype = onnx_dtype(tt.elem_type, f"input '{vi.name}'")
    if not tt.HasField("shape"):
        raise FrontendError(f"{source}: input '{vi.name}' has no shape (its rank must be known)")
    dims: list[Dim] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(symbols.named(d.dim_param))
        else:
            dims.append(symbols.unnamed())
    return TensorType(tuple(dims), dtype)


# -- conversion ---------------------------------------------------------------------------------------
def _convert(proto: Any, opset: int, source: str, base_dir: Path | None, module_name: str) -> Imported:
    g = proto.graph
    module = Module(module_name)
    graph = module.add_graph(Graph("forward"))
    ctx = ConvertContext(module, Builder.at_end(graph), opset, source)
    symbols = _Symbols()
    inits = {t.name: t for t in g.initializer}
    input_names: list[str] = []
    for vi in g.input:
        if vi.name in inits:  # IR version < 4: initializers are listed as inputs too
            continue
        ctx.env[vi.name] = graph.add_input(_input_type(vi, symbols, source), vi.name)
        input_names.append(vi.name)
    pending = _register_initializers(ctx, g, base_dir, source)
    domains = {imp.domain: int(imp.version) for imp in proto.opset_import}
    types = _inferred_types(g)
    for i, node in enumerate(g.node):
        for inp in node.input:
            if inp and inp not in ctx.env and inp in pending:
                ctx.env[inp] = pending.pop(inp)()
        _convert_node(ctx, node, i, domains, types)
    outputs = [ctx.env[o.name] for o in g.output]
    graph.set_outputs(outputs)
    _drop_dead(graph)
    module.drop_unused_constants()
    tree = {"kind": "dict", "keys": [o.name for o in g.output], "items": [dict(TENSOR) for _ in g.output]}
    return Imported(module, Signature(input_names, tree, list(input_names)))


def _register_initializers(ctx: ConvertContext, g: Any, base_dir: Path | None, source: str) -> dict[str, Any]:
    """Initializers: small ones inline, large ones in the constant table (external ones lazily).
    Returns name -> a function that creates the op on first use."""
    pending: dict[str, Any] = {}
    for t in g.initializer:
        dtype = ONNX_DTYPES[t.data_type]
        ttype = TensorType(tuple(int(d) for d in t.dims), dtype)
        if _is_external(t):
            if base_dir is None:
                raise FrontendError(f"{source}: initializer '{t.name}' has external data, but the model "
                                    "was given as a ModelProto (pass the file path instead)")
            key = _unique_name(ctx.module, t.name)
            ctx.module.constants.add_lazy(key, ttype, _external_loader(t, base_dir, source))
            pending[t.name] = _weight_maker(ctx, key, ttype, t.name)
            continue
        if len(t.raw_data) > _HOLD_BYTES:
            key = _unique_name(ctx.module, t.name)
            ctx.module.constants.add_lazy(key, ttype, _proto_loader(t))
            pending[t.name] = _weight_maker(ctx, key, ttype, t.name)
            continue
        pending[t.name] = _const_maker(ctx, _initializer_array(t), t.name)
    return pending


def _unique_name(module: Module, name: str) -> str:
    base, n, out = name, 1, name
    while out in module.constants:
        out = f"{base}_{n}"
        n += 1
    return out


def _weight_maker(ctx: ConvertContext, key: str, ttype: TensorType, loc: str) -> Any:
    return lambda: ctx.weight(key, ttype, loc)


def _const_maker(ctx: ConvertContext, arr: np.ndarray, loc: str) -> Any:
    def make() -> Value:
        saved, ctx.loc = ctx.loc, loc
        try:
            return ctx.constant(arr)
        finally:
            ctx.loc = saved

    return make


def _inferred_types(g: Any) -> dict[str, Any]:
    return {vi.name: vi.type for vi in list(g.value_info) + list(g.output) if vi.type.HasField("tensor_type")}


def _convert_node(ctx: ConvertContext, node: Any, index: int, domains: dict[str, int], types: dict[str, Any]) -> None:
    where = node.name or f"{node.op_type}_{index}"
    ctx.loc = where
    ctx.builder.loc = where
    node_opset = ctx.opset if node.domain in ("", "ai.onnx") else domains.get(node.domain, 1)
    conv = lookup(node.op_type, node.domain, node_opset)
    assert conv is not None  # checked up front
    saved_opset = ctx.opset
    ctx.opset = node_opset
    try:
        outs = conv(ctx, node)
    except FrontendError as e:
        raise FrontendError(f"{ctx.source}: node '{where}' ({node.op_type}): {e}") from None
    except (BuildError, TypeInferenceError, ValueError, KeyError, IndexError, TypeError) as e:
        raise FrontendError(f"{ctx.source}: node '{where}' ({node.op_type}) cannot be converted: "
                            f"{type(e).__name__}: {e}") from None
    finally:
        ctx.opset = saved_opset
    for name, v in zip(node.output, outs):
        if not name:
            continue
        if v is None:
            raise FrontendError(f"{ctx.source}: node '{where}' ({node.op_type}): output '{name}' is not supported")
        _check_type(ctx, node, where, name, v, types.get(name))
        ctx.env[name] = v
    for name in node.output[len(outs):]:
        if name:
            raise FrontendError(f"{ctx.source}: node '{where}' ({node.op_type}): output '{name}' is not supported")


def _check_type(ctx: ConvertContext, node: Any, where: str, name: str, v: Value, want: Any) -> None:
    """Converted values must have the element type and rank ONNX shape inference found."""
    if want is None:
        return
    tt = want.tensor_type
    if tt.elem_type in ONNX_DTYPES and ONNX_DTYPES[tt.elem_type] != v.type.dtype:
        raise FrontendError(f"{ctx.source}: internal error: node '{where}' ({node.op_type}) output '{name}' "
                            f"converted to {v.type}, but ONNX says element type {ONNX_DTYPES[tt.elem_type]}")
    if tt.HasField("shape"):
        dims = tt.shape.dim
        if len(dims) != v.type.rank:
            raise FrontendError(f"{ctx.source}: internal error: node '{where}' ({node.op_type}) output "
                                f"'{name}' converted to {v.type}, but ONNX says rank {len(dims)}")
        for d, got in zip(dims, v.type.shape):
            if d.HasField("dim_value") and isinstance(got, int) and d.dim_value != got:
                raise FrontendError(f"{ctx.source}: internal error: node '{where}' ({node.op_type}) output "
                                    f"'{name}' converted to {v.type}, but ONNX says dim {d.dim_value}")


def _drop_dead(graph: Graph) -> None:
    """Remove ops whose results nobody uses (shape arithmetic, unused initializers)."""
    for op in reversed(graph.ops):
        if op.results and all(not r.uses and not graph.is_output(r) for r in op.results):
            graph.erase(op)


__all__ = ["DType", "MIN_OPSET", "OptllmError", "import_onnx"]
