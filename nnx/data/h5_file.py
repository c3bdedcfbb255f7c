"""``load_h5``: the tutorials' h5 datasets (train_set_x / train_set_y ...)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import ArrayData, check_xy, class_names, open_regular, picture_shape
from .common import fail


def load_h5(path: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The deeplearning.ai catvnoncat h5 layout: ``{split}_set_x`` (m, h, w, 3) and
    ``{split}_set_y`` (m,). Returns uint8 X (h*w*3, m) Fortran order and Y (1, m). Needs h5py.

    X may also be float32/float64; other contents (labels not 0/1, NaN, counts that differ,
    integer or text X) are a ``DataError`` naming the file and the fix."""
    data = read_h5(path, split)
    return data.X, data.Y


def read_h5(path: str | os.PathLike, split: str | None = "train") -> ArrayData:
    """``load_h5``'s arrays plus the class names of ``list_classes`` and the picture size of
    uint8 X (m, height, width, 3). ``split=None`` reads ``test_set_*`` when the file has
    them, else ``train_set_*``. A file without ``*_set_x`` may hold ``X`` and ``Y`` (any
    letter case) as an npz does, X (n_x, m) or pictures (m, height, width, 3)."""
    path = Path(path)
    open_regular(path, "HDF5").close()
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading .h5 files needs h5py: pip install h5py") from exc
    try:
        with h5py.File(path, "r") as f:
            keys = list(f.keys())
            if split is None:
                split = "test" if "test_set_x" in f else "train"
            x_name, y_name = f"{split}_set_x", f"{split}_set_y"
            examples_first = True
            if x_name not in f and y_name not in f:
                upper = {k.upper(): k for k in keys if k.upper() in ("X", "Y")}
                if len(upper) == 2 and len([k for k in keys if k.upper() in ("X", "Y")]) == 2:
                    x_name, y_name, examples_first = upper["X"], upper["Y"], False
            if x_name not in f or y_name not in f:
                raise fail(path, f"expected datasets {x_name} and {y_name} (or X and Y), found {keys}")
            for name in (x_name, y_name):
                if not isinstance(f[name], h5py.Dataset):
                    raise fail(path, f"{name} is a group, not a dataset")
            X = np.asarray(f[x_name])
            Y = np.asarray(f[y_name])
            names = None
            if "list_classes" in f and isinstance(f["list_classes"], h5py.Dataset):
                names = np.asarray(f["list_classes"])
    except DataError:
        raise
    except Exception as exc:
        raise fail(path, f"cannot read as HDF5 ({exc}); is it an .h5 file?") from exc
    picture = picture_shape(X)
    X, Y = check_xy(path, X, Y, examples_first=examples_first)
    return ArrayData(X, Y, class_names(path, names, Y), picture)
