"""The job behind ``nnx train``: data in, trained model out.

``train`` checks every argument and every output path before any work, checkpoints every
k epochs and on SIGINT, SIGTERM or SIGHUP (the last completed epoch, atomically, with the
shuffle RNG's state and a fingerprint of the training data), and ``resume`` continues to
exactly the parameters an uninterrupted run reaches, on the same data only.

With ``--optimizer lbfgs`` an epoch is an L-BFGS iteration: checkpoints and signals work
per iteration alike (a signal stops after the iteration and the outputs hold its
parameters), but a run cannot be resumed: L-BFGS keeps no state between fits, so a resumed
run would not reach the uninterrupted run's parameters, and ``resume`` is refused.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..callbacks import EarlyStopping
from ..errors import DataError, StoppedBySignal, UsageError
from ..files import printable
from ..history import History
from ..model import Sequential
from ..training import diverged
from ..validation import check_fits_dtype
from .checkpoint import history_every, resume_from, write_checkpoint
from .outputs import CHECKPOINT, OUTPUTS, lock_out, write_outputs
from .run_config import (
    TrainConfig,
    build_class_weight,
    build_model,
    build_optimizer,
    build_schedule,
    check_config,
    resolve_class_weight,
)
from .signals import stop_signals_handled
from .train_data import check_splits, data_fingerprint, load_data


@dataclass
class TrainResult:
    model: Sequential
    history: History
    epochs_done: int
    interrupted: bool
    out: Path
    signal: int | None = None  # the signal that stopped the run early, if one did
    stop_reason: str = ""  # why training ended before --epochs (early stopping)
    stopped_training: bool = True  # the signal stopped training (False: it came while writing)


def train(
    cfg: TrainConfig, resume: bool = False, verbose: bool = True, say=print, overwrite: bool = False
) -> TrainResult:
    """Run (or resume) a training job and write model, history and learning curve to cfg.out.

    From the data loading until the outputs are written, SIGINT, SIGTERM and SIGHUP stop
    the run cleanly: during loading at once (``StoppedBySignal``, nothing written); during
    training after the epoch, with a checkpoint (repeats of SIGTERM/SIGHUP are ignored, a
    second SIGINT aborts as Ctrl-C twice does); while writing the outputs, after they are
    written. The result's ``signal`` names the signal in the last two cases.

    A --out folder holding an earlier run's model or checkpoint is refused (UsageError)
    unless ``resume`` continues that run or ``overwrite`` discards it."""
    check_config(cfg, resume)
    lock = lock_out(Path(cfg.out))
    try:
        if not resume and not overwrite:
            check_no_previous_run(Path(cfg.out), resumable=cfg.solver != "lbfgs")
    except BaseException:
        if lock is not None:
            os.close(lock)
        raise
    stop: dict[str, Any] = {"signal": None, "phase": "loading"}
    try:
        with stop_signals_handled(stop):
            return _train(cfg, resume, verbose, say, stop)
    finally:
        if lock is not None:
            os.close(lock)


def describe_skipped(skipped: list, most: int = 20) -> str:
    """ "skipped 2 file(s), not used: notes.txt (not an image file extension), ...": every
    file left out with its reason (the first ``most`` of them, then a count)."""
    shown = ", ".join(f"{printable(n)} ({printable(r)})" for n, r in skipped[:most])
    more = f" and {len(skipped) - most} more" if len(skipped) > most else ""
    return f"skipped {len(skipped)} file(s), not used: {shown}{more}"


def check_no_previous_run(out: Path, resumable: bool = True) -> None:
    """UsageError when ``out`` holds a model or checkpoint of an earlier run, which a fresh
    run would replace: say how to continue it (``resumable``: not an L-BFGS run), discard
    it or keep it. --resume is offered only where there is a checkpoint to resume from."""
    found = [name for name, kind in OUTPUTS.items() if kind == "model" and (out / name).is_file()]
    if found:
        resumable = resumable and CHECKPOINT in found
        resume = "continue it with --resume (with a larger --epochs to train longer), " if resumable else ""
        raise UsageError(
            f"--out {printable(str(out))} already holds a run ({', '.join(found)}); {resume}replace it "
            "with --overwrite, or choose another --out"
        )


def _train(cfg: TrainConfig, resume: bool, verbose: bool, say, stop: dict[str, Any]) -> TrainResult:
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    data = load_data(cfg, progress=verbose)
    if data.skipped:
        say(describe_skipped(data.skipped))
    check_splits(data, cfg)
    class_weight = resolve_class_weight(build_class_weight(cfg), data.classes)
    for X, label in ((data.X, "X"), (data.Xv, "X_val")):
        if X is not None:
            try:
                check_fits_dtype(X, cfg.dtype, label)
            except ValueError as exc:
                raise DataError(
                    f"--data {printable(cfg.data)}: {exc}".replace(
                        "train with dtype='float64'", "train with --dtype float64"
                    )
                ) from None
    model = build_model(cfg, data.X.shape[0], len(data.classes))
    model.metadata = {"classes": data.classes, "image_size": data.image_size, "data": data.description}
    rng = np.random.default_rng(cfg.seed)
    fingerprint = data_fingerprint(data)
    history = History()
    done = 0
    finished = False  # early stopping ended the run before --epochs
    if resume:
        done, history, finished = resume_from(ckpt_path, cfg, model, rng, fingerprint)
        say(f"resuming from epoch {done} of {cfg.epochs} ({printable(str(ckpt_path))})")
        if finished:
            say(f"the checkpoint's run had already ended: {printable(history.stop_reason)}")
    if len(data.classes) == 2:
        labels = f"label 1 = {printable(data.classes[-1])}"
    else:
        labels = f"{len(data.classes)} classes: " + ", ".join(printable(c) for c in data.classes[:10])
        labels += " ..." if len(data.classes) > 10 else ""
    say(f"data: {printable(data.description)}; X {data.X.shape} {data.X.dtype}; {labels}")

    def checkpoint(epoch_done: int, net, hist: History) -> None:
        combined = History.from_dict(history.to_dict())
        combined.extend(hist, offset=done)
        _finish_history(combined, hist, done)
        combined.seconds = history.seconds + (time.perf_counter() - fit_started)
        params = net.host_params()
        if not all(np.isfinite(p).all() for pair in params for p in pair):  # never checkpoint a blow-up
            raise diverged(f"the parameters became NaN or inf by epoch {epoch_done}", cfg.lr)
        write_checkpoint(
            ckpt_path,
            model,
            params,
            net.host_training_state(),
            config=cfg.identity(),
            fingerprint=fingerprint,
            epochs_done=epoch_done,
            rng=rng,
            history=combined,
            finished=bool(hist.stop_reason) and stop["signal"] is None,
        )

    def callback(epoch: int, net, hist: History) -> bool:
        total = done + epoch
        stopping = stop["signal"] is not None
        early = bool(hist.stop_reason)  # early stopping ends the run at this epoch
        if stopping or early or total % cfg.checkpoint_every == 0 or total == cfg.epochs:
            checkpoint(total, net, hist)
        return stopping

    remaining = 0 if finished else cfg.epochs - done
    if stop["signal"] is not None:  # arrived between the data loading and here
        raise StoppedBySignal(stop["signal"])
    stop["phase"] = "training"
    fit_started = time.perf_counter()
    if remaining > 0:
        validation = (data.Xv, data.Yv) if data.Xv is not None else None
        fit_history = model.fit(
            data.X,
            data.Y,
            epochs=remaining,
            optimizer=build_optimizer(cfg),
            l2=cfg.l2,
            schedule=build_schedule(cfg),
            early_stopping=None if cfg.early_stopping is None else EarlyStopping(cfg.early_stopping),
            class_weight=class_weight,
            warm_start=resume,
            batch_size=cfg.batch_size,
            seed=rng,
            backend=cfg.backend,
            dtype=cfg.dtype,
            verbose=verbose,
            validation_data=validation,
            callback=callback,
            history_every=history_every(cfg.epochs),
        )
        history.extend(fit_history, offset=done)
        _finish_history(history, fit_history, done)
        if stop["signal"] is not None:
            follow = "continue with --resume" if cfg.solver != "lbfgs" else "an L-BFGS run cannot be resumed"
            history.stop_reason = f"interrupted by signal {stop['signal']}; {follow}"
        history.seconds += fit_history.seconds
        done += fit_history.epochs
    if remaining <= 0 and not history.backend:  # nothing left to train: keep what the checkpoint says
        history.backend = model.last_backend or ""
    stopped_training = stop["signal"] is not None
    stop["phase"] = "writing"  # a signal now waits until every output is written
    history.epochs = done
    write_outputs(model, history, out, say)
    reason = history.stop_reason if history.stopped_epoch is not None and not stopped_training else ""
    return TrainResult(
        model, history, done, stop["signal"] is not None, out, stop["signal"], reason, stopped_training
    )


def _finish_history(history: History, fit_history: History, done: int) -> None:
    """Copy a fit's settings and outcome into the run's history (epochs offset by ``done``)."""
    for key in (
        "backend",
        "backend_reason",
        "dtype",
        "lr",
        "batch_size",
        "optimizer",
        "schedule",
        "l2",
        "class_weight",
        "early_stopping",
        "stop_reason",
        "solver",
    ):
        setattr(history, key, getattr(fit_history, key))
    if not history.first_epoch_seconds:  # the first fit of the run timed its first epoch
        history.first_epoch_seconds = fit_history.first_epoch_seconds
    for key in ("stopped_epoch", "best_epoch"):
        value = getattr(fit_history, key)
        setattr(history, key, None if value is None else value + done)
