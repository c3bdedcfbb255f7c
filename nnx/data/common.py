"""What every data source shares: the limits, the one-line messages naming a file, and
reading one regular file without ever blocking on a FIFO or device."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from ..errors import DataError, UnusableFileError
from ..files import printable

log = logging.getLogger("nnx")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LAYOUTS = (
    "a folder (or zip) of files named CLASS.N.ext, e.g. cat.1.jpg / dog.1.jpg (Kaggle dogs-vs-cats)",
    "a folder (or zip) with one sub-folder per class, e.g. cat/1.jpg, dog/1.jpg",
)

MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""The largest image file or zip member ``load_images`` reads (64 MiB). The size is checked
before anything is read (and the read itself stops one byte past it); larger ones are
skipped and listed."""
MAX_CLASSES = 10_000  # labels of npz, CSV and h5 data: class numbers 0..MAX_CLASSES-1

O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # never block on a FIFO swapped in after listing
O_BINARY = getattr(os, "O_BINARY", 0)

safe_name = printable  # kept under this name for callers of nnx.data


def fail(path: object, text: str) -> DataError:
    """A DataError reading "PATH: TEXT" on one line, control characters escaped."""
    return DataError(safe_name(f"{path}: {text}"))


def os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a surrogate escape: the name's bytes are not UTF-8
        return False


def mib(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def read_regular(path: Path, limit: int) -> bytes:
    """Read a regular file, at most limit + 1 bytes; never blocks on a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | O_NONBLOCK | O_BINARY)
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnusableFileError(f"{file_kind(st.st_mode)}, not a regular file; not read")
        if st.st_size > limit:
            raise UnusableFileError(f"{st.st_size} bytes, over the {mib(limit)} limit per image")
        return fh.read(limit + 1)


def read_image_file(path: str | os.PathLike) -> bytes:
    """The bytes of one image file, read as ``load_images`` reads a folder's files: a
    FIFO, device or folder is never opened and a file over ``MAX_IMAGE_BYTES`` is not
    read (ValueError); a missing file is FileNotFoundError."""
    try:
        data = read_regular(Path(path), MAX_IMAGE_BYTES)
    except UnusableFileError as exc:
        raise ValueError(str(exc)) from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"over the {mib(MAX_IMAGE_BYTES)} limit per image")
    return data
