"""``load_npz``: X and Y arrays from an .npz file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import check_xy, open_regular
from .common import fail


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A plain npz holding X (n_x, m) and Y (1, m) or (m,); read without pickle.

    X must be float32/float64 (or uint8 pixels), finite, with one column per example; Y
    0/1 labels, one per column of X. Anything else is a ``DataError`` naming the file and
    the fix (object arrays, which need pickle, are refused).
    """
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
            if "X" not in data.files or "Y" not in data.files:
                raise fail(path, f"an npz dataset needs arrays named X and Y, found {data.files}")
            X, Y = data["X"], data["Y"]
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
    return check_xy(path, X, Y)
