"""``load_csv``: the tutorials' CSV layout (one feature per row, labels last)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from .arrays import check_class_count, describe_values, is_float, open_regular
from .common import fail, os_reason


def load_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The one-hidden-layer notebook's CSV: n_x + 1 rows by m columns, labels in the last row.

    Returns float64 X (n_x, m) and Y (1, m). The file must be UTF-8 (or ASCII) text; a cell
    that is not a finite number, a ragged row, labels other than 0/1 or an empty file is a
    ``DataError`` naming the file, the line and what to do.
    """
    path = Path(path)
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
    rows: list[list[float]] = []
    lines: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    line_no = 0
    try:
        for row in reader:
            line_no = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            try:
                values = [float(c) for c in row]
            except ValueError:
                col, bad = next((j, c) for j, c in enumerate(row, start=1) if not is_float(c))
                header = not rows and not any(is_float(c) for c in row)
                hint = " (a header row? remove it)" if header else ""
                raise fail(path, f"line {line_no}: {bad!r} is not a number (column {col}){hint}") from None
            if rows and len(values) != len(rows[0]):
                ragged = f"line {line_no}: {len(values)} columns, expected {len(rows[0])}"
                raise fail(path, f"{ragged} as on line {lines[0]}")
            rows.append(values)
            lines.append(line_no)
    except csv.Error as exc:
        raise fail(path, f"line {reader.line_num}: not a CSV row ({exc})") from None
    if not rows:
        raise fail(path, "empty file: expected feature rows and a label row of numbers")
    if len(rows) < 2:
        raise fail(path, f"need at least one feature row and the label row, found {len(rows)} row(s)")
    data = np.array(rows, dtype=np.float64)
    finite = np.isfinite(data)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise fail(
            path,
            f"line {lines[i]}, column {j + 1}: {data[i, j]} is not a finite number; "
            "remove or fill in that example",
        )
    labels = data[-1]
    if not ((labels >= 0) & (np.mod(labels, 1) == 0)).all():
        last_column = data[:, -1]
        if data.shape[1] >= 2 and np.isin(last_column, (0.0, 1.0)).all():
            raise fail(
                path,
                "looks transposed: the labels seem to be the last column (one example per row); store "
                "one column per example with the labels in the last row (transpose the table)",
            )
        bad = labels[(labels < 0) | (np.mod(labels, 1) != 0)]
        raise fail(
            path,
            f"line {lines[-1]} (the label row): labels must be 0 or 1, or class numbers 0..K-1, "
            f"found {describe_values(bad, ok=())}",
        )
    check_class_count(path, labels)
    return np.asfortranarray(data[:-1]), data[-1:].copy()
