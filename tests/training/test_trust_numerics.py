"""Never silently wrong: threads, forks, NaN/inf through every op, dtype ranges, batching.

Real threads and a real fork; every backend nnx has here (CuPy is skipped visibly without a GPU).
"""

import os
import threading

import numpy as np
import pytest

import nnx
from nnx.backends.numpy_backend import NumpyBackend
from nnx.errors import BackendUnavailableError
from nnx.network import Block, DeviceNetwork
from nnx.training import Batches

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 50.0, -50.0]


def _data(seed, n=96, m=300):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    Y = (X[0] - X[1] + 0.3 * rng.standard_normal(m) > 0).astype(np.float64).reshape(1, -1)
    return X, Y


def _fit_logreg(X, Y, backend, dtype="float64"):
    model = nnx.LogisticRegression(X.shape[0])
    model.fit(X, Y, epochs=60, lr=0.5, backend=backend, dtype=dtype)
    return model.parameters()


def _same(pa, pb):
    for (Wa, ba), (Wb, bb) in zip(pa, pb):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)


# --------------------------------------------------------------------- threads
def _in_threads(*jobs):
    """Run the callables at the same moment on real threads; their results in order."""
    results, errors = [None] * len(jobs), []
    barrier = threading.Barrier(len(jobs))

    def work(i):
        try:
            barrier.wait()
            results[i] = jobs[i]()
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_threads_fitting_two_models_match_sequential_results(backend, dtype):
    """Same shapes on purpose: a scratch buffer keyed by shape would be shared."""
    datasets = [_data(1), _data(2)]
    expected = [_fit_logreg(X, Y, backend, dtype) for X, Y in datasets]
    for _ in range(5):
        results = _in_threads(*(lambda d=d: _fit_logreg(*d, backend, dtype) for d in datasets))
        for got, want in zip(results, expected):
            _same(got, want)


def test_two_threads_fitting_two_mlps_match_sequential_results(backend):
    datasets = [_data(3, n=20, m=120), _data(4, n=20, m=120)]

    def fit(X, Y):
        model = nnx.MLP([20, 8, 1], seed=0)
        model.fit(X, Y, epochs=30, lr=0.1, backend=backend, dtype="float64", batch_size=32, seed=0)
        return model.parameters()

    expected = [fit(*d) for d in datasets]
    for got, want in zip(_in_threads(*(lambda d=d: fit(*d) for d in datasets)), expected):
        _same(got, want)


def test_one_model_fitted_from_two_threads_serialises(backend):
    X, Y = _data(5)
    sequential = nnx.LogisticRegression(X.shape[0])
    for _ in range(2):
        sequential.fit(X, Y, epochs=40, lr=0.5, backend=backend, dtype="float64")
    shared = nnx.LogisticRegression(X.shape[0])
    job = lambda: shared.fit(X, Y, epochs=40, lr=0.5, backend=backend, dtype="float64")  # noqa: E731
    _in_threads(job, job)
    assert shared.epochs_trained == 80 and len(shared.history.loss) == 80
    _same(shared.parameters(), sequential.parameters())


def _fit_softmax(X, Y, backend, dtype="float64"):
    """Softmax regression over 3 classes made from X's first two features."""
    y = (X[0] > 0).astype(int) + (X[1] > 0.5).astype(int)
    model = nnx.SoftmaxRegression(X.shape[0], 3)
    model.fit(X, y, epochs=60, lr=0.5, backend=backend, dtype=dtype)
    return model.parameters()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
@pytest.mark.parametrize("fit", [_fit_logreg, _fit_softmax], ids=["logreg", "softmax"])
def test_a_process_forked_after_a_fit_can_still_train(backend, fit):
    """CPU backends train in the child as in the parent; CUDA cannot run in a child forked
    after its parent initialised it, so the CuPy backend refuses there, in one line that
    names the 'spawn' start method."""
    X, Y = _data(6, m=600)
    parent = fit(X, Y, backend)  # starts the backend's threads (OpenMP for numba), or CUDA
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: train again and send the weights (or the refusal) back
        code = 1
        try:
            os.close(read_fd)
            try:
                payload = b"W" + fit(X, Y, backend)[0][0].astype(np.float64).tobytes()
            except BackendUnavailableError as exc:
                payload = b"E" + f"{type(exc).__name__}: {exc}".encode()
            with os.fdopen(write_fd, "wb") as fh:
                fh.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        payload = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child ended with status {status}"
    if backend == "cupy":
        message = payload[1:].decode()
        assert payload[:1] == b"E" and message.startswith("CudaForkedError: "), payload[:300]
        assert "'spawn'" in message and "\n" not in message, message
        return
    assert payload[:1] == b"W", payload[:300]
    np.testing.assert_array_equal(
        np.frombuffer(payload[1:], dtype=np.float64).reshape(parent[0][0].shape), parent[0][0]
    )


# ---------------------------------------------------------------- NaN and inf
def _specials(dtype, shape=(4, 9), seed=0):
    """An array holding NaN, +-inf, +-huge (the dtype's max) and ordinary values."""
    rng = np.random.default_rng(seed)
    top = float(np.finfo(dtype).max)
    values = np.array(SPECIALS + [top, -top], dtype=dtype)
    flat = rng.standard_normal(shape[0] * shape[1]).astype(dtype) * 3
    flat[: values.size] = values
    rng.shuffle(flat)
    return flat.reshape(shape)


def _match(ref, got, dtype):
    """Same NaN positions, same infinities, finite values to the dtype's tolerance."""
    ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))
    finite = np.isfinite(ref)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(got[finite], ref[finite], rtol=rtol, atol=np.finfo(dtype).tiny * 4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("act", [None, "sigmoid", "relu", "tanh"])
def test_nan_and_inf_pass_through_activations_as_in_numpy(backend, dtype, order, act):
    ref, ops = nnx.get_backend("numpy"), nnx.get_backend(backend)
    Z = _specials(dtype)
    b = np.array([[0.0], [np.nan], [1.0], [-np.inf]], dtype=dtype)
    with np.errstate(all="ignore"):
        want = ref.bias_activation_(Z.copy(order=order), b.copy(), act)
        got = ops.to_host(ops.bias_activation_(ops.xp.asarray(Z.copy(order=order)), ops.xp.asarray(b), act))
        _match(want, got, dtype)
        dA = _specials(dtype, seed=1)
        A = _specials(dtype, seed=2)
        want = ref.activation_backward_(dA.copy(order=order), A.copy(order=order), act)
        got = ops.activation_backward_(
            ops.xp.asarray(dA.copy(order=order)), ops.xp.asarray(A.copy(order=order)), act
        )
        _match(want, ops.to_host(got), dtype)
        want = ref.sigmoid_(Z.copy(order=order))
        _match(want, ops.to_host(ops.sigmoid_(ops.xp.asarray(Z.copy(order=order)))), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_pass_through_losses_and_updates_as_in_numpy(backend, dtype):
    ref, ops = nnx.get_backend("numpy"), nnx.get_backend(backend)
    Z = _specials(dtype, shape=(1, 40))
    Y = (np.arange(40) % 2).astype(dtype).reshape(1, -1)
    with np.errstate(all="ignore"):
        for loss_fn in ("bce_from_logits", "mse"):
            want = getattr(ref, loss_fn)(Z.copy(), Y.copy())
            got = getattr(ops, loss_fn)(ops.xp.asarray(Z.copy()), ops.xp.asarray(Y))
            _match(want[0], ops.scalar(got[0]), "float64")
            assert ops.scalar(got[1]) == ref.scalar(want[1])
            _match(want[2], ops.to_host(got[2]), dtype)
        p, g = _specials(dtype, seed=3), _specials(dtype, seed=4)
        ref.sgd_update_([want_p := p.copy()], [g.copy()], 0.1)
        got_p = ops.xp.asarray(p.copy())
        ops.sgd_update_([got_p], [ops.xp.asarray(g)], 0.1)
        _match(want_p, ops.to_host(got_p), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, "huge"])
def test_fused_logreg_epoch_propagates_bad_weights_as_numpy(backend, dtype, bad):
    """A diverged weight poisons the loss and the update in the fused pass as in NumPy."""
    ref, ops = nnx.get_backend("numpy"), nnx.get_backend(backend)
    X, Y = _data(7, n=40, m=70)
    w = np.random.default_rng(0).standard_normal((1, 40)).astype(dtype)
    w[0, 3] = np.finfo(dtype).max if bad == "huge" else bad
    b = np.zeros((1, 1), dtype=dtype)
    outs = []
    with np.errstate(all="ignore"):
        for backend_ops in (ref, ops):
            Xd = backend_ops.prepare_fused_input(np.asfortranarray(X), dtype)
            wd, bd = backend_ops.asarray(w, dtype), backend_ops.asarray(b, dtype)
            loss, _ = backend_ops.logreg_epoch_(wd, bd, Xd, backend_ops.prepare_labels(Y, dtype), 0.1, "bce")
            outs.append((backend_ops.scalar(loss), backend_ops.to_host(wd), backend_ops.to_host(bd)))
    (l0, w0, b0), (l1, w1, b1) = outs
    assert not np.isfinite(l0) and not np.isfinite(l1)
    np.testing.assert_array_equal(np.isnan(w1), np.isnan(w0))
    np.testing.assert_array_equal(np.isnan(b1), np.isnan(b0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_logreg_on_pixels_does_not_overflow_where_numpy_does_not(backend, dtype):
    """A weight within 255x of the largest float: w * pixel overflows, w * (pixel / 255)
    (what the NumPy backend computes) does not. The fused epoch and gradient on raw pixels
    give NumPy's finite loss, not NaN."""
    ref, ops = nnx.get_backend("numpy"), nnx.get_backend(backend)
    rng = np.random.default_rng(9)
    X = np.asfortranarray(rng.integers(1, 256, (64, 21), dtype=np.uint8))
    Y = (rng.random((1, 21)) > 0.5).astype(dtype)
    w = (rng.standard_normal((1, 64)) * 0.05).astype(dtype)
    w[0, 5] = np.finfo(dtype).max / 200
    outs = []
    for backend_ops in (ref, ops):
        Xd, Yd = backend_ops.prepare_fused_input(X, dtype), backend_ops.prepare_labels(Y, dtype)
        wd, bd = backend_ops.asarray(w, dtype), backend_ops.zeros((1, 1), dtype)
        with np.errstate(all="ignore"):
            value, _, dw, _ = backend_ops.logreg_loss_grad(wd, bd, Xd, Yd, "bce")
            loss, _ = backend_ops.logreg_epoch_(wd, bd, Xd, Yd, 1e-40, "bce")
        outs.append((backend_ops.scalar(value), backend_ops.scalar(loss), backend_ops.to_host(dw)))
    (v0, l0, dw0), (v1, l1, dw1) = outs
    assert np.isfinite(v0) and np.isfinite(l0)
    np.testing.assert_allclose([v1, l1], [v0, l0], rtol=1e-5)
    np.testing.assert_allclose(dw1, dw0, rtol=1e-5, atol=1e-6 * np.abs(dw0).max())


def test_divergence_is_caught_on_every_backend(backend):
    X, Y = _data(8, n=30, m=200)
    X *= 1e30  # finite input whose logits overflow float32
    model = nnx.MLP([30, 16, 1], seed=0)
    before = model.parameters()
    with pytest.raises(nnx.TrainingDivergedError):
        model.fit(X, Y, epochs=20, lr=10.0, backend=backend, dtype="float32")
    _same(model.parameters(), before)


# ------------------------------------------------------------ dtypes and ranges
def test_float_input_beyond_the_compute_dtype_is_refused_before_training(backend):
    X, Y = _data(9, n=10, m=50)
    X[2, 7] = 1e39  # finite in float64, inf in float32
    model = nnx.MLP([10, 4, 1], seed=0)
    with pytest.raises(ValueError, match="beyond the range of float32"):
        model.fit(X, Y, epochs=2, backend=backend, dtype="float32")
    with pytest.raises(ValueError, match="beyond the range of float32"):
        model.predict_proba(X, backend=backend, dtype="float32")
    model.fit(X, Y, epochs=2, lr=1e-45, backend=backend, dtype="float64")  # float64 holds it


def test_inference_defaults_to_the_trained_and_loaded_dtype(tmp_path, backend):
    X, Y = _data(10, n=12, m=60)
    model = nnx.LogisticRegression(12)
    assert model.predict_proba(X, backend=backend).dtype == np.float32  # never trained
    model.fit(X, Y, epochs=5, backend=backend, dtype="float64")
    p = model.predict_proba(X, backend=backend)
    assert p.dtype == np.float64
    model.save(tmp_path / "m.npz")
    loaded = nnx.load(tmp_path / "m.npz")
    assert loaded.dtype == "float64" and loaded.predict_proba(X, backend=backend).dtype == np.float64
    np.testing.assert_array_equal(loaded.predict_proba(X, backend=backend), p)
    assert model.predict_proba(X, backend=backend, dtype="float32").dtype == np.float32


# ------------------------------------------------------------------- batching
class SmallDeviceBackend(NumpyBackend):
    """The NumPy backend reporting 1 MB of free device memory, to drive the batch planner."""

    def free_bytes(self):
        return 1_000_000


def test_every_batch_reaching_train_step_is_prepared():
    ops = SmallDeviceBackend()
    X = np.random.default_rng(0).integers(0, 256, size=(600, 500), dtype=np.uint8)  # 300 kB uint8
    X = np.asfortranarray(X.astype(np.float64))  # 2.4 MB: does not fit
    Y = (np.arange(500) % 2).reshape(1, -1)
    net = DeviceNetwork(
        ops,
        [Block(600, 4, "relu"), Block(4, 1, "sigmoid")],
        "bce",
        [(np.zeros((4, 600)), np.zeros((4, 1))), (np.zeros((1, 4)), np.zeros((1, 1)))],
        "float32",
    )
    streamed = Batches(net, X, Y, batch_size=64)
    assert streamed.streamed and not streamed.full_batch
    batches = list(streamed.epoch(np.random.default_rng(0)))
    assert sum(b[0].shape[1] for b in batches) == 500
    assert all(b[0].dtype == np.float32 for b in batches)
    for big in (None, 500, 10**6):  # full batch: X prepared once, never raw
        full = Batches(net, X, Y, batch_size=big)
        assert full.full_batch and not full.streamed and full.X.dtype == np.float32
        [(Xb, _, share)] = list(full.epoch(np.random.default_rng(0)))
        assert Xb is full.X and share == 1.0


def test_uint8_batches_are_scaled_whichever_path_they_take():
    ops = SmallDeviceBackend()
    X8 = np.asfortranarray(np.random.default_rng(1).integers(0, 256, size=(3000, 400), dtype=np.uint8))
    Y = (np.arange(400) % 2).reshape(1, -1)
    params = [(np.zeros((2, 3000)), np.zeros((2, 1))), (np.zeros((1, 2)), np.zeros((1, 1)))]
    net = DeviceNetwork(ops, [Block(3000, 2, "relu"), Block(2, 1, "sigmoid")], "bce", params, "float64")
    streamed = Batches(net, X8, Y, batch_size=50)
    assert streamed.streamed
    for Xb, _, _ in streamed.epoch(np.random.default_rng(0)):
        assert Xb.dtype == np.float64 and Xb.max() <= 1.0


def test_streamed_minibatches_train_like_in_memory_minibatches():
    X, Y = _data(11, n=300, m=500)
    X = np.asfortranarray(X)
    a, b = nnx.MLP([300, 6, 1], seed=0), nnx.MLP([300, 6, 1], seed=0)
    a.fit(X, Y, epochs=3, lr=0.1, batch_size=64, seed=0, backend="numpy", dtype="float64")
    b.fit(X, Y, epochs=3, lr=0.1, batch_size=64, seed=0, backend=SmallDeviceBackend(), dtype="float64")
    _same(a.parameters(), b.parameters())
