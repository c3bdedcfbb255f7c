"""What can watch and stop training: the epoch callback and early stopping.

The epoch callback (public API)
-------------------------------
``fit(..., callback=fn)`` calls ``fn(epoch, network, history)`` after every epoch (after
the epoch's update, validation and early stopping's check):

* ``epoch``: the epoch of this fit just finished, 1, 2, ...;
* ``network``: the ``nnx.network.DeviceNetwork`` being trained; ``network.host_params()``
  gives host copies [(W, b), ...] of its parameters and ``network.host_training_state()``
  the optimizer state (both copy from the device: call them when needed, not every epoch);
* ``history``: this fit's ``History`` so far (figures of recorded epochs only).

Returning True stops training after this epoch; the model keeps that epoch's parameters
(or early stopping's best ones, when it restores them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

EpochCallback = Callable[[int, Any, Any], "bool | None"]
MONITORS = ("val_loss", "val_accuracy")


class EarlyStopping:
    """Stop when the validation loss (or accuracy) has not improved for ``patience`` epochs.

    An epoch improves on the best so far when its ``monitor`` value is lower (loss) or
    higher (accuracy) by more than ``min_delta``. With ``restore_best`` (the default) the
    model ends ``fit`` with the parameters of its best epoch, whether training stopped
    early or ran all its epochs. Needs ``validation_data``; validation is then measured
    every epoch (one device synchronisation per epoch). ``History.stop_reason`` says why
    training stopped, ``History.best_epoch`` which epoch was best.
    """

    def __init__(
        self, patience: int = 10, min_delta: float = 0.0, monitor: str = "val_loss", restore_best: bool = True
    ):
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
            raise ValueError(f"patience must be a positive integer (epochs), got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float, np.integer, np.floating)):
            raise TypeError(f"min_delta must be a number, got {type(min_delta).__name__}")
        if not math.isfinite(float(min_delta)) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta}")
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS}, got {monitor!r}")
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"restore_best must be True or False, got {restore_best!r}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.monitor = monitor
        self.restore_best = bool(restore_best)

    @property
    def mode(self) -> str:
        return "max" if self.monitor == "val_accuracy" else "min"

    def config(self) -> dict[str, Any]:
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "monitor": self.monitor,
            "restore_best": self.restore_best,
        }

    def __repr__(self) -> str:
        return "EarlyStopping(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EarlyStopping) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(repr(self))

    def fresh(self) -> dict[str, Any]:
        """Progress before any epoch: {"best", "best_epoch", "wait", "stopped"}."""
        return {"best": None, "best_epoch": None, "wait": 0, "stopped": False}

    def improves(self, value: float, best: float | None) -> bool:
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def update(self, progress: dict[str, Any], epoch: int, value: float) -> tuple[bool, bool]:
        """Record ``value`` of ``epoch`` in ``progress`` (in place): (improved, stop now)."""
        if self.improves(value, progress["best"]):
            progress.update(best=float(value), best_epoch=epoch, wait=0)
            return True, False
        progress["wait"] += 1
        stop = progress["wait"] >= self.patience
        if stop:
            progress["stopped"] = True
        return False, stop

    def reason(self, progress: dict[str, Any], restored: bool) -> str:
        best = progress["best"]
        text = (
            f"early stopping: {self.monitor} did not improve by more than {self.min_delta:g} "
            f"for {self.patience} epochs"
        )
        if best is not None:
            text += f"; best {self.monitor} {best:.6g} at epoch {progress['best_epoch']}"
            if restored:
                text += ", whose parameters were restored"
        return text


def check_early_stopping(value: Any) -> EarlyStopping | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, EarlyStopping):
        raise TypeError(f"early_stopping must be an nnx.EarlyStopping, got {type(value).__name__}")
    return value


__all__ = ["EarlyStopping", "EpochCallback"]
