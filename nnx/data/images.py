"""``load_images``: an image folder or zip to uint8 X (n_x, m) and labels, with the cache."""

from __future__ import annotations

import importlib.util
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import check_target
from .builtin import train_test_split
from .cache import cache_key, read_cache, write_cache
from .common import LAYOUTS, fail, log, os_reason, safe_name
from .listing import Source, classify
from .parallel import decode_all


@dataclass
class ImageData:
    """What ``load_images`` returns.

    X_train/X_val are uint8 (size*size*3, m) in Fortran order, Y_train/Y_val (1, m) int64.
    ``classes`` maps label -> class name (for two classes [negative, positive]); ``skipped`` lists every
    file that could not be used as (name, reason).
    """

    X_train: np.ndarray
    Y_train: np.ndarray
    X_val: np.ndarray
    Y_val: np.ndarray
    classes: list[str]
    files: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    from_cache: bool = False


# -------------------------------------------------------------------- loader
def load_images(
    path: str | os.PathLike,
    size: int = 64,
    positive: str | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    cache: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    log_skipped: bool = True,
) -> ImageData:
    """Load an image folder or zip of two or more classes into uint8 X (size*size*3, m) and
    Y (1, m) of class numbers.

    Layouts: CLASS.N.ext files in one folder (Kaggle dogs-vs-cats) or one sub-folder per
    class. The CLASS.N.ext names win when they give exactly two classes, or three or more
    with every image in one folder; otherwise each image's parent folder is its class.
    Classes are numbered in sorted order. With two classes ``positive`` names the class
    labelled 1 (default: the second in sorted order, e.g. "dog" for cat/dog). ``val_split``
    holds out a stratified, seeded share (0 for none). ``cache`` is an npz file reused
    while the source files and ``size`` are unchanged (an unreadable or inconsistent
    cache nnx wrote is rebuilt). Decoding runs on ``workers`` threads (default: all
    cores). Pictures are turned upright by their EXIF orientation.

    No single bad file aborts the load: each is skipped and listed in ``skipped`` as
    (name, reason) and in the log: files that cannot be decoded; files over
    ``MAX_IMAGE_BYTES`` (64 MiB; checked before reading); dangling symlinks, symlink loops,
    FIFOs, devices and sockets (never opened); files and folders that cannot be read (e.g.
    permission denied); names that are not valid UTF-8; and in a zip, members with a bad
    CRC, encryption, an unsupported compression method or a name that several members
    share (none of them is read), symlinks, and names that would escape the folder. An
    unflagged zip name is read as UTF-8 when its bytes are valid UTF-8 and skipped
    otherwise. Symlinked folders are followed, each folder once. Hidden files and folders
    and ``__MACOSX`` are ignored. Names in log and error messages have their control
    characters escaped (``safe_name``); ``skipped`` and ``files`` keep them as they are.
    ``log_skipped=False`` leaves the skipped files out of the log (for a caller that lists
    them itself, as ``nnx train`` does).

    Decoding needs Pillow (the ``images`` extra); without it a ``DataError`` says so
    before anything is read.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(safe_name(f"no image folder or zip at {path}"))
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must lie in [0, 1), got {val_split}")
    if path.is_file():
        try:
            with open(path, "rb") as fh:
                is_zip = zipfile.is_zipfile(fh)
        except OSError as exc:
            raise fail(path, f"cannot read ({os_reason(exc)}); check its permissions") from None
    else:
        is_zip = False
    if not path.is_dir() and not is_zip:
        raise fail(path, "neither a folder nor a zip file; expected " + " or ".join(LAYOUTS))
    if importlib.util.find_spec("PIL") is None:
        raise fail(
            path,
            "reading pictures needs Pillow, which is not installed: pip install 'nnx-nets[images]' "
            "(or pip install pillow), then run this again",
        )
    if cache is not None:  # a cache path holding anything but nnx's cache is never written over
        check_target(cache, "cache", label="cache")
    source = Source(path)
    try:
        try:
            listed = source.list()
        except DataError:
            raise
        except Exception as exc:  # a damaged archive no check above foresaw: still one line
            raise fail(path, f"cannot list its files ({type(exc).__name__}: {exc})") from None
        entries, skipped, layout = classify(listed)
        skipped = sorted(source.problems + skipped)
        classes = sorted({e.label_name for e in entries})
        if len(classes) < 2:
            found = ", ".join(classes) or "none"
            raise fail(
                path,
                f"need at least two classes, found {len(classes)} ({found}). Layouts understood: "
                + "; ".join(LAYOUTS),
            )
        if positive is not None and len(classes) > 2:
            raise fail(
                path,
                f"positive class {positive!r} given, but there are {len(classes)} classes; "
                "positive only chooses label 1 of two classes",
            )
        if positive is not None:
            if positive not in classes:  # exact match first, else case-insensitive if unambiguous
                matches = [c for c in classes if c.lower() == positive.lower()]
                if len(matches) != 1:
                    raise fail(path, f"positive class {positive!r} not among the classes found: {classes}")
                positive = matches[0]
            classes = [c for c in classes if c != positive] + [positive]
        key = cache_key(path, entries, size, classes)
        n_x = size * size * 3
        cached = read_cache(Path(cache), key, entries, classes, n_x) if cache is not None else None
        if cached is not None:
            X, Y, files, bad = cached
            skipped = skipped + bad  # this listing's problems, the cache's decoding failures
        else:
            X, Y, files, bad = decode_all(source, entries, classes, size, workers, progress)
            skipped = skipped + bad
            if not files:
                shown = "; ".join(f"{safe_name(n)} ({safe_name(r)})" for n, r in skipped[:5])
                more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
                raise fail(
                    path,
                    f"no image could be read; {len(skipped)} file(s) skipped: {shown}{more}. Layouts "
                    "understood: " + "; ".join(LAYOUTS),
                )
            if cache is not None:
                write_cache(Path(cache), key, X, Y, files, bad)
    finally:
        source.close()
    if skipped and log_skipped:
        shown = ", ".join(f"{safe_name(n)} ({safe_name(r)})" for n, r in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        log.warning("skipped %d file(s) in %s: %s%s", len(skipped), safe_name(path), shown, more)
    log.info(
        "loaded %d images from %s (%s); label 1 = %s",
        len(files),
        safe_name(path),
        layout,
        safe_name(classes[1]),
    )
    if val_split > 0 and len(files) >= 2:
        Xtr, Ytr, Xv, Yv = train_test_split(X, Y, test_fraction=val_split, seed=seed)
    else:
        Xtr, Ytr = X, Y
        Xv, Yv = X[:, :0], Y[:, :0]
    return ImageData(Xtr, Ytr, Xv, Yv, classes, list(files), [tuple(s) for s in skipped], cached is not None)
