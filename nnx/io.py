"""The model-file format: npz without pickle, written atomically, versioned.

This module reads and writes a model's parts (architecture description, parameters,
metadata); ``nnx.model`` builds a ``Sequential`` from them (``nnx.load``) and hands them
over to be saved, so the format never imports the model.

Model files are untrusted input: ``read_model_file`` opens the zip itself, reads only the
members it expects, parses each ``.npy`` header strictly (never pickle, never an object
dtype) and checks the JSON metadata and the architecture against the limits below and
against the stored arrays before it allocates anything for them.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFormatError, UsageError
from .files import MODEL_FORMAT, atomic_write, printable
from .layers import LOSSES, check_layer_config
from .registry import SLOT_NAMES

FORMAT = MODEL_FORMAT
FORMAT_VERSION = 1


def write_model_file(
    path: str | os.PathLike,
    config: dict[str, Any],
    params: list[tuple[np.ndarray, np.ndarray]],
    backend: str | None = None,
    metadata: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    state_arrays: dict[str, list[np.ndarray]] | None = None,
) -> None:
    """Write a model file from its parts (atomically; no pickle anywhere): architecture
    JSON (``Sequential.config()``), dtype, format version, ``metadata``, optional ``extra``
    JSON (checkpoint state) and one W/b array per Linear layer.

    ``state_arrays`` (checkpoints) maps up to MAX_STATE_ARRAYS names of
    ``STATE_ARRAY_NAMES`` to one array per parameter, shaped like it, in the order W0, b0,
    W1, b1, ...: the k-th name's arrays are stored as members ``s{k}W{i}``/``s{k}b{i}``,
    and the names as ``state_arrays`` in the metadata.
    """
    from .version import __version__

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nnx_version": __version__,
        "architecture": config,
        "dtype": str(params[0][0].dtype),
        "backend": backend,
        "metadata": metadata or {},
        "extra": extra,
    }
    names = list(state_arrays or {})
    count = sum(W.size + b.size for W, b in params) * (1 + len(names))
    if count > MAX_PARAMETERS:  # a file load would refuse: never write it
        raise UsageError(
            f"cannot save {printable(path)}: the model has {count:,} parameters"
            f"{' with its training-state arrays' if names else ''}, over the {MAX_PARAMETERS:,} nnx can load "
            "(nnx.io.MAX_PARAMETERS)"
        )
    if names:
        meta["state_arrays"] = names
    arrays = {"__meta__": np.array(json.dumps(meta))}
    for i, (W, b) in enumerate(params):
        arrays[f"W{i}"] = W
        arrays[f"b{i}"] = b
    for k, name in enumerate(names):
        flat = (state_arrays or {})[name]
        if name not in STATE_ARRAY_NAMES or k >= MAX_STATE_ARRAYS or len(flat) != 2 * len(params):
            raise ValueError(
                f"state array {name!r}: expected one array per parameter, named {STATE_ARRAY_NAMES}"
            )
        for i in range(len(params)):
            arrays[f"s{k}W{i}"] = flat[2 * i]
            arrays[f"s{k}b{i}"] = flat[2 * i + 1]
    atomic_write(path, lambda fh: np.savez(fh, **arrays), kind="model")


# ---------------------------------------------------------------- loading
# Limits on what a model file may ask of ``load``. Together they bound its memory:
# see LOAD_MEMORY_BOUND.
MAX_PARAMETERS = 2**26  # W and b elements of all Linear layers together, times 1 + state arrays
MAX_LAYERS = 256  # entries of architecture["layers"]
MAX_STATE_ARRAYS = 4  # training-state arrays per parameter a checkpoint may hold
# names a checkpoint's training-state arrays may have (optimizer slots, early stopping's best)
STATE_ARRAY_NAMES = (*SLOT_NAMES, "best")
MAX_META_CHARS = 2**23  # characters of the JSON in __meta__ (checkpoint history lives there)
MAX_JSON_DEPTH = 32  # nesting of JSON arrays/objects
MAX_JSON_CONTAINERS = 2**16  # '[' and '{' characters in the JSON, counted before parsing
MAX_INT_DIGITS = 100  # digits of a JSON integer (an RNG state holds 128-bit ones)
_MAX_NPY_HEADER = 4096  # numpy writes about 128 bytes
_MAX_READ = 1 << 18  # the largest single read from the file, zipfile's own reads included
_CHUNK = 1 << 16  # members are read in pieces of this size


def load_memory_bound() -> int:
    """The most memory ``load`` uses for any file, in bytes, under the current limits.

    Per stored parameter: its member buffer, the float64 draw made when its layer is
    built, set_parameters' copy (at most 8 bytes each) and 1 byte for the finiteness test
    (measured: 25.0 bytes for float64 files, 17.0 for float32); a checkpoint's training
    state arrays take only their member buffer, and count against MAX_PARAMETERS too. Per metadata character:
    its 4-byte buffer and the string plus the parsed JSON (measured at most 26 bytes, for
    lists of one-character non-Latin-1 strings). 16 MiB covers the zip directory (at most
    ``_MAX_READ`` bytes of it are parsed) and small allocations.
    """
    return 25 * MAX_PARAMETERS + 32 * MAX_META_CHARS + (16 << 20)


LOAD_MEMORY_BOUND = load_memory_bound()  # 1872 MiB (1.83 GiB) at the limits above

_META = "__meta__.npy"
_MEMBER_NAME = re.compile(r"__meta__\.npy|(?:s[0-9])?[Wb](?:0|[1-9][0-9]{0,3})\.npy")
_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER = re.compile(
    r"\{'descr': '(?P<descr>[^']{1,16})', 'fortran_order': (?P<fortran>True|False), "
    r"'shape': \((?P<shape>|[0-9]{1,19},|[0-9]{1,19}(?:, [0-9]{1,19})+)\), \} *\n"
)
_FLOAT_DESCR = ("<f4", "<f8", ">f4", ">f8")
_META_DESCR = re.compile(r"([<>])U([1-9][0-9]{0,8})")


@dataclass(frozen=True)
class ModelFile:
    """The checked parts of a model file, from which ``nnx.model`` builds the model."""

    architecture: dict[str, Any]  # {"layers": [layer configs], "loss": ...}
    params: list[tuple[np.ndarray, np.ndarray]]  # (W, b) per Linear layer, shapes checked
    backend: str | None
    dtype: str | None  # "float32" or "float64" (None in a file that does not say)
    metadata: dict[str, Any]
    extra: dict[str, Any] | None  # checkpoint state, when the file is a checkpoint
    # a checkpoint's training-state arrays: {name: [one array per parameter, W0, b0, ...]}
    states: dict[str, list[np.ndarray]]


def read_model_file(path: str | os.PathLike) -> ModelFile:
    """The parts of the model file at ``path``, every one checked (see ``nnx.load``).

    Raises FileNotFoundError for a missing file (or a directory) and ModelFormatError,
    naming the file, for anything that is not a model file this nnx wrote.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is None or stat.S_ISDIR(mode):
        raise FileNotFoundError(f"no model file at {printable(path)}")
    if not stat.S_ISREG(mode):  # a FIFO, a device such as /dev/zero, a socket: never read
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket or special file"
        )
        raise ModelFormatError(
            f"{printable(path)} is not a regular file ({kind}); give a model file written by nnx"
        )
    try:
        meta, params, states = _read_model_file(path)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path} {exc}") from exc
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        ValueError,
        struct.error,
        zlib.error,
        NotImplementedError,
        OverflowError,
    ) as exc:
        raise ModelFormatError(
            f"{path} cannot be read as an nnx model (truncated or corrupt file?): {exc}"
        ) from exc
    dtype = meta.get("dtype")
    return ModelFile(
        architecture=meta["architecture"],
        params=params,
        backend=meta.get("backend"),
        dtype=dtype if dtype in ("float32", "float64") else None,
        metadata=dict(meta.get("metadata") or {}),
        extra=meta.get("extra"),
        states=states,
    )


class _CappedReads:
    """A read-only file for zipfile that refuses any single read over ``_MAX_READ`` bytes.

    zipfile reads the central directory in one piece of the size the archive declares;
    this caps it (and with it how many entries zipfile parses), whatever the file says.
    """

    def __init__(self, fh: Any):
        self._fh = fh

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            here = self._fh.tell()
            n = self._fh.seek(0, os.SEEK_END) - here
            self._fh.seek(here)
        if n > _MAX_READ:
            raise ModelFormatError(f"is not an nnx model file: its zip directory asks for a {n}-byte read")
        return self._fh.read(n)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def seekable(self) -> bool:
        return True


def _read_model_file(
    path: Path,
) -> tuple[dict[str, Any], list[tuple[np.ndarray, np.ndarray]], dict[str, list[np.ndarray]]]:
    """The checked metadata, the (W, b) arrays and the training-state arrays, each checked
    against the architecture."""
    with open(path, "rb") as raw:
        start = raw.read(len(_NPY_MAGIC))
        if start == _NPY_MAGIC:
            raise ModelFormatError("is a bare .npy array, not an nnx model file (an npz archive)")
        if not start.startswith(b"PK\x03\x04"):  # an npz starts with its first member
            raise ModelFormatError("is not an nnx model file (not an npz archive)")
        raw.seek(0)
        with zipfile.ZipFile(_CappedReads(raw)) as archive:  # type: ignore[arg-type]
            members = _check_members(archive.infolist())
            meta = _parse_meta(*_read_npy(archive, members[_META], _meta_size))
            linears = _check_meta(meta)
            names = meta.get("state_arrays") or []
            prefixes = [""] + [f"s{k}" for k in range(len(names))]
            expected = {_META} | {
                f"{s}{p}{i}.npy" for s in prefixes for i in range(len(linears)) for p in "Wb"
            }
            if set(members) != expected:
                missing, unexpected = sorted(expected - set(members)), sorted(set(members) - expected)
                raise ModelFormatError(
                    f"does not match its architecture ({len(linears)} Linear layers): "
                    f"missing members {missing}, unexpected members {unexpected}"
                )
            shapes = {}
            for prefix in prefixes:
                for i, (n_in, n_out) in enumerate(linears):
                    shapes[f"{prefix}W{i}.npy"] = ((n_out, n_in),)
                    shapes[f"{prefix}b{i}.npy"] = ((n_out, 1), (n_out,))
            for name, allowed in shapes.items():  # every size is checked before any is read
                _check_array_size(members[name], allowed[0][0] * allowed[0][1])
            arrays = {
                name: _array(*_read_npy(archive, members[name], _array_size(allowed)))
                for name, allowed in shapes.items()
            }
    params = [(arrays[f"W{i}.npy"], arrays[f"b{i}.npy"]) for i in range(len(linears))]
    states = {}
    for k, name in enumerate(names):
        flat = []
        for i, (_, n_out) in enumerate(linears):
            flat += [arrays[f"s{k}W{i}.npy"], arrays[f"s{k}b{i}.npy"].reshape(n_out, 1)]
        states[name] = flat
    return meta, params, states


def _check_members(infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """Member names, count, compression and encryption, from the zip directory alone."""
    state = sum(1 for info in infos if info.filename.startswith("s"))  # training-state members
    if len(infos) - state > 1 + 2 * MAX_LAYERS or state > 2 * MAX_LAYERS * MAX_STATE_ARRAYS:
        raise ModelFormatError(f"is not an nnx model file: {len(infos)} members")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if not _MEMBER_NAME.fullmatch(name):
            raise ModelFormatError(f"is not an nnx model file: unexpected member {reprlib.repr(name)}")
        if name in members:
            raise ModelFormatError(f"is corrupt: member {name!r} appears twice")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFormatError(
                f"has member {name!r} compressed with zip method {info.compress_type}; "
                "nnx reads stored or deflated members only"
            )
        if info.flag_bits & 0x61:  # encrypted, compressed patched data, strong encryption
            raise ModelFormatError(
                f"has an encrypted or patched member {name!r} (zip flags {info.flag_bits:#x})"
            )
        members[name] = info
    if _META not in members:
        raise ModelFormatError("is an npz file but not an nnx model (no __meta__ entry)")
    return members


def _check_array_size(info: zipfile.ZipInfo, count: int) -> None:
    """From the zip directory alone: ``count`` floats take 4 or 8 bytes each after a header."""
    if not 10 + 4 * count <= info.file_size <= 12 + _MAX_NPY_HEADER + 8 * count:
        raise ModelFormatError(
            f"is corrupt: member {info.filename!r} declares {info.file_size} bytes, which cannot "
            f"hold the {count} floats its architecture needs"
        )


# A .npy header, once parsed: (descr, fortran_order, shape).
_Header = tuple[str, bool, tuple[int, ...]]


def _read_npy(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, data_size: Any
) -> tuple[str, _Header, bytearray]:
    """Read a member as .npy: its header first, strictly parsed; then ``data_size(name,
    header)`` checks it and gives the data's byte count, which must fill the member
    exactly, before a buffer of that size is allocated and read into (in pieces)."""
    name = info.filename
    with archive.open(info) as member:
        magic = _read_exact(member, 10, name)
        if magic[:6] != _NPY_MAGIC:
            raise ModelFormatError(f"is corrupt: member {name!r} is not a .npy array")
        version = (magic[6], magic[7])
        if version == (1, 0):
            length, encoding = int.from_bytes(magic[8:10], "little"), "latin1"
        elif version in ((2, 0), (3, 0)):
            length = int.from_bytes(magic[8:10] + _read_exact(member, 2, name), "little")
            encoding = "latin1" if version == (2, 0) else "utf8"
        else:
            raise ModelFormatError(f"is corrupt: member {name!r} has .npy format version {version}")
        if length > _MAX_NPY_HEADER:
            raise ModelFormatError(f"is corrupt: member {name!r} has a {length}-byte .npy header")
        offset = (10 if version == (1, 0) else 12) + length
        header = _parse_npy_header(_read_exact(member, length, name), encoding, name)
        size = data_size(name, header)
        if offset + size != info.file_size:
            raise ModelFormatError(
                f"is corrupt: member {name!r} holds {info.file_size - offset} data bytes for a "
                f"{header[2]} array of {header[0]!r} ({size} expected)"
            )
        data = bytearray(size)
        with memoryview(data) as view:
            done = 0
            while done < size:
                chunk = member.read(min(_CHUNK, size - done))
                if not chunk:
                    raise ModelFormatError(f"is truncated or corrupt: member {name!r} ends early")
                view[done : done + len(chunk)] = chunk
                done += len(chunk)
        if member.read(1):
            raise ModelFormatError(f"is corrupt: member {name!r} is longer than it declares")
    return name, header, data


def _read_exact(member: Any, n: int, name: str) -> bytes:
    data = member.read(n)
    if len(data) != n:
        raise ModelFormatError(f"is truncated or corrupt: member {name!r} ends early")
    return data


def _parse_npy_header(raw: bytes, encoding: str, name: str) -> _Header:
    """Only the dict numpy writes: descr, fortran_order and a shape of decimal ints."""
    match = _NPY_HEADER.fullmatch(raw.decode(encoding, errors="replace"))
    if match is None:
        raise ModelFormatError(f"is corrupt: member {name!r} has a malformed .npy header")
    shape_text = match["shape"].rstrip(",")
    shape = tuple(int(d) for d in shape_text.split(", ")) if shape_text else ()
    return match["descr"], match["fortran"] == "True", shape


def _array_size(shapes: tuple[tuple[int, ...], ...]) -> Any:
    """A data_size check for a float32/float64 parameter array of one of ``shapes``."""

    def size(name: str, header: _Header) -> int:
        descr, _, shape = header
        if descr not in _FLOAT_DESCR:
            raise ModelFormatError(
                f"has member {name!r} of dtype {descr!r}; parameters are float32 or float64"
            )
        if shape not in shapes:
            raise ModelFormatError(
                f"has member {name!r} of shape {shape}, but its architecture needs {shapes[0]}"
            )
        return int(np.prod(shape)) * np.dtype(descr).itemsize

    return size


def _array(name: str, header: _Header, data: bytearray) -> np.ndarray:
    """The parameter array over ``data`` (native byte order, C or Fortran layout as stored)."""
    descr, fortran, shape = header
    arr = np.frombuffer(data, dtype=np.dtype(descr))
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _meta_size(name: str, header: _Header) -> int:
    """A data_size check for __meta__: a 0-d unicode array of at most MAX_META_CHARS."""
    descr, _, shape = header
    match = _META_DESCR.fullmatch(descr)
    if match is None or shape != ():
        raise ModelFormatError(
            f"is corrupt: __meta__ is a {descr!r} array of shape {shape}, not a JSON string"
        )
    chars = int(match[2])
    if chars > MAX_META_CHARS:
        raise ModelFormatError(f"has {chars} characters of metadata (at most {MAX_META_CHARS})")
    return 4 * chars


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a JSON integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _parse_meta(name: str, header: _Header, data: bytearray) -> Any:
    """The __meta__ JSON, bounded in size (already) and in nesting."""
    encoding = "utf-32-le" if header[0][0] == "<" else "utf-32-be"
    with memoryview(data) as view:
        text = str(view, encoding).rstrip("\x00")
    data.clear()
    containers = text.count("[") + text.count("{")
    if containers > MAX_JSON_CONTAINERS:
        raise ModelFormatError(
            f"has {containers} JSON arrays/objects in __meta__ (at most {MAX_JSON_CONTAINERS})"
        )
    try:
        meta = json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        raise ModelFormatError(f"has __meta__ JSON nested deeper than {MAX_JSON_DEPTH}") from None
    except ValueError as exc:
        raise ModelFormatError(f"is corrupt: __meta__ is not valid JSON: {exc}") from exc
    _check_depth(meta)
    return meta


def _check_depth(value: Any) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH (only containers are stacked)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ModelFormatError(f"has __meta__ JSON nested deeper than {MAX_JSON_DEPTH}")
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))


def _check_meta(meta: Any) -> list[tuple[int, int]]:
    """Check the metadata's structure and types; return the Linear sizes (n_in, n_out)."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFormatError("is not an nnx model file")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFormatError(f"is corrupt: format_version is {reprlib.repr(version)}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"uses model format version {version}, newer than this nnx reads "
            f"({FORMAT_VERSION}); upgrade nnx to load it"
        )
    for key, kinds in (
        ("nnx_version", (str,)),
        ("backend", (str, type(None))),
        ("extra", (dict, type(None))),
        ("metadata", (dict, type(None))),
    ):
        if key in meta and not isinstance(meta[key], kinds):
            raise ModelFormatError(f"is corrupt: {key} is a {type(meta[key]).__name__}")
    if "dtype" in meta and meta["dtype"] not in ("float32", "float64"):
        raise ModelFormatError(f"is corrupt: dtype is {reprlib.repr(meta['dtype'])}")
    _check_user_metadata(meta.get("metadata") or {})
    names = meta.get("state_arrays", [])
    if (
        not isinstance(names, list)
        or len(names) > MAX_STATE_ARRAYS
        or len(set(map(str, names))) != len(names)
        or not all(isinstance(n, str) and n in STATE_ARRAY_NAMES for n in names)
    ):
        raise ModelFormatError(
            f"is corrupt: state_arrays must list at most {MAX_STATE_ARRAYS} distinct names of "
            f"{STATE_ARRAY_NAMES}, got {reprlib.repr(names)}"
        )
    copies = 1 + len(names)  # the parameters and each training-state array
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or set(arch) != {"layers", "loss"}:
        raise ModelFormatError("is corrupt: architecture must be an object with exactly 'layers' and 'loss'")
    layers, loss = arch["layers"], arch["loss"]
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ModelFormatError(f"is corrupt: unknown loss {reprlib.repr(loss)}; expected one of {LOSSES}")
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise ModelFormatError(f"is corrupt: architecture layers must be a list of 1 to {MAX_LAYERS} layers")
    linears = []
    total = 0
    for pos, cfg in enumerate(layers):
        try:
            cfg = check_layer_config(cfg)
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"is corrupt: layer {pos}: {exc}") from exc
        if cfg["type"] == "Linear":
            n_in, n_out = cfg["n_in"], cfg["n_out"]
            total += n_out * (n_in + 1) * copies
            if total > MAX_PARAMETERS:
                raise ModelFormatError(
                    f"asks for more than {MAX_PARAMETERS} parameters (the most nnx loads, "
                    "training-state arrays included)"
                )
            linears.append((n_in, n_out))
    return linears


def _check_user_metadata(metadata: dict[str, Any]) -> None:
    """The metadata keys nnx reads back itself (``nnx predict``) must have their types."""
    classes, size = metadata.get("classes"), metadata.get("image_size")
    if classes is not None and not (
        isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)
    ):
        raise ModelFormatError("is corrupt: metadata classes must be a list of at least two class names")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ModelFormatError(
            f"is corrupt: metadata image_size must be a positive integer, got {reprlib.repr(size)}"
        )
