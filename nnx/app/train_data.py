"""The data of an ``nnx train`` run: the built-in set or whatever ``--data`` names (image
folder or zip, npz, CSV, h5), split for validation, checked to hold every class, and
fingerprinted so that a resume trains on the same data only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import ArrayData, load_images, read_csv, read_h5, read_npz
from ..data.builtin import SYNTHETIC_CLASSES, synthetic_images, train_test_split
from ..errors import UsageError
from ..files import printable
from .run_config import TrainConfig


@dataclass
class Dataset:
    X: np.ndarray
    Y: np.ndarray
    Xv: np.ndarray | None
    Yv: np.ndarray | None
    classes: list[str]
    description: str
    image_size: int | None = None
    skipped: list = field(default_factory=list)


def load_data(cfg: TrainConfig, progress: bool = True) -> Dataset:
    """The training (and validation) data named by ``cfg.data``, or the embedded default."""
    if cfg.data is None:
        X, Y = synthetic_images(m=259, size=cfg.size, seed=1)
        classes = list(SYNTHETIC_CLASSES)
        if cfg.positive is not None and cfg.positive != classes[1]:  # label 1 is --positive
            Y, classes = 1 - Y, classes[::-1]
        Xtr, Ytr, Xv, Yv = _split(X, Y, cfg)
        return Dataset(
            Xtr,
            Ytr,
            Xv,
            Yv,
            classes,
            "embedded SYNTHETIC image set (generated, no download)",
            cfg.size,
        )
    path = Path(cfg.data)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zip":
        data = load_images(
            path,
            size=cfg.size,
            positive=cfg.positive,
            val_split=cfg.val_split,
            seed=cfg.seed,
            cache=cfg.cache,
            progress=progress,
            log_skipped=False,  # nnx train lists them itself, once
        )
        has_val = data.X_val.shape[1] > 0
        return Dataset(
            data.X_train,
            data.Y_train,
            data.X_val if has_val else None,
            data.Y_val if has_val else None,
            data.classes,
            f"{len(data.files)} images from {path}",
            cfg.size,
            data.skipped,
        )
    if cfg.positive is not None:
        raise UsageError(
            f"--positive names a class of an image folder or zip; {path.name} holds class numbers already"
        )
    found = read_array_file(path, cfg.layout, "train")
    X, Y = found.X, found.Y
    Xtr, Ytr, Xv, Yv = _split(X, Y, cfg)
    return Dataset(
        Xtr,
        Ytr,
        Xv,
        Yv,
        array_classes(found),
        f"{X.shape[1]} examples from {path}",
        square_picture(found),
    )


def read_array_file(path: Path, layout: str = "auto", split: str | None = "train") -> ArrayData:
    """An npz, CSV or h5 file (by its suffix) as ``ArrayData``; UsageError for another suffix.
    ``layout`` is the CSV's (``nnx.data.CSV_LAYOUTS``); ``split`` the h5 file's
    ``{split}_set_*`` datasets (None: test_set_* when present, else train_set_*)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_npz(path)
    if suffix == ".csv":
        return read_csv(path, layout)
    if suffix in (".h5", ".hdf5"):
        return read_h5(path, split)
    raise UsageError(f"{printable(str(path))}: expected a folder, .zip, .npz, .csv or .h5 file")


def array_classes(found: ArrayData) -> list[str]:
    """The class names an array file states, else the class numbers as names."""
    if found.classes:
        return list(found.classes)
    return [str(k) for k in range(max(2, int(np.max(found.Y)) + 1))]


def square_picture(found: ArrayData) -> int | None:
    """The side of the file's square pictures (the model's image_size), else None."""
    if found.picture is not None and found.picture[0] == found.picture[1]:
        return found.picture[0]
    return None


def _split(X, Y, cfg):
    if cfg.val_split > 0 and X.shape[1] >= 4:
        return train_test_split(X, np.asarray(Y).reshape(1, -1), test_fraction=cfg.val_split, seed=cfg.seed)
    return X, Y, None, None


def check_splits(data: Dataset, cfg: TrainConfig) -> None:
    """Every class must be present in the training split and, for two classes, in the
    validation split too; otherwise the run would train or score on one class only."""
    labels = [np.unique(np.asarray(Y)) for Y in (data.Y, data.Yv) if Y is not None]
    present_all = set(np.unique(np.concatenate(labels)).tolist())
    source = f"--data {printable(cfg.data)}" if cfg.data is not None else "the data"
    if len(present_all) < 2:
        only = ", ".join(printable(data.classes[int(k)]) for k in sorted(present_all))
        raise UsageError(
            f"{source} holds examples of one class only ({only}); a classifier needs examples of at "
            "least two classes"
        )
    for label, name in enumerate(data.classes):
        if label not in present_all:
            raise UsageError(
                f"{source} has no example of class {name!r} (labels are numbered 0..K-1 by their "
                f"values, here 0..{len(data.classes) - 1}); renumber the labels 0..K-1"
            )
    parts = [("training", data.Y)]
    if data.Yv is not None and len(data.classes) == 2:
        parts.append(("validation", data.Yv))
    for part, Y in parts:
        present = set(np.unique(np.asarray(Y)).tolist())
        for label, name in enumerate(data.classes):
            if label not in present:
                fix = (
                    "use a smaller --val-split (or 0)"
                    if cfg.val_split > 0
                    else "add examples of that class to the data"
                )
                raise UsageError(
                    f"the {part} split has no example of class {name!r} "
                    f"({Y.shape[1]} example(s), --val-split {cfg.val_split}); {fix}"
                )


def data_fingerprint(data: Dataset) -> str:
    """A digest of the training and validation arrays (shapes, dtypes and every byte):
    a resumed run must train on exactly the data its checkpoint was trained on."""
    h = hashlib.blake2b(digest_size=20)
    for arr in (data.X, data.Y, data.Xv, data.Yv):
        if arr is None:
            h.update(b"none;")
            continue
        arr = np.asarray(arr)
        h.update(f"{arr.shape};{arr.dtype.str};".encode())
        cols = np.asfortranarray(arr)  # one canonical byte order whatever the layout
        h.update(memoryview(cols.reshape(-1, order="F")).cast("B"))
    return h.hexdigest()
