"""The npz cache of decoded images, reused while the source is unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np

from ..files import CACHE_FORMAT, atomic_write
from .common import file_kind, log, os_reason, safe_name
from .listing import Entry

CACHE_VERSION = 2  # 2: the cache's skipped list holds only the images that failed to decode


# ------------------------------------------------------------------- caching
def cache_key(source: Path, entries: list[Entry], size: int, classes: list[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, str(source.resolve()), size, classes]).encode())
    if source.is_file():  # a zip: its own size and time stand for its members'
        st = source.stat()
        h.update(f"{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for e in entries:
        h.update(f"{e.name}\0{e.size}\0{e.mtime}\0".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def read_cache(
    path: Path, key: str, entries: list[Entry], classes: list[str], n_x: int
) -> tuple[np.ndarray, np.ndarray, list[str], list] | None:
    """The cached (X, Y, files, failed), or None when there is no usable cache.

    ``failed`` lists the images that could not be decoded, as (name, reason). A cache that
    is unreadable, foreign or stale is never trusted: besides the key, its files and failed
    images must be exactly the images listed, and its X and Y must have the shapes, dtypes
    and labels that those images give.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring image cache %s (%s); rebuilding", safe_name(path), safe_name(os_reason(exc)))
        return None
    if not stat.S_ISREG(st.st_mode):
        log.warning(
            "ignoring image cache %s: %s, not a file; rebuilding", safe_name(path), file_kind(st.st_mode)
        )
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"][()]))
            if not isinstance(meta, dict) or meta.get("key") != key:
                log.info("image cache %s is stale (source or size changed); rebuilding", safe_name(path))
                return None
            files, skipped = meta["files"], meta["skipped"]
            m = len(files)
            label = {e.name: classes.index(e.label_name) for e in entries}
            if not all(isinstance(f, str) for f in files) or len(set(files)) != m:
                raise ValueError("its file list is malformed")
            if not all(
                isinstance(s, list) and len(s) == 2 and all(isinstance(t, str) for t in s) for s in skipped
            ):
                raise ValueError("its skipped list is malformed")
            if sorted(files + [name for name, _ in skipped]) != sorted(label):
                raise ValueError("its images are not the images found")
            shapes = {k: data.zip.getinfo(f"{k}.npy").file_size for k in ("X", "Y")}
            if shapes["X"] > n_x * m + 4096 or shapes["Y"] > 8 * m + 4096:  # before reading them
                raise ValueError("its arrays are larger than the images found")
            X, Y = data["X"], data["Y"]
            if X.dtype != np.uint8 or X.shape != (n_x, m):
                raise ValueError(f"X is {X.dtype} {X.shape}, expected uint8 {(n_x, m)}")
            if Y.dtype != np.int64 or Y.shape != (1, m):
                raise ValueError(f"Y is {Y.dtype} {Y.shape}, expected int64 {(1, m)}")
            if not np.array_equal(Y[0], [label[f] for f in files]):
                raise ValueError("its labels do not match the images' classes")
            return np.asfortranarray(X), Y, files, [tuple(s) for s in skipped]
    except Exception as exc:  # corrupt, foreign or inconsistent cache: rebuild it
        log.warning("ignoring image cache %s (%s); rebuilding", safe_name(path), safe_name(exc))
        return None


def write_cache(path: Path, key: str, X: np.ndarray, Y: np.ndarray, files: list[str], failed: list) -> None:
    meta = json.dumps({"format": CACHE_FORMAT, "key": key, "files": files, "skipped": failed})
    try:
        atomic_write(path, lambda fh: np.savez(fh, X=X, Y=Y, meta=np.array(meta)), kind="cache")
    except OSError as exc:
        log.warning(
            "could not write image cache %s (%s); continuing without it",
            safe_name(path),
            safe_name(os_reason(exc)),
        )
