"""What ``nnx train`` writes: every output path checked before any work (absent, or nnx's own
file of that kind, in a writable folder, never inside the training data), the lock on the
--out folder for the run, and the outputs themselves."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from ..files import atomic_write, check_target, printable
from ..history import History
from ..model import Sequential

CHECKPOINT = "checkpoint.npz"
# Every file a run writes in its --out folder, and the kind nnx recognises it by.
OUTPUTS = {
    "model.npz": "model",
    CHECKPOINT: "model",
    "history.json": "history-json",
    "history.csv": "history-csv",
    "learning_curve.png": "plot",
}


def check_output_paths(out_path: str | os.PathLike, data: str | None, cache: str | None) -> None:
    """The --out folder (made if absent) and every file the run will write there, and the
    --cache file: each absent or nnx's own file of that kind, in a writable folder, and
    neither inside the --data folder (UsageError in one line otherwise)."""
    out = Path(out_path)
    if data is not None and Path(data).is_dir():  # outputs would become training data
        data_dir = Path(data).resolve()
        for option, path in (("--out", out), ("--cache", cache)):
            if path is not None and _inside(Path(path).resolve(), data_dir):
                raise UsageError(
                    f"{option} {printable(str(path))} lies inside the --data folder {printable(data)}, "
                    "where nnx would read its own outputs as training data; choose a path outside it"
                )
    for name in OUTPUTS if cache is not None else ():
        if same_path(cache, out / name):
            raise UsageError(
                f"--cache {printable(cache)} is the run's own {name} in --out; "
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
    if cache is not None:
        cache = Path(cache)
        if data is not None and cache.exists() and Path(data).exists():
            if os.path.samefile(cache, data):
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


def lock_out(out: Path) -> int | None:
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
