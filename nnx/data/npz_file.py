"""``load_npz``: X and Y arrays from an .npz file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import ArrayData, check_xy, class_names, open_regular, picture_shape
from .common import fail


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A plain npz holding X (n_x, m) and Y (1, m) or (m,); read without pickle.

    X must be float32/float64 (or uint8 pixels, also as (m, height, width, 3)), finite,
    with one column per example; Y 0/1 labels (or class numbers 0..K-1), one per example.
    The names are X and Y in either case (``x``, ``y``). Anything else is a ``DataError``
    naming the file and the fix (object arrays, which need pickle, are refused).
    """
    data = read_npz(path)
    return data.X, data.Y


def _named(path: Path, files: list[str], name: str) -> str | None:
    """The one array called ``name`` in any letter case; None if absent, DataError if two."""
    found = [f for f in files if f.lower() == name.lower()]
    if len(found) > 1:
        raise fail(path, f"arrays {' and '.join(found)} both match {name}; keep one of them")
    return found[0] if found else None


def read_npz(path: str | os.PathLike) -> ArrayData:
    """``load_npz``'s arrays plus what the file states about them: the class names of an
    optional text array ``classes`` (one per class number) and the picture size of uint8
    X (m, height, width, 3)."""
    path = Path(path)
    with open_regular(path, "npz") as fh:
        head = fh.read(8)
    if not head:
        raise fail(path, "empty file (0 bytes); save the data with np.savez(path, X=X, Y=Y)")
    if head.startswith(b"\x93NUMPY"):
        raise fail(path, "a single .npy array, not an npz of X and Y; save with np.savez(path, X=X, Y=Y)")
    if not head.startswith(b"PK"):
        raise fail(path, "not an npz file (not a zip archive); save the data with np.savez(path, X=X, Y=Y)")
    try:
        with np.load(path, allow_pickle=False) as data:
            x_name, y_name = _named(path, data.files, "X"), _named(path, data.files, "Y")
            if x_name is None or y_name is None:
                raise fail(
                    path,
                    f"an npz dataset needs arrays named X and Y (or x and y), found {data.files}; "
                    "save it with np.savez(path, X=X, Y=Y)",
                )
            X, Y = data[x_name], data[y_name]
            c_name = _named(path, data.files, "classes")
            names = data[c_name] if c_name is not None else None
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise fail(
                path,
                "X or Y is an object array, which needs pickle: refused (loading it could run code); "
                "save numeric arrays, e.g. X.astype('float32')",
            ) from None
        raise fail(path, f"cannot read as npz (truncated or corrupt?): {exc}") from exc
    except Exception as exc:
        raise fail(path, f"cannot read as npz (truncated or corrupt?): {exc}") from exc
    picture = picture_shape(X)
    X, Y = check_xy(path, X, Y)
    return ArrayData(X, Y, class_names(path, names, Y), picture)
