"""The tutorials' classic examples as regression tests, on every backend."""

import numpy as np
import pytest

import nnx
from nnx.datasets import feature_cross, logic_gate, synthetic_images, train_test_split


@pytest.mark.parametrize("gate", ["or", "and"])
def test_one_neuron_learns_or_and(gate, backend):
    X, Y = logic_gate(gate)
    model = nnx.LogisticRegression(2)
    model.fit(X, Y, epochs=3000, lr=1.0, backend=backend)
    np.testing.assert_array_equal(model.predict(X, backend=backend), Y)


def test_one_neuron_cannot_learn_xor(backend):
    """XOR is not linearly separable: no line gets more than 3 of the 4 points right, and
    logistic regression's best (the symmetric zero start is already it: every gradient
    cancels) is the coin toss, loss ln 2 with every probability 1/2."""
    X, Y = logic_gate("xor")
    model = nnx.LogisticRegression(2)
    history = model.fit(X, Y, epochs=3000, lr=1.0, backend=backend, dtype="float64")
    assert history.loss[-1] == pytest.approx(np.log(2), rel=1e-12)
    np.testing.assert_allclose(model.predict_proba(X, backend=backend), 0.5, rtol=1e-12)
    assert (model.predict(X, backend=backend) == Y).mean() <= 0.75


def test_two_layer_net_learns_xor(backend):
    X, Y = logic_gate("xor")
    model = nnx.Sequential(nnx.Linear(2, 4, seed=3), nnx.Tanh(), nnx.Linear(4, 1, seed=4), nnx.Sigmoid())
    history = model.fit(X, Y, epochs=3000, lr=1.0, backend=backend)
    np.testing.assert_array_equal(model.predict(X, backend=backend), Y)
    assert history.accuracy[-1] == 1.0


def test_feature_cross_makes_xor_learnable_by_one_neuron(backend):
    X, Y = logic_gate("xor")
    Xc = feature_cross(2 * X - 1)
    model = nnx.LogisticRegression(3)
    model.fit(Xc, Y, epochs=2000, lr=1.0, backend=backend)
    np.testing.assert_array_equal(model.predict(Xc, backend=backend), Y)


def test_logistic_regression_and_mlp_on_12288_images(backend):
    X, Y = synthetic_images(m=160, seed=3)
    Xtr, Ytr, Xte, Yte = train_test_split(X, Y, test_fraction=0.25, seed=0)
    logreg = nnx.LogisticRegression(12288)
    h = logreg.fit(Xtr, Ytr, epochs=300, lr=0.005, backend=backend, validation_data=(Xte, Yte))
    assert h.loss[-1] < 0.5 * h.loss[0] and h.accuracy[-1] > 0.9
    assert h.val_accuracy[-1] > 0.75
    mlp = nnx.MLP([12288, 50, 1], seed=1)
    h = mlp.fit(Xtr, Ytr, epochs=200, lr=0.01, backend=backend, validation_data=(Xte, Yte))
    assert h.loss[-1] < 0.8 * h.loss[0] and h.accuracy[-1] > 0.7
    assert mlp.evaluate(Xte, Yte, backend=backend)["accuracy"] == pytest.approx(h.val_accuracy[-1])
