"""NNXClassifier and NNXRegressor as drop-ins for scikit-learn's MLPClassifier and
MLPRegressor: scikit-learn's estimator checks for the regressor and for the classifier's
new parameters, and the tests of scikit-learn's ``sklearn/neural_network/tests/test_mlp.py``
that apply to nnx, written anew with the parameter names mapped.

Left out of test_mlp.py, and why:

* test_fit, test_gradient's hand-written backprop: they check scikit-learn's own
  initialisation and internals; nnx's gradients are checked against finite differences
  below (test_regression_gradients_match_finite_differences) and in test_gradients.py.
* test_learning_rate_warmstart, test_adaptive_learning_rate: "invscaling" and "adaptive"
  have no nnx equivalent; nnx refuses them (test_sklearn_only_schedules_are_refused).
* test_multilabel_classification, test_predict_proba_multilabel: nnx has no multi-label
  output (independent sigmoids); multi-label y is refused.
* test_sparse_matrices: nnx trains on dense arrays only (the estimators say sparse=False).
* test_verbose_sgd: nnx's verbose output is its progress bar, not scikit-learn's lines.
* test_preserve_feature_names: pandas is not a dependency (check_estimator covers the
  feature-name checks it can run).
* test_mlp_vs_poisson_glm_equivalent: nnx has no Poisson loss.
* The ConvergenceWarning halves of the max_fun and warm-start tests: nnx does not warn
  when ``max_iter`` ends training (it runs the epochs asked for).
"""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

try:
    pytest.importorskip(
        "sklearn", minversion="1.6", reason="needs scikit-learn >= 1.6: pip install 'nnx-nets[sklearn]'"
    )
except AttributeError as exc:  # collected with optional packages blocked (test_minimal_environment)
    blocked = sorted(name for name, module in sys.modules.items() if module is None and "." not in name)
    if not blocked:
        raise
    pytest.skip(f"scikit-learn does not import with {blocked} blocked: {exc}", allow_module_level=True)
pytest.importorskip("scipy", reason="L-BFGS needs scipy: pip install 'nnx-nets[lbfgs]'")

from conftest import require_backend  # noqa: E402
from sklearn.datasets import load_digits, make_regression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import nnx  # noqa: E402
from nnx.sklearn import NNXClassifier, NNXRegressor, log_proba_from_logits  # noqa: E402

ACTIVATIONS = ("logistic", "tanh", "relu")


def _digits(n_class: int, m: int = 200) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(n_class=n_class, return_X_y=True)
    return MinMaxScaler().fit_transform(X[:m]), y[:m]


X_DIGITS_BINARY, Y_DIGITS_BINARY = _digits(2)
X_DIGITS_MULTI, Y_DIGITS_MULTI = _digits(10)
_Xr, _yr = make_regression(n_samples=200, n_features=10, n_informative=8, noise=1.0, random_state=7)
X_REG, Y_REG = StandardScaler().fit_transform(_Xr), _yr / _yr.std()


# ---------------------------------------------------------------- scikit-learn checks
def checked_estimators() -> list:
    """The regressor by every solver kind (plain gradient descent at a fixed rate diverges
    on the checks' unscaled targets, so Adam and L-BFGS carry the rows), and the classifier
    with the new parameters: L-BFGS, Nesterov momentum with a schedule and class weights."""
    return [
        NNXRegressor(hidden_layer_sizes=(8,), solver="adam", max_iter=20, learning_rate_init=0.05),
        NNXRegressor(hidden_layer_sizes=(), solver="adam", max_iter=20, learning_rate_init=0.05),
        NNXRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=30, dtype="float64"),
        NNXRegressor(hidden_layer_sizes=(), solver="lbfgs", max_iter=30, backend="numba", dtype="float64"),
        NNXClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=20, dtype="float64"),
        NNXClassifier(hidden_layer_sizes=(), solver="lbfgs", max_iter=20, backend="numba", dtype="float64"),
        NNXClassifier(
            hidden_layer_sizes=(8,),
            momentum=0.9,
            nesterovs_momentum=True,
            learning_rate="cosine",
            class_weight="balanced",
            n_iter_no_change=5,
            max_iter=10,
            learning_rate_init=0.05,
            dtype="float64",
        ),
    ]


def expected_failed_checks(estimator) -> dict[str, str]:
    """Checks an estimator here may fail, with the reason (xfail, not strict)."""
    if estimator.dtype == "float32":
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "float32: a weight of 2 and a repeated row are summed in another order (1 ulp, "
                "above the check's rtol=1e-7); float64 passes"
            ),
            "check_methods_sample_order_invariance": (
                "float32: BLAS rounds an example's product by its place in X (1 ulp)"
            ),
        }
    return {}


@parametrize_with_checks(checked_estimators(), expected_failed_checks=expected_failed_checks)
def test_estimator_checks(estimator, check):
    require_backend(estimator.backend if estimator.backend != "auto" else "numpy")
    check(estimator)


# ------------------------------------------------------------- ported: test_mlp.py
def test_alpha_shrinks_the_weights():
    """test_alpha: a larger alpha (nnx's l2) gives smaller weights."""
    norms = []
    for alpha in (0.0, 1.0, 10.0):
        clf = NNXClassifier(
            hidden_layer_sizes=(10,), alpha=alpha, solver="lbfgs", max_iter=50, random_state=1
        )
        clf.fit(X_DIGITS_BINARY[:100], Y_DIGITS_BINARY[:100])
        norms.append(sum(np.abs(W).sum() for W in clf.coefs_))
    assert norms[0] > norms[1] > norms[2]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("X, y", [(X_DIGITS_BINARY, Y_DIGITS_BINARY), (X_DIGITS_MULTI, Y_DIGITS_MULTI)])
def test_lbfgs_classification(X, y, activation):
    """test_lbfgs_classification: L-BFGS fits digits with every hidden activation."""
    clf = NNXClassifier(solver="lbfgs", hidden_layer_sizes=(30,), max_iter=150, activation=activation)
    clf.fit(X[:150], y[:150])
    assert clf.score(X[:150], y[:150]) > 0.95
    assert clf.predict(X[150:]).dtype == y.dtype


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_lbfgs_regression(activation):
    """test_lbfgs_regression."""
    reg = NNXRegressor(solver="lbfgs", hidden_layer_sizes=(30,), max_iter=150, activation=activation)
    reg.fit(X_REG, Y_REG)
    assert reg.score(X_REG, Y_REG) > (0.95 if activation != "logistic" else 0.9)


@pytest.mark.parametrize("Estimator", [NNXClassifier, NNXRegressor])
def test_lbfgs_maxfun_caps_the_evaluations(Estimator):
    """test_lbfgs_*_maxfun: max_fun caps L-BFGS's passes over X, so its iterations."""
    X, y = (X_DIGITS_BINARY, Y_DIGITS_BINARY) if Estimator is NNXClassifier else (X_REG, Y_REG)
    est = Estimator(solver="lbfgs", hidden_layer_sizes=(20,), max_iter=150, max_fun=10, random_state=0)
    est.fit(X, y)
    assert 1 <= est.n_iter_ <= 10


def test_multioutput_regression():
    """test_multioutput_regression: several targets, one model."""
    X, Y = make_regression(n_samples=200, n_targets=5, random_state=11)
    X, Y = StandardScaler().fit_transform(X), Y / Y.std(axis=0)
    reg = NNXRegressor(solver="lbfgs", hidden_layer_sizes=(50,), max_iter=200, random_state=1).fit(X, Y)
    assert reg.predict(X).shape == (200, 5) and reg.n_outputs_ == 5
    assert reg.score(X, Y) > 0.9


def test_partial_fit_classes_error():
    """test_partial_fit_classes_error: classes must not change between calls."""
    clf = NNXClassifier(lr=0.1).partial_fit([[1.0], [2.0]], [0, 1], classes=[0, 1])
    with pytest.raises(ValueError, match="differ"):
        clf.partial_fit([[3.0]], [2], classes=[0, 1, 2])


@pytest.mark.parametrize("Estimator", [NNXClassifier, NNXRegressor])
def test_partial_fit_equals_fit(Estimator):
    """test_partial_fit_classification / _regression: full-batch plain gradient descent
    keeps no optimizer state, so n calls of partial_fit are fit(max_iter=n)."""
    X, y = (X_DIGITS_MULTI, Y_DIGITS_MULTI) if Estimator is NNXClassifier else (X_REG, Y_REG)
    kw = dict(hidden_layer_sizes=(20,), random_state=1, learning_rate_init=0.1, dtype="float64")
    fitted = Estimator(max_iter=25, **kw).fit(X, y)
    stepped = Estimator(**kw)
    for _ in range(25):
        if Estimator is NNXClassifier:
            stepped.partial_fit(X, y, classes=np.unique(y))
        else:
            stepped.partial_fit(X, y)
    assert stepped.n_iter_ == fitted.n_iter_ == 25
    np.testing.assert_allclose(
        stepped.predict(X) if Estimator is NNXRegressor else stepped.predict_proba(X),
        fitted.predict(X) if Estimator is NNXRegressor else fitted.predict_proba(X),
        rtol=1e-10,
        atol=1e-12,
    )


def test_partial_fit_unseen_classes():
    """test_partial_fit_unseen_classes: classes given up front may be absent from y."""
    clf = NNXClassifier(lr=0.1)
    clf.partial_fit([[1.0], [2.0], [3.0]], ["a", "b", "c"], classes=["a", "b", "c", "d"])
    clf.partial_fit([[4.0]], ["d"])
    assert list(clf.classes_) == ["a", "b", "c", "d"] and clf.predict_proba([[1.0]]).shape == (1, 4)


def test_partial_fit_errors():
    """test_partial_fit_errors: new classes refused; no partial_fit for L-BFGS."""
    clf = NNXClassifier().partial_fit([[1.0], [2.0]], [0, 1], classes=[0, 1])
    with pytest.raises(ValueError):
        clf.partial_fit([[3.0]], [2])
    assert not hasattr(NNXClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(NNXRegressor(optimizer="lbfgs"), "partial_fit")


def test_nonfinite_params_raise():
    """test_nonfinite_params: huge inputs make the parameters overflow; nnx raises
    TrainingDivergedError and keeps the estimator unfitted."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 2)) * 1e153
    y = rng.standard_normal(100)
    reg = NNXRegressor(dtype="float64", lr=0.1)
    with pytest.raises(nnx.TrainingDivergedError):
        reg.fit(X, y)
    assert not hasattr(reg, "model_")


@pytest.mark.parametrize("X, y", [(X_DIGITS_BINARY, Y_DIGITS_BINARY), (X_DIGITS_MULTI, Y_DIGITS_MULTI)])
def test_predict_proba_and_log_proba(X, y):
    """test_predict_proba_binary / _multiclass: rows sum to 1, predict_log_proba is the
    log of predict_proba, the classes are ordered; binary AUC is high."""
    clf = NNXClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=100, dtype="float64").fit(X, y)
    proba, log_proba = clf.predict_proba(X), clf.predict_log_proba(X)
    k = len(np.unique(y))
    assert proba.shape == log_proba.shape == (len(X), k)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.isfinite(log_proba).all()  # where a probability underflows to 0 too
    shown = proba > 1e-300
    np.testing.assert_allclose(log_proba[shown], np.log(proba[shown]), rtol=1e-9, atol=1e-12)
    if k == 2:
        assert roc_auc_score(y, proba[:, 1]) > 0.99


def test_log_proba_comes_from_the_logits_and_stays_finite():
    """predict_log_proba is log-sigmoid / log-softmax of the logits: finite where a
    probability rounds to 0 (log(predict_proba) would be -inf)."""
    Z = np.array([[800.0, -800.0, 0.0]])
    L = log_proba_from_logits(Z)
    np.testing.assert_allclose(L, [[-800.0, 0.0], [0.0, -800.0], [np.log(0.5), np.log(0.5)]], atol=1e-12)
    Z = np.array([[0.0, 1000.0], [2000.0, 1000.0], [0.0, 0.0]])
    L = log_proba_from_logits(Z)
    assert np.isfinite(L).all()
    np.testing.assert_allclose(L[0], [-2000.0, 0.0, -2000.0], atol=1e-12)
    np.testing.assert_allclose(np.exp(L[1]).sum(), 1.0)


def test_shuffle():
    """test_shuffle: full batch, shuffle makes no difference; nnx always shuffles
    mini-batches, so shuffle=False with mini-batches is refused."""
    kw = dict(hidden_layer_sizes=(4,), max_iter=5, random_state=0, dtype="float64")
    a = NNXClassifier(shuffle=True, **kw).fit(X_DIGITS_BINARY, Y_DIGITS_BINARY)
    b = NNXClassifier(shuffle=False, **kw).fit(X_DIGITS_BINARY, Y_DIGITS_BINARY)
    np.testing.assert_array_equal(a.predict_proba(X_DIGITS_BINARY), b.predict_proba(X_DIGITS_BINARY))
    with pytest.raises(ValueError, match="shuffle"):
        NNXClassifier(shuffle=False, batch_size=10).fit(X_DIGITS_BINARY, Y_DIGITS_BINARY)


def test_tolerance_stops_training():
    """test_tolerance: with a large tol the loss stops improving by it, training ends early."""
    clf = NNXClassifier(tol=0.5, max_iter=3000, n_iter_no_change=10, solver="sgd", learning_rate_init=0.1)
    clf.fit(X_DIGITS_BINARY, Y_DIGITS_BINARY)
    assert clf.n_iter_ < 3000


@pytest.mark.parametrize("Estimator", [NNXClassifier, NNXRegressor])
def test_early_stopping(Estimator):
    """test_early_stopping: stops before max_iter; the scores and the best are recorded,
    best_loss_ is None; the best epoch's parameters are kept."""
    X, y = (X_DIGITS_MULTI, Y_DIGITS_MULTI) if Estimator is NNXClassifier else (X_REG, Y_REG)
    est = Estimator(
        hidden_layer_sizes=(20,),
        solver="adam",
        learning_rate_init=0.05,
        max_iter=400,
        early_stopping=True,
        n_iter_no_change=5,
        random_state=0,
        dtype="float64",
    ).fit(X, y)
    assert est.n_iter_ < 400
    assert len(est.validation_scores_) == est.n_iter_ == len(est.loss_curve_)
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.best_loss_ is None
    assert est.t_ == est.n_iter_ * (len(X) - int(np.ceil(0.1 * len(X))))


def test_stopping_rule_is_scikit_learns():
    """n_iter_no_change / tol on the training loss: training stops at the first epoch
    where more than n_iter_no_change epochs in a row did not beat the best loss by tol."""
    clf = NNXClassifier(
        hidden_layer_sizes=(10,), learning_rate_init=0.5, max_iter=2000, n_iter_no_change=3, tol=1e-3
    ).fit(X_DIGITS_BINARY, Y_DIGITS_BINARY)
    best, count, stop = np.inf, 0, None
    for epoch, loss in enumerate(clf.loss_curve_, start=1):
        count = count + 1 if loss > best - 1e-3 else 0
        best = min(best, loss)
        if count > 3:
            stop = epoch
            break
    assert stop == clf.n_iter_ < 2000
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None


def test_n_iter_no_change_inf_runs_every_epoch():
    """test_n_iter_no_change_inf (and nnx's default None): no stopping rule."""
    for patience in (np.inf, None):
        clf = NNXClassifier(tol=1e6, n_iter_no_change=patience, max_iter=30, learning_rate_init=0.1)
        assert clf.fit(X_DIGITS_BINARY, Y_DIGITS_BINARY).n_iter_ == 30


def test_early_stopping_needs_a_stratified_split():
    """test_early_stopping_stratified: a class with one example cannot be stratified."""
    X = [[1, 2], [2, 3], [3, 4], [4, 5]]
    with pytest.raises(ValueError, match="least populated class"):
        NNXClassifier(early_stopping=True).fit(X, [0, 0, 0, 1])


def test_early_stopping_string_labels():
    """test_mlp_early_stopping_string_labels."""
    y = np.where(Y_DIGITS_BINARY == 0, "zero", "one")
    clf = NNXClassifier(early_stopping=True, max_iter=20, learning_rate_init=0.1).fit(X_DIGITS_BINARY, y)
    assert set(clf.predict(X_DIGITS_BINARY)) <= {"zero", "one"}


@pytest.mark.parametrize("Estimator", [NNXClassifier, NNXRegressor])
def test_dtypes_casting_and_param_dtypes(Estimator):
    """test_mlp_*_dtypes_casting and test_mlp_param_dtypes: float32 and float64 runs
    agree; the parameters are in the compute dtype (nnx's dtype parameter)."""
    X, y = (X_DIGITS_BINARY, Y_DIGITS_BINARY) if Estimator is NNXClassifier else (X_REG, Y_REG)
    out = {}
    for dtype in ("float32", "float64"):
        est = Estimator(hidden_layer_sizes=(10,), solver="adam", max_iter=30, random_state=0, dtype=dtype)
        est.fit(X, y)
        assert all(W.dtype == dtype for W in est.coefs_) and all(b.dtype == dtype for b in est.intercepts_)
        out[dtype] = est.predict_proba(X) if Estimator is NNXClassifier else est.predict(X)
    np.testing.assert_allclose(out["float32"], out["float64"], rtol=1e-3, atol=1e-3)


def test_pickle_then_partial_fit():
    """test_mlp_loading_from_joblib_partial_fit: an unpickled regressor trains on."""
    X, y = [[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0]
    reg = NNXRegressor(hidden_layer_sizes=(), lr=0.1, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(reg))
    for _ in range(100):
        again.partial_fit([[3.0]], [-1.0])
    assert abs(again.predict([[3.0]])[0] + 1.0) < 0.2


@pytest.mark.parametrize("Estimator", [NNXClassifier, NNXRegressor])
def test_warm_start_full_iteration(Estimator):
    """test_warm_start_full_iteration / test_mlp_warm_start_no_convergence: each warm
    fit runs max_iter more epochs."""
    X, y = (X_DIGITS_BINARY, Y_DIGITS_BINARY) if Estimator is NNXClassifier else (X_REG, Y_REG)
    est = Estimator(hidden_layer_sizes=(2,), warm_start=True, max_iter=10, learning_rate_init=0.05)
    est.fit(X, y)
    assert est.n_iter_ == 10 and est.t_ == 10 * len(X)
    est.set_params(max_iter=5).fit(X, y)
    assert est.n_iter_ == 15 and len(est.loss_curve_) == 15 and est.t_ == 15 * len(X)


def test_warm_start_with_other_classes_raises():
    """test_warm_start: a warm fit on y whose classes differ raises scikit-learn's
    ValueError and keeps the model."""
    X = X_DIGITS_MULTI[:60]
    y = np.arange(60) % 3
    clf = NNXClassifier(hidden_layer_sizes=(4,), warm_start=True, max_iter=5).fit(X, y)
    before = clf.predict_proba(X)
    for other in (np.arange(60) % 2, np.arange(60) % 4, np.where(y == 2, 5, y)):
        with pytest.raises(ValueError, match="same classes"):
            clf.fit(X, other)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


@pytest.mark.parametrize("Estimator", [NNXClassifier, NNXRegressor])
def test_warm_start_with_early_stopping(Estimator):
    """test_mlp_warm_start_with_early_stopping: the scores of every warm fit add up."""
    X, y = (X_DIGITS_MULTI, Y_DIGITS_MULTI) if Estimator is NNXClassifier else (X_REG, Y_REG)
    est = Estimator(
        hidden_layer_sizes=(8,), early_stopping=True, warm_start=True, max_iter=10, solver="adam", tol=0.0
    )
    est.fit(X, y)
    first = len(est.validation_scores_)
    est.set_params(max_iter=20).fit(X, y)
    assert len(est.validation_scores_) > first
    assert est.best_validation_score_ == max(est.validation_scores_)


@pytest.mark.parametrize("Estimator", [NNXClassifier, NNXRegressor])
def test_partial_fit_after_fit_with_early_stopping_raises(Estimator):
    """test_mlp_partial_fit_after_fit."""
    X, y = (X_DIGITS_BINARY, Y_DIGITS_BINARY) if Estimator is NNXClassifier else (X_REG, Y_REG)
    est = Estimator(early_stopping=True, max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        est.partial_fit(X, y)


def test_diverging_loss_raises():
    """test_mlp_diverging_loss: nnx raises TrainingDivergedError (scikit-learn warns)."""
    X = X_REG * 1e3
    with pytest.raises(nnx.TrainingDivergedError):
        NNXRegressor(lr=10.0, max_iter=50).fit(X, Y_REG * 1e3)


def test_sample_weight_with_early_stopping():
    """test_mlp_sample_weight_with_early_stopping: weights of 1 change nothing; weights
    of 2 neither (the loss is sum(w * loss) / sum(w))."""
    kw = dict(hidden_layer_sizes=(8,), early_stopping=True, max_iter=20, random_state=0, dtype="float64")
    X, y = X_DIGITS_BINARY, Y_DIGITS_BINARY
    base = NNXClassifier(**kw).fit(X, y).predict_proba(X)
    for w in (np.ones(len(y)), np.full(len(y), 2.0)):
        np.testing.assert_allclose(
            NNXClassifier(**kw).fit(X, y, sample_weight=w).predict_proba(X), base, rtol=1e-12, atol=1e-14
        )


def _weighted_ridge(X, y, w, alpha):
    """The exact minimiser of sum(w * (X b + c - y)**2) / (2 sum(w)) + alpha / (2 sum(w)) * ||b||**2."""
    Xt = np.hstack([X, np.ones((len(y), 1))])
    penalty = alpha * np.diag([1.0] * X.shape[1] + [0.0])
    theta = np.linalg.solve(Xt.T @ (w[:, None] * Xt) + penalty, Xt.T @ (w * y))
    return theta[:-1], theta[-1]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_regressor_sample_weight_is_scikit_learns_loss(backend):
    """NNXRegressor(sample_weight=w) minimises MLPRegressor's weighted objective:
    sum(w * squared error) / (2 sum(w)) with the L2 term alpha / (2 sum(w)) ||W||**2. On
    linear regression both reach its exact minimiser; the weights change it."""
    require_backend(backend)
    X, y = X_REG[:80, :5], Y_REG[:80]
    w = np.random.default_rng(0).uniform(0, 3, len(y))
    coef, intercept = _weighted_ridge(X, y, w, alpha=3.0)
    kw = dict(hidden_layer_sizes=(), solver="lbfgs", alpha=3.0, tol=1e-12, max_iter=2000)
    reg = NNXRegressor(**kw, dtype="float64", backend=backend).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(reg.coefs_[0].ravel(), coef, rtol=0, atol=1e-8)
    np.testing.assert_allclose(reg.intercepts_[0], [intercept], rtol=0, atol=1e-8)
    sk = MLPRegressor(**kw, max_fun=100_000, random_state=0).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(sk.coefs_[0].ravel(), coef, rtol=0, atol=1e-4)  # its gtol stop
    plain_coef, _ = _weighted_ridge(X, y, np.ones(len(y)), alpha=3.0)
    assert np.abs(plain_coef - coef).max() > 1e-3
    assert reg.score(X, y, sample_weight=w) > reg.score(X, y, sample_weight=3.0 - w)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_regressor_integer_sample_weight_is_repeated_rows(solver):
    """A weight of k is the row k times (full batch, float64, to rounding); without L2,
    weights of 1 and 2 everywhere change nothing; partial_fit takes weights too."""
    X, y = X_REG[:60], Y_REG[:60]
    w = np.random.default_rng(1).integers(0, 4, len(y))
    kw = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=15, alpha=0.1, random_state=0, dtype="float64")
    weighted = NNXRegressor(**kw).fit(X, y, sample_weight=w)
    repeated = NNXRegressor(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-9, atol=1e-12)
    unpenalised = {**kw, "alpha": 0.0}  # the L2 term divides by sum(w): twos halve it
    base = NNXRegressor(**unpenalised).fit(X, y).predict(X)
    for same in (np.ones(len(y)), np.full(len(y), 2.0)):
        reg = NNXRegressor(**unpenalised).fit(X, y, sample_weight=same)
        np.testing.assert_allclose(reg.predict(X), base, rtol=1e-12)
    if solver == "adam":
        a = NNXRegressor(**kw).partial_fit(X, y, sample_weight=w)
        b = NNXRegressor(**kw).partial_fit(np.repeat(X, w, axis=0), np.repeat(y, w))
        np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-9, atol=1e-12)


def test_minimum_input_sample_size():
    """test_minimum_input_sample_size: two examples are enough."""
    reg = NNXRegressor(hidden_layer_sizes=(3,), max_iter=5).fit([[0.0, 1.0], [1.0, 0.0]], [0.0, 1.0])
    assert reg.predict([[0.0, 1.0]]).shape == (1,)


# ---------------------------------------------------------------- the mapping
def test_solver_names_are_nnx_registry_names():
    """solver and optimizer take the registry's names; lbfgs is nnx.LBFGS with tol and
    max_fun; scikit-learn's names (solver, max_iter, ...) win over nnx's."""
    clf = NNXClassifier(solver="lbfgs", tol=1e-7, max_fun=77, max_iter=5)
    opt = clf._optimizer()
    assert isinstance(opt, nnx.LBFGS) and opt.tol == 1e-7 and opt.max_evaluations == 77
    for solver in ("sgd", "rmsprop", "adam", "adamw"):
        assert type(NNXClassifier(solver=solver)._optimizer()).__name__.lower() == solver
    assert NNXClassifier(optimizer="sgd", solver="adam")._solver() == "adam"
    assert NNXClassifier(epochs=7, max_iter=3)._resolved("epochs") == 3
    with pytest.raises(ValueError, match="solver must be one of"):
        NNXClassifier(solver="newton").fit([[0.0], [1.0]], [0, 1])
    nesterov = NNXClassifier(momentum=0.9, nesterovs_momentum=True)._optimizer()
    assert nesterov.momentum == 0.9 and nesterov.nesterov


def test_sklearn_only_schedules_are_refused():
    """learning_rate takes "constant" and nnx's schedules; invscaling/adaptive are refused."""
    for name in ("invscaling", "adaptive"):
        with pytest.raises(ValueError, match="no nnx equivalent"):
            NNXClassifier(learning_rate=name).fit([[0.0], [1.0]], [0, 1])
    clf = NNXClassifier(learning_rate="step:5:0.5", max_iter=10, lr=0.2).fit(X_DIGITS_BINARY, Y_DIGITS_BINARY)
    assert clf.model_.history.epoch_lr[0] == 0.2 and clf.model_.history.epoch_lr[-1] == 0.1


def test_class_weight_by_label():
    """class_weight keyed by the labels themselves; the loss is normalised by the weights."""
    y = np.where(Y_DIGITS_BINARY == 1, "b", "a")
    kw = dict(hidden_layer_sizes=(), max_iter=20, random_state=0, dtype="float64")
    heavy = NNXClassifier(class_weight={"a": 10.0, "b": 1.0}, **kw).fit(X_DIGITS_BINARY, y)
    w = np.where(y == "a", 10.0, 1.0)
    same = NNXClassifier(**kw).fit(X_DIGITS_BINARY, y, sample_weight=w)
    np.testing.assert_allclose(
        heavy.predict_proba(X_DIGITS_BINARY), same.predict_proba(X_DIGITS_BINARY), rtol=1e-12
    )
    with pytest.raises(ValueError, match="not among"):
        NNXClassifier(class_weight={"c": 1.0}).fit(X_DIGITS_BINARY, y)


def test_random_state_is_still_the_nnx_fit():
    """The defaults are nnx's (all epochs, plain gradient descent): random_state=s is the
    nnx fit with seed=s, as before the scikit-learn names were added."""
    clf = NNXClassifier(hidden_layer_sizes=(6,), epochs=20, random_state=3, dtype="float64")
    clf.fit(X_DIGITS_BINARY, Y_DIGITS_BINARY)
    model = nnx.MLP([64, 6, 1], seed=3)
    model.fit(X_DIGITS_BINARY.T, Y_DIGITS_BINARY, epochs=20, lr=0.01, seed=3, dtype="float64")
    np.testing.assert_array_equal(clf.coefs_[0], model.parameters()[0][0].T)


# ------------------------------------------------------- the regression core
@pytest.mark.parametrize("hidden", ["tanh", "relu", "sigmoid"])
def test_regression_gradients_match_finite_differences(hidden):
    """nnx's linear output + mse (several targets) against central differences in float64."""
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((4, 9)), rng.standard_normal((3, 9))
    act = nnx.layers.ACTIVATION_BY_KIND[hidden]
    model = nnx.Sequential(nnx.Linear(4, 5, seed=1), act(), nnx.Linear(5, 3, seed=2), loss="mse")
    loss, grads = model.gradients(X, Y, backend="numpy")
    params = model.parameters()
    assert np.isclose(loss, 0.5 * ((model.predict(X, backend="numpy", dtype="float64") - Y) ** 2).sum() / 9)
    h = 1e-6
    for i, pair in enumerate(params):
        for j in range(2):
            numeric = np.zeros_like(pair[j])
            for idx in np.ndindex(pair[j].shape):
                values = []
                for step in (h, -h):
                    trial = [(W.copy(), b.copy()) for W, b in params]
                    trial[i][j][idx] += step
                    model.set_parameters(trial)
                    values.append(model.evaluate(X, Y, backend="numpy", dtype="float64")["loss"])
                numeric[idx] = (values[0] - values[1]) / (2 * h)
            np.testing.assert_allclose(grads[i][j], numeric, rtol=1e-6, atol=1e-9)
        model.set_parameters(params)


@pytest.mark.parametrize("backend", ["numba", "cupy"])
@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_regression_on_every_backend_matches_numpy(backend, solver):
    """A regression fit (two targets, mini-batches for the step solver) on another
    backend gives NumPy's numbers (float64, rtol 1e-7)."""
    require_backend(backend)
    Y = np.column_stack([Y_REG, Y_REG**2])
    kw = dict(hidden_layer_sizes=(7,), max_iter=15, random_state=2, dtype="float64", solver=solver)
    if solver == "sgd":
        kw.update(batch_size=50, momentum=0.5, learning_rate_init=0.02)
    ref = NNXRegressor(backend="numpy", **kw).fit(X_REG, Y)
    other = NNXRegressor(backend=backend, **kw).fit(X_REG, Y)
    np.testing.assert_allclose(other.predict(X_REG), ref.predict(X_REG), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(other.loss_curve_, ref.loss_curve_, rtol=1e-7)


def test_regression_model_in_the_core():
    """nnx.Sequential(..., Linear(n, K), loss="mse") is regression: real targets (K, m),
    predict gives outputs, evaluate only the loss, predict_proba refused; save and load."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 40))
    Y = np.vstack([X[0] - 2 * X[1], 3 * X[2] + 1])
    model = nnx.Sequential(nnx.Linear(3, 2, init="zeros", seed=0), loss="mse")
    model.fit(X, Y, epochs=300, lr=0.3, dtype="float64")
    np.testing.assert_allclose(model.predict(X), Y, atol=1e-6)
    assert set(model.evaluate(X, Y)) == {"loss"}
    with pytest.raises(TypeError, match="no probabilities"):
        model.predict_proba(X)
    with pytest.raises(ValueError, match=r"shape \(2, m\)"):
        model.fit(X, Y[0], epochs=1)
    with pytest.raises(ValueError, match="NaN or inf"):
        model.fit(X, np.full((2, 40), np.nan), epochs=1)


def test_lbfgs_loss_includes_the_l2_term():
    """loss_ (and loss_curve_, best_loss_) is the objective, L2 term included, as
    documented and as scikit-learn's (the step optimizers' loss holds it): also for
    L-BFGS, whose History keeps the term apart (``loss`` the data loss, ``objective``
    both); with sample_weight too."""
    X, y = X_REG[:80, :5], Y_REG[:80]
    w = np.random.default_rng(0).uniform(0, 3, len(y))
    kw = dict(hidden_layer_sizes=(), solver="lbfgs", alpha=3.0, max_iter=40, dtype="float64")
    reg = NNXRegressor(**kw, backend="numpy").fit(X, y, sample_weight=w)
    data = float((w * (reg.predict(X) - y) ** 2).sum() / (2 * w.sum()))
    penalty = 3.0 * float((reg.coefs_[0] ** 2).sum()) / (2 * w.sum())
    assert reg.loss_ == pytest.approx(data + penalty, rel=1e-9)  # at the final parameters
    assert len(reg.loss_curve_) == reg.n_iter_ and reg.best_loss_ == min(reg.loss_curve_)
    assert reg.loss_curve_ == pytest.approx(reg.model_.history.objective, rel=0)


def test_sample_weights_whose_sum_overflows_are_weights_not_zeros():
    """Weights near the float64 limit sum to inf: they are still the same weights (here all
    equal: the unweighted fit), never scaled to zero and refused as "zero for every
    example"."""
    X, y = X_REG[:60], Y_REG[:60]
    kw = dict(
        hidden_layer_sizes=(6,), solver="lbfgs", max_iter=15, alpha=0.0, random_state=0, dtype="float64"
    )
    base = NNXRegressor(**kw).fit(X, y).predict(X)
    huge = NNXRegressor(**kw).fit(X, y, sample_weight=np.full(len(y), 1e308)).predict(X)
    np.testing.assert_allclose(huge, base, rtol=1e-12)
