"""The formats that need no Pillow: the notebook's CSV, npz, catvnoncat h5, tutorial helpers."""

import os
import threading

import numpy as np
import pytest
from unprivileged import reachable_tmp, run_unprivileged

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


# ------------------------------------------------ content problems: DataError naming file and fix
def _csv(path, text):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    "content, match",
    [
        (
            "1,2,3\n4,5,6\n0,1,2.5\n",
            r"line 3 \(the label row\): labels must be 0 or 1, or class numbers 0..K-1, found 2.5",
        ),
        ("1,2,3\n4,5,6\n0,1,0.5\n", r"labels must be 0 or 1, or class numbers 0..K-1, found 0\.5"),
        ("1,2,nan\n4,5,6\n0,1,1\n", r"line 1, column 3: nan is not a finite number"),
        ("1,2,3\n4,inf,6\n0,1,1\n", r"line 2, column 2: inf is not a finite number"),
        ("1,2,0\n4,5,1\n7,8,1\n3.5,3,0\n", r"looks transposed.*labels in the last row"),
        (b"1,2\n\xff\xfe,3\n0,1\n", r"line 2: not UTF-8 text \(byte 0xff\); save it as a plain UTF-8"),
        (b"1,2\n\xe9,3\n0,1\n", r"not UTF-8 text \(byte 0xe9\)"),  # latin-1, not UTF-8
        ("", r"empty file"),
        ("\n\n  \n", r"empty file"),
        (
            "x1,x2,x3\n1,2,3\n0,1,0\n",
            r"line 1: 'x1' is not a number \(column 1\) \(a header row\? remove it\)",
        ),
        ("1,2,3\n", r"need at least one feature row and the label row"),
        ("1,2\x00\n0,1\n", r"line 1: '2\\x00' is not a number"),
    ],
    ids=[
        "label-2",
        "label-half",
        "nan",
        "inf",
        "transposed",
        "not-utf8",
        "latin1",
        "empty",
        "blank",
        "header",
        "one-row",
        "nul",
    ],
)
def test_csv_content_problems(tmp_path, content, match):
    path = _csv(tmp_path / "data.csv", content)
    with pytest.raises(DataError, match=match) as err:
        load_csv(path, layout="columns")  # the tutorials' layout, named: "auto" reads some as rows
    assert str(err.value).startswith(str(path) + ": ") and "\n" not in str(err.value)


def test_csv_with_byte_order_mark_and_crlf_loads(tmp_path):
    path = _csv(tmp_path / "excel.csv", "\ufeff1,2,3\r\n4,5,6\r\n0,1,1\r\n".encode())
    X, Y = load_csv(path)
    np.testing.assert_array_equal(X, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(Y, [[0, 1, 1]])


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


X5 = np.arange(15, dtype=np.float64).reshape(3, 5) / 15
Y5 = np.array([0, 1, 0, 1, 1])


def _bad_at(i, j, value):
    X = X5.copy()
    X[i, j] = value
    return X


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"X": X5, "Y": Y5 + 1.5}, r"labels \(Y\) must be 0 or 1, or class numbers 0..K-1, found 1.5"),
        ({"X": X5, "Y": Y5 * 2 - 1}, r"labels \(Y\) must be 0 or 1, or class numbers 0..K-1, found -1"),
        (
            {"X": X5, "Y": Y5.astype(float) * np.nan},
            r"labels \(Y\) must be 0 or 1, or class numbers 0..K-1, found nan",
        ),
        ({"X": _bad_at(1, 3, np.nan), "Y": Y5}, r"X\[1, 3\] is nan \(1 value\(s\) in X are NaN or inf\)"),
        ({"X": _bad_at(0, 1, np.inf), "Y": Y5}, r"X\[0, 1\] is inf"),
        ({"X": X5[:, :4], "Y": Y5}, r"X has 4 examples \(columns\) but Y has 5 labels"),
        ({"X": X5.T, "Y": Y5}, r"X looks transposed; store X as \(n_x, m\)"),
        ({"X": X5[0], "Y": Y5}, r"X is 1-D \(shape \(5,\)\); store X as \(n_x, m\)"),
        ({"X": X5[None], "Y": Y5}, r"X has shape \(1, 3, 5\); store X as \(n_x, m\)"),
        ({"X": (X5 * 10).astype(np.int64), "Y": Y5}, r"X holds integers \(int64\).*X.astype\('float32'\)"),
        ({"X": (X5 * 10).astype(np.int16), "Y": Y5}, r"X holds integers \(int16\)"),
        ({"X": X5 > 0.5, "Y": Y5}, r"X holds booleans"),
        ({"X": X5.astype(np.float16), "Y": Y5}, r"X holds float16.*X.astype\('float32'\)"),
        ({"X": X5.astype(str), "Y": Y5}, r"X holds text"),
        ({"X": X5, "Y": Y5.astype(str)}, r"Y holds text"),
        ({"X": X5 + 1j, "Y": Y5}, r"X holds complex numbers"),
        ({"X": np.array([[1, "a"]], dtype=object), "Y": Y5}, r"object array.*pickle: refused"),
        (
            {"X": X5, "Y": np.vstack([Y5, Y5])},
            r"Y has shape \(2, 5\); store the labels as \(1, m\) or \(m,\)",
        ),
        ({"X": X5[:, :0], "Y": Y5[:0]}, r"no examples"),
        ({"X": np.float64(1.0), "Y": Y5}, r"X is a single number"),
    ],
    ids=[
        "label-2",
        "label-minus-1",
        "label-nan",
        "nan",
        "inf",
        "count",
        "transposed",
        "1-D",
        "3-D",
        "int64",
        "int16",
        "bool",
        "float16",
        "str",
        "str-Y",
        "complex",
        "object",
        "Y-2-rows",
        "empty",
        "scalar",
    ],
)
def test_npz_content_problems(tmp_path, arrays, match):
    path = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=match) as err:
        load_npz(path)
    assert str(err.value).startswith(str(path) + ": ") and "\n" not in str(err.value)


def test_npz_uint8_pixels_and_column_labels_are_accepted(tmp_path):
    X = (X5 * 255).astype(np.uint8)
    Xr, Yr = load_npz(_npz(tmp_path / "px.npz", X=X, Y=Y5.reshape(-1, 1)))
    assert Xr.dtype == np.uint8 and Yr.shape == (1, 5)
    np.testing.assert_array_equal(Xr, X)
    _, Yb = load_npz(_npz(tmp_path / "b.npz", X=X5, Y=Y5.astype(bool)))
    np.testing.assert_array_equal(Yb, [Y5])


def test_npz_file_problems(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DataError, match="empty.npz: empty file"):
        load_npz(tmp_path / "empty.npz")
    np.save(tmp_path / "single.npy", X5)
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(DataError, match=r"single .npy array, not an npz of X and Y; save with np.savez"):
        load_npz(tmp_path / "single.npz")
    (tmp_path / "text.npz").write_text("X,Y\n1,0\n")
    with pytest.raises(DataError, match="not an npz file"):
        load_npz(tmp_path / "text.npz")
    import pickle

    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"X": X5, "Y": Y5}))
    with pytest.raises(DataError, match="not an npz file"):
        load_npz(tmp_path / "pickle.npz")
    with pytest.raises(DataError, match="a folder, not a regular file"):
        load_npz(tmp_path)
    with pytest.raises(FileNotFoundError, match="no npz file at"):
        load_npz(tmp_path / "missing.npz")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="os.mkfifo needs a POSIX system")
@pytest.mark.parametrize("loader", [load_csv, load_npz, load_h5])
def test_a_fifo_is_refused_without_opening_it(tmp_path, loader):
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)
    result = {}

    def run():
        try:
            loader(fifo)
        except Exception as exc:
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"{loader.__name__} blocked opening a FIFO")
    assert isinstance(result["error"], DataError) and "a FIFO, not a regular file" in str(result["error"])


def _h5(path, x, y, split="train"):
    h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install h5py)")
    with h5py.File(path, "w") as f:
        f[f"{split}_set_x"] = x
        f[f"{split}_set_y"] = y
    return path


PIX = np.random.default_rng(0).integers(0, 256, (4, 2, 2, 3), dtype=np.uint8)
Y4 = np.array([0, 1, 1, 0])


@pytest.mark.parametrize(
    "x, y, match",
    [
        (PIX, Y4 - 1, r"labels \(Y\) must be 0 or 1, or class numbers 0..K-1, found -1"),
        (PIX[:3], Y4, r"X holds 3 examples but Y has 4 labels"),
        (PIX.reshape(4, -1).T, Y4, r"looks transposed: put the examples first"),
        (PIX.astype(np.int64), Y4, r"X holds integers \(int64\).*astype\('float32'\)"),
        (np.where(np.arange(12) == 5, np.nan, 0.5)[None].repeat(4, 0), Y4, r"X\[5, 0\] is nan"),
        (np.array([b"a", b"b", b"c", b"d"]), Y4, r"X holds bytes"),
        (np.zeros(4), Y4, r"X has shape \(4,\); store it as \(m, height, width, 3\)"),
    ],
    ids=["label-2", "count", "transposed", "int64", "nan", "bytes", "1-D"],
)
def test_h5_content_problems(tmp_path, x, y, match):
    path = _h5(tmp_path / "train.h5", x, y)
    with pytest.raises(DataError, match=match) as err:
        load_h5(path)
    assert str(err.value).startswith(str(path) + ": ") and "\n" not in str(err.value)


def test_h5_file_problems(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install h5py)")
    (tmp_path / "not.h5").write_text("1,2\n0,1\n")
    with pytest.raises(DataError, match=r"not.h5: cannot read as HDF5") as err:
        load_h5(tmp_path / "not.h5")
    assert "\n" not in str(err.value)
    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("train_set_x")
        f["train_set_y"] = Y4
    with pytest.raises(DataError, match="train_set_x is a group, not a dataset"):
        load_h5(tmp_path / "group.h5")
    with pytest.raises(FileNotFoundError, match="no HDF5 file at"):
        load_h5(tmp_path / "missing.h5")
    X, Y = load_h5(_h5(tmp_path / "float.h5", PIX / 255.0, Y4))  # float pixels are fine
    assert X.shape == (12, 4) and X.dtype == np.float64


def test_unreadable_dataset_files_are_data_errors(tmp_path):
    with reachable_tmp(tmp_path) as folder:
        paths = []
        for name in ("d.csv", "d.npz", "d.h5"):
            path = folder / name
            path.write_bytes(b"0")
            path.chmod(0)
            paths.append(str(path))

        def job():
            out = []
            for path, loader in zip(paths, (load_csv, load_npz, load_h5)):
                try:
                    loader(path)
                    out.append("loaded")
                except DataError as exc:
                    out.append(str(exc))
            return out

        for path, message in zip(paths, run_unprivileged(job)):
            assert message.startswith(path + ": ") and "Permission denied" in message
