"""The jobs behind ``nnx train`` and ``nnx predict``: data in, trained model out.

``train`` checks every argument and every output path before any work, checkpoints every
k epochs and on SIGINT, SIGTERM or SIGHUP (the last completed epoch, atomically, with the
shuffle RNG's state and a fingerprint of the training data), and ``resume`` continues to
exactly the parameters an uninterrupted run reaches, on the same data only.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import backends, registry
from .callbacks import EarlyStopping
from .data import decode_image, load_csv, load_h5, load_images, load_npz, read_image_file
from .datasets import SYNTHETIC_CLASSES, SYNTHETIC_MIN_SIZE, synthetic_images, train_test_split
from .errors import DataError, ModelFormatError, StoppedBySignal, UsageError
from .files import atomic_write, check_target, printable
from .history import LIST_FIELDS, History
from .io import MAX_PARAMETERS, write_model_file
from .model import MLP, LogisticRegression, Sequential, SoftmaxRegression, load, load_checkpoint
from .optim import Optimizer, TrainingState
from .schedules import Schedule
from .training import diverged
from .validation import check_fits_dtype

CHECKPOINT = "checkpoint.npz"
# Every file a run writes in its --out folder, and the kind nnx recognises it by.
OUTPUTS = {
    "model.npz": "model",
    CHECKPOINT: "model",
    "history.json": "history-json",
    "history.csv": "history-csv",
    "learning_curve.png": "plot",
}
# decoded pixels nnx predict classifies with one network (a batch of 64 x 64 pictures: 21 845)
PREDICT_BATCH_BYTES = 256 * 2**20
# Signals that stop a run the way Ctrl-C does: finish the epoch, checkpoint, exit 128 + signal.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
LIMITS = {  # the largest value each argument accepts
    "--epochs": 10**9,
    "--hidden": 100_000,
    "--size": 1024,
    "--checkpoint-every": 10**9,
    "--batch-size": 2**31 - 1,
    "--seed": 2**32 - 1,
    "--early-stopping": 10**9,
}


@dataclass
class TrainConfig:
    """Everything that determines a training run; a resume must match it exactly."""

    data: str | None = None
    model: str = "logreg"
    hidden: int = 50
    epochs: int = 2000
    lr: float = 0.005
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
    optimizer: str = (
        registry.DEFAULT_OPTIMIZER
    )  # a name in nnx.registry.STEP_OPTIMIZERS; sgd at momentum 0 is plain GD
    momentum: float = 0.0  # sgd and rmsprop
    nesterov: bool = False  # sgd with momentum
    l2: float = 0.0
    dropout: float = 0.0  # mlp only
    schedule: str | None = None  # see nnx.registry.SCHEDULE_FORMS
    early_stopping: int | None = None  # patience in epochs, on the validation loss
    class_weight: str | None = None  # "balanced" or "CLASS:WEIGHT,..." (class number or name)

    def __post_init__(self) -> None:
        # run configurations of earlier nnx say "gd" for what is now "sgd" at momentum 0
        self.optimizer = registry.current_optimizer_name(self.optimizer)

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


def build_optimizer(cfg: TrainConfig) -> Optimizer:
    """The optimizer --optimizer names (sgd at momentum 0: plain gradient descent at --lr),
    built through ``nnx.registry`` with the options given."""
    options: dict[str, Any] = {"lr": cfg.lr}
    if cfg.momentum:
        options["momentum"] = cfg.momentum
    if cfg.nesterov:
        options["nesterov"] = True
    try:
        return registry.make_optimizer(
            cfg.optimizer, label=_flag, offered=registry.STEP_OPTIMIZERS, **options
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


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


def check_config(cfg: TrainConfig) -> None:
    """Refuse bad arguments and unsafe output paths before any work starts (UsageError,
    UnsafeOutputError or OutputWriteError, each with a one-line message)."""
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
    _checked("lr", cfg.lr)
    if not (isinstance(cfg.val_split, (int, float)) and 0 <= cfg.val_split < 1):
        raise UsageError(f"--val-split must lie in [0, 1), got {cfg.val_split}")
    if cfg.dtype not in registry.COMPUTE_DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(registry.COMPUTE_DTYPES)}, got {cfg.dtype!r}")
    _checked("momentum", cfg.momentum)
    if not isinstance(cfg.nesterov, bool):
        raise UsageError(f"--nesterov is on or off, got {cfg.nesterov!r}")
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
    check_output_paths(cfg)


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


def check_output_paths(cfg: TrainConfig) -> None:
    """The --out folder (made if absent) and every file the run will write there, and the
    --cache file: each absent or nnx's own file of that kind, in a writable folder."""
    out = Path(cfg.out)
    if cfg.data is not None and Path(cfg.data).is_dir():  # outputs would become training data
        data_dir = Path(cfg.data).resolve()
        for option, path in (("--out", out), ("--cache", cfg.cache)):
            if path is not None and _inside(Path(path).resolve(), data_dir):
                raise UsageError(
                    f"{option} {printable(str(path))} lies inside the --data folder {printable(cfg.data)}, "
                    "where nnx would read its own outputs as training data; choose a path outside it"
                )
    for name in OUTPUTS if cfg.cache is not None else ():
        if same_path(cfg.cache, out / name):
            raise UsageError(
                f"--cache {printable(cfg.cache)} is the run's own {name} in --out; "
                "give the cache a path of its own"
            )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; give a folder for the run's outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out} is not a writable folder: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} is not a writable folder: permission denied")
    for name, kind in OUTPUTS.items():
        check_target(out / name, kind, label="--out")
    if cfg.cache is not None:
        cache = Path(cfg.cache)
        if cfg.data is not None and cache.exists() and Path(cfg.data).exists():
            if os.path.samefile(cache, cfg.data):
                raise UsageError(f"--cache {cache} is the training data itself; give a separate .npz path")
        check_target(cache, "cache", label="--cache")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file: equal once resolved, or (both existing)
    the same inode, as a hard link is."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@dataclass
class Dataset:
    X: np.ndarray
    Y: np.ndarray
    Xv: np.ndarray | None
    Yv: np.ndarray | None
    classes: list[str]
    description: str
    image_size: int | None = None
    skipped: list = field(default_factory=list)


def load_data(cfg: TrainConfig, progress: bool = True) -> Dataset:
    """The training (and validation) data named by ``cfg.data``, or the embedded default."""
    if cfg.data is None:
        X, Y = synthetic_images(m=259, size=cfg.size, seed=1)
        classes = list(SYNTHETIC_CLASSES)
        if cfg.positive is not None and cfg.positive != classes[1]:  # label 1 is --positive
            Y, classes = 1 - Y, classes[::-1]
        Xtr, Ytr, Xv, Yv = _split(X, Y, cfg)
        return Dataset(
            Xtr,
            Ytr,
            Xv,
            Yv,
            classes,
            "embedded SYNTHETIC image set (generated, no download)",
            cfg.size,
        )
    path = Path(cfg.data)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zip":
        data = load_images(
            path,
            size=cfg.size,
            positive=cfg.positive,
            val_split=cfg.val_split,
            seed=cfg.seed,
            cache=cfg.cache,
            progress=progress,
        )
        has_val = data.X_val.shape[1] > 0
        return Dataset(
            data.X_train,
            data.Y_train,
            data.X_val if has_val else None,
            data.Y_val if has_val else None,
            data.classes,
            f"{len(data.files)} images from {path}",
            cfg.size,
            data.skipped,
        )
    if cfg.positive is not None:
        raise UsageError(
            f"--positive names a class of an image folder or zip; {path.name} holds class numbers already"
        )
    if suffix == ".npz":
        X, Y = load_npz(path)
    elif suffix == ".csv":
        X, Y = load_csv(path)
    elif suffix in (".h5", ".hdf5"):
        X, Y = load_h5(path, "train")
    else:
        raise UsageError(f"--data {path}: expected a folder, .zip, .npz, .csv or .h5 file")
    Xtr, Ytr, Xv, Yv = _split(X, Y, cfg)
    n_classes = max(2, int(np.max(Y)) + 1)
    return Dataset(Xtr, Ytr, Xv, Yv, [str(k) for k in range(n_classes)], f"{X.shape[1]} examples from {path}")


def _split(X, Y, cfg):
    if cfg.val_split > 0 and X.shape[1] >= 4:
        return train_test_split(X, np.asarray(Y).reshape(1, -1), test_fraction=cfg.val_split, seed=cfg.seed)
    return X, Y, None, None


def check_splits(data: Dataset, cfg: TrainConfig) -> None:
    """Every class must be present in the training split and, for two classes, in the
    validation split too; otherwise the run would train or score on one class only."""
    labels = [np.unique(np.asarray(Y)) for Y in (data.Y, data.Yv) if Y is not None]
    present_all = set(np.unique(np.concatenate(labels)).tolist())
    source = f"--data {printable(cfg.data)}" if cfg.data is not None else "the data"
    if len(present_all) < 2:
        only = ", ".join(printable(data.classes[int(k)]) for k in sorted(present_all))
        raise UsageError(
            f"{source} holds examples of one class only ({only}); a classifier needs examples of at "
            "least two classes"
        )
    for label, name in enumerate(data.classes):
        if label not in present_all:
            raise UsageError(
                f"{source} has no example of class {name!r} (labels are numbered 0..K-1 by their "
                f"values, here 0..{len(data.classes) - 1}); renumber the labels 0..K-1"
            )
    parts = [("training", data.Y)]
    if data.Yv is not None and len(data.classes) == 2:
        parts.append(("validation", data.Yv))
    for part, Y in parts:
        present = set(np.unique(np.asarray(Y)).tolist())
        for label, name in enumerate(data.classes):
            if label not in present:
                fix = (
                    "use a smaller --val-split (or 0)"
                    if cfg.val_split > 0
                    else "add examples of that class to the data"
                )
                raise UsageError(
                    f"the {part} split has no example of class {name!r} "
                    f"({Y.shape[1]} example(s), --val-split {cfg.val_split}); {fix}"
                )


def data_fingerprint(data: Dataset) -> str:
    """A digest of the training and validation arrays (shapes, dtypes and every byte):
    a resumed run must train on exactly the data its checkpoint was trained on."""
    h = hashlib.blake2b(digest_size=20)
    for arr in (data.X, data.Y, data.Xv, data.Yv):
        if arr is None:
            h.update(b"none;")
            continue
        arr = np.asarray(arr)
        h.update(f"{arr.shape};{arr.dtype.str};".encode())
        cols = np.asfortranarray(arr)  # one canonical byte order whatever the layout
        h.update(memoryview(cols.reshape(-1, order="F")).cast("B"))
    return h.hexdigest()


def check_model_size(cfg: TrainConfig, n_x: int, n_classes: int = 2) -> None:
    """Refuse a model whose files nnx could not load back: its parameters, times one plus
    the training-state arrays a checkpoint keeps per parameter, above nnx.io.MAX_PARAMETERS."""
    n_out = 1 if n_classes == 2 else n_classes
    if cfg.model == "logreg":
        count = (n_x + 1) * n_out
    else:
        count = (n_x + 1) * cfg.hidden + (cfg.hidden + 1) * n_out
    optimizer = build_optimizer(cfg)
    copies = 1 + len(optimizer.slots) + (cfg.early_stopping is not None)
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


def train(cfg: TrainConfig, resume: bool = False, verbose: bool = True, say=print) -> TrainResult:
    """Run (or resume) a training job and write model, history and learning curve to cfg.out.

    From the data loading until the outputs are written, SIGINT, SIGTERM and SIGHUP stop
    the run cleanly: during loading at once (``StoppedBySignal``, nothing written); during
    training after the epoch, with a checkpoint (repeats of SIGTERM/SIGHUP are ignored, a
    second SIGINT aborts as Ctrl-C twice does); while writing the outputs, after they are
    written. The result's ``signal`` names the signal in the last two cases."""
    check_config(cfg)
    lock = _lock_out(Path(cfg.out))
    stop: dict[str, Any] = {"signal": None, "phase": "loading"}

    def on_stop_signal(signum, frame):
        phase, first = stop["phase"], stop["signal"]
        if first is None:
            stop["signal"] = signum
            if phase == "loading":
                stop["phase"] = "stopping"
                raise StoppedBySignal(signum)
        elif phase == "training" and signum == first == getattr(signal, "SIGINT", None):
            raise KeyboardInterrupt  # Ctrl-C twice: abort without waiting for the epoch

    # Signal handlers can only be set from the main thread; elsewhere the caller owns signals.
    handle = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_stop_signal) for s in STOP_SIGNALS} if handle else {}
    try:
        return _train(cfg, resume, verbose, say, stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if lock is not None:
            os.close(lock)


def _lock_out(out: Path) -> int | None:
    """An exclusive advisory lock on the --out folder itself (flock on its descriptor, no
    lock file left behind) for the whole run: a second run on the same --out is refused
    in one line instead of overwriting the first one's files. None where flock is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(
            f"another nnx run is using --out {printable(str(out))}; wait for it to finish or choose "
            "another folder"
        ) from None
    except OSError:  # a filesystem without flock: run unlocked
        os.close(fd)
        return None
    return fd


def _train(cfg: TrainConfig, resume: bool, verbose: bool, say, stop: dict[str, Any]) -> TrainResult:
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    data = load_data(cfg, progress=verbose)
    if data.skipped:
        say(
            f"skipped {len(data.skipped)} unreadable file(s): "
            + ", ".join(f"{printable(n)} ({printable(r)})" for n, r in data.skipped[:5])
            + (" ..." if len(data.skipped) > 5 else "")
        )
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
        done, history, finished = _resume(ckpt_path, cfg, model, rng, fingerprint)
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
        training = net.host_training_state()
        state = {
            "config": cfg.identity(),
            "data_fingerprint": fingerprint,
            "epochs_done": epoch_done,
            "rng_state": rng.bit_generator.state,
            "history": combined.to_dict(),
            "training": training.json(),
            "finished": bool(hist.stop_reason) and stop["signal"] is None,
        }
        write_model_file(
            ckpt_path,
            model.config(),
            params,
            model.last_backend,
            model.metadata,
            state,
            state_arrays=training.arrays(),
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
            # at most ~20 000 recorded epochs: the history (kept in every checkpoint)
            # stays well inside the model file's metadata limit
            history_every=max(1, -(-cfg.epochs // 20_000)),
        )
        history.extend(fit_history, offset=done)
        _finish_history(history, fit_history, done)
        if stop["signal"] is not None:
            history.stop_reason = f"interrupted by signal {stop['signal']}; continue with --resume"
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
    ):
        setattr(history, key, getattr(fit_history, key))
    if not history.first_epoch_seconds:  # the first fit of the run timed its first epoch
        history.first_epoch_seconds = fit_history.first_epoch_seconds
    for key in ("stopped_epoch", "best_epoch"):
        value = getattr(fit_history, key)
        setattr(history, key, None if value is None else value + done)


def _resume(
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


def write_outputs(model: Sequential, history: History, out: Path, say=print) -> None:
    """model.npz, history.json, history.csv and learning_curve.png (when matplotlib is there)."""
    model.save(out / "model.npz")
    atomic_write(out / "history.json", lambda fh: fh.write(history.to_json().encode()), kind="history-json")
    atomic_write(out / "history.csv", lambda fh: fh.write(history.to_csv().encode()), kind="history-csv")
    try:
        from .plot import learning_curves

        learning_curves(history, out / "learning_curve.png")
        say(f"wrote {printable(str(out))}/model.npz, history.json, history.csv, learning_curve.png")
    except ImportError as exc:
        say(f"wrote {printable(str(out))}/model.npz, history.json, history.csv ({exc}; no learning curve)")


def predict_files(
    model_path: str,
    images: list[str],
    threshold: float = 0.5,
    backend: str | None = None,
    top: int = 1,
) -> list[dict[str, Any]]:
    """Class, probability and label for each image file, resized to the model's input size.

    Binary models: ``probability`` is P(label 1) and the label is 1 above ``threshold``.
    K-class models: the most probable class and its probability, and under ``top`` the
    ``top`` most probable classes as {"class_name", "label", "probability"} entries.
    The pictures are decoded first and classified together: one network and one upload
    of the parameters for every ``PREDICT_BATCH_BYTES`` of pixels, not one per picture.
    """
    if not Path(model_path).exists() or Path(model_path).is_dir():
        raise UsageError(f"no model file at {model_path}")
    model = load(model_path)
    n_x = model.n_features
    size = model.metadata.get("image_size")
    if not size:  # trained on npz/csv/h5 features: applying it to pixels would be silently wrong
        raise UsageError(
            f"{model_path} was not trained on images (its metadata has no image_size; it takes {n_x} "
            "features); nnx predict classifies images with models nnx train fitted on images "
            "(a model saved from Python: set model.metadata['image_size'] = SIZE first)"
        )
    if size * size * 3 != n_x:
        raise UsageError(f"{model_path} takes {n_x} features, which is not an RGB image size")
    classes = model.metadata.get("classes") or [str(k) for k in range(model.n_classes)]
    results: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], np.ndarray]] = []  # decoded, not yet classified

    def classify() -> None:
        """One network, one upload of the parameters, for every picture decoded so far."""
        if not pending:
            return
        X = np.stack([pixels.reshape(-1) for _, pixels in pending]).T  # (n_x, k), example-contiguous
        P = model.predict_proba(X, backend=backend).astype(float)
        for j, (entry, _) in enumerate(pending):
            _describe_prediction(entry, P[:, j], model.n_classes, classes, threshold, top)
        pending.clear()

    for name in images:
        entry: dict[str, Any] = {"file": name}
        results.append(entry)
        try:
            pixels = decode_image(read_image_file(name), size)
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc) if not isinstance(exc, FileNotFoundError) else "no such file"
            continue
        pending.append((entry, pixels))
        if len(pending) * n_x >= PREDICT_BATCH_BYTES:  # bounded memory for any number of pictures
            classify()
    classify()
    return results


def _describe_prediction(
    entry: dict[str, Any], proba: np.ndarray, n_classes: int, classes: list, threshold: float, top: int
) -> None:
    """Fill ``entry`` with the class, probability and label of one picture's ``proba``."""
    if n_classes == 2:
        p = float(proba[0])
        label = int(p > threshold)
        entry.update(probability=p, label=label, class_name=classes[label])
        return
    order = np.argsort(-proba, kind="stable")[: max(1, top)]
    best = int(order[0])
    entry.update(probability=float(proba[best]), label=best, class_name=classes[best])
    entry["top"] = [
        {"class_name": classes[k], "label": int(k), "probability": float(proba[k])} for k in order
    ]


def describe_results(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{printable(r['file'])}: error: {printable(r['error'])}")
        else:
            name, cls = printable(r["file"]), printable(str(r["class_name"]))
            line = f"{name}: p={r['probability']:.4f} label={r['label']} ({cls})"
            if len(r.get("top", ())) > 1:
                line += "; next: " + ", ".join(
                    f"{printable(str(t['class_name']))} {t['probability']:.4f}" for t in r["top"][1:]
                )
            lines.append(line)
    return "\n".join(lines)
