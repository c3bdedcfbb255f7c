"""Loading data: image folders and zips (Pillow), npz caches, the tutorials' CSV and h5.

Every loader returns X as (n_x, m) example-contiguous (Fortran order) and Y as (1, m).
Images come back as uint8 pixels; nnx applies the 1/255 itself when training.

No bad input file aborts an image load: it is skipped and listed with the reason. A bad
CSV, npz or h5 dataset raises ``DataError`` with a one-line message that names the file
and what to do; a missing path raises ``FileNotFoundError``.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import csv
import errno
import hashlib
import io
import json
import logging
import os
import re
import stat
import struct
import threading
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .datasets import train_test_split
from .errors import DataError, UnusableFileError
from .files import CACHE_FORMAT, atomic_write, check_target, printable

log = logging.getLogger("nnx")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LAYOUTS = (
    "a folder (or zip) of files named CLASS.N.ext, e.g. cat.1.jpg / dog.1.jpg (Kaggle dogs-vs-cats)",
    "a folder (or zip) with one sub-folder per class, e.g. cat/1.jpg, dog/1.jpg",
)
CACHE_VERSION = 2  # 2: the cache's skipped list holds only the images that failed to decode
_KAGGLE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\.[^/]*\.[A-Za-z0-9]+$")

MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_CLASSES = 10_000  # labels of npz, CSV and h5 data: class numbers 0..MAX_CLASSES-1
"""The largest image file or zip member ``load_images`` reads (64 MiB). The size is checked
before anything is read (and the read itself stops one byte past it); larger ones are
skipped and listed."""

# Compression methods this Python's zipfile can read (stored and deflate always; bzip2
# and LZMA when the interpreter was built with them).
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
try:
    import bz2  # noqa: F401

    _ZIP_METHODS[zipfile.ZIP_BZIP2] = "bzip2"
except ImportError:  # pragma: no cover - interpreter built without bz2
    pass
try:
    import lzma  # noqa: F401

    _ZIP_METHODS[zipfile.ZIP_LZMA] = "lzma"
except ImportError:  # pragma: no cover - interpreter built without lzma
    pass
_ZIP_METHOD_NAMES = {
    1: "shrink",
    6: "implode",
    9: "deflate64",
    93: "zstandard",
    95: "xz",
    98: "ppmd",
    99: "AES",
}
_ZIP_FLAG_ENCRYPTED = 0x1 | 0x40  # traditional PKWARE and strong encryption
_ZIP_FLAG_PATCHED = 0x20
_ZIP_FLAG_UTF8 = 0x800
_ZIP_MAX_VERSION = getattr(zipfile, "MAX_EXTRACT_VERSION", 63)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # never block on a FIFO swapped in after listing
_O_BINARY = getattr(os, "O_BINARY", 0)


safe_name = printable  # kept under this name for callers of nnx.data


def _error(path: object, text: str) -> DataError:
    """A DataError reading "PATH: TEXT" on one line, control characters escaped."""
    return DataError(safe_name(f"{path}: {text}"))


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _file_kind(mode: int) -> str:
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


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a surrogate escape: the name's bytes are not UTF-8
        return False


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


# ------------------------------------------------------------------ sources
@dataclass
class _Entry:
    name: str  # path relative to the source, '/'-separated
    label_name: str
    size: int
    mtime: float


class _Source:
    """A folder or a zip file, listed once; reads member bytes (thread-safe).

    ``list()`` returns (name, size, mtime, problem) for every file, ``problem`` being None
    or why the file cannot be used; ``problems`` collects what is skipped whatever its name
    (zip members that would escape the folder, folders that cannot be entered).
    """

    def __init__(self, path: Path):
        self.path = path
        self.is_zip = not path.is_dir()
        self._lock = threading.Lock()
        self._raw = None
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, zipfile.ZipInfo] = {}
        self._hidden: dict[int, str] = {}  # central-directory index -> why it is skipped
        self.problems: list[tuple[str, str]] = []
        if self.is_zip:
            self._open_zip()

    def _open_zip(self) -> None:
        try:
            self._zip = zipfile.ZipFile(self.path)
            return
        except (UnicodeDecodeError, NotImplementedError):
            # One member's name is flagged UTF-8 but is not, or one member needs a newer zip
            # version: zipfile refuses the whole archive. Read it through a view whose central
            # directory marks those members harmless, and skip them when listing.
            pass
        except Exception as exc:
            raise _error(
                self.path, f"cannot read the zip's list of members ({exc}); re-create the zip"
            ) from None
        try:
            self._raw = open(self.path, "rb")
            patches, self._hidden = _central_directory_patches(self._raw)
            self._zip = zipfile.ZipFile(_PatchedFile(self._raw, patches))
        except Exception as exc:
            self.close()
            raise _error(
                self.path, f"cannot read the zip's list of members ({exc}); re-create the zip"
            ) from None

    def list(self) -> list[tuple[str, int, float, str | None]]:
        return self._list_zip() if self._zip is not None else self._list_folder()

    def _list_zip(self) -> list[tuple[str, int, float, str | None]]:
        assert self._zip is not None
        by_name: dict[str, list[zipfile.ZipInfo]] = collections.defaultdict(list)
        problem_of: dict[int, str] = {}
        for index, info in enumerate(self._zip.infolist()):
            name, problem = _zip_member_name(info)
            if name.endswith("/"):  # a folder entry
                continue
            if not name or "\0" in name:
                self.problems.append((name, "name is empty or holds a NUL byte; re-create the zip"))
                continue
            if _unsafe_member(name):
                self.problems.append((name, "refused: absolute or '..' path in zip"))
                continue
            problem = self._hidden.get(index) or problem or _zip_member_problem(info)
            if problem:
                problem_of[id(info)] = problem
            by_name[name].append(info)
        out = []
        for name, infos in by_name.items():
            info = infos[0]
            if len(infos) > 1:
                problem = f"duplicate name: {len(infos)} members of the zip are called this; none is read"
            else:
                problem = problem_of.get(id(info))
            self._members[name] = info
            out.append((name, info.file_size, 0.0, problem))
        return out

    def _list_folder(self) -> list[tuple[str, int, float, str | None]]:
        out: list[tuple[str, int, float, str | None]] = []
        try:
            top = os.stat(self.path)
        except OSError as exc:
            raise _error(self.path, f"cannot open the folder ({_os_reason(exc)})") from None
        # Symlinked folders are followed; a folder already walked (a symlink loop, or a second
        # link to the same folder) is listed instead of walked again.
        visited = {(top.st_dev, top.st_ino)}
        stack: list[tuple[str, str, frozenset]] = [("", str(self.path), frozenset(visited))]
        while stack:
            rel_dir, full_dir, ancestors = stack.pop()
            try:
                with os.scandir(full_dir) as it:
                    items = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                if not rel_dir:
                    raise _error(
                        self.path, f"cannot open the folder ({_os_reason(exc)}); check its permissions"
                    ) from None
                self.problems.append((rel_dir, f"cannot open folder ({_os_reason(exc)})"))
                continue
            for item in items:
                rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
                if item.name.startswith(".") or item.name == "__MACOSX":
                    continue
                full = os.path.join(full_dir, item.name)
                link = False
                try:
                    link = item.is_symlink()
                    st = os.stat(full) if link else item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    if link:
                        self.problems.append((rel, "dangling symlink: its target does not exist"))
                    continue  # removed while listing
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        self.problems.append((rel, "symlink loop: the link never reaches a file"))
                    else:
                        self.problems.append((rel, f"cannot look at it ({_os_reason(exc)})"))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    ident = (st.st_dev, st.st_ino)
                    if ident in ancestors:
                        self.problems.append((rel, "symlink loop: the link leads back to a folder above it"))
                    elif ident in visited:
                        self.problems.append((rel, "a link to a folder already read; not read twice"))
                    elif not _is_utf8(item.name):
                        self.problems.append((rel, "folder name is not valid UTF-8; rename it"))
                    else:
                        visited.add(ident)
                        stack.append((rel, full, ancestors | {ident}))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    problem: str | None = f"{_file_kind(st.st_mode)}, not a regular file; never opened"
                elif not _is_utf8(item.name):
                    problem = "name is not valid UTF-8; rename the file"
                else:
                    problem = None
                out.append((rel, st.st_size, st.st_mtime, problem))
        return out

    def read(self, name: str) -> bytes:
        """The bytes of one file or member, at most MAX_IMAGE_BYTES of them."""
        limit = MAX_IMAGE_BYTES
        if self._zip is not None:
            with self._lock, self._zip.open(self._members[name]) as fh:
                data = fh.read(limit + 1)  # to the end: zipfile checks the CRC there
        else:
            data = _read_regular(self.path / name, limit)
        if len(data) > limit:
            raise UnusableFileError(f"larger than the {_mib(limit)} limit per image")
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._raw is not None:
            self._raw.close()


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def _read_regular(path: Path, limit: int) -> bytes:
    """Read a regular file, at most limit + 1 bytes; never blocks on a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_BINARY)
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnusableFileError(f"{_file_kind(st.st_mode)}, not a regular file; not read")
        if st.st_size > limit:
            raise UnusableFileError(f"{st.st_size} bytes, over the {_mib(limit)} limit per image")
        return fh.read(limit + 1)


def read_image_file(path: str | os.PathLike) -> bytes:
    """The bytes of one image file, read as ``load_images`` reads a folder's files: a
    FIFO, device or folder is never opened and a file over ``MAX_IMAGE_BYTES`` is not
    read (ValueError); a missing file is FileNotFoundError."""
    try:
        data = _read_regular(Path(path), MAX_IMAGE_BYTES)
    except UnusableFileError as exc:
        raise ValueError(str(exc)) from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"over the {_mib(MAX_IMAGE_BYTES)} limit per image")
    return data


def _zip_member_name(info: zipfile.ZipInfo) -> tuple[str, str | None]:
    """The member's name and, if its bytes are not valid UTF-8, why it is skipped.

    Names flagged UTF-8 are UTF-8. An unflagged name is, by the zip standard, code page
    437, but many tools write UTF-8 without the flag: nnx reads its bytes as UTF-8 when they
    are valid UTF-8 (all-ASCII names included) and otherwise skips the member, since a
    legacy code page cannot be told apart reliably. Such a name is listed with its
    undecodable bytes as surrogate escapes, like an undecodable file name on disk.
    """
    name = info.orig_filename
    problem = None
    if not info.flag_bits & _ZIP_FLAG_UTF8:
        raw = name.encode("cp437")  # zipfile decoded the bytes as cp437: undo it
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            name = raw.decode("utf-8", "surrogateescape")
            problem = "name is not valid UTF-8 (a legacy code page?); re-create the zip with UTF-8 names"
    return name.replace("\\", "/"), problem


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & _ZIP_FLAG_ENCRYPTED:
        return "encrypted (password-protected) member; re-create the zip without a password"
    if info.flag_bits & _ZIP_FLAG_PATCHED:
        return "compressed patched data, which zipfile cannot read; re-create the zip"
    if info.compress_type not in _ZIP_METHODS:
        method = _ZIP_METHOD_NAMES.get(info.compress_type, "unknown")
        readable = ", ".join(_ZIP_METHODS.values())
        return (
            f"compression method {info.compress_type} ({method}) is not supported (only {readable}); "
            "re-create the zip with deflate"
        )
    if (info.external_attr >> 16) and stat.S_ISLNK(info.external_attr >> 16):
        return "a symlink stored in the zip; not followed"
    return None


def _unsafe_member(name: str) -> bool:
    """True for zip member names that could escape a folder: absolute, drive, or '..'."""
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts or (bool(pure.parts) and ":" in pure.parts[0])


class _PatchedFile(io.RawIOBase):
    """A read-only view of a file with a few byte ranges replaced (offset -> bytes). Closing
    the view leaves the file open: its owner closes it."""

    def __init__(self, raw: Any, patches: dict[int, bytes]):
        super().__init__()
        self._raw = raw
        self._offsets = sorted(patches)
        self._patches = patches

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._raw.seek(pos, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: Any) -> int:
        start = self._raw.tell()
        n = self._raw.readinto(buffer)
        if not n:
            return n or 0
        view = memoryview(buffer).cast("B")
        for offset in self._offsets[bisect.bisect_left(self._offsets, start - 8) :]:
            if offset >= start + n:
                break
            for k, byte in enumerate(self._patches[offset]):
                if 0 <= offset + k - start < n:
                    view[offset + k - start] = byte
        return n


def _central_directory_patches(fh: Any) -> tuple[dict[int, bytes], dict[int, str]]:
    """Patches that let zipfile list an archive it would refuse whole, and what they hide.

    For each central-directory entry whose name is flagged UTF-8 but is not, the flag is
    cleared (zipfile then decodes the name as cp437); an entry needing a zip version newer
    than zipfile reads gets version 2.0. Returns the patches (file offset -> bytes) and, by
    entry index, why each patched entry is to be skipped. Raises ValueError when the
    archive's end records cannot be found.
    """
    fh.seek(0, 2)
    size = fh.tell()
    tail_len = min(size, 22 + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise ValueError("no end-of-central-directory record")
    end_pos = size - tail_len + at
    _, _, _, _, count, cd_size, cd_offset, _ = struct.unpack("<4s4H2LH", tail[at : at + 22])
    if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:  # zip64
        fh.seek(end_pos - 20)
        locator = fh.read(20)
        if len(locator) != 20 or locator[:4] != b"PK\x06\x07":
            raise ValueError("no zip64 end-of-central-directory locator")
        end_pos = struct.unpack("<4sLQL", locator)[2]
        fh.seek(end_pos)
        record = fh.read(56)
        if len(record) != 56 or record[:4] != b"PK\x06\x06":
            raise ValueError("no zip64 end-of-central-directory record")
        cd_size = struct.unpack("<4sQ2H2L4Q", record)[8]
    start = end_pos - cd_size  # like zipfile: allows data prepended to the archive
    fh.seek(start)
    directory = fh.read(cd_size)
    patches: dict[int, bytes] = {}
    hidden: dict[int, str] = {}
    pos = index = 0
    while pos + 46 <= len(directory) and directory[pos : pos + 4] == b"PK\x01\x02":
        fields = struct.unpack("<4s4B4HL2L5H2L", directory[pos : pos + 46])
        extract_version, flags = fields[3], fields[5]
        name_len, extra_len, comment_len = fields[12:15]
        name = directory[pos + 46 : pos + 46 + name_len]
        if flags & _ZIP_FLAG_UTF8:
            try:
                name.decode("utf-8")
            except UnicodeDecodeError:
                patches[start + pos + 8] = struct.pack("<H", flags & ~_ZIP_FLAG_UTF8)
                hidden[index] = "name is marked UTF-8 but is not valid UTF-8; re-create the zip"
        if extract_version > _ZIP_MAX_VERSION:
            patches[start + pos + 6] = bytes([20])
            version = f"{extract_version // 10}.{extract_version % 10}"
            hidden[index] = f"needs zip version {version}, newer than Python's zipfile reads"
        pos += 46 + name_len + extra_len + comment_len
        index += 1
    return patches, hidden


def _classify(
    names: list[tuple[str, int, float, str | None]],
) -> tuple[list[_Entry], list[tuple[str, str]], str]:
    """Assign each image file a class name from the layout; report files that fit none.

    Hidden files and folders (".name") and macOS "__MACOSX" folders are ignored silently;
    a file with a problem is listed with it; so is one without an image extension or larger
    than MAX_IMAGE_BYTES.
    """
    skipped: list[tuple[str, str]] = []
    images = []
    for name, size, mtime, problem in sorted(names, key=lambda t: t[0]):
        parts = name.split("/")
        if any(p.startswith(".") for p in parts) or "__MACOSX" in parts:
            continue
        if problem:
            skipped.append((name, problem))
        elif not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
            skipped.append((name, "not an image file extension"))
        elif size > MAX_IMAGE_BYTES:
            skipped.append(
                (name, f"{size} bytes, over the {_mib(MAX_IMAGE_BYTES)} limit per image; not read")
            )
        else:
            images.append((name, size, mtime))
    # Kaggle layout when the CLASS.N.ext names give exactly two classes, or three or more
    # with every image in one folder; otherwise the class is each file's parent folder.
    kaggle = {
        name: m.group(1).lower() for name, _, _ in images if (m := _KAGGLE.match(name.rsplit("/", 1)[-1]))
    }
    n_named = len(set(kaggle.values()))
    one_folder = len({name.rpartition("/")[0] for name, _, _ in images}) <= 1
    entries: list[_Entry] = []
    if n_named == 2 or (n_named > 2 and one_folder):
        layout = "CLASS.N.ext files"
        for name, size, mtime in images:
            if name in kaggle:
                entries.append(_Entry(name, kaggle[name], size, mtime))
            else:
                skipped.append((name, "name does not follow CLASS.N.ext"))
    else:
        layout = "sub-folder per class"
        for name, size, mtime in images:
            parts = name.split("/")
            if len(parts) < 2:
                skipped.append((name, "not inside a class sub-folder"))
            else:
                entries.append(_Entry(name, parts[-2], size, mtime))
    return entries, skipped, layout


# ----------------------------------------------------------------- decoding
def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode image bytes to a (size, size, 3) uint8 RGB array with Pillow.

    The EXIF orientation is applied first, so phone photos come out upright (a malformed
    EXIF block is ignored and the picture used as stored). Every mode becomes RGB: palette
    and alpha images are composited on white, CMYK is converted, 16/32-bit greyscale is
    scaled to 8 bits. Resizing is bilinear, as the tutorials' imresize. Raises ValueError
    (corrupt, truncated, not an image, or larger than Pillow's decompression-bomb limit).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                rgb = _to_rgb(_upright(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ValueError("not an image Pillow can read") from exc
    except MemoryError as exc:
        raise ValueError("too large to decode in the memory available") from exc
    except Exception as exc:  # truncated / corrupt streams (OSError, SyntaxError, ValueError, ...)
        raise ValueError(f"corrupt or truncated image ({exc})") from exc
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _upright(img: Any) -> Any:
    """The image turned as its EXIF orientation tag says (unchanged without one)."""
    from PIL import ImageOps

    try:
        if img.getexif().get(0x0112, 1) == 1:  # no tag, or already upright: no copy
            return img
        return ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block: use the picture as stored
        return img


def _to_rgb(img: Any) -> Any:
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if (mode.startswith("I;16") or arr.max() > 255) else 255.0
        arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def image2vec(image: np.ndarray) -> np.ndarray:
    """The tutorial's image2vector: an (h, w, c) image as a column (h*w*c, 1), same dtype."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image2vec needs an (height, width, channels) array, got shape {image.shape}")
    return image.reshape(-1, 1)


def normalize(x: np.ndarray) -> np.ndarray:
    """The tutorial's normalizeRows: each row divided by its L2 norm (zero rows stay zero).

    (Pixel scaling by 1/255 is not needed: nnx applies it to uint8 X itself.)
    """
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


# ------------------------------------------------------------------- caching
def _cache_key(source: Path, entries: list[_Entry], size: int, classes: list[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, str(source.resolve()), size, classes]).encode())
    if source.is_file():  # a zip: its own size and time stand for its members'
        st = source.stat()
        h.update(f"{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for e in entries:
        h.update(f"{e.name}\0{e.size}\0{e.mtime}\0".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _read_cache(
    path: Path, key: str, entries: list[_Entry], classes: list[str], n_x: int
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
        log.warning("ignoring image cache %s (%s); rebuilding", safe_name(path), safe_name(_os_reason(exc)))
        return None
    if not stat.S_ISREG(st.st_mode):
        log.warning(
            "ignoring image cache %s: %s, not a file; rebuilding", safe_name(path), _file_kind(st.st_mode)
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


def _write_cache(path: Path, key: str, X: np.ndarray, Y: np.ndarray, files: list[str], failed: list) -> None:
    meta = json.dumps({"format": CACHE_FORMAT, "key": key, "files": files, "skipped": failed})
    try:
        atomic_write(path, lambda fh: np.savez(fh, X=X, Y=Y, meta=np.array(meta)), kind="cache")
    except OSError as exc:
        log.warning(
            "could not write image cache %s (%s); continuing without it",
            safe_name(path),
            safe_name(_os_reason(exc)),
        )


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
            raise _error(path, f"cannot read ({_os_reason(exc)}); check its permissions") from None
    else:
        is_zip = False
    if not path.is_dir() and not is_zip:
        raise _error(path, "neither a folder nor a zip file; expected " + " or ".join(LAYOUTS))
    if cache is not None:  # a cache path holding anything but nnx's cache is never written over
        check_target(cache, "cache", label="cache")
    source = _Source(path)
    try:
        try:
            listed = source.list()
        except DataError:
            raise
        except Exception as exc:  # a damaged archive no check above foresaw: still one line
            raise _error(path, f"cannot list its files ({type(exc).__name__}: {exc})") from None
        entries, skipped, layout = _classify(listed)
        skipped = sorted(source.problems + skipped)
        classes = sorted({e.label_name for e in entries})
        if len(classes) < 2:
            found = ", ".join(classes) or "none"
            raise _error(
                path,
                f"need at least two classes, found {len(classes)} ({found}). Layouts understood: "
                + "; ".join(LAYOUTS),
            )
        if positive is not None and len(classes) > 2:
            raise _error(
                path,
                f"positive class {positive!r} given, but there are {len(classes)} classes; "
                "positive only chooses label 1 of two classes",
            )
        if positive is not None:
            if positive not in classes:  # exact match first, else case-insensitive if unambiguous
                matches = [c for c in classes if c.lower() == positive.lower()]
                if len(matches) != 1:
                    raise _error(path, f"positive class {positive!r} not among the classes found: {classes}")
                positive = matches[0]
            classes = [c for c in classes if c != positive] + [positive]
        key = _cache_key(path, entries, size, classes)
        n_x = size * size * 3
        cached = _read_cache(Path(cache), key, entries, classes, n_x) if cache is not None else None
        if cached is not None:
            X, Y, files, bad = cached
            skipped = skipped + bad  # this listing's problems, the cache's decoding failures
        else:
            X, Y, files, bad = _decode_all(source, entries, classes, size, workers, progress)
            skipped = skipped + bad
            if not files:
                raise _error(
                    path,
                    f"no image could be read ({len(skipped)} file(s) skipped). Layouts understood: "
                    + "; ".join(LAYOUTS),
                )
            if cache is not None:
                _write_cache(Path(cache), key, X, Y, files, bad)
    finally:
        source.close()
    if skipped:
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


def _decode_all(
    source: _Source, entries: list[_Entry], classes: list[str], size: int, workers: int | None, progress: bool
):
    n_x = size * size * 3
    rows = np.empty((len(entries), n_x), dtype=np.uint8)  # C-order rows = example-contiguous X
    ok = np.zeros(len(entries), dtype=bool)
    bad: list[tuple[str, str]] = []

    def work(i: int) -> tuple[int, str | None]:
        entry = entries[i]
        try:
            rows[i] = decode_image(source.read(entry.name), size).reshape(-1)
            return i, None
        except Exception as exc:  # one bad file never aborts the load
            return i, _read_failure(exc)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(entries), unit="img", desc="decoding", leave=False)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for i, error in pool.map(work, range(len(entries))):
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


def _read_failure(exc: Exception) -> str:
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
        return f"cannot read ({_os_reason(exc)})"
    if isinstance(exc, NotImplementedError):
        return f"a zip feature zipfile cannot read ({exc})"
    return f"unreadable ({type(exc).__name__}: {exc})"


# -------------------------------------------------------------- other formats
def _open_regular(path: Path, what: str) -> Any:
    """Open a dataset file for reading in binary; FileNotFoundError if missing, DataError for
    a folder, FIFO or device (never opened) or a file that cannot be read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(safe_name(f"no {what} file at {path}")) from None
    except OSError as exc:
        raise _error(path, f"cannot read ({_os_reason(exc)})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _error(path, f"{_file_kind(st.st_mode)}, not a regular file; expected the {what} file itself")
    try:
        fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_BINARY)
        return open(fd, "rb")
    except OSError as exc:
        raise _error(path, f"cannot read ({_os_reason(exc)}); check its permissions") from None


def load_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The one-hidden-layer notebook's CSV: n_x + 1 rows by m columns, labels in the last row.

    Returns float64 X (n_x, m) and Y (1, m). The file must be UTF-8 (or ASCII) text; a cell
    that is not a finite number, a ragged row, labels other than 0/1 or an empty file is a
    ``DataError`` naming the file, the line and what to do.
    """
    path = Path(path)
    with _open_regular(path, "CSV") as fh:
        try:
            raw = fh.read()
        except OSError as exc:
            raise _error(path, f"cannot read ({_os_reason(exc)})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = f"byte 0x{raw[exc.start]:02x}"
        raise _error(
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
                col, bad = next((j, c) for j, c in enumerate(row, start=1) if not _is_float(c))
                header = not rows and not any(_is_float(c) for c in row)
                hint = " (a header row? remove it)" if header else ""
                raise _error(path, f"line {line_no}: {bad!r} is not a number (column {col}){hint}") from None
            if rows and len(values) != len(rows[0]):
                ragged = f"line {line_no}: {len(values)} columns, expected {len(rows[0])}"
                raise _error(path, f"{ragged} as on line {lines[0]}")
            rows.append(values)
            lines.append(line_no)
    except csv.Error as exc:
        raise _error(path, f"line {reader.line_num}: not a CSV row ({exc})") from None
    if not rows:
        raise _error(path, "empty file: expected feature rows and a label row of numbers")
    if len(rows) < 2:
        raise _error(path, f"need at least one feature row and the label row, found {len(rows)} row(s)")
    data = np.array(rows, dtype=np.float64)
    finite = np.isfinite(data)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise _error(
            path,
            f"line {lines[i]}, column {j + 1}: {data[i, j]} is not a finite number; "
            "remove or fill in that example",
        )
    labels = data[-1]
    if not ((labels >= 0) & (np.mod(labels, 1) == 0)).all():
        last_column = data[:, -1]
        if data.shape[1] >= 2 and np.isin(last_column, (0.0, 1.0)).all():
            raise _error(
                path,
                "looks transposed: the labels seem to be the last column (one example per row); store "
                "one column per example with the labels in the last row (transpose the table)",
            )
        bad = labels[(labels < 0) | (np.mod(labels, 1) != 0)]
        raise _error(
            path,
            f"line {lines[-1]} (the label row): labels must be 0 or 1, or class numbers 0..K-1, "
            f"found {_values(bad, ok=())}",
        )
    _check_class_count(path, labels)
    return np.asfortranarray(data[:-1]), data[-1:].copy()


def _check_class_count(path: Path, Y: np.ndarray) -> None:
    """Labels 0..K-1 (already checked to be whole numbers >= 0) with K at most MAX_CLASSES."""
    top = Y.max()
    if top >= MAX_CLASSES:
        raise _error(
            path,
            f"the largest label is {top:.15g}, so there would be {int(top) + 1:,} classes; nnx trains on "
            f"at most {MAX_CLASSES:,} classes numbered 0..K-1: renumber the labels 0..K-1",
        )


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _values(a: np.ndarray, ok: tuple = (0, 1), most: int = 5) -> str:
    """The distinct values of ``a`` outside ``ok``, for a message: "2, 3 and 7 more"."""
    bad = np.unique(a[~np.isin(a, ok)])
    shown = ", ".join(
        f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in bad[:most].tolist()
    )
    return shown + (f" and {len(bad) - most} more" if len(bad) > most else "")


def _check_xy(
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
            raise _error(
                path, f"{name} holds {kind} ({a.dtype}); store numbers, e.g. {name}.astype('float32')"
            )
        if a.ndim == 0:
            raise _error(path, f"{name} is a single number; store X as (n_x, m) and Y as (1, m)")
    if Y.ndim == 2 and 1 in Y.shape or Y.ndim == 1:
        Y = Y.reshape(1, -1)
    else:
        raise _error(path, f"Y has shape {Y.shape}; store the labels as (1, m) or (m,)")
    m = Y.shape[1]
    if m == 0:
        raise _error(path, "no examples: Y is empty")
    if examples_first:
        if X.ndim < 2:
            raise _error(path, f"X has shape {X.shape}; store it as (m, height, width, 3) or (m, n_x)")
        if X.shape[0] != m:
            hint = " (it looks transposed: put the examples first)" if X.shape[-1] == m else ""
            raise _error(path, f"X holds {X.shape[0]} examples but Y has {m} labels{hint}")
        X = np.ascontiguousarray(X.reshape(m, -1)).T
    if X.ndim == 1:
        raise _error(
            path, f"X is 1-D (shape {X.shape}); store X as (n_x, m), e.g. X.reshape(1, -1) for one feature"
        )
    if X.ndim > 2:
        hint = ", e.g. X.reshape(m, -1).T when the examples come first" if X.shape[0] == m else ""
        raise _error(path, f"X has shape {X.shape}; store X as (n_x, m){hint}")
    if X.shape[1] != m:
        if X.shape[0] == m:
            raise _error(
                path,
                f"X has shape {X.shape} and Y has {m} labels: X looks transposed; store X as (n_x, m) (X.T)",
            )
        raise _error(path, f"X has {X.shape[1]} examples (columns) but Y has {m} labels; they must match")
    if X.shape[0] == 0:
        raise _error(path, f"X has no features (shape {X.shape})")
    if X.dtype not in (np.float32, np.float64, np.uint8):
        kind = "integers" if X.dtype.kind in "iu" else "booleans" if X.dtype.kind == "b" else str(X.dtype)
        raise _error(
            path,
            f"X holds {kind} ({X.dtype}); nnx trains on float32/float64 X or uint8 pixels: "
            "store X.astype('float32')",
        )
    if X.dtype.kind == "f":
        finite = np.isfinite(X)
        if not finite.all():
            i, j = np.argwhere(~finite)[0]
            raise _error(
                path,
                f"X[{i}, {j}] is {X[i, j]} ({int(finite.size - finite.sum())} value(s) in X are NaN or inf); "
                "remove or fill in those examples",
            )
    with np.errstate(invalid="ignore"):  # inf/NaN labels are reported below, not warned about
        integral = np.isfinite(Y) & (Y >= 0) & (np.mod(Y, 1) == 0) if Y.dtype.kind == "f" else Y >= 0
    if not integral.all():
        raise _error(
            path,
            f"labels (Y) must be 0 or 1, or class numbers 0..K-1, found {_values(Y[~integral], ok=())}; "
            "map the classes to 0, 1, ...",
        )
    _check_class_count(path, Y)
    return X, Y


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A plain npz holding X (n_x, m) and Y (1, m) or (m,); read without pickle.

    X must be float32/float64 (or uint8 pixels), finite, with one column per example; Y
    0/1 labels, one per column of X. Anything else is a ``DataError`` naming the file and
    the fix (object arrays, which need pickle, are refused).
    """
    path = Path(path)
    with _open_regular(path, "npz") as fh:
        head = fh.read(8)
    if not head:
        raise _error(path, "empty file (0 bytes); save the data with np.savez(path, X=X, Y=Y)")
    if head.startswith(b"\x93NUMPY"):
        raise _error(path, "a single .npy array, not an npz of X and Y; save with np.savez(path, X=X, Y=Y)")
    if not head.startswith(b"PK"):
        raise _error(path, "not an npz file (not a zip archive); save the data with np.savez(path, X=X, Y=Y)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data.files or "Y" not in data.files:
                raise _error(path, f"an npz dataset needs arrays named X and Y, found {data.files}")
            X, Y = data["X"], data["Y"]
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise _error(
                path,
                "X or Y is an object array, which needs pickle: refused (loading it could run code); "
                "save numeric arrays, e.g. X.astype('float32')",
            ) from None
        raise _error(path, f"cannot read as npz (truncated or corrupt?): {exc}") from exc
    except Exception as exc:
        raise _error(path, f"cannot read as npz (truncated or corrupt?): {exc}") from exc
    return _check_xy(path, X, Y)


def load_h5(path: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The deeplearning.ai catvnoncat h5 layout: ``{split}_set_x`` (m, h, w, 3) and
    ``{split}_set_y`` (m,). Returns uint8 X (h*w*3, m) Fortran order and Y (1, m). Needs h5py.

    X may also be float32/float64; other contents (labels not 0/1, NaN, counts that differ,
    integer or text X) are a ``DataError`` naming the file and the fix."""
    path = Path(path)
    _open_regular(path, "HDF5").close()
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading .h5 files needs h5py: pip install h5py") from exc
    try:
        with h5py.File(path, "r") as f:
            x_name, y_name = f"{split}_set_x", f"{split}_set_y"
            if x_name not in f or y_name not in f:
                raise _error(path, f"expected datasets {x_name} and {y_name}, found {list(f.keys())}")
            for name in (x_name, y_name):
                if not isinstance(f[name], h5py.Dataset):
                    raise _error(path, f"{name} is a group, not a dataset")
            X = np.asarray(f[x_name])
            Y = np.asarray(f[y_name])
    except DataError:
        raise
    except Exception as exc:
        raise _error(path, f"cannot read as HDF5 ({exc}); is it an .h5 file?") from exc
    return _check_xy(path, X, Y, examples_first=True)
