"""Learning-rate schedules: pure functions of the epoch.

``schedule.lr(base_lr, epoch)`` is the learning rate of the epoch that follows ``epoch``
completed epochs (0 for the first one), exactly as ``torch.optim.lr_scheduler`` sets it
when ``scheduler.step()`` is called once per epoch:

* ``Step(step_size, gamma=0.1)``: ``base_lr * gamma ** (epoch // step_size)`` (``StepLR``).
* ``Exponential(gamma)``: ``base_lr * gamma ** epoch`` (``ExponentialLR``).
* ``InverseTime(decay_rate, interval=1)``: the tutorials' decay,
  ``base_lr / (1 + decay_rate * (epoch // interval))`` (``LambdaLR`` with that factor).
* ``Cosine(total, min_lr=0.0)``: ``min_lr + (base_lr - min_lr) * (1 + cos(pi * epoch / total)) / 2``
  up to ``total`` epochs and ``min_lr`` after (``CosineAnnealingLR(T_max=total,
  eta_min=min_lr)``, whose closed form goes back up after ``total``).

A fit that continues an earlier one (``warm_start=True``, or a resumed ``nnx train``)
continues the epoch count, so the schedule picks up where it stopped.

Their string forms (``step:EPOCHS[:GAMMA]`` ...) and the ranges of their arguments live in
``nnx.registry``.
"""

from __future__ import annotations

import math
from typing import Any

from . import registry


class Schedule:
    """Base class: ``lr(base_lr, epoch)`` and a JSON-able ``config()``."""

    name = "Schedule"

    def lr(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError

    def _hyper(self) -> dict[str, Any]:
        return {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self._hyper()}

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self._hyper().items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(repr(self))


class Step(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs."""

    name = "Step"

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = registry.check("step_size", step_size)
        self.gamma = registry.check("gamma", gamma)

    def lr(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)

    def _hyper(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma}


class Exponential(Schedule):
    """Multiply the rate by ``gamma`` every epoch."""

    name = "Exponential"

    def __init__(self, gamma: float):
        self.gamma = registry.check("gamma", gamma)

    def lr(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma**epoch

    def _hyper(self) -> dict[str, Any]:
        return {"gamma": self.gamma}


class InverseTime(Schedule):
    """The tutorials' learning-rate decay: ``base_lr / (1 + decay_rate * (epoch // interval))``."""

    name = "InverseTime"

    def __init__(self, decay_rate: float, interval: int = 1):
        self.decay_rate = registry.check("decay_rate", decay_rate)
        self.interval = registry.check("interval", interval)

    def lr(self, base_lr: float, epoch: int) -> float:
        return base_lr * (1.0 / (1.0 + self.decay_rate * (epoch // self.interval)))

    def _hyper(self) -> dict[str, Any]:
        return {"decay_rate": self.decay_rate, "interval": self.interval}


class Cosine(Schedule):
    """Cosine annealing from the base rate to ``min_lr`` over ``total`` epochs."""

    name = "Cosine"

    def __init__(self, total: int, min_lr: float = 0.0):
        self.total = registry.check("total", total)
        self.min_lr = registry.check("min_lr", min_lr)

    def lr(self, base_lr: float, epoch: int) -> float:
        if epoch >= self.total:
            return self.min_lr
        return self.min_lr + (base_lr - self.min_lr) * (1 + math.cos(math.pi * epoch / self.total)) / 2

    def _hyper(self) -> dict[str, Any]:
        return {"total": self.total, "min_lr": self.min_lr}


def check_schedule(schedule: Any) -> Schedule | None:
    """``schedule`` when it is None or an ``nnx.schedules`` object; a TypeError otherwise."""
    if schedule is not None and not isinstance(schedule, Schedule):
        raise TypeError(
            "schedule must be an nnx.schedules object (Step, Exponential, InverseTime, Cosine), "
            f"got {type(schedule).__name__}"
        )
    return schedule


__all__ = ["Cosine", "Exponential", "InverseTime", "Schedule", "Step"]
