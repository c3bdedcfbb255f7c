"""Options composed on every gradient source as on the local step loop: early stopping
with a callback and with warm starts, Generator seeds, histories of fits with different
options, a divergence's cause on Dask, and a mistyped option."""

import numpy as np
import pytest

import nnx
from nnx.chunked import fit_chunked_locally

N, M = 4, 40
RNG = np.random.default_rng(11)
X = RNG.standard_normal((N, M))
Y = (X[0] - 0.5 * X[1] + 0.5 * RNG.standard_normal(M) > 0).astype(np.int64).reshape(1, -1)
XV = RNG.standard_normal((N, 15))
YV = (XV[0] - 0.5 * XV[1] > 0).astype(np.int64).reshape(1, -1)
BASE = dict(backend="numpy", dtype="float64")


def _fit(source, model, **kw):
    if source == "local":
        return model.fit(X, Y, **BASE, **kw)
    return fit_chunked_locally(model, X, Y, chunks=(13, 27), **BASE, **kw)


def _same(a, b, tol=1e-10):
    for (Wa, ba), (Wb, bb) in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(Wa, Wb, rtol=tol, atol=tol)
        np.testing.assert_allclose(ba, bb, rtol=tol, atol=tol)


def test_a_callback_stop_under_early_stopping_restores_the_best_on_chunks_too():
    kw = dict(
        epochs=20,
        optimizer=nnx.Adam(lr=1.0),
        early_stopping=nnx.EarlyStopping(patience=100),
        validation_data=(XV, YV),
        callback=lambda epoch, *_: epoch == 10,
    )
    local, chunked = nnx.MLP([N, 5, 1], seed=0), nnx.MLP([N, 5, 1], seed=0)
    hl, hc = _fit("local", local, **kw), _fit("chunked", chunked, **kw)
    assert hl.best_epoch == hc.best_epoch == 4 and hl.epochs == hc.epochs == 10
    _same(local, chunked)


def test_a_warm_started_watch_keeps_the_previous_fits_best_on_chunks_too():
    watch = dict(early_stopping=nnx.EarlyStopping(patience=100), validation_data=(XV, YV))
    models = {}
    for source in ("local", "chunked"):
        model = nnx.MLP([N, 5, 1], seed=0)
        _fit(source, model, epochs=8, optimizer=nnx.Adam(lr=0.05), **watch)
        _fit(source, model, epochs=2, optimizer=nnx.Adam(lr=3.0), warm_start=True, **watch)
        models[source] = model
    _same(models["local"], models["chunked"])
    assert models["chunked"].training_state.best is not None


@pytest.mark.parametrize("source", ["local", "chunked"])
def test_a_generator_seed_draws_the_initial_parameters(source):
    a, b = nnx.MLP([N, 5, 1]), nnx.MLP([N, 5, 1])  # built without a seed
    _fit(source, a, epochs=2, lr=0.1, seed=np.random.default_rng(4))
    _fit(source, b, epochs=2, lr=0.1, seed=np.random.default_rng(4))
    _same(a, b, 0)


def test_a_generator_seed_gives_chunks_the_local_fits_parameters_and_masks():
    kw = dict(epochs=3, optimizer=nnx.Adam(lr=0.05))
    local, chunked = nnx.MLP([N, 5, 1], dropout=0.3), nnx.MLP([N, 5, 1], dropout=0.3)
    _fit("local", local, seed=np.random.default_rng(8), **kw)
    _fit("chunked", chunked, seed=np.random.default_rng(8), **kw)
    _same(local, chunked)
    with pytest.raises(TypeError, match="seed must be an int, a numpy Generator or None"):
        _fit("chunked", nnx.MLP([N, 5, 1]), epochs=1, seed="7")


def test_histories_of_fits_with_different_options_save_and_load(tmp_path):
    model = nnx.MLP([N, 5, 1], seed=0)
    model.fit(X, Y, epochs=3, lr=0.1, validation_data=(XV, YV), **BASE)
    model.fit(X, Y, epochs=2, lr=0.1, l2=0.5, **BASE)
    history = model.history
    assert len(history.val_loss) == len(history.l2_penalty) == len(history.epoch) == 5
    assert np.isnan(history.val_loss[3:]).all() and np.isnan(history.l2_penalty[:3]).all()
    model.save(tmp_path / "m.npz", optimizer_state=True)
    loaded = nnx.load(tmp_path / "m.npz").history
    assert loaded.epoch == history.epoch and loaded.loss == history.loss
    np.testing.assert_array_equal(loaded.val_loss, history.val_loss)
    assert history.to_csv().count("\n") == 6


def test_a_mistyped_option_names_the_front_end_and_the_likely_option():
    with pytest.raises(
        TypeError,
        match=r"fit_chunked_locally\(\) got an unexpected keyword argument 'histroy_every'; "
        r"did you mean 'history_every'",
    ):
        fit_chunked_locally(nnx.LogisticRegression(N), X, Y, chunks=10, histroy_every=2)


def test_dask_names_a_too_large_step_as_chunks_do():
    distributed = pytest.importorskip(
        "distributed", reason="needs the dask extra: pip install 'nnx-nets[dask]'"
    )
    da = pytest.importorskip("dask.array")
    import nnx.distributed

    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    )
    client = distributed.Client(cluster)
    try:
        Xf = (X * 1e3).astype(np.float32)
        kw = dict(epochs=12, lr=1e6, backend="numpy")
        messages = []
        for fit in (
            lambda m: fit_chunked_locally(m, Xf, Y, chunks=(13, 27), **kw),
            lambda m: nnx.distributed.fit(m, da.from_array(Xf, chunks=(N, (13, 27))), Y, client=client, **kw),
        ):
            with pytest.raises(nnx.TrainingDivergedError) as info:
                fit(nnx.MLP([N, 5, 1], seed=0))
            messages.append(str(info.value))
        assert messages[0] == messages[1] and "lower the learning rate" in messages[0]
    finally:
        client.close()
        cluster.close()


def test_regression_on_chunks_equals_the_unchunked_fit():
    targets = np.vstack([X[0] * 2 - X[1], X[2]])  # two real-valued outputs

    def make():
        return nnx.Sequential(nnx.Linear(N, 4, seed=1), nnx.Tanh(), nnx.Linear(4, 2, seed=2), loss="mse")

    chunked, local = make(), make()
    kw = dict(epochs=5, optimizer=nnx.Adam(lr=0.05), l2=0.1, **BASE)
    fit_chunked_locally(chunked, X, targets, chunks=(13, 27), **kw)
    local.fit(X, targets, **kw)
    _same(chunked, local)
