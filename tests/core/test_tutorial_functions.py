"""nnx.tutorial: the one-hidden-layer notebook's functions give the plain NumPy notebook
math's numbers (float64, to 1e-12) on every backend; bad input gets a specific error."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

import nnx
from nnx import tutorial

BACKENDS = nnx.backends.names()
TOL = {"rtol": 1e-12, "atol": 1e-12}


# --------------------------------------------- the notebook's math, plain NumPy
def ref_initialize(nx, nh, ny):
    np.random.seed(1)
    W1 = np.random.uniform(-0.01, 0.01, (nh, nx))
    W2 = np.random.uniform(-0.01, 0.01, (ny, nh))
    return {"W1": W1, "b1": np.zeros((nh, 1)), "W2": W2, "b2": np.zeros((ny, 1))}


def ref_forward(p, X):
    Z1 = p["W1"] @ X + p["b1"]
    A1 = np.tanh(Z1)
    Z2 = p["W2"] @ A1 + p["b2"]
    A2 = 1 / (1 + np.exp(-Z2))
    return A2, {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}


def ref_loss(Y, Yhat):
    return float(-np.sum(Y * np.log(Yhat) + (1 - Y) * np.log(1 - Yhat)) / Y.shape[1])


def ref_backward(p, cache, X, Y, Yhat):
    m = X.shape[1]
    dZ2 = Yhat - Y
    dZ1 = (p["W2"].T @ dZ2) * (1 - cache["A1"] ** 2)
    return {
        "dW2": dZ2 @ cache["A1"].T / m,
        "db2": dZ2.sum(axis=1, keepdims=True) / m,
        "dW1": dZ1 @ X.T / m,
        "db1": dZ1.sum(axis=1, keepdims=True) / m,
    }


def ref_update(p, g, lr):
    return {k: p[k] - lr * g["d" + k] for k in p}


def ref_model(X, Y, nh, Xv, Yv, iterations, lr):
    p = ref_initialize(X.shape[0], nh, Y.shape[0])
    history = {"train loss": [], "val loss": []}
    for _ in range(iterations):
        Yhat, cache = ref_forward(p, X)
        history["train loss"].append(ref_loss(Y, Yhat))
        history["val loss"].append(ref_loss(Yv, ref_forward(p, Xv)[0]))
        p = ref_update(p, ref_backward(p, cache, X, Y, Yhat), lr)
    return p, history


def planar(m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The notebook's kind of data: two interleaved petals in 2-D."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, m)
    r = 3 * np.sin(2 * t) + rng.normal(0, 0.3, m)
    X = np.vstack([r * np.sin(t), r * np.cos(t)])
    return X, (np.sin(2 * t) > 0).astype(np.float64).reshape(1, -1)


X, Y = planar(120, 0)
XV, YV = planar(40, 1)


def assert_dicts_close(a, b):
    assert set(a) == set(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        np.testing.assert_allclose(a[key], b[key], **TOL, err_msg=key)


# --------------------------------------------------------------------- tests
def test_initialize_parameters_is_the_notebooks_draw_and_leaves_numpys_generator():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    p = tutorial.initialize_parameters(2, 4, 1)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    ref = ref_initialize(2, 4, 1)
    for key in ref:
        np.testing.assert_array_equal(p[key], ref[key])
    assert np.abs(p["W1"]).max() < 0.01 and not p["b1"].any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_step_matches_the_numpy_notebook(backend):
    require_backend(backend)
    rng = np.random.default_rng(3)
    p = {k: v + rng.normal(0, 0.5, v.shape) for k, v in ref_initialize(2, 4, 1).items()}
    Yhat, cache = tutorial.forward_pass(p, X, backend=backend)
    ref_Yhat, ref_cache = ref_forward(p, X)
    np.testing.assert_allclose(Yhat, ref_Yhat, **TOL)
    assert_dicts_close(cache, ref_cache)
    assert tutorial.compute_loss(Y, Yhat, backend=backend) == pytest.approx(ref_loss(Y, ref_Yhat), rel=1e-12)
    g = tutorial.backward_pass(p, cache, X, Y, Yhat, backend=backend)
    assert_dicts_close(g, ref_backward(p, ref_cache, X, Y, ref_Yhat))
    assert_dicts_close(tutorial.update_parameters(p, g, 1.2, backend=backend), ref_update(p, g, 1.2))
    labels = tutorial.predict(p, X, prob_threshold=0.4, backend=backend)
    np.testing.assert_array_equal(labels, (ref_Yhat > 0.4).astype(np.int64))
    assert tutorial.accuracy(Y, labels) == np.mean(Y == labels)


@pytest.mark.parametrize("backend", BACKENDS)
def test_create_nn_model_matches_the_numpy_notebook(backend):
    require_backend(backend)
    params, history = tutorial.create_nn_model(X, Y, 4, XV, YV, 300, 1.2, backend=backend)
    ref_params, ref_history = ref_model(X, Y, 4, XV, YV, 300, 1.2)
    assert_dicts_close(params, ref_params)
    np.testing.assert_allclose(history["train loss"], ref_history["train loss"], **TOL)
    np.testing.assert_allclose(history["val loss"], ref_history["val loss"], **TOL)
    assert history["train loss"][-1] < 0.5 * history["train loss"][0]
    assert tutorial.accuracy(Y, tutorial.predict(params, X)) > 0.8


def test_the_gradients_are_the_losss_finite_differences():
    rng = np.random.default_rng(5)
    p = {k: v + rng.normal(0, 0.5, v.shape) for k, v in ref_initialize(2, 3, 1).items()}
    Yhat, cache = tutorial.forward_pass(p, X)
    g = tutorial.backward_pass(p, cache, X, Y, Yhat)
    h = 1e-6
    for key in p:
        numeric = np.zeros_like(p[key])
        for idx in np.ndindex(p[key].shape):
            losses = []
            for step in (h, -h):
                q = {k: v.copy() for k, v in p.items()}
                q[key][idx] += step
                losses.append(tutorial.compute_loss(Y, tutorial.forward_pass(q, X)[0]))
            numeric[idx] = (losses[0] - losses[1]) / (2 * h)
        np.testing.assert_allclose(g["d" + key], numeric, rtol=1e-6, atol=1e-9)


def test_bad_input_names_the_argument():
    p = tutorial.initialize_parameters(2, 4, 1)
    with pytest.raises(ValueError, match="X has 3 rows"):
        tutorial.forward_pass(p, np.ones((3, 5)))
    with pytest.raises(ValueError, match="lacks W2"):
        tutorial.forward_pass({"W1": p["W1"], "b1": p["b1"], "b2": p["b2"]}, X)
    with pytest.raises(ValueError, match="learning_rate"):
        tutorial.update_parameters(p, tutorial.backward_pass(p, tutorial.forward_pass(p, X)[1], X, Y, Y), -1)
    with pytest.raises(ValueError, match="prob_threshold"):
        tutorial.predict(p, X, prob_threshold=2)
    with pytest.raises(ValueError, match="nh must be a positive integer"):
        tutorial.initialize_parameters(2, 0, 1)
    with pytest.raises(ValueError, match="Y has shape"):
        tutorial.create_nn_model(X, Y[:, :10], 4, XV, YV, 5, 0.1)
