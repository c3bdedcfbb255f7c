"""nnx.distributed.fit on a LocalCluster of 2 worker processes x 1 thread (issue #23).

Every X here is made on the workers (``da.random`` with a seed, or ``.npy`` files read by
``da.from_delayed``); only the single-process references fetch it. Skipped, visibly,
without the dask extra.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest
from nnx_testing import ROOT

import nnx

distributed = pytest.importorskip("distributed", reason="needs the dask extra: pip install 'nnx-nets[dask]'")
da = pytest.importorskip("dask.array", reason="needs the dask extra: pip install 'nnx-nets[dask]'")
dask = pytest.importorskip("dask")

from nnx.distributed import WorkerLostError, _Windows, fit, fit_chunked_locally  # noqa: E402
from nnx.errors import DataError  # noqa: E402


@pytest.fixture(scope="module")
def client():
    # the workers import this checkout's nnx, as the tests do
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env={"PYTHONPATH": path},
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


MODELS = {
    "logreg": lambda n: nnx.LogisticRegression(n),
    "mlp": lambda n: nnx.MLP([n, 6, 1], seed=3),
    "softmax": lambda n: nnx.MLP([n, 5, 3], seed=4),
}


def _X(m=103, chunk=30, n=12, dtype=np.float32, seed=0):
    return da.random.default_rng(seed).standard_normal((n, m), chunks=(n, chunk), dtype=dtype)


def _Y(kind, X):
    if kind == "softmax":
        return da.argmax(X[:3], axis=0).reshape(1, -1)
    return (X[:1] + 0.5 * X[1:2] > 0).astype(np.int64)


def _params(model):
    return [a for pair in model.parameters() for a in pair]


def _same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(_params(a), _params(b)))


def _reference(make, X, Y, **kw):
    """fit_chunked_locally on X fetched to this process, with X's chunks."""
    model = make()
    history = fit_chunked_locally(model, X.compute(), Y.compute(), chunks=X.chunks[1], **kw)
    return model, history


# ------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bitwise_equal_to_the_single_machine_reference(client, kind, dtype):
    X = _X()  # 103 examples in chunks of 30: the last chunk has 13
    Y = _Y(kind, X)
    make = lambda: MODELS[kind](12)  # noqa: E731
    model = make()
    history = fit(model, X, Y, client=client, epochs=12, lr=0.3, dtype=dtype, epochs_ahead=5)
    ref, ref_history = _reference(make, X, Y, epochs=12, lr=0.3, dtype=dtype)
    assert _same(model, ref)
    assert history.loss == ref_history.loss and history.accuracy == ref_history.accuracy
    assert history.epoch == list(range(1, 13)) and model.epochs_trained == 12 and model.dtype == dtype
    assert history.backend in nnx.backends.names() and "4 chunk(s) on 2 worker(s)" in history.backend_reason
    # against the unchunked fit: the README's tolerance
    plain = make()
    plain.fit(X.compute(), Y.compute(), epochs=12, lr=0.3, dtype=dtype, backend=history.backend)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert max(np.abs(p - q).max() for p, q in zip(_params(model), _params(plain))) < tol


@pytest.mark.parametrize("chunk", [103, 15, (50, 3, 50)], ids=["one-chunk", "7-chunks", "uneven"])
def test_any_chunking_equals_its_reference(client, chunk):
    X = _X().rechunk({1: chunk})
    Y = _Y("mlp", X)
    model = MODELS["mlp"](12)
    fit(model, X, Y, client=client, epochs=8, lr=0.3)
    ref, _ = _reference(lambda: MODELS["mlp"](12), X, Y, epochs=8, lr=0.3)
    assert _same(model, ref)


def test_X_built_on_persisted_blocks_trains_as_its_reference(client):
    """da.concatenate of persisted arrays: its graph refers to blocks that live on the
    workers, so the chunks are made on the cluster (the persisted path), not from a graph
    a worker computes alone (which failed with Dask's "Missing dependency")."""
    rng = da.random.default_rng(4)
    X = da.concatenate(
        [rng.random((12, 50), chunks=(12, 25)).persist(), rng.random((12, 53), chunks=(12, 53)).persist()],
        axis=1,
    ).astype(np.float32)
    Y = _Y("mlp", X)
    model = MODELS["mlp"](12)
    fit(model, X, Y, client=client, epochs=6, lr=0.3)
    ref, _ = _reference(lambda: MODELS["mlp"](12), X, Y, epochs=6, lr=0.3)
    assert _same(model, ref)


@pytest.mark.filterwarnings("ignore:Port .* is already in use")  # the second cluster's HTTP port
def test_one_worker_gives_what_two_give(client):
    X = _X(seed=7)
    Y = _Y("mlp", X)
    two = MODELS["mlp"](12)
    fit(two, X, Y, client=client, epochs=8, lr=0.3)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as solo,
    ):
        one = MODELS["mlp"](12)
        history = fit(one, X, Y, client=solo, epochs=8, lr=0.3)
    assert "on 1 worker(s)" in history.backend_reason
    assert _same(one, two)


@pytest.mark.parametrize("solver", ["steps", "lbfgs"])
def test_weighted_regression_equals_its_reference(client, solver):
    """Sample weights on squared error reach every chunk on the workers: a regression with
    weights gives fit_chunked_locally's parameters bit for bit, and not the unweighted ones."""
    X = _X(dtype=np.float64)
    Y = da.concatenate([X[:1] - 0.5 * X[1:2], X[2:3] * X[3:4]], axis=0).rechunk({0: -1})
    w = np.random.default_rng(2).uniform(0, 2, X.shape[1])
    make = lambda: nnx.Sequential(  # noqa: E731
        nnx.Linear(12, 4, seed=1), nnx.Tanh(), nnx.Linear(4, 2, seed=2), loss="mse"
    )
    kw = dict(epochs=6, dtype="float64", sample_weight=w)
    kw.update(optimizer=nnx.LBFGS()) if solver == "lbfgs" else kw.update(lr=0.2)
    model = make()
    fit(model, X, Y, client=client, **kw)
    ref, _ = _reference(make, X, Y, **kw)
    assert _same(model, ref)
    unweighted, _ = _reference(make, X, Y, **{**kw, "sample_weight": None})
    assert not _same(model, unweighted)


def test_uint8_pixels(client):
    X = da.random.default_rng(2).integers(0, 256, (12, 90), chunks=(12, 40), dtype=np.uint8)
    Y = (X[:1] > X[1:2]).astype(np.int64)
    model = MODELS["mlp"](12)
    fit(model, X, Y, client=client, epochs=6, lr=0.3)
    ref, _ = _reference(lambda: MODELS["mlp"](12), X, Y, epochs=6, lr=0.3)
    assert _same(model, ref)


def test_X_from_npy_files_read_on_the_workers(client, tmp_path):
    rng = np.random.default_rng(3)
    parts = []
    for i, m in enumerate((40, 40, 23)):
        path = tmp_path / f"part{i}.npy"
        np.save(path, rng.standard_normal((12, m)).astype(np.float32))
        parts.append(da.from_delayed(dask.delayed(np.load)(str(path)), shape=(12, m), dtype=np.float32))
    X = da.concatenate(parts, axis=1)
    Y = _Y("logreg", X)
    model = MODELS["logreg"](12)
    fit(model, X, Y, client=client, epochs=6, lr=0.3)
    ref, _ = _reference(lambda: MODELS["logreg"](12), X, Y, epochs=6, lr=0.3)
    assert _same(model, ref)


def _logs(dask_worker):
    return list(dask_worker.transfer_incoming_log)


def _clear(dask_worker):
    dask_worker.transfer_incoming_log.clear()


def test_only_parameters_and_gradients_move(client):
    X = _X(m=400, chunk=100, n=30, seed=11)
    Y = (da.random.default_rng(12).random((1, 400), chunks=(1, 100)) > 0.5).astype(np.int64)
    client.run(_clear)
    model = nnx.MLP([30, 8, 1], seed=0)
    fit(model, X, Y, client=client, epochs=6, lr=0.1, epochs_ahead=3)
    moved = {}
    for entries in client.run(_logs).values():
        for entry in entries:
            for key, nbytes in entry["keys"].items():
                name = key[0] if isinstance(key, tuple) else key
                moved[name] = moved.get(name, 0) + nbytes
    assert not [k for k in moved if k.startswith(("nnx-chunk", X.name))], moved
    param_bytes = sum(a.nbytes for a in _params(model))
    assert all(k.startswith(("nnx-start", "nnx-grads", "nnx-update", Y.name)) for k in moved), moved
    # per epoch at most: the first worker's two chunks' gradients added up there (one
    # share) to the update on the other worker, and the parameters back; plus each
    # window's starting parameters
    nnx_bytes = sum(nbytes for k, nbytes in moved.items() if k.startswith("nnx-"))
    assert 0 < nnx_bytes <= (6 * 2 + 2) * (param_bytes + 4096), moved


def _nnx_bytes_moved(client):
    """Bytes of nnx's own keys the workers received since their logs were cleared."""
    return sum(
        nbytes
        for entries in client.run(_logs).values()
        for entry in entries
        for key, nbytes in entry["keys"].items()
        if (key[0] if isinstance(key, tuple) else key).startswith("nnx-")
    )


def _graphs_since(client, start):
    return sum(
        1
        for t, e in client.get_events("scheduler")
        if t >= start and isinstance(e, dict) and e.get("action") == "update-graph"
    )


def test_a_window_is_one_graph_and_each_worker_sends_one_share_per_epoch(client):
    X = _X(m=400, chunk=100, n=200, seed=11)  # 4 chunks: 2 on each worker
    Y = (X[:1] > 0).astype(np.int64)
    graphs = []
    for epochs in (6, 12):
        client.run(_clear)
        start = time.time()  # the scheduler's clock: a LocalCluster on this machine
        with distributed.get_task_stream(client) as stream:
            model = nnx.MLP([200, 32, 1], seed=0)
            fit(model, X, Y, client=client, epochs=epochs, lr=0.1, epochs_ahead=3)
        graphs.append(_graphs_since(client, start))
    # the same setup, two more windows of 3 epochs: one message each (the window's graph)
    assert graphs[1] - graphs[0] == 2, graphs
    where = {}
    for task in stream.data:
        key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
        if key.startswith(("nnx-grads", "nnx-fold", "nnx-update")):
            where[key] = task["worker"]
    epochs = {k.split("-")[-1] for k in where if k.startswith("nnx-update")}
    assert len(epochs) == 12 and len(where) == 12 * 3, sorted(where)  # 2 shares, 1 update
    for e in epochs:  # the update where the last chunks' share is computed: it never moves
        (update,) = [w for k, w in where.items() if k.startswith("nnx-update") and k.endswith(f"-{e}")]
        last = [w for k, w in where.items() if k.startswith("nnx-grads") and k.endswith(f"-{e}-1")]
        assert last == [update]
    # per epoch: one share (the first two chunks' added up on their worker) to the update
    # and the parameters back; plus each of the 4 windows' starting parameters
    moved = _nnx_bytes_moved(client)
    param_bytes = sum(a.nbytes for a in _params(model))
    assert 12 * 2 * param_bytes <= moved <= (12 * 2 + 4) * (param_bytes + 1024), (moved, param_bytes)


def test_past_the_chains_workers_every_share_goes_to_one_worker_bitwise_alike(client, monkeypatch):
    """Above CHAIN_MAX_WORKERS the workers' shares go straight to the worker that updates
    (no running sum passed along): the same sums in chunk order, so the same bits."""
    monkeypatch.setattr(nnx.training.distributed, "CHAIN_MAX_WORKERS", 1)
    X = _X(m=400, chunk=100, n=20, seed=3)  # 4 chunks: 2 on each worker
    Y = _Y("mlp", X)
    client.run(_clear)
    with distributed.get_task_stream(client) as stream:
        model = MODELS["mlp"](20)
        fit(model, X, Y, client=client, epochs=6, lr=0.3, epochs_ahead=3)
    ref, _ = _reference(lambda: MODELS["mlp"](20), X, Y, epochs=6, lr=0.3)
    assert _same(model, ref)
    keys = [t["key"][0] if isinstance(t["key"], tuple) else t["key"] for t in stream.data]
    assert not [k for k in keys if k.startswith("nnx-fold")]
    assert len([k for k in keys if k.startswith("nnx-grads")]) == 6 * 2  # one per worker per epoch
    # the other worker's two chunks' shares travel apart (not added up there first), and
    # the parameters back: 3 parameter sizes an epoch, where the chain moves 2
    moved = _nnx_bytes_moved(client)
    assert moved >= 6 * 3 * sum(a.nbytes for a in _params(model)), moved


# ------------------------------------------------------------------------ refusals
def test_bad_chunking_and_inputs_are_refused_with_the_fix(client):
    model = MODELS["logreg"](12)
    X = _X()
    Y = _Y("logreg", X)
    with pytest.raises(ValueError, match=r"rechunk\(\{0: -1\}\)"):
        fit(model, X.rechunk({0: 6}), Y, client=client)
    with pytest.raises(ValueError, match="Y = Y.rechunk"):
        fit(model, X, Y.rechunk({1: 50}), client=client)
    with pytest.raises(TypeError, match="dask.array"):
        fit(model, X.compute(), Y, client=client)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        fit(model, X[:, X[0] > 0], Y, client=client)
    with pytest.raises(ValueError, match="looks transposed"):
        fit(nnx.LogisticRegression(103), X, Y, client=client)
    with pytest.raises(TypeError, match="optimizer must be an nnx optimizer"):
        fit(model, X, Y, client=client, optimizer=object())
    assert model.epochs_trained == 0


def test_numpy_labels_are_sent_in_X_chunks(client):
    X = _X()
    Yh = _Y("logreg", X).compute()
    a, b = MODELS["logreg"](12), MODELS["logreg"](12)
    fit(a, X, Yh.ravel(), client=client, epochs=4, lr=0.3)
    fit(b, X, _Y("logreg", X), client=client, epochs=4, lr=0.3)
    assert _same(a, b)


def test_a_chunk_with_nan_is_named(client):
    X = _X()
    X[4, 75] = np.nan  # chunk 2 holds examples 60..89
    model = MODELS["mlp"](12)
    before = _params(model)
    with pytest.raises(DataError, match=r"chunk 2 of X \(examples 60\.\.89\).*feature 4, example 75"):
        fit(model, X, _Y("mlp", _X()), client=client, epochs=3)
    assert all(np.array_equal(p, q) for p, q in zip(before, _params(model))) and model.epochs_trained == 0


def test_bad_labels_name_their_chunk(client):
    X = _X()
    Y = _Y("logreg", X)
    Y[0, 100] = 3
    with pytest.raises(DataError, match=r"chunk 3 of Y \(examples 90\.\.102\).*0 or 1"):
        fit(MODELS["logreg"](12), X, Y, client=client, epochs=3)


def test_divergence_leaves_the_parameters(client):
    X = _X() * np.float32(1e30)  # logits overflow float32
    model = nnx.MLP([12, 16, 1], seed=0)
    before = _params(model)
    with pytest.raises(nnx.TrainingDivergedError, match=r"at epoch \d+"):
        fit(model, X, _Y("mlp", _X()), client=client, epochs=20, lr=10.0, epochs_ahead=4)
    assert all(np.array_equal(p, q) for p, q in zip(before, _params(model))) and model.epochs_trained == 0


# -------------------------------------------------------------- history and callbacks
def test_history_every_callback_and_validation(client):
    X = _X()
    Y = _Y("mlp", X)
    ref, ref_history = _reference(lambda: MODELS["mlp"](12), X, Y, epochs=10, lr=0.3, history_every=3)
    model = MODELS["mlp"](12)
    history = fit(model, X, Y, client=client, epochs=10, lr=0.3, history_every=3, epochs_ahead=4)
    assert history.epoch == ref_history.epoch == [3, 6, 9, 10] and history.loss == ref_history.loss
    assert _same(model, ref)

    seen = []

    def stop_at_8(epoch, params, history):
        seen.append(epoch)
        return epoch == 8

    stopped = MODELS["mlp"](12)
    h = fit(
        stopped, X, Y, client=client, epochs=20, lr=0.3, history_every=3, epochs_ahead=4, callback=stop_at_8
    )
    assert seen == [4, 8] and h.epoch == [3, 6, 8] and h.epochs == 8 and stopped.epochs_trained == 8

    validated = MODELS["mlp"](12)
    h = fit(
        validated,
        X,
        Y,
        client=client,
        epochs=6,
        lr=0.3,
        history_every=2,
        validation_data=(X.compute(), Y.compute()),
    )
    assert h.epoch == [2, 4, 6] and len(h.val_loss) == 3
    assert h.val_loss[-1] == pytest.approx(validated.evaluate(X.compute(), Y.compute())["loss"], rel=1e-6)


# --------------------------------------------------------------------------- faults
def _kill_one_worker(client):
    pids = client.run(os.getpid)
    os.kill(sorted(pids.values())[0], signal.SIGKILL)


def _fit_with_a_kill(client, model, X, Y, after=0.05, **kw):
    """fit in a thread; at the first synchronisation a timer kills a worker process while
    the next window of epochs runs. Returns the History or the exception raised."""
    out = {}

    def callback(epoch, params, history):
        if epoch == kw["epochs_ahead"]:
            threading.Timer(after, _kill_one_worker, args=(client,)).start()

    def run():
        try:
            out["history"] = fit(model, X, Y, client=client, callback=callback, **kw)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "fit hung after a worker was killed"
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker
    return out


def _fault_data():
    X = _X(m=4000, chunk=1000, n=200, seed=21)
    return X, (X[:1] + X[1:2] > 0).astype(np.int64)


def test_a_worker_killed_mid_fit_gives_the_same_parameters_or_a_clear_error(client):
    X, Y = _fault_data()
    make = lambda: nnx.MLP([200, 16, 1], seed=5)  # noqa: E731
    ref, _ = _reference(make, X, Y, epochs=30, lr=0.1)
    model = make()
    before = _params(model)
    out = _fit_with_a_kill(client, model, X, Y, epochs=30, lr=0.1, epochs_ahead=5)
    if "error" in out:  # allowed: a clear nnx error and the model untouched
        assert isinstance(out["error"], WorkerLostError), repr(out["error"])
        assert all(np.array_equal(p, q) for p, q in zip(before, _params(model)))
    else:  # the usual outcome: Dask recomputed the lost chunks, the window was redone
        assert _same(model, ref)
        assert out["history"].epochs == 30
        assert "redone after lost workers" in out["history"].backend_reason  # it did recover


def test_when_recovery_is_exhausted_the_error_is_clear_and_the_model_untouched(client, monkeypatch):
    monkeypatch.setattr(_Windows, "MAX_RESUBMITS", 0)
    X, Y = _fault_data()
    model = nnx.MLP([200, 16, 1], seed=5)
    before = _params(model)
    out = _fit_with_a_kill(client, model, X, Y, epochs=200, lr=0.1, epochs_ahead=5)
    assert isinstance(out.get("error"), WorkerLostError), out
    assert "left as they were" in str(out["error"])
    assert all(np.array_equal(p, q) for p, q in zip(before, _params(model))) and model.epochs_trained == 0
