"""One bad input file never aborts an image load: each is skipped and listed with its reason
while the other files load. Every case uses a real file: symlinks, a FIFO, zips built with
zipfile and patched byte by byte, files without permissions (needs Pillow)."""

import io
import logging
import os
import stat
import struct
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL", reason="image tests need Pillow: pip install 'nnx-nets[images]'")
from image_fixtures import class_images, jpeg_bytes, kaggle_folder, png_bytes  # noqa: E402
from PIL import Image  # noqa: E402
from unprivileged import reachable_tmp, run_unprivileged  # noqa: E402

import nnx.data  # noqa: E402
from nnx.data import DataError, decode_image, load_images, safe_name  # noqa: E402
from nnx.errors import UnsafeOutputError  # noqa: E402

N = 3  # good images per class in each fixture


def _load(path, **kw):
    kw = {"size": 8, "val_split": 0, "progress": False, **kw}
    return load_images(path, **kw)


def _good_folder(root: Path, n: int = N) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cats, dogs = class_images(n)
    for i, (c, d) in enumerate(zip(cats, dogs)):
        (root / f"cat.{i}.jpg").write_bytes(jpeg_bytes(c))
        (root / f"dog.{i}.jpg").write_bytes(jpeg_bytes(d))
    return root


def _good_files(n: int = N) -> list[str]:
    return sorted([f"cat.{i}.jpg" for i in range(n)] + [f"dog.{i}.jpg" for i in range(n)])


def _good_zip(path: Path, extra=(), compression=zipfile.ZIP_STORED) -> Path:
    """cat.N.jpg / dog.N.jpg members, then ``extra`` (name or ZipInfo, bytes) pairs."""
    cats, dogs = class_images(N)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        with zipfile.ZipFile(path, "w", compression) as zf:
            for i, (c, d) in enumerate(zip(cats, dogs)):
                zf.writestr(f"cat.{i}.jpg", jpeg_bytes(c))
                zf.writestr(f"dog.{i}.jpg", jpeg_bytes(d))
            for name, data in extra:
                zf.writestr(name, data)
    return path


def _members(data: bytes) -> list[tuple[bytes, int, int]]:
    """(raw name, central-directory entry offset, local header offset) of every member."""
    cd_size, cd_offset = struct.unpack("<LL", data[-22 + 12 : -22 + 20])  # no archive comment
    out, pos = [], cd_offset
    while pos < cd_offset + cd_size:
        n, e, c = struct.unpack("<3H", data[pos + 28 : pos + 34])
        (local,) = struct.unpack("<L", data[pos + 42 : pos + 46])
        out.append((data[pos + 46 : pos + 46 + n], pos, local))
        pos += 46 + n + e + c
    return out


def _patch(path: Path, name: bytes, central: dict | None = None, local: dict | None = None) -> None:
    """Overwrite bytes of member ``name``'s central-directory entry and local header."""
    data = bytearray(path.read_bytes())
    hits = [(cd, lh) for raw, cd, lh in _members(bytes(data)) if raw == name]
    assert hits, name
    for cd, lh in hits:
        for off, new in (central or {}).items():
            data[cd + off : cd + off + len(new)] = new
        for off, new in (local or {}).items():
            data[lh + off : lh + off + len(new)] = new
    path.write_bytes(bytes(data))


def _spy_zip_opens(monkeypatch) -> list[str]:
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self, member, *a, **k):
        opened.append(getattr(member, "filename", member))
        return real_open(self, member, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


def _spy_os_opens(monkeypatch) -> list[str]:
    opened: list[str] = []
    real_open = os.open

    def spy(path, *a, **k):
        opened.append(os.fspath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", spy)
    return opened


def _assert_good_loaded(data, n: int = N) -> None:
    assert sorted(data.files) == _good_files(n)
    assert data.X_train.shape == (8 * 8 * 3, 2 * n) and data.Y_train.sum() == n


# ------------------------------------------------------------------ folders
def test_dangling_symlink_and_symlink_loops_are_listed(tmp_path):
    root = _good_folder(tmp_path / "imgs")
    (root / "cat.gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "dog.loop.jpg").symlink_to(root / "dog.loop.jpg")  # ELOOP when followed
    elsewhere = tmp_path / "elsewhere.jpg"
    elsewhere.write_bytes((root / "dog.0.jpg").read_bytes())
    (root / "dog.linked.jpg").symlink_to(elsewhere)  # a good link is followed and loads
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)  # a folder loop
    data = _load(root)
    skipped = dict(data.skipped)
    assert "dangling symlink" in skipped["cat.gone.jpg"]
    assert "symlink loop" in skipped["dog.loop.jpg"]
    assert "symlink loop" in skipped["sub/up"]
    assert sorted(data.files) == sorted(_good_files() + ["dog.linked.jpg"])


def test_symlinked_class_folders_are_followed_once(tmp_path):
    cats, dogs = class_images(N)
    store = tmp_path / "store"
    for cls, pics in (("cats", cats), ("dogs", dogs)):
        (store / cls).mkdir(parents=True)
        for i, p in enumerate(pics):
            (store / cls / f"{i}.jpg").write_bytes(jpeg_bytes(p))
    root = tmp_path / "train"
    root.mkdir()
    (root / "cats").symlink_to(store / "cats", target_is_directory=True)
    (root / "dogs").symlink_to(store / "dogs", target_is_directory=True)
    (root / "dogs_again").symlink_to(store / "dogs", target_is_directory=True)
    data = _load(root)
    assert data.classes == ["cats", "dogs"] and len(data.files) == 2 * N
    assert "already read" in dict(data.skipped)["dogs_again"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="os.mkfifo needs a POSIX system")
def test_fifo_and_device_are_never_opened(tmp_path, monkeypatch):
    root = _good_folder(tmp_path / "imgs")
    fifo = root / "cat.pipe.jpg"
    os.mkfifo(fifo)
    if os.path.exists("/dev/null"):
        (root / "dog.null.jpg").symlink_to("/dev/null")  # a character device, through a link
    opened = _spy_os_opens(monkeypatch)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(data=_load(root)), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():  # opened the FIFO for reading and blocked: release it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_images blocked opening a FIFO")
    data = result["data"]
    skipped = dict(data.skipped)
    assert "FIFO" in skipped["cat.pipe.jpg"] and "never opened" in skipped["cat.pipe.jpg"]
    assert str(fifo) not in opened
    if os.path.exists("/dev/null"):
        assert "character device" in skipped["dog.null.jpg"]
        assert str(root / "dog.null.jpg") not in opened
    _assert_good_loaded(data)


def test_file_over_the_size_limit_is_never_opened(tmp_path, monkeypatch):
    root = _good_folder(tmp_path / "imgs")
    big = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    (root / "dog.big.png").write_bytes(png_bytes(Image.fromarray(big)))
    limit = max(f.stat().st_size for f in root.glob("*.jpg")) + 1
    assert (root / "dog.big.png").stat().st_size > limit
    monkeypatch.setattr(nnx.data.common, "MAX_IMAGE_BYTES", limit)  # the test's limit (really 64 MiB)
    opened = _spy_os_opens(monkeypatch)
    data = _load(root)
    assert "over the" in dict(data.skipped)["dog.big.png"] and "limit" in dict(data.skipped)["dog.big.png"]
    assert str(root / "dog.big.png") not in opened
    _assert_good_loaded(data)


def test_read_stops_at_the_limit_when_a_file_grew_after_listing(tmp_path, monkeypatch):
    root = _good_folder(tmp_path / "imgs")
    real_list = nnx.data._Source.list

    def list_then_grow(self):
        listed = real_list(self)
        with open(root / "cat.0.jpg", "ab") as fh:
            fh.write(b"\0" * 100_000)  # grows past the limit between listing and reading
        return listed

    monkeypatch.setattr(nnx.data._Source, "list", list_then_grow)
    monkeypatch.setattr(nnx.data.common, "MAX_IMAGE_BYTES", 50_000)
    data = _load(root)
    assert "limit" in dict(data.skipped)["cat.0.jpg"]
    assert len(data.files) == 2 * N - 1


def test_names_that_are_not_utf8_are_skipped_and_shown_escaped(tmp_path, caplog):
    root = _good_folder(tmp_path / "imgs")
    try:
        with open(os.path.join(os.fsencode(root), b"cat.\xff.jpg"), "wb") as fh:
            fh.write((root / "cat.0.jpg").read_bytes())
        os.mkdir(os.path.join(os.fsencode(root), b"folder\xfe"))
        with open(os.path.join(os.fsencode(root), b"folder\xfe", b"dog.9.jpg"), "wb") as fh:
            fh.write((root / "dog.0.jpg").read_bytes())
    except (OSError, ValueError) as exc:
        pytest.skip(f"this file system refuses a non-UTF-8 file name ({exc})")
    with caplog.at_level(logging.WARNING, logger="nnx"):
        data = _load(root)
    raw = os.fsdecode(b"cat.\xff.jpg")  # the skipped list keeps the name as the OS gives it
    assert "not valid UTF-8" in dict(data.skipped)[raw]
    assert "folder name is not valid UTF-8" in dict(data.skipped)[os.fsdecode(b"folder\xfe")]
    assert "cat.\\xff.jpg" in caplog.text
    _assert_good_loaded(data)


def test_control_characters_in_names_cannot_forge_output_lines(tmp_path, caplog):
    root = _good_folder(tmp_path / "imgs")
    evil = "cat.x\nWARNING nnx: all good\x1b[2K.jpg"
    (root / evil).write_bytes(b"not a picture")
    with caplog.at_level(logging.INFO, logger="nnx"):
        data = _load(root)
    assert evil in dict(data.skipped)  # raw in the list ...
    assert all("\n" not in r.getMessage() and "\x1b" not in r.getMessage() for r in caplog.records)
    assert "cat.x\\nWARNING nnx: all good\\x1b[2K.jpg" in caplog.text  # ... escaped in the log
    bad = tmp_path / "bad\nline"
    bad.mkdir()
    (bad / "cat.1.jpg").write_bytes(b"")
    with pytest.raises(DataError) as err:
        _load(bad)
    assert "\n" not in str(err.value) and "bad\\nline" in str(err.value)


def test_safe_name():
    assert safe_name("cat.1.jpg") == "cat.1.jpg"
    assert safe_name("chat é 猫.jpg") == "chat é 猫.jpg"
    assert safe_name("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert safe_name("\x1b[31mred\x00") == "\\x1b[31mred\\x00"
    assert safe_name("line\u2028sep\x85") == "line\\u2028sep\\x85"
    assert safe_name(os.fsdecode(b"bad\xff.jpg")) == "bad\\xff.jpg"
    assert safe_name(Path("x") / "y") == os.path.join("x", "y")


@pytest.fixture
def shared_tmp(tmp_path):
    with reachable_tmp(tmp_path) as folder:
        yield folder


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_permission_denied_files_and_folders_are_listed(shared_tmp):
    root = _good_folder(shared_tmp / "imgs")
    (root / "cat.locked.jpg").write_bytes((root / "cat.0.jpg").read_bytes())
    (root / "cat.locked.jpg").chmod(0)
    (root / "closed").mkdir()
    (root / "closed" / "dog.9.jpg").write_bytes((root / "dog.0.jpg").read_bytes())
    (root / "closed").chmod(0)
    archive = _good_zip(shared_tmp / "locked.zip")
    archive.chmod(0)
    decode_image((root / "cat.0.jpg").read_bytes(), 8)  # Pillow's plugins loaded before a fork

    def job():
        data = _load(root)
        try:
            _load(archive)
            zip_error = None
        except DataError as exc:
            zip_error = str(exc)
        return {"files": data.files, "skipped": data.skipped, "zip_error": zip_error}

    out = run_unprivileged(job)
    skipped = dict(map(tuple, out["skipped"]))
    assert "Permission denied" in skipped["cat.locked.jpg"]
    assert "cannot open folder" in skipped["closed"] and "Permission denied" in skipped["closed"]
    assert sorted(out["files"]) == _good_files()
    assert "Permission denied" in out["zip_error"] and "locked.zip" in out["zip_error"]


# --------------------------------------------------------------------- zips
def test_zip_member_over_the_size_limit_is_never_read(tmp_path, monkeypatch):
    big = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)))
    archive = _good_zip(tmp_path / "a.zip", [("dog.big.png", big)])
    monkeypatch.setattr(nnx.data.common, "MAX_IMAGE_BYTES", len(big) - 1)
    opened = _spy_zip_opens(monkeypatch)
    data = _load(archive)
    assert "over the" in dict(data.skipped)["dog.big.png"]
    assert "dog.big.png" not in opened
    _assert_good_loaded(data)


def test_zip_member_with_bad_crc_is_skipped(tmp_path):
    archive = _good_zip(tmp_path / "a.zip", [("cat.crc.jpg", jpeg_bytes(class_images(1)[0][0]))])
    data = bytearray(archive.read_bytes())
    (local,) = [lh for raw, _, lh in _members(bytes(data)) if raw == b"cat.crc.jpg"]
    n, e = struct.unpack("<2H", data[local + 26 : local + 30])
    data[local + 30 + n + e + 200] ^= 0xFF  # one byte of the stored member's data
    archive.write_bytes(bytes(data))
    loaded = _load(archive)
    assert "CRC" in dict(loaded.skipped)["cat.crc.jpg"]
    _assert_good_loaded(loaded)


def test_encrypted_member_is_skipped_unread(tmp_path, monkeypatch):
    archive = _good_zip(tmp_path / "a.zip", [("dog.secret.jpg", jpeg_bytes(class_images(1)[1][0]))])
    _patch(archive, b"dog.secret.jpg", central={8: b"\x01\x00"}, local={6: b"\x01\x00"})
    assert zipfile.ZipFile(archive).getinfo("dog.secret.jpg").flag_bits & 0x1
    opened = _spy_zip_opens(monkeypatch)
    data = _load(archive)
    assert "encrypted" in dict(data.skipped)["dog.secret.jpg"]
    assert "dog.secret.jpg" not in opened
    _assert_good_loaded(data)


def test_unsupported_compression_method_is_skipped(tmp_path):
    archive = _good_zip(tmp_path / "a.zip", [("cat.odd.jpg", jpeg_bytes(class_images(1)[0][0]))])
    _patch(archive, b"cat.odd.jpg", central={10: struct.pack("<H", 99)}, local={8: struct.pack("<H", 99)})
    data = _load(archive)
    assert "compression method 99" in dict(data.skipped)["cat.odd.jpg"]
    _assert_good_loaded(data)


def test_member_needing_a_newer_zip_version_is_skipped_not_fatal(tmp_path):
    archive = _good_zip(tmp_path / "a.zip", [("cat.new.jpg", jpeg_bytes(class_images(1)[0][0]))])
    _patch(archive, b"cat.new.jpg", central={6: bytes([99])})
    with pytest.raises(NotImplementedError):
        zipfile.ZipFile(archive)  # zipfile itself refuses the whole archive
    data = _load(archive)
    assert "zip version 9.9" in dict(data.skipped)["cat.new.jpg"]
    _assert_good_loaded(data)


def test_duplicate_member_names_are_skipped(tmp_path, monkeypatch):
    dog = jpeg_bytes(class_images(1)[1][0])
    archive = _good_zip(tmp_path / "a.zip", [("dog.twice.jpg", dog), ("dog.twice.jpg", b"junk")])
    assert [i.filename for i in zipfile.ZipFile(archive).infolist()].count("dog.twice.jpg") == 2
    opened = _spy_zip_opens(monkeypatch)
    data = _load(archive)
    assert "duplicate name" in dict(data.skipped)["dog.twice.jpg"]
    assert "dog.twice.jpg" not in opened
    _assert_good_loaded(data)


def test_zip_names_that_are_not_utf8(tmp_path):
    cat = jpeg_bytes(class_images(1)[0][0])
    archive = _good_zip(
        tmp_path / "a.zip",
        [("cat.é.jpg", cat), ("cat.QQ.jpg", cat), ("cat.RR.jpg", cat)],  # é: UTF-8, flagged
    )
    assert zipfile.ZipFile(archive).getinfo("cat.é.jpg").flag_bits & 0x800
    data = archive.read_bytes()
    data = data.replace("cat.é.jpg".encode(), b"cat.\xff\xfe.jpg")  # flagged UTF-8, invalid
    data = data.replace(b"cat.QQ.jpg", b"cat.\xfe\xff.jpg")  # unflagged, not UTF-8 (cp437?)
    data = data.replace(b"cat.RR.jpg", "cat.ü.jpg".encode())  # unflagged but valid UTF-8
    archive.write_bytes(data)
    with pytest.raises(UnicodeDecodeError):
        zipfile.ZipFile(archive)  # zipfile refuses the whole archive
    loaded = _load(archive)
    skipped = dict(loaded.skipped)
    assert "marked UTF-8 but is not valid UTF-8" in skipped[os.fsdecode(b"cat.\xff\xfe.jpg")]
    assert "not valid UTF-8" in skipped[os.fsdecode(b"cat.\xfe\xff.jpg")]
    assert "cat.ü.jpg" in loaded.files  # tools that write UTF-8 without the flag are understood
    assert sorted(loaded.files) == sorted(_good_files() + ["cat.ü.jpg"])


def test_member_name_with_a_nul_byte_is_skipped(tmp_path):
    archive = _good_zip(tmp_path / "a.zip", [("Xat.9.jpg", jpeg_bytes(class_images(1)[0][0]))])
    archive.write_bytes(archive.read_bytes().replace(b"Xat.9.jpg", b"\0at.9.jpg"))  # found by fuzzing
    data = _load(archive)
    assert "NUL byte" in dict(data.skipped)["\0at.9.jpg"]
    _assert_good_loaded(data)


def test_symlink_member_is_not_followed(tmp_path):
    link = zipfile.ZipInfo("cat.link.jpg")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _good_zip(tmp_path / "a.zip", [(link, b"/etc/passwd")])
    data = _load(archive)
    assert "symlink" in dict(data.skipped)["cat.link.jpg"]
    _assert_good_loaded(data)


def test_deflated_zip_with_every_bad_member_at_once(tmp_path):
    """The cases together, in a compressed zip: one load, every bad member listed."""
    cats, dogs = class_images(1)
    archive = _good_zip(
        tmp_path / "a.zip",
        [
            ("cat.crc.jpg", jpeg_bytes(cats[0])),
            ("dog.secret.jpg", jpeg_bytes(dogs[0])),
            ("dog.dup.jpg", b"1"),
            ("dog.dup.jpg", b"2"),
            ("cat.empty.jpg", b""),
            ("notes.txt", b"hello"),
        ],
        compression=zipfile.ZIP_DEFLATED,
    )
    data = bytearray(archive.read_bytes())
    (local,) = [lh for raw, _, lh in _members(bytes(data)) if raw == b"cat.crc.jpg"]
    n, e = struct.unpack("<2H", data[local + 26 : local + 30])
    csize = struct.unpack("<L", data[local + 18 : local + 22])[0]
    data[local + 30 + n + e + csize // 2] ^= 0x55  # damaged deflate stream or CRC
    archive.write_bytes(bytes(data))
    _patch(archive, b"dog.secret.jpg", central={8: b"\x01\x00"}, local={6: b"\x01\x00"})
    loaded = _load(archive)
    skipped = dict(loaded.skipped)
    assert set(skipped) == {"cat.crc.jpg", "dog.secret.jpg", "dog.dup.jpg", "cat.empty.jpg", "notes.txt"}
    assert "damaged" in skipped["cat.crc.jpg"] or "CRC" in skipped["cat.crc.jpg"]
    _assert_good_loaded(loaded)


def test_zip_with_a_broken_member_list_is_a_data_error(tmp_path):
    archive = _good_zip(tmp_path / "a.zip")
    data = bytearray(archive.read_bytes())
    cd_offset = struct.unpack("<L", data[-22 + 16 : -22 + 20])[0]
    data[cd_offset : cd_offset + 4] = b"JUNK"
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="a.zip: cannot read the zip's list of members"):
        _load(archive)


# --------------------------------------------------------------------- EXIF
def _exif_jpeg(orientation: int) -> bytes:
    """A 40 x 20 picture stored with its top half red and bottom half blue."""
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:10] = (255, 0, 0)
    arr[10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def test_exif_orientation_is_applied(tmp_path):
    upright = decode_image(_exif_jpeg(1), 16)
    assert upright[:4, :, 0].min() > 200 and upright[-4:, :, 2].min() > 200  # red on top
    turned = decode_image(_exif_jpeg(6), 16)  # 6: turn 90 degrees clockwise to display
    assert turned[:, -4:, 0].min() > 200 and turned[:, -4:, 2].max() < 60  # red on the right
    assert turned[:, :4, 2].min() > 200 and turned[:, :4, 0].max() < 60  # blue on the left
    root = _good_folder(tmp_path / "imgs")
    (root / "cat.phone.jpg").write_bytes(_exif_jpeg(6))
    data = _load(root, size=16)
    column = data.files.index("cat.phone.jpg")
    np.testing.assert_array_equal(data.X_train[:, column], turned.reshape(-1))


def test_malformed_exif_does_not_lose_the_picture():
    good = _exif_jpeg(6)
    at = good.find(b"Exif\0\0")
    assert at > 0
    broken = good[: at + 6] + b"\xff" * 16 + good[at + 22 :]  # garbage TIFF header
    out = decode_image(broken, 16)
    assert out.shape == (16, 16, 3)


# -------------------------------------------------------------------- cache
def test_inconsistent_cache_is_rebuilt_not_trusted(tmp_path):
    root = _good_folder(tmp_path / "imgs")
    cache = tmp_path / "cache.npz"
    first = _load(root, cache=cache)
    with np.load(cache) as c:
        saved = {k: c[k] for k in c.files}
    for tamper in (
        {"X": saved["X"][:, :-1]},  # an example short
        {"X": saved["X"].astype(np.float32)},
        {"Y": 1 - saved["Y"]},  # labels that are not the images' classes
        {"Y": saved["Y"][:, :-1]},
    ):
        np.savez(cache, **{**saved, **tamper})
        again = _load(root, cache=cache)
        assert not again.from_cache
        np.testing.assert_array_equal(again.X_train, first.X_train)
        np.testing.assert_array_equal(again.Y_train, first.Y_train)
    assert _load(root, cache=cache).from_cache  # the rebuilt cache is good


def test_cached_load_lists_this_listings_problems_and_the_cached_failures(tmp_path):
    root = _good_folder(tmp_path / "imgs")
    (root / "dog.bad.jpg").write_bytes(b"not a picture")
    cache = tmp_path / "cache.npz"
    assert "dog.bad.jpg" in dict(_load(root, cache=cache).skipped)
    (root / "cat.gone.jpg").symlink_to(tmp_path / "missing.jpg")  # not an image: cache still valid
    again = _load(root, cache=cache)
    assert again.from_cache
    assert set(dict(again.skipped)) == {"dog.bad.jpg", "cat.gone.jpg"}


def test_cache_that_is_a_fifo_or_a_folder_is_refused_before_work(tmp_path):
    """Neither is nnx's cache: refused at once (never opened, never written over)."""
    root = _good_folder(tmp_path / "imgs")
    folder_cache = tmp_path / "cache_dir"
    folder_cache.mkdir()
    with pytest.raises(UnsafeOutputError, match="folder"):
        _load(root, cache=folder_cache)
    assert folder_cache.is_dir() and not any(folder_cache.iterdir())
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "cache.fifo"
        os.mkfifo(fifo)
        result: dict = {}

        def load():
            try:
                _load(root, cache=fifo)
            except UnsafeOutputError as exc:
                result["error"] = exc

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        worker.join(60)
        if worker.is_alive():
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            pytest.fail("load_images blocked opening a FIFO cache")
        assert "not an nnx image cache" in str(result["error"])
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left as it was


def test_bad_files_of_every_kind_at_once(tmp_path):
    """The fixture's bad files plus links and a FIFO: the good pictures still all load."""
    root = tmp_path / "imgs"
    made = kaggle_folder(root, n_per_class=4)
    (root / "cat.gone.jpg").symlink_to(tmp_path / "missing.jpg")
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "dog.pipe.jpg")
    data = _load(root)
    assert len(data.files) == made["good"] + len(made["odd"])
    assert {"cat.gone.jpg", *made["bad"]} <= set(dict(data.skipped))
