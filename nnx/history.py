"""Training history: per-epoch loss and accuracy, plus how and where training ran."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .files import HISTORY_FORMAT

# the per-recorded-epoch lists (epoch first)
LIST_FIELDS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "epoch_lr",
    "l2_penalty",
    "objective",
)


@dataclass
class History:
    """What ``fit`` recorded. Lists are aligned: ``loss[i]`` was measured at ``epoch[i]``.

    Loss and accuracy of an epoch are those of the parameters at the start of that epoch
    (computed in the same forward pass as the gradient, as in the tutorials); validation
    figures are measured after the epoch's update. With ``l2`` the loss includes the
    penalty l2 / (2m) * sum of squared weights, recorded on its own in ``l2_penalty``
    (validation losses never include it); ``epoch_lr`` is each recorded epoch's learning
    rate (after the schedule). ``stop_reason`` says why training ended before its last
    epoch ("" when it ran them all), ``stopped_epoch`` at which epoch, and ``best_epoch``
    which epoch early stopping found best (epochs of this fit, counted from 1).

    A quasi-Newton fit (``nnx.LBFGS``) records one entry per iteration instead, every
    figure measured at the parameters the iteration ends with; ``objective`` is what it
    minimises (the loss plus the L2 penalty), ``stop_reason`` why it stopped ("gradient
    tolerance", "max iterations", "no progress", ...) and ``solver`` the details (method,
    message, iterations, passes over X, final objective and gradient).
    """

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    backend: str = ""
    backend_reason: str = ""
    dtype: str = ""
    epochs: int = 0
    lr: float = 0.0
    batch_size: int | None = None
    seconds: float = 0.0
    first_epoch_seconds: float = 0.0
    epoch_lr: list[float] = field(default_factory=list)
    l2_penalty: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    optimizer: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    l2: float = 0.0
    class_weight: list[float] | None = None
    early_stopping: dict[str, Any] | None = None
    warm_start: bool = False
    stop_reason: str = ""
    stopped_epoch: int | None = None
    best_epoch: int | None = None
    solver: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_per_epoch(self) -> float:
        """Mean wall time of the epochs after the first (the first includes JIT/warm-up)."""
        if self.epochs <= 1:
            return self.seconds
        return (self.seconds - self.first_epoch_seconds) / (self.epochs - 1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Inverse of ``to_dict`` (derived fields are ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds_per_epoch"] = self.seconds_per_epoch
        return data

    def to_json(self) -> str:
        return json.dumps({"format": HISTORY_FORMAT, **self.to_dict()}, indent=2)

    def to_csv(self) -> str:
        """One row per recorded epoch: epoch, loss, accuracy[, val_loss, val_accuracy]
        [, l2_penalty][, epoch_lr] (the last two with L2 and with a schedule)."""
        cols = ["epoch", "loss", "accuracy"]
        if self.val_loss:
            cols += ["val_loss", "val_accuracy"]
        if self.l2_penalty:
            cols.append("l2_penalty")
        if self.schedule is not None and self.epoch_lr:
            cols.append("epoch_lr")
        if self.objective and len(self.objective) == len(self.epoch):
            cols.append("objective")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        for i in range(len(self.epoch)):
            writer.writerow([getattr(self, c)[i] for c in cols])
        return buf.getvalue()

    def extend(self, other: History, offset: int | None = None) -> None:
        """Append a later fit's records, its epochs renumbered to follow ``offset`` epochs
        already trained (default: the last recorded epoch).

        Every per-epoch list stays empty or one entry per recorded epoch: where only one of
        the two fits recorded a figure (validation, L2 term, learning rate, L-BFGS's
        objective), the other's epochs hold NaN (no value) for it."""
        if offset is None:
            offset = self.epoch[-1] if self.epoch else 0
        before, added = len(self.epoch), len(other.epoch)
        self.epoch += [e + offset for e in other.epoch]
        for name in LIST_FIELDS[1:3]:  # loss and accuracy: every fit records them
            getattr(self, name).extend(getattr(other, name))
        for name in LIST_FIELDS[3:]:
            mine, theirs = getattr(self, name), getattr(other, name)
            if not mine and not theirs:
                continue
            mine.extend([math.nan] * (before - len(mine)))
            mine.extend(theirs if len(theirs) == added else [math.nan] * added)
