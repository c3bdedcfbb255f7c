"""Issue 33, "the first hour, round two": data files that cannot be misread, a command line
that says what to do next, and ``nnx evaluate``. Each test names the bullet it checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nnx_testing import ROOT

import nnx
from nnx.app import cli
from nnx.data import DataError, load_csv, load_npz


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    """``nnx ARGV`` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's exits
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------ data files
def _int_table(path: Path) -> Path:
    """100 rows x 5 columns: four 0/1 features and a 0/1 label per row, as most tools write."""
    rng = np.random.default_rng(0)
    features = rng.integers(0, 2, size=(100, 4))
    features[-1] = [0, 1, 1, 0]  # the last row holds both 0 and 1: it reads as a label row too
    label = (features.sum(axis=1) >= 2).astype(int)
    np.savetxt(path, np.column_stack([features, label]), fmt="%d", delimiter=",")
    return path


def test_a_table_that_reads_both_ways_is_refused_and_named_layouts_read_it(tmp_path, capsys):
    path = _int_table(tmp_path / "rows_int.csv")
    with pytest.raises(DataError, match=r"reads validly both ways: 100 examples of 4 features.*--layout"):
        load_csv(path)
    X, Y = load_csv(path, layout="rows")
    assert X.shape == (4, 100) and Y.shape == (1, 100)
    X, Y = load_csv(path, layout="columns")  # asked for: the tutorials' reading
    assert X.shape == (99, 5)
    code, out, err = _run(capsys, "train", "--data", path, "--out", tmp_path / "run", "--quiet")
    assert code == 2 and "--layout rows or --layout columns" in _one_line(err)
    code, out, err = _run(
        capsys,
        "train",
        "--data",
        path,
        "--layout",
        "rows",
        "--epochs",
        "3",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert code == 0, err
    assert "100 examples" in out and "X (4, 80)" in out  # 80 after the validation split


def test_rows_as_examples_with_or_without_a_header_and_named_labels(tmp_path):
    rng = np.random.default_rng(1)
    F = rng.normal(size=(30, 3)).round(3)
    y = (F[:, 0] > 0).astype(int)
    body = "\n".join(",".join(map(str, [*f, t])) for f, t in zip(F, y))
    (tmp_path / "plain.csv").write_text(body + "\n")
    (tmp_path / "header.csv").write_text("height,width,depth,label\n" + body + "\n")
    named = "\n".join(",".join(map(str, [*f, ("dog", "cat")[t]])) for f, t in zip(F, y))
    (tmp_path / "named.csv").write_text("a,b,c,animal\n" + named + "\n")
    for name in ("plain.csv", "header.csv"):
        X, Y = load_csv(tmp_path / name)
        np.testing.assert_array_equal(X, F.T)
        np.testing.assert_array_equal(Y, [y])
    found = nnx.data.read_csv(tmp_path / "named.csv")
    assert found.classes == ["cat", "dog"]  # sorted: cat = 0
    np.testing.assert_array_equal(found.Y, [1 - y])
    # the tutorials' layout still reads as it did
    (tmp_path / "cols.csv").write_text("0.5,0.25,0.75\n1.5,2.5,3.5\n0,1,1\n")
    X, Y = load_csv(tmp_path / "cols.csv")
    assert X.shape == (2, 3) and Y.tolist() == [[0, 1, 1]]


def test_npz_names_in_either_case_and_pictures_with_class_names(tmp_path):
    np.savez(tmp_path / "lower.npz", x=np.ones((3, 4)), y=np.array([0, 1, 0, 1]))
    X, Y = load_npz(tmp_path / "lower.npz")
    assert X.shape == (3, 4) and Y.shape == (1, 4)
    np.savez(tmp_path / "both.npz", X=np.ones((3, 4)), x=np.ones((3, 4)), Y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="X and x both match X"):
        load_npz(tmp_path / "both.npz")
    pics = np.random.default_rng(0).integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "pics.npz", X=pics, Y=np.array([0, 1, 1, 0]), classes=np.array(["sun", "rain"]))
    found = nnx.data.read_npz(tmp_path / "pics.npz")
    assert found.X.shape == (75, 4) and found.picture == (5, 5) and found.classes == ["sun", "rain"]
    np.testing.assert_array_equal(found.X[:, 2], pics[2].reshape(-1))


def _photo(path: Path, rgb) -> Path:
    from PIL import Image

    Image.fromarray(np.full((20, 24, 3), rgb, np.uint8)).save(path)
    return path


def _catvnoncat(path: Path, split: str = "train", m: int = 40, seed: int = 0) -> Path:
    """A small h5 in the tutorial's layout: {split}_set_x uint8 (m, 8, 8, 3), {split}_set_y,
    list_classes as bytes."""
    h5py = pytest.importorskip("h5py", reason="h5py not installed")
    rng = np.random.default_rng(seed)
    y = np.arange(m) % 2
    x = np.where(y[:, None, None, None] == 1, [200, 40, 40], [40, 40, 200]).astype(np.int64)
    x = np.clip(x + rng.integers(-30, 30, size=(m, 8, 8, 3)), 0, 255).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f[f"{split}_set_x"] = x
        f[f"{split}_set_y"] = y
        f["list_classes"] = np.array([b"non-cat", b"cat"])
    return path


def test_the_tutorial_h5_trains_a_model_that_predicts_a_photo(tmp_path, capsys):
    pytest.importorskip("PIL", reason="nnx predict reads photos with Pillow")
    data = _catvnoncat(tmp_path / "train_catvnoncat.h5")
    run = tmp_path / "run"
    code, out, err = _run(
        capsys, "train", "--data", data, "--epochs", "30", "--lr", "0.01", "--out", run, "--quiet"
    )
    assert code == 0, err
    assert "label 1 = cat" in out
    model = nnx.load(run / "model.npz")
    assert model.metadata["classes"] == ["non-cat", "cat"] and model.metadata["image_size"] == 8
    red = _photo(tmp_path / "red.jpg", (210, 35, 35))
    code, out, err = _run(capsys, "predict", run / "model.npz", red)
    assert code == 0, err
    assert out.strip().startswith(f"{red}: p=") and "label=1 (cat); next: non-cat" in out
    # and nnx evaluate reads the tutorial's test file (test_set_*) by the model's class names
    test = _catvnoncat(tmp_path / "test_catvnoncat.h5", split="test", m=10, seed=1)
    code, out, err = _run(capsys, "evaluate", run / "model.npz", test, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["examples"] == 10 and result["classes"] == ["non-cat", "cat"]
    assert sum(map(sum, result["confusion_matrix"])) == 10


NO_PILLOW = """
import sys
sys.modules["PIL"] = None  # as where Pillow is not installed
from nnx.app import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_without_pillow_the_images_extra_is_named_first(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"cat.{i}.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
        (folder / f"dog.{i}.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "notes.txt").write_text("a note")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = ["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--quiet"]
    r = subprocess.run(
        [sys.executable, "-c", NO_PILLOW, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "pip install 'nnx-nets[images]'" in _one_line(r.stderr)


def test_skipped_files_are_listed_once_with_their_reasons(tmp_path, capsys):
    from image_fixtures import jpeg_bytes

    folder = tmp_path / "photos"
    for name, rgb in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (folder / name).mkdir(parents=True)
        for i in range(4):
            (folder / name / f"{i}.jpg").write_bytes(jpeg_bytes(np.full((12, 12, 3), rgb, np.uint8)))
    (folder / "notes.txt").write_text("not a picture")
    (folder / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    code, out, err = _run(
        capsys, "train", "--data", folder, "--size", "8", "--epochs", "2", "--out", tmp_path / "r", "--quiet"
    )
    assert code == 0, err
    text = out + err
    assert text.count("notes.txt") == 1 and "notes.txt (not an image file extension)" in text
    assert text.count("broken.jpg") == 1 and "unreadable file" not in text
    # no picture decodes: the reasons are in the one-line error
    for path in (folder / "red").glob("*.jpg"):
        path.write_bytes(b"not a jpeg")
    for path in (folder / "blue").glob("*.jpg"):
        path.write_bytes(b"")
    code, out, err = _run(capsys, "train", "--data", folder, "--out", tmp_path / "r2", "--quiet")
    assert code == 2
    assert "blue/0.jpg (empty file (0 bytes))" in _one_line(err)


# ---------------------------------------------------------------------- command line
def test_an_unknown_flag_gets_the_usage_line_and_the_closest_flag(capsys):
    for typo in ("--epcohs", "--epoch"):  # a typo, and a prefix (no abbreviations)
        code, out, err = _run(capsys, "train", typo, "10")
        assert code == 2
        usage, message = err.strip().splitlines()
        assert usage.startswith("usage: nnx train") and message.endswith("did you mean --epochs?")
    code, out, err = _run(capsys, "predict", "m.npz", "x.jpg", "--tpo", "3")
    assert code == 2 and err.strip().endswith("did you mean --top?")
    code, out, err = _run(capsys, "trian")
    assert code == 2 and "did you mean train?" in err
    parser = cli.build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        assert sub.allow_abbrev is False, name


def test_no_errno_in_messages(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    code, out, err = _run(capsys, "train", "--cache", tmp_path / "folder", "--out", tmp_path / "run")
    assert code == 2 and "[Errno" not in _one_line(err) and "folder" in err
    code, out, err = _run(capsys, "bench", "--json", tmp_path / "folder", "--m", "8")
    assert code == 2 and "[Errno" not in _one_line(err)
    assert cli.os_error_text(FileExistsError(17, "File exists", "out/x")) == (
        "out/x: something already exists there; remove it or choose another path"
    )
    assert "[Errno" not in cli.os_error_text(OSError(21, "Is a directory"))


@pytest.fixture(scope="module")
def picture_models(tmp_path_factory):
    """A two-class and a three-class model of 4 x 4 pictures, and a red photo."""
    pytest.importorskip("PIL", reason="nnx predict reads photos with Pillow")
    root = tmp_path_factory.mktemp("models")
    two = nnx.LogisticRegression(48, seed=0)
    two.set_parameters([(np.full((1, 48), -0.05), np.zeros((1, 1)))])  # P(label 1) < 0.5 for red
    two.metadata = {"classes": ["cat", "dog"], "image_size": 4}
    two.save(root / "two.npz")
    three = nnx.SoftmaxRegression(48, 3, seed=0)
    W = np.zeros((3, 48))
    W[2, 0::3] = 1.0  # the red channel votes for class 2
    three.set_parameters([(W, np.zeros((3, 1)))])
    three.metadata = {"classes": ["apple", "leaf", "sky"], "image_size": 4}
    three.save(root / "three.npz")
    return root, _photo(root / "red.jpg", (220, 20, 20))


def test_predict_prints_the_predicted_labels_probability_for_every_k(picture_models, capsys):
    root, photo = picture_models
    pixels = nnx.data.decode_image(photo.read_bytes(), 4).reshape(-1, 1)
    p_dog = float(nnx.load(root / "two.npz").predict_proba(pixels)[0, 0])
    assert p_dog < 0.5
    code, out, err = _run(capsys, "predict", root / "two.npz", photo)
    assert code == 0, err
    assert out.strip() == f"{photo}: p={1 - p_dog:.4f} label=0 (cat); next: dog {p_dog:.4f}"
    code, out, err = _run(capsys, "predict", root / "two.npz", photo, "--json")
    (entry,) = json.loads(out)
    assert entry["label"] == 0 and entry["probability"] == pytest.approx(1 - p_dog)
    P = nnx.load(root / "three.npz").predict_proba(pixels)[:, 0]
    code, out, err = _run(capsys, "predict", root / "three.npz", photo)
    assert out.strip() == f"{photo}: p={P[2]:.4f} label=2 (sky)"
    # an option for the other kind of model does not apply
    code, out, err = _run(capsys, "predict", root / "two.npz", photo, "--top", "2")
    assert code == 2 and "--top does not apply" in _one_line(err)
    code, out, err = _run(capsys, "predict", root / "three.npz", photo, "--threshold", "0.3")
    assert code == 2 and "--threshold does not apply" in _one_line(err)


def _npz_data(path: Path) -> Path:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, 60))
    np.savez(path, X=X, Y=(X[0] + X[1] > 0).astype(int))
    return path


def test_resume_extends_a_finished_run_bitwise_and_a_rerun_is_refused(tmp_path, capsys):
    data = _npz_data(tmp_path / "d.npz")
    common = ["--data", data, "--model", "mlp", "--hidden", "4", "--optimizer", "adam", "--lr", "0.01"]
    common += ["--batch-size", "16", "--backend", "numpy", "--checkpoint-every", "4", "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(capsys, "train", *common, "--epochs", "6", "--out", a)[0] == 0
    code, out, err = _run(capsys, "train", *common, "--epochs", "6", "--out", a)
    assert code == 2 and "--resume" in _one_line(err) and "--overwrite" in err  # nothing discarded
    code, out, err = _run(capsys, "train", *common, "--epochs", "10", "--out", a, "--resume")
    assert code == 0, err
    assert _run(capsys, "train", *common, "--epochs", "10", "--out", b)[0] == 0
    extended, straight = nnx.load(a / "model.npz"), nnx.load(b / "model.npz")
    for (Wa, ba), (Wb, bb) in zip(extended.parameters(), straight.parameters()):
        assert np.array_equal(Wa, Wb) and np.array_equal(ba, bb)
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (a, b))
    assert ha["loss"] == hb["loss"] and ha["epoch"] == hb["epoch"] and len(ha["loss"]) == 10
    code, out, err = _run(capsys, "train", *common, "--epochs", "8", "--out", a, "--resume")
    assert code == 2 and "trained 10 epochs already" in _one_line(err)
    assert _run(capsys, "train", *common, "--epochs", "3", "--out", a, "--overwrite")[0] == 0
    assert nnx.load(a / "model.npz").epochs_trained in (0, 3)


def test_string_labels_in_python_keep_their_class_names():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 90))
    names = np.array(["sky", "apple", "leaf"])[np.argmax(np.vstack([X[0], X[1], -X[0] - X[1]]), axis=0)]
    model = nnx.SoftmaxRegression(2, 3, seed=0)
    model.fit(X, names, epochs=200, lr=0.5)
    assert model.metadata["classes"] == ["apple", "leaf", "sky"]  # sorted, as LabelEncoder
    predicted = np.array(model.metadata["classes"])[model.predict(X)[0]]
    assert (predicted == names).mean() > 0.9
    assert model.evaluate(X, names)["accuracy"] > 0.9
    binary = nnx.LogisticRegression(2, seed=0)
    binary.fit(X, np.where(X[0] > 0, "yes", "no").tolist(), epochs=50, lr=0.5)
    assert binary.metadata["classes"] == ["no", "yes"]
    with pytest.raises(
        ValueError, match=r"3 classes .*SoftmaxRegression\(2, 3\) or nnx.MLP\(\[2, ..., 3\]\)"
    ):
        nnx.LogisticRegression(2).fit(X, names, epochs=1)
    with pytest.raises(ValueError, match=r"SoftmaxRegression\(n, K\)"):
        nnx.LogisticRegression(2).fit(X, np.arange(90) % 3, epochs=1)


def test_info_says_how_auto_was_chosen_and_no_none_version(monkeypatch):
    from nnx.app.info import collect, format_info

    monkeypatch.delenv("NNX_BACKEND", raising=False)
    info = collect()
    assert "requested explicitly" not in info["auto"]["reason"]
    info["blas"] = [{"internal_api": "openmp", "num_threads": 2, "version": None}]
    assert format_info(info).splitlines()[-1] == "blas: openmp threads=2"


# --------------------------------------------------------------------- nnx evaluate
def test_evaluate_a_folder_prints_and_draws_the_confusion_matrix(tmp_path, capsys):
    pytest.importorskip("PIL", reason="image folders need Pillow")
    metrics = pytest.importorskip("sklearn.metrics", reason="the numbers are checked against scikit-learn")
    from image_fixtures import jpeg_bytes

    folder = tmp_path / "photos"
    colours = {"apple": (200, 30, 30), "leaf": (30, 180, 40), "sky": (40, 60, 210)}
    rng = np.random.default_rng(0)
    for name, rgb in colours.items():
        (folder / name).mkdir(parents=True)
        for i in range(6):
            noisy = np.clip(np.array(rgb) + rng.integers(-90, 90, (10, 10, 3)), 0, 255).astype(np.uint8)
            (folder / name / f"{i}.jpg").write_bytes(jpeg_bytes(noisy))
    run = tmp_path / "run"
    code, out, err = _run(
        capsys, "train", "--data", folder, "--size", "6", "--epochs", "3", "--out", run, "--quiet"
    )
    assert code == 0, err
    code, out, err = _run(
        capsys, "evaluate", run / "model.npz", folder, "--json", "--plot", tmp_path / "cm.png"
    )
    assert code == 0, err
    result = json.loads(out)
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = nnx.load(run / "model.npz")
    data = nnx.data.load_images(folder, size=6, val_split=0.0, progress=False)
    truth, predicted = data.Y_train[0], model.predict(data.X_train)[0]
    np.testing.assert_array_equal(result["confusion_matrix"], metrics.confusion_matrix(truth, predicted))
    p, r, f, s = metrics.precision_recall_fscore_support(truth, predicted, zero_division=0)
    for k, row in enumerate(result["per_class"]):
        assert row["class_name"] == ["apple", "leaf", "sky"][k] and row["support"] == s[k]
        assert row["precision"] == pytest.approx(p[k]) and row["recall"] == pytest.approx(r[k])
        assert row["f1"] == pytest.approx(f[k])
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
    assert result["loss"] == pytest.approx(
        metrics.log_loss(truth, model.predict_proba(data.X_train).T), rel=1e-4
    )
    code, out, err = _run(capsys, "evaluate", run / "model.npz", folder)
    lines = out.strip().splitlines()
    assert code == 0 and "18 examples" in lines[0] and lines[-5].startswith("confusion matrix")
    assert lines[-3].split()[0] == "apple" and len(lines[-3].split()) == 4
    # on an npz of the model's features, by class number
    np.savez(tmp_path / "px.npz", X=data.X_train, Y=data.Y_train)
    code, out, err = _run(capsys, "evaluate", run / "model.npz", tmp_path / "px.npz", "--json")
    assert code == 0 and json.loads(out)["confusion_matrix"] == result["confusion_matrix"]


def test_the_readme_documents_evaluate_every_layout_and_the_first_epoch_pause(monkeypatch):
    import test_readme

    table = test_readme.section("Command line")
    (row,) = [line for line in table.splitlines() if line.startswith("| `nnx evaluate")]
    for option, default in test_readme._help_defaults("evaluate", monkeypatch).items():
        assert f"`{option}` {default}" in (row if option != "--debug" else table), option
    photos = test_readme.section("Train on your own photos, then predict")
    assert "nnx evaluate my_run/model.npz" in photos.strip().split("```")[-2]  # the section ends with it
    layouts = photos.split("**Every data layout**", 1)[1]
    for name in ("`CLASS.N.ext`", "sub-folder per class", "--layout rows", "--layout columns", "npz", "h5"):
        (line,) = [line for line in layouts.splitlines() if name in line and line.startswith("| ")]
        assert line.count("<br>") == 1  # a two-line example
    assert "3–8 s" in test_readme.README and "minutes on 2 cores" in test_readme.README
