"""A model saved with its optimizer state continues ``fit(warm_start=True)`` after loading
exactly as if it had never stopped; without saved state, warm_start says the optimizer
starts fresh (nnx.checkpoint)."""

import numpy as np
import pytest

import nnx
import nnx.checkpoint
import nnx.io
from nnx.errors import ModelFormatError


def _data(m=60):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4, m))
    return X, (X[0] - X[2] > 0).astype(np.int64).reshape(1, -1)


@pytest.mark.parametrize(
    "make_optimizer", [lambda: nnx.Adam(lr=0.05), lambda: nnx.SGD(lr=0.1, momentum=0.9, nesterov=True)]
)
def test_saved_optimizer_state_continues_bitwise(tmp_path, make_optimizer):
    X, Y = _data()
    kw = dict(backend="numpy", dtype="float64", l2=0.1, schedule=nnx.schedules.Cosine(total=12))
    straight = nnx.MLP([4, 6, 1], seed=1, dropout=0.25)
    straight.fit(X, Y, epochs=12, optimizer=make_optimizer(), seed=2, **kw)

    first = nnx.MLP([4, 6, 1], seed=1, dropout=0.25)
    first.fit(X, Y, epochs=5, optimizer=make_optimizer(), seed=2, **kw)
    first.save(tmp_path / "m.npz", optimizer_state=True)
    resumed = nnx.load(tmp_path / "m.npz")
    assert resumed.training_state.step == 5 and resumed.epochs_trained == 5
    resumed.fit(X, Y, epochs=7, optimizer=make_optimizer(), warm_start=True, seed=2, **kw)

    for (Wa, ba), (Wb, bb) in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)
    assert resumed.history.loss == straight.history.loss and resumed.epochs_trained == 12


def test_without_saved_state_warm_start_says_the_optimizer_starts_fresh(tmp_path):
    X, Y = _data()
    model = nnx.LogisticRegression(4)
    model.fit(X, Y, epochs=3, optimizer=nnx.Adam(lr=0.05), backend="numpy")
    model.save(tmp_path / "plain.npz")  # parameters only
    loaded = nnx.load(tmp_path / "plain.npz")
    assert loaded.training_state is None
    with pytest.warns(UserWarning, match="optimizer starts fresh"):
        loaded.fit(X, Y, epochs=2, optimizer=nnx.Adam(lr=0.05), warm_start=True, backend="numpy")
    assert loaded.training_state.step == 2


def test_a_malformed_saved_state_is_a_model_format_error(tmp_path):
    X, Y = _data()
    model = nnx.LogisticRegression(4)
    model.fit(X, Y, epochs=3, optimizer=nnx.Adam(lr=0.05), backend="numpy")
    extra, arrays = nnx.checkpoint.checkpoint_parts(model.training_state, model.history)
    extra["training"]["step"] = -1
    nnx.io.write_model_file(tmp_path / "bad.npz", model.config(), model.parameters(), None, {}, extra, arrays)
    with pytest.raises(ModelFormatError, match="optimizer state is malformed"):
        nnx.load(tmp_path / "bad.npz")


def test_the_models_history_keeps_lbfgs_objective():
    pytest.importorskip("scipy", reason="L-BFGS needs the lbfgs extra: pip install 'nnx-nets[lbfgs]'")
    X, Y = _data()
    model = nnx.LogisticRegression(4)
    history = model.fit(X, Y, optimizer=nnx.LBFGS(), epochs=20, l2=1.0, backend="numpy", dtype="float64")
    assert history.objective and model.history.objective == history.objective
    assert model.training_state is None  # L-BFGS leaves no step-optimizer state


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_lbfgs_takes_class_and_sample_weights(backend):
    """L-BFGS minimises the weighted objective: doubling every weight changes nothing, and
    weights equal to counts give the fit on the data with those examples repeated."""
    pytest.importorskip("scipy", reason="L-BFGS needs the lbfgs extra: pip install 'nnx-nets[lbfgs]'")
    if backend == "numba":
        pytest.importorskip("numba", reason="needs the numba extra")
    X, Y = _data()
    counts = np.arange(X.shape[1]) % 3 + 1
    kw = dict(optimizer=nnx.LBFGS(tol=1e-10), epochs=200, l2=0.5, backend=backend, dtype="float64")
    weighted = nnx.LogisticRegression(4)
    weighted.fit(X, Y, sample_weight=counts.astype(float), **kw)
    repeated = nnx.LogisticRegression(4)
    idx = np.repeat(np.arange(X.shape[1]), counts)
    # both objectives are (sum of losses + l2 / 2 ||W||^2) over their own m: same minimiser
    repeated.fit(X[:, idx], Y[:, idx], **kw)
    np.testing.assert_allclose(weighted.parameters()[0][0], repeated.parameters()[0][0], rtol=1e-6, atol=1e-8)
    balanced = nnx.LogisticRegression(4)
    history = balanced.fit(X, Y, class_weight="balanced", **kw)
    assert history.class_weight is not None and len(history.class_weight) == 2
