"""Training that turns non-finite says what turned, and what to do: an overflow (inf) asks
for a lower learning rate; a NaN out of finite values is an invalid operation (0/0, inf -
inf), not a too-large step (one message, nnx.training.divergence, for every way to fit)."""

import numpy as np
import pytest

import nnx
import nnx.chunked
from nnx.network import DeviceNetwork
from nnx.training.steploop import check_parameters_finite


def _data():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3, 40)) * 1e3
    return X, (X[0] > 0).astype(np.int64).reshape(1, -1)


def _net(params):
    model = nnx.MLP([3, 2, 1], seed=0)
    return DeviceNetwork(nnx.get_backend("numpy"), list(model.blocks), model.loss, params, "float64")


def test_an_overflow_asks_for_a_lower_learning_rate():
    X, Y = _data()
    with pytest.raises(nnx.TrainingDivergedError, match="lower the learning rate") as info:
        nnx.MLP([3, 4, 1], seed=0).fit(X, Y, epochs=50, lr=1e305, backend="numpy", dtype="float64")
    assert "invalid operation" not in str(info.value) and "\n" not in str(info.value)


def test_a_nan_from_finite_values_is_named_an_invalid_operation():
    params = [(np.zeros((2, 3)), np.zeros((2, 1))), (np.zeros((1, 2)), np.zeros((1, 1)))]
    params[0][0][1, 2] = np.nan
    with pytest.raises(nnx.TrainingDivergedError, match="became NaN.*invalid operation such as 0/0"):
        check_parameters_finite(_net(params), 4, 0.1)
    params[0][0][1, 2] = np.inf
    with pytest.raises(nnx.TrainingDivergedError, match="became inf.*lower the learning rate"):
        check_parameters_finite(_net(params), 4, 0.1)


def test_every_way_to_fit_words_a_divergence_alike():
    X, Y = _data()
    messages = []
    for fit in (
        lambda m: m.fit(X, Y, epochs=50, lr=1e305, backend="numpy", dtype="float64"),
        lambda m: nnx.chunked.fit_chunked_locally(m, X, Y, chunks=16, epochs=50, lr=1e305, dtype="float64"),
    ):
        with pytest.raises(nnx.TrainingDivergedError) as info:
            fit(nnx.MLP([3, 4, 1], seed=0))
        messages.append(str(info.value))
    assert all(m.startswith("training diverged: ") and "left as they were" in m for m in messages)


def test_a_closed_dask_client_is_refused_before_any_work():
    distributed = pytest.importorskip(
        "distributed", reason="needs the dask extra: pip install 'nnx-nets[dask]'"
    )
    da = pytest.importorskip("dask.array")
    import nnx.distributed

    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    )
    client = distributed.Client(cluster)
    client.close()
    cluster.close()
    X, Y = _data()
    model = nnx.LogisticRegression(3)
    with pytest.raises(ValueError, match="the Dask client is closed, not running: connect a new one"):
        nnx.distributed.fit(model, da.from_array(X, chunks=(3, 20)), Y, client=client, epochs=2)
    assert model.epochs_trained == 0
