"""The one message for training that turned non-finite, saying what turned and what to do."""

from __future__ import annotations

import math
from typing import Any

from ..errors import TrainingDivergedError

_ADVICE = {
    # a value grew past the largest float: the steps were too large (or the inputs unscaled)
    "inf": "lower the learning rate or check the inputs' scale",
    # a NaN out of finite numbers is an invalid operation (0/0, inf - inf), not a large step
    "nan": (
        "a NaN out of finite values is an invalid operation such as 0/0 or inf - inf (an "
        "optimizer's eps near 0 on a constant feature does this), not a too-large step: check "
        "the optimizer's settings and the inputs; if the loss grew first, lower the learning rate"
    ),
    "": "lower the learning rate or check the inputs' scale",
}


def diverged(detail: str, lr: float | None = None, cause: str = "") -> TrainingDivergedError:
    """A ``TrainingDivergedError`` for ``detail`` (what turned non-finite, and when); ``cause``
    is "inf" (overflow), "nan" (an invalid operation) or "" (cannot tell)."""
    rate = f" (lr={lr})" if lr else ""
    return TrainingDivergedError(
        f"training diverged: {detail}{rate}; {_ADVICE.get(cause, _ADVICE[''])}. "
        "The model's parameters were left as they were before fit."
    )


def cause_of(value: float) -> str:
    """ "nan" or "inf" for a non-finite float value."""
    return "nan" if value != value else "inf"


def loss_diverged(value: float, epoch: int, cause: str, lr: float | None) -> TrainingDivergedError:
    """The loss of ``epoch`` was ``value`` (NaN or inf); ``cause`` is what the parameters
    held then ("", "inf" or "nan", see ``diverged``)."""
    held = {"": "", "inf": " (the parameters hold inf)", "nan": " (the parameters hold NaN)"}[cause]
    return diverged(f"the loss became {value} at epoch {epoch}{held}", lr, cause)


def cause_in(ops: Any, arrays: list[Any]) -> str:
    """What ``arrays`` (parameters on backend ``ops``) hold: "" (all finite), "inf" (an
    overflow) or "nan" (NaN without inf: an invalid operation) - two reductions per
    array, read at once."""
    values = ops.scalars([(a * 0).sum() for a in arrays] + [abs(a).max() for a in arrays])
    finite, largest = values[: len(arrays)], values[len(arrays) :]
    if all(math.isfinite(v) for v in finite):
        return ""
    return "inf" if any(math.isinf(v) for v in largest) else "nan"
