"""nnx matches an independent tutorial-style float64 implementation step for step."""

import numpy as np
import pytest
from reference import deep_train, logreg_optimize

import nnx


def _data(rng, n_x, m):
    X = rng.standard_normal((n_x, m))
    Y = (rng.random((1, m)) > 0.5).astype(np.float64)
    return X, Y


def test_logistic_regression_100_steps(rng, backend):
    X, Y = _data(rng, 30, 64)
    w0 = rng.standard_normal((30, 1)) * 0.1
    b0 = 0.3
    w, b, _ = logreg_optimize(w0, b0, X, Y, num_iterations=100, learning_rate=0.05)
    model = nnx.LogisticRegression(30)
    model.set_parameters([(w0.T, np.array([[b0]]))])
    model.fit(X, Y, epochs=100, lr=0.05, backend=backend, dtype="float64")
    ((W, bb),) = model.parameters()
    np.testing.assert_allclose(W, w.T, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(bb, [[b]], rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize(
    "sizes, acts, loss",
    [
        ([20, 7, 1], ["relu", "sigmoid"], "bce"),
        ([20, 6, 5, 1], ["sigmoid", "sigmoid", "sigmoid"], "mse"),
    ],
    ids=["relu-sigmoid-bce", "3-layer-sigmoid-mse"],
)
def test_deep_net_100_steps(rng, backend, sizes, acts, loss):
    X, Y = _data(rng, sizes[0], 50)
    params = {}
    for l in range(1, len(sizes)):
        params[f"W{l}"] = rng.standard_normal((sizes[l], sizes[l - 1])) * 0.5
        params[f"b{l}"] = rng.standard_normal((sizes[l], 1)) * 0.1
    expected = deep_train(X, Y, params, acts, loss, learning_rate=0.5, num_iterations=100)

    kinds = {"relu": nnx.ReLU, "sigmoid": nnx.Sigmoid}
    layers = []
    for l in range(1, len(sizes)):
        layers += [nnx.Linear(sizes[l - 1], sizes[l], seed=0), kinds[acts[l - 1]]()]
    model = nnx.Sequential(*layers, loss=loss)
    model.set_parameters([(params[f"W{l}"], params[f"b{l}"]) for l in range(1, len(sizes))])
    model.fit(X, Y, epochs=100, lr=0.5, backend=backend, dtype="float64")
    for l, (W, b) in enumerate(model.parameters(), start=1):
        np.testing.assert_allclose(W, expected[f"W{l}"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, expected[f"b{l}"], rtol=1e-9, atol=1e-12)
