"""Model behaviour: seeding, continued training, mini-batches, uint8 input, history."""

import numpy as np
import pytest

import nnx
from nnx.datasets import synthetic_images


@pytest.fixture
def data(rng):
    X = rng.standard_normal((6, 40))
    Y = (X[0:1] + 0.5 * X[1:2] > 0).astype(float)
    return X, Y


def _same(p, q):
    return all(np.array_equal(a, c) and np.array_equal(b, d) for (a, b), (c, d) in zip(p, q))


def test_seeds_make_runs_reproducible(data):
    X, Y = data
    make = lambda: nnx.Sequential(nnx.Linear(6, 5), nnx.ReLU(), nnx.Linear(5, 1), nnx.Sigmoid())  # noqa: E731
    a, b = make(), make()
    assert not _same(a.parameters(), b.parameters())  # unseeded layers: fresh entropy
    a.fit(X, Y, epochs=5, seed=1)
    b.fit(X, Y, epochs=5, seed=1)
    assert _same(a.parameters(), b.parameters())
    c = nnx.Sequential(nnx.Linear(6, 5), nnx.ReLU(), nnx.Linear(5, 1), nnx.Sigmoid(), seed=3)
    d = nnx.Sequential(nnx.Linear(6, 5), nnx.ReLU(), nnx.Linear(5, 1), nnx.Sigmoid(), seed=3)
    assert _same(c.parameters(), d.parameters())
    np.testing.assert_array_equal(nnx.Linear(6, 5, seed=9).W, nnx.Linear(6, 5, seed=9).W)


@pytest.mark.parametrize("init", ["zeros", "uniform", "plain", "xavier", "he"])
def test_initialisers(init):
    layer = nnx.Linear(400, 300, init=init, seed=0)
    assert layer.W.shape == (300, 400) and layer.b.shape == (300, 1)
    assert not layer.b.any()
    expected_std = {
        "zeros": 0,
        "uniform": 0.01 / np.sqrt(3),
        "plain": 0.01,
        "xavier": np.sqrt(1 / 400),
        "he": np.sqrt(2 / 400),
    }[init]
    assert layer.W.std() == pytest.approx(expected_std, rel=0.02, abs=1e-12)
    if init == "uniform":
        assert np.abs(layer.W).max() <= 0.01


def test_second_fit_continues(data, backend):
    X, Y = data
    once = nnx.MLP([6, 4, 1], seed=2)
    once.fit(X, Y, epochs=20, lr=0.3, backend=backend, dtype="float64")
    twice = nnx.MLP([6, 4, 1], seed=2)
    twice.fit(X, Y, epochs=10, lr=0.3, backend=backend, dtype="float64")
    twice.fit(X, Y, epochs=10, lr=0.3, backend=backend, dtype="float64")
    for (W0, b0), (W1, b1) in zip(once.parameters(), twice.parameters()):
        np.testing.assert_allclose(W0, W1, rtol=1e-12)
        np.testing.assert_allclose(b0, b1, rtol=1e-12)
    assert twice.history.epoch[-1] == 20


def test_set_parameters_before_fit_is_honoured(data):
    X, Y = data
    model = nnx.LogisticRegression(6)
    W = np.full((1, 6), 0.5)
    model.set_parameters([(W, np.zeros((1, 1)))])
    ev = model.evaluate(X, Y, dtype="float64")
    h = model.fit(X, Y, epochs=1, lr=1e-9, dtype="float64", seed=4)
    assert h.loss[0] == pytest.approx(ev["loss"], rel=1e-12)


def test_mini_batches_seeded_and_learn(data, backend):
    X, Y = data
    runs = []
    for _ in range(2):
        model = nnx.MLP([6, 4, 1], seed=0)
        h = model.fit(X, Y, epochs=30, lr=0.5, batch_size=16, seed=5, backend=backend)
        runs.append(model.parameters())
    assert _same(*runs)
    assert h.loss[-1] < h.loss[0]
    other = nnx.MLP([6, 4, 1], seed=0)
    other.fit(X, Y, epochs=30, lr=0.5, batch_size=16, seed=6, backend=backend)
    assert not _same(runs[0], other.parameters())


def test_uint8_input_equals_scaled_float(backend):
    X, Y = synthetic_images(m=24, size=8, seed=0)
    a, b = nnx.MLP([192, 5, 1], seed=1), nnx.MLP([192, 5, 1], seed=1)
    a.fit(X, Y, epochs=5, lr=0.1, backend=backend, dtype="float64")
    b.fit(X.astype(np.float64) / 255.0, Y, epochs=5, lr=0.1, backend=backend, dtype="float64")
    for (W0, _), (W1, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(W0, W1, rtol=1e-10)
    np.testing.assert_allclose(
        a.predict_proba(X, backend=backend),
        b.predict_proba(X.astype(np.float64) / 255.0, backend=backend),
        rtol=1e-6,
    )


def test_history_every_k_and_validation(data):
    X, Y = data
    model = nnx.MLP([6, 4, 1], seed=0)
    h = model.fit(X, Y, epochs=25, lr=0.1, history_every=10, validation_data=(X, Y), backend="numpy")
    assert h.epoch == [10, 20, 25]
    assert len(h.loss) == len(h.accuracy) == len(h.val_loss) == len(h.val_accuracy) == 3
    assert h.backend == "numpy" and h.dtype == "float32"
    assert "epoch,loss,accuracy,val_loss,val_accuracy" in h.to_csv()
    assert '"backend": "numpy"' in h.to_json()


def test_predict_and_evaluate_shapes(data):
    X, Y = data
    model = nnx.MLP([6, 4, 1], seed=0)
    model.fit(X, Y, epochs=50, lr=0.5)
    proba = model.predict_proba(X)
    assert proba.shape == (1, 40) and ((proba > 0) & (proba < 1)).all()
    labels = model.predict(X, threshold=0.5)
    assert labels.shape == (1, 40) and set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (proba > 0.5).astype(int))
    assert set(model.evaluate(X, Y)) == {"loss", "accuracy"}
    with pytest.raises(ValueError, match="threshold"):
        model.predict(X, threshold=2)


def test_verbose_shows_backend(data, capsys):
    X, Y = data
    nnx.LogisticRegression(6).fit(X, Y, epochs=3, verbose=True, backend="numpy")
    out = capsys.readouterr()
    assert "backend 'numpy'" in out.out
