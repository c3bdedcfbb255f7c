"""The one training engine: every way to fit is a validated request, a solver and a gradient
source, and one shared finish.

``Sequential.fit``, ``nnx.distributed.fit``, ``fit_chunked_locally``, L-BFGS, the
scikit-learn estimator and ``nnx train`` all come here:

1. ``check_options`` validates every option once (the same checks and messages whatever
   the front end);
2. ``check_supported`` refuses, before any work and in one line, an option that the chosen
   solver on the chosen gradient source cannot honour (``NOT_SUPPORTED`` is the one table of
   such rules; nothing is ever ignored silently);
3. the solver runs on its source (``RUNNERS``) and returns a ``FitResult``;
4. ``finish`` checks the result, then hands it to ``model.commit_fit`` under the model's
   lock - the only way a fit writes a model's parameters.

Solvers: ``"steps"`` (the step loop: full batch, mini-batches or streamed batches, any
step optimizer) and ``"lbfgs"`` (scipy's L-BFGS-B). Gradient sources: ``"local"`` (X in
this process's memory, on one backend), ``"chunked"`` (column chunks of X in this process,
their gradient sums added in chunk order) and ``"dask"`` (the same chunks on Dask workers).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import numpy as np

from ..callbacks import check_early_stopping
from ..history import History
from ..optim import SGD, Optimizer
from ..schedules import check_schedule
from ..validation import check_dtype, check_positive
from .divergence import diverged
from .request import FitOptions, FitResult, check_l2, check_validation_pair

SOLVERS = ("steps", "lbfgs")
SOURCES = ("local", "chunked", "dask")
# Every option of a fit, as the refusal rules and the option-matrix test name them.
# "optimizer:<kind>" names each kind of step optimizer; "dropout" is a model with Dropout layers.
STEP_OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
OPTIONS = (
    *(f"optimizer:{kind}" for kind in STEP_OPTIMIZERS),
    "lr",
    "batch_size",
    "l2",
    "schedule",
    "early_stopping",
    "class_weight",
    "sample_weight",
    "dropout",
    "validation_data",
    "callback",
    "history_every",
    "seed",
    "dtype",
    "warm_start",
)

_LBFGS_WHY = {
    "lr": "L-BFGS chooses each step by its line search",
    "schedule": "L-BFGS chooses each step by its line search",
    "batch_size": "L-BFGS minimises the full-batch objective",
    "early_stopping": "L-BFGS stops at the optimum (set its tol, or epochs to cap the iterations)",
    "warm_start": "L-BFGS keeps no state between fits (its memory starts empty each fit)",
    "dropout": "L-BFGS needs a deterministic objective and dropout draws new masks every step",
    "history_every": "L-BFGS records every iteration",
}
_CHUNK_WHY = {
    "batch_size": (
        "chunked and Dask training are full-batch (exact gradient sums over all chunks); "
        "for mini-batches use model.fit on in-memory X"
    ),
}
# (solver, source) -> {option: why it cannot apply}; an option absent here works.
NOT_SUPPORTED: dict[tuple[str, str], dict[str, str]] = {
    ("steps", "local"): {},
    ("steps", "chunked"): dict(_CHUNK_WHY),
    ("steps", "dask"): dict(_CHUNK_WHY),
    ("lbfgs", "local"): dict(_LBFGS_WHY),
    ("lbfgs", "chunked"): dict(_LBFGS_WHY),
    ("lbfgs", "dask"): dict(_LBFGS_WHY),
}
SOURCE_LABELS = {"local": "model.fit", "chunked": "fit_chunked_locally", "dask": "nnx.distributed.fit"}
SOLVER_LABELS = {"steps": "the step loop", "lbfgs": "nnx.LBFGS"}


def _is_lbfgs(optimizer: Any) -> bool:
    from .lbfgs import LBFGS

    return isinstance(optimizer, LBFGS)


def check_options(
    *,
    epochs: Any = 100,
    lr: Any = None,
    optimizer: Any = None,
    l2: Any = 0.0,
    schedule: Any = None,
    early_stopping: Any = None,
    class_weight: Any = None,
    sample_weight: Any = None,
    warm_start: Any = False,
    validation_data: Any = None,
    batch_size: Any = None,
    backend: Any = None,
    seed: Any = None,
    dtype: Any = "float32",
    verbose: Any = False,
    history_every: Any = 1,
    callback: Any = None,
) -> FitOptions:
    """Every fit option checked once, with the same messages whatever the front end."""
    epochs = check_positive(epochs, "epochs", int)
    if optimizer is not None and not isinstance(optimizer, Optimizer) and not _is_lbfgs(optimizer):
        raise TypeError(
            "optimizer must be an nnx optimizer (nnx.SGD, nnx.RMSprop, nnx.Adam, nnx.AdamW) or "
            f"nnx.LBFGS, got {type(optimizer).__name__}"
        )
    if isinstance(optimizer, Optimizer) and lr is not None:
        raise ValueError(
            f"give the learning rate either as lr= or in the optimizer, not both (lr={lr!r}, "
            f"optimizer={optimizer!r})"
        )
    if optimizer is None:
        optimizer = SGD(lr=check_positive(0.01 if lr is None else lr, "lr"))
    elif lr is not None:
        lr = check_positive(lr, "lr")
    l2 = check_l2(l2)
    schedule = check_schedule(schedule)
    early_stopping = check_early_stopping(early_stopping)
    if early_stopping is not None and validation_data is None:
        raise ValueError("early_stopping watches the validation data: pass validation_data=(X_val, Y_val)")
    if not isinstance(warm_start, (bool, np.bool_)):
        raise TypeError(f"warm_start must be True or False, got {warm_start!r}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer, np.random.Generator))
    ):
        raise TypeError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    return FitOptions(
        epochs=epochs,
        optimizer=optimizer,
        lr=lr,
        l2=l2,
        schedule=schedule,
        early_stopping=early_stopping,
        class_weight=class_weight,
        sample_weight=sample_weight,
        warm_start=bool(warm_start),
        validation_data=check_validation_pair(validation_data),
        history_every=check_positive(history_every, "history_every", int),
        batch_size=None if batch_size is None else check_positive(batch_size, "batch_size", int),
        backend=backend,
        seed=seed,
        dtype=check_dtype(dtype),
        verbose=bool(verbose),
        callback=callback,
    )


# every keyword a fit takes, whatever its front end (check_options's parameters)
FIT_KEYWORDS = tuple(inspect.signature(check_options).parameters)


def optimizer_kind(optimizer: Optimizer) -> str:
    """The option-matrix name of a step optimizer (one of ``STEP_OPTIMIZERS``)."""
    cfg = optimizer.config()
    name = cfg["name"].lower()
    if name == "sgd":
        if cfg.get("nesterov"):
            return "nesterov"
        return "momentum" if cfg.get("momentum") else "sgd"
    return name


def given_options(model: Any, opts: FitOptions) -> list[str]:
    """The options of ``opts`` (and the model) that are set away from their defaults."""
    given = []
    if opts.solver == "steps":
        kind = optimizer_kind(opts.optimizer)
        if kind != "sgd":
            given.append(f"optimizer:{kind}")
    checks = {
        "lr": opts.lr is not None,
        "batch_size": opts.batch_size is not None,
        "l2": opts.l2 != 0.0,
        "schedule": opts.schedule is not None,
        "early_stopping": opts.early_stopping is not None,
        "class_weight": opts.class_weight is not None,
        "sample_weight": opts.sample_weight is not None,
        "dropout": any(blk.dropout for blk in model.blocks),
        "validation_data": opts.validation_data is not None,
        "callback": opts.callback is not None,
        "history_every": opts.history_every != 1,
        "seed": opts.seed is not None,
        "dtype": opts.dtype != "float32",
        "warm_start": opts.warm_start,
    }
    return given + [name for name, set_ in checks.items() if set_]


def check_supported(solver: str, source: str, given: list[str]) -> None:
    """The one rule: refuse, in one line naming the options and the solver, what ``solver``
    on ``source`` cannot honour (``NOT_SUPPORTED``)."""
    where = f"{SOLVER_LABELS[solver]} in {SOURCE_LABELS[source]}"
    table = NOT_SUPPORTED[solver, source]
    refused = [name for name in given if name in table]
    if refused:
        reasons = "; ".join(f"{name}: {table[name]}" for name in refused)
        verb, them = ("do", "them") if len(refused) > 1 else ("does", "it")
        raise ValueError(f"{', '.join(refused)} {verb} not apply to {where} ({reasons}); leave {them} out")


def finish(model: Any, result: FitResult) -> History:
    """The end every fit shares: the parameters checked finite, then committed to the
    model (``model.commit_fit``) with the history and optimizer state."""
    history = result.history
    for i, (W, b) in enumerate(result.params):
        for name, arr in (("W", W), ("b", b)):
            if not np.isfinite(arr).all():
                raise diverged(
                    f"layer {i} {name} became "
                    f"{'NaN' if np.isnan(arr).any() else 'inf'} by the end of epoch {history.epochs}",
                    lr=history.lr,
                    cause="nan" if np.isnan(arr).any() else "inf",
                )
    model.commit_fit(
        result.params,
        history,
        backend=result.backend,
        dtype=result.dtype,
        training_state=result.training_state,
    )
    return history


def run(model: Any, X: Any, Y: Any, source: Any, **options: Any) -> History:
    """Validate a fit, refuse what its solver and source cannot honour, run it, finish it.

    ``source`` is ``"local"`` or a source object with a ``name`` (``"chunked"`` or
    ``"dask"``) and a ``fit(model, X, Y, opts)`` method returning a ``FitResult``.
    """
    name = source if isinstance(source, str) else source.name
    unknown = sorted(set(options) - set(FIT_KEYWORDS))
    if unknown:
        guess = difflib.get_close_matches(unknown[0], FIT_KEYWORDS, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else f"; the options are {', '.join(FIT_KEYWORDS)}"
        raise TypeError(f"{SOURCE_LABELS[name]}() got an unexpected keyword argument {unknown[0]!r}{hint}")
    opts = check_options(**options)
    check_supported(opts.solver, name, given_options(model, opts))
    with model.fit_lock:
        if name == "local":
            if opts.solver == "lbfgs":
                from .lbfgs import fit_local_lbfgs

                result = fit_local_lbfgs(model, X, Y, opts)
            else:
                from .steploop import fit_local

                result = fit_local(model, X, Y, opts)
        else:
            result = source.fit(model, X, Y, opts)
        return finish(model, result)
