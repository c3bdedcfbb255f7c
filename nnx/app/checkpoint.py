"""The checkpoint of ``nnx train`` (``OUT/checkpoint.npz``): the model file plus the run's
state (configuration, data fingerprint, epochs done, shuffle RNG, history, optimizer
state), written atomically, and read back by ``--resume`` only for the same run on the
same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import registry
from ..checkpoint import checkpoint_parts, history_from_dict, read_training
from ..errors import ModelFormatError, UsageError
from ..files import printable
from ..history import History
from ..io import write_model_file
from ..model import Sequential, load_checkpoint
from ..optim import TrainingState
from .run_config import MAX_HISTORY_ROWS, TRAINING_DEFAULTS, TrainConfig


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
    run = {
        "config": config,
        "data_fingerprint": fingerprint,
        "epochs_done": epochs_done,
        "rng_state": rng.bit_generator.state,
        "finished": finished,
    }
    extra, arrays = checkpoint_parts(training, history, run)
    write_model_file(path, model.config(), params, model.last_backend, model.metadata, extra, arrays)


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
        if saved_cfg.get(k, TRAINING_DEFAULTS.get(k)) != v and k != "epochs"
    }
    if mismatched:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in mismatched.items())
        raise UsageError(
            f"--resume refused: hyper-parameters differ from the checkpoint ({detail}); resume with the "
            "same options (only --epochs may grow), or start afresh with --overwrite"
        )
    if state.get("data_fingerprint") != fingerprint:
        raise UsageError(
            "--resume refused: the training data differ from the data the checkpoint was trained on "
            f"(same --data path {cfg.data!r}, different content); start afresh with --overwrite"
        )
    done = state.get("epochs_done")
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        raise UsageError(f"{bad} (epochs_done is {done!r})")
    if done > cfg.epochs:
        raise UsageError(
            f"--resume: the checkpoint's run has trained {done} epochs already, more than --epochs "
            f"{cfg.epochs}; give --epochs {done} or more"
        )
    saved_epochs = saved_cfg.get("epochs")
    if saved_epochs != cfg.epochs:
        check_extension(cfg, saved_epochs, bool(state.get("finished", False)), done)
    try:
        model.set_parameters(saved.parameters())
        model.last_backend = saved.last_backend
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{bad} (its parameters do not fit this model: {exc})") from None
    try:
        rng.bit_generator.state = state["rng_state"]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise UsageError(f"{bad} (the shuffle state is malformed: {printable(exc)})") from None
    history = history_from_dict(state.get("history"))
    if history is None:
        raise UsageError(f"{bad} (the history is malformed)")
    try:
        training = read_training(state, arrays)
    except ValueError as exc:
        raise UsageError(f"{bad} ({exc})") from None
    if training is not None:
        model.training_state = training
    finished = state.get("finished", False)
    if not isinstance(finished, bool):
        raise UsageError(f"{bad} (finished is {finished!r})")
    return done, history, finished


def history_every(epochs: int) -> int:
    """Every how many epochs a run of ``epochs`` records its figures (at most ~20 000 rows:
    the history, kept in every checkpoint, stays inside the model file's metadata limit)."""
    return max(1, -(-epochs // MAX_HISTORY_ROWS))


def check_extension(cfg: TrainConfig, saved_epochs: Any, finished: bool, done: int) -> None:
    """A resume to another --epochs goes on bitwise as a run asked for that many epochs from
    the start would, or is refused in one line: not after early stopping ended the run, not
    with a --schedule whose shape depends on --epochs, not across a change in how often the
    history records."""
    if isinstance(saved_epochs, bool) or not isinstance(saved_epochs, int) or saved_epochs < 1:
        raise UsageError(f"--resume: the checkpoint's --epochs is {saved_epochs!r}; it cannot be extended")
    if finished:
        raise UsageError(
            f"--resume: early stopping ended the checkpoint's run at epoch {done}; more epochs would not "
            "continue it; start afresh with --overwrite (and a larger --early-stopping patience)"
        )
    if registry.make_schedule(cfg.schedule, saved_epochs) != registry.make_schedule(cfg.schedule, cfg.epochs):
        raise UsageError(
            f"--resume: --schedule {cfg.schedule} spans the run's --epochs, so going from {saved_epochs} to "
            f"{cfg.epochs} would change the learning rates already used; start afresh with --overwrite"
        )
    if history_every(saved_epochs) != history_every(cfg.epochs):
        raise UsageError(
            f"--resume: a run of {cfg.epochs} epochs records its history every {history_every(cfg.epochs)} "
            f"epochs, the checkpoint's every {history_every(saved_epochs)}; start afresh with --overwrite"
        )
