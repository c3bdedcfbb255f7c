"""Dropout: counter-based masks that every backend draws identically, active only in fit.

The masks are checked against Random123's known-answer vectors of Philox4x32-10 and
against the plain-Python Philox in tests/reference.py; training with dropout is checked
step for step against the reference MLP using those masks, and across backends.
"""

import numpy as np
import pytest
from reference import ReferenceOptimizer, dropout_multiplier, mlp_train, philox4x32_10

import nnx
from nnx.backends import philox
from nnx.backends.philox import DropoutKey

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter, key, expected
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_matches_random123_known_answers(counter, key, expected):
    assert philox4x32_10(counter, key) == expected  # the test's own reference
    words = philox.philox4x32(np, *(np.array([c], np.uint32) for c in counter), *key)
    assert tuple(int(w[0]) for w in words) == expected


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_masks_are_the_documented_ones_and_identical_on_every_backend(backend, dtype, order):
    ops = nnx.get_backend(backend)
    n, m, rate = 7, 13, 0.3  # 91 elements: a ragged last group of four
    key = DropoutKey(seed=(5 << 32) + 12345, epoch=3, batch=2, layer=1)
    A = np.random.default_rng(0).standard_normal((n, m)).astype(dtype)
    want = A * dropout_multiplier(key.seed, 3, 2, 1, n, m, rate).astype(dtype)
    Ad = ops.xp.asarray(np.array(A, order=order))
    out = ops.xp.empty_like(Ad)
    got = ops.to_host(ops.dropout_(Ad, out, rate, key))
    np.testing.assert_array_equal(got, want)
    dA = ops.xp.asarray(np.array(A, order=order))
    np.testing.assert_array_equal(ops.to_host(ops.dropout_backward_(dA, rate, key)), want)


def test_masks_depend_on_every_part_of_the_key():
    ops = nnx.get_backend("numpy")
    base = DropoutKey(1, 1, 0, 0)
    masks = {
        k: ops.dropout_mask((30, 40), 0.5, k, "float64").tobytes()
        for k in (
            base,
            DropoutKey(2, 1, 0, 0),
            DropoutKey(1, 2, 0, 0),
            DropoutKey(1, 1, 1, 0),
            DropoutKey(1, 1, 0, 1),
        )
    }
    assert len(set(masks.values())) == 5
    kept = ops.dropout_mask((300, 400), 0.2, base, "float64")
    assert set(np.unique(kept)) == {0.0, 1.25}
    assert np.mean(kept > 0) == pytest.approx(0.8, abs=0.005)
    assert (ops.dropout_mask((5, 5), 0.0, base, "float64") == 1).all()


def test_dropped_nan_stays_nan_as_in_numpy(backend):
    ops = nnx.get_backend(backend)
    A = np.full((4, 8), np.nan)
    A[0, :] = np.inf
    with np.errstate(invalid="ignore"):
        Ad = ops.xp.asarray(np.asfortranarray(A))
        got = ops.to_host(ops.dropout_(Ad, ops.xp.empty_like(Ad), 0.5, DropoutKey(3, 1, 0, 0)))
    assert np.isnan(got[1:]).all() and (np.isinf(got[0]) | np.isnan(got[0])).all()


def _data(seed=0, n=6, m=36):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    Y = (X[0] - X[1] + 0.5 * X[2] > 0).astype(float).reshape(1, -1)
    return np.asfortranarray(X), Y


def _model(sizes, rates, seed=1):
    rng = np.random.default_rng(seed)
    params = [
        (rng.standard_normal((sizes[i + 1], sizes[i])) * 0.5, rng.standard_normal((sizes[i + 1], 1)) * 0.1)
        for i in range(len(sizes) - 1)
    ]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nnx.Linear(sizes[i], sizes[i + 1], seed=0))
        if i == len(sizes) - 2:
            layers.append(nnx.Sigmoid())
        else:
            layers += [nnx.Tanh(), nnx.Dropout(rates[i])]
    model = nnx.Sequential(*layers)
    model.set_parameters(params)
    return model, params


@pytest.mark.parametrize("batch_size", [None, 10])
def test_training_with_dropout_matches_the_reference_step_for_step(backend, batch_size):
    X, Y = _data()
    model, params = _model([6, 8, 5, 1], [0.25, 0.5])
    history = model.fit(
        X,
        Y,
        epochs=12,
        optimizer=nnx.Adam(lr=0.02),
        seed=7,
        batch_size=batch_size,
        backend=backend,
        dtype="float64",
    )
    want, losses = mlp_train(
        X,
        Y,
        params,
        ["tanh", "tanh"],
        12,
        ReferenceOptimizer("adam"),
        0.02,
        dropout=[0.25, 0.5],
        seed=7,
        batch_size=batch_size,
    )
    rtol = 1e-9 if backend == "numpy" else 1e-7
    for (W, b), (We, be) in zip(model.parameters(), want):
        np.testing.assert_allclose(W, We, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(b, be, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(history.loss, losses, rtol=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_runs_agree_across_backends(other_backend, dtype):
    X, Y = _data(seed=2, m=64)
    results = []
    for name in ("numpy", other_backend):
        model, _ = _model([6, 16, 1], [0.4], seed=3)
        model.fit(X, Y, epochs=20, lr=0.3, seed=5, batch_size=16, backend=name, dtype=dtype)
        results.append(model.parameters())
    tol = {"rtol": 1e-7, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-4, "atol": 2e-5}
    for (W0, b0), (W1, b1) in zip(*results):
        np.testing.assert_allclose(W1, W0, **tol)
        np.testing.assert_allclose(b1, b0, **tol)


def test_dropout_is_off_outside_fit_and_changes_training():
    X, Y = _data(seed=4)
    model, params = _model([6, 8, 1], [0.5])
    plain = nnx.MLP([6, 8, 1], hidden="tanh")
    plain.set_parameters(params)
    np.testing.assert_array_equal(
        model.predict_proba(X, dtype="float64"), plain.predict_proba(X, dtype="float64")
    )
    assert model.evaluate(X, Y, dtype="float64") == plain.evaluate(X, Y, dtype="float64")
    _, grads = model.gradients(X, Y)
    _, plain_grads = plain.gradients(X, Y)
    np.testing.assert_array_equal(grads[0][0], plain_grads[0][0])
    model.fit(X, Y, epochs=3, lr=0.5, seed=1, backend="numpy", dtype="float64")
    plain.fit(X, Y, epochs=3, lr=0.5, seed=1, backend="numpy", dtype="float64")
    assert not np.array_equal(model.parameters()[0][0], plain.parameters()[0][0])


def test_same_seed_same_masks_different_seed_different_masks():
    X, Y = _data(seed=5)
    runs = {}
    for seed in (1, 1, 2):
        model, _ = _model([6, 8, 1], [0.5])
        model.fit(X, Y, epochs=3, lr=0.5, seed=seed, backend="numpy", dtype="float64")
        runs.setdefault(seed, []).append(model.parameters()[0][0])
    np.testing.assert_array_equal(runs[1][0], runs[1][1])
    assert not np.array_equal(runs[1][0], runs[2][0])


def test_mlp_builder_and_saved_models_keep_dropout(tmp_path):
    model = nnx.MLP([5, 4, 3, 1], dropout=0.2, seed=0)
    assert [repr(la) for la in model.layers].count("Dropout(0.2)") == 2
    model.save(tmp_path / "d.npz")
    loaded = nnx.load(tmp_path / "d.npz")
    assert loaded.config() == model.config()


@pytest.mark.parametrize(
    "layers, error, message",
    [
        (lambda: [nnx.Dropout(0.2), nnx.Linear(3, 1), nnx.Sigmoid()], ValueError, "must follow a Linear"),
        (lambda: [nnx.Linear(3, 1), nnx.Sigmoid(), nnx.Dropout(0.2)], ValueError, "cannot follow the output"),
        (
            lambda: [
                nnx.Linear(3, 4),
                nnx.ReLU(),
                nnx.Dropout(0.1),
                nnx.Dropout(0.1),
                nnx.Linear(4, 1),
                nnx.Sigmoid(),
            ],
            ValueError,
            "one Dropout per layer",
        ),
        (
            lambda: [nnx.Linear(3, 4), nnx.Dropout(0.1), nnx.ReLU(), nnx.Linear(4, 1), nnx.Sigmoid()],
            ValueError,
            "must follow a Linear",
        ),
        (lambda: [nnx.Dropout(1.0)], ValueError, r"rate must lie in \[0, 1\)"),
        (lambda: [nnx.Dropout("0.5")], TypeError, "rate must be a number"),
    ],
)
def test_bad_dropout_stacks_are_named(layers, error, message):
    with pytest.raises(error, match=message):
        nnx.Sequential(*layers())
