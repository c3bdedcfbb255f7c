"""A fit as the engine's solvers and sources receive it: the validated options
(``FitOptions``), what a solver hands back (``FitResult``), and the checks and records
every solver in this process shares (``local_data``, ``validation_arrays``,
``fit_history``). The engine (``nnx.training.engine``) builds the request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import registry
from ..callbacks import EarlyStopping
from ..history import History
from ..optim import Optimizer, TrainingState
from ..schedules import Schedule
from ..validation import check_fits_dtype, check_X, example_weights


@dataclass
class FitOptions:
    """Every option of a fit, validated (``check_options``). ``optimizer`` is a step
    optimizer (plain gradient descent is ``SGD(lr)``) or an ``nnx.LBFGS``; ``lr`` is what
    the caller gave (None: not given)."""

    epochs: int
    optimizer: Any
    lr: float | None = None
    l2: float = 0.0
    schedule: Schedule | None = None
    early_stopping: EarlyStopping | None = None
    class_weight: Any = None
    sample_weight: Any = None
    warm_start: bool = False
    validation_data: tuple[Any, Any] | None = None
    batch_size: int | None = None
    backend: Any = None
    seed: Any = None
    dtype: str = "float32"
    verbose: bool = False
    history_every: int = 1
    callback: Callable[..., Any] | None = None

    @property
    def solver(self) -> str:
        return "steps" if isinstance(self.optimizer, Optimizer) else "lbfgs"

    @property
    def base_lr(self) -> float:
        """The step optimizer's learning rate (a schedule scales it per epoch)."""
        return float(self.optimizer.lr)


@dataclass
class FitResult:
    """What a solver hands to ``finish``: host parameters in the compute dtype, the
    optimizer state to continue from (None for L-BFGS), the fit's History."""

    params: list[tuple[np.ndarray, np.ndarray]]
    history: History
    backend: str
    dtype: str
    training_state: TrainingState | None = None


def check_l2(l2: Any) -> float:
    """The L2 strength, checked against the option registry's range (>= 0)."""
    return registry.check("l2", l2)


def check_validation_pair(validation_data: Any) -> tuple[Any, Any] | None:
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError("validation_data must be a pair (X_val, Y_val)")
    return validation_data[0], validation_data[1]


@dataclass
class LocalData:
    """A local fit's data, checked: X (n_x, m) fit for the compute dtype, labels (1, m) or
    one-hot (K, m), a weight per example (m,) or None, the per-class weights or None, and
    the checked validation pair or None."""

    X: np.ndarray
    Y: np.ndarray
    weights: np.ndarray | None
    per_class: np.ndarray | None
    validation: tuple[np.ndarray, np.ndarray] | None


def local_data(model: Any, X: Any, Y: Any, opts: FitOptions) -> LocalData:
    """X, Y, weights and validation data of a fit in this process, checked once."""
    X = check_fits_dtype(check_X(X, model.n_features), opts.dtype)
    Y = model.check_labels(Y, X.shape[1])
    weights, per_class = example_weights(
        Y, model.n_classes, opts.class_weight, opts.sample_weight, regression=model.is_regression
    )
    return LocalData(X, Y, weights, per_class, validation_arrays(model, opts))


def validation_arrays(model: Any, opts: FitOptions) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation pair (X_val, Y_val) checked against the model, or None."""
    if opts.validation_data is None:
        return None
    Xv = check_fits_dtype(check_X(opts.validation_data[0], model.n_features), opts.dtype, "X_val")
    return Xv, model.check_labels(opts.validation_data[1], Xv.shape[1])


def fit_history(backend: str, reason: str, opts: FitOptions, per_class: Any = None) -> History:
    """The History a fit starts with: how and where it runs."""
    steps = opts.solver == "steps"
    return History(
        backend=backend,
        backend_reason=reason,
        dtype=opts.dtype,
        epochs=opts.epochs if steps else 0,
        lr=opts.base_lr if steps else 0.0,
        batch_size=opts.batch_size,
        optimizer=opts.optimizer.config() if steps else None,
        schedule=None if opts.schedule is None else opts.schedule.config(),
        l2=opts.l2,
        class_weight=None if per_class is None else [float(w) for w in per_class],
        early_stopping=None if opts.early_stopping is None else opts.early_stopping.config(),
        warm_start=opts.warm_start,
    )


def seeded_start(model: Any, seed: Any, key_dropout: bool) -> tuple[np.random.Generator, Any, int | None]:
    """What a fit draws from ``seed`` (None, an int, or a Generator whose state carries
    across calls), in this order whatever the source: the generator of the run (mini-batch
    order), the starting parameters (``model.start_parameters``: a model built without a
    seed is drawn anew from an int seed or from the Generator), and - with
    ``key_dropout`` - the key of the dropout masks (an int seed itself, else one draw)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    start = model.start_parameters(seed)
    key = None
    if key_dropout:
        key = int(seed) % 2**64 if isinstance(seed, (int, np.integer)) else int(rng.integers(2**63))
    return rng, start, key


def prepared_validation(net: Any, validation: tuple[np.ndarray, np.ndarray] | None) -> tuple[Any, Any] | None:
    """The checked validation pair moved to ``net``'s backend as evaluation reads it."""
    if validation is None:
        return None
    Xv, Yv = validation
    return net.prepare(Xv, for_training=False), net.ops.prepare_labels(Yv, net.dtype)
