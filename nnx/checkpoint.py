"""The checkpoint format: what a model file holds besides the model, so that training can go
on as if never stopped - the optimizer state (moments, step and epoch clocks, dropout key,
early stopping's progress and best parameters), the History so far, and the run
configuration of ``nnx train``.

A checkpoint is an ordinary nnx model file (``nnx.io``) whose ``extra`` JSON holds
``{"training": TrainingState.json(), "history": History.to_dict(), "run": {...}}`` and
whose state arrays hold the optimizer's per-parameter arrays. ``Sequential.save(path,
optimizer_state=True)`` and ``nnx train``'s checkpoints both write it with
``checkpoint_parts``; ``nnx.load`` and ``nnx train --resume`` both read it with
``read_checkpoint_parts``. Everything read is checked: a malformed part is a ValueError
(the callers turn it into ``ModelFormatError`` or a one-line CLI error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .history import LIST_FIELDS, History
from .optim import TrainingState


@dataclass
class CheckpointState:
    """The training state a model file carries: each part None (or empty) when absent."""

    training: TrainingState | None = None
    history: History | None = None
    run: dict[str, Any] = field(default_factory=dict)  # nnx train's own fields


def checkpoint_parts(
    training: TrainingState | None,
    history: History | None = None,
    run: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """(extra JSON, state arrays) to pass to ``nnx.io.write_model_file``."""
    extra: dict[str, Any] = dict(run or {})
    arrays: dict[str, list[np.ndarray]] = {}
    if training is not None:
        extra["training"] = training.json()
        arrays = training.arrays()
    if history is not None:
        extra["history"] = history.to_dict()
    return extra, arrays


def read_checkpoint_parts(extra: Any, arrays: dict[str, list[np.ndarray]]) -> CheckpointState:
    """The checked training state of a model file's ``extra`` JSON and state arrays;
    ValueError naming the malformed part."""
    if extra is None:
        return CheckpointState()
    if not isinstance(extra, dict):
        raise ValueError("the checkpoint state is not a JSON object")
    training = read_training(extra, arrays)
    history = None
    if "history" in extra:
        history = history_from_dict(extra["history"])
        if history is None:
            raise ValueError("the history is malformed")
    run = {k: v for k, v in extra.items() if k not in ("training", "history")}
    return CheckpointState(training, history, run)


def read_training(extra: dict[str, Any], arrays: dict[str, list[np.ndarray]]) -> TrainingState | None:
    """The optimizer state in a checkpoint's ``extra`` JSON and state arrays (None where
    it has none: checkpoints of nnx before optimizers); ValueError when malformed."""
    if "training" not in extra:
        return None
    try:
        return TrainingState.from_json(extra["training"], arrays)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the optimizer state is malformed: {exc}") from None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def history_from_dict(data: Any) -> History | None:
    """A History from checkpoint JSON, or None if any field has the wrong type or length."""
    if not isinstance(data, dict):
        return None
    try:
        history = History.from_dict(data)
    except TypeError:
        return None
    for name in LIST_FIELDS:
        values = getattr(history, name)
        if not isinstance(values, list) or not all(_number(v) for v in values):
            return None
    n = len(history.epoch)
    if not all(isinstance(e, int) for e in history.epoch) or not n == len(history.loss) == len(
        history.accuracy
    ):
        return None
    # the optional per-epoch lists are empty or one entry per recorded epoch
    if any(len(getattr(history, name)) not in (0, n) for name in LIST_FIELDS[3:]):
        return None
    if len(history.val_loss) != len(history.val_accuracy):
        return None
    checks = {
        "backend": lambda v: isinstance(v, str),
        "backend_reason": lambda v: isinstance(v, str),
        "dtype": lambda v: isinstance(v, str),
        "stop_reason": lambda v: isinstance(v, str),
        "epochs": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "lr": lambda v: v is None or (_number(v) and math.isfinite(v)),
        "seconds": lambda v: _number(v) and math.isfinite(v),
        "first_epoch_seconds": lambda v: _number(v) and math.isfinite(v),
        "l2": lambda v: _number(v) and math.isfinite(v),
        "batch_size": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "optimizer": lambda v: v is None or isinstance(v, dict),
        "schedule": lambda v: v is None or isinstance(v, dict),
        "early_stopping": lambda v: v is None or isinstance(v, dict),
        "class_weight": lambda v: v is None or (isinstance(v, list) and all(_number(w) for w in v)),
        "warm_start": lambda v: isinstance(v, bool),
        "stopped_epoch": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "best_epoch": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    }
    if not all(check(getattr(history, name)) for name, check in checks.items()):
        return None
    return history
