"""The job behind ``nnx predict``: a model file and pictures in, a class for each out."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..data import decode_image, read_image_file
from ..errors import UsageError
from ..files import printable
from ..model import load

# decoded pixels nnx predict classifies with one network (a batch of 64 x 64 pictures: 21 845)
PREDICT_BATCH_BYTES = 256 * 2**20


def predict_files(
    model_path: str,
    images: list[str],
    threshold: float | None = None,
    backend: str | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """Class, probability and label for each image file, resized to the model's input size.

    For every model ``probability`` is the probability of the predicted label, and ``top``
    lists the most probable classes as {"class_name", "label", "probability"} entries.
    Two-class models: the label is 1 where P(label 1) is above ``threshold`` (0.5 when
    None), and ``top`` holds both classes. K-class models: the most probable class, and
    ``top`` the ``top`` (1 when None) most probable ones. ``top`` for a two-class model
    and ``threshold`` for a K-class model do not apply: UsageError, in one line.
    The pictures are decoded first and classified together: one network and one upload
    of the parameters for every ``PREDICT_BATCH_BYTES`` of pixels, not one per picture.
    """
    if not Path(model_path).exists() or Path(model_path).is_dir():
        raise UsageError(f"no model file at {model_path}")
    if importlib.util.find_spec("PIL") is None:
        raise UsageError(
            "reading pictures needs Pillow, which is not installed: pip install 'nnx-nets[images]' "
            "(or pip install pillow), then run this again"
        )
    model = load(model_path)
    n_x = model.n_features
    size = model.metadata.get("image_size")
    if not size:  # trained on npz/csv/h5 features: applying it to pixels would be silently wrong
        raise UsageError(
            f"{model_path} was not trained on images (its metadata has no image_size; it takes {n_x} "
            "features); nnx predict classifies images with models nnx train fitted on images "
            "(a model saved from Python: set model.metadata['image_size'] = SIZE first)"
        )
    if size * size * 3 != n_x:
        raise UsageError(f"{model_path} takes {n_x} features, which is not an RGB image size")
    if model.n_classes == 2 and top is not None:
        raise UsageError(
            f"--top does not apply: {model_path} has two classes, and each line names both; "
            "--threshold sets the cut between them"
        )
    if model.n_classes > 2 and threshold is not None:
        raise UsageError(
            f"--threshold does not apply: {model_path} has {model.n_classes} classes and predicts the "
            "most probable one; --top N lists the N most probable"
        )
    threshold = 0.5 if threshold is None else threshold
    top = 1 if top is None else top
    classes = model.metadata.get("classes") or [str(k) for k in range(model.n_classes)]
    results: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], np.ndarray]] = []  # decoded, not yet classified

    def classify() -> None:
        """One network, one upload of the parameters, for every picture decoded so far."""
        if not pending:
            return
        X = np.stack([pixels.reshape(-1) for _, pixels in pending]).T  # (n_x, k), example-contiguous
        P = model.predict_proba(X, backend=backend).astype(float)
        for j, (entry, _) in enumerate(pending):
            _describe_prediction(entry, P[:, j], model.n_classes, classes, threshold, top)
        pending.clear()

    for name in images:
        entry: dict[str, Any] = {"file": name}
        results.append(entry)
        try:
            pixels = decode_image(read_image_file(name), size)
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc) if not isinstance(exc, FileNotFoundError) else "no such file"
            continue
        pending.append((entry, pixels))
        if len(pending) * n_x >= PREDICT_BATCH_BYTES:  # bounded memory for any number of pictures
            classify()
    classify()
    return results


def _describe_prediction(
    entry: dict[str, Any], proba: np.ndarray, n_classes: int, classes: list, threshold: float, top: int
) -> None:
    """Fill ``entry`` with the class, probability and label of one picture's ``proba``."""
    if n_classes == 2:
        p1 = float(proba[0])
        label = int(p1 > threshold)
        both = [(label, p1 if label else 1.0 - p1), (1 - label, 1.0 - p1 if label else p1)]
        entry.update(probability=both[0][1], label=label, class_name=classes[label])
        entry["top"] = [{"class_name": classes[k], "label": k, "probability": p} for k, p in both]
        return
    order = np.argsort(-proba, kind="stable")[: max(1, top)]
    best = int(order[0])
    entry.update(probability=float(proba[best]), label=best, class_name=classes[best])
    entry["top"] = [
        {"class_name": classes[k], "label": int(k), "probability": float(proba[k])} for k in order
    ]


def describe_results(results: list[dict[str, Any]]) -> str:
    """One line per picture: ``photo.jpg: p=0.9996 label=0 (apple); next: sky 0.0002``, where
    p is the probability of the predicted label (for every number of classes) and the
    runners-up follow with theirs."""
    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{printable(r['file'])}: error: {printable(r['error'])}")
        else:
            name, cls = printable(r["file"]), printable(str(r["class_name"]))
            line = f"{name}: p={r['probability']:.4f} label={r['label']} ({cls})"
            if len(r.get("top", ())) > 1:
                line += "; next: " + ", ".join(
                    f"{printable(str(t['class_name']))} {t['probability']:.4f}" for t in r["top"][1:]
                )
            lines.append(line)
    return "\n".join(lines)
