"""L-BFGS (issue #25): the loss-and-gradient ops on every backend, nnx.LBFGS against
scikit-learn's lbfgs solvers, and what a fit records.

The CUDA kernels of the ops are checked on the CPU emulation in test_kernels_on_cpu.py;
here the ``backend`` fixture runs the same checks on a real GPU where there is one.
"""

import importlib.util
import json
import sys
import warnings

import numpy as np
import pytest

import nnx
from nnx.history import History
from nnx.lbfgs import fit_lbfgs, stop_reason

needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="scipy not installed")


def reference_logreg(w, b, X, Y, loss):
    """Mean loss, correct count and gradient of logistic regression in float64 NumPy."""
    X, w, b, Y = (np.asarray(a, np.float64) for a in (X, w, b, Y))
    z = w @ X + b
    a = 1 / (1 + np.exp(-z))
    if loss == "bce":
        value = np.mean(np.logaddexp(0, z) - Y * z)
        dz = (a - Y) / X.shape[1]
        correct = np.sum((z > 0) == (Y > 0.5))
    else:
        value = 0.5 * np.mean((a - Y) ** 2)
        dz = (a - Y) * a * (1 - a) / X.shape[1]
        correct = np.sum((a > 0.5) == (Y > 0.5))
    return value, correct, dz @ X.T, dz.sum(keepdims=True)


def reference_softmax(W, b, X, labels):
    X, W, b = (np.asarray(a, np.float64) for a in (X, W, b))
    Z = W @ X + b
    P = np.exp(Z - Z.max(axis=0))
    P /= P.sum(axis=0)
    m = X.shape[1]
    cols = np.arange(m)
    value = -np.mean(np.log(P[labels, cols]))
    P[labels, cols] -= 1
    return value, np.sum(Z.argmax(axis=0) == labels), P @ X.T / m, P.sum(axis=1, keepdims=True) / m


def gradient_tolerance(dtype):
    return {"rtol": 1e-9, "atol": 1e-12} if dtype == "float64" else {"rtol": 1e-4, "atol": 1e-6}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pixels", [True, False], ids=["uint8", "float"])
@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_logreg_loss_and_gradient_in_one_pass(backend, dtype, pixels, loss):
    ops = nnx.get_backend(backend)
    rng = np.random.default_rng(25)
    n, m = 300, 203
    raw = rng.integers(0, 256, (n, m), dtype=np.uint8)
    X = raw if pixels else (raw / 255.0).astype(dtype)
    Y = (rng.random((1, m)) > 0.5).astype(np.float64)
    w = (rng.normal(size=(1, n)) * 0.02).astype(dtype)
    b = np.array([[0.1]], dtype)
    wd, bd = ops.asarray(w, dtype), ops.asarray(b, dtype)
    Xd, Yd = ops.prepare_fused_input(X, dtype), ops.prepare_labels(Y, dtype)
    first = ops.logreg_loss_grad(wd, bd, Xd, Yd, loss)
    value, correct, dw, db = first
    ref = reference_logreg(w, b, raw / 255.0, Y, loss)
    np.testing.assert_allclose(ops.scalar(value), ref[0], rtol=1e-6 if dtype == "float32" else 1e-12)
    assert ops.scalar(correct) == ref[1]
    dw_host, db_host = ops.to_host(dw), ops.to_host(db)
    assert (
        dw_host.dtype == db_host.dtype == np.float64 and dw_host.shape == (1, n) and db_host.shape == (1, 1)
    )
    np.testing.assert_allclose(dw_host, ref[2], **gradient_tolerance(dtype))
    np.testing.assert_allclose(db_host, ref[3], **gradient_tolerance(dtype))
    # no update, and the same bits on a second call
    assert np.array_equal(ops.to_host(wd), w) and np.array_equal(ops.to_host(bd), b)
    again = ops.logreg_loss_grad(wd, bd, Xd, Yd, loss)
    assert ops.to_host(again[2]).tobytes() == dw_host.tobytes()
    assert ops.scalar(again[0]) == ops.scalar(value)
    # the fused epoch's step is this gradient
    ops.logreg_epoch_(wd, bd, Xd, Yd, 1.0, loss)
    np.testing.assert_allclose(w - ops.to_host(wd), dw_host.astype(dtype), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pixels", [True, False], ids=["uint8", "float"])
def test_softmax_loss_and_gradient_in_one_pass(backend, dtype, pixels):
    ops = nnx.get_backend(backend)
    rng = np.random.default_rng(26)
    n, m, K = 200, 157, 4
    raw = rng.integers(0, 256, (n, m), dtype=np.uint8)
    X = raw if pixels else (raw / 255.0).astype(dtype)
    labels = rng.integers(0, K, m)
    W = (rng.normal(size=(K, n)) * 0.02).astype(dtype)
    b = (rng.normal(size=(K, 1)) * 0.1).astype(dtype)
    Wd, bd = ops.asarray(W, dtype), ops.asarray(b, dtype)
    Xd, Yd = ops.prepare_fused_input(X, dtype), ops.prepare_labels(labels.reshape(1, -1), dtype)
    value, correct, dW, db = ops.softmax_loss_grad(Wd, bd, Xd, Yd)
    ref = reference_softmax(W, b, raw / 255.0, labels)
    np.testing.assert_allclose(ops.scalar(value), ref[0], rtol=1e-6 if dtype == "float32" else 1e-12)
    assert ops.scalar(correct) == ref[1]
    dW_host = ops.to_host(dW)
    assert dW_host.dtype == np.float64 and dW_host.shape == (K, n)
    np.testing.assert_allclose(dW_host, ref[2], **gradient_tolerance(dtype))
    np.testing.assert_allclose(ops.to_host(db), ref[3], **gradient_tolerance(dtype))
    assert np.array_equal(ops.to_host(Wd), W)
    assert ops.to_host(ops.softmax_loss_grad(Wd, bd, Xd, Yd)[2]).tobytes() == dW_host.tobytes()


# ------------------------------------------------------------------ against scikit-learn


def standardised(loader):
    from sklearn.preprocessing import StandardScaler

    X, y = loader(return_X_y=True)
    return np.asfortranarray(StandardScaler().fit_transform(X).T), y


@needs_scipy
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_logistic_regression_reaches_scikit_learns_coefficients(backend, C):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    X, y = standardised(load_breast_cancer)
    reference = sklearn.linear_model.LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X.T, y)
    assert isinstance(reference, LogisticRegression)
    model = nnx.LogisticRegression(X.shape[0])
    history = fit_lbfgs(
        model, X, y, nnx.LBFGS(tol=1e-10), epochs=1000, l2=1 / C, backend=backend, dtype="float64"
    )
    (W, b) = model.parameters()[0]
    np.testing.assert_allclose(W, reference.coef_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b.ravel(), reference.intercept_, rtol=0, atol=1e-6)
    assert history.stop_reason in ("gradient tolerance", "no progress")
    assert history.solver["gradient_max"] < 1e-7
    assert history.solver["evaluations"] < 2 * history.epochs + 10  # a pass or so per iteration


@needs_scipy
def test_softmax_regression_reaches_the_multinomial_solver(backend):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = standardised(load_iris)
    C = 0.5
    reference = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X.T, y)
    model = nnx.SoftmaxRegression(4, 3)
    fit_lbfgs(model, X, y, nnx.LBFGS(tol=1e-10), epochs=1000, l2=1 / C, backend=backend, dtype="float64")
    (W, b) = model.parameters()[0]
    np.testing.assert_allclose(W, reference.coef_, rtol=0, atol=1e-6)
    # the intercepts are not penalised: defined up to a common shift (scikit-learn centres them)
    np.testing.assert_allclose(
        b.ravel() - b.mean(), reference.intercept_ - reference.intercept_.mean(), atol=1e-6
    )
    proba = model.predict_proba(X, backend=backend, dtype="float64")
    np.testing.assert_allclose(proba.T, reference.predict_proba(X.T), atol=1e-7)


@needs_scipy
def test_mlp_reaches_a_loss_no_worse_than_mlpclassifier_from_the_same_weights(backend):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_breast_cancer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = standardised(load_breast_cancer)
    alpha = 1.0
    start = nnx.MLP([30, 4, 1], seed=1).parameters()
    reference = MLPClassifier(
        hidden_layer_sizes=(4,), solver="lbfgs", alpha=alpha, max_iter=1, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X.T, y)  # builds the estimator; its weights are replaced below
        reference.coefs_ = [W.T.copy() for W, _ in start]
        reference.intercepts_ = [b.ravel().copy() for _, b in start]
        reference.set_params(warm_start=True, max_iter=1000)
        reference.fit(X.T, y)
    model = nnx.MLP([30, 4, 1])
    model.set_parameters(start)
    history = fit_lbfgs(model, X, y, nnx.LBFGS(), epochs=1000, l2=alpha, backend=backend, dtype="float64")
    # scikit-learn's final objective, measured by nnx on its weights
    theirs = nnx.MLP([30, 4, 1])
    theirs.set_parameters([(W.T, b.reshape(-1, 1)) for W, b in zip(reference.coefs_, reference.intercepts_)])
    penalty = alpha / (2 * X.shape[1]) * sum(float(np.sum(W * W)) for W, _ in theirs.parameters())
    their_objective = theirs.evaluate(X, y, dtype="float64")["loss"] + penalty
    np.testing.assert_allclose(their_objective, reference.loss_, rtol=1e-9)
    assert history.objective[-1] <= their_objective * (1 + 1e-9)


# ------------------------------------------------------------------------- the fit itself


def problem(m=120, n=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m))
    Y = ((rng.normal(size=(1, n)) @ X + rng.normal(size=(1, m)) * 2) > 0).astype(np.int64)
    return X, Y


@needs_scipy
def test_pixels_take_the_path_of_the_scaled_floats(backend):
    """uint8 X (read raw by the fused kernels, 1/255 folded in) and X / 255 as floats give
    the same iterates."""
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (48, 80), dtype=np.uint8)
    Y = (raw[:3].sum(axis=0, keepdims=True) + rng.integers(0, 200, (1, 80)) > 480).astype(np.int64)
    results = []
    for X in (raw, raw / 255.0):
        model = nnx.LogisticRegression(48)
        history = fit_lbfgs(model, X, Y, nnx.LBFGS(), epochs=8, l2=0.5, backend=backend, dtype="float64")
        results.append((model.parameters()[0][0], history.objective))
    assert len(results[0][1]) == 8
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-9, atol=1e-12)


@needs_scipy
def test_history_records_every_iteration_and_why_it_stopped():
    X, Y = problem()
    Xv, Yv = problem(m=40, seed=1)
    model = nnx.LogisticRegression(20)
    history = fit_lbfgs(
        model,
        X,
        Y,
        nnx.LBFGS(tol=1e-8),
        epochs=200,
        l2=1.0,
        validation_data=(Xv, Yv),
        backend="numpy",
        dtype="float64",
    )
    k = history.epochs
    assert history.epoch == list(range(1, k + 1))
    assert len(history.loss) == len(history.accuracy) == len(history.objective) == k
    assert len(history.val_loss) == len(history.val_accuracy) == k
    assert all(o > loss for o, loss in zip(history.objective, history.loss))  # + the L2 penalty
    assert np.all(np.diff(history.objective) <= 1e-15)
    assert history.stop_reason in ("gradient tolerance", "no progress")
    solver = history.solver
    assert solver["iterations"] == k and solver["evaluations"] >= k + 1 and solver["l2"] == 1.0
    assert solver["objective"] == pytest.approx(history.objective[-1]) and solver["resumable"] is False
    assert len(solver["elapsed"]) == len(solver["passes"]) == k
    assert solver["passes"][0] >= 2 and np.all(np.diff(solver["passes"]) >= 1)  # x0, then >= 1 each
    assert solver["passes"][-1] <= solver["evaluations"]
    assert model.evaluate(X, Y, dtype="float64")["loss"] == pytest.approx(history.loss[-1], rel=1e-12)
    assert model.evaluate(Xv, Yv, dtype="float64")["loss"] == pytest.approx(history.val_loss[-1], rel=1e-12)
    assert model.epochs_trained == k and model.history.loss == history.loss

    short = fit_lbfgs(nnx.LogisticRegression(20), X, Y, nnx.LBFGS(), epochs=3, backend="numpy")
    assert short.stop_reason == "max iterations" and short.epochs == 3
    easy = fit_lbfgs(
        nnx.LogisticRegression(20), X, Y, nnx.LBFGS(tol=1e-2), epochs=100, l2=1.0, backend="numpy"
    )
    assert easy.stop_reason == "gradient tolerance" and easy.solver["gradient_max"] <= 1e-2
    capped = fit_lbfgs(
        nnx.LogisticRegression(20), X, Y, nnx.LBFGS(max_evaluations=4), epochs=100, backend="numpy"
    )
    assert capped.stop_reason == "max evaluations"


def test_stop_reasons_from_every_scipy_wording():
    assert stop_reason("CONVERGENCE: NORM_OF_PROJECTED_GRADIENT_<=_PGTOL", 5, 10) == "gradient tolerance"
    assert stop_reason("CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL", 5, 10) == "gradient tolerance"
    assert stop_reason("CONVERGENCE: REL_REDUCTION_OF_F_<=_FACTR*EPSMCH", 5, 10) == "no progress"
    assert stop_reason("ABNORMAL_TERMINATION_IN_LNSRCH", 5, 10) == "no progress"
    assert stop_reason("ABNORMAL: ", 5, 10) == "no progress"
    assert stop_reason("STOP: TOTAL NO. of ITERATIONS REACHED LIMIT", 10, 10) == "max iterations"
    assert stop_reason("STOP: TOTAL NO. of f AND g EVALUATIONS EXCEEDS LIMIT", 4, 10) == "max evaluations"


def test_history_json_stays_backward_compatible():
    old = {"format": "nnx-history", "epoch": [1], "loss": [0.5], "accuracy": [1.0], "backend": "numpy"}
    history = History.from_dict(old)
    assert history.stop_reason == "" and history.objective == [] and history.solver == {}
    new = History(epoch=[1, 2], loss=[0.5, 0.4], accuracy=[0.5, 1.0], objective=[0.6, 0.45])
    new.stop_reason, new.solver = "gradient tolerance", {"iterations": 2}
    again = History.from_dict(json.loads(new.to_json()))
    assert again.objective == [0.6, 0.45] and again.stop_reason == "gradient tolerance"
    assert again.solver == {"iterations": 2}
    assert new.to_csv().splitlines()[0] == "epoch,loss,accuracy,objective"


@needs_scipy
def test_a_callback_stops_it_and_a_second_fit_continues_from_a_saved_model(tmp_path):
    X, Y = problem()
    straight = nnx.LogisticRegression(20)
    whole = fit_lbfgs(
        straight, X, Y, nnx.LBFGS(tol=1e-9), epochs=500, l2=1.0, backend="numpy", dtype="float64"
    )

    model = nnx.LogisticRegression(20)
    first = fit_lbfgs(
        model,
        X,
        Y,
        nnx.LBFGS(),
        epochs=500,
        l2=1.0,
        backend="numpy",
        dtype="float64",
        callback=lambda i, net, h: i == 4,
    )
    assert first.epochs == 4 and first.stop_reason == "callback"
    model.save(str(tmp_path / "model.npz"))
    loaded = nnx.load(str(tmp_path / "model.npz"))
    np.testing.assert_array_equal(loaded.parameters()[0][0], model.parameters()[0][0])
    second = fit_lbfgs(
        loaded, X, Y, nnx.LBFGS(tol=1e-9), epochs=500, l2=1.0, backend="numpy", dtype="float64"
    )
    assert second.objective[0] < first.objective[-1]  # continues from where the first stopped
    np.testing.assert_allclose(second.objective[-1], whole.objective[-1], rtol=1e-12)
    np.testing.assert_allclose(loaded.parameters()[0][0], straight.parameters()[0][0], atol=1e-6)


@needs_scipy
def test_a_failed_fit_leaves_the_parameters_as_they_were():
    X, Y = problem()
    model = nnx.MLP([20, 5, 1], seed=0)
    before = model.parameters()

    def interrupt(iteration, net, history):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_lbfgs(model, X, Y, nnx.LBFGS(), epochs=50, backend="numpy", callback=interrupt)
    for (W0, b0), (W1, b1) in zip(before, model.parameters()):
        assert np.array_equal(W0, W1) and np.array_equal(b0, b1)
    assert model.epochs_trained == 0 and model.history is None
    with pytest.raises(ValueError, match="l2"):
        fit_lbfgs(model, X, Y, nnx.LBFGS(), epochs=5, l2=-1.0)
    with pytest.raises(TypeError, match="LBFGS"):
        fit_lbfgs(model, X, Y, "lbfgs", epochs=5)
    with pytest.raises(ValueError, match="epochs"):
        fit_lbfgs(model, X, Y, nnx.LBFGS(), epochs=0)
    with pytest.raises(ValueError, match="tol"):
        nnx.LBFGS(tol=0)


@needs_scipy
def test_softmax_mlp_trains_in_float32():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10, 90)).astype(np.float32)
    y = np.argmax(rng.normal(size=(3, 10)) @ X, axis=0)
    model = nnx.MLP([10, 8, 3], seed=0)
    history = fit_lbfgs(model, X, y, nnx.LBFGS(), epochs=60, l2=0.1, backend="numpy")
    assert history.dtype == "float32" and history.loss[-1] < 0.5 * history.loss[0]
    assert model.evaluate(X, y, backend="numpy")["accuracy"] > 0.9


def test_without_scipy_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ImportError, match=r"nnx-nets\[lbfgs\]"):
        nnx.LBFGS()


@needs_scipy
def test_the_solver_step_runs_on_one_blas_thread_and_evaluations_on_the_usual_ones():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from nnx.lbfgs import BlasThreads

    def blas_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    seen = {}
    X, Y = problem()
    model = nnx.MLP([20, 4, 1], seed=0)
    with BlasThreads.for_solver():
        seen["step"] = blas_threads()
        with BlasThreads.for_evaluation():
            seen["evaluation"] = blas_threads()
        seen["after evaluation"] = blas_threads()
    fit_lbfgs(
        model,
        X,
        Y,
        nnx.LBFGS(),
        epochs=3,
        backend="numpy",
        callback=lambda *_: seen.update(cb=blas_threads()),
    )
    assert seen["step"] == seen["after evaluation"] == [1] * len(before)
    assert seen["evaluation"] == seen["cb"] == before
    assert blas_threads() == before


def test_fit_with_an_lbfgs_optimizer_is_fit_lbfgs():
    """``model.fit(optimizer=nnx.LBFGS())`` is ``fit_lbfgs``; step-only options are refused."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 80))
    Y = (X[0] - X[1] + 0.5 * rng.standard_normal(80) > 0).astype(float).reshape(1, -1)
    a, b = nnx.LogisticRegression(5), nnx.LogisticRegression(5)
    ha = a.fit(X, Y, optimizer=nnx.LBFGS(tol=1e-8), epochs=100, l2=1.0, backend="numpy", dtype="float64")
    nnx.lbfgs.fit_lbfgs(b, X, Y, nnx.LBFGS(tol=1e-8), epochs=100, l2=1.0, backend="numpy", dtype="float64")
    np.testing.assert_array_equal(a.parameters()[0][0], b.parameters()[0][0])
    assert ha.stop_reason == "gradient tolerance"
    with pytest.raises(ValueError, match="batch_size, schedule do not apply"):
        a.fit(X, Y, optimizer=nnx.LBFGS(), epochs=5, batch_size=8, schedule=nnx.schedules.Step(10))
