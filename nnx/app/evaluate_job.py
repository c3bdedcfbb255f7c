"""The job behind ``nnx evaluate``: a model file and labelled data in, the model's loss,
accuracy, per-class precision, recall and F1 and its confusion matrix out.

The metrics are computed here with NumPy (scikit-learn's definitions: precision
tp / (tp + fp), recall tp / (tp + fn), F1 their harmonic mean, each 0 where its
denominator is 0)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data import load_images
from ..errors import UsageError
from ..files import printable
from ..model import Sequential, load
from .train_data import read_array_file


def confusion(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """The (K, K) int64 confusion matrix: entry [i, j] counts examples of class i predicted j."""
    true = np.asarray(true, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    counts = np.bincount(true * n_classes + predicted, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of each class of a confusion matrix (0 where a
    ratio's denominator is 0, as scikit-learn's ``zero_division=0``)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual.astype(np.int64)}


def _model(model_path: str) -> Sequential:
    if not Path(model_path).is_file():
        raise UsageError(f"no model file at {model_path}; give the model.npz nnx train wrote")
    return load(model_path)


def _class_numbers(names: list[str], model_classes: list[str], data_path: str) -> list[int]:
    """Each of the data's class names as the model's class number (UsageError for a class
    the model was not trained on)."""
    index = {str(c): k for k, c in enumerate(model_classes)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise UsageError(
            f"{printable(data_path)} has class(es) {', '.join(map(printable, unknown[:5]))} that the model "
            f"does not know; its classes are {', '.join(map(printable, model_classes[:10]))}"
        )
    return [index[n] for n in names]


def labelled_data(
    model: Sequential, data_path: str, layout: str = "auto", progress: bool = False
) -> tuple[np.ndarray, np.ndarray, list]:
    """X, the labels as the model's class numbers, and the files skipped (image data):
    a folder or zip of pictures at the model's image size, by class name; an npz, CSV or h5
    file by class number (or by name where both the file and the model name the classes;
    an h5 file's test_set_* when it has them)."""
    model_classes = [str(c) for c in model.metadata.get("classes") or range(model.n_classes)]
    path = Path(data_path)
    if not path.exists():
        raise UsageError(
            f"no data at {data_path}: give a folder or zip of pictures, or an npz, CSV or h5 file"
        )
    if path.is_dir() or path.suffix.lower() == ".zip":
        size = model.metadata.get("image_size")
        if not size:
            raise UsageError(
                f"the model was not trained on pictures (no image_size in its metadata); evaluate it on "
                f"the kind of data it was trained on (an npz, CSV or h5 file of {model.n_features} features)"
            )
        data = load_images(path, size=int(size), val_split=0.0, progress=progress, log_skipped=False)
        numbers = np.array(_class_numbers(data.classes, model_classes, data_path), dtype=np.int64)
        return data.X_train, numbers[data.Y_train.reshape(-1)], data.skipped
    found = read_array_file(path, layout, None)
    labels = found.Y.reshape(-1).astype(np.int64)
    if found.classes and model.metadata.get("classes"):
        labels = np.array(_class_numbers(found.classes, model_classes, data_path), dtype=np.int64)[labels]
    if labels.max() >= model.n_classes:
        raise UsageError(
            f"{printable(data_path)} has labels up to {labels.max()}, but the model has {model.n_classes} "
            f"classes (0..{model.n_classes - 1})"
        )
    if found.X.shape[0] != model.n_features:
        raise UsageError(
            f"{printable(data_path)} has {found.X.shape[0]} features per example, but the model takes "
            f"{model.n_features}; evaluate it on data laid out as its training data were"
        )
    return found.X, labels, []


def evaluate_files(
    model_path: str, data_path: str, layout: str = "auto", backend: str | None = None
) -> dict[str, Any]:
    """The model's loss, accuracy, per-class precision/recall/F1/support and confusion matrix
    (rows: the true class, columns: the predicted one) on labelled data, as a JSON-able dict.
    Two-class models predict label 1 where its probability is above 0.5."""
    model = _model(model_path)
    X, labels, skipped = labelled_data(model, data_path, layout)
    K = model.n_classes
    classes = [str(c) for c in model.metadata.get("classes") or range(K)]
    scores = model.evaluate(X, labels.reshape(1, -1), backend=backend)
    predicted = model.predict(X, backend=backend).reshape(-1)
    matrix = confusion(labels, predicted, K)
    each = per_class(matrix)
    return {
        "model": str(model_path),
        "data": str(data_path),
        "examples": int(labels.size),
        "loss": float(scores["loss"]),
        "accuracy": float(np.trace(matrix) / labels.size),
        "classes": classes,
        "per_class": [
            {
                "class_name": name,
                "precision": float(each["precision"][k]),
                "recall": float(each["recall"][k]),
                "f1": float(each["f1"][k]),
                "support": int(each["support"][k]),
            }
            for k, name in enumerate(classes)
        ],
        "macro_f1": float(each["f1"].mean()),
        "confusion_matrix": matrix.tolist(),
        "skipped": [list(s) for s in skipped],
    }


def describe_evaluation(result: dict[str, Any]) -> str:
    """The evaluation as text: a summary line, a table of the classes, the confusion matrix."""
    names = [printable(c) for c in result["classes"]]
    width = max(8, *(len(n) for n in names)) + 2
    lines = []
    if result["skipped"]:
        shown = ", ".join(f"{printable(n)} ({printable(r)})" for n, r in result["skipped"][:20])
        more = f" and {len(result['skipped']) - 20} more" if len(result["skipped"]) > 20 else ""
        lines.append(f"skipped {len(result['skipped'])} file(s), not used: {shown}{more}")
    lines += [
        f"{printable(result['data'])}: {result['examples']} examples; loss {result['loss']:.4f}, "
        f"accuracy {result['accuracy']:.1%}, macro F1 {result['macro_f1']:.3f}",
        f"{'class':<{width}}precision  recall     f1  support",
    ]
    for name, row in zip(names, result["per_class"]):
        lines.append(
            f"{name:<{width}}{row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}"
            f"  {row['support']:7d}"
        )
    cell = max(
        6, *(len(n) + 1 for n in names), *(len(str(v)) + 1 for r in result["confusion_matrix"] for v in r)
    )
    lines.append("confusion matrix (rows: true class, columns: predicted class):")
    lines.append(" " * width + "".join(f"{n:>{cell}}" for n in names))
    for name, row in zip(names, result["confusion_matrix"]):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


def plot_confusion(result: dict[str, Any], path: str | os.PathLike) -> str:
    """The confusion matrix as a PNG (the ``plot`` extra)."""
    from .plot import confusion_matrix

    title = f"{Path(result['data']).name}: accuracy {result['accuracy']:.1%}"
    return confusion_matrix(np.array(result["confusion_matrix"]), result["classes"], path, title)
