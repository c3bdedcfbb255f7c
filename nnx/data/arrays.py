"""Checks shared by the array-file loaders (CSV, npz, h5): opening a regular file, X and
Y's shapes, values and class numbers."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import MAX_CLASSES, O_BINARY, O_NONBLOCK, fail, file_kind, os_reason, safe_name


@dataclass
class ArrayData:
    """A labelled array file as ``nnx train`` and ``nnx evaluate`` read it: X (n_x, m), Y (1, m)
    of class numbers, the class names the file states (``[]`` when it states none: the
    classes are then the numbers 0..K-1) and, for pictures, their (height, width) (None
    otherwise)."""

    X: np.ndarray
    Y: np.ndarray
    classes: list[str] = field(default_factory=list)
    picture: tuple[int, int] | None = None


def picture_shape(X: np.ndarray) -> tuple[int, int] | None:
    """(height, width) of uint8 pictures stored as (m, height, width, 3); None otherwise."""
    if X.dtype == np.uint8 and X.ndim == 4 and X.shape[-1] == 3 and min(X.shape[1:3]) >= 1:
        return int(X.shape[1]), int(X.shape[2])
    return None


def class_names(path: Path, names: np.ndarray | None, Y: np.ndarray) -> list[str]:
    """The class names an array file stores (text or UTF-8 bytes, one per class number):
    [] without any; DataError when there are fewer names than classes or they repeat."""
    if names is None:
        return []
    names = np.asarray(names).reshape(-1)
    if names.dtype.kind not in "SU":
        raise fail(path, f"the class names hold {names.dtype}, not text; store them as strings")
    out = []
    for name in names.tolist():
        if isinstance(name, bytes):
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError:
                raise fail(path, f"class name {name!r} is not UTF-8 text") from None
        out.append(name.strip())
    if len(set(out)) != len(out):
        raise fail(path, f"the class names repeat ({out[:10]}); give each class its own name")
    needed = int(Y.max()) + 1
    if len(out) < max(2, needed):
        raise fail(
            path,
            f"{len(out)} class name(s) {out[:10]} for labels up to {needed - 1}; give one name per class",
        )
    return out


def open_regular(path: Path, what: str) -> Any:
    """Open a dataset file for reading in binary; FileNotFoundError if missing, DataError for
    a folder, FIFO or device (never opened) or a file that cannot be read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(safe_name(f"no {what} file at {path}")) from None
    except OSError as exc:
        raise fail(path, f"cannot read ({os_reason(exc)})") from None
    if not stat.S_ISREG(st.st_mode):
        raise fail(path, f"{file_kind(st.st_mode)}, not a regular file; expected the {what} file itself")
    try:
        fd = os.open(path, os.O_RDONLY | O_NONBLOCK | O_BINARY)
        return open(fd, "rb")
    except OSError as exc:
        raise fail(path, f"cannot read ({os_reason(exc)}); check its permissions") from None


def check_class_count(path: Path, Y: np.ndarray) -> None:
    """Labels 0..K-1 (already checked to be whole numbers >= 0) with K at most MAX_CLASSES."""
    top = Y.max()
    if top >= MAX_CLASSES:
        raise fail(
            path,
            f"the largest label is {top:.15g}, so there would be {int(top) + 1:,} classes; nnx trains on "
            f"at most {MAX_CLASSES:,} classes numbered 0..K-1: renumber the labels 0..K-1",
        )


def is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def describe_values(a: np.ndarray, ok: tuple = (0, 1), most: int = 5) -> str:
    """The distinct values of ``a`` outside ``ok``, for a message: "2, 3 and 7 more"."""
    bad = np.unique(a[~np.isin(a, ok)])
    shown = ", ".join(
        f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in bad[:most].tolist()
    )
    return shown + (f" and {len(bad) - most} more" if len(bad) > most else "")


def check_xy(
    path: Path, X: np.ndarray, Y: np.ndarray, examples_first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """X and Y of a stored dataset checked and shaped as (n_x, m) and (1, m); DataError naming
    the file and the fix for whatever nnx cannot train on.

    With ``examples_first`` (the h5 layout) X is (m, ...) and is reshaped to (n_x, m) here.
    """
    for name, a in (("X", X), ("Y", Y)):
        if a.dtype.kind not in "biuf":
            kind = {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers"}.get(
                a.dtype.kind, f"dtype {a.dtype}"
            )
            raise fail(path, f"{name} holds {kind} ({a.dtype}); store numbers, e.g. {name}.astype('float32')")
        if a.ndim == 0:
            raise fail(path, f"{name} is a single number; store X as (n_x, m) and Y as (1, m)")
    if Y.ndim == 2 and 1 in Y.shape or Y.ndim == 1:
        Y = Y.reshape(1, -1)
    else:
        raise fail(path, f"Y has shape {Y.shape}; store the labels as (1, m) or (m,)")
    m = Y.shape[1]
    if m == 0:
        raise fail(path, "no examples: Y is empty")
    if not examples_first and picture_shape(X) is not None and X.shape[0] == m:
        examples_first = True  # uint8 pictures (m, height, width, 3), as the tutorials store them
    if examples_first:
        if X.ndim < 2:
            raise fail(path, f"X has shape {X.shape}; store it as (m, height, width, 3) or (m, n_x)")
        if X.shape[0] != m:
            hint = " (it looks transposed: put the examples first)" if X.shape[-1] == m else ""
            raise fail(path, f"X holds {X.shape[0]} examples but Y has {m} labels{hint}")
        X = np.ascontiguousarray(X.reshape(m, -1)).T
    if X.ndim == 1:
        raise fail(
            path, f"X is 1-D (shape {X.shape}); store X as (n_x, m), e.g. X.reshape(1, -1) for one feature"
        )
    if X.ndim > 2:
        hint = ", e.g. X.reshape(m, -1).T when the examples come first" if X.shape[0] == m else ""
        raise fail(path, f"X has shape {X.shape}; store X as (n_x, m){hint}")
    if X.shape[1] != m:
        if X.shape[0] == m:
            raise fail(
                path,
                f"X has shape {X.shape} and Y has {m} labels: X looks transposed; store X as (n_x, m) (X.T)",
            )
        raise fail(path, f"X has {X.shape[1]} examples (columns) but Y has {m} labels; they must match")
    if X.shape[0] == 0:
        raise fail(path, f"X has no features (shape {X.shape})")
    if X.dtype not in (np.float32, np.float64, np.uint8):
        kind = "integers" if X.dtype.kind in "iu" else "booleans" if X.dtype.kind == "b" else str(X.dtype)
        raise fail(
            path,
            f"X holds {kind} ({X.dtype}); nnx trains on float32/float64 X or uint8 pixels: "
            "store X.astype('float32')",
        )
    if X.dtype.kind == "f":
        finite = np.isfinite(X)
        if not finite.all():
            i, j = np.argwhere(~finite)[0]
            raise fail(
                path,
                f"X[{i}, {j}] is {X[i, j]} ({int(finite.size - finite.sum())} value(s) in X are NaN or inf); "
                "remove or fill in those examples",
            )
    with np.errstate(invalid="ignore"):  # inf/NaN labels are reported below, not warned about
        integral = np.isfinite(Y) & (Y >= 0) & (np.mod(Y, 1) == 0) if Y.dtype.kind == "f" else Y >= 0
    if not integral.all():
        raise fail(
            path,
            "labels (Y) must be 0 or 1, or class numbers 0..K-1, found "
            f"{describe_values(Y[~integral], ok=())}; "
            "map the classes to 0, 1, ...",
        )
    check_class_count(path, Y)
    return X, Y
