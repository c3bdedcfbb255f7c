"""Zip archives read safely: member names, features zipfile cannot read, and central
directories patched where a damaged local header would mislead zipfile."""

from __future__ import annotations

import bisect
import io
import stat
import struct
import zipfile
from pathlib import PurePosixPath
from typing import Any

# Compression methods this Python's zipfile can read (stored and deflate always; bzip2
# and LZMA when the interpreter was built with them).
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
try:
    import bz2  # noqa: F401

    ZIP_METHODS[zipfile.ZIP_BZIP2] = "bzip2"
except ImportError:  # pragma: no cover - interpreter built without bz2
    pass
try:
    import lzma  # noqa: F401

    ZIP_METHODS[zipfile.ZIP_LZMA] = "lzma"
except ImportError:  # pragma: no cover - interpreter built without lzma
    pass
ZIP_METHOD_NAMES = {
    1: "shrink",
    6: "implode",
    9: "deflate64",
    93: "zstandard",
    95: "xz",
    98: "ppmd",
    99: "AES",
}
ZIP_FLAG_ENCRYPTED = 0x1 | 0x40  # traditional PKWARE and strong encryption
ZIP_FLAG_PATCHED = 0x20
ZIP_FLAG_UTF8 = 0x800
ZIP_MAX_VERSION = getattr(zipfile, "MAX_EXTRACT_VERSION", 63)


def zip_member_name(info: zipfile.ZipInfo) -> tuple[str, str | None]:
    """The member's name and, if its bytes are not valid UTF-8, why it is skipped.

    Names flagged UTF-8 are UTF-8. An unflagged name is, by the zip standard, code page
    437, but many tools write UTF-8 without the flag: nnx reads its bytes as UTF-8 when they
    are valid UTF-8 (all-ASCII names included) and otherwise skips the member, since a
    legacy code page cannot be told apart reliably. Such a name is listed with its
    undecodable bytes as surrogate escapes, like an undecodable file name on disk.
    """
    name = info.orig_filename
    problem = None
    if not info.flag_bits & ZIP_FLAG_UTF8:
        raw = name.encode("cp437")  # zipfile decoded the bytes as cp437: undo it
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            name = raw.decode("utf-8", "surrogateescape")
            problem = "name is not valid UTF-8 (a legacy code page?); re-create the zip with UTF-8 names"
    return name.replace("\\", "/"), problem


def zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & ZIP_FLAG_ENCRYPTED:
        return "encrypted (password-protected) member; re-create the zip without a password"
    if info.flag_bits & ZIP_FLAG_PATCHED:
        return "compressed patched data, which zipfile cannot read; re-create the zip"
    if info.compress_type not in ZIP_METHODS:
        method = ZIP_METHOD_NAMES.get(info.compress_type, "unknown")
        readable = ", ".join(ZIP_METHODS.values())
        return (
            f"compression method {info.compress_type} ({method}) is not supported (only {readable}); "
            "re-create the zip with deflate"
        )
    if (info.external_attr >> 16) and stat.S_ISLNK(info.external_attr >> 16):
        return "a symlink stored in the zip; not followed"
    return None


def unsafe_member(name: str) -> bool:
    """True for zip member names that could escape a folder: absolute, drive, or '..'."""
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts or (bool(pure.parts) and ":" in pure.parts[0])


class PatchedFile(io.RawIOBase):
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


def central_directory_patches(fh: Any) -> tuple[dict[int, bytes], dict[int, str]]:
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
        if flags & ZIP_FLAG_UTF8:
            try:
                name.decode("utf-8")
            except UnicodeDecodeError:
                patches[start + pos + 8] = struct.pack("<H", flags & ~ZIP_FLAG_UTF8)
                hidden[index] = "name is marked UTF-8 but is not valid UTF-8; re-create the zip"
        if extract_version > ZIP_MAX_VERSION:
            patches[start + pos + 6] = bytes([20])
            version = f"{extract_version // 10}.{extract_version % 10}"
            hidden[index] = f"needs zip version {version}, newer than Python's zipfile reads"
        pos += 46 + name_len + extra_len + comment_len
        index += 1
    return patches, hidden
