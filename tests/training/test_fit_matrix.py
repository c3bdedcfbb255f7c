"""The option matrix of the one training engine: every solver x gradient source x option,
enumerated from ``nnx.training.engine`` (so a new option or solver cannot skip a cell).
Each cell either works - chunked and Dask giving bitwise the parameters of each other and
the unchunked fit's to float64 rounding - or is refused before any work, in one line
naming the option and the solver."""

from __future__ import annotations

import re

import numpy as np
import pytest

import nnx
from nnx.chunked import fit_chunked_locally
from nnx.training import engine

N, M, EPOCHS, CHUNKS = 4, 24, 5, (7, 7, 10)
RNG = np.random.default_rng(7)
X = RNG.standard_normal((N, M))
Y = (X[0] - 0.5 * X[1] + 0.3 * RNG.standard_normal(M) > 0).astype(np.int64).reshape(1, -1)
XV = RNG.standard_normal((N, 10))
YV = (XV[0] - 0.5 * XV[1] > 0).astype(np.int64).reshape(1, -1)

# the value each option takes in its cell (every entry of engine.OPTIONS, no more)
OPTION_VALUES = {
    "optimizer:sgd": {"optimizer": nnx.SGD(lr=0.2)},
    "optimizer:momentum": {"optimizer": nnx.SGD(lr=0.1, momentum=0.9)},
    "optimizer:nesterov": {"optimizer": nnx.SGD(lr=0.1, momentum=0.9, nesterov=True)},
    "optimizer:rmsprop": {"optimizer": nnx.RMSprop(lr=0.01)},
    "optimizer:adam": {"optimizer": nnx.Adam(lr=0.05)},
    "optimizer:adamw": {"optimizer": nnx.AdamW(lr=0.05)},
    "lr": {"lr": 0.2},
    "batch_size": {"batch_size": 8},
    "l2": {"l2": 0.5},
    "schedule": {"schedule": nnx.schedules.Step(2, gamma=0.5)},
    "early_stopping": {
        "early_stopping": nnx.EarlyStopping(patience=2, min_delta=1.0),
        "validation_data": (XV, YV),
    },
    "class_weight": {"class_weight": "balanced"},
    "sample_weight": {"sample_weight": np.linspace(0.5, 1.5, M)},
    "dropout": {"seed": 11},  # the masks' key: the same in every run of the cell
    "validation_data": {"validation_data": (XV, YV)},
    "callback": {"callback": lambda *args: None},
    "history_every": {"history_every": 2},
    "seed": {"seed": 3},
    "dtype": {"dtype": "float32"},
    "warm_start": {"warm_start": True},
}
# the optimizer picks the solver: an L-BFGS cell takes no step optimizer
CELLS = [
    (solver, source, option)
    for solver in engine.SOLVERS
    for source in engine.SOURCES
    for option in engine.OPTIONS
    if not (solver == "lbfgs" and option.startswith("optimizer:"))
]


def test_the_value_table_covers_every_option():
    assert set(OPTION_VALUES) == set(engine.OPTIONS)
    assert {(s, src) for s, src, _ in CELLS} == {(s, src) for s in engine.SOLVERS for src in engine.SOURCES}


def _model(option: str) -> nnx.Sequential:
    return nnx.MLP([N, 5, 1], seed=0, dropout=0.2 if option == "dropout" else 0.0)


def _kwargs(solver: str, option: str) -> dict:
    kw = {"epochs": EPOCHS, "backend": "numpy", "dtype": "float64", **OPTION_VALUES[option]}
    if solver == "lbfgs":
        kw["optimizer"] = nnx.LBFGS()
    elif "optimizer" not in kw and "lr" not in kw:
        kw["optimizer"] = nnx.SGD(lr=0.2)
    return kw


def _refused(solver: str, source: str, option: str) -> bool:
    return option in engine.NOT_SUPPORTED[solver, source]


def _fit(source: str, model, kw, client=None):
    if source == "local":
        return model.fit(X, Y, **kw)
    if source == "chunked":
        return fit_chunked_locally(model, X, Y, chunks=CHUNKS, **kw)
    da = pytest.importorskip("dask.array", reason="needs the dask extra: pip install 'nnx-nets[dask]'")
    import nnx.distributed

    return nnx.distributed.fit(model, da.from_array(X, chunks=(N, CHUNKS)), Y, client=client, **kw)


def _train(source: str, option: str, kw: dict, client=None):
    model = _model(option)
    if option == "warm_start":  # a first fit leaves optimizer state for the second
        first = {k: v for k, v in kw.items() if k != "warm_start"}
        _fit(source, model, {**first, "epochs": 2}, client)
    return model, _fit(source, model, kw, client)


@pytest.fixture(scope="module")
def client():
    reason = "needs the dask extra: pip install 'nnx-nets[dask]'"
    distributed = pytest.importorskip("distributed", reason=reason)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _params(model):
    return [p for pair in model.parameters() for p in pair]


@pytest.mark.parametrize("solver, source, option", CELLS, ids=["-".join(c) for c in CELLS])
def test_cell(solver, source, option, request):
    client = request.getfixturevalue("client") if source == "dask" else None
    kw = _kwargs(solver, option)
    if _refused(solver, source, option):
        model = _model(option)
        before = _params(model)
        with pytest.raises(ValueError) as info:
            _fit(source, model, kw, client)
        message = str(info.value)
        assert "\n" not in message
        name = option.split(":")[0]
        assert re.search(rf"\b{name}\b.* not apply to {re.escape(engine.SOLVER_LABELS[solver])}", message)
        assert all(np.array_equal(a, b) for a, b in zip(before, _params(model)))
        assert model.epochs_trained == 0 and model.history is None
        return
    model, history = _train(source, option, kw, client)
    assert isinstance(history, nnx.History) and history.epochs >= 1
    assert all(np.isfinite(p).all() for p in _params(model))
    if source == "local":
        return
    # chunked (and Dask) against the unchunked fit, to rounding
    reference, ref_history = _train("local", option, kw)
    tol = 1e-5 if kw["dtype"] == "float32" else 1e-10
    for a, b in zip(_params(model), _params(reference)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert history.epoch == ref_history.epoch
    np.testing.assert_allclose(history.loss, ref_history.loss, rtol=tol)
    if source == "dask":  # bitwise the local chunked run with the same chunks
        chunked, chunked_history = _train("chunked", option, kw)
        assert all(np.array_equal(a, b) for a, b in zip(_params(model), _params(chunked)))
        assert history.loss == chunked_history.loss
