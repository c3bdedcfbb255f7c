"""Loading data: image folders and zips (Pillow), npz caches, the tutorials' CSV and h5.

Every loader returns X as (n_x, m) example-contiguous (Fortran order) and Y as (1, m).
Images come back as uint8 pixels; nnx applies the 1/255 itself when training.
"""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import io
import json
import logging
import os
import re
import threading
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .datasets import train_test_split
from .errors import DataError
from .files import CACHE_FORMAT, atomic_write, check_target

log = logging.getLogger("nnx")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LAYOUTS = (
    "a folder (or zip) of files named CLASS.N.ext, e.g. cat.1.jpg / dog.1.jpg (Kaggle dogs-vs-cats)",
    "a folder (or zip) with one sub-folder per class, e.g. cat/1.jpg, dog/1.jpg",
)
CACHE_VERSION = 1
_KAGGLE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\.[^/]*\.[A-Za-z0-9]+$")


@dataclass
class ImageData:
    """What ``load_images`` returns.

    X_train/X_val are uint8 (size*size*3, m) in Fortran order, Y_train/Y_val (1, m) int64.
    ``classes`` maps label -> class name ([negative, positive]); ``skipped`` lists every
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
    """A folder or a zip file, listed once; reads member bytes (thread-safe)."""

    def __init__(self, path: Path):
        self.path = path
        self.is_zip = path.is_file() and zipfile.is_zipfile(path)
        self._lock = threading.Lock()
        self._zip = zipfile.ZipFile(path) if self.is_zip else None
        self.unsafe: list[tuple[str, str]] = []

    def list(self) -> list[tuple[str, int, float]]:
        if self._zip is not None:
            out = []
            for info in self._zip.infolist():
                if info.is_dir():
                    continue
                name = info.filename
                if _unsafe_member(name):
                    self.unsafe.append((name, "refused: absolute or '..' path in zip"))
                    continue
                out.append((name, info.file_size, 0.0))
            return out
        out = []
        for root, _, files in os.walk(self.path):
            for f in files:
                full = Path(root) / f
                st = full.stat()
                out.append((full.relative_to(self.path).as_posix(), st.st_size, st.st_mtime))
        return out

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            with self._lock:
                return self._zip.read(name)
        return (self.path / name).read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _unsafe_member(name: str) -> bool:
    """True for zip member names that could escape a folder: absolute, drive, or '..'."""
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts or (bool(pure.parts) and ":" in pure.parts[0])


def _classify(names: list[tuple[str, int, float]]) -> tuple[list[_Entry], list[tuple[str, str]], str]:
    """Assign each image file a class name from the layout; report files that fit none."""
    skipped: list[tuple[str, str]] = []
    images = []
    for name, size, mtime in sorted(names):
        base = name.rsplit("/", 1)[-1]
        if base.startswith(".") or "__MACOSX" in name:
            continue
        if not base.lower().endswith(IMAGE_EXTENSIONS):
            skipped.append((name, "not an image file extension"))
            continue
        images.append((name, size, mtime))
    # Kaggle layout when the CLASS.N.ext names give exactly two classes; otherwise the
    # class is each file's parent folder.
    kaggle = {
        name: m.group(1).lower() for name, _, _ in images if (m := _KAGGLE.match(name.rsplit("/", 1)[-1]))
    }
    entries: list[_Entry] = []
    if len(set(kaggle.values())) == 2:
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

    Every mode becomes RGB: palette and alpha images are composited on white, CMYK is
    converted, 16/32-bit greyscale is scaled to 8 bits. Resizing is bilinear, as the
    tutorials' imresize. Raises ValueError (corrupt, truncated, not an image, or larger
    than Pillow's decompression-bomb limit).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                rgb = _to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ValueError("not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt streams
        raise ValueError(f"corrupt or truncated image ({exc})") from exc
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


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
        h.update(f"{e.name}\0{e.size}\0{e.mtime}\0".encode())
    return h.hexdigest()


def _read_cache(path: Path, key: str) -> tuple[np.ndarray, np.ndarray, list[str], list] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("key") != key:
                log.info("image cache %s is stale (source or size changed); rebuilding", path)
                return None
            return data["X"], data["Y"], meta["files"], [tuple(s) for s in meta["skipped"]]
    except FileNotFoundError:
        return None
    except Exception as exc:  # corrupt or foreign cache: rebuild it
        log.warning("ignoring unreadable image cache %s (%s)", path, exc)
        return None


def _write_cache(path: Path, key: str, X: np.ndarray, Y: np.ndarray, files: list[str], skipped: list) -> None:
    meta = json.dumps({"format": CACHE_FORMAT, "key": key, "files": files, "skipped": skipped})
    atomic_write(path, lambda fh: np.savez(fh, X=X, Y=Y, meta=np.array(meta)), kind="cache")


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
    """Load a two-class image folder or zip into uint8 X (size*size*3, m) and Y (1, m).

    Layouts: CLASS.N.ext files in one folder (Kaggle dogs-vs-cats) or one sub-folder per
    class. ``positive`` names the class labelled 1 (default: the second class in sorted
    order, e.g. "dog" for cat/dog). Files that cannot be decoded are skipped and reported
    in ``skipped`` and the log. ``val_split`` holds out a stratified, seeded share (0 for
    none). ``cache`` is an npz file reused while the source files and ``size`` are
    unchanged. Decoding runs on ``workers`` threads (default: all cores).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no image folder or zip at {path}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must lie in [0, 1), got {val_split}")
    if not path.is_dir() and not (path.is_file() and zipfile.is_zipfile(path)):
        raise DataError(f"{path} is neither a folder nor a zip file; expected " + " or ".join(LAYOUTS))
    if cache is not None:  # a cache path holding anything but nnx's cache is never written over
        check_target(cache, "cache", label="cache")
    source = _Source(path)
    try:
        entries, skipped, layout = _classify(source.list())
        skipped = source.unsafe + skipped
        classes = sorted({e.label_name for e in entries})
        if len(classes) != 2:
            found = ", ".join(classes) or "none"
            raise DataError(
                f"{path}: need exactly two classes, found {len(classes)} ({found}). Layouts understood: "
                + "; ".join(LAYOUTS)
            )
        if positive is not None:
            positive = positive.lower()
            if positive not in classes:
                raise DataError(f"positive class {positive!r} not among the classes found: {classes}")
            classes = [c for c in classes if c != positive] + [positive]
        key = _cache_key(path, entries, size, classes)
        cached = _read_cache(Path(cache), key) if cache is not None else None
        if cached is not None:
            X, Y, files, skipped = cached
        else:
            X, Y, files, bad = _decode_all(source, entries, classes, size, workers, progress)
            skipped = skipped + bad
            if not files:
                raise DataError(
                    f"{path}: no image could be read ({len(skipped)} file(s) skipped). Layouts understood: "
                    + "; ".join(LAYOUTS)
                )
            if cache is not None:
                _write_cache(Path(cache), key, X, Y, files, skipped)
    finally:
        source.close()
    if skipped:
        shown = ", ".join(f"{n} ({r})" for n, r in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        log.warning("skipped %d file(s) in %s: %s%s", len(skipped), path, shown, more)
    log.info("loaded %d images from %s (%s); label 1 = %s", len(files), path, layout, classes[1])
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
        except (ValueError, OSError) as exc:
            return i, str(exc)

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


# -------------------------------------------------------------- other formats
def load_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The one-hidden-layer notebook's CSV: n_x + 1 rows by m columns, labels in the last row.

    Returns float64 X (n_x, m) and Y (1, m). A cell that is not a number, or a ragged
    row, is an error naming its line.
    """
    path = Path(path)
    rows: list[list[float]] = []
    with open(path, newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                values = [float(c) for c in row]
            except ValueError:
                bad = next(c for c in row if not _is_float(c))
                raise DataError(f"{path}, line {line_no}: {bad!r} is not a number") from None
            if rows and len(values) != len(rows[0]):
                raise DataError(f"{path}, line {line_no}: {len(values)} columns, expected {len(rows[0])}")
            rows.append(values)
    if len(rows) < 2:
        raise DataError(f"{path}: need at least one feature row and the label row, found {len(rows)} row(s)")
    data = np.array(rows, dtype=np.float64)
    return np.asfortranarray(data[:-1]), data[-1:].copy()


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A plain npz holding X (n_x, m) and Y (1, m) or (m,); read without pickle."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data.files or "Y" not in data.files:
                raise DataError(f"{path}: an npz dataset needs arrays named X and Y, found {data.files}")
            return data["X"], data["Y"].reshape(1, -1)
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as npz (truncated or corrupt?): {exc}") from exc


def load_h5(path: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The deeplearning.ai catvnoncat h5 layout: ``{split}_set_x`` (m, h, w, 3) and
    ``{split}_set_y`` (m,). Returns uint8 X (h*w*3, m) Fortran order and Y (1, m). Needs h5py."""
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading .h5 files needs h5py: pip install h5py") from exc
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            x_name, y_name = f"{split}_set_x", f"{split}_set_y"
            if x_name not in f or y_name not in f:
                raise DataError(f"{path}: expected datasets {x_name} and {y_name}, found {list(f.keys())}")
            X = np.asarray(f[x_name])
            Y = np.asarray(f[y_name]).reshape(1, -1)
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"{path}: cannot read as HDF5: {exc}") from exc
    return np.ascontiguousarray(X.reshape(X.shape[0], -1)).T, Y
