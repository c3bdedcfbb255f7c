"""Writing output files safely.

Every file nnx writes (model, checkpoint, ONNX export, image cache, history, learning curve, benchmark
record, predictions CSV) goes through ``atomic_write``: the bytes go to a temp file beside the target, are
flushed to disk, get the permissions ``open()`` would give (the umask is honoured), and
replace the target in one ``os.replace``. A target that exists must be a regular file
that nnx itself wrote as the same kind (recognised by a marker inside it); anything else
is refused before a byte is written. A temp file left by a killed writer
(``.NAME.nnx-tmp-PID-*``) is removed by the next write to the same target: each writer
holds an exclusive ``flock`` on its temp file, which the kernel drops when the writer
dies, so a temp file nobody holds locked is abandoned whatever its PID means here (the
PID may be reused, or belong to another PID namespace sharing the folder).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import OutputWriteError, UnsafeOutputError

TEMP_TAG = ".nnx-tmp-"
# The markers nnx puts inside its files; a file of a kind is recognised by its marker.
MODEL_FORMAT = "nnx-model"
CACHE_FORMAT = "nnx-image-cache"
HISTORY_FORMAT = "nnx-history"
BENCH_FORMAT = "nnx-bench"
ONNX_PRODUCER = "nnx"  # ModelProto.producer_name of nnx's ONNX exports
PLOT_SOFTWARE = "nnx"  # PNG tEXt "Software" value of nnx's plots
HISTORY_CSV_HEADER = "epoch,loss,accuracy"
PREDICTIONS_CSV_HEADER = "path,label,class,probability"  # nnx predict --csv

KIND_NAMES = {
    "model": "nnx model or checkpoint",
    "cache": "nnx image cache",
    "history-json": "nnx history (JSON)",
    "history-csv": "nnx history (CSV)",
    "predictions-csv": "nnx predictions (CSV)",
    "plot": "nnx plot (PNG)",
    "bench": "nnx benchmark record (JSON)",
    "onnx": "ONNX model",
}
_PEEK_LIMIT = 1 << 20  # bytes read at most to recognise a file
_umask_lock = threading.Lock()


_JSON_PEEK_CHARS = 1024  # characters of a stored JSON string read to recognise its marker


def _npz_json_prefix(path: Path, member: str) -> str | None:
    """The first characters of the JSON string stored as the 0-d unicode array ``member``
    of an npz, or None. Only the npy header and the first ``_JSON_PEEK_CHARS`` characters
    are read (decompressed as a stream), so memory stays bounded whatever the file holds:
    the markers nnx looks for are the JSON's first key."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
            if shape != () or dtype.kind != "U":
                return None
            raw = fh.read(min(dtype.itemsize, 4 * _JSON_PEEK_CHARS))
        codec = "utf-32-be" if dtype.byteorder == ">" else "utf-32-le"
        return raw[: len(raw) - len(raw) % 4].decode(codec).rstrip("\x00")
    except Exception:  # anything unreadable is simply "not ours"
        return None


def _starts_with_key(text: str | None, key: str, value: str | None = None) -> bool:
    """True when the JSON object ``text`` begins with ``key`` (holding the string ``value``)."""
    if text is None:
        return False
    pattern = r'\{\s*"' + re.escape(key) + r'"\s*:'
    if value is not None:
        pattern += r'\s*"' + re.escape(value) + '"'
    return re.match(pattern, text) is not None


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > 64 * _PEEK_LIMIT:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The protobuf varint at ``data[pos:]`` and the position after it (IndexError if cut)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80 or shift > 63:
            return value, pos
        shift += 7


def _onnx_producer(head: bytes) -> str | None:
    """The ``producer_name`` (field 2) of the serialized ONNX ModelProto that ``head``
    begins, or None. Only the top-level fields before it are walked (a length-delimited
    field such as the graph is skipped by its length, not read)."""
    pos = 0
    try:
        while pos < len(head):
            key, pos = _varint(head, pos)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(head, pos)
            elif wire == 2:
                size, pos = _varint(head, pos)
                if field == 2:
                    return head[pos : pos + size].decode("utf-8") if pos + size <= len(head) else None
                pos += size
            else:  # ModelProto has no other wire types at its top level
                return None
    except (IndexError, UnicodeDecodeError):
        return None
    return None


def _recognise(path: Path, kind: str) -> bool:
    """True when the regular file ``path`` carries the marker of an nnx file of ``kind``."""
    if kind == "model":
        return _starts_with_key(_npz_json_prefix(path, "__meta__.npy"), "format", MODEL_FORMAT)
    if kind == "cache":
        head = _npz_json_prefix(path, "meta.npy")  # caches before the marker began with "key"
        return _starts_with_key(head, "format", CACHE_FORMAT) or _starts_with_key(head, "key")
    if kind == "history-json":
        data = _json_file(path)
        return data is not None and (
            data.get("format") == HISTORY_FORMAT or {"epoch", "loss", "accuracy", "backend"} <= data.keys()
        )
    if kind == "bench":
        data = _json_file(path)
        return data is not None and data.get("format") == BENCH_FORMAT
    try:
        with open(path, "rb") as fh:
            head = fh.read(_PEEK_LIMIT)
    except OSError:
        return False
    if kind == "history-csv":
        return head.startswith(HISTORY_CSV_HEADER.encode())
    if kind == "predictions-csv":
        return head.startswith((PREDICTIONS_CSV_HEADER + ",").encode())
    if kind == "onnx":
        return _onnx_producer(head) == ONNX_PRODUCER
    if kind == "plot":  # a PNG whose tEXt chunk "Software" (12 bytes long) says nnx
        marker = b"\x00\x00\x00\x0ctEXtSoftware\x00" + PLOT_SOFTWARE.encode()
        return head.startswith(b"\x89PNG\r\n\x1a\n") and marker in head
    raise ValueError(f"unknown output kind {kind!r}")


def printable(text: object) -> str:
    """``text`` with every non-printable character escaped the way ``repr`` writes it
    (``\\n``, ``\\t``, ``\\x1b``, ``\\u2028``), so that a file name can never break or
    forge a line of output. Bytes of a name that is not valid UTF-8 (Python's surrogate
    escapes) show as ``\\xNN``. Printable text is returned unchanged."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # os.fsdecode's escape for an undecodable byte
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def check_target(path: str | os.PathLike, kind: str, label: str | None = None) -> Path:
    """Refuse, before any work, an output path nnx must not or cannot write.

    The parent folder must exist and be writable; ``path`` must be absent or a regular
    file holding nnx's own file of ``kind``. Raises ``UnsafeOutputError`` (something else
    is there) or ``OutputWriteError`` (the folder is missing or not writable).
    """
    path = Path(path)
    what = printable(f"{label} {path}" if label else path)
    if kind not in KIND_NAMES:
        raise ValueError(f"unknown output kind {kind!r}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputWriteError(
            errno.ENOENT,
            f"cannot write {what}: the folder {printable(parent)} does not exist (create it first)",
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputWriteError(
            errno.EACCES, f"cannot write {what}: no permission to write in {printable(parent)}"
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise OutputWriteError(exc.errno, f"cannot write {what}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeOutputError(
            errno.EISDIR, f"refusing to write {what}: it is a folder; give a file name instead"
        )
    if not stat.S_ISREG(st.st_mode) or not _recognise(path, kind):
        raise UnsafeOutputError(
            errno.EEXIST,
            f"refusing to overwrite {what}: it is not an {KIND_NAMES[kind]} written by nnx; "
            "choose another path or move that file away",
        )
    return path


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


# A temp file younger than this whose writer's PID is alive here is left alone even when
# unlocked: its writer may be between creating it and locking it.
UNLOCKED_TEMP_GRACE_S = 10.0


def _hold_lock(fd: int) -> int | None:
    """Lock a writer's temp file (exclusive ``flock``) and return a duplicate descriptor
    that keeps the lock after ``fd`` is closed, until it is closed itself (after the
    rename); None where the platform or filesystem has no ``flock`` (the PID rule then
    decides alone)."""
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.dup(fd)
    except (ImportError, OSError):
        return None


def _lock_state(tmp: Path) -> bool | None:
    """True when some open file holds ``tmp`` locked (a writer at work), False when nobody
    does, None when that cannot be told (no flock, or tmp cannot be opened)."""
    try:
        import fcntl

        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:  # ENOLCK, EOPNOTSUPP...: locks not supported here
        return None
    finally:
        os.close(fd)  # drops our lock, if we took it


def _pid_alive(pid_text: str) -> bool:
    """Whether the PID in a temp file's name runs here (True when it cannot be told)."""
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Delete temp files for ``name`` left by writers that are no longer running: nobody
    holds their lock and either their PID runs nowhere here or they are older than
    ``UNLOCKED_TEMP_GRACE_S`` (the PID was reused, or is another namespace's). Without
    flock, only the PID tells (this process's own temp files are then kept)."""
    prefix = f".{name}{TEMP_TAG}"
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for tmp in candidates:
        pid_text = tmp.name[len(prefix) :].split("-", 1)[0]
        locked = _lock_state(tmp)
        if locked:
            continue  # a writer at work, in this process or any other
        if _pid_alive(pid_text) or pid_text == str(os.getpid()):
            if locked is None:
                continue  # nothing else to go by
            try:
                if time.time() - tmp.lstat().st_mtime < UNLOCKED_TEMP_GRACE_S:
                    continue
            except OSError:
                continue
        try:
            tmp.unlink()
        except OSError:
            pass


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], kind: str) -> None:
    """Write ``path`` through ``write(binary_file)`` atomically, as an nnx file of ``kind``.

    The target is checked with ``check_target`` first; a failed or interrupted write
    leaves an existing target untouched and removes its temp file. Errors name the
    target (never the temp file).
    """
    path = check_target(path, kind)
    directory = path.parent if str(path.parent) else Path(".")
    _remove_stale_temps(directory, path.name)
    try:
        prefix = f".{path.name}{TEMP_TAG}{os.getpid()}-"
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputWriteError(exc.errno, f"cannot write {printable(path)}: {exc.strerror}") from None
    lock_fd = _hold_lock(fd)  # marks the temp file as in use until it is renamed
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if lock_fd is not None:
            os.close(lock_fd)
        if isinstance(exc, OSError) and not isinstance(exc, OutputWriteError):
            reason = exc.strerror or str(exc)
            raise OutputWriteError(
                exc.errno, f"cannot write {printable(path)}: {printable(reason)}"
            ) from None
        raise
    if lock_fd is not None:
        os.close(lock_fd)
    try:  # make the rename itself durable; not every filesystem allows it
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
