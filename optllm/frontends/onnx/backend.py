"""``onnx.backend.base.Backend`` over optllm: import with our frontend, run with our executor.

    from optllm.frontends.onnx import Backend
    rep = Backend.prepare(model)          # import_onnx(model) -> IR module
    outputs = rep.run([x, y])             # optllm.backends.reference.run_module

ONNX node tests feed shape-like tensors (Reshape's ``shape``, Slice's ``starts``) as graph
inputs, while the IR takes shapes as attributes. When the model does not import with those
inputs left free, ``run`` re-imports it with the integer and bool inputs bound to the values
it was given, and failing that also the float scalars and vectors of at most 8 elements
(Resize scales, Range bounds): one module per distinct set of bound values. The numbers are
computed by our own code, the reference executor (and, for values that become constants,
the same op references at import); onnx.reference and onnxruntime are only test oracles.

Ops without a converter whose ONNX schema defines them as a function (Attention,
GroupNormalization, ...) are imported through that function body (``expand``).

``CLAIMED_OPS`` lists the op types that pass every node test case of the installed onnx;
``tests/unit/frontends/test_onnx_conformance.py`` holds us to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend as _OnnxBackend
from onnx.backend.base import BackendRep as _OnnxBackendRep

from optllm.frontends.common import FrontendError
from optllm.ir import Module

log = logging.getLogger(__name__)

# Op types whose every node test case passes (kept honest by the conformance unit test).
CLAIMED_OPS: tuple[str, ...] = (
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "Attention",
    "AveragePool", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "CausalConvWithState", "Ceil",
    "Celu", "CenterCropPad", "Clip", "Col2Im", "Compress", "Concat", "Constant", "ConstantOfShape", "Conv",
    "ConvTranspose", "Cos", "Cosh", "CumProd", "CumSum", "DepthToSpace", "Div", "DynamicQuantizeLinear", "Einsum",
    "Elu", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "FlexAttention", "Floor", "GRU", "Gather",
    "GatherElements", "GatherND", "Gelu", "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual",
    "GroupNormalization", "HardSigmoid", "HardSwish", "Hardmax", "InstanceNormalization", "IsInf", "IsNaN", "LSTM",
    "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "LpNormalization", "LpPool",
    "Max", "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "NegativeLogLikelihoodLoss",
    "Not", "OneHot", "Or", "PRelu", "Pad", "QLinearMatMul", "RMSNormalization", "RNN", "Reciprocal", "ReduceL1",
    "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMean", "ReduceProd", "ReduceSum", "ReduceSumSquare",
    "Relu", "Reshape", "Resize", "ReverseSequence", "RotaryEmbedding", "Round", "Scatter", "ScatterElements",
    "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Softmax",
    "SoftmaxCrossEntropyLoss", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum",
    "SwiGLU", "Swish", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze",
    "Upsample", "Where", "Xor",
)
# Element kinds of the inputs ``run`` may bind as constants: integers and bools (shapes, axes, masks)
_BOUND_KINDS = "iub"
_SMALL = 8


def _import(model: onnx.ModelProto) -> Module:
    """Import ``model``; when that fails, retry with nodes expanded into their schema's
    function body: first the nodes without a converter, then every expandable node."""
    from optllm.frontends.onnx import import_onnx
    from optllm.frontends.onnx.expand import expand_schema_functions
    from optllm.frontends.onnx.registry import lookup

    try:
        return import_onnx(model).module
    except FrontendError as first:
        error = first
    model = _upgrade_opset(model)
    for expand_all in (False, True):
        def keep(node: onnx.NodeProto, opset: int, expand_all: bool = expand_all) -> bool:
            return not expand_all and lookup(node.op_type, node.domain, opset) is not None

        expanded = expand_schema_functions(model, keep)
        try:
            return import_onnx(expanded).module
        except FrontendError:
            continue
    raise error


def _upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` converted to the importer's oldest opset when it is older (else unchanged)."""
    from onnx import version_converter

    from optllm.frontends.onnx.importer import MIN_OPSET

    version = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    if version >= MIN_OPSET:
        return model
    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:  # the converter does not handle every op
        log.debug("cannot convert opset %d to %d: %s", version, MIN_OPSET, e)
        return model


def _shape_like(x: np.ndarray) -> bool:
    """Integer / bool tensors, and float scalars or vectors of at most 8 (scales, Range bounds)."""
    return x.dtype.kind in _BOUND_KINDS or (x.ndim <= 1 and x.size <= _SMALL)


def _bind_inputs(model: onnx.ModelProto, inputs: Sequence[np.ndarray], bind: Any) -> tuple[onnx.ModelProto, list[int]]:
    """A copy of ``model`` whose graph inputs ``bind(x)`` selects are initializers holding ``inputs``.

    Returns the copy and the positions of the inputs that stay graph inputs.
    """
    from onnx import numpy_helper

    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    init_names = {t.name for t in model.graph.initializer}
    free = [i for i in model.graph.input if i.name not in init_names]
    keep: list[int] = []
    kept_inputs = []
    for pos, (info, x) in enumerate(zip(free, inputs)):
        if bind(np.asarray(x)):
            bound.graph.initializer.append(numpy_helper.from_array(np.asarray(x), info.name))
        else:
            keep.append(pos)
            kept_inputs.append(info)
    del bound.graph.input[:]
    bound.graph.input.extend(kept_inputs)
    return bound, keep


class BackendRep(_OnnxBackendRep):
    """A prepared model: the imported module, or the model kept for import at ``run``."""

    def __init__(self, model: onnx.ModelProto, module: Module | None, error: FrontendError | None) -> None:
        self.model = model
        self.module = module
        self.error = error
        self._bound: dict[bytes, tuple[Module, list[int]]] = {}

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        from optllm.backends.reference import run_module

        arrays = [np.asarray(x) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
        module, keep = self.module_for(arrays)
        return tuple(run_module(module, [arrays[i] for i in keep]))

    def module_for(self, arrays: Sequence[np.ndarray]) -> tuple[Module, list[int]]:
        """The module that runs on ``arrays`` and the positions of the arrays it takes as inputs
        (all of them when the model imported as is; else the inputs left free by binding)."""
        if self.module is not None:
            return self.module, list(range(len(arrays)))
        key = b"".join(a.tobytes() + str((a.dtype, a.shape)).encode() for a in arrays if _shape_like(a))
        if key in self._bound:
            return self._bound[key]
        assert self.error is not None
        error: FrontendError = self.error
        for bind in (lambda a: a.dtype.kind in _BOUND_KINDS, _shape_like):
            if not any(bind(a) for a in arrays):
                continue
            bound, keep = _bind_inputs(self.model, arrays, bind)
            try:
                module = _import(bound)
            except FrontendError as e:
                error = e
                continue
            self._bound[key] = (module, keep)
            return module, keep
        raise error


class Backend(_OnnxBackend):
    """The ONNX backend API over optllm's importer and reference executor (CPU only)."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> BackendRep:
        if not cls.supports_device(device):
            raise ValueError(f"optllm's ONNX backend runs on CPU only, not {device!r}")
        try:
            return BackendRep(model, _import(model), None)
        except FrontendError as e:
            log.debug("import deferred to run(): %s", e)
            return BackendRep(model, None, e)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Any = None, **kwargs: Any) -> tuple[np.ndarray, ...]:
        raise NotImplementedError("optllm's ONNX backend runs models; wrap the node in a graph")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"
