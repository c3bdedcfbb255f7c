"""Decoding a listing's images on a pool of threads; a bad file is skipped with its reason."""

from __future__ import annotations

import concurrent.futures
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import UnusableFileError
from .common import os_reason
from .decode import decode_image
from .listing import Entry, Source


def decode_all(
    source: Source, entries: list[Entry], classes: list[str], size: int, workers: int | None, progress: bool
):
    n_x = size * size * 3
    rows = np.empty((len(entries), n_x), dtype=np.uint8)  # C-order rows = example-contiguous X
    ok = np.zeros(len(entries), dtype=bool)
    bad: list[tuple[str, str]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(entries), unit="img", desc="decoding", leave=False)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for i, error in decode_rows(pool, rows, lambda i: source.read(entries[i].name), size):
            if error is None:
                ok[i] = True
            else:
                bad.append((entries[i].name, error))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    keep = np.flatnonzero(ok)
    X = np.ascontiguousarray(rows[keep]).T  # (n_x, m) Fortran order, no copy of the pixels
    Y = np.array([[classes.index(entries[i].label_name) for i in keep]], dtype=np.int64)
    return X, Y, [entries[i].name for i in keep], bad


def decode_rows(
    pool: concurrent.futures.Executor, rows: np.ndarray, read: Callable[[int], bytes], size: int
) -> Iterator[tuple[int, str | None]]:
    """Decode picture i, whose bytes ``read(i)`` gives, into ``rows[i]`` (size*size*3 uint8)
    for every row, on ``pool``'s threads; yields (i, None), or (i, why it could not be read
    or decoded), in row order. One bad file never stops the others."""

    def work(i: int) -> tuple[int, str | None]:
        try:
            rows[i] = decode_image(read(i), size).reshape(-1)
            return i, None
        except Exception as exc:
            return i, read_failure(exc)

    return pool.map(work, range(len(rows)))


def read_failure(exc: Exception) -> str:
    """Why a file could not be read or decoded, in a few words."""
    if isinstance(exc, (UnusableFileError, ValueError)) and not isinstance(exc, UnicodeError):
        return str(exc)
    if isinstance(exc, zipfile.BadZipFile):
        if "CRC" in str(exc):
            return "bad CRC-32: the zip member is damaged"
        return f"damaged zip member ({exc})"
    if isinstance(exc, (zlib.error, EOFError)) or type(exc).__module__ in ("lzma", "_lzma", "bz2", "_bz2"):
        return f"damaged compressed data in the zip ({exc})"
    if isinstance(exc, OSError):
        return f"cannot read ({os_reason(exc)})"
    if isinstance(exc, NotImplementedError):
        return f"a zip feature zipfile cannot read ({exc})"
    return f"unreadable ({type(exc).__name__}: {exc})"
