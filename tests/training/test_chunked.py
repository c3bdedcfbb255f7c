"""Column-chunked full-batch training without Dask (nnx.chunked), and the dask extra's
boundary: nnx never imports Dask, and nnx.distributed without it names the extra."""

import numpy as np
import pytest
from nnx_testing import python

import nnx
from nnx.chunked import Chunk, Spec, column_chunks, fit_chunked_locally
from nnx.errors import DataError
from nnx.network import DeviceNetwork


def _data(rng, n=12, m=103, dtype=np.float32):
    X = rng.standard_normal((n, m)).astype(dtype)
    Y = (X[:1] + 0.5 * X[1:2] > 0).astype(np.int64)
    return X, Y


MODELS = {
    "logreg": lambda n: nnx.LogisticRegression(n),
    "mlp": lambda n: nnx.MLP([n, 6, 1], seed=3),
    "softmax": lambda n: nnx.MLP([n, 5, 3], seed=4),
}


def _labels(kind, X):
    if kind == "softmax":
        return np.argmax(X[:3], axis=0).reshape(1, -1)
    return (X[:1] + 0.5 * X[1:2] > 0).astype(np.int64)


def _params_equal(a, b):
    return all(np.array_equal(p, q) for pa, pb in zip(a.parameters(), b.parameters()) for p, q in zip(pa, pb))


def _max_diff(a, b):
    return max(np.abs(p - q).max() for pa, pb in zip(a.parameters(), b.parameters()) for p, q in zip(pa, pb))


@pytest.mark.parametrize("op", ["bce", "mse", "softmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loss_ops_divide_by_the_given_m_exactly(backend, op, dtype, rng):
    """A chunk's dZ with m= the whole batch's m is the whole batch's dZ, bit for bit, and
    the chunks' losses add up to the batch's mean loss."""
    ops = nnx.get_backend(backend)
    K = 4 if op == "softmax" else 1
    Z = rng.standard_normal((K, 50)).astype(dtype)
    Y = (rng.integers(0, K, (1, 50)) if op == "softmax" else rng.integers(0, 2, (1, 50))).astype(dtype)
    if op == "softmax":
        Z = np.asfortranarray(Z)
    fn = {"bce": ops.bce_from_logits, "mse": ops.mse, "softmax": ops.softmax_cross_entropy}[op]
    if op == "mse":
        Z = 1 / (1 + np.exp(-Z))
    # the whole batch through the same op with m= given (a backend's kernel may round
    # differently from the op that takes m=)
    loss, correct, dZ = fn(ops.asarray(Z, dtype) if op != "softmax" else Z, ops.asarray(Y, dtype), m=50)
    total_loss, total_correct = 0.0, 0
    for lo, hi in ((0, 17), (17, 50)):
        Zc = np.asfortranarray(Z[:, lo:hi]) if op == "softmax" else ops.asarray(Z[:, lo:hi], dtype)
        c_loss, c_correct, c_dZ = fn(Zc, ops.asarray(Y[:, lo:hi], dtype), m=50)
        np.testing.assert_array_equal(ops.to_host(c_dZ), ops.to_host(dZ)[:, lo:hi])
        total_loss += ops.scalar(c_loss)
        total_correct += int(ops.scalar(c_correct))
    assert total_correct == int(ops.scalar(correct))
    assert total_loss == pytest.approx(ops.scalar(loss), rel=1e-6 if dtype == "float32" else 1e-13)


def test_loss_and_grads_of_chunks_add_up_to_the_batch(rng):
    X, Y = _data(rng, dtype=np.float64)
    model = nnx.MLP([12, 6, 1], seed=0)
    ops = nnx.get_backend("numpy")
    net = DeviceNetwork(ops, model._blocks, model.loss, model.parameters(), "float64")
    loss, _, grads = net.loss_and_grads(X, Y.astype(np.float64))
    grads = [(dW.copy(), db.copy()) for dW, db in grads]
    parts = []
    for lo, hi in ((0, 50), (50, 103)):  # gradients come in the network's reused buffers: copy
        c_loss, _, c_grads = net.loss_and_grads(X[:, lo:hi], Y[:, lo:hi].astype(np.float64), m=103)
        parts.append((c_loss, None, [(dW.copy(), db.copy()) for dW, db in c_grads]))
    assert parts[0][0] + parts[1][0] == pytest.approx(loss, rel=1e-13)
    for k, (dW, db) in enumerate(grads):
        np.testing.assert_allclose(parts[0][2][k][0] + parts[1][2][k][0], dW, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(parts[0][2][k][1] + parts[1][2][k][1], db, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_fit_agrees_with_fit_to_rounding(kind, dtype, rng):
    X, _ = _data(rng)
    Y = _labels(kind, X)
    a, b = MODELS[kind](12), MODELS[kind](12)
    ha = a.fit(X, Y, epochs=25, lr=0.3, dtype=dtype, backend="numba" if _numba() else "numpy")
    hb = fit_chunked_locally(b, X, Y, chunks=30, epochs=25, lr=0.3, dtype=dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12  # the README's stated tolerance
    assert _max_diff(a, b) < tol
    assert hb.epoch == ha.epoch == list(range(1, 26))
    np.testing.assert_allclose(hb.loss, ha.loss, rtol=tol)
    assert hb.accuracy[-1] == pytest.approx(ha.accuracy[-1], abs=2 / 103)
    assert b.epochs_trained == 25 and b.dtype == dtype and b.history.epoch[-1] == 25


def _numba():
    return nnx.backends.available()["numba"].available


def test_chunked_fit_is_deterministic_and_depends_only_on_the_chunks(rng):
    X, Y = _data(rng)
    runs = []
    for chunks in (30, (30, 30, 30, 13), 30):
        model = nnx.MLP([12, 6, 1], seed=3)
        fit_chunked_locally(model, X, Y, chunks=chunks, epochs=10, lr=0.2)
        runs.append(model)
    assert _params_equal(runs[0], runs[1]) and _params_equal(runs[0], runs[2])


def test_chunked_fit_takes_uint8_pixels_as_fit_does(rng):
    X = rng.integers(0, 256, (12, 90), dtype=np.uint8)
    Y = (X[0] > X[1]).astype(np.int64).reshape(1, -1)
    a, b = nnx.MLP([12, 5, 1], seed=1), nnx.MLP([12, 5, 1], seed=1)
    a.fit(X, Y, epochs=10, lr=0.2)
    fit_chunked_locally(b, X, Y, chunks=40, epochs=10, lr=0.2)
    assert _max_diff(a, b) < 1e-5


def test_history_every_callback_and_validation(rng):
    X, Y = _data(rng)
    seen = []

    def stop_at_7(epoch, params, history):
        seen.append(epoch)
        assert isinstance(params[0][0], np.ndarray)
        return epoch == 7

    model = nnx.MLP([12, 6, 1], seed=3)
    h = fit_chunked_locally(
        model, X, Y, chunks=40, epochs=20, lr=0.1, history_every=3, validation_data=(X, Y), callback=stop_at_7
    )
    assert seen == list(range(1, 8))
    assert h.epoch == [3, 6, 7] and h.epochs == 7 and model.epochs_trained == 7
    assert len(h.val_loss) == 3 and 0 <= h.val_accuracy[-1] <= 1


def test_errors_name_the_chunk_and_leave_the_model(rng):
    X, Y = _data(rng)
    X[4, 75] = np.nan
    model = nnx.MLP([12, 6, 1], seed=3)
    before = model.parameters()
    with pytest.raises(DataError, match=r"chunk 2 of X \(examples 60\.\.89\).*example 75"):
        fit_chunked_locally(model, X, Y, chunks=30, epochs=3)
    X[4, 75] = 0
    Y[0, 95] = 2
    with pytest.raises(DataError, match=r"chunk 3 of Y \(examples 90\.\.102\).*labels must be 0 or 1"):
        fit_chunked_locally(model, X, Y, chunks=30, epochs=3)
    assert all(np.array_equal(p, q) for pa, pb in zip(before, model.parameters()) for p, q in zip(pa, pb))
    assert model.epochs_trained == 0


def test_divergence_leaves_the_parameters(rng):
    X, Y = _data(rng)
    model = nnx.MLP([12, 16, 1], seed=3)
    before = model.parameters()
    with pytest.raises(nnx.TrainingDivergedError, match="epoch"):  # logits overflow float32
        fit_chunked_locally(model, X * np.float32(1e30), Y, chunks=30, epochs=20, lr=10.0)
    assert all(np.array_equal(p, q) for pa, pb in zip(before, model.parameters()) for p, q in zip(pa, pb))


def test_every_step_optimizer_and_option_trains_on_chunks_as_unchunked(rng):
    """Chunks take model.fit's options (was: plain gradient descent only): Adam with L2, a
    schedule and class weights ends where the unchunked fit ends, to float64 rounding."""
    X, Y = _data(rng, dtype=np.float64)
    kw = dict(
        epochs=8,
        optimizer=nnx.Adam(lr=0.05),
        l2=0.3,
        schedule=nnx.schedules.Cosine(total=8),
        class_weight="balanced",
        dtype="float64",
        backend="numpy",
    )
    a, b = nnx.MLP([12, 6, 1], seed=3), nnx.MLP([12, 6, 1], seed=3)
    ha = fit_chunked_locally(a, X, Y, chunks=30, **kw)
    hb = b.fit(X, Y, **kw)
    assert _max_diff(a, b) < 1e-12
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)
    np.testing.assert_allclose(ha.l2_penalty, hb.l2_penalty, rtol=1e-12)
    assert ha.epoch_lr == hb.epoch_lr and ha.class_weight == hb.class_weight
    assert a.training_state.step == b.training_state.step == 8
    with pytest.raises(TypeError, match="optimizer must be an nnx optimizer"):
        fit_chunked_locally(nnx.LogisticRegression(12), X, Y, chunks=30, optimizer=object())


def test_column_chunks():
    assert column_chunks(103, 30) == (30, 30, 30, 13)
    assert column_chunks(10, 10) == (10,) and column_chunks(10, 99) == (10,)
    assert column_chunks(10, (3, 7)) == (3, 7)
    with pytest.raises(ValueError, match="add up"):
        column_chunks(10, (3, 8))


def test_a_chunk_pickles_as_host_data_and_prepares_again(rng):
    import pickle

    X, Y = _data(rng)
    spec = Spec.of(nnx.LogisticRegression(12), "float32", 103, None)
    chunk = Chunk(1, 30, X[:, 30:60], Y[:, 30:60], spec)
    params = [(rng.standard_normal((1, 12)).astype(np.float32), np.zeros((1, 1), np.float32))]
    # an unaligned buffer (as a deserialised frame may be) must not change the products
    again = pickle.loads(pickle.dumps(chunk, protocol=5))
    assert again.X.flags.aligned and again.X.flags.f_contiguous
    a, b = chunk.grads(params), again.grads(params)
    assert a.loss == b.loss and np.array_equal(a.grads[0][0], b.grads[0][0])
    assert chunk.__sizeof__() >= X[:, 30:60].nbytes


# ------------------------------------------------------------ the dask extra's boundary
BLOCK_DASK = """
import sys
sys.modules.update(dict.fromkeys(["dask", "dask.array", "distributed"]))
try:
    import nnx.distributed
except ImportError as exc:
    print("ImportError:", exc)
"""

NEVER_IMPORTS_DASK = """
import importlib, pkgutil, sys
import numpy as np
import nnx
for info in pkgutil.iter_modules(nnx.__path__):
    if info.name not in ("distributed", "__main__"):
        importlib.import_module("nnx." + info.name)
import nnx.chunked
X = np.random.default_rng(0).standard_normal((4, 20)).astype(np.float32)
Y = (X[0] > 0).astype(int)
nnx.chunked.fit_chunked_locally(nnx.LogisticRegression(4), X, Y, chunks=7, epochs=2)
nnx.LogisticRegression(4).fit(X, Y, epochs=2)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""


def _run(code):
    done = python(code)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_nnx_distributed_without_dask_names_the_extra():
    out = _run(BLOCK_DASK)
    assert "ImportError:" in out and "pip install 'nnx-nets[dask]'" in out


def test_the_rest_of_nnx_never_imports_dask():
    assert _run(NEVER_IMPORTS_DASK).strip().splitlines()[-1] == "[]"
