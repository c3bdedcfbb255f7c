"""What the optimizers buy: on scikit-learn's breast-cancer set (its first 10 features,
collinear, standardised), Adam reaches scikit-learn's unpenalised logistic-regression
optimum to 1e-4 in a few thousand epochs, where plain gradient descent at a tutorial-sized
rate is still short of it after 100 000."""

import warnings

import numpy as np
import pytest

import nnx

sklearn = pytest.importorskip("sklearn", reason="needs scikit-learn")


@pytest.fixture(scope="module")
def breast_cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    data = load_breast_cancer()
    X = data.data[:, :10]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # penalty=None is spelled C=inf in newer releases
        sk = LogisticRegression(penalty=None, tol=1e-12, max_iter=100_000).fit(X, data.target)
    return np.asfortranarray(X.T), data.target, log_loss(data.target, sk.predict_proba(X))


# NumPy: on a machine whose cores are busy, the Numba backend's parallel kernel can wait
# milliseconds per launch, and this problem (569 examples) is far too small to gain from it.
def test_adam_reaches_the_optimum_where_gradient_descent_does_not(breast_cancer):
    X, y, optimum = breast_cancer
    adam = nnx.LogisticRegression(10)
    h = adam.fit(X, y, epochs=3000, optimizer=nnx.Adam(lr=0.5), dtype="float64", backend="numpy")
    gap = adam.evaluate(X, y, dtype="float64")["loss"] - optimum
    first = next(e for e, loss in zip(h.epoch, h.loss) if loss - optimum < 1e-4)
    assert 0 <= gap < 1e-5 and first < 2000, (gap, first)
    gd = nnx.LogisticRegression(10)
    gd.fit(X, y, epochs=100_000, lr=0.1, dtype="float64", history_every=1000, backend="numpy")
    gd_gap = gd.evaluate(X, y, dtype="float64")["loss"] - optimum
    assert gd_gap > 1e-3, gd_gap
