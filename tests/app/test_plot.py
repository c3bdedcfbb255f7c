"""Plots are real PNG files that Pillow can open."""

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'nnx-nets[plot]'")

import nnx  # noqa: E402
from nnx import plot  # noqa: E402
from nnx.datasets import feature_cross, logic_gate  # noqa: E402


def _is_png(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.format == "PNG" and img.size[0] > 100


def test_learning_curves(tmp_path):
    X, Y = logic_gate("or")
    model = nnx.LogisticRegression(2)
    h = model.fit(X, Y, epochs=50, lr=1.0, validation_data=(X, Y))
    assert _is_png(plot.learning_curves(h, tmp_path / "curve.png"))
    with pytest.raises(ValueError, match="no recorded epochs"):
        plot.learning_curves(nnx.History(), tmp_path / "empty.png")


@pytest.mark.parametrize("shaded", [True, False])
def test_decision_boundary(tmp_path, shaded, rng):
    X = rng.standard_normal((2, 60))
    Y = (X[0] + X[1] > 0).astype(float).reshape(1, -1)
    model = nnx.MLP([2, 5, 1], seed=0)
    model.fit(X, Y, epochs=200, lr=0.5)
    assert _is_png(plot.decision_boundary(model, X, Y, tmp_path / "b.png", shaded=shaded))


def test_decision_boundary_with_feature_cross(tmp_path):
    X, Y = logic_gate("xor")
    Xs = 2 * X - 1
    model = nnx.LogisticRegression(3)
    model.fit(feature_cross(Xs), Y, epochs=2000, lr=1.0)
    assert _is_png(plot.decision_boundary(model, Xs, Y, tmp_path / "x.png", cross=True))
    with pytest.raises(ValueError, match="2-D data"):
        plot.decision_boundary(model, np.zeros((3, 4)), Y, tmp_path / "bad.png")


def test_decision_boundary_draws_k_regions(tmp_path, rng):
    X = rng.standard_normal((2, 90))
    y = np.argmax(np.vstack([X[0], X[1], -X[0] - X[1]]), axis=0)
    model = nnx.MLP([2, 8, 3], seed=0)
    model.fit(X, y, epochs=200, lr=0.5, backend="numpy")
    for shaded in (True, False):
        assert _is_png(plot.decision_boundary(model, X, y, tmp_path / f"k{shaded}.png", shaded=shaded))
    assert _is_png(plot.decision_boundary(model, X, np.eye(3)[y].T, tmp_path / "onehot.png"))
