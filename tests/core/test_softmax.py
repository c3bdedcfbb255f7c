"""Multi-class: softmax + cross-entropy from the logits, on every backend.

Checked against central differences (float64), an independent plain-NumPy reference step
for step, PyTorch where it is installed, the NumPy backend (every other backend), and
scikit-learn's multinomial optimum.
"""

import numpy as np
import pytest
from nnx_testing import numeric_gradients, tolerance

import nnx

ACT = {"sigmoid": nnx.Sigmoid, "relu": nnx.ReLU, "tanh": nnx.Tanh}


def _blobs(seed=0, n=4, m=240, K=3, spread=1.5):
    """Overlapping Gaussian classes: the unpenalised multinomial optimum is finite."""
    rng = np.random.default_rng(seed)
    y = np.arange(m) % K
    centres = rng.standard_normal((K, n)) * spread
    X = (centres[y] + rng.standard_normal((m, n))).T
    X = (X - X.mean(axis=1, keepdims=True)) / X.std(axis=1, keepdims=True)
    return np.asfortranarray(X), y


# ------------------------------------------------------------------ the op itself
def _reference_xent(Z, y):
    """Plain float64 softmax cross-entropy, written independently of nnx."""
    Z = Z.astype(np.float64)
    m = Z.shape[1]
    shifted = Z - Z.max(axis=0)
    logsum = np.log(np.exp(shifted).sum(axis=0))
    loss = np.mean(logsum - shifted[y, np.arange(m)])
    P = np.exp(shifted - logsum)
    onehot = np.zeros_like(P)
    onehot[y, np.arange(m)] = 1
    return loss, int((Z.argmax(axis=0) == y).sum()), (P - onehot) / m


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_softmax_cross_entropy_matches_reference(backend, dtype, order, rng):
    ops = nnx.get_backend(backend)
    Z = (rng.standard_normal((5, 37)) * 6).astype(dtype)
    y = rng.integers(0, 5, 37)
    loss, correct, dZ = ops.softmax_cross_entropy(
        ops.xp.asarray(np.array(Z, order=order)), ops.prepare_labels(y, dtype)
    )
    ref_loss, ref_correct, ref_dZ = _reference_xent(Z, y)
    tol = tolerance(dtype)
    assert ops.scalar(loss) == pytest.approx(ref_loss, rel=tol["rtol"])
    assert ops.scalar(correct) == ref_correct
    np.testing.assert_allclose(ops.to_host(dZ), ref_dZ, **tol)
    assert ops.to_host(dZ).dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_columns_sum_to_one_even_for_huge_logits(backend, dtype):
    ops = nnx.get_backend(backend)
    top = np.finfo(dtype).max
    Z = np.array([[top, 0.0, -top, 1.0], [0.0, top, top, 1.0], [-top, -top, 0.0, 1.0]], dtype=dtype)
    P = ops.to_host(ops.softmax_(ops.xp.asarray(np.asfortranarray(Z))))
    assert np.all(np.isfinite(P))
    np.testing.assert_allclose(P.sum(axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(P[:, 3], 1 / 3, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_cross_entropy_finite_for_any_finite_logits(backend, dtype):
    hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    ops = nnx.get_backend(backend)
    # float32 logits of any size; float64 logits whose spread is itself finite
    bound = float(np.finfo(dtype).max) / (2 if dtype == "float64" else 1)
    elems = st.one_of(st.floats(-bound, bound, width=np.finfo(dtype).bits), st.floats(-50, 50))

    @settings(max_examples=120, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
    @given(arrays(dtype, st.tuples(st.integers(2, 6), st.integers(1, 20)), elements=elems), st.data())
    def check(Z, data):
        K, m = Z.shape
        y = np.array(data.draw(st.lists(st.integers(0, K - 1), min_size=m, max_size=m)))
        loss, correct, dZ = ops.softmax_cross_entropy(
            ops.xp.asarray(np.asfortranarray(Z)), ops.prepare_labels(y, dtype)
        )
        loss, dZ = ops.scalar(loss), ops.to_host(dZ)
        assert np.isfinite(loss) and loss >= -1e-12
        assert np.all(np.isfinite(dZ)) and np.all(np.abs(dZ) <= (1 + 1e-6) / m)
        np.testing.assert_allclose(dZ.sum(axis=0), 0, atol=4 * K * np.finfo(dtype).eps / m)
        assert 0 <= ops.scalar(correct) <= m

    check()


# ------------------------------------------------------------- gradient checks
@pytest.mark.parametrize(
    "hidden, depth", [(None, 0), ("sigmoid", 1), ("relu", 1), ("tanh", 1), ("relu", 2), ("tanh", 2)]
)
def test_gradients_of_softmax_stacks_match_finite_differences(hidden, depth, rng):
    sizes = [5] + [4] * depth + [3]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nnx.Linear(sizes[i], sizes[i + 1], seed=20 + i))
        layers.append(nnx.Softmax() if i == len(sizes) - 2 else ACT[hidden]())
    model = nnx.Sequential(*layers, loss="cross_entropy")
    model.set_parameters([(W, b + rng.uniform(0.05, 0.2, size=b.shape)) for W, b in model.parameters()])
    X = rng.standard_normal((5, 9))
    y = rng.integers(0, 3, 9)
    _, analytic = model.gradients(X, y, backend="numpy", dtype="float64")
    for (dW, db), (nW, nb) in zip(analytic, numeric_gradients(model, X, y)):
        np.testing.assert_allclose(dW, nW, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(db, nb, rtol=1e-5, atol=1e-9)
    assert np.abs(analytic[0][0]).max() > 1e-6


# --------------------------------------------------------------- step for step
def _reference_train(X, y, params, acts, epochs, lr):
    """Full-batch gradient descent on softmax cross-entropy, plain float64 NumPy."""
    params = [(W.copy(), b.copy()) for W, b in params]
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}
    df = {"relu": lambda a: (a > 0).astype(float), "tanh": lambda a: 1 - a * a}
    for _ in range(epochs):
        A = [X]
        for (W, b), act in zip(params[:-1], acts):
            A.append(f[act](W @ A[-1] + b))
        _, _, dZ = _reference_xent(params[-1][0] @ A[-1] + params[-1][1], y)
        grads = []
        for i in range(len(params) - 1, -1, -1):
            W, _ = params[i]
            grads.append((dZ @ A[i].T, dZ.sum(axis=1, keepdims=True)))
            if i > 0:
                dZ = (W.T @ dZ) * df[acts[i - 1]](A[i])
        grads.reverse()
        params = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads)]
    return params


def _initial(rng, sizes):
    return [
        (rng.standard_normal((sizes[i + 1], sizes[i])) * 0.5, rng.standard_normal((sizes[i + 1], 1)) * 0.1)
        for i in range(len(sizes) - 1)
    ]


def _nnx_model(sizes, acts):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nnx.Linear(sizes[i], sizes[i + 1], seed=0))
        layers.append(nnx.Softmax() if i == len(sizes) - 2 else ACT[acts[i]]())
    return nnx.Sequential(*layers, loss="cross_entropy")


@pytest.mark.parametrize(
    "sizes, acts", [([12, 4], []), ([12, 6, 4], ["relu"]), ([12, 6, 5, 4], ["tanh", "relu"])]
)
def test_100_steps_match_an_independent_reference(backend, rng, sizes, acts):
    X, y = _blobs(seed=3, n=12, m=60, K=4)
    params = _initial(rng, sizes)
    expected = _reference_train(X, y, params, acts, epochs=100, lr=0.5)
    model = _nnx_model(sizes, acts)
    model.set_parameters(params)
    model.fit(X, y, epochs=100, lr=0.5, backend=backend, dtype="float64")
    rtol = 1e-9 if backend == "numpy" else 1e-7
    for (W, b), (We, be) in zip(model.parameters(), expected):
        np.testing.assert_allclose(W, We, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(b, be, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("sizes, acts", [([12, 4], []), ([12, 6, 4], ["relu"])])
def test_100_steps_match_pytorch(backend, rng, sizes, acts):
    torch = pytest.importorskip("torch", reason="the PyTorch comparison needs torch (optional)")
    X, y = _blobs(seed=4, n=12, m=60, K=4)
    params = _initial(rng, sizes)
    tparams = [
        (torch.tensor(W, requires_grad=True), torch.tensor(b[:, 0], requires_grad=True)) for W, b in params
    ]
    opt = torch.optim.SGD([p for pair in tparams for p in pair], lr=0.5)
    Xt, yt = torch.tensor(X.T.copy()), torch.tensor(y)
    for _ in range(100):
        opt.zero_grad()
        h = Xt
        for i, (W, b) in enumerate(tparams):
            h = h @ W.T + b
            if i < len(tparams) - 1:
                h = torch.relu(h)
        torch.nn.functional.cross_entropy(h, yt).backward()
        opt.step()
    model = _nnx_model(sizes, acts)
    model.set_parameters(params)
    model.fit(X, y, epochs=100, lr=0.5, backend=backend, dtype="float64")
    rtol = 1e-9 if backend == "numpy" else 1e-7
    for (W, b), (Wt, bt) in zip(model.parameters(), tparams):
        np.testing.assert_allclose(W, Wt.detach().numpy(), rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(b[:, 0], bt.detach().numpy(), rtol=rtol, atol=1e-12)


def test_softmax_regression_reaches_sklearn_multinomial_optimum():
    linear_model = pytest.importorskip("sklearn.linear_model", reason="needs scikit-learn")
    X, y = _blobs(seed=5, n=4, m=300, K=3, spread=1.0)
    sk = linear_model.LogisticRegression(penalty=None, tol=1e-12, max_iter=10000).fit(X.T, y)
    model = nnx.SoftmaxRegression(4, 3)
    model.fit(X, y, epochs=6000, lr=2.0, backend="numpy", dtype="float64")
    ((W, b),) = model.parameters()
    # softmax is unchanged by adding one vector to every class: compare centred parameters
    centre = lambda A: A - A.mean(axis=0, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(centre(W), centre(sk.coef_), atol=1e-6)
    np.testing.assert_allclose(centre(b[:, 0]), centre(sk.intercept_), atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(X).T, sk.predict_proba(X.T), atol=1e-7)


# ------------------------------------------------------- fused epoch vs generic
@pytest.mark.parametrize("K", [3, 10, 20])  # Numba: tiled kernel (odd and even K), BLAS chunks
@pytest.mark.parametrize("x_dtype", ["float32", "float64", "uint8"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_softmax_epoch_matches_numpy(other_backend, x_dtype, dtype, K, rng, monkeypatch):
    n, m = 300, 257  # blocks of 128 and 129 examples: whole tiles of 8 and single examples
    if other_backend == "numba":  # chunks of 40 examples: several, and a ragged last one
        monkeypatch.setattr("nnx.backends.numba_backend._CHUNK_BYTES", n * 40 * np.dtype(dtype).itemsize)
    if x_dtype == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
    else:
        X = np.asfortranarray(rng.standard_normal((n, m)).astype(x_dtype))
    y = rng.integers(0, K, m)
    W0 = rng.standard_normal((K, n)) * 0.01
    b0 = rng.standard_normal((K, 1)) * 0.1
    results = []
    for name in ("numpy", other_backend):
        ops = nnx.get_backend(name)
        W, b = ops.asarray(W0, dtype), ops.asarray(b0, dtype)
        Xd = ops.prepare_fused_input(X, dtype, K)
        for _ in range(3):
            loss, correct = ops.softmax_epoch_(W, b, Xd, ops.prepare_labels(y, dtype), 0.3)
        results.append((ops.scalar(loss), ops.scalar(correct), ops.to_host(W), ops.to_host(b)))
    (l0, c0, W0n, b0n), (l1, c1, W1, b1) = results
    tol = tolerance(dtype)
    assert l1 == pytest.approx(l0, rel=tol["rtol"]) and c1 == c0
    np.testing.assert_allclose(W1, W0n, **tol)
    np.testing.assert_allclose(b1, b0n, **tol)


@pytest.mark.parametrize("K", [3, 20])  # Numba: the tiled kernel, the BLAS chunks
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_softmax_on_pixels_does_not_overflow_where_numpy_does_not(other_backend, dtype, K, rng):
    """A weight within 255x of the largest float: W * pixel overflows, W * (pixel / 255)
    (what the NumPy backend computes) does not. The fused epoch and gradient on raw pixels
    must give NumPy's finite results, not inf or NaN."""
    n, m = 64, 30
    X = np.asfortranarray(rng.integers(1, 256, (n, m), dtype=np.uint8))
    y = rng.integers(0, K, m).reshape(1, -1)
    W0 = (rng.standard_normal((K, n)) * 0.01).astype(dtype)
    W0[0, 5] = np.finfo(dtype).max / 200
    results = []
    for name in ("numpy", other_backend):
        ops = nnx.get_backend(name)
        W, b = ops.asarray(W0, dtype), ops.zeros((K, 1), dtype)
        Xd, Yd = ops.prepare_fused_input(X, dtype, K), ops.prepare_labels(y, dtype)
        with np.errstate(all="ignore"):
            value, _, dW, _ = ops.softmax_loss_grad(W, b, Xd, Yd)
            ops.softmax_epoch_(W, b, Xd, Yd, 1e-40)
        results.append((ops.scalar(value), ops.to_host(dW), ops.to_host(W)))
    (v0, dW0, W_0), (v1, dW1, W_1) = results
    assert np.isfinite(v0) and np.all(np.isfinite(dW0)) and np.all(np.isfinite(W_0))
    assert v1 == pytest.approx(v0, rel=tolerance(dtype)["rtol"])
    np.testing.assert_allclose(dW1, dW0, rtol=tolerance(dtype)["rtol"], atol=tolerance(dtype)["rtol"] * 1e-3)
    np.testing.assert_allclose(W_1, W_0, **tolerance(dtype))


SPECIALS = ["nan_in_x", "inf_in_x", "nan_in_w", "inf_in_w", "inf_bias", "logit_past_max"]


@pytest.mark.parametrize("case", SPECIALS)
@pytest.mark.parametrize("x_dtype", ["float32", "uint8"])
def test_fused_softmax_propagates_nan_and_inf_as_numpy(other_backend, case, x_dtype, rng):
    """NaN and infinities in X, W or b give the fused epoch NumPy's NaN pattern and finite
    values, and the same loss (NaN or not) and correct count."""
    if x_dtype == "uint8" and case.endswith("_in_x"):
        pytest.skip("pixels hold no NaN or infinity")
    n, m, K = 64, 21, 5
    X = rng.integers(0, 256, (n, m), dtype=np.uint8) if x_dtype == "uint8" else rng.random((n, m))
    X = np.asfortranarray(X.astype(x_dtype))
    W0 = (rng.standard_normal((K, n)) * 0.05).astype("float32")
    b0 = np.zeros((K, 1), "float32")
    if case == "nan_in_x":
        X[7, 3] = np.nan
    elif case == "inf_in_x":
        X[7, 0], X[9, 11] = np.inf, -np.inf
    elif case == "nan_in_w":
        W0[1, 5] = np.nan
    elif case == "inf_in_w":
        W0[2, 5] = np.inf
    elif case == "inf_bias":
        b0[1, 0] = -np.inf
    else:  # each product finite, the float32 logit past the largest float: inf, as NumPy's
        W0[0, :] = np.finfo("float32").max / 16
        X[:, :] = 1
    y = (np.arange(m) % K).reshape(1, -1)
    results = []
    for name in ("numpy", other_backend):
        ops = nnx.get_backend(name)
        W, b = ops.asarray(W0, "float32"), ops.asarray(b0, "float32")
        with np.errstate(all="ignore"):
            loss, correct = ops.softmax_epoch_(
                W, b, ops.prepare_fused_input(X, "float32", K), ops.prepare_labels(y, "float32"), 0.5
            )
        results.append((ops.scalar(loss), ops.scalar(correct), ops.to_host(W), ops.to_host(b)))
    (l0, c0, W_0, b_0), (l1, c1, W_1, b_1) = results
    assert np.isnan(l1) == np.isnan(l0) and c1 == c0
    if not np.isnan(l0):
        assert l1 == pytest.approx(l0, rel=1e-5)
    for got, expected in ((W_1, W_0), (b_1, b_0)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        finite = np.isfinite(expected)
        np.testing.assert_array_equal(np.isfinite(got), finite)
        np.testing.assert_allclose(got[finite], expected[finite], **tolerance("float32"))


@pytest.mark.parametrize(("K", "path"), [(10, "tiled"), (16, "tiled"), (17, "chunks")])
def test_numba_softmax_takes_the_tiled_kernel_up_to_16_classes(K, path, monkeypatch, rng):
    pytest.importorskip("numba")
    ops = nnx.get_backend("numba")
    calls = []
    tiled = ops._tiled_softmax_loss_grad
    monkeypatch.setattr(ops, "_tiled_softmax_loss_grad", lambda *a: calls.append(1) or tiled(*a))
    X = np.asfortranarray(rng.integers(0, 256, (40, 30), dtype=np.uint8))
    W, b = np.zeros((K, 40), np.float32), np.zeros((K, 1), np.float32)
    ops.softmax_epoch_(W, b, X, ops.prepare_labels(np.arange(30) % K, "float32"), 0.1)
    assert bool(calls) == (path == "tiled")
    monkeypatch.setattr("nnx.backends.numba_backend._TILED_SCRATCH_BYTES", 1000)  # too wide: chunks
    calls.clear()
    ops.softmax_epoch_(W, b, X, ops.prepare_labels(np.arange(30) % K, "float32"), 0.1)
    assert not calls


@pytest.mark.parametrize("K", [2, 4, 5, 7, 10, 13, 16])  # 4x5 logit and 8x3 dW sweeps, and the rest
@pytest.mark.parametrize(
    ("x_dtype", "dtype"), [("float32", "float32"), ("uint8", "float32"), ("float64", "float64")]
)
def test_numba_tiled_softmax_on_rows_padded_apart_matches_numpy(K, x_dtype, dtype, rng):
    """n = 1024: rows 4 KB (float32) apart, which the tiled kernel pads apart (W, its
    partial sums and the copied tiles); whole tiles and single examples (m = 37 over one
    or two blocks), every class grouping, against the NumPy backend."""
    pytest.importorskip("numba")
    from nnx.backends import numba_backend

    n, m = 1024, 37
    assert numba_backend.padded_row(n, np.dtype(x_dtype).itemsize, np.dtype(dtype).itemsize) > n
    if x_dtype == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
    else:
        X = np.asfortranarray(rng.standard_normal((n, m)).astype(x_dtype))
    y = rng.integers(0, K, m).reshape(1, -1)
    W0 = (rng.standard_normal((K, n)) * 0.05).astype(dtype)
    b0 = (rng.standard_normal((K, 1)) * 0.1).astype(dtype)
    results = []
    for name in ("numpy", "numba"):
        ops = nnx.get_backend(name)
        Xd = ops.prepare_fused_input(X, dtype, K)
        if name == "numba":
            assert ops._tiled_softmax_fits(W0, b0, Xd)
        value, correct, dW, db = ops.softmax_loss_grad(W0.copy(), b0.copy(), Xd, ops.prepare_labels(y, dtype))
        results.append((ops.scalar(value), ops.scalar(correct), ops.to_host(dW), ops.to_host(db)))
    (v0, c0, dW0, db0), (v1, c1, dW1, db1) = results
    tol = tolerance(dtype)
    assert v1 == pytest.approx(v0, rel=tol["rtol"]) and c1 == c0
    np.testing.assert_allclose(dW1, dW0, rtol=tol["rtol"], atol=tol["rtol"] * np.abs(dW0).max())
    np.testing.assert_allclose(db1, db0, rtol=tol["rtol"], atol=tol["rtol"] * np.abs(db0).max())


@pytest.mark.parametrize("n", [2, 37, 300, 784, 1024, 3000, 4096, 12288, 12300])
@pytest.mark.parametrize("sizes", [(4, 4), (1, 4), (8, 8), (1, 8)])
def test_padded_rows_start_eight_rows_in_eight_l1_sets(n, sizes):
    """The tiled softmax kernel's row length: n itself where 8 rows already start in 8
    different 64-byte lines modulo 4 KB (or fit in 4 KB together), else the shortest
    longer row that does, for every item size it is asked about."""
    pytest.importorskip("numba")
    from nnx.backends.numba_backend import padded_row

    def spread(s):
        return 8 * s * max(sizes) <= 4096 or all(
            len({r * s * size % 4096 // 64 for r in range(8)}) == 8 for size in sizes
        )

    s = padded_row(n, *sizes)
    assert s >= n and spread(s)
    assert not any(spread(t) for t in range(n, s))
    assert padded_row(12288, 4, 4) > 12288 and padded_row(784, 4, 4) == 784


def test_fused_softmax_epoch_is_bitwise_repeatable(backend, rng):
    X = np.asfortranarray(rng.integers(0, 256, (500, 300), dtype=np.uint8))
    y = rng.integers(0, 7, 300)
    runs = []
    for _ in range(2):
        model = nnx.SoftmaxRegression(500, 7)
        model.fit(X, y, epochs=5, lr=0.1, backend=backend, dtype="float32")
        runs.append(model.parameters()[0][0])
    np.testing.assert_array_equal(runs[0], runs[1])


# ------------------------------------------------------------------ model API
def test_model_api_for_k_classes(backend, tmp_path):
    X, y = _blobs(seed=6, n=6, m=150, K=4)
    model = nnx.MLP([6, 8, 4], seed=0)
    assert model.loss == "cross_entropy" and model.n_classes == 4
    assert isinstance(model.layers[-1], nnx.Softmax)
    history = model.fit(X, y, epochs=200, lr=0.5, backend=backend, dtype="float64")
    P = model.predict_proba(X, backend=backend)
    assert P.shape == (4, 150)
    np.testing.assert_allclose(P.sum(axis=0), 1.0, rtol=1e-12)
    labels = model.predict(X, backend=backend)
    assert labels.shape == (1, 150) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels[0], P.argmax(axis=0))
    scores = model.evaluate(X, y, backend=backend)
    assert scores["accuracy"] == pytest.approx((labels[0] == y).mean())
    assert history.accuracy[-1] > 0.7
    onehot = np.eye(4)[y].T
    assert model.evaluate(X, onehot, backend=backend) == scores
    model.save(tmp_path / "k.npz")
    loaded = nnx.load(tmp_path / "k.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X, backend=backend), P)


def test_softmax_regression_and_mlp_builders():
    model = nnx.SoftmaxRegression(12288, 10)
    assert model.loss == "cross_entropy" and model.n_classes == 10
    assert not model.parameters()[0][0].any()
    assert nnx.MLP([12288, 50, 1]).loss == "bce" and nnx.MLP([12288, 50, 1]).n_classes == 2


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 1, 3, 1]), r"integers 0..2 .* found \[3\]"),
        (np.array([0, 1, -1, 1]), r"found \[-1\]"),
        (np.array([0, 1, 0.5, 1]), r"found \[0.5\]"),
        (np.array([[0, 1], [1, 0]]), "shape"),
        (np.array([0, 1, 2]), "has 3 labels"),
        (np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]), "one-hot"),
        # text labels are class names (issue 33): two names do not fit a 3-class model
        (np.array(["a", "b", "b", "a"]), r"2 classes \(a, b\), but this model has 3 classes"),
    ],
)
def test_bad_labels_are_named(labels, message):
    model = nnx.SoftmaxRegression(2, 3)
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(np.zeros((2, 4)), labels, epochs=1)


@pytest.mark.parametrize(
    "layers, loss, message",
    [
        ([nnx.Linear(3, 4), nnx.Softmax()], "bce", "cross_entropy"),
        ([nnx.Linear(3, 1), nnx.Softmax()], "cross_entropy", "at least 2 outputs"),
        ([nnx.Linear(3, 4), nnx.Sigmoid()], "cross_entropy", "end in a Softmax"),
        ([nnx.Linear(3, 4), nnx.Softmax(), nnx.Linear(4, 2), nnx.Softmax()], "cross_entropy", "last layer"),
        ([nnx.Linear(3, 4), nnx.Sigmoid()], "bce", "for K classes"),
    ],
)
def test_bad_softmax_stacks_are_refused(layers, loss, message):
    with pytest.raises(ValueError, match=message):
        nnx.Sequential(*layers, loss=loss)
