"""One name for each option: the registry the Python API, the command line and the
scikit-learn estimator all read.

Each option is named once here with its string forms and its valid range:

* ``OPTIMIZERS``: the solvers a model is fitted with, by their string name ("sgd",
  "rmsprop", "adam", "adamw", "lbfgs"), the class behind each, the hyper-parameters it
  takes and the state arrays (slots) it may keep per parameter. Plain gradient descent is
  "sgd" with momentum 0, as in scikit-learn and PyTorch.
* ``SCHEDULES``: learning-rate schedules and the grammar of their string form
  (``step:EPOCHS[:GAMMA]`` ...), parsed by ``make_schedule``.
* ``RANGES``: the valid range of every numeric hyper-parameter (momentum in [0, 1) as
  Keras has it, eps > 0, betas in [0, 1), dropout in [0, 1), lr > 0, l2 >= 0, ...);
  ``check`` refuses a value outside it with the one message every front end shows.
* ``HIDDEN_ACTIVATIONS``, ``LOSSES``, ``INPUT_DTYPES``, ``COMPUTE_DTYPES`` and
  ``backend_choices()``.

Classes are named by module and attribute and imported when first used (as
``nnx.backends`` names its backends), so this module imports no other part of nnx at
load time and scipy stays optional until "lbfgs" is asked for.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# ------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class Range:
    """An interval of valid values: ``low`` .. ``high``, each end open or closed;
    ``integer`` ranges take ints only (bools and floats refused)."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True
    integer: bool = False

    def describe(self) -> str:
        """The rule in words, as every message states it: "lie in [0, 1)", "be a finite
        number > 0", "be a positive integer"."""
        if self.integer:
            return "be a positive integer" if self.low == 1 else f"be an integer >= {self.low:g}"
        if self.high == math.inf:
            return f"be a finite number {'>' if self.low_open else '>='} {self.low:g}"
        lo, hi = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"lie in {lo}{self.low:g}, {self.high:g}{hi}"

    def contains(self, value: float) -> bool:
        """True when the (finite) ``value`` lies in the range."""
        if not math.isfinite(value):
            return False
        above_low = value > self.low if self.low_open else value >= self.low
        below_high = value < self.high if self.high_open else value <= self.high
        return above_low and below_high

    def check(self, value: Any, label: str) -> Any:
        """``value`` as a float (an int for integer ranges) when it lies in the range; else
        a TypeError (not a number) or ValueError naming ``label`` and the rule."""
        if self.integer:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < self.low:
                raise ValueError(f"{label} must {self.describe()}, got {value!r}")
            return int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{label} must be a number, got {type(value).__name__}")
        number = float(value)
        if not self.contains(number):
            raise ValueError(f"{label} must {self.describe()}, got {number}")
        return number


_UNIT = Range(0.0, 1.0)  # [0, 1)
RANGES: dict[str, Range] = {
    "lr": Range(0.0, low_open=True),
    "l2": Range(0.0),
    "momentum": _UNIT,
    "dampening": Range(0.0, 1.0, high_open=False),
    "weight_decay": Range(0.0),
    "alpha": _UNIT,
    "beta": _UNIT,  # each of Adam's betas
    "eps": Range(0.0, low_open=True),
    "dropout": _UNIT,
    "gamma": Range(0.0, low_open=True),
    "decay_rate": Range(0.0),
    "min_lr": Range(0.0),
    "step_size": Range(1, integer=True),
    "interval": Range(1, integer=True),
    "total": Range(1, integer=True),
}


def check(name: str, value: Any, label: str | None = None) -> Any:
    """``value`` checked against ``RANGES[name]`` (see ``Range.check``); the message names
    ``label`` (default: ``name``), e.g. "--momentum" on the command line."""
    return RANGES[name].check(value, name if label is None else label)


# ------------------------------------------------------------- optimizers


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer: its string name, the class that implements it (module, attribute),
    the name its ``config()`` records, the hyper-parameters its constructor takes, the
    per-parameter state arrays it may keep, and the solver that runs it ("step": one
    update per batch in the step loop; "lbfgs": the full-batch quasi-Newton solver)."""

    name: str
    module: str
    attribute: str
    hyper: tuple[str, ...]
    slots: tuple[str, ...]
    solver: str
    summary: str

    def cls(self) -> type:
        """The class (imported now; "lbfgs" needs scipy only when built)."""
        return getattr(importlib.import_module(self.module), self.attribute)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec(
            "sgd",
            "nnx.optim",
            "SGD",
            ("lr", "momentum", "dampening", "nesterov", "weight_decay"),
            ("momentum_buffer",),
            "step",
            "gradient descent (plain at momentum 0; --momentum, Nesterov) as torch.optim.SGD",
        ),
        OptimizerSpec(
            "rmsprop",
            "nnx.optim",
            "RMSprop",
            ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"),
            ("square_avg", "grad_avg", "momentum_buffer"),
            "step",
            "RMSprop as torch.optim.RMSprop",
        ),
        OptimizerSpec(
            "adam",
            "nnx.optim",
            "Adam",
            ("lr", "betas", "eps", "weight_decay"),
            ("exp_avg", "exp_avg_sq"),
            "step",
            "Adam as torch.optim.Adam",
        ),
        OptimizerSpec(
            "adamw",
            "nnx.optim",
            "AdamW",
            ("lr", "betas", "eps", "weight_decay"),
            ("exp_avg", "exp_avg_sq"),
            "step",
            "AdamW (decoupled weight decay) as torch.optim.AdamW",
        ),
        OptimizerSpec(
            "lbfgs",
            "nnx.lbfgs",
            "LBFGS",
            ("tol", "m", "ftol", "max_line_search", "max_evaluations"),
            (),
            "lbfgs",
            "L-BFGS on the full-batch objective (scipy, the lbfgs extra)",
        ),
    )
}
# what a front end trains with when no optimizer is named: plain gradient descent
DEFAULT_OPTIMIZER = "sgd"
# the optimizers that take one step per batch (the command line and the estimator offer
# these and "lbfgs")
STEP_OPTIMIZERS = tuple(name for name, spec in OPTIMIZERS.items() if spec.solver == "step")
# every state array an optimizer may keep per parameter (checkpoint members are named so)
SLOT_NAMES = tuple(dict.fromkeys(slot for spec in OPTIMIZERS.values() for slot in spec.slots))
# an old name read from run configurations and checkpoints of earlier nnx: "gd" was
# plain gradient descent, which is "sgd" at momentum 0
LEGACY_OPTIMIZER_NAMES = {"gd": "sgd"}


def current_optimizer_name(name: Any) -> Any:
    """``name`` as nnx calls it now: a legacy name ("gd") mapped, anything else unchanged."""
    return LEGACY_OPTIMIZER_NAMES.get(name, name) if isinstance(name, str) else name


def _listed(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def optimizer_spec(
    name: Any, label: str = "optimizer", offered: tuple[str, ...] | None = None
) -> OptimizerSpec:
    """The spec of optimizer ``name`` among ``offered`` (default: every optimizer); a
    ValueError naming ``label`` and the choices otherwise."""
    offered = tuple(OPTIMIZERS) if offered is None else offered
    if not isinstance(name, str) or name not in offered:
        raise ValueError(f"{label} must be one of {', '.join(offered)}, got {name!r}")
    return OPTIMIZERS[name]


def optimizer_by_class_name(class_name: Any) -> OptimizerSpec | None:
    """The spec whose class is called ``class_name`` (what ``Optimizer.config()`` records
    as "name"), or None."""
    for spec in OPTIMIZERS.values():
        if spec.attribute == class_name:
            return spec
    return None


def make_optimizer(
    name: str,
    *,
    label: Callable[[str], str] = str,
    offered: tuple[str, ...] | None = None,
    **options: Any,
) -> Any:
    """Optimizer ``name`` built with ``options`` (hyper-parameters by their API names).

    ``label`` turns an option's API name into the front end's ("momentum" ->
    "--momentum"), so the messages name what the user typed: an option the optimizer does
    not take, or a value outside its ``RANGES`` entry, is a ValueError/TypeError in one line.
    """
    spec = optimizer_spec(name, label("optimizer"), offered)
    for key, value in options.items():
        if key not in spec.hyper:
            takers = [n for n in (offered or OPTIMIZERS) if key in OPTIMIZERS[n].hyper]
            where = f"{label('optimizer')} {_listed(takers)}" if takers else "no optimizer"
            raise ValueError(f"{label(key)} applies to {where}, not {name}")
        if key in RANGES:
            check(key, value, label(key))
        elif key == "betas" and isinstance(value, (tuple, list)):
            for i, beta in enumerate(value):
                check("beta", beta, f"{label(key)}[{i}]")
    try:
        return spec.cls()(**options)
    except (TypeError, ValueError) as exc:  # a rule between options (Nesterov needs momentum)
        raise type(exc)(f"{label('optimizer')} {name}: {exc}") from None


# -------------------------------------------------------------- schedules


@dataclass(frozen=True)
class ScheduleSpec:
    """One learning-rate schedule: its string name, its class in ``nnx.schedules``, and
    the grammar of its string form ``name:ARG:ARG``: ``args`` lists (METAVAR, keyword,
    integer?) in order, the first ``required`` of them needed. ``epochs_as`` names the
    keyword that takes the run's epoch count (cosine anneals over the whole run)."""

    name: str
    attribute: str
    args: tuple[tuple[str, str, bool], ...]
    required: int
    summary: str
    epochs_as: str | None = None

    def form(self) -> str:
        """The string form, e.g. ``step:EPOCHS[:GAMMA]``."""
        text = self.name
        for i, (metavar, _, _) in enumerate(self.args):
            text += f":{metavar}" if i < self.required else f"[:{metavar}]"
        return text


SCHEDULES: dict[str, ScheduleSpec] = {
    spec.name: spec
    for spec in (
        ScheduleSpec(
            "cosine", "Cosine", (("MIN_LR", "min_lr", False),), 0, "cosine annealing over the run", "total"
        ),
        ScheduleSpec(
            "step",
            "Step",
            (("EPOCHS", "step_size", True), ("GAMMA", "gamma", False)),
            1,
            "times GAMMA (0.1) every EPOCHS epochs",
        ),
        ScheduleSpec(
            "exponential", "Exponential", (("GAMMA", "gamma", False),), 1, "times GAMMA every epoch"
        ),
        ScheduleSpec(
            "inverse-time",
            "InverseTime",
            (("RATE", "decay_rate", False), ("EPOCHS", "interval", True)),
            1,
            "the tutorials' decay lr / (1 + RATE * (epoch // EPOCHS))",
        ),
    )
}
NO_SCHEDULE = "none"
# every string form, in words: "none, cosine[:MIN_LR], step:EPOCHS[:GAMMA], ..."
SCHEDULE_FORMS = _listed([NO_SCHEDULE, *(spec.form() for spec in SCHEDULES.values())])


def make_schedule(text: str | None, epochs: int, label: str = "schedule") -> Any:
    """The ``nnx.schedules`` object a string form describes (None for "none" or None);
    ValueError/TypeError in one line naming ``label`` otherwise."""
    if text is None or text == NO_SCHEDULE:
        return None
    name, *parts = str(text).split(":")
    spec = SCHEDULES.get(name)
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = None
    if (
        spec is None
        or numbers is None
        or not spec.required <= len(numbers) <= len(spec.args)
        or any(integer and not n.is_integer() for (_, _, integer), n in zip(spec.args, numbers))
    ):
        raise ValueError(f"{label} must be {SCHEDULE_FORMS}; got {text!r}")
    kwargs: dict[str, Any] = {
        keyword: int(n) if integer else n for (_, keyword, integer), n in zip(spec.args, numbers)
    }
    if spec.epochs_as is not None:
        kwargs[spec.epochs_as] = epochs
    cls = getattr(importlib.import_module("nnx.schedules"), spec.attribute)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{label} {text!r}: {exc}") from None


# ------------------------------------------------ activations, losses, dtypes

# hidden-layer activations by their nnx name (``MLP(hidden=...)``, ``nnx.layers``' kinds)
HIDDEN_ACTIVATIONS = ("sigmoid", "relu", "tanh")
# other spellings accepted where a front end meets them: scikit-learn's MLP says "logistic"
ACTIVATION_ALIASES = {"logistic": "sigmoid"}
# what a Sequential model is trained on
LOSSES = ("bce", "mse", "cross_entropy")
# input arrays nnx takes as they are (uint8: raw pixels, scaled by 1/255 inside nnx)
INPUT_DTYPES = ("float32", "float64", "uint8")
# the precisions nnx computes in
COMPUTE_DTYPES = ("float32", "float64")
AUTO_BACKEND = "auto"


def activation_name(name: Any, label: str = "activation") -> str:
    """The nnx name of a hidden activation given by any accepted spelling; ValueError
    listing the spellings otherwise."""
    if isinstance(name, str) and name in HIDDEN_ACTIVATIONS:
        return name
    if isinstance(name, str) and name in ACTIVATION_ALIASES:
        return ACTIVATION_ALIASES[name]
    accepted = (*HIDDEN_ACTIVATIONS, *ACTIVATION_ALIASES)
    raise ValueError(f"{label} must be one of {', '.join(accepted)}, got {name!r}")


def backend_choices() -> tuple[str, ...]:
    """ "auto" and every backend nnx knows (``nnx.backends.names()``), available here or not."""
    backends = importlib.import_module("nnx.backends")
    return (AUTO_BACKEND, *backends.names())


__all__ = [
    "COMPUTE_DTYPES",
    "HIDDEN_ACTIVATIONS",
    "INPUT_DTYPES",
    "LOSSES",
    "OPTIMIZERS",
    "RANGES",
    "SCHEDULES",
    "SCHEDULE_FORMS",
    "SLOT_NAMES",
    "STEP_OPTIMIZERS",
    "OptimizerSpec",
    "Range",
    "ScheduleSpec",
    "activation_name",
    "backend_choices",
    "check",
    "make_optimizer",
    "make_schedule",
]
