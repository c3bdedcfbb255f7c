"""``NNXClassifier``: a scikit-learn classifier trained by nnx, a drop-in for
``MLPClassifier``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from sklearn.base import ClassifierMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import _check_sample_weight
except ImportError as exc:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        f"nnx.sklearn needs scikit-learn >= 1.6; install it with: pip install 'nnx-nets[sklearn]' ({exc})"
    ) from exc

from .. import registry
from .common import (
    MULTICLASS_SUPPORTED,
    NNXEstimator,
    build_network,
    documented,
    log_proba_from_logits,
    log_sigmoid,
    on_backend,
)


class NNXClassifier(ClassifierMixin, NNXEstimator):
    __doc__ = documented(
        """A scikit-learn classifier trained by nnx on any of its backends: a drop-in for
    ``MLPClassifier`` (its parameter names are accepted) with nnx's optimizers.

    Two classes train one sigmoid output, more a softmax output (``build_network``).

    Parameters
    ----------{COMMON}
    class_weight : "balanced", dict {class label: weight} or None, default=None
        Multiplies each example's weight by its class's ("balanced": the total sample
        weight / (n_classes * the class's), from the training part); the loss is then
        sum(w * loss) / sum(w), as with ``sample_weight``, so only ratios matter.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,){ATTRIBUTES}"""
    )

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
        class_weight: Any = None,
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
        self.class_weight = class_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = MULTICLASS_SUPPORTED
        return tags

    def _encode_targets(self, y: np.ndarray, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(classes, y as 0..k-1) for binary and multi-class targets."""
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y")
        if y_type not in ("binary", "multiclass"):
            raise ValueError(
                f"Only binary and multi-class targets are supported; the type of the target is {y_type!r}"
            )
        encoder = LabelEncoder().fit(y if classes is None else classes)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs examples of at least 2 classes to train, got "
                f"1 class: {encoder.classes_.tolist()}"
            )
        unknown = np.setdiff1d(y, encoder.classes_)
        if len(unknown):
            raise ValueError(
                f"y has labels {unknown.tolist()[:5]} not among classes {encoder.classes_.tolist()}"
            )
        return encoder.classes_, encoder.transform(y)

    def _class_weight(self, classes: np.ndarray) -> Any:
        """``class_weight`` as nnx takes it: "balanced", or a dict keyed by class index."""
        cw = self.class_weight
        if cw is None or (isinstance(cw, str) and cw == "balanced"):
            return cw
        if not isinstance(cw, dict):
            raise TypeError(f'class_weight must be "balanced", a dict or None, got {type(cw).__name__}')
        index = {label: i for i, label in enumerate(classes.tolist())}
        unknown = [key for key in cw if key not in index]
        if unknown:
            raise ValueError(f"class_weight names classes {unknown[:5]} not among {classes.tolist()}")
        return {index[key]: value for key, value in cw.items()}

    def _score_outputs(self, out: np.ndarray, y: np.ndarray, w: Any) -> float:
        pred = (out[0] > 0.5).astype(np.int64) if out.shape[0] == 1 else np.argmax(out, axis=0)
        return float(np.average(pred == y, weights=w))

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NNXClassifier:
        """Train on X (m, n_features) and labels y (m,); returns self.

        Builds a fresh nnx model each call (same ``random_state``, same result), unless
        ``warm_start=True`` and the estimator is fitted: then training continues, on y
        of the same classes only. ``sample_weight`` (m,) weighs each example's loss (the
        loss is sum(w * loss) / sum(w)). If fit raises, a fitted estimator is left as it was.
        """
        with self._unchanged_on_failure():
            return self._fit(X, y, sample_weight)

    def _fit(self, X: Any, y: Any, sample_weight: Any) -> NNXClassifier:
        architecture = self._architecture()
        self._check_training_params()
        warm = bool(self.warm_start) and self.__sklearn_is_fitted__()
        X, y = self._validate_X(X, reset=not warm, y=y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        seed = self._seed()
        if warm:
            if architecture != self._fitted_architecture:
                raise ValueError(
                    "warm_start=True but hidden_layer_sizes or activation changed since the last fit; "
                    "set warm_start=False to train a new model"
                )
            check_classification_targets(y)
            present = np.unique(y)
            if set(present.tolist()) != set(self.classes_.tolist()):
                raise ValueError(
                    "warm_start=True continues a model of classes "
                    f"{self.classes_.tolist()}, but y has classes {present.tolist()}: y must have "
                    "the same classes as the first fit (or set warm_start=False)"
                )
            classes, y_enc = self._encode_targets(y, self.classes_)
            model = self.model_  # a failed nnx fit leaves its parameters as they were
        else:
            classes, y_enc = self._encode_targets(y)
            model = build_network(X.shape[1], len(classes), *architecture, seed=seed)
        model = self._fit_model(
            model,
            X,
            y_enc,
            sample_weight,
            epochs=self._resolved("epochs"),
            seed=seed,
            split_seed=seed,
            class_weight=self._class_weight(classes),
            warm=warm,
        )
        self.classes_ = classes
        self._set_fitted(model, architecture)
        return self

    @available_if(NNXEstimator.partial_fit_available)
    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> NNXClassifier:
        """One more epoch on (X, y). The first call needs ``classes`` (all labels that will
        be seen) and builds the model; later calls continue training it."""
        with self._unchanged_on_failure():
            return self._partial_fit(X, y, classes, sample_weight)

    def _partial_fit(self, X: Any, y: Any, classes: Any, sample_weight: Any) -> NNXClassifier:
        first = not self.__sklearn_is_fitted__()
        architecture = self._architecture()
        self._check_training_params()
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = self._validate_X(X, reset=first, y=y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if first:
            classes, y_enc = self._encode_targets(y, classes)
            model = build_network(X.shape[1], len(classes), *architecture, seed=self._seed())
        else:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(
                    f"classes {np.unique(classes).tolist()} differ from those of the first "
                    f"partial_fit call {self.classes_.tolist()}"
                )
            classes, y_enc = self._encode_targets(y, self.classes_)
            model = self.model_
            architecture = self._fitted_architecture
        # the mini-batch order of each call is drawn from the seed and the epoch count
        seed = np.random.default_rng([self._seed(), model.epochs_trained])
        model = self._fit_model(
            model,
            X,
            y_enc,
            sample_weight,
            epochs=1,
            seed=seed,
            split_seed=0,
            class_weight=self._class_weight(classes),
            warm=not first,
            incremental=True,
        )
        self.classes_ = classes
        self._set_fitted(model, architecture)
        return self

    # ---------------------------------------------------------------- inference
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (m, n_classes), columns in the order of ``classes_``."""
        P = self._outputs(X)
        if P.shape[0] == 1:  # one sigmoid output: P(classes_[1]); P(classes_[0]) = sigmoid(-z)
            p = P[0]  # (1 - p would round to 0 in float32 once z > 17)
            return np.column_stack([np.exp(log_sigmoid(-self.decision_function(X))).astype(p.dtype), p])
        return np.ascontiguousarray(P.T)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log-probabilities (m, n_classes) in float64, from the logits (log-sigmoid /
        log-softmax): finite where a probability rounds to 0."""
        X = self._host_X(X)
        with on_backend(self.backend) as name:
            Z = self.model_.logits(X.T, backend=name, dtype=self.dtype)
        return log_proba_from_logits(Z)

    def predict(self, X: Any) -> np.ndarray:
        """Labels (m,) taken from ``classes_``."""
        proba = self.predict_proba(X)  # checks the estimator is fitted
        return self.classes_[np.argmax(proba, axis=1)]

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits: (m,) for binary targets (positive means ``classes_[1]``), (m, n_classes)
        for more classes."""
        X = self._host_X(X)
        with on_backend(self.backend) as name:
            Z = self.model_.logits(X.T, backend=name, dtype=self.dtype)
        return Z[0] if Z.shape[0] == 1 else np.ascontiguousarray(Z.T)
