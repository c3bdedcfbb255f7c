"""The checkpoint of ``nnx train`` (``OUT/checkpoint.npz``): the model file plus the run's
state (configuration, data fingerprint, epochs done, shuffle RNG, history, optimizer
state), written atomically, and read back by ``--resume`` only for the same run on the
same data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .. import registry
from ..errors import ModelFormatError, UsageError
from ..files import printable
from ..history import LIST_FIELDS, History
from ..io import write_model_file
from ..model import Sequential, load_checkpoint
from ..optim import TrainingState
from .run_config import TRAINING_DEFAULTS, TrainConfig


def write_checkpoint(
    path: Path,
    model: Sequential,
    params: list,
    training: TrainingState,
    *,
    config: dict[str, Any],
    fingerprint: str,
    epochs_done: int,
    rng: np.random.Generator,
    history: History,
    finished: bool,
) -> None:
    """Write ``path`` atomically: ``model``'s file with ``params`` (host arrays of the last
    completed epoch), the optimizer state ``training`` and the run's state: its
    configuration (``TrainConfig.identity()``), the data fingerprint, the epochs done, the
    shuffle RNG's state, the history so far and whether the run had ended."""
    state = {
        "config": config,
        "data_fingerprint": fingerprint,
        "epochs_done": epochs_done,
        "rng_state": rng.bit_generator.state,
        "history": history.to_dict(),
        "training": training.json(),
        "finished": finished,
    }
    write_model_file(
        path,
        model.config(),
        params,
        model.last_backend,
        model.metadata,
        state,
        state_arrays=training.arrays(),
    )


def resume_from(
    ckpt_path: Path, cfg: TrainConfig, model: Sequential, rng: np.random.Generator, fingerprint: str
) -> tuple[int, History, bool]:
    """Load a checkpoint into ``model`` and ``rng`` after checking it belongs to this run:
    the same hyper-parameters, the same data (by fingerprint) and a well-formed state
    (optimizer state included). Returns (epochs done, history so far, whether early
    stopping had ended the run); UsageError in one line otherwise."""
    if not ckpt_path.is_file():
        raise UsageError(f"--resume: no checkpoint at {ckpt_path}; start without --resume")
    try:
        saved, state, arrays = load_checkpoint(ckpt_path)
    except ModelFormatError as exc:
        raise UsageError(f"--resume: {exc}") from None
    bad = f"--resume: {ckpt_path} is not a usable nnx training checkpoint"
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise UsageError(f"{bad} (no training state in it)")
    saved_cfg = dict(state["config"])
    if "optimizer" in saved_cfg:  # "gd" in checkpoints of earlier nnx
        saved_cfg["optimizer"] = registry.current_optimizer_name(saved_cfg["optimizer"])
    mismatched = {
        k: (saved_cfg.get(k, TRAINING_DEFAULTS.get(k)), v)
        for k, v in cfg.identity().items()
        if saved_cfg.get(k, TRAINING_DEFAULTS.get(k)) != v
    }
    if mismatched:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in mismatched.items())
        raise UsageError(f"--resume refused: hyper-parameters differ from the checkpoint ({detail})")
    if state.get("data_fingerprint") != fingerprint:
        raise UsageError(
            "--resume refused: the training data differ from the data the checkpoint was trained on "
            f"(same --data path {cfg.data!r}, different content); start without --resume"
        )
    done = state.get("epochs_done")
    if isinstance(done, bool) or not isinstance(done, int) or not 0 <= done <= cfg.epochs:
        raise UsageError(f"{bad} (epochs_done is {done!r}, expected 0..{cfg.epochs})")
    try:
        model.set_parameters(saved.parameters())
        model.last_backend = saved.last_backend
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{bad} (its parameters do not fit this model: {exc})") from None
    try:
        rng.bit_generator.state = state["rng_state"]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise UsageError(f"{bad} (the shuffle state is malformed: {printable(exc)})") from None
    history = _history_from_state(state.get("history"))
    if history is None:
        raise UsageError(f"{bad} (the history is malformed)")
    if "training" in state:  # absent from checkpoints of nnx before optimizers
        try:
            training = TrainingState.from_json(state["training"], arrays)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{bad} (the optimizer state is malformed: {exc})") from None
        model.training_state = training
    finished = state.get("finished", False)
    if not isinstance(finished, bool):
        raise UsageError(f"{bad} (finished is {finished!r})")
    return done, history, finished


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _history_from_state(data: Any) -> History | None:
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
