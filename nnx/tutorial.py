"""The one-hidden-layer tutorial's functions, by their names, on nnx's backend ops.

Learners arrive with the notebook's code in hand; these functions take the same arguments
and return the same dicts of arrays, but each step runs through an nnx backend
(``backend=``: "numpy", "numba", "cupy", "auto" or None for nnx's default), in float64:

* ``initialize_parameters(nx, nh, ny)``: {"W1" (nh, nx), "b1" (nh, 1), "W2" (ny, nh),
  "b2" (ny, 1)}: weights uniform in [-0.01, 0.01), biases zero, drawn as the notebook's
  ``np.random.seed(1); np.random.uniform(...)`` draws them (the same numbers, from a
  private ``RandomState(1)``: NumPy's global generator is left alone);
* ``forward_pass(parameters, X) -> (Yhat, cache)``: tanh hidden layer, sigmoid output
  (the classic one-hidden-layer notebook's choice); cache {"Z1", "A1", "Z2", "A2"};
* ``compute_loss(Y, Yhat)``: mean binary cross-entropy;
* ``backward_pass(parameters, cache, X, Y, Yhat) -> gradients`` {"dW1", "db1", "dW2", "db2"};
* ``update_parameters(parameters, gradients, learning_rate)``: one gradient-descent step;
* ``create_nn_model(train_X, train_Y, nh, val_X, val_Y, num_iterations, learning_rate)
  -> (parameters, history)`` with ``history["train loss"]`` and ``history["val loss"]``
  (each iteration's loss before its update);
* ``predict(parameters, X, prob_threshold=0.5)``: labels 0/1 (1, m) as int64;
* ``accuracy(observedY, predictedY)``: the fraction of equal labels.

X is (nx, m), one example per column, Y (ny, m) of 0/1; arrays come back as host NumPy
float64. The numbers are the plain NumPy notebook's to 1e-12 on every backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backends
from .validation import check_positive

DTYPE = "float64"
SEED = 1
INIT_RANGE = 0.01
Params = dict[str, np.ndarray]


def _ops(backend: Any) -> Any:
    return backends.get_backend(backend)


def _matrix(value: Any, label: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{label} must be 2-D (rows, m examples), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{label} contains NaN or inf")
    return a


def _params(parameters: Any) -> Params:
    if not isinstance(parameters, dict):
        raise TypeError(f"parameters must be a dict of W1, b1, W2, b2, got {type(parameters).__name__}")
    missing = [k for k in ("W1", "b1", "W2", "b2") if k not in parameters]
    if missing:
        raise ValueError(f"parameters lacks {', '.join(missing)}")
    P = {k: _matrix(parameters[k], k) for k in ("W1", "b1", "W2", "b2")}
    nh, nx = P["W1"].shape
    ny = P["W2"].shape[0]
    for key, shape in (("b1", (nh, 1)), ("W2", (ny, nh)), ("b2", (ny, 1))):
        if P[key].shape != shape:
            raise ValueError(f"parameters[{key!r}] has shape {P[key].shape}, expected {shape}")
    return P


def _inputs(X: Any, parameters: Params) -> np.ndarray:
    X = _matrix(X, "X")
    if X.shape[0] != parameters["W1"].shape[1]:
        raise ValueError(f"X has {X.shape[0]} rows (features); W1 expects {parameters['W1'].shape[1]}")
    return X


def _labels(Y: Any, m: int, ny: int | None = None) -> np.ndarray:
    Y = _matrix(np.reshape(Y, (1, -1)) if np.ndim(Y) == 1 else Y, "Y")
    if Y.shape[1] != m or (ny is not None and Y.shape[0] != ny):
        raise ValueError(f"Y has shape {Y.shape}; expected ({ny or Y.shape[0]}, {m})")
    return Y


def _device(ops: Any, P: Params) -> dict[str, Any]:
    return {k: ops.asarray(v, DTYPE) for k, v in P.items()}


def _host(ops: Any, D: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: ops.to_host(v) for k, v in D.items()}


def _forward(ops: Any, D: dict[str, Any], Xd: Any) -> dict[str, Any]:
    """Z1, A1, Z2, A2 on the backend: Z = W A + b, then tanh / sigmoid (``bias_activation_``)."""
    cache: dict[str, Any] = {}
    A = Xd
    for layer, activation in ((1, "tanh"), (2, "sigmoid")):
        W, b = D[f"W{layer}"], D[f"b{layer}"]
        Z = ops.bias_activation_(ops.matmul(W, A), b, None)
        A = ops.bias_activation_(
            ops.copy_(ops.empty(Z.shape, DTYPE), Z), ops.zeros(b.shape, DTYPE), activation
        )
        cache[f"Z{layer}"], cache[f"A{layer}"] = Z, A
    return cache


def _loss(ops: Any, Yd: Any, Yhat: Any) -> float:
    xp = ops.xp
    m = Yd.shape[1]
    terms = Yd * xp.log(Yhat) + (1 - Yd) * xp.log(1 - Yhat)
    return -ops.scalar(terms.sum()) / m


def _backward(
    ops: Any, D: dict[str, Any], cache: dict[str, Any], Xd: Any, Yd: Any, Yhat: Any
) -> dict[str, Any]:
    m = Xd.shape[1]
    dZ2 = Yhat - Yd
    dW2 = ops.matmul(dZ2, cache["A1"].T) / m
    db2 = ops.sum_columns(dZ2) / m
    dZ1 = ops.activation_backward_(ops.matmul(D["W2"].T, dZ2), cache["A1"], "tanh")
    dW1 = ops.matmul(dZ1, Xd.T) / m
    db1 = ops.sum_columns(dZ1) / m
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}


def _update(ops: Any, D: dict[str, Any], G: dict[str, Any], learning_rate: float) -> None:
    keys = ("W1", "b1", "W2", "b2")
    ops.sgd_update_([D[k] for k in keys], [G[f"d{k}"] for k in keys], learning_rate)


def initialize_parameters(nx: int, nh: int, ny: int) -> Params:
    """{"W1", "b1", "W2", "b2"}: weights uniform in [-0.01, 0.01), zero biases, the numbers
    of the notebook's ``np.random.seed(1)`` then ``np.random.uniform`` for W1, then W2."""
    for label, n in (("nx", nx), ("nh", nh), ("ny", ny)):
        check_positive(n, label, int)
    rng = np.random.RandomState(SEED)
    W1 = rng.uniform(-INIT_RANGE, INIT_RANGE, size=(nh, nx))
    W2 = rng.uniform(-INIT_RANGE, INIT_RANGE, size=(ny, nh))
    return {"W1": W1, "b1": np.zeros((nh, 1)), "W2": W2, "b2": np.zeros((ny, 1))}


def forward_pass(
    parameters: Params, X: Any, *, backend: Any = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(Yhat (ny, m), cache {"Z1", "A1", "Z2", "A2"}): tanh hidden layer, sigmoid output."""
    P = _params(parameters)
    ops = _ops(backend)
    cache = _host(ops, _forward(ops, _device(ops, P), ops.asarray(_inputs(X, P), DTYPE)))
    return cache["A2"], cache


def compute_loss(Y: Any, Yhat: Any, *, backend: Any = None) -> float:
    """Mean binary cross-entropy -(1/m) sum(Y log Yhat + (1 - Y) log(1 - Yhat))."""
    Yhat = _matrix(Yhat, "Yhat")
    Y = _labels(Y, Yhat.shape[1], Yhat.shape[0])
    ops = _ops(backend)
    return _loss(ops, ops.asarray(Y, DTYPE), ops.asarray(Yhat, DTYPE))


def backward_pass(
    parameters: Params, cache: dict[str, Any], X: Any, Y: Any, Yhat: Any, *, backend: Any = None
) -> dict[str, np.ndarray]:
    """Gradients {"dW1", "db1", "dW2", "db2"} of the mean cross-entropy."""
    P = _params(parameters)
    X = _inputs(X, P)
    Yhat = _matrix(Yhat, "Yhat")
    Y = _labels(Y, X.shape[1], P["W2"].shape[0])
    if "A1" not in cache:
        raise ValueError("cache must be forward_pass's (it holds A1)")
    ops = _ops(backend)
    D = _device(ops, P)
    device_cache = {"A1": ops.asarray(_matrix(cache["A1"], "cache['A1']"), DTYPE)}
    G = _backward(
        ops, D, device_cache, ops.asarray(X, DTYPE), ops.asarray(Y, DTYPE), ops.asarray(Yhat, DTYPE)
    )
    return _host(ops, G)


def update_parameters(
    parameters: Params, gradients: dict[str, Any], learning_rate: float, *, backend: Any = None
) -> Params:
    """New parameters: each one minus learning_rate times its gradient (``sgd_update_``)."""
    P = _params(parameters)
    learning_rate = check_positive(learning_rate, "learning_rate")
    ops = _ops(backend)
    D = _device(ops, P)
    G = {k: ops.asarray(_matrix(gradients[k], k), DTYPE) for k in ("dW1", "db1", "dW2", "db2")}
    _update(ops, D, G, learning_rate)
    return _host(ops, D)


def create_nn_model(
    train_X: Any,
    train_Y: Any,
    nh: int,
    val_X: Any,
    val_Y: Any,
    num_iterations: int,
    learning_rate: float,
    *,
    backend: Any = None,
) -> tuple[Params, dict[str, list[float]]]:
    """Train from ``initialize_parameters`` by ``num_iterations`` full-batch steps; the
    arrays stay on the backend throughout. history["train loss"] / ["val loss"] hold
    each iteration's losses before its update."""
    train_X, val_X = _matrix(train_X, "train_X"), _matrix(val_X, "val_X")
    train_Y = _labels(train_Y, train_X.shape[1])
    val_Y = _labels(val_Y, val_X.shape[1], train_Y.shape[0])
    if val_X.shape[0] != train_X.shape[0]:
        raise ValueError(f"val_X has {val_X.shape[0]} rows; train_X has {train_X.shape[0]}")
    num_iterations = check_positive(num_iterations, "num_iterations", int)
    learning_rate = check_positive(learning_rate, "learning_rate")
    ops = _ops(backend)
    D = _device(ops, initialize_parameters(train_X.shape[0], nh, train_Y.shape[0]))
    Xd, Yd = ops.asarray(train_X, DTYPE), ops.asarray(train_Y, DTYPE)
    Xv, Yv = ops.asarray(val_X, DTYPE), ops.asarray(val_Y, DTYPE)
    history: dict[str, list[float]] = {"train loss": [], "val loss": []}
    for _ in range(num_iterations):
        cache = _forward(ops, D, Xd)
        history["train loss"].append(_loss(ops, Yd, cache["A2"]))
        history["val loss"].append(_loss(ops, Yv, _forward(ops, D, Xv)["A2"]))
        _update(ops, D, _backward(ops, D, cache, Xd, Yd, cache["A2"]), learning_rate)
    return _host(ops, D), history


def predict(parameters: Params, X: Any, prob_threshold: float = 0.5, *, backend: Any = None) -> np.ndarray:
    """Labels (ny, m) as int64: 1 where the output probability exceeds ``prob_threshold``."""
    if not 0.0 <= float(prob_threshold) <= 1.0:
        raise ValueError(f"prob_threshold must lie in [0, 1], got {prob_threshold}")
    Yhat, _ = forward_pass(parameters, X, backend=backend)
    return (Yhat > prob_threshold).astype(np.int64)


def accuracy(observedY: Any, predictedY: Any) -> float:
    """The fraction of labels that agree (0..1)."""
    observed, predicted = np.asarray(observedY), np.asarray(predictedY)
    if observed.size != predicted.size or observed.size == 0:
        raise ValueError(
            f"observedY and predictedY must hold as many labels (got {observed.size}, {predicted.size})"
        )
    return float(np.mean(observed.reshape(-1) == predicted.reshape(-1)))


__all__ = [
    "accuracy",
    "backward_pass",
    "compute_loss",
    "create_nn_model",
    "forward_pass",
    "initialize_parameters",
    "predict",
    "update_parameters",
]
