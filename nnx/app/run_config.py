"""The run configuration of ``nnx train``: ``TrainConfig``, the checks every argument gets
before any work (one-line ``UsageError``s), and what the arguments build: the optimizer and
schedule (through ``nnx.registry``), the class weights and the model.

``--optimizer`` offers every optimizer of ``nnx.registry``: the step optimizers and
"lbfgs" (``nnx.LBFGS``, full batch, ``--epochs`` its iterations). A flag the chosen solver
cannot honour is refused by the engine's own table (``engine.NOT_SUPPORTED``), with its
reason; defaults are never sent to a solver that refuses them (no ``--lr`` given is no
learning rate for L-BFGS)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import backends, registry
from ..data.builtin import SYNTHETIC_CLASSES, SYNTHETIC_MIN_SIZE
from ..data.csv_file import CSV_LAYOUTS
from ..errors import UsageError
from ..files import printable
from ..io import MAX_PARAMETERS
from ..model import MLP, LogisticRegression, Sequential, SoftmaxRegression
from ..optim import Optimizer
from ..schedules import Schedule
from ..training import engine
from .outputs import check_output_paths

LIMITS = {  # the largest value each argument accepts
    "--epochs": 10**9,
    "--hidden": 100_000,
    "--size": 1024,
    "--checkpoint-every": 10**9,
    "--batch-size": 2**31 - 1,
    "--seed": 2**32 - 1,
    "--early-stopping": 10**9,
}
# a run's history keeps at most this many rows (it is kept in every checkpoint, inside the
# model file's metadata limit): step runs record every k-th epoch, L-BFGS every iteration
MAX_HISTORY_ROWS = 20_000
# the learning rate of a step optimizer when --lr is not given
DEFAULT_LR = 0.005
# the engine's name (engine.OPTIONS) of each flag a solver may refuse
FLAG_OPTIONS = {
    "--lr": "lr",
    "--schedule": "schedule",
    "--batch-size": "batch_size",
    "--early-stopping": "early_stopping",
    "--dropout": "dropout",
    "--resume": "warm_start",
}


@dataclass
class TrainConfig:
    """Everything that determines a training run; a resume must match it exactly."""

    data: str | None = None
    model: str = "logreg"
    hidden: int = 50
    epochs: int = 2000
    lr: float | None = None  # None: not given (DEFAULT_LR for a step optimizer, none for lbfgs)
    batch_size: int | None = None
    seed: int = 1
    dtype: str = "float32"
    size: int = 64
    positive: str | None = None
    val_split: float = 0.2
    backend: str | None = None  # not part of identity(): a resume may run elsewhere
    out: str = "nnx-run"
    checkpoint_every: int = 100
    cache: str | None = None
    optimizer: str = registry.DEFAULT_OPTIMIZER  # a name in nnx.registry.OPTIMIZERS; sgd at momentum 0 is GD
    momentum: float = 0.0  # sgd and rmsprop
    nesterov: bool = False  # sgd with momentum
    l2: float = 0.0
    dropout: float = 0.0  # mlp only
    schedule: str | None = None  # see nnx.registry.SCHEDULE_FORMS
    early_stopping: int | None = None  # patience in epochs, on the validation loss
    class_weight: str | None = None  # "balanced" or "CLASS:WEIGHT,..." (class number or name)
    layout: str = "auto"  # a CSV's layout, nnx.data.CSV_LAYOUTS (the data fingerprint covers it)

    def __post_init__(self) -> None:
        # run configurations of earlier nnx say "gd" for what is now "sgd" at momentum 0
        self.optimizer = registry.current_optimizer_name(self.optimizer)
        if self.lr is None and self.optimizer in registry.STEP_OPTIMIZERS:
            self.lr = DEFAULT_LR

    @property
    def solver(self) -> str:
        """The engine's solver of --optimizer: "steps" or "lbfgs" (``engine.SOLVERS``)."""
        spec = registry.OPTIMIZERS.get(self.optimizer)
        return "lbfgs" if spec is not None and spec.solver == "lbfgs" else "steps"

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the interrupted one."""
        keys = (
            "data",
            "model",
            "hidden",
            "epochs",
            "lr",
            "batch_size",
            "seed",
            "dtype",
            "size",
            "positive",
            "val_split",
            *TRAINING_DEFAULTS,
        )
        return {k: getattr(self, k) for k in keys}


# training options added after checkpoints first existed: an older checkpoint, which lacks
# them, matches a run that leaves them at these values
TRAINING_DEFAULTS: dict[str, Any] = {
    "optimizer": registry.DEFAULT_OPTIMIZER,
    "momentum": 0.0,
    "nesterov": False,
    "l2": 0.0,
    "dropout": 0.0,
    "schedule": None,
    "early_stopping": None,
    "class_weight": None,
}


def _flag(name: str) -> str:
    """The command-line flag of an option's API name: "weight_decay" -> "--weight-decay"."""
    return "--" + name.replace("_", "-")


def _checked(name: str, value: Any) -> Any:
    """``value`` of the option ``name`` checked against its range in ``nnx.registry``, the
    message naming its flag (UsageError)."""
    try:
        return registry.check(name, value, _flag(name))
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def build_optimizer(cfg: TrainConfig) -> Any:
    """The optimizer --optimizer names (sgd at momentum 0: plain gradient descent at --lr;
    lbfgs: ``nnx.LBFGS()``), built through ``nnx.registry`` with the options given."""
    options: dict[str, Any] = {} if cfg.lr is None else {"lr": cfg.lr}
    if cfg.momentum:
        options["momentum"] = cfg.momentum
    if cfg.nesterov:
        options["nesterov"] = True
    try:
        return registry.make_optimizer(
            cfg.optimizer, label=_flag, offered=tuple(registry.OPTIMIZERS), **options
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except ImportError as exc:  # lbfgs without scipy: the extra to install
        raise UsageError(f"--optimizer {cfg.optimizer}: {exc}") from None


def check_solver_options(cfg: TrainConfig, resume: bool = False) -> None:
    """Refuse, in one line naming the flag, --optimizer and the engine's reason, a flag the
    solver of --optimizer cannot honour (``engine.NOT_SUPPORTED``: L-BFGS takes no --lr,
    --schedule, --batch-size, --early-stopping, --dropout, nor --resume, since it keeps no
    state between fits). Only flags the user set count: defaults are not sent to it."""
    refused = engine.NOT_SUPPORTED[cfg.solver, "local"]
    given = {
        "--lr": cfg.lr is not None and cfg.solver == "lbfgs",
        "--schedule": cfg.schedule not in (None, registry.NO_SCHEDULE),
        "--batch-size": cfg.batch_size is not None,
        "--early-stopping": cfg.early_stopping is not None,
        "--dropout": bool(cfg.dropout),
        "--resume": resume,
    }
    for flag, is_set in given.items():
        why = refused.get(FLAG_OPTIONS[flag])
        if is_set and why is not None:
            fix = "start afresh with --overwrite" if flag == "--resume" else "leave it out"
            raise UsageError(f"{flag} does not apply to --optimizer {cfg.optimizer} ({why}); {fix}")
    if cfg.solver == "lbfgs" and cfg.epochs > MAX_HISTORY_ROWS:
        why = refused["history_every"]
        raise UsageError(
            f"--epochs {cfg.epochs} with --optimizer {cfg.optimizer}: {why} and a run's history keeps at "
            f"most {MAX_HISTORY_ROWS:,} rows; give --epochs {MAX_HISTORY_ROWS} or less"
        )


def build_schedule(cfg: TrainConfig) -> Schedule | None:
    """The schedule --schedule describes (``nnx.registry.SCHEDULE_FORMS``), or None."""
    try:
        return registry.make_schedule(cfg.schedule, cfg.epochs, "--schedule")
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def build_class_weight(cfg: TrainConfig) -> str | dict[int | str, float] | None:
    """--class-weight parsed: None, "balanced" or {class: weight}, each class a number
    (0..K-1, in the order of the data's classes) or a class name; ``resolve_class_weight``
    checks them against the data once it is loaded."""
    text = cfg.class_weight
    if text is None or text == "none":
        return None
    if text == "balanced":
        return text
    weights: dict[int | str, float] = {}
    for part in text.split(","):
        label, sep, value = part.rpartition(":")
        key: int | str = int(label) if label.isdigit() else label
        try:
            weight = float(value)
        except ValueError:
            weight, sep = 0.0, ""
        if not sep or not label or key in weights or not math.isfinite(weight) or weight < 0:
            raise UsageError(
                "--class-weight must be none, balanced or CLASS:WEIGHT pairs such as 0:1,1:3 or cat:2 "
                f"(a class number or name, weights >= 0), got {printable(text)!r}"
            )
        weights[key] = weight
    return weights


def resolve_class_weight(weights: str | dict[int | str, float] | None, classes: list[str]):
    """``build_class_weight``'s result for data with ``classes``: class names become their
    numbers; a class the data lack is a UsageError naming the classes there are."""
    if not isinstance(weights, dict):
        return weights
    names = {str(name): k for k, name in enumerate(classes)}
    listed = ", ".join(f"{k}={printable(str(c))}" for k, c in enumerate(classes[:10]))
    listed += " ..." if len(classes) > 10 else ""
    out: dict[int, float] = {}
    for key, weight in weights.items():
        k = names.get(key) if isinstance(key, str) else key
        if k is None or not 0 <= k < len(classes):
            raise UsageError(
                f"--class-weight names class {printable(str(key))!r}, which the data do not have "
                f"(their classes: {listed})"
            )
        if k in out:
            raise UsageError(f"--class-weight gives class {printable(str(key))!r} twice (by number and name)")
        out[k] = weight
    return out


def check_config(cfg: TrainConfig, resume: bool = False) -> None:
    """Refuse bad arguments and unsafe output paths before any work starts (UsageError,
    UnsafeOutputError or OutputWriteError, each with a one-line message); ``resume``:
    the run is to continue a checkpoint (refused for L-BFGS)."""
    if cfg.model not in ("logreg", "mlp"):
        raise UsageError(f"--model must be logreg or mlp, got {cfg.model!r}")
    for name, value in (
        ("--epochs", cfg.epochs),
        ("--hidden", cfg.hidden),
        ("--size", cfg.size),
        ("--checkpoint-every", cfg.checkpoint_every),
        ("--batch-size", cfg.batch_size),
    ):
        if value is None and name == "--batch-size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMITS[name]:
            raise UsageError(f"{name} must be a positive integer up to {LIMITS[name]:,}, got {value}")
    if cfg.data is None:
        check_builtin_options(cfg)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= LIMITS["--seed"]:
        raise UsageError(f"--seed must be an integer from 0 to {LIMITS['--seed']:,}, got {cfg.seed}")
    if cfg.optimizer not in registry.OPTIMIZERS:
        raise UsageError(
            f"--optimizer must be one of {', '.join(registry.OPTIMIZERS)}, got {cfg.optimizer!r}"
        )
    if cfg.lr is not None:
        _checked("lr", cfg.lr)
    if not (isinstance(cfg.val_split, (int, float)) and 0 <= cfg.val_split < 1):
        raise UsageError(f"--val-split must lie in [0, 1), got {cfg.val_split}")
    if cfg.layout not in CSV_LAYOUTS:
        raise UsageError(f"--layout must be one of {', '.join(CSV_LAYOUTS)}, got {cfg.layout!r}")
    if cfg.layout != "auto" and (cfg.data is None or Path(cfg.data).suffix.lower() != ".csv"):
        raise UsageError("--layout says how a CSV file is laid out; --data names no .csv file")
    if cfg.dtype not in registry.COMPUTE_DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(registry.COMPUTE_DTYPES)}, got {cfg.dtype!r}")
    _checked("momentum", cfg.momentum)
    if not isinstance(cfg.nesterov, bool):
        raise UsageError(f"--nesterov is on or off, got {cfg.nesterov!r}")
    check_solver_options(cfg, resume)
    build_optimizer(cfg)
    _checked("l2", cfg.l2)
    _checked("dropout", cfg.dropout)
    if cfg.dropout and cfg.model != "mlp":
        raise UsageError("--dropout needs a hidden layer: use it with --model mlp")
    build_schedule(cfg)
    build_class_weight(cfg)
    patience = cfg.early_stopping
    if patience is not None:
        if (
            isinstance(patience, bool)
            or not isinstance(patience, int)
            or not 1 <= patience <= LIMITS["--early-stopping"]
        ):
            raise UsageError(
                f"--early-stopping must be a positive integer (patience in epochs), got {patience}"
            )
        if cfg.val_split == 0:
            raise UsageError("--early-stopping watches the validation split: use --val-split > 0")
    if cfg.data is not None and not Path(cfg.data).exists():
        raise UsageError(f"--data: no such file or folder: {cfg.data}")
    try:  # an unavailable backend (no GPU for cupy) is refused before the data are loaded
        backends.select(cfg.backend)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if cfg.data is None or Path(cfg.data).is_dir() or Path(cfg.data).suffix.lower() == ".zip":
        check_model_size(cfg, 3 * cfg.size * cfg.size)  # images: the input size is known now
    check_output_paths(cfg.out, cfg.data, cfg.cache)


def check_builtin_options(cfg: TrainConfig) -> None:
    """--size and --positive for the embedded synthetic set (no --data): a picture size it
    can draw, a class name it has (UsageError in one line otherwise)."""
    if cfg.size < SYNTHETIC_MIN_SIZE:
        least = SYNTHETIC_MIN_SIZE
        raise UsageError(
            f"--size {cfg.size} is too small for the embedded synthetic set, whose pictures need at "
            f"least {least} x {least} pixels; use --size {least} or more"
        )
    if cfg.positive is not None and cfg.positive not in SYNTHETIC_CLASSES:
        names = " and ".join(repr(c) for c in SYNTHETIC_CLASSES)
        raise UsageError(
            f"--positive {printable(cfg.positive)!r} is not a class of the embedded synthetic set; "
            f"its classes are {names}"
        )


def check_model_size(cfg: TrainConfig, n_x: int, n_classes: int = 2) -> None:
    """Refuse a model whose files nnx could not load back: its parameters, times one plus
    the training-state arrays a checkpoint keeps per parameter, above nnx.io.MAX_PARAMETERS."""
    n_out = 1 if n_classes == 2 else n_classes
    if cfg.model == "logreg":
        count = (n_x + 1) * n_out
    else:
        count = (n_x + 1) * cfg.hidden + (cfg.hidden + 1) * n_out
    optimizer = build_optimizer(cfg)
    slots = optimizer.slots if isinstance(optimizer, Optimizer) else ()  # L-BFGS keeps none
    copies = 1 + len(slots) + (cfg.early_stopping is not None)
    if count * copies > MAX_PARAMETERS:
        detail = (
            f" (x{copies} with the optimizer and early-stopping state in checkpoints)" if copies > 1 else ""
        )
        fix = "a smaller --size or --hidden" if cfg.model == "mlp" else "a smaller --size"
        raise UsageError(
            f"the {cfg.model} model would have {count:,} parameters{detail}, over the {MAX_PARAMETERS:,} "
            f"nnx can save and load (nnx.io.MAX_PARAMETERS); use {fix}"
        )


def build_model(cfg: TrainConfig, n_x: int, n_classes: int = 2) -> Sequential:
    """Two classes: one sigmoid output; K > 2: a softmax output of K units."""
    check_model_size(cfg, n_x, n_classes)
    if cfg.model == "logreg":
        if n_classes > 2:
            return SoftmaxRegression(n_x, n_classes, seed=cfg.seed)
        return LogisticRegression(n_x, seed=cfg.seed)
    return MLP([n_x, cfg.hidden, 1 if n_classes == 2 else n_classes], seed=cfg.seed, dropout=cfg.dropout)
