"""``NNXRegressor``: a scikit-learn regressor trained by nnx (squared error on a linear
output), a drop-in for ``MLPRegressor``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from sklearn.base import RegressorMixin
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.validation import _check_sample_weight
except ImportError as exc:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        f"nnx.sklearn needs scikit-learn >= 1.6; install it with: pip install 'nnx-nets[sklearn]' ({exc})"
    ) from exc

from .. import registry
from ..layers import ACTIVATION_BY_KIND, Linear
from ..model import Sequential
from .common import NNXEstimator, documented


def build_regressor(
    n_features: int, n_outputs: int, hidden_layer_sizes: Sequence[int], activation: str, seed: int
) -> Sequential:
    """The nnx model an ``NNXRegressor`` trains: hidden layers as ``nnx.MLP`` (He init
    for ReLU, Xavier otherwise) and a linear output of ``n_outputs`` units (Xavier; zeros
    without hidden layers: linear regression), loss "mse"."""
    sizes = [n_features, *hidden_layer_sizes]
    layers: list[Any] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        init = "he" if activation == "relu" else "xavier"
        layers += [Linear(n_in, n_out, init=init), ACTIVATION_BY_KIND[activation]()]
    if not hidden_layer_sizes:  # linear regression: zero init needs no randomness
        return Sequential(Linear(n_features, n_outputs, init="zeros", seed=0), loss="mse")
    layers.append(Linear(sizes[-1], n_outputs, init="xavier"))
    return Sequential(*layers, loss="mse", seed=seed)


class NNXRegressor(RegressorMixin, NNXEstimator):
    __doc__ = documented(
        """A scikit-learn regressor trained by nnx: squared error on a linear output, one
    target or several; a drop-in for ``MLPRegressor`` (its parameter names are accepted).

    The loss is 1/(2 n) * sum over examples and targets of (prediction - y)**2 (for one
    target scikit-learn's; for several, scikit-learn's reported loss divides by the
    number of targets too, its gradient does not). With ``sample_weight`` it is
    1/(2 sum(w)) * sum of w * (prediction - y)**2 and the L2 term divides by sum(w)
    instead of n, as in scikit-learn's ``MLPRegressor``.

    Parameters
    ----------{COMMON}
    Attributes
    ----------{ATTRIBUTES}"""
    )

    _is_regressor = True

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (50,),
        activation: str = "relu",
        epochs: int = 500,
        lr: float = 0.01,
        batch_size: int | str | None = None,
        optimizer: str = registry.DEFAULT_OPTIMIZER,
        momentum: float = 0.0,
        nesterovs_momentum: bool = False,
        l2: float = 0.0,
        backend: str | None = "auto",
        dtype: str = "float32",
        warm_start: bool = False,
        random_state: Any = None,
        verbose: bool = False,
        *,
        solver: str | None = None,
        max_iter: int | None = None,
        learning_rate_init: float | None = None,
        alpha: float | None = None,
        learning_rate: str = "constant",
        power_t: float = 0.5,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        max_fun: int = 15000,
        shuffle: bool = True,
        tol: float = 1e-4,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int | None = None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.l2 = l2
        self.backend = backend
        self.dtype = dtype
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.solver = solver
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.max_fun = max_fun
        self.shuffle = shuffle
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _targets(self, y: np.ndarray) -> np.ndarray:
        """y as float64 (m, k)."""
        y = np.asarray(y, dtype=np.float64)
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _score_outputs(self, out: np.ndarray, y: np.ndarray, w: Any) -> float:
        from sklearn.metrics import r2_score

        return float(r2_score(y, out.T, sample_weight=w))

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NNXRegressor:
        """Train on X (m, n_features) and real targets y (m,) or (m, k); returns self.

        Builds a fresh nnx model each call unless ``warm_start=True`` and the estimator
        is fitted (then training continues, with the same number of targets).
        ``sample_weight`` (m,) weighs each example's squared error (the loss is
        sum(w * loss) / sum(w)). If fit raises, a fitted estimator is left as it was.
        """
        with self._unchanged_on_failure():
            return self._fit(X, y, sample_weight, incremental=False)

    @available_if(NNXEstimator.partial_fit_available)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> NNXRegressor:
        """One more epoch on (X, y), X (m, n_features), y (m,) or (m, k), optional
        ``sample_weight`` (m,); the first call builds the model."""
        with self._unchanged_on_failure():
            return self._fit(X, y, sample_weight, incremental=True)

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> NNXRegressor:
        architecture = self._architecture()
        self._check_training_params()
        warm = (bool(self.warm_start) or incremental) and self.__sklearn_is_fitted__()
        X, y = self._validate_X(X, reset=not warm, y=y, multi_output=True, y_numeric=True)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        Y = self._targets(y)
        if warm:
            if architecture != self._fitted_architecture or Y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"warm_start=True continues a model of {self.n_outputs_} target(s) and the "
                    "same hidden_layer_sizes and activation; y or the architecture differ "
                    "(set warm_start=False to train a new model)"
                )
            model = self.model_
        else:
            model = build_regressor(X.shape[1], Y.shape[1], *architecture, seed=self._seed())
        if incremental:
            seed: Any = np.random.default_rng([self._seed(), model.epochs_trained])
            epochs = 1
        else:
            seed, epochs = self._seed(), self._resolved("epochs")
        model = self._fit_model(
            model,
            X,
            Y,
            sample_weight,
            epochs=epochs,
            seed=seed,
            split_seed=self._seed(),
            warm=warm,
            incremental=incremental,
        )
        self._set_fitted(model, architecture)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions (m,) for one target, (m, k) for k targets, as float64 (computed in
        ``dtype``)."""
        out = self._outputs(X).astype(np.float64)
        return out[0] if out.shape[0] == 1 else np.ascontiguousarray(out.T)
