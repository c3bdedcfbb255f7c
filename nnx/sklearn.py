"""scikit-learn estimators backed by nnx: ``NNXClassifier`` and ``NNXRegressor``, drop-ins
for scikit-learn's ``MLPClassifier`` and ``MLPRegressor``.

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
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        f"nnx.sklearn needs scikit-learn >= 1.6; install it with: pip install 'nnx-nets[sklearn]' ({exc})"
    ) from exc

from . import backends, registry
from .layers import ACTIVATION_BY_KIND, Linear, layer_from_config
from .model import MLP, LogisticRegression, Sequential, SoftmaxRegression
from .validation import class_weights

__all__ = ["NNXClassifier", "NNXRegressor"]

# k > 2 classes train nnx's softmax output (see build_network).
MULTICLASS_SUPPORTED = True
# every nnx optimizer by its registry name: the step optimizers ("sgd" at momentum 0 is
# plain (mini-batch) gradient descent) and "lbfgs", scikit-learn's word too
OPTIMIZERS = tuple(registry.OPTIMIZERS)


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


# the estimator parameters that scikit-learn's MLP names otherwise: (nnx name, its default,
# scikit-learn's name). The scikit-learn name, when given (not None), is used.
ALIASES = (
    ("epochs", 500, "max_iter"),
    ("lr", 0.01, "learning_rate_init"),
    ("optimizer", registry.DEFAULT_OPTIMIZER, "solver"),
    ("l2", 0.0, "alpha"),
)
# scikit-learn's learning-rate schedules that nnx has no equivalent of
_NO_SCHEDULE_EQUIVALENT = {
    "invscaling": "lr / t**power_t over the samples seen",
    "adaptive": "dividing lr by 5 when the loss stalls",
}
_DEFAULT_PATIENCE = 10  # scikit-learn's n_iter_no_change, used with early_stopping=True


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    """log(sigmoid(z)) = -log(1 + exp(-z)), finite for every finite z."""
    return -np.logaddexp(0.0, -z)


def log_proba_from_logits(Z: np.ndarray) -> np.ndarray:
    """Log-probabilities (m, n_classes) in float64 from nnx logits: (1, m) of a sigmoid
    output gives [log(1 - sigmoid(z)), log(sigmoid(z))] as log-sigmoids of -z and z;
    (K, m) of a softmax output gives z - logsumexp(z) per example. Never log(p): a
    probability that rounds to 0 still has its finite logarithm."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.shape[0] == 1:
        z = Z[0]
        return np.column_stack([_log_sigmoid(-z), _log_sigmoid(z)])
    top = Z.max(axis=0, keepdims=True)
    shifted = Z - top
    return np.ascontiguousarray((shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True))).T)


class _Monitor:
    """scikit-learn's MLP stopping rule, run as nnx's epoch callback.

    Every epoch: with a validation set, its score (accuracy, or R² for a regressor) joins
    ``scores``; an epoch counts as no improvement when the score is below the best so far
    plus ``tol`` (the best and its parameters are kept on any strict increase). Without
    one, the training loss counts as no improvement when above the best loss minus
    ``tol``. Training stops once more than ``patience`` epochs in a row counted so (None:
    never, nnx runs all its epochs).
    """

    def __init__(
        self,
        patience: int | None,
        tol: float,
        score: Any | None,
        best_score: float,
        best_loss: float,
    ):
        self.patience, self.tol, self.score = patience, tol, score
        self.best_score, self.best_loss = best_score, best_loss
        self.scores: list[float] = []
        self.best_params: Any = None
        self.count = 0

    def __call__(self, epoch: int, net: Any, history: Any) -> bool:
        if self.score is not None:
            value = float(self.score(net))
            self.scores.append(value)
            self.count = self.count + 1 if value < self.best_score + self.tol else 0
            if value > self.best_score:
                self.best_score = value
                self.best_params = net.host_params()
        else:
            loss = float(history.loss[-1])
            self.count = self.count + 1 if loss > self.best_loss - self.tol else 0
            self.best_loss = min(self.best_loss, loss)
        return self.patience is not None and self.count > self.patience


class _NNXEstimator(BaseEstimator):
    """What ``NNXClassifier`` and ``NNXRegressor`` share: the parameters, their mapping
    onto an nnx fit, the scikit-learn stopping rules and the fitted attributes."""

    _is_regressor = False

    # ------------------------------------------------------------ scikit-learn
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
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

    def _resolved(self, name: str) -> Any:
        """The value of the nnx parameter ``name``, or of its scikit-learn name when that
        is given (not None): scikit-learn's name wins, so tools that set it (a grid
        search over ``max_iter``) work whatever the nnx name holds."""
        for nnx_name, _, sk_name in ALIASES:
            if nnx_name == name:
                theirs = getattr(self, sk_name)
                return getattr(self, nnx_name) if theirs is None else theirs
        raise KeyError(name)

    def _solver(self) -> str:
        """The optimizer's registry name (``optimizer`` or scikit-learn's ``solver``)."""
        name = self._resolved("optimizer")
        registry.optimizer_spec(name, "solver" if self.solver is not None else "optimizer", OPTIMIZERS)
        return name

    def _optimizer(self) -> Any:
        """The nnx optimizer the parameters describe, built (and range-checked) by
        ``nnx.registry``: a ValueError/TypeError naming the estimator's parameter."""
        name = self._solver()
        label = "solver" if self.solver is not None else "optimizer"
        names = {
            "nesterov": "nesterovs_momentum",
            "optimizer": label,
            "lr": "lr" if self.learning_rate_init is None else "learning_rate_init",
        }
        options: dict[str, Any] = {}
        if not isinstance(self.nesterovs_momentum, (bool, np.bool_)):
            raise TypeError(f"nesterovs_momentum must be True or False, got {self.nesterovs_momentum!r}")
        if not (isinstance(self.momentum, numbers.Real) and self.momentum == 0):
            options["momentum"] = self.momentum
        if self.nesterovs_momentum:
            options["nesterov"] = True
        if name == "lbfgs":
            options["tol"] = self.tol
            registry.check("step_size", self.max_fun, "max_fun")
            options["max_evaluations"] = int(self.max_fun)
        else:
            options["lr"] = self._resolved("lr")
        if name in ("adam", "adamw"):
            options["betas"] = (self.beta_1, self.beta_2)
        if name in ("adam", "adamw", "rmsprop"):
            options["eps"] = self.epsilon
        return registry.make_optimizer(
            name, label=lambda key: names.get(key, key), offered=OPTIMIZERS, **options
        )

    def _schedule(self, epochs: int) -> Any:
        """The nnx schedule ``learning_rate`` names: "constant" is none; scikit-learn's
        "invscaling" and "adaptive" have no nnx equivalent and are refused."""
        text = self.learning_rate
        if text == "constant":
            return None
        if text in _NO_SCHEDULE_EQUIVALENT:
            raise ValueError(
                f"learning_rate={text!r} ({_NO_SCHEDULE_EQUIVALENT[text]}) has no nnx equivalent; "
                f"use 'constant' or an nnx schedule: {registry.SCHEDULE_FORMS}"
            )
        return registry.make_schedule(text, epochs, label="learning_rate")

    def _batch_size(self, n: int) -> int | None:
        """None (full batch) or the mini-batch size for ``n`` training examples ("auto":
        min(200, n), as scikit-learn; larger than n: the full batch)."""
        size = self.batch_size
        if size is None:
            return None
        if isinstance(size, str) and size == "auto":
            size = min(200, n)
        size = registry.check("step_size", size, "batch_size")
        if not isinstance(self.shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {self.shuffle!r}")
        if size < n and not self.shuffle:
            raise ValueError("shuffle=False: nnx always draws its mini-batches in a shuffled order")
        return size

    def _stopping(self) -> tuple[bool, int | None, float]:
        """(early_stopping, patience, tol) checked."""
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise TypeError(f"early_stopping must be True or False, got {self.early_stopping!r}")
        patience = self.n_iter_no_change
        if patience is not None:
            if isinstance(patience, float) and patience == np.inf:
                patience = None
            else:
                patience = registry.check("step_size", patience, "n_iter_no_change")
        elif self.early_stopping:
            patience = _DEFAULT_PATIENCE
        tol = registry.check("l2", self.tol, "tol")
        fraction = self.validation_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {fraction!r}")
        return bool(self.early_stopping), patience, tol

    def _check_training_params(self) -> None:
        label = "epochs" if self.max_iter is None else "max_iter"
        epochs = registry.check("step_size", self._resolved("epochs"), label)
        self._optimizer()
        self._schedule(epochs)
        registry.check("l2", self._resolved("l2"), "alpha" if self.alpha is not None else "l2")
        self._stopping()

    def _seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _validate_X(self, X: Any, reset: bool, y: Any = "no_validation", **kw: Any) -> Any:
        """X (m, n) as float32/float64/uint8 (unchanged, no copy) or converted to float64."""
        kw = dict(dtype="numeric", ensure_all_finite=True, reset=reset, **kw)
        with_y = not (isinstance(y, str) and y == "no_validation")
        if with_y:
            X, y = validate_data(self, X, y, **kw)
        else:
            X = validate_data(self, X, **kw)
        if X.dtype.name not in registry.INPUT_DTYPES:
            X = X.astype(np.float64)
        return (X, y) if with_y else X

    # ----------------------------------------------------------------- training
    def _split(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, seed: int
    ) -> tuple[Any, Any]:
        """(train, validation) parts as (X, y, sample_weight); validation None without
        early stopping. Classifiers stratify by class, as scikit-learn."""
        from sklearn.model_selection import train_test_split

        arrays = [X, y] if sample_weight is None else [X, y, sample_weight]
        stratify = None if self._is_regressor else y
        parts = train_test_split(
            *arrays, test_size=self.validation_fraction, random_state=seed, stratify=stratify
        )
        train, val = parts[0::2], parts[1::2]
        if val[0].shape[0] < 2:
            raise ValueError(
                f"early_stopping: validation_fraction={self.validation_fraction} leaves "
                f"{val[0].shape[0]} example for validation; it needs at least 2"
            )
        if sample_weight is None:
            train, val = (*train, None), (*val, None)
        return tuple(train), tuple(val)

    def _validation_score(self, X_val: np.ndarray, y_val: np.ndarray, w_val: Any) -> Any:
        """score(net): the validation accuracy (R² for a regressor) of a DeviceNetwork."""
        prepared: dict[int, Any] = {}

        def score(net: Any) -> float:
            key = id(net)
            if key not in prepared:
                prepared.clear()
                prepared[key] = net.prepare(X_val.T, for_training=False)
            out = net.ops.to_host(net.predict_proba(prepared[key])).astype(np.float64)
            return self._score_outputs(out, y_val, w_val)

        return score

    def _fit_model(
        self,
        model: Sequential,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None,
        *,
        epochs: int,
        seed: Any,
        split_seed: int,
        class_weight: Any = None,
        warm: bool,
        incremental: bool = False,
    ) -> Sequential:
        """Train ``model`` on (X, y) (y already as nnx takes it: encoded classes, or targets
        (m, k)) as the parameters say, and record scikit-learn's fitted attributes."""
        early, patience, tol = self._stopping()
        if early and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        solver = self._solver()
        lbfgs = solver == "lbfgs"
        validation = None
        if early and not lbfgs:
            (X, y, sample_weight), validation = self._split(X, y, sample_weight, split_seed)
        n = X.shape[0]
        l2 = float(self._resolved("l2"))
        if class_weight is not None:  # a class's weight multiplies its examples' sample weights
            labels, k = y.astype(np.int64), self.model_classes(model)
            if isinstance(class_weight, str):  # "balanced": total weight / (k * the class's weight)
                class_weights(class_weight, labels, k)  # every class present, or its message
                w = np.ones(n) if sample_weight is None else sample_weight
                totals = np.bincount(labels, weights=w, minlength=k)
                if not totals.all():
                    raise ValueError(
                        'class_weight="balanced" needs weight in every class; the sample weights '
                        f"of class {int(np.flatnonzero(totals == 0)[0])} (its index) are all 0"
                    )
                per_class = w.sum() / (k * totals)
            else:
                per_class = class_weights(class_weight, labels, k)
            by_class = per_class[labels]
            sample_weight = by_class if sample_weight is None else sample_weight * by_class
        if sample_weight is not None:  # scikit-learn's loss: sum(w * loss) / sum(w), L2 / sum(w)
            total = float(sample_weight.sum())
            if not total > 0:
                raise ValueError("sample_weight (times class_weight) is zero for every example")
            scale = n / total
            sample_weight, l2 = sample_weight * scale, l2 * scale
        previous_scores = list(getattr(self, "validation_scores_", None) or []) if warm else []
        best_score = self.best_validation_score_ if warm and previous_scores else -np.inf
        best_loss = self.best_loss_ if warm and getattr(self, "best_loss_", None) is not None else np.inf
        monitor = None
        options: dict[str, Any] = {}
        if not lbfgs:
            score = None if validation is None else self._validation_score(*validation)
            monitor = _Monitor(patience, tol, score, best_score, best_loss)
            options = dict(
                schedule=self._schedule(epochs),
                batch_size=self._batch_size(n),
                callback=monitor,
            )
        target = y.T if y.ndim == 2 else y
        with _on_backend(self.backend) as name:
            history = model.fit(
                X.T,
                target,
                epochs=epochs,
                optimizer=self._optimizer(),
                l2=l2,
                sample_weight=sample_weight,
                backend=name,
                seed=seed,
                dtype=self.dtype,
                verbose=bool(self.verbose),
                **options,
            )
        if monitor is not None and monitor.best_params is not None:
            model.set_parameters(monitor.best_params)  # scikit-learn keeps the best epoch's
        self.t_ = (getattr(self, "t_", 0) if warm else 0) + (0 if lbfgs else history.epochs * n)
        if validation is not None and monitor is not None:
            self.validation_scores_ = previous_scores + monitor.scores
            self.best_validation_score_ = max(self.validation_scores_) if self.validation_scores_ else None
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            losses = model.history.loss if model.history is not None else []
            self.best_loss_ = float(min(losses)) if losses else None
        return model

    @staticmethod
    def model_classes(model: Sequential) -> int:
        """The number of classes of an nnx classification model."""
        return model.n_classes

    def _set_fitted(self, model: Sequential, architecture: Any) -> None:
        self.model_ = model
        self._fitted_architecture = architecture
        self.n_iter_ = model.epochs_trained
        self.loss_curve_ = [float(v) for v in model.history.loss] if model.history is not None else []
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        self.backend_ = model.last_backend
        self.n_layers_ = len(model.blocks) + 1
        self.n_outputs_ = model.n_outputs
        self.out_activation_ = {"sigmoid": "logistic", "softmax": "softmax", None: "identity"}[
            model.blocks[-1].activation
        ]

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weights per layer in scikit-learn's orientation: (n_in, n_out) = nnx's W.T."""
        check_is_fitted(self)
        return [W.T.copy() for W, _ in self.model_.parameters()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Biases per layer as (n_out,) arrays."""
        check_is_fitted(self)
        return [b.reshape(-1) for _, b in self.model_.parameters()]

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

    def _check_partial_fit(self) -> bool:
        """partial_fit exists for the step optimizers, not L-BFGS (as scikit-learn)."""
        try:
            return self._solver() != "lbfgs"
        except (TypeError, ValueError):
            return True

    def _host_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self._validate_X(X, reset=False)

    def _outputs(self, X: Any) -> np.ndarray:
        """The nnx model's outputs (K, m) for X (m, n)."""
        X = self._host_X(X)
        with _on_backend(self.backend) as name:
            if self.model_.is_regression:
                return self.model_.predict(X.T, backend=name, dtype=self.dtype)
            return self.model_.predict_proba(X.T, backend=name, dtype=self.dtype)

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


_COMMON_DOC = """
    hidden_layer_sizes : tuple of int, default=(50,)
        Units per hidden layer; ``()`` is a model without hidden layer (zero init),
        otherwise an MLP (He init for ReLU, Xavier otherwise).
    activation : {"relu", "tanh", "logistic"}, default="relu"
        Hidden-layer activation ("sigmoid" is accepted as nnx's name for "logistic").
    epochs : int, default=500
        Epochs of each ``fit`` (``max_iter``); all of them run unless a stopping rule
        (``n_iter_no_change`` / ``early_stopping``) stops earlier. L-BFGS: iterations.
    lr : float, default=0.01
        Learning rate of the step optimizers (``learning_rate_init``).
    batch_size : int, "auto" or None, default=None
        None is full-batch gradient descent; an int gives mini-batches in an order
        shuffled from ``random_state`` ("auto": min(200, n_samples)). L-BFGS ignores it.
    optimizer : {"sgd", "rmsprop", "adam", "adamw", "lbfgs"}, default="sgd"
        nnx's optimizers by their registry names (``solver``): ``nnx.SGD`` (plain at
        ``momentum=0``; momentum and Nesterov), ``RMSprop``, ``Adam``, ``AdamW``, and
        ``nnx.LBFGS`` (full batch, to ``tol`` on the gradient, at most ``max_fun``
        passes and ``max_iter`` iterations).
    momentum : float in [0, 1), default=0.0
        Momentum of "sgd" and "rmsprop", as ``torch.optim``. Unlike scikit-learn (0.9),
        nnx's default is plain gradient descent; a nonzero value with another optimizer
        is refused, not ignored.
    nesterovs_momentum : bool, default=False
        Nesterov momentum for "sgd" (needs ``momentum > 0``).
    l2 : float, default=0.0
        L2 penalty ``l2 / (2 * n_samples) * sum(W**2)`` added to the mean loss (biases
        free): scikit-learn's ``alpha`` (with ``sample_weight``, both divide by the sum
        of the weights instead of n_samples).
    backend : {"auto", "numpy", "numba", "cupy"} or None, default="auto"
        nnx backend for fit and predict; None follows ``nnx.use_backend()``. Fitted
        parameters are host NumPy arrays whatever the backend.
    dtype : {"float32", "float64"}, default="float32"
        Compute precision. float32, float64 and uint8 X (raw pixels, scaled by 1/255
        inside nnx) are used as they are; other dtypes become float64.
    warm_start : bool, default=False
        If True, ``fit`` continues from the fitted parameters (the optimizer restarts,
        as in scikit-learn).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial parameters, the mini-batch order and the validation split.
    verbose : bool, default=False
        nnx's progress bar and backend report.
    solver, max_iter, learning_rate_init, alpha : default=None
        scikit-learn's names for ``optimizer``, ``epochs``, ``lr``, ``l2``; when given
        (not None) they are used instead of the nnx names.
    learning_rate : str, default="constant"
        "constant", or an nnx schedule of the step optimizers (``nnx.registry``): "cosine",
        "step:EPOCHS[:GAMMA]", "exponential:GAMMA", "inverse-time:RATE[:EPOCHS]".
        scikit-learn's "invscaling" and "adaptive" have no nnx equivalent (ValueError).
    power_t : float, default=0.5
        scikit-learn's exponent of "invscaling", accepted for compatibility; unused.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's and AdamW's betas and eps (epsilon also RMSprop's); unused by the others.
    max_fun : int, default=15000
        L-BFGS: at most this many loss evaluations (passes over X).
    shuffle : bool, default=True
        nnx always shuffles mini-batches; False is refused with mini-batches.
    tol : float, default=1e-4
        The improvement that counts (scikit-learn's meaning, see ``n_iter_no_change``);
        L-BFGS: its gradient tolerance.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified for a
        classifier, drawn from ``random_state``) and stop when its score (accuracy / R²)
        has not risen by ``tol`` for more than ``n_iter_no_change`` epochs in a row;
        the parameters of the best-scoring epoch are kept. Step optimizers only (L-BFGS
        ignores it, as scikit-learn). ``validation_scores_`` and
        ``best_validation_score_`` record it.
    validation_fraction : float in (0, 1), default=0.1
    n_iter_no_change : int or None, default=None
        Stop after more than this many epochs in a row without an improvement by ``tol``
        (of the validation score with ``early_stopping``, else of the training loss).
        None: with ``early_stopping`` scikit-learn's 10; without it nnx runs every epoch
        (scikit-learn's own default 10 would stop training early).
"""

_ATTRIBUTES_DOC = """
    n_features_in_, feature_names_in_ : as scikit-learn
    model_ : nnx.Sequential, the trained nnx model (X (n_x, m), as everywhere in nnx)
    coefs_, intercepts_ : lists of (n_in, n_out) weights and (n_out,) biases per layer
    n_layers_, n_outputs_, out_activation_ : as scikit-learn's MLP
    n_iter_ : int, epochs (L-BFGS: iterations) trained in total, warm starts included
    t_ : int, training examples seen by the step optimizers (n_iter_ * n_samples)
    loss_, loss_curve_ : the training loss (L2 term included) of the last and every epoch
    best_loss_ : float, the smallest of ``loss_curve_``; None with early stopping
    validation_scores_, best_validation_score_ : with early stopping, the score of every
        epoch and the best; None otherwise
    backend_ : str, the backend that ran the last fit
"""


def _doc(text: str) -> str:
    return text.replace("{COMMON}", _COMMON_DOC).replace("{ATTRIBUTES}", _ATTRIBUTES_DOC)


class NNXClassifier(ClassifierMixin, _NNXEstimator):
    __doc__ = _doc(
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

    @available_if(_NNXEstimator._check_partial_fit)
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
            return np.column_stack([np.exp(_log_sigmoid(-self.decision_function(X))).astype(p.dtype), p])
        return np.ascontiguousarray(P.T)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log-probabilities (m, n_classes) in float64, from the logits (log-sigmoid /
        log-softmax): finite where a probability rounds to 0."""
        X = self._host_X(X)
        with _on_backend(self.backend) as name:
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
        with _on_backend(self.backend) as name:
            Z = self.model_.logits(X.T, backend=name, dtype=self.dtype)
        return Z[0] if Z.shape[0] == 1 else np.ascontiguousarray(Z.T)


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


class NNXRegressor(RegressorMixin, _NNXEstimator):
    __doc__ = _doc(
        """A scikit-learn regressor trained by nnx: squared error on a linear output, one
    target or several; a drop-in for ``MLPRegressor`` (its parameter names are accepted).

    The loss is 1/(2 n) * sum over examples and targets of (prediction - y)**2 (for one
    target scikit-learn's; for several, scikit-learn's reported loss divides by the
    number of targets too, its gradient does not).

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

    def fit(self, X: Any, y: Any) -> NNXRegressor:
        """Train on X (m, n_features) and real targets y (m,) or (m, k); returns self.

        Builds a fresh nnx model each call unless ``warm_start=True`` and the estimator
        is fitted (then training continues, with the same number of targets). If fit
        raises, a fitted estimator is left as it was.
        """
        with self._unchanged_on_failure():
            return self._fit(X, y, incremental=False)

    @available_if(_NNXEstimator._check_partial_fit)
    def partial_fit(self, X: Any, y: Any) -> NNXRegressor:
        """One more epoch on (X, y); the first call builds the model."""
        with self._unchanged_on_failure():
            return self._fit(X, y, incremental=True)

    def _fit(self, X: Any, y: Any, incremental: bool) -> NNXRegressor:
        architecture = self._architecture()
        self._check_training_params()
        warm = (bool(self.warm_start) or incremental) and self.__sklearn_is_fitted__()
        X, y = self._validate_X(X, reset=not warm, y=y, multi_output=True, y_numeric=True)
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
            None,
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
