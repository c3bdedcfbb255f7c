"""``load_csv``: a table of numbers, one example per column (the tutorials' layout, labels in
the last row) or one example per row (labels in the last column, an optional header row).
A table that reads validly both ways is refused: nnx asks which, it never guesses."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from .arrays import ArrayData, check_class_count, describe_values, is_float, open_regular
from .common import MAX_CLASSES, fail, os_reason

CSV_LAYOUTS = ("auto", "rows", "columns")
"""``layout=`` of ``load_csv`` (``--layout`` of ``nnx train`` and ``nnx evaluate``): "columns"
one example per column, labels in the last row; "rows" one example per row, labels in the
last column, optionally under a header row; "auto" whichever of the two the table fits,
refusing a table that fits both."""

_ASK = "say which with --layout rows or --layout columns (in Python: load_csv(path, layout=...))"


def load_csv(path: str | os.PathLike, layout: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """A CSV of numbers as float64 X (n_x, m) and Y (1, m) of class numbers.

    ``layout="columns"``: the one-hidden-layer notebook's n_x + 1 rows by m columns, labels
    in the last row. ``layout="rows"``: m rows by n_x + 1 columns, labels in the last column
    (numbers 0..K-1, or names such as ``cat``, numbered in sorted order), optionally under a
    header row of column names. ``layout="auto"`` (the default) takes the layout the table
    fits; one that fits both (every class 0..K-1 present in the last row and in the last
    column) is a ``DataError`` asking which, as is every other problem: not UTF-8, a cell
    that is not a finite number, a ragged row, an empty file. Each message names the file,
    the line and what to do.
    """
    data = read_csv(path, layout)
    return data.X, data.Y


def read_csv(path: str | os.PathLike, layout: str = "auto") -> ArrayData:
    """``load_csv``'s arrays and, for a rows table with named labels, the class names."""
    if layout not in CSV_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(CSV_LAYOUTS)}, got {layout!r}")
    path = Path(path)
    cells, lines = _cells(path)
    header = None
    if layout != "columns" and len(cells) > 1 and not all(is_float(c) for c in cells[0][:-1]):
        header, cells, lines, layout = cells[0], cells[1:], lines[1:], "rows"  # a row of column names
    if layout == "rows" or (layout == "auto" and _named_labels(cells)):
        return _as_rows(path, cells, lines, header)
    numbers = _numbers(path, cells, lines)
    if layout == "columns":
        return _as_columns(path, numbers, lines)
    by_column = len(numbers) >= 2 and _fits_labels(numbers[-1])
    by_row = numbers.shape[1] >= 2 and _fits_labels(numbers[:, -1])
    if by_column and by_row:
        m_rows, m_cols = numbers.shape
        raise fail(
            path,
            f"reads validly both ways: {m_rows} examples of {m_cols - 1} features (one per row, labels "
            f"in the last column) or {m_cols} examples of {m_rows - 1} features (one per column, labels "
            f"in the last row); {_ASK}",
        )
    if by_row:
        return _as_rows(path, cells, lines, None, numbers)
    return _as_columns(path, numbers, lines)


def _cells(path: Path) -> tuple[list[list[str]], list[int]]:
    """The non-blank rows of the file as stripped text cells, with their line numbers; every
    row as long as the first."""
    with open_regular(path, "CSV") as fh:
        try:
            raw = fh.read()
        except OSError as exc:
            raise fail(path, f"cannot read ({os_reason(exc)})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = f"byte 0x{raw[exc.start]:02x}"
        raise fail(
            path, f"line {line}: not UTF-8 text ({byte}); save it as a plain UTF-8 or ASCII CSV"
        ) from None
    rows: list[list[str]] = []
    lines: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if rows and len(row) != len(rows[0]):
                ragged = f"line {reader.line_num}: {len(row)} columns, expected {len(rows[0])}"
                raise fail(path, f"{ragged} as on line {lines[0]}")
            rows.append([c.strip() for c in row])
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise fail(path, f"line {reader.line_num}: not a CSV row ({exc})") from None
    if not rows:
        raise fail(path, "empty file: expected rows of numbers with the labels in the last row or column")
    return rows, lines


def _named_labels(cells: list[list[str]]) -> bool:
    """Every cell a number but in the last column, which holds a name in some row."""
    return (
        len(cells[0]) >= 2
        and all(is_float(c) for row in cells for c in row[:-1])
        and not all(is_float(row[-1]) for row in cells)
    )


def _numbers(path: Path, cells: list[list[str]], lines: list[int], header: bool = False) -> np.ndarray:
    """The cells as a finite float64 array; DataError naming the first bad cell."""
    for i, row in enumerate(cells):
        for j, c in enumerate(row, start=1):
            if not is_float(c):
                first = i == 0 and not any(is_float(x) for x in row)
                hint = " (a header row? remove it) or use --layout rows" if first and not header else ""
                raise fail(path, f"line {lines[i]}: {c!r} is not a number (column {j}){hint}")
    data = np.array([[float(c) for c in row] for row in cells], dtype=np.float64)
    finite = np.isfinite(data)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise fail(
            path,
            f"line {lines[i]}, column {j + 1}: {data[i, j]} is not a finite number; "
            "remove or fill in that example",
        )
    return data


def _fits_labels(labels: np.ndarray) -> bool:
    """True when ``labels`` are class numbers 0..K-1, K >= 2, each class present."""
    if not ((labels >= 0) & (np.mod(labels, 1) == 0)).all() or labels.max() >= MAX_CLASSES:
        return False
    top = int(labels.max())
    return top >= 1 and len(np.unique(labels)) == top + 1


def _as_columns(path: Path, data: np.ndarray, lines: list[int]) -> ArrayData:
    if len(data) < 2:
        raise fail(path, f"need at least one feature row and the label row, found {len(data)} row(s)")
    labels = data[-1]
    if not ((labels >= 0) & (np.mod(labels, 1) == 0)).all():
        last_column = data[:, -1]
        if data.shape[1] >= 2 and np.isin(last_column, (0.0, 1.0)).all():
            raise fail(
                path,
                "looks transposed: the labels seem to be the last column (one example per row); store "
                "one column per example with the labels in the last row, or use --layout rows",
            )
        bad = labels[(labels < 0) | (np.mod(labels, 1) != 0)]
        raise fail(
            path,
            f"line {lines[-1]} (the label row): labels must be 0 or 1, or class numbers 0..K-1, "
            f"found {describe_values(bad, ok=())}",
        )
    check_class_count(path, labels)
    return ArrayData(np.asfortranarray(data[:-1]), data[-1:].copy())


def _as_rows(
    path: Path,
    cells: list[list[str]],
    lines: list[int],
    header: list[str] | None,
    numbers: np.ndarray | None = None,
) -> ArrayData:
    """One example per row: features in every column but the last, labels (numbers or
    names) in the last."""
    if len(cells[0]) < 2:
        raise fail(path, "one example per row needs at least one feature column and the label column")
    features = _numbers(path, [row[:-1] for row in cells], lines, header is not None)
    names = [row[-1] for row in cells]
    classes: list[str] = []
    if all(is_float(c) for c in names):
        labels = numbers[:, -1] if numbers is not None else np.array([float(c) for c in names])
        bad = ~(np.isfinite(labels) & (labels >= 0) & (np.mod(labels, 1) == 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise fail(
                path,
                f"line {lines[i]} (last column): labels must be 0 or 1, class numbers 0..K-1 or class "
                f"names, found {describe_values(labels[bad], ok=())}",
            )
    else:
        classes = sorted(set(names))
        if len(classes) > MAX_CLASSES:
            raise fail(
                path,
                f"{len(classes):,} class names in the last column; nnx trains on at most {MAX_CLASSES:,}",
            )
        index = {name: k for k, name in enumerate(classes)}
        labels = np.array([index[c] for c in names], dtype=np.float64)
    check_class_count(path, labels)
    return ArrayData(np.asfortranarray(features.T), labels.reshape(1, -1), classes)
