"""K-class data through the command line: a folder of 3 classes trains a softmax model,
``nnx predict`` names the class and, with --top, the runners-up; npz/csv class numbers."""

import json

import numpy as np
import pytest

pytest.importorskip("PIL", reason="image tests need Pillow: pip install 'nnx-nets[images]'")

from nnx_testing import run  # noqa: E402
from PIL import Image  # noqa: E402

import nnx  # noqa: E402

COLOURS = {"apple": (200, 30, 30), "leaf": (30, 180, 40), "sky": (40, 60, 210)}


def _picture(rgb, rng):
    noise = rng.integers(-40, 40, size=(12, 12, 3))
    return Image.fromarray(np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    root = tmp_path_factory.mktemp("k") / "pics"
    rng = np.random.default_rng(0)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(12):
            _picture(rgb, rng).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_folder_of_three_classes_trains_a_softmax_model(three_classes, tmp_path, model):
    out = tmp_path / "run"
    r = run(
        "train",
        "--data",
        three_classes,
        "--model",
        model,
        "--hidden",
        16,
        "--size",
        8,
        "--epochs",
        300,
        "--lr",
        0.3,
        "--backend",
        "numpy",
        "--out",
        out,
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "3 classes: apple, leaf, sky" in r.stdout
    trained = nnx.load(out / "model.npz")
    assert trained.n_classes == 3 and trained.metadata["classes"] == ["apple", "leaf", "sky"]
    pred = run("predict", out / "model.npz", three_classes / "leaf" / "0.png", "--top", 3, "--json")
    assert pred.returncode == 0, pred.stderr
    [result] = json.loads(pred.stdout)
    assert result["class_name"] == "leaf" and len(result["top"]) == 3
    assert [t["class_name"] for t in result["top"]][0] == "leaf"
    assert sum(t["probability"] for t in result["top"]) == pytest.approx(1.0)
    text = run("predict", out / "model.npz", three_classes / "sky" / "1.png", "--top", 2)
    assert text.returncode == 0 and text.stdout.startswith(str(three_classes / "sky" / "1.png"))
    assert "(sky); next: " in text.stdout


def test_class_weight_names_any_of_k_classes_by_number_or_name(three_classes, tmp_path):
    """--class-weight on 3 classes: class 2 by number and "leaf" by name reach fit as
    weights {2: 3, 1: 0.5} (the history records the per-class weights); a class the data
    lack is refused in one line naming the classes."""
    common = ("--data", three_classes, "--size", 8, "--epochs", 5, "--backend", "numpy", "--quiet")
    r = run("train", *common, "--class-weight", "2:3,leaf:0.5", "--out", tmp_path / "w")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "w" / "history.json").read_text())["class_weight"] == [1.0, 0.5, 3.0]
    bad = run("train", *common, "--class-weight", "pear:2", "--out", tmp_path / "b")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == (
        "nnx: error: --class-weight names class 'pear', which the data do not have "
        "(their classes: 0=apple, 1=leaf, 2=sky)"
    )


def test_positive_with_three_classes_is_refused(three_classes, tmp_path):
    r = run("train", "--data", three_classes, "--positive", "sky", "--size", 8, "--out", tmp_path / "o")
    assert r.returncode == 2 and "positive only chooses label 1 of two classes" in r.stderr


def test_npz_with_class_numbers_trains_k_classes(tmp_path):
    rng = np.random.default_rng(1)
    y = np.arange(90) % 3
    X = np.eye(3)[y].T * 3 + rng.standard_normal((3, 90))
    np.savez(tmp_path / "d.npz", X=X, Y=y)
    out = tmp_path / "run"
    r = run(
        "train",
        "--data",
        tmp_path / "d.npz",
        "--epochs",
        200,
        "--lr",
        0.5,
        "--backend",
        "numpy",
        "--out",
        out,
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    model = nnx.load(out / "model.npz")
    assert model.n_classes == 3 and model.evaluate(X, y)["accuracy"] > 0.9


def test_bad_top_is_one_line():
    r = run("predict", "m.npz", "x.png", "--top", 0)
    assert r.returncode == 2 and "--top must lie in [1, 1000]" in r.stderr
