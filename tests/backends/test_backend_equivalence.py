"""Every non-reference backend matches the NumPy backend op by op and run by run."""

import os
import textwrap

import numpy as np
import pytest
from nnx_testing import python, run, tolerance

import nnx
from nnx.datasets import synthetic_images

DTYPES = ["float32", "float64"]
ACTS = [None, "sigmoid", "relu", "tanh"]


def _pair(other):
    return nnx.get_backend("numpy"), nnx.get_backend(other)


def _approx(value, dtype):
    tol = tolerance(dtype)
    return pytest.approx(value, rel=tol["rtol"], abs=tol["atol"])


def _close(a, b, dtype, ops):
    np.testing.assert_allclose(ops.to_host(b) if not isinstance(b, np.ndarray) else b, a, **tolerance(dtype))


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_bias_activation_and_backward(other_backend, dtype, act, order, rng):
    """Both activation layouts: C, and example-contiguous F (the Numba backend's own)."""
    ref, ops = _pair(other_backend)
    xp = ops.xp
    Z = rng.standard_normal((7, 33)).astype(dtype) * 4
    b = rng.standard_normal((7, 1)).astype(dtype)
    want = ref.bias_activation_(Z.copy(), b, act)
    Zd = xp.asarray(ops.asarray(Z, dtype), order=order)
    got = ops.bias_activation_(Zd, ops.asarray(b, dtype), act)
    _close(want, got, dtype, ops)
    dA = rng.standard_normal((7, 33)).astype(dtype)
    want_dz = ref.activation_backward_(dA.copy(), want, act)
    dAd = xp.asarray(ops.asarray(dA, dtype), order=order)
    Ad = xp.asarray(ops.asarray(want, dtype), order=order)
    got_dz = ops.activation_backward_(dAd, Ad, act)
    _close(want_dz, got_dz, dtype, ops)
    if act == "sigmoid":
        Zs = xp.asarray(ops.asarray(Z, dtype), order=order)
        _close(ref.sigmoid_(Z.copy()), ops.sigmoid_(Zs), dtype, ops)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_bce_update(other_backend, dtype, rng):
    ref, ops = _pair(other_backend)
    Z = (rng.standard_normal((1, 101)) * 30).astype(dtype)
    Y = (rng.random((1, 101)) > 0.5).astype(dtype)
    _close(ref.sigmoid_(Z.copy()), ops.sigmoid_(ops.asarray(Z, dtype)), dtype, ops)
    l0, c0, d0 = ref.bce_from_logits(Z, Y)
    l1, c1, d1 = ops.bce_from_logits(ops.asarray(Z, dtype), ops.asarray(Y, dtype))
    assert ops.scalar(l1) == _approx(float(l0), dtype)
    assert ops.scalar(c1) == int(c0)
    _close(d0, d1, dtype, ops)
    P = rng.standard_normal((5, 4)).astype(dtype)
    G = rng.standard_normal((5, 4)).astype(dtype)
    want = P.copy()
    ref.sgd_update_([want], [G], 0.1)
    got = ops.asarray(P, dtype)
    ops.sgd_update_([got], [ops.asarray(G, dtype)], 0.1)
    _close(want, got, dtype, ops)


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("x_dtype", ["float32", "float64", "uint8"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_x, m", [(13, 1), (13, 5), (37, 67), (300, 1031)])
def test_logreg_epoch_matches_numpy(other_backend, loss, x_dtype, dtype, n_x, m, rng):
    """Odd sizes: m = 1, m not a multiple of the 8-example tile or the thread count,
    n_x not a multiple of the vector width."""
    ref, ops = _pair(other_backend)
    if x_dtype == "uint8":
        X = rng.integers(0, 256, (n_x, m), dtype=np.uint8)
    else:
        X = rng.standard_normal((n_x, m)).astype(x_dtype)
    X = np.asfortranarray(X)
    Y = (rng.random((1, m)) > 0.5).astype(dtype)
    w0 = (rng.standard_normal((1, n_x)) * 0.1).astype(dtype)
    b0 = np.array([[0.2]], dtype=dtype)
    w_ref, b_ref = w0.copy(), b0.copy()
    Xr, Xo = ref.prepare_fused_input(X, dtype), ops.prepare_fused_input(X, dtype)
    Yo = ops.prepare_labels(Y, dtype)
    w_o, b_o = ops.asarray(w0, dtype), ops.asarray(b0, dtype)
    for _ in range(3):
        l0, c0 = ref.logreg_epoch_(w_ref, b_ref, Xr, Y, 0.5, loss)
        l1, c1 = ops.logreg_epoch_(w_o, b_o, Xo, Yo, 0.5, loss)
        assert ops.scalar(l1) == _approx(float(l0), dtype)
        assert abs(ops.scalar(c1) - int(c0)) <= (0 if dtype == "float64" else 1)
    _close(w_ref, w_o, dtype, ops)
    _close(b_ref, b_o, dtype, ops)


def test_uint8_logreg_equals_float_x_over_255(other_backend):
    X8, Y = synthetic_images(m=50, size=16, seed=2)
    a, b = nnx.LogisticRegression(768), nnx.LogisticRegression(768)
    ha = a.fit(X8, Y, epochs=20, lr=0.1, backend=other_backend, dtype="float64")
    hb = b.fit(X8.astype(np.float64) / 255, Y, epochs=20, lr=0.1, backend=other_backend, dtype="float64")
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-10)
    np.testing.assert_allclose(a.parameters()[0][0], b.parameters()[0][0], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["logreg", "mlp", "deep-mse"])
def test_whole_training_matches_numpy(other_backend, dtype, kind, rng):
    X = np.asfortranarray(rng.standard_normal((40, 203)))
    Y = (X[0:1] - X[1:2] > 0).astype(float)

    def make():
        if kind == "logreg":
            return nnx.LogisticRegression(40)
        if kind == "mlp":
            return nnx.MLP([40, 9, 1], seed=3)
        return nnx.MLP([40, 6, 5, 1], hidden="tanh", loss="mse", seed=3)

    ref, other = make(), make()
    h0 = ref.fit(X, Y, epochs=30, lr=0.2, backend="numpy", dtype=dtype)
    h1 = other.fit(X, Y, epochs=30, lr=0.2, backend=other_backend, dtype=dtype)
    tol = tolerance(dtype) if dtype == "float64" else {"rtol": 1e-3, "atol": 1e-4}
    np.testing.assert_allclose(h1.loss, h0.loss, **tol)  # per step
    for (W0, b0), (W1, b1) in zip(ref.parameters(), other.parameters()):
        np.testing.assert_allclose(W1, W0, **tol)
        np.testing.assert_allclose(b1, b0, **tol)


def test_repeatable_bitwise(other_backend, rng):
    X = np.asfortranarray(rng.standard_normal((300, 999)).astype(np.float32))
    Y = (rng.random((1, 999)) > 0.5).astype(np.float32)
    runs = []
    for _ in range(2):
        model = nnx.LogisticRegression(300)
        model.fit(X, Y, epochs=5, lr=0.1, backend=other_backend)
        runs.append(model.parameters()[0][0])
    assert np.array_equal(runs[0], runs[1])


def test_float32_dw_accuracy_at_large_m(other_backend, rng):
    """Accumulating in float64 / blocked sums keeps dw at float32 accuracy for m = 2**17."""
    n_x, m = 16, 2**17
    X = np.asfortranarray(rng.random((n_x, m)).astype(np.float32) + 0.5)
    Y = np.ones((1, m), dtype=np.float32)
    ops = nnx.get_backend(other_backend)
    w = ops.asarray(np.zeros((1, n_x)), "float32")
    b = ops.asarray(np.zeros((1, 1)), "float32")
    ops.logreg_epoch_(
        w, b, ops.prepare_fused_input(X, "float32"), ops.prepare_labels(Y, "float32"), 1.0, "bce"
    )
    # exact: dw = mean over examples of (0.5 - 1) * x
    exact = -0.5 * X.astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(ops.to_host(w).ravel(), -exact, rtol=2e-6)


@pytest.mark.skipif(not nnx.backends.available()["numba"].available, reason="numba backend unavailable here")
def test_numba_kernels_cached_across_processes(tmp_path):
    script = textwrap.dedent(
        """
        import numpy as np, nnx
        from nnx.backends import numba_kernels as k
        X = np.asfortranarray(np.random.rand(20, 17).astype(np.float32))
        Y = (np.random.rand(1, 17) > 0.5).astype(np.float32)
        nnx.LogisticRegression(20).fit(X, Y, epochs=2, backend="numba")
        st = k.logreg_epoch_serial.stats  # a fit this small runs the serial build (SERIAL_WORK)
        print(sum(st.cache_hits.values()), sum(st.cache_misses.values()))
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    outs = []
    for _ in range(2):
        r = python(script, env=env, timeout=600)
        assert r.returncode == 0, r.stderr
        outs.append(tuple(int(v) for v in r.stdout.split()))
    assert outs[0][1] >= 1  # first process compiled (cache miss)
    assert outs[1] == (outs[1][0], 0) and outs[1][0] >= 1  # second: loaded, no recompilation


@pytest.mark.skipif(not nnx.backends.available()["numba"].available, reason="numba backend unavailable here")
def test_numba_respects_thread_count():
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    r = run("info", "--json", env=env)
    assert r.returncode == 0, r.stderr
    import json

    numba_info = json.loads(r.stdout)["backends"]["numba"]
    assert numba_info["threads"] == 1 and numba_info["threading_layer"]


def test_generic_logreg_step_accepts_raw_pixels(rng):
    """The generic (two-pass) step scales raw uint8 itself, as the fused kernels do."""
    ops = nnx.get_backend("numpy")
    X8 = np.asfortranarray(rng.integers(0, 256, (20, 9), dtype=np.uint8))
    Y = (rng.random((1, 9)) > 0.5).astype(np.float64)
    w_raw, b_raw = np.full((1, 20), 0.01), np.zeros((1, 1))
    w_flt, b_flt = w_raw.copy(), b_raw.copy()
    l_raw, _ = ops.logreg_epoch_(w_raw, b_raw, X8, Y, 0.5, "bce")
    l_flt, _ = ops.logreg_epoch_(w_flt, b_flt, X8 / 255.0, Y, 0.5, "bce")
    assert float(l_raw) == pytest.approx(float(l_flt), rel=1e-12)
    np.testing.assert_allclose(w_raw, w_flt, rtol=1e-12)
