"""Central-difference gradient checks in float64 for every layer/loss combination."""

import itertools

import numpy as np
import pytest
from nnx_testing import numeric_gradients

import nnx

ACT = {"sigmoid": nnx.Sigmoid, "relu": nnx.ReLU, "tanh": nnx.Tanh, None: None}


def _model(hidden, out, loss, depth):
    layers = []
    sizes = [5] + [4] * depth + [1]
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        layers.append(nnx.Linear(sizes[i], sizes[i + 1], init="xavier", seed=10 + i))
        kind = out if last else hidden
        if kind is not None:
            layers.append(ACT[kind]())
    return nnx.Sequential(*layers, loss=loss)


HIDDEN = ("sigmoid", "relu", "tanh")
# A model without a hidden layer has no hidden activation: one case (None) for depth 0.
CASES = [("sigmoid", "bce", None, 0)] + [("sigmoid", "bce", h, d) for h in HIDDEN for d in (1, 2)]
CASES += [(out, "mse", None, 0) for out in ("sigmoid", "tanh", "relu", None)]
CASES += [(out, "mse", h, 1) for out, h in itertools.product(("sigmoid", "tanh", "relu", None), HIDDEN)]


@pytest.mark.parametrize("out, loss, hidden, depth", CASES)
def test_gradients_match_finite_differences(out, loss, hidden, depth, rng):
    X = rng.standard_normal((5, 7))
    Y = (rng.random((1, 7)) > 0.5).astype(float)
    model = _model(hidden, out, loss, depth)
    # Non-zero biases keep ReLU pre-activations off the kink at exactly 0 (where central
    # differences are meaningless); a positive output bias keeps a ReLU output unit active.
    params = [(W, b + rng.uniform(0.05, 0.2, size=b.shape)) for W, b in model.parameters()]
    if out == "relu":
        params[-1] = (params[-1][0], params[-1][1] + 2.0)
    model.set_parameters(params)
    loss_value, analytic = model.gradients(X, Y, backend="numpy", dtype="float64")
    numeric = numeric_gradients(model, X, Y)
    assert np.isfinite(loss_value)
    for (dW, db), (nW, nb) in zip(analytic, numeric):
        np.testing.assert_allclose(dW, nW, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(db, nb, rtol=1e-5, atol=1e-8)
    assert any(np.abs(dW).max() > 1e-6 for dW, _ in analytic), "gradients should not all vanish"
