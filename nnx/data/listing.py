"""Listing an image folder or zip and inferring its classes (Kaggle CLASS.N.ext names or
one sub-folder per class)."""

from __future__ import annotations

import collections
import errno
import os
import re
import stat
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnusableFileError
from . import common
from .common import (
    IMAGE_EXTENSIONS,
    fail,
    file_kind,
    is_utf8,
    mib,
    os_reason,
    read_regular,
)
from .zips import (
    PatchedFile,
    central_directory_patches,
    unsafe_member,
    zip_member_name,
    zip_member_problem,
)

_KAGGLE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\.[^/]*\.[A-Za-z0-9]+$")


# ------------------------------------------------------------------ sources
@dataclass
class Entry:
    name: str  # path relative to the source, '/'-separated
    label_name: str
    size: int
    mtime: float


class Source:
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
            raise fail(
                self.path, f"cannot read the zip's list of members ({exc}); re-create the zip"
            ) from None
        try:
            self._raw = open(self.path, "rb")
            patches, self._hidden = central_directory_patches(self._raw)
            self._zip = zipfile.ZipFile(PatchedFile(self._raw, patches))
        except Exception as exc:
            self.close()
            raise fail(
                self.path, f"cannot read the zip's list of members ({exc}); re-create the zip"
            ) from None

    def list(self) -> list[tuple[str, int, float, str | None]]:
        return self._list_zip() if self._zip is not None else self._list_folder()

    def _list_zip(self) -> list[tuple[str, int, float, str | None]]:
        assert self._zip is not None
        by_name: dict[str, list[zipfile.ZipInfo]] = collections.defaultdict(list)
        problem_of: dict[int, str] = {}
        for index, info in enumerate(self._zip.infolist()):
            name, problem = zip_member_name(info)
            if name.endswith("/"):  # a folder entry
                continue
            if not name or "\0" in name:
                self.problems.append((name, "name is empty or holds a NUL byte; re-create the zip"))
                continue
            if unsafe_member(name):
                self.problems.append((name, "refused: absolute or '..' path in zip"))
                continue
            problem = self._hidden.get(index) or problem or zip_member_problem(info)
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
            raise fail(self.path, f"cannot open the folder ({os_reason(exc)})") from None
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
                    raise fail(
                        self.path, f"cannot open the folder ({os_reason(exc)}); check its permissions"
                    ) from None
                self.problems.append((rel_dir, f"cannot open folder ({os_reason(exc)})"))
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
                        self.problems.append((rel, f"cannot look at it ({os_reason(exc)})"))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    ident = (st.st_dev, st.st_ino)
                    if ident in ancestors:
                        self.problems.append((rel, "symlink loop: the link leads back to a folder above it"))
                    elif ident in visited:
                        self.problems.append((rel, "a link to a folder already read; not read twice"))
                    elif not is_utf8(item.name):
                        self.problems.append((rel, "folder name is not valid UTF-8; rename it"))
                    else:
                        visited.add(ident)
                        stack.append((rel, full, ancestors | {ident}))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    problem: str | None = f"{file_kind(st.st_mode)}, not a regular file; never opened"
                elif not is_utf8(item.name):
                    problem = "name is not valid UTF-8; rename the file"
                else:
                    problem = None
                out.append((rel, st.st_size, st.st_mtime, problem))
        return out

    def read(self, name: str) -> bytes:
        """The bytes of one file or member, at most ``MAX_IMAGE_BYTES`` of them."""
        limit = common.MAX_IMAGE_BYTES
        if self._zip is not None:
            with self._lock, self._zip.open(self._members[name]) as fh:
                data = fh.read(limit + 1)  # to the end: zipfile checks the CRC there
        else:
            data = read_regular(self.path / name, limit)
        if len(data) > limit:
            raise UnusableFileError(f"larger than the {mib(limit)} limit per image")
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._raw is not None:
            self._raw.close()


def usable_images(
    names: list[tuple[str, int, float, str | None]],
) -> tuple[list[tuple[str, int, float]], list[tuple[str, str]]]:
    """The image files of a listing, as (name, size, mtime) in sorted name order, and the
    files that are not used, as (name, reason): hidden files and folders (".name") and
    macOS "__MACOSX" folders are ignored silently; a file with a problem is listed with
    it; so is one without an image extension or larger than ``MAX_IMAGE_BYTES``. No
    classes: ``classify`` gives those, ``nnx predict`` needs none."""
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
        elif size > common.MAX_IMAGE_BYTES:
            skipped.append(
                (name, f"{size} bytes, over the {mib(common.MAX_IMAGE_BYTES)} limit per image; not read")
            )
        else:
            images.append((name, size, mtime))
    return images, skipped


def classify(
    names: list[tuple[str, int, float, str | None]],
) -> tuple[list[Entry], list[tuple[str, str]], str]:
    """Assign each image file a class name from the layout; report files that fit none,
    and those ``usable_images`` leaves out.
    """
    images, skipped = usable_images(names)
    # Kaggle layout when the CLASS.N.ext names give exactly two classes, or three or more
    # with every image in one folder; otherwise the class is each file's parent folder.
    kaggle = {
        name: m.group(1).lower() for name, _, _ in images if (m := _KAGGLE.match(name.rsplit("/", 1)[-1]))
    }
    n_named = len(set(kaggle.values()))
    one_folder = len({name.rpartition("/")[0] for name, _, _ in images}) <= 1
    entries: list[Entry] = []
    if n_named == 2 or (n_named > 2 and one_folder):
        layout = "CLASS.N.ext files"
        for name, size, mtime in images:
            if name in kaggle:
                entries.append(Entry(name, kaggle[name], size, mtime))
            else:
                skipped.append((name, "name does not follow CLASS.N.ext"))
    else:
        layout = "sub-folder per class"
        for name, size, mtime in images:
            parts = name.split("/")
            if len(parts) < 2:
                skipped.append((name, "not inside a class sub-folder"))
            else:
                entries.append(Entry(name, parts[-2], size, mtime))
    return entries, skipped, layout
