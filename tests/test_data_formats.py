"""The formats that need no Pillow: the notebook's CSV, npz, catvnoncat h5, tutorial helpers."""

import numpy as np
import pytest

from nnx.data import DataError, image2vec, load_csv, load_h5, load_npz, normalize


def test_csv_layout_and_bad_cell(tmp_path):
    X = np.arange(12, dtype=float).reshape(3, 4)
    Y = np.array([[0, 1, 1, 0]])
    path = tmp_path / "data.csv"
    path.write_text("\n".join(",".join(str(v) for v in row) for row in np.vstack([X, Y])) + "\n")
    Xr, Yr = load_csv(path)
    np.testing.assert_array_equal(Xr, X)
    np.testing.assert_array_equal(Yr, Y)
    path.write_text("1,2,3\n4,x,6\n0,1,0\n")
    with pytest.raises(DataError, match="line 2: 'x' is not a number"):
        load_csv(path)
    path.write_text("1,2,3\n4,5\n0,1,0\n")
    with pytest.raises(DataError, match="line 2"):
        load_csv(path)


def test_npz_dataset(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((3, 5)), Y=np.array([0, 1, 0, 1, 1]))
    X, Y = load_npz(tmp_path / "d.npz")
    assert X.shape == (3, 5) and Y.shape == (1, 5)
    np.savez(tmp_path / "other.npz", A=np.ones(2))
    with pytest.raises(DataError, match="arrays named X and Y"):
        load_npz(tmp_path / "other.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "d.npz").read_bytes()[:50])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_npz(tmp_path / "cut.npz")


def test_h5_catvnoncat_layout(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install h5py)")
    x = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "train.h5", "w") as f:
        f["train_set_x"] = x
        f["train_set_y"] = np.array([0, 1, 1, 0, 1, 0])
    X, Y = load_h5(tmp_path / "train.h5")
    assert X.shape == (48, 6) and X.dtype == np.uint8 and Y.shape == (1, 6)
    np.testing.assert_array_equal(X[:, 2], x[2].reshape(-1))


def test_tutorial_helpers():
    img = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    assert image2vec(img).shape == (18, 1)
    with pytest.raises(ValueError):
        image2vec(np.zeros((3, 3)))
    x = np.array([[0.0, 3.0, 4.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(normalize(x), [[0, 0.6, 0.8], [0, 0, 0]])
