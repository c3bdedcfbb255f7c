"""ONNX export of a ``Sequential`` model (``Sequential.to_onnx``, ``nnx export``).

The graph computes what ``predict_proba`` and ``predict`` compute, batch first as ONNX
runtimes expect: input ``X`` (m, n) (nnx itself takes (n, m)), each block a
``Gemm(A, W, b, transB=1)`` = A Wᵀ + bᵀ followed by its activation; Dropout is the
identity at inference and leaves no node. Outputs:

* classifiers: ``probabilities`` ((m, 1), P(label 1), for a 1-output model; (m, K) for a
  K-class model) and ``label`` (int64 (m,): 1 where the probability exceeds 0.5, as
  ``predict``'s default threshold, else 0; for K classes the most probable one);
* regression models (a linear output, loss "mse"): ``prediction`` (m, K).

uint8 input is raw pixels: a ``Cast`` to the compute dtype then a ``Mul`` by
``PIXEL_SCALE`` in that dtype, in the order (and so with the rounding) of nnx's own
inference. The ONNX package (the ``onnx`` extra) is imported only when a model is exported.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

import numpy as np

from .backends.codes import PIXEL_SCALE
from .files import ONNX_PRODUCER, atomic_write, check_target
from .registry import INPUT_DTYPES
from .validation import check_dtype
from .version import __version__

OPSET = 17  # the ai.onnx opset the graph is written in (onnxruntime >= 1.12 runs it)
IR_VERSION = 8  # the ONNX IR version that goes with opset 17 (readable by older runtimes)
PRODUCER = ONNX_PRODUCER  # ModelProto.producer_name: how nnx recognises an ONNX file it wrote
INSTALL_HINT = "pip install 'nnx-nets[onnx]'"
_ACTIVATION_OPS = {"sigmoid": "Sigmoid", "relu": "Relu", "tanh": "Tanh", "softmax": "Softmax"}


class ExportableModel(Protocol):
    """What the exporter reads of a model (``nnx.Sequential`` has all of it)."""

    loss: str
    metadata: dict[str, Any]

    @property
    def blocks(self) -> tuple[Any, ...]: ...

    @property
    def is_regression(self) -> bool: ...

    @property
    def n_features(self) -> int: ...

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]: ...

    def inference_dtype(self, dtype: str | None = None) -> str: ...

    def config(self) -> dict[str, Any]: ...


def import_onnx() -> Any:
    """The ``onnx`` package, or an ImportError of one line saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None
    return onnx


def export_dtypes(model: ExportableModel, dtype: str | None, input_dtype: str | None) -> tuple[str, str]:
    """(compute dtype, input dtype) of an export: ``dtype`` defaults to the model's
    inference dtype; ``input_dtype`` to "uint8" for a model trained on images (its
    metadata has ``image_size``), else the compute dtype. ValueError for anything else."""
    compute = model.inference_dtype(check_dtype(dtype) if dtype is not None else None)
    if input_dtype is None:
        return compute, "uint8" if model.metadata.get("image_size") else compute
    try:
        name = np.dtype(input_dtype).name
    except TypeError:
        name = str(input_dtype)
    if name not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}")
    return compute, name


def build_onnx(model: ExportableModel, *, dtype: str | None = None, input_dtype: str | None = None) -> Any:
    """The model as a checked ``onnx.ModelProto`` (see the module's docstring for its
    inputs and outputs). ``dtype``: the compute dtype of the graph (default: the model's
    inference dtype); ``input_dtype``: "uint8" (raw pixels, scaled by 1/255 inside the
    graph), "float32" or "float64" (cast to the compute dtype inside the graph when it
    differs); default: uint8 for a model trained on images, else the compute dtype."""
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    compute, source = export_dtypes(model, dtype, input_dtype)
    elem = {name: helper.np_dtype_to_tensor_dtype(np.dtype(name)) for name in INPUT_DTYPES}
    real = np.dtype(compute).type
    nodes: list[Any] = []
    inits: list[Any] = []
    current = "X"
    if source != compute:
        nodes.append(helper.make_node("Cast", ["X"], ["X_cast"], to=elem[compute], name="cast_input"))
        current = "X_cast"
    if source == "uint8":  # nnx: X.astype(dtype) then *= dtype(PIXEL_SCALE)
        inits.append(numpy_helper.from_array(np.array(real(PIXEL_SCALE)), "pixel_scale"))
        nodes.append(helper.make_node("Mul", [current, "pixel_scale"], ["X_scaled"], name="scale_pixels"))
        current = "X_scaled"
    blocks = model.blocks
    last = len(blocks) - 1
    regression = model.is_regression
    final = "prediction" if regression else "probabilities"
    for i, (block, (W, b)) in enumerate(zip(blocks, model.parameters())):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(W, dtype=compute), f"W{i}"))
        inits.append(numpy_helper.from_array(np.asarray(b, dtype=compute).reshape(-1), f"b{i}"))
        op = _ACTIVATION_OPS.get(block.activation) if block.activation is not None else None
        z = final if i == last and op is None else f"Z{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [z], transB=1, name=f"linear{i}"))
        current = z
        if op is not None:
            a = final if i == last else f"A{i}"
            extra = {"axis": 1} if op == "Softmax" else {}
            nodes.append(helper.make_node(op, [current], [a], name=f"{op.lower()}{i}", **extra))
            current = a
    m = "m"  # the batch dimension: any number of examples
    n_out = blocks[-1].n_out
    outputs = [helper.make_tensor_value_info(final, elem[compute], [m, n_out])]
    if not regression:
        if model.loss == "cross_entropy":
            nodes.append(helper.make_node("ArgMax", [final], ["label"], axis=1, keepdims=0, name="argmax"))
        else:  # predict: (proba > 0.5) as int64, one label per example
            inits.append(numpy_helper.from_array(np.array(real(0.5)), "threshold"))
            inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"))
            nodes += [
                helper.make_node("Greater", [final, "threshold"], ["above"], name="threshold"),
                helper.make_node("Cast", ["above"], ["above_int"], to=TensorProto.INT64, name="as_int64"),
                helper.make_node("Reshape", ["above_int", "flat"], ["label"], name="one_per_example"),
            ]
        outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, [m]))
    inputs = [helper.make_tensor_value_info("X", elem[source], [m, model.n_features])]
    graph = helper.make_graph(nodes, "nnx", inputs, outputs, initializer=inits, doc_string=_describe(source))
    proto = helper.make_model(
        graph,
        producer_name=PRODUCER,
        producer_version=__version__,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=f"{model!r} exported by nnx {__version__}",
    )
    proto.ir_version = IR_VERSION
    props = {"nnx_version": __version__, "nnx_model": json.dumps(model.config()), "dtype": compute}
    classes = model.metadata.get("classes")
    if classes is not None and not regression:
        props["classes"] = json.dumps([str(c) for c in classes])
    if model.metadata.get("image_size"):
        props["image_size"] = str(model.metadata["image_size"])
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    return proto


def _describe(source: str) -> str:
    if source == "uint8":
        return "X (m, n): raw uint8 pixels, one example per row, scaled by 1/255 inside the graph"
    return f"X (m, n): {source} features, one example per row"


def write_onnx(
    model: ExportableModel,
    path: str | os.PathLike,
    *,
    dtype: str | None = None,
    input_dtype: str | None = None,
) -> None:
    """Write ``build_onnx(model, ...)`` to ``path`` atomically. The path is checked first:
    an existing file there must be an ONNX file nnx wrote (``UnsafeOutputError``
    otherwise), its folder must exist and be writable (``OutputWriteError``)."""
    import_onnx()
    export_dtypes(model, dtype, input_dtype)  # bad arguments before touching the path
    check_target(path, "onnx")
    data = build_onnx(model, dtype=dtype, input_dtype=input_dtype).SerializeToString()
    atomic_write(path, lambda fh: fh.write(data), kind="onnx")
