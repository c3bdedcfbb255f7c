"""Image folders and zips, bad files and caches (needs Pillow; the other formats are in
test_data_formats.py)."""

import logging
import zipfile

import numpy as np
import pytest

pytest.importorskip("PIL", reason="image tests need Pillow: pip install 'nnx-nets[images]'")
from image_fixtures import class_images, jpeg_bytes, kaggle_folder, zip_of  # noqa: E402
from PIL import Image  # noqa: E402

import nnx  # noqa: E402
from nnx.data import (  # noqa: E402
    DataError,
    decode_image,
    load_images,
)
from nnx.errors import UnsafeOutputError  # noqa: E402


def test_kaggle_folder_with_bad_files(tmp_path, caplog):
    made = kaggle_folder(tmp_path / "imgs")
    with caplog.at_level(logging.WARNING, logger="nnx"):
        data = load_images(tmp_path / "imgs", size=32, val_split=0.25, seed=3, progress=False)
    n_good = made["good"] + len(made["odd"])
    m = data.X_train.shape[1] + data.X_val.shape[1]
    assert m == n_good
    assert data.X_train.dtype == np.uint8 and data.X_train.shape[0] == 32 * 32 * 3
    assert data.X_train.flags.f_contiguous  # example-contiguous
    assert data.classes == ["cat", "dog"]
    skipped = dict(data.skipped)
    assert set(made["bad"]) <= set(skipped)
    assert "empty" in skipped["cat.zero.jpg"]
    assert "truncated" in skipped["dog.truncated.jpg"] or "corrupt" in skipped["dog.truncated.jpg"]
    assert "not an image" in skipped["cat.text.jpg"]
    assert "README.txt" in skipped
    assert all(name in data.files for name in made["odd"])  # every mode became RGB
    assert "skipped" in caplog.text and "cat.zero.jpg" in caplog.text
    # stratified split: both classes on both sides
    assert set(np.unique(data.Y_val)) == {0, 1} and set(np.unique(data.Y_train)) == {0, 1}


def test_modes_become_rgb_and_alpha_is_composited_on_white():
    arr = np.zeros((10, 12, 4), dtype=np.uint8)  # fully transparent black
    out = decode_image(_png(Image.fromarray(arr, "RGBA")), 8)
    assert out.shape == (8, 8, 3) and (out == 255).all()
    grey16 = Image.fromarray(np.full((5, 5), 65535, dtype=np.uint16))
    assert (decode_image(_png(grey16), 5) == 255).all()


def _png(img):
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_decompression_bomb_is_skipped(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    kaggle_folder(root, n_per_class=4, with_bad=False)
    big = np.zeros((300, 300, 3), dtype=np.uint8)
    (root / "dog.bomb.png").write_bytes(_png(Image.fromarray(big)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 // 4)  # the test's bomb limit
    data = load_images(root, size=16, val_split=0, progress=False)
    assert "decompression bomb" in dict(data.skipped)["dog.bomb.png"]


def test_subfolder_zip_refuses_escaping_members(tmp_path):
    cats, dogs = class_images(5)
    folder = tmp_path / "train"
    for cls, pics in (("cats", cats), ("dogs", dogs)):
        (folder / cls).mkdir(parents=True)
        for i, p in enumerate(pics):
            (folder / cls / f"{i}.jpg").write_bytes(jpeg_bytes(p))
    archive = zip_of(
        folder,
        tmp_path / "train.zip",
        extra={"../evil.jpg": jpeg_bytes(cats[0]), "/abs/evil.jpg": jpeg_bytes(cats[0])},
    )
    data = load_images(archive, size=16, val_split=0, positive="cats", progress=False)
    assert data.classes == ["dogs", "cats"]  # positive class is label 1
    assert data.X_train.shape[1] == 10
    skipped = dict(data.skipped)
    assert "refused" in skipped["../evil.jpg"] and "refused" in skipped["/abs/evil.jpg"]
    assert data.Y_train.sum() == 5
    # the same folder, unzipped, gives the same pixels in the same order
    direct = load_images(folder, size=16, val_split=0, positive="cats", progress=False)
    np.testing.assert_array_equal(direct.X_train, data.X_train)


def test_refused_member_is_never_read(tmp_path, monkeypatch):
    cats, dogs = class_images(3)
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, (c, d) in enumerate(zip(cats, dogs)):
            zf.writestr(f"cat.{i}.jpg", jpeg_bytes(c))
            zf.writestr(f"dog.{i}.jpg", jpeg_bytes(d))
        zf.writestr("../cat.99.jpg", jpeg_bytes(cats[0]))
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, member, *a, **k):
        opened.append(getattr(member, "filename", member))
        return real_open(self, member, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    load_images(archive, size=8, val_split=0, progress=False)
    assert "../cat.99.jpg" not in opened and len(opened) == 6


def test_empty_and_one_class_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*two classes.*CLASS.N.ext"):
        load_images(tmp_path / "empty", progress=False)
    only = tmp_path / "only"
    only.mkdir()
    (only / "cat.1.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="two classes"):
        load_images(only, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cat.1.jpg").write_bytes(b"")
    (bad / "dog.1.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match="no image could be read"):
        load_images(bad, progress=False)
    with pytest.raises(FileNotFoundError):
        load_images(tmp_path / "missing", progress=False)
    with pytest.raises(DataError, match="positive class"):
        kaggle_folder(tmp_path / "k", n_per_class=2, with_bad=False)
        load_images(tmp_path / "k", positive="horse", progress=False)


def test_cache_is_reused_and_invalidated(tmp_path):
    root = tmp_path / "imgs"
    kaggle_folder(root, n_per_class=4, with_bad=False)
    cache = tmp_path / "cache.npz"
    first = load_images(root, size=16, cache=cache, val_split=0, progress=False)
    assert not first.from_cache and cache.is_file()
    again = load_images(root, size=16, cache=cache, val_split=0, progress=False)
    assert again.from_cache
    np.testing.assert_array_equal(again.X_train, first.X_train)
    assert load_images(root, size=8, cache=cache, val_split=0, progress=False).from_cache is False  # size
    cats, _ = class_images(5)
    (root / "cat.new.jpg").write_bytes(jpeg_bytes(cats[4]))  # source changed
    changed = load_images(root, size=8, cache=cache, val_split=0, progress=False)
    assert not changed.from_cache and changed.X_train.shape[1] == first.X_train.shape[1] + 1
    cache.write_bytes(b"garbage")  # not a cache nnx wrote: refused before decoding, left as it is
    with pytest.raises(UnsafeOutputError, match="not an nnx image cache"):
        load_images(root, size=8, cache=cache, val_split=0, progress=False)
    assert cache.read_bytes() == b"garbage"


def test_load_train_save_predict_end_to_end(tmp_path):
    from nnx.runner import predict_files

    root = tmp_path / "imgs"
    kaggle_folder(root, n_per_class=15)
    data = load_images(root, size=16, val_split=0.2, seed=0, progress=False)
    model = nnx.LogisticRegression(16 * 16 * 3)
    model.metadata = {"classes": data.classes, "image_size": 16}
    h = model.fit(data.X_train, data.Y_train, epochs=1000, lr=0.05, validation_data=(data.X_val, data.Y_val))
    assert h.accuracy[-1] > 0.8
    model.save(tmp_path / "model.npz")
    results = predict_files(
        str(tmp_path / "model.npz"), [str(root / "cat.0.jpg"), str(root / "cat.zero.jpg")]
    )
    assert 0 <= results[0]["probability"] <= 1 and results[0]["class_name"] in ("cat", "dog")
    assert "error" in results[1]
    loaded = nnx.load(tmp_path / "model.npz")
    direct = loaded.predict_proba(decode_image((root / "cat.0.jpg").read_bytes(), 16).reshape(-1, 1))
    p1 = float(direct[0, 0])  # "probability" is the predicted label's: p1 for label 1, else 1 - p1
    assert results[0]["probability"] == pytest.approx(p1 if results[0]["label"] else 1 - p1)
