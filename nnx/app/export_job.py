"""The job behind ``nnx export``: a model file in, an ONNX file out (``nnx.onnx_export``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..files import printable
from ..model import load
from ..onnx_export import OPSET, export_dtypes, import_onnx


def export_model(
    model_path: str, out_path: str, *, dtype: str | None = None, input_dtype: str | None = None
) -> str:
    """Write the model in ``model_path`` as ONNX to ``out_path``; returns the line to print.

    Everything is checked before the file is written, each failure one exception of one
    line: the onnx package is missing, no model file, a file that is not an nnx model
    (``ModelFormatError``), bad ``dtype``/``input_dtype``, an output path nnx must not or
    cannot write (``UnsafeOutputError``, ``OutputWriteError``).
    """
    try:
        import_onnx()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    source = Path(model_path)
    if not source.exists() or source.is_dir():
        raise UsageError(f"no model file at {model_path}")
    model = load(model_path)
    try:
        compute, given = export_dtypes(model, dtype, input_dtype)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    model.to_onnx(out_path, dtype=compute, input_dtype=given)  # checks out_path before writing
    outputs = "prediction" if model.is_regression else "probabilities, label"
    return (
        f"wrote {printable(out_path)}: ONNX opset {OPSET}, input X (m, {model.n_features}) {given}, "
        f"outputs {outputs}, compute {compute}"
    )
