"""The jobs behind ``nnx train`` and ``nnx predict``: data in, trained model out.

``train`` checks every argument before any work, checkpoints every k epochs and on Ctrl-C
(the last completed epoch, atomically, with the shuffle RNG's state), and ``resume``
continues to exactly the parameters an uninterrupted run reaches.
"""

from __future__ import annotations

import math
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import decode_image, load_csv, load_h5, load_images, load_npz
from .datasets import synthetic_images, train_test_split
from .history import History
from .io import atomic_write, load, load_with_extra, write_model_file
from .model import MLP, LogisticRegression, Sequential

CHECKPOINT = "checkpoint.npz"


class UsageError(ValueError):
    """A bad argument or input for a command-line job (reported as one line, exit code 2)."""


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
        )
        return {k: getattr(self, k) for k in keys}


def check_config(cfg: TrainConfig) -> None:
    """Refuse bad arguments before any work starts (UsageError with one-line message)."""
    if cfg.model not in ("logreg", "mlp"):
        raise UsageError(f"--model must be logreg or mlp, got {cfg.model!r}")
    for name, value in (
        ("--epochs", cfg.epochs),
        ("--hidden", cfg.hidden),
        ("--size", cfg.size),
        ("--checkpoint-every", cfg.checkpoint_every),
    ):
        if value is None or value <= 0:
            raise UsageError(f"{name} must be a positive integer, got {value}")
    if cfg.batch_size is not None and cfg.batch_size <= 0:
        raise UsageError(f"--batch-size must be a positive integer, got {cfg.batch_size}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UsageError(f"--lr must be a positive number, got {cfg.lr}")
    if not 0 <= cfg.val_split < 1:
        raise UsageError(f"--val-split must lie in [0, 1), got {cfg.val_split}")
    if cfg.data is not None and not Path(cfg.data).exists():
        raise UsageError(f"--data: no such file or folder: {cfg.data}")
    _check_writable(Path(cfg.out))


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".nnx-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {out} is not a writable folder: {exc.strerror or exc}") from None


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
        Xtr, Ytr, Xv, Yv = _split(X, Y, cfg)
        return Dataset(
            Xtr,
            Ytr,
            Xv,
            Yv,
            ["class 0", "class 1"],
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
    if suffix == ".npz":
        X, Y = load_npz(path)
    elif suffix == ".csv":
        X, Y = load_csv(path)
    elif suffix in (".h5", ".hdf5"):
        X, Y = load_h5(path, "train")
    else:
        raise UsageError(f"--data {path}: expected a folder, .zip, .npz, .csv or .h5 file")
    Xtr, Ytr, Xv, Yv = _split(X, Y, cfg)
    return Dataset(Xtr, Ytr, Xv, Yv, ["0", "1"], f"{X.shape[1]} examples from {path}")


def _split(X, Y, cfg):
    if cfg.val_split > 0 and X.shape[1] >= 4:
        return train_test_split(X, np.asarray(Y).reshape(1, -1), test_fraction=cfg.val_split, seed=cfg.seed)
    return X, Y, None, None


def build_model(cfg: TrainConfig, n_x: int) -> Sequential:
    if cfg.model == "logreg":
        return LogisticRegression(n_x, seed=cfg.seed)
    return MLP([n_x, cfg.hidden, 1], seed=cfg.seed)


@dataclass
class TrainResult:
    model: Sequential
    history: History
    epochs_done: int
    interrupted: bool
    out: Path
    resumed_from: int = 0


def train(cfg: TrainConfig, resume: bool = False, verbose: bool = True, say=print) -> TrainResult:
    """Run (or resume) a training job and write model, history and learning curve to cfg.out."""
    check_config(cfg)
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    data = load_data(cfg, progress=verbose)
    if data.skipped:
        say(
            f"skipped {len(data.skipped)} unreadable file(s): "
            + ", ".join(f"{n} ({r})" for n, r in data.skipped[:5])
            + (" ..." if len(data.skipped) > 5 else "")
        )
    model = build_model(cfg, data.X.shape[0])
    model.metadata = {"classes": data.classes, "image_size": data.image_size, "data": data.description}
    rng = np.random.default_rng(cfg.seed)
    history = History()
    done = 0
    if resume:
        if not ckpt_path.is_file():
            raise UsageError(f"--resume: no checkpoint at {ckpt_path}; start without --resume")
        saved, state = load_with_extra(ckpt_path)
        if not state or "config" not in state:
            raise UsageError(f"--resume: {ckpt_path} is not an nnx training checkpoint")
        mismatched = {
            k: (state["config"].get(k), v) for k, v in cfg.identity().items() if state["config"].get(k) != v
        }
        if mismatched:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in mismatched.items())
            raise UsageError(f"--resume refused: hyper-parameters differ from the checkpoint ({detail})")
        model.set_parameters(saved.parameters())
        rng.bit_generator.state = state["rng_state"]
        history = History.from_dict(state["history"])
        done = int(state["epochs_done"])
        say(f"resuming from epoch {done} of {cfg.epochs} ({ckpt_path})")
    say(f"data: {data.description}; X {data.X.shape} {data.X.dtype}; label 1 = {data.classes[-1]}")

    stop = {"requested": False}

    def on_sigint(signum, frame):  # first Ctrl-C: finish the epoch and checkpoint it
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    def checkpoint(epoch_done: int, params, hist: History) -> None:
        combined = History.from_dict(history.to_dict())
        combined.extend(hist, offset=done)
        state = {
            "config": cfg.identity(),
            "epochs_done": epoch_done,
            "rng_state": rng.bit_generator.state,
            "history": combined.to_dict(),
        }
        write_model_file(ckpt_path, model.config(), params, model.last_backend, model.metadata, state)

    def callback(epoch: int, net, hist: History) -> bool:
        total = done + epoch
        if stop["requested"] or total % cfg.checkpoint_every == 0 or total == cfg.epochs:
            checkpoint(total, net.host_params(), hist)
        return stop["requested"]

    remaining = cfg.epochs - done
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if remaining > 0:
            validation = (data.Xv, data.Yv) if data.Xv is not None else None
            fit_history = model.fit(
                data.X,
                data.Y,
                epochs=remaining,
                lr=cfg.lr,
                batch_size=cfg.batch_size,
                seed=rng,
                backend=cfg.backend,
                dtype=cfg.dtype,
                verbose=verbose,
                validation_data=validation,
                callback=callback,
            )
            history.extend(fit_history, offset=done)
            for key in ("backend", "backend_reason", "dtype", "lr", "batch_size"):
                setattr(history, key, getattr(fit_history, key))
            history.seconds += fit_history.seconds
            done += fit_history.epochs
    finally:
        signal.signal(signal.SIGINT, previous)
    history.epochs = done
    write_outputs(model, history, out, say)
    return TrainResult(model, history, done, stop["requested"], out)


def write_outputs(model: Sequential, history: History, out: Path, say=print) -> None:
    """model.npz, history.json, history.csv and learning_curve.png (when matplotlib is there)."""
    model.save(out / "model.npz")
    atomic_write(out / "history.json", lambda fh: fh.write(history.to_json().encode()))
    atomic_write(out / "history.csv", lambda fh: fh.write(history.to_csv().encode()))
    try:
        from .plot import learning_curves

        learning_curves(history, out / "learning_curve.png")
        say(f"wrote {out}/model.npz, history.json, history.csv, learning_curve.png")
    except ImportError as exc:
        say(f"wrote {out}/model.npz, history.json, history.csv ({exc}; no learning curve)")


def predict_files(
    model_path: str, images: list[str], threshold: float = 0.5, backend: str | None = None
) -> list[dict[str, Any]]:
    """Probability and label for each image file, resized to the model's input size."""
    if not Path(model_path).is_file():
        raise UsageError(f"no model file at {model_path}")
    model = load(model_path)
    n_x = model.n_features
    size = model.metadata.get("image_size") or int(round(math.sqrt(n_x / 3)))
    if size * size * 3 != n_x:
        raise UsageError(f"{model_path} takes {n_x} features, which is not an RGB image size")
    classes = model.metadata.get("classes") or ["0", "1"]
    results = []
    for name in images:
        entry: dict[str, Any] = {"file": name}
        try:
            pixels = decode_image(Path(name).read_bytes(), size)
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc) if not isinstance(exc, FileNotFoundError) else "no such file"
            results.append(entry)
            continue
        p = float(model.predict_proba(pixels.reshape(-1, 1), backend=backend)[0, 0])
        label = int(p > threshold)
        entry.update(probability=p, label=label, class_name=classes[label])
        results.append(entry)
    return results


def describe_results(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{r['file']}: error: {r['error']}")
        else:
            lines.append(f"{r['file']}: p={r['probability']:.4f} label={r['label']} ({r['class_name']})")
    return "\n".join(lines)
