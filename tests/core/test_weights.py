"""Class weights and sample weights in BCE and cross-entropy, on every backend.

nnx's weighted loss is the mean over the m examples of w_i * loss_i. Checked against a
plain float64 reference (always), PyTorch's weight= / pos_weight= forms (when installed)
and scikit-learn's "balanced" weights; an imbalanced task shows what they buy.
"""

import numpy as np
import pytest
from nnx_testing import tolerance
from reference import ReferenceOptimizer, mlp_train

import nnx
from nnx.chunked import fit_chunked_locally


def _ref_bce(Z, Y, w):
    Z = Z.astype(np.float64)
    P = 1 / (1 + np.exp(-Z))
    loss = np.mean(-w * (Y * np.log(P) + (1 - Y) * np.log(1 - P)))
    return loss, w * (P - Y) / Z.shape[1]


def _ref_xent(Z, y, w):
    Z = Z.astype(np.float64)
    m = Z.shape[1]
    S = Z - Z.max(axis=0)
    P = np.exp(S) / np.exp(S).sum(axis=0)
    onehot = np.zeros_like(P)
    onehot[y, np.arange(m)] = 1
    return np.mean(-w * np.log(P[y, np.arange(m)])), w * (P - onehot) / m


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weighted_bce_matches_the_reference(backend, dtype, rng):
    ops = nnx.get_backend(backend)
    Z = (rng.standard_normal((1, 41)) * 5).astype(dtype)
    Y = (rng.random((1, 41)) > 0.4).astype(dtype)
    w = rng.uniform(0, 3, (1, 41)).astype(dtype)
    loss, correct, dZ = ops.bce_from_logits_weighted(ops.xp.asarray(Z), ops.xp.asarray(Y), ops.xp.asarray(w))
    ref_loss, ref_dZ = _ref_bce(Z, Y, w.astype(np.float64))
    tol = tolerance(dtype)
    assert ops.scalar(loss) == pytest.approx(ref_loss, rel=tol["rtol"])
    assert ops.scalar(correct) == int(((Z > 0) == (Y > 0.5)).sum())
    np.testing.assert_allclose(ops.to_host(dZ), ref_dZ, **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_weighted_cross_entropy_matches_the_reference(backend, dtype, order, rng):
    ops = nnx.get_backend(backend)
    Z = (rng.standard_normal((4, 29)) * 4).astype(dtype)
    y = rng.integers(0, 4, 29)
    w = rng.uniform(0, 2, (1, 29)).astype(dtype)
    loss, _, dZ = ops.softmax_cross_entropy_weighted(
        ops.xp.asarray(np.array(Z, order=order)), ops.prepare_labels(y, dtype), ops.xp.asarray(w)
    )
    ref_loss, ref_dZ = _ref_xent(Z, y, w[0].astype(np.float64))
    tol = tolerance(dtype)
    assert ops.scalar(loss) == pytest.approx(ref_loss, rel=tol["rtol"])
    np.testing.assert_allclose(ops.to_host(dZ), ref_dZ, **tol)


def _binary(seed=0, n=5, m=60, positive=0.2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    Y = (X[0] + 0.5 * rng.standard_normal(m) > np.quantile(X[0], 1 - positive)).astype(float).reshape(1, -1)
    return np.asfortranarray(X), Y


def _initial(sizes, seed):
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((sizes[i + 1], sizes[i])) * 0.5, rng.standard_normal((sizes[i + 1], 1)) * 0.1)
        for i in range(len(sizes) - 1)
    ]


def test_balanced_weights_are_scikit_learns():
    utils = pytest.importorskip("sklearn.utils", reason="needs scikit-learn")
    y = np.array([0, 0, 0, 1, 2, 2, 0, 1, 0, 0])
    want = utils.class_weight.compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(nnx.validation.class_weights("balanced", y, 3), want, rtol=1e-15)


@pytest.mark.parametrize("class_weight", ["balanced", {1: 3.0}])
@pytest.mark.parametrize("batch_size", [None, 16])
def test_binary_fit_with_class_and_sample_weights_matches_the_reference(backend, class_weight, batch_size):
    X, Y = _binary()
    sample_weight = np.random.default_rng(1).uniform(0.5, 1.5, X.shape[1])
    labels = Y[0].astype(int)
    per_class = nnx.validation.class_weights(class_weight, labels, 2)
    params = _initial([5, 4, 1], seed=2)
    model = nnx.MLP([5, 4, 1])
    model.set_parameters(params)
    history = model.fit(
        X,
        Y,
        epochs=60,
        optimizer=nnx.Adam(lr=0.03),
        class_weight=class_weight,
        sample_weight=sample_weight,
        batch_size=batch_size,
        seed=3,
        backend=backend,
        dtype="float64",
    )
    want, losses = mlp_train(
        X,
        Y,
        params,
        ["relu"],
        60,
        ReferenceOptimizer("adam"),
        0.03,
        weights=per_class[labels] * sample_weight,
        seed=3,
        batch_size=batch_size,
    )
    rtol = 1e-9 if backend == "numpy" else 1e-7
    for (W, b), (We, be) in zip(model.parameters(), want):
        np.testing.assert_allclose(W, We, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(b, be, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(history.loss, losses, rtol=1e-9)
    assert history.class_weight == list(per_class)


def test_softmax_fit_with_class_weights_matches_the_reference(backend):
    rng = np.random.default_rng(4)
    X = np.asfortranarray(rng.standard_normal((5, 45)))
    y = np.minimum((X[0] > 0.8) * 2 + (X[1] > 0), 2)
    params = _initial([5, 3], seed=5)
    model = nnx.SoftmaxRegression(5, 3)
    model.set_parameters(params)
    model.fit(X, y, epochs=50, lr=0.5, class_weight={0: 0.5, 2: 4.0}, backend=backend, dtype="float64")
    weights = np.array([0.5, 1.0, 4.0])[y]
    W, b = params[0]
    for _ in range(50):
        _, dZ = _ref_xent(W @ X + b, y, weights)
        W, b = W - 0.5 * dZ @ X.T, b - 0.5 * dZ.sum(axis=1, keepdims=True)
    rtol = 1e-9 if backend == "numpy" else 1e-7
    np.testing.assert_allclose(model.parameters()[0][0], W, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(model.parameters()[0][1], b, rtol=rtol, atol=1e-12)


def test_weighted_losses_match_pytorch_weight_and_pos_weight(backend):
    torch = pytest.importorskip("torch", reason="the PyTorch comparison needs torch (optional)")
    ops = nnx.get_backend(backend)
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((1, 30)) * 3
    Y = (rng.random((1, 30)) > 0.7).astype(float)
    w0, w1 = 0.6, 2.5  # class weights: PyTorch's weight=w0, pos_weight=w1/w0
    weights = np.where(Y > 0.5, w1, w0)
    loss, _, dZ = ops.bce_from_logits_weighted(*(ops.asarray(a, "float64") for a in (Z, Y, weights)))
    z = torch.tensor(Z[0], requires_grad=True)
    t = torch.nn.BCEWithLogitsLoss(
        weight=torch.tensor(w0, dtype=torch.float64), pos_weight=torch.tensor(w1 / w0, dtype=torch.float64)
    )
    expected = t(z, torch.tensor(Y[0]))
    expected.backward()
    assert ops.scalar(loss) == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(ops.to_host(dZ)[0], z.grad.numpy(), rtol=1e-10, atol=1e-15)
    # per-example weights are BCEWithLogitsLoss(weight=w)
    z.grad = None
    expected = torch.nn.BCEWithLogitsLoss(weight=torch.tensor(weights[0]))(z, torch.tensor(Y[0]))
    assert ops.scalar(loss) == pytest.approx(expected.item(), rel=1e-12)
    # class-weighted cross-entropy: PyTorch's weight= with reduction "sum", divided by m
    Zk = rng.standard_normal((4, 30)) * 3
    y = rng.integers(0, 4, 30)
    cw = np.array([0.5, 1.0, 3.0, 2.0])
    loss, _, dZ = ops.softmax_cross_entropy_weighted(
        ops.xp.asarray(np.asfortranarray(Zk)), ops.prepare_labels(y, "float64"), ops.asarray(cw[y], "float64")
    )
    zk = torch.tensor(Zk.T.copy(), requires_grad=True)
    expected = (
        torch.nn.functional.cross_entropy(zk, torch.tensor(y), weight=torch.tensor(cw), reduction="sum") / 30
    )
    expected.backward()
    assert ops.scalar(loss) == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(ops.to_host(dZ), zk.grad.numpy().T, rtol=1e-10, atol=1e-15)


def test_class_weights_lift_balanced_accuracy_on_imbalanced_digits():
    datasets = pytest.importorskip("sklearn.datasets", reason="needs scikit-learn")
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split

    X, y = datasets.load_digits(return_X_y=True)
    y = (y == 8).astype(int)  # 8 against the rest: about 1 positive in 10
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    scores = {}
    for cw in (None, "balanced"):
        model = nnx.LogisticRegression(64)
        model.fit(Xtr.T, ytr, epochs=3000, optimizer=nnx.Adam(lr=0.01), class_weight=cw, dtype="float64")
        scores[cw] = balanced_accuracy_score(yte, model.predict(Xte.T)[0])
    assert scores["balanced"] > 0.9 and scores["balanced"] > scores[None] + 0.04, scores


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"class_weight": "auto"}, ValueError, 'class_weight must be "balanced"'),
        ({"class_weight": [1, 2]}, TypeError, 'class_weight must be "balanced", a dict'),
        ({"class_weight": {2: 1.0}}, ValueError, r"class_weight keys must be class labels 0..1"),
        ({"class_weight": {True: 1.0}}, ValueError, "class_weight keys"),
        ({"class_weight": {0: -1.0}}, ValueError, r"class_weight\[0\] must be a finite number >= 0"),
        ({"class_weight": {0: 0, 1: 0}}, ValueError, "every class weight 0"),
        ({"sample_weight": np.ones(59)}, ValueError, r"sample_weight must have shape \(60,\)"),
        ({"sample_weight": np.full(60, np.nan)}, ValueError, "sample_weight must be finite and >= 0"),
        ({"sample_weight": np.zeros(60)}, ValueError, "zero for every example"),
        ({"sample_weight": np.array(["a"] * 60)}, TypeError, "sample_weight must hold numbers"),
    ],
)
def test_bad_weights_are_named(kwargs, error, message):
    X, Y = _binary()
    with pytest.raises(error, match=message):
        nnx.LogisticRegression(5).fit(X, Y, epochs=1, **kwargs)


def test_balanced_needs_every_class():
    X, Y = _binary()
    with pytest.raises(ValueError, match=r'"balanced" needs every class .* classes 2 are absent'):
        nnx.SoftmaxRegression(5, 3).fit(X, Y[0].astype(int), epochs=1, class_weight="balanced")
    with pytest.raises(ValueError, match="classes 2, 3, 4, 5, 6 and 7 more are absent"):
        nnx.SoftmaxRegression(5, 14).fit(X, Y[0].astype(int), epochs=1, class_weight="balanced")


# ------------------------------------------------------------- weighted squared error
def _regression(seed=0, n=4, k=2, m=30):
    rng = np.random.default_rng(seed)
    X = np.asfortranarray(rng.standard_normal((n, m)))
    Y = np.vstack([X[0] - 2 * X[1] * X[2], np.sin(X[3])])[:k] + 0.1 * rng.standard_normal((k, m))
    return X, Y


def _regressor(n=4, k=2):
    return nnx.Sequential(nnx.Linear(n, 5, seed=1), nnx.Tanh(), nnx.Linear(5, k, seed=2), loss="mse")


def _distance(a, b):
    return max(np.abs(p - q).max() for pa, pb in zip(a.parameters(), b.parameters()) for p, q in zip(pa, pb))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weighted_mse_matches_the_reference(backend, dtype, rng):
    ops = nnx.get_backend(backend)
    A = rng.standard_normal((3, 37)).astype(dtype)
    Y = rng.standard_normal((3, 37)).astype(dtype)
    w = rng.uniform(0, 3, (1, 37)).astype(dtype)
    loss, _, dA = ops.mse_weighted(ops.xp.asarray(A), ops.xp.asarray(Y), ops.xp.asarray(w))
    d, w64 = A.astype(np.float64) - Y, w.astype(np.float64)
    tol = tolerance(dtype)
    assert ops.scalar(loss) == pytest.approx(0.5 * (w64 * d * d).sum() / 37, rel=tol["rtol"])
    np.testing.assert_allclose(ops.to_host(dA), w64 * d / 37, **tol)


@pytest.mark.parametrize("output", ["linear", "sigmoid"])
def test_weighted_mse_gradients_match_finite_differences(output):
    """float64: the weighted loss's analytic gradients against central differences of
    that loss, for regression and for a sigmoid output trained on squared error."""
    X, Y = _regression(k=1 if output == "sigmoid" else 2)
    if output == "sigmoid":
        Y = (Y > 0).astype(np.float64)
        model = nnx.Sequential(
            nnx.Linear(4, 5, seed=1), nnx.Tanh(), nnx.Linear(5, 1, seed=2), nnx.Sigmoid(), loss="mse"
        )
    else:
        model = _regressor()
    w = np.random.default_rng(5).uniform(0, 3, (1, X.shape[1]))
    ops = nnx.get_backend("numpy")
    params = model.parameters()

    def loss_and_grads(params):
        net = nnx.network.DeviceNetwork(ops, list(model.blocks), "mse", params, "float64")
        value, _, grads = net.loss_and_grads(net.prepare(X, False), ops.prepare_labels(Y, "float64"), w)
        return float(value), [(ops.to_host(dW).copy(), ops.to_host(db).copy()) for dW, db in grads]

    _, analytic = loss_and_grads(params)
    eps = 1e-6
    for i, pair in enumerate(params):
        for j, arr in enumerate(pair):
            numeric = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + eps
                up = loss_and_grads(params)[0]
                arr[idx] = old - eps
                down = loss_and_grads(params)[0]
                arr[idx] = old
                numeric[idx] = (up - down) / (2 * eps)
            np.testing.assert_allclose(analytic[i][j], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_integer_weights_are_repeated_examples(optimizer):
    """A weight of k counts an example k times: the weighted loss over m examples times
    m / sum(w) is the loss over the data with each example repeated, so the fits agree
    to rounding: gradient descent at a rate times sum(w) / m; L-BFGS (whose path depends
    on the objective's scale) with the weights times m / sum(w), the same objective as the
    repeated data's with l2 times sum(w) / m."""
    X, Y = _regression()
    w = np.random.default_rng(3).integers(0, 4, X.shape[1])
    w[0] = 2
    repeats = w.sum()
    Xr, Yr = np.repeat(X, w, axis=1), np.repeat(Y, w, axis=1)
    scale = repeats / X.shape[1]
    weighted, repeated = _regressor(), _regressor()
    if optimizer == "sgd":
        weighted.fit(X, Y, epochs=25, lr=0.1, sample_weight=w, backend="numpy", dtype="float64")
        repeated.fit(Xr, Yr, epochs=25, lr=0.1 * scale, backend="numpy", dtype="float64")
        np.testing.assert_allclose(weighted.history.loss, np.array(repeated.history.loss) * scale, rtol=1e-12)
        assert _distance(weighted, repeated) < 1e-13
    else:
        kw = dict(epochs=15, optimizer=nnx.LBFGS(), backend="numpy", dtype="float64")
        h = weighted.fit(X, Y, sample_weight=w / scale, l2=0.1, **kw)
        hr = repeated.fit(Xr, Yr, l2=0.1 * scale, **kw)
        assert h.epochs == hr.epochs == 15
        assert _distance(weighted, repeated) < 1e-9


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_weighted_regression_on_other_backends_matches_numpy(other_backend, optimizer):
    X, Y = _regression()
    w = np.random.default_rng(4).uniform(0, 2, X.shape[1])
    fits = []
    for be in ("numpy", other_backend):
        model = _regressor()
        opt = nnx.Adam(lr=0.05) if optimizer == "adam" else nnx.LBFGS()
        batch = {"batch_size": 8, "seed": 0} if optimizer == "adam" else {}
        model.fit(
            X, Y, epochs=20, optimizer=opt, sample_weight=w, l2=0.05, backend=be, dtype="float64", **batch
        )
        fits.append(model)
    for (W, b), (W2, b2) in zip(fits[0].parameters(), fits[1].parameters()):
        np.testing.assert_allclose(W2, W, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(b2, b, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(fits[1].history.loss, fits[0].history.loss, rtol=1e-7)


def test_weights_change_a_regression_and_zero_weights_drop_examples():
    """Weights are not ignored on any path: a zero weight is the example left out (every
    solver, full batch and chunked); weights of one are no weights."""
    X, Y = _regression()
    w = np.ones(X.shape[1])
    w[::3] = 0.0
    keep = w > 0
    for kw in ({"lr": 0.1}, {"optimizer": nnx.LBFGS()}):
        plain, ones, weighted, dropped = _regressor(), _regressor(), _regressor(), _regressor()
        common = dict(epochs=10, backend="numpy", dtype="float64", **kw)
        plain.fit(X, Y, **common)
        ones.fit(X, Y, sample_weight=np.ones(X.shape[1]), **common)
        assert _distance(plain, ones) == 0.0
        weighted.fit(X, Y, sample_weight=w * keep.size / keep.sum(), **common)
        dropped.fit(X[:, keep], Y[:, keep], **common)
        assert _distance(weighted, dropped) < 1e-10 and _distance(weighted, plain) > 1e-3
        chunked = _regressor()
        fit_chunked_locally(
            chunked, X, Y, chunks=[7, 13, 10], sample_weight=w * keep.size / keep.sum(), **common
        )
        assert _distance(chunked, weighted) < 1e-12


def test_mse_takes_class_weights_only_with_classes():
    """A sigmoid output on squared error has classes, so class weights apply (each
    example's weight its class's, times its sample weight); a regression has none."""
    X, Y = _binary()
    sample_weight = np.random.default_rng(1).uniform(0.5, 1.5, X.shape[1])
    labels = Y[0].astype(int)
    per_class = nnx.validation.class_weights("balanced", labels, 2)
    model = nnx.Sequential(nnx.Linear(5, 1, seed=0), nnx.Sigmoid(), loss="mse")
    same = nnx.Sequential(nnx.Linear(5, 1, seed=0), nnx.Sigmoid(), loss="mse")
    common = dict(epochs=5, lr=0.5, backend="numpy", dtype="float64")
    history = model.fit(X, Y, class_weight="balanced", sample_weight=sample_weight, **common)
    same.fit(X, Y, sample_weight=per_class[labels] * sample_weight, **common)
    assert _distance(model, same) == 0.0 and history.class_weight == list(per_class)
    Xr, Yr = _regression()
    with pytest.raises(ValueError, match="class_weight needs classes; a regression model"):
        _regressor().fit(Xr, Yr, epochs=1, class_weight="balanced")
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(30,\)"):
        _regressor().fit(Xr, Yr, epochs=1, sample_weight=np.ones(60))


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_weighted_logistic_mse_skips_the_fused_passes(backend, solver):
    """Logistic regression on squared error has single-pass fused ops (logreg_epoch_,
    logreg_loss_grad) that take no weights: with weights every backend takes the network's
    passes instead, so the weights are never dropped (each backend as NumPy, and unlike
    the unweighted fit)."""
    X, Y = _binary()
    w = np.random.default_rng(6).uniform(0, 3, X.shape[1])
    kw = {"lr": 0.5} if solver == "sgd" else {"optimizer": nnx.LBFGS()}
    fits = {}
    for be, weights in ((backend, w), ("numpy", w), ("numpy", None)):
        model = nnx.Sequential(nnx.Linear(5, 1, seed=0), nnx.Sigmoid(), loss="mse")
        model.fit(X, Y, epochs=8, sample_weight=weights, backend=be, dtype="float64", **kw)
        fits[be, weights is None] = model
    ours, numpy, unweighted = fits[backend, False], fits["numpy", False], fits["numpy", True]
    for (W, b), (We, be_) in zip(ours.parameters(), numpy.parameters()):
        np.testing.assert_allclose(W, We, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(b, be_, rtol=1e-7, atol=1e-12)
    assert _distance(numpy, unweighted) > 1e-4
