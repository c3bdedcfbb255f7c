"""Build model files by hand, valid or not, for the loader's tests (test_io, the fuzz test)."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from typing import Any

import numpy as np

Members = list[tuple[str, bytes]]


def npy(arr: Any) -> bytes:
    """``arr`` as numpy writes it in a .npy (pickle allowed, so object arrays can be built)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=True)
    return buf.getvalue()


def npy_raw(descr: str, shape: tuple, data: bytes = b"", fortran: bool = False, version=(1, 0)) -> bytes:
    """A .npy whose header says whatever it is told, followed by ``data`` (any length)."""
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    width = 2 if version == (1, 0) else 4
    pad = -(6 + 2 + width + len(header) + 1) % 64
    header = (header + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY" + bytes(version) + len(header).to_bytes(width, "little") + header + data


def meta_npy(meta: Any) -> bytes:
    """A __meta__ member: ``meta`` as JSON (a str is taken as the JSON text itself)."""
    return npy(np.array(meta if isinstance(meta, str) else json.dumps(meta)))


def members_of(data: bytes) -> Members:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


def zip_bytes(members: Members, compression: int = zipfile.ZIP_STORED) -> bytes:
    """An archive of ``members`` in order (a name given twice is written twice)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name"
        with zipfile.ZipFile(buf, "w", compression=compression) as z:
            for name, data in members:
                z.writestr(name, data)
    return buf.getvalue()


def meta_of(members: Members) -> dict[str, Any]:
    data = dict(members)["__meta__.npy"]
    return json.loads(str(np.load(io.BytesIO(data), allow_pickle=False)))


def replace(members: Members, name: str, data: bytes) -> Members:
    return [(n, data if n == name else d) for n, d in members]


def with_meta(members: Members, meta: Any) -> Members:
    return replace(members, "__meta__.npy", meta_npy(meta))
