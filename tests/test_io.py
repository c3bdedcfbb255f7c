"""Save/load: no pickle, atomic, versioned, clear errors for bad files."""

import json
import os

import numpy as np
import pytest

import nnx
from nnx.io import FORMAT_VERSION


@pytest.fixture
def trained(rng):
    X = rng.standard_normal((5, 30))
    Y = (X[0:1] > 0).astype(float)
    model = nnx.Sequential(
        nnx.Linear(5, 4, init="he", seed=1),
        nnx.ReLU(),
        nnx.Linear(4, 3, seed=2),
        nnx.Tanh(),
        nnx.Linear(3, 1, seed=3),
        nnx.Sigmoid(),
    )
    model.fit(X, Y, epochs=20, lr=0.1)
    return model, X


def test_round_trip_gives_identical_predictions(trained, tmp_path):
    model, X = trained
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = nnx.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.config() == model.config()
    for (W0, b0), (W1, b1) in zip(model.parameters(), loaded.parameters()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)
        assert W0.dtype == W1.dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp file left


def test_file_has_no_pickled_objects(trained, tmp_path):
    model, _ = trained
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
    assert meta["format_version"] == FORMAT_VERSION and meta["dtype"] == "float32"


def test_truncated_file(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(nnx.ModelFormatError, match="truncated or corrupt"):
        nnx.load(path)


def test_foreign_and_missing_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(nnx.ModelFormatError, match="not an nnx model"):
        nnx.load(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(nnx.ModelFormatError):
        nnx.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        nnx.load(tmp_path / "absent.npz")


def test_newer_version_refused(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["format_version"] = FORMAT_VERSION + 1
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(nnx.ModelFormatError, match="newer"):
        nnx.load(path)


def test_failed_save_keeps_previous_file(trained, tmp_path, monkeypatch):
    model, X = trained
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]
