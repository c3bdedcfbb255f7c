"""What ``NNXClassifier`` and ``NNXRegressor`` share: the scikit-learn imports (the
``sklearn`` extra, checked here once), the base estimator (parameters, validation, the fit
through nnx's engine, scikit-learn's stopping rule, warm starts, pickling) and the shared
parameter documentation."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        f"nnx.sklearn needs scikit-learn >= 1.6; install it with: pip install 'nnx-nets[sklearn]' ({exc})"
    ) from exc

from .. import backends, registry
from ..layers import layer_from_config
from ..model import MLP, LogisticRegression, Sequential, SoftmaxRegression
from ..validation import class_weights

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
def on_backend(backend: str | None) -> Iterator[str]:
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


def training_losses(history: Any) -> list[float]:
    """The training loss of every epoch, L2 term included (scikit-learn's ``loss_curve_``):
    a step optimizer's ``loss`` holds the term; an L-BFGS iteration's is its ``objective``
    (its ``loss`` leaves the term out). Epochs of a warm start mix both."""
    if history is None:
        return []
    objective = history.objective
    if len(objective) != len(history.loss):  # no L-BFGS iteration recorded
        return [float(v) for v in history.loss]
    return [float(v) if math.isnan(o) else float(o) for v, o in zip(history.loss, objective)]


def log_sigmoid(z: np.ndarray) -> np.ndarray:
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
        return np.column_stack([log_sigmoid(-z), log_sigmoid(z)])
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


class NNXEstimator(BaseEstimator):
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
            if math.isinf(total):  # finite weights whose sum overflows: scaled down first
                top = float(sample_weight.max())
                sample_weight, l2, total = sample_weight / top, l2 / top, float((sample_weight / top).sum())
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
        with on_backend(self.backend) as name:
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
            losses = training_losses(model.history)
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
        self.loss_curve_ = training_losses(model.history)
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

    def partial_fit_available(self) -> bool:
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
        with on_backend(self.backend) as name:
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


def documented(text: str) -> str:
    return text.replace("{COMMON}", _COMMON_DOC).replace("{ATTRIBUTES}", _ATTRIBUTES_DOC)
