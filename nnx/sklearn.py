"""scikit-learn estimators backed by nnx: ``NNXClassifier``.

Needs the optional extra: ``pip install 'nnx-nets[sklearn]'`` (scikit-learn >= 1.6).
Nothing else in nnx imports scikit-learn.

scikit-learn's orientation is used at this boundary: X is (m, n_features), one example
per row, y is (m,) of any labels. nnx receives ``X.T``, which for a C-ordered X is
already nnx's example-contiguous (n_x, m) layout, so no copy is made on the way in.

    from nnx.sklearn import NNXClassifier
    clf = NNXClassifier(hidden_layer_sizes=(50,), epochs=500, lr=0.01, random_state=0)
    make_pipeline(StandardScaler(), clf).fit(X, y)
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        f"nnx.sklearn needs scikit-learn >= 1.6; install it with: pip install 'nnx-nets[sklearn]' ({exc})"
    ) from exc

from . import backends, registry
from .layers import layer_from_config
from .model import MLP, LogisticRegression, Sequential, SoftmaxRegression

__all__ = ["NNXClassifier"]

# k > 2 classes train nnx's softmax output (see build_network).
MULTICLASS_SUPPORTED = True
# nnx's step optimizers by their registry names, ``lr`` their learning rate; "sgd" at
# momentum 0 is plain (mini-batch) gradient descent
OPTIMIZERS = registry.STEP_OPTIMIZERS
# the estimator's parameter names for the optimizer options nnx's API calls otherwise
_PARAMETER_NAMES = {"nesterov": "nesterovs_momentum"}


def build_network(
    n_features: int, n_classes: int, hidden_layer_sizes: Sequence[int], activation: str, seed: int
) -> Sequential:
    """The nnx model that an ``NNXClassifier`` trains for ``n_classes`` classes.

    Two classes: one sigmoid output (binary cross-entropy), as the tutorials; more: a
    softmax output of ``n_classes`` units (cross-entropy). No hidden layer is logistic or
    softmax regression (zero init); otherwise ``nnx.MLP`` with ``activation`` in the
    hidden layers, drawn from ``seed``.
    """
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes} class")
    outputs = 1 if n_classes == 2 else n_classes
    if not hidden_layer_sizes:
        if outputs == 1:
            return LogisticRegression(n_features, seed=seed)
        return SoftmaxRegression(n_features, n_classes, seed=seed)
    return MLP([n_features, *hidden_layer_sizes, outputs], hidden=activation, seed=seed)


def _model_state(model: Sequential) -> dict[str, Any]:
    """A picklable snapshot of an nnx model: architecture JSON, host NumPy parameters and
    plain-Python training record (no backend object)."""
    return {
        "config": model.config(),
        "parameters": model.parameters(),
        "metadata": dict(model.metadata),
        "history": model.history,
        "epochs_trained": model.epochs_trained,
        "last_backend": model.last_backend,
        "dtype": model.dtype,
    }


def _model_from_state(state: dict[str, Any]) -> Sequential:
    model = Sequential(
        *(layer_from_config(c) for c in state["config"]["layers"]), loss=state["config"]["loss"]
    )
    model.set_parameters(state["parameters"])
    model.metadata = dict(state["metadata"])
    model.history = state["history"]
    model.epochs_trained = state["epochs_trained"]
    model.last_backend = state["last_backend"]
    model.dtype = state.get("dtype")
    return model


@contextlib.contextmanager
def _on_backend(backend: str | None) -> Iterator[str]:
    """Resolve ``backend`` ("auto", a name, None) to the name of a ready backend. nnx
    backends are safe to share between threads, so no lock is taken."""
    yield backends.select(backend).backend.name


class NNXClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier trained by nnx on any of its backends.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(50,)
        Units per hidden layer; ``()`` is logistic regression (``nnx.LogisticRegression``,
        zero init), otherwise ``nnx.MLP`` (He init for ReLU, Xavier otherwise).
    activation : {"relu", "tanh", "logistic"}, default="relu"
        Hidden-layer activation ("sigmoid" is accepted as nnx's name for "logistic").
    epochs : int, default=500
        Passes over the data in each ``fit`` (scikit-learn's MLP calls it ``max_iter``; nnx
        always runs them all).
    lr : float, default=0.01
        Learning rate (scikit-learn's MLP: ``learning_rate_init``).
    batch_size : int or None, default=None
        None is full-batch gradient descent; an int gives mini-batches in an order
        shuffled from ``random_state``.
    optimizer : {"sgd", "rmsprop", "adam", "adamw"}, default="sgd"
        ``nnx.SGD``, ``nnx.RMSprop``, ``nnx.Adam`` or ``nnx.AdamW`` with learning rate
        ``lr`` (the names of ``nnx.registry.STEP_OPTIMIZERS``; scikit-learn's MLP:
        ``solver``). "sgd" at ``momentum=0`` is plain gradient descent.
    momentum : float in [0, 1), default=0.0
        Momentum of "sgd" (and "rmsprop"), as ``torch.optim``; 0 is none. Unlike
        scikit-learn's MLP (0.9), nnx's default is plain gradient descent. A nonzero value
        with another optimizer is refused, not ignored.
    nesterovs_momentum : bool, default=False
        Nesterov momentum for "sgd" (needs ``momentum > 0``); scikit-learn's name.
    l2 : float, default=0.0
        nnx's L2 penalty: ``l2 / (2 * n_samples) * sum(W**2)`` is added to the mean loss
        (biases free) - the form of scikit-learn's MLP ``alpha``, so ``l2 = alpha``.
    backend : {"auto", "numpy", "numba", "cupy"} or None, default="auto"
        nnx backend for fit and predict. None follows ``nnx.use_backend()`` and
        ``NNX_BACKEND``. The fitted parameters are host NumPy arrays whatever the backend,
        so a model trained on a GPU pickles and predicts on a machine without one
        (with ``backend="auto"``, or after ``set_params(backend="auto")``).
    dtype : {"float32", "float64"}, default="float32"
        Compute precision. X itself is used as it is when float32, float64 or uint8 (uint8
        means raw pixels, scaled by 1/255 inside nnx as everywhere in nnx); other dtypes
        are converted to float64.
    warm_start : bool, default=False
        If True, ``fit`` continues training the fitted model instead of starting afresh.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial parameters and the mini-batch order. An int ``s`` gives exactly
        the nnx run ``build_network(..., seed=s).fit(X.T, y, seed=s)``.
    verbose : bool, default=False
        nnx's progress bar and backend report.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when X has string feature names
    model_ : nnx.Sequential, the trained nnx model (X (n_x, m), as everywhere in nnx)
    n_iter_ : int, epochs trained in total
    loss_ : float, training loss of the last epoch; ``loss_curve_`` lists every epoch's
    backend_ : str, the backend that ran the last fit
    """

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (50,),
        activation: str = "relu",
        epochs: int = 500,
        lr: float = 0.01,
        batch_size: int | None = None,
        optimizer: str = registry.DEFAULT_OPTIMIZER,
        momentum: float = 0.0,
        nesterovs_momentum: bool = False,
        l2: float = 0.0,
        backend: str | None = "auto",
        dtype: str = "float32",
        warm_start: bool = False,
        random_state: Any = None,
        verbose: bool = False,
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

    # ------------------------------------------------------------ scikit-learn
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = MULTICLASS_SUPPORTED
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    # ------------------------------------------------------------------ checks
    def _architecture(self) -> tuple[tuple[int, ...], str]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise ValueError(
                f"hidden_layer_sizes must be a tuple of positive ints, got {self.hidden_layer_sizes!r}"
            ) from None
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be a tuple of positive ints, got {self.hidden_layer_sizes!r}"
            )
        return tuple(int(s) for s in sizes), registry.activation_name(self.activation)

    def _optimizer(self) -> Any:
        """The nnx optimizer the parameters describe, built (and range-checked) by
        ``nnx.registry``: a ValueError/TypeError naming the estimator's parameter."""
        options: dict[str, Any] = {"lr": self.lr}
        if not (isinstance(self.momentum, numbers.Real) and self.momentum == 0):
            options["momentum"] = self.momentum
        if not isinstance(self.nesterovs_momentum, (bool, np.bool_)):
            raise TypeError(f"nesterovs_momentum must be True or False, got {self.nesterovs_momentum!r}")
        if self.nesterovs_momentum:
            options["nesterov"] = True
        return registry.make_optimizer(
            self.optimizer,
            label=lambda name: _PARAMETER_NAMES.get(name, name),
            offered=OPTIMIZERS,
            **options,
        )

    def _check_training_params(self) -> None:
        self._optimizer()
        registry.check("l2", self.l2)

    def _seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _validate_X(self, X: Any, reset: bool, y: Any = "no_validation") -> Any:
        """X (m, n) as float32/float64/uint8 (unchanged, no copy) or converted to float64."""
        kw = dict(dtype="numeric", ensure_all_finite=True, reset=reset)
        with_y = not (isinstance(y, str) and y == "no_validation")
        if with_y:
            X, y = validate_data(self, X, y, **kw)
        else:
            X = validate_data(self, X, **kw)
        if X.dtype.name not in registry.INPUT_DTYPES:
            X = X.astype(np.float64)
        return (X, y) if with_y else X

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

    # ----------------------------------------------------------------- training
    def _train(self, model: Sequential, X: np.ndarray, y: np.ndarray, epochs: int, seed: Any) -> Sequential:
        with _on_backend(self.backend) as name:
            model.fit(
                X.T,
                y,
                epochs=epochs,
                optimizer=self._optimizer(),
                l2=float(self.l2),
                batch_size=self.batch_size,
                backend=name,
                seed=seed,
                dtype=self.dtype,
                verbose=bool(self.verbose),
            )
        return model

    def _set_fitted(self, model: Sequential, classes: np.ndarray, architecture: Any) -> None:
        self.model_ = model
        self.classes_ = classes
        self._fitted_architecture = architecture
        self.n_iter_ = model.epochs_trained
        self.loss_curve_ = list(model.history.loss) if model.history is not None else []
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        self.backend_ = model.last_backend

    @contextlib.contextmanager
    def _unchanged_on_failure(self) -> Iterator[None]:
        """A fit that raises (bad input, diverged training) leaves a fitted estimator as it
        was: nnx keeps the parameters, this restores what validate_data had reset."""
        names = ("n_features_in_", "feature_names_in_")
        saved = {name: self.__dict__[name] for name in names if name in self.__dict__}
        try:
            yield
        except BaseException:
            for name in names:
                self.__dict__.pop(name, None)
            self.__dict__.update(saved)
            raise

    def fit(self, X: Any, y: Any) -> NNXClassifier:
        """Train on X (m, n_features) and labels y (m,); returns self.

        Builds a fresh nnx model each call (same ``random_state``, same result), unless
        ``warm_start=True`` and the estimator is fitted: then training continues. If fit
        raises, a fitted estimator is left as it was.
        """
        with self._unchanged_on_failure():
            return self._fit(X, y)

    def _fit(self, X: Any, y: Any) -> NNXClassifier:
        architecture = self._architecture()
        self._check_training_params()
        warm = bool(self.warm_start) and self.__sklearn_is_fitted__()
        X, y = self._validate_X(X, reset=not warm, y=y)
        seed = self._seed()
        if warm:
            if architecture != self._fitted_architecture:
                raise ValueError(
                    "warm_start=True but hidden_layer_sizes or activation changed since the last fit; "
                    "set warm_start=False to train a new model"
                )
            classes, y_enc = self._encode_targets(y, self.classes_)
            model = self.model_  # a failed nnx fit leaves its parameters as they were
        else:
            classes, y_enc = self._encode_targets(y)
            model = build_network(X.shape[1], len(classes), *architecture, seed=seed)
        self._set_fitted(self._train(model, X, y_enc, self.epochs, seed), classes, architecture)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> NNXClassifier:
        """One more epoch on (X, y). The first call needs ``classes`` (all labels that will
        be seen) and builds the model; later calls continue training it."""
        with self._unchanged_on_failure():
            return self._partial_fit(X, y, classes)

    def _partial_fit(self, X: Any, y: Any, classes: Any) -> NNXClassifier:
        first = not self.__sklearn_is_fitted__()
        architecture = self._architecture()
        self._check_training_params()
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = self._validate_X(X, reset=first, y=y)
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
        self._set_fitted(self._train(model, X, y_enc, 1, seed), classes, architecture)
        return self

    # ---------------------------------------------------------------- inference
    def _host_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self._validate_X(X, reset=False)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (m, n_classes), columns in the order of ``classes_``."""
        X = self._host_X(X)
        with _on_backend(self.backend) as name:
            P = self.model_.predict_proba(X.T, backend=name, dtype=self.dtype)
        if P.shape[0] == 1:  # one sigmoid output: P(classes_[1])
            p = P[0]
            return np.column_stack([1 - p, p])
        return np.ascontiguousarray(P.T)

    def predict(self, X: Any) -> np.ndarray:
        """Labels (m,) taken from ``classes_``."""
        proba = self.predict_proba(X)  # checks the estimator is fitted
        return self.classes_[np.argmax(proba, axis=1)]

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits: (m,) for binary targets (positive means ``classes_[1]``), (m, n_classes)
        for more classes."""
        X = self._host_X(X)
        with _on_backend(self.backend) as name:
            Z = self.model_.logits(X.T, backend=name, dtype=self.dtype)
        return Z[0] if Z.shape[0] == 1 else np.ascontiguousarray(Z.T)

    # ---------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        """The fitted nnx model travels as its architecture and host NumPy parameters only."""
        state = super().__getstate__()
        if "model_" in state:
            state = dict(state)
            state["model_"] = _model_state(state["model_"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("model_"), dict):
            state = dict(state)
            state["model_"] = _model_from_state(state["model_"])
        super().__setstate__(state)
