"""Edges of ``nnx train`` met while trying it: an image size the built-in data cannot use
and a --positive class the data lack are one-line usage errors (exit 2), before any work."""

import json
from pathlib import Path

import pytest
from nnx_testing import one_line_error, run

QUICK = ("--epochs", 2, "--quiet", "--backend", "numpy")


def kaggle_folder(*args, **kwargs):
    """``image_fixtures.kaggle_folder``, skipping the test where Pillow is missing."""
    pytest.importorskip("PIL", reason="writing test pictures needs Pillow")
    from image_fixtures import kaggle_folder as make

    return make(*args, **kwargs)


def test_a_size_the_builtin_data_cannot_use_is_a_usage_error(tmp_path):
    for size in (1, 2, 3):
        line = one_line_error(run("train", "--size", size, "--out", tmp_path / "o", *QUICK))
        assert line == (
            f"nnx: error: --size {size} is too small for the embedded synthetic set, whose pictures "
            "need at least 4 x 4 pixels; use --size 4 or more"
        )
        assert not (tmp_path / "o").exists()  # refused before any work
    r = run("train", "--size", 4, "--out", tmp_path / "ok", *QUICK)
    assert r.returncode == 0, r.stderr
    from nnx.datasets import SYNTHETIC_MIN_SIZE

    assert SYNTHETIC_MIN_SIZE == 4


def test_image_folders_take_any_positive_size(tmp_path):
    kaggle_folder(tmp_path / "pics", n_per_class=4, size=8, with_bad=False)
    r = run("train", "--data", tmp_path / "pics", "--size", 1, "--out", tmp_path / "o", *QUICK)
    assert r.returncode == 0, r.stderr


def test_a_positive_class_the_builtin_data_lack_is_refused_naming_theirs(tmp_path):
    line = one_line_error(run("train", "--positive", "cat", "--size", 8, "--out", tmp_path / "o", *QUICK))
    assert line == (
        "nnx: error: --positive 'cat' is not a class of the embedded synthetic set; its classes are "
        "'class 0' and 'class 1'"
    )
    assert not (tmp_path / "o").exists()


def test_a_positive_class_the_builtin_data_have_chooses_label_1(tmp_path):
    runs = {}
    for positive in (None, "class 0", "class 1"):
        out = tmp_path / str(positive)
        extra = () if positive is None else ("--positive", positive)
        r = run("train", "--size", 8, "--out", out, *QUICK, *extra)
        assert r.returncode == 0, r.stderr
        history = json.loads((out / "history.json").read_text())
        runs[positive] = (r.stdout.splitlines()[0], history["loss"], history["val_loss"])
    assert runs[None] == runs["class 1"]  # the default positive class is the second
    assert "label 1 = class 0" in runs["class 0"][0] and "label 1 = class 1" in runs[None][0]
    assert runs["class 0"][1:] != runs[None][1:]


def test_a_positive_class_an_image_folder_lacks_is_refused_naming_theirs(tmp_path):
    kaggle_folder(tmp_path / "pics", n_per_class=4, size=8, with_bad=False)
    r = run("train", "--data", tmp_path / "pics", "--positive", "zebra", "--out", tmp_path / "o", *QUICK)
    line = one_line_error(r)
    assert "'zebra'" in line and "'cat'" in line and "'dog'" in line


def test_positive_on_class_numbers_is_refused(tmp_path):
    import numpy as np

    path = Path(tmp_path / "d.npz")
    np.savez(path, X=np.ones((2, 8)), Y=np.arange(8) % 2)
    line = one_line_error(run("train", "--data", path, "--positive", "1", "--out", tmp_path / "o", *QUICK))
    assert "--positive names a class of an image folder or zip" in line
