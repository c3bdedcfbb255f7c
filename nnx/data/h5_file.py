"""``load_h5``: the tutorials' h5 datasets (train_set_x / train_set_y ...)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import check_xy, open_regular
from .common import fail


def load_h5(path: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The deeplearning.ai catvnoncat h5 layout: ``{split}_set_x`` (m, h, w, 3) and
    ``{split}_set_y`` (m,). Returns uint8 X (h*w*3, m) Fortran order and Y (1, m). Needs h5py.

    X may also be float32/float64; other contents (labels not 0/1, NaN, counts that differ,
    integer or text X) are a ``DataError`` naming the file and the fix."""
    path = Path(path)
    open_regular(path, "HDF5").close()
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading .h5 files needs h5py: pip install h5py") from exc
    try:
        with h5py.File(path, "r") as f:
            x_name, y_name = f"{split}_set_x", f"{split}_set_y"
            if x_name not in f or y_name not in f:
                raise fail(path, f"expected datasets {x_name} and {y_name}, found {list(f.keys())}")
            for name in (x_name, y_name):
                if not isinstance(f[name], h5py.Dataset):
                    raise fail(path, f"{name} is a group, not a dataset")
            X = np.asarray(f[x_name])
            Y = np.asarray(f[y_name])
    except DataError:
        raise
    except Exception as exc:
        raise fail(path, f"cannot read as HDF5 ({exc}); is it an .h5 file?") from exc
    return check_xy(path, X, Y, examples_first=True)
