"""Bad input gets a specific error that says what is wrong; a failed fit changes nothing."""

import numpy as np
import pytest

import nnx


@pytest.fixture
def model():
    return nnx.MLP([4, 3, 1], seed=0)


@pytest.fixture
def data(rng):
    return rng.standard_normal((4, 10)), (rng.random((1, 10)) > 0.5).astype(float)


@pytest.mark.parametrize(
    "make_x, error, match",
    [
        (lambda X: X.T, ValueError, "transposed"),
        (lambda X: X[:3], ValueError, "3 features"),
        (lambda X: X[0], ValueError, "2-D"),
        (lambda X: X[None], ValueError, "2-D"),
        (lambda X: X[:, :0], ValueError, "empty"),
        (lambda X: np.where(np.arange(10) == 4, np.nan, X), ValueError, "NaN/inf"),
        (lambda X: np.where(np.arange(10) == 2, np.inf, X), ValueError, "NaN/inf"),
        (lambda X: X.astype(np.int64), TypeError, "float32, float64 or uint8"),
        (lambda X: X.astype(str), TypeError, "float32, float64 or uint8"),
    ],
    ids=["transposed", "features", "1-D", "3-D", "m=0", "nan", "inf", "int64", "str"],
)
def test_bad_X(model, data, make_x, error, match):
    X, Y = data
    Xb = make_x(X)
    if Xb.ndim == 2 and Xb.shape[1] == 0:
        Y = Y[:, :0]  # an empty X with matching empty labels: the error is about X
    before = model.parameters()
    with pytest.raises(error, match=match):
        model.fit(Xb, Y, epochs=1)
    for (W0, b0), (W1, b1) in zip(before, model.parameters()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)


def test_transposed_hint_at_predict(model, data):
    X, _ = data
    with pytest.raises(ValueError, match="pass X.T"):
        model.predict(X.T)


@pytest.mark.parametrize(
    "make_y, match",
    [
        (lambda Y: Y * 2, "0 or 1"),
        (lambda Y: Y - 1, "0 or 1"),
        (lambda Y: Y[:, :7], "10 examples"),
        (lambda Y: np.vstack([Y, Y]), "shape"),
        # text labels are class names (issue 33): three of them do not fit a one-output model
        (lambda Y: np.array(["ant", "bee", "cat"] * 4)[:10], r"3 classes.*SoftmaxRegression\(4, 3\)"),
    ],
    ids=["label-2", "label-minus-1", "length", "2-rows", "str-3-classes"],
)
def test_bad_Y(model, data, make_y, match):
    X, Y = data
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(X, make_y(Y), epochs=1)


def test_y_as_1d_is_accepted(model, data):
    """Integer labels of shape (m,) train exactly like float labels of shape (1, m)."""
    X, Y = data
    twin = nnx.MLP([4, 3, 1], seed=0)
    model.fit(X, Y.ravel().astype(np.int32), epochs=2)
    twin.fit(X, Y.astype(np.float64), epochs=2)
    for (W, b), (W2, b2) in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"lr": 0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"dtype": "float16"}, "dtype"),
        ({"backend": "tpu"}, "unknown backend"),
        ({"validation_data": "nope"}, "validation_data"),
    ],
)
def test_bad_fit_arguments(model, data, kwargs, match):
    X, Y = data
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(X, Y, **kwargs)


def test_bad_validation_data_is_checked_like_training_data(model, data):
    X, Y = data
    with pytest.raises(ValueError, match="transposed"):
        model.fit(X, Y, epochs=1, validation_data=(X.T, Y))


def test_bad_architectures():
    with pytest.raises(ValueError, match="needs the model to end in a Sigmoid"):
        nnx.Sequential(nnx.Linear(3, 1), loss="bce")
    with pytest.raises(ValueError, match="takes 5 inputs"):
        nnx.Sequential(nnx.Linear(3, 4), nnx.ReLU(), nnx.Linear(5, 1), nnx.Sigmoid())
    with pytest.raises(ValueError, match="must follow a Linear"):
        nnx.Sequential(nnx.Sigmoid(), nnx.Linear(3, 1), nnx.Sigmoid())
    with pytest.raises(ValueError, match="1 output"):
        nnx.Sequential(nnx.Linear(3, 2), nnx.Sigmoid())
    with pytest.raises(ValueError, match="unknown loss"):
        nnx.Sequential(nnx.Linear(3, 1), nnx.Sigmoid(), loss="hinge")
    with pytest.raises(ValueError, match="unknown init"):
        nnx.Linear(3, 1, init="orthogonal")
    with pytest.raises(ValueError, match="positive integer"):
        nnx.Linear(0, 1)


def test_diverging_fit_raises_and_keeps_parameters(rng):
    X = rng.standard_normal((3, 20)) * 10
    Y = (rng.random((1, 20)) > 0.5).astype(float)
    model = nnx.Sequential(nnx.Linear(3, 1, seed=0), loss="mse")
    before = model.parameters()
    with pytest.raises(nnx.TrainingDivergedError, match="epoch") as info:
        model.fit(X, Y, epochs=500, lr=50.0, backend="numpy")
    assert "left as they were" in str(info.value)
    for (W0, b0), (W1, b1) in zip(before, model.parameters()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)


def test_failed_fit_on_bad_data_keeps_parameters(model, data):
    X, Y = data
    before = model.parameters()
    with pytest.raises(ValueError):
        model.fit(X, Y * 3, epochs=5, seed=7)
    for (W0, b0), (W1, b1) in zip(before, model.parameters()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)


def test_set_parameters_checks_shapes(model):
    params = model.parameters()
    with pytest.raises(ValueError, match="shape"):
        model.set_parameters([(params[0][0].T, params[0][1]), params[1]])
    with pytest.raises(ValueError, match="pairs"):
        model.set_parameters(params[:1])
    with pytest.raises(ValueError, match="NaN"):
        model.set_parameters([(params[0][0] * np.nan, params[0][1]), params[1]])


def test_masked_arrays_are_refused_where_entries_are_masked():
    """nnx would train on the values under a mask: refused in one line; an array with
    nothing masked is used as its data."""
    X = np.random.default_rng(0).standard_normal((3, 4))
    y = np.ma.array([0, 1, 2, 0], mask=[0, 0, 0, 1])
    with pytest.raises(ValueError, match="Y is a masked array with masked entries"):
        nnx.SoftmaxRegression(3, 3).fit(X, y, epochs=1)
    masked_X = np.ma.array(X, mask=np.eye(3, 4, dtype=bool))
    with pytest.raises(ValueError, match="X is a masked array with masked entries"):
        nnx.SoftmaxRegression(3, 3).fit(masked_X, [0, 1, 2, 0], epochs=1)
    model = nnx.SoftmaxRegression(3, 3)
    model.fit(np.ma.array(X), np.ma.array([0, 1, 2, 0]), epochs=2)
    np.testing.assert_array_equal(model.predict(np.ma.array(X)), model.predict(X))
