"""L-BFGS: ``nnx.LBFGS`` (scipy's L-BFGS-B) for full-batch training to the optimum, and
``fit_lbfgs``; the solver lives in ``nnx.training.lbfgs`` (this path is kept for existing
code). ``model.fit(X, Y, optimizer=nnx.LBFGS())`` is the same fit."""

from __future__ import annotations

from typing import Any

from . import backends
from .history import History
from .training import engine
from .training.lbfgs import (
    INSTALL_HINT,
    LBFGS,
    STOP_REASONS,
    FlatObjective,
    HostObjective,
    IterationCallback,
    Objective,
    fit_local_lbfgs,
    minimise,
    stop_reason,
)
from .training.threads import BlasThreads

__all__ = [
    "INSTALL_HINT",
    "LBFGS",
    "STOP_REASONS",
    "BlasThreads",
    "FlatObjective",
    "HostObjective",
    "Objective",
    "fit_lbfgs",
    "fit_local_lbfgs",
    "minimise",
    "stop_reason",
]


def fit_lbfgs(
    model: Any,
    X: Any,
    Y: Any,
    optimizer: LBFGS,
    *,
    epochs: int,
    l2: float = 0.0,
    backend: str | backends.Backend | None = None,
    dtype: str = "float32",
    validation_data: tuple[Any, Any] | None = None,
    verbose: bool = False,
    callback: IterationCallback | None = None,
) -> History:
    """Train ``model`` (an ``nnx.Sequential``) in place by L-BFGS; returns the History.

    ``epochs`` is the most iterations (each takes one pass over X, more when its line
    search needs them); ``l2`` the L2 strength lambda of mean loss + lambda / (2 m) *
    sum ||W||^2 (biases are not penalised): lambda = 1 / C for scikit-learn's
    ``LogisticRegression(C=C)``, lambda = alpha for ``MLPClassifier(alpha=alpha)``.
    X, Y, ``backend``, ``dtype`` and ``validation_data`` are as for ``Sequential.fit``.
    The History has one entry per iteration (loss, accuracy and validation at the
    parameters it ends with, and the objective), ``stop_reason`` and ``solver``.
    ``callback(iteration, network, history)`` runs after every iteration and may return
    True to stop there. If training fails (bad input, NaN loss, Ctrl-C) the parameters are
    left exactly as they were. Not resumable mid-run (see ``LBFGS``): a second fit starts
    from the parameters the first left, with an empty memory.
    """
    if not isinstance(optimizer, LBFGS):
        raise TypeError(f"optimizer must be an nnx.LBFGS, got {optimizer!r}")

    return engine.run(
        model,
        X,
        Y,
        "local",
        optimizer=optimizer,
        epochs=epochs,
        l2=l2,
        backend=backend,
        dtype=dtype,
        validation_data=validation_data,
        verbose=verbose,
        callback=callback,
    )
