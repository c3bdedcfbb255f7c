"""The job behind ``nnx predict``: a model file and pictures, folders or zips in, a class
for each picture out, through one network, batch by batch."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import IMAGE_EXTENSIONS, read_image_file
from ..data.listing import Source, usable_images
from ..data.parallel import decode_rows
from ..errors import DataError, UsageError
from ..files import PREDICTIONS_CSV_HEADER, printable
from ..model import load

# decoded pixels nnx predict classifies with one network (a batch of 64 x 64 pictures: 21 845)
PREDICT_BATCH_BYTES = 256 * 2**20


@dataclass
class Picture:
    """One picture to classify: its result ``entry`` ({"file": the path shown}), and where
    its bytes are: ``name`` in ``source`` (a folder or zip), or the file ``name``. An entry
    that already holds an "error" is not read."""

    entry: dict[str, Any]
    source: Source | None = None
    name: str = ""


def path_kind(path: Path) -> str:
    """ "folder", "zip" or "file": how ``nnx predict`` reads a PATH argument. A regular file
    without an image extension is a zip when its name ends in .zip or its bytes are a zip;
    anything else is read as one picture (which says why it cannot be: no such file, a
    FIFO, not an image)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "folder"
    if stat.S_ISREG(st.st_mode) and not path.name.lower().endswith(IMAGE_EXTENSIONS):
        if path.name.lower().endswith(".zip"):
            return "zip"
        try:
            with open(path, "rb") as fh:
                if zipfile.is_zipfile(fh):
                    return "zip"
        except OSError:
            pass
    return "file"


def inside(arg: str, name: str) -> str:
    """The path shown for ``name`` of the folder or zip ``arg``: ``arg/name``, also for a
    refused zip member named "/etc/x.png" (which ``os.path.join`` would show alone)."""
    return os.path.join(arg, "") + name


class Predictions:
    """The pictures of ``paths`` classified by the model in ``model_path``, one result
    entry per picture, in order: the arguments as given, each folder (recursively) and zip
    in sorted path order, listed by the rules of ``nnx train`` (``nnx.data.listing``).

    The model is loaded and checked here (UsageError, in one line, for a model or an
    option that does not fit), and its network built once: iterating decodes the
    pictures of one batch (``PREDICT_BATCH_BYTES`` of pixels) on ``workers`` threads,
    classifies them together, yields their entries and drops them, so memory is bounded
    by the batch whatever the number of files. Each entry is {"file": path shown}, then
    either "error" or the class, probability, label and "top" (``predict_files``). Files
    of a folder or zip that are not pictures (``usable_images``) are not classified:
    ``skipped`` lists them as (path shown, reason) once their argument is listed.
    ``progress``, a tqdm bar or anything with ``total``, ``refresh()`` and ``update(n)``,
    counts the pictures found and classified.
    """

    def __init__(
        self,
        model_path: str,
        paths: list[str],
        threshold: float | None = None,
        backend: str | None = None,
        top: int | None = None,
        workers: int | None = None,
        progress: Any = None,
    ):
        if not Path(model_path).exists() or Path(model_path).is_dir():
            raise UsageError(f"no model file at {model_path}")
        if importlib.util.find_spec("PIL") is None:
            raise UsageError(
                "reading pictures needs Pillow, which is not installed: pip install 'nnx-nets[images]' "
                "(or pip install pillow), then run this again"
            )
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
        if model.n_classes == 2 and top is not None:
            raise UsageError(
                f"--top does not apply: {model_path} has two classes, and each line names both; "
                "--threshold sets the cut between them"
            )
        if model.n_classes > 2 and threshold is not None:
            raise UsageError(
                f"--threshold does not apply: {model_path} has {model.n_classes} classes and predicts the "
                "most probable one; --top N lists the N most probable"
            )
        self.paths = [str(p) for p in paths]
        self.size, self.n_x, self.n_classes = int(size), n_x, model.n_classes
        self.threshold = 0.5 if threshold is None else threshold
        self.top = 1 if top is None else top
        # the classes a CSV row names: the predicted one of two (the other has 1 - its
        # probability); the top N (at most K) of K
        self.ranked = 1 if model.n_classes == 2 else min(max(1, self.top), model.n_classes)
        self.classes = model.metadata.get("classes") or [str(k) for k in range(model.n_classes)]
        self.workers = workers or os.cpu_count() or 1
        self.progress = progress
        self.skipped: list[tuple[str, str]] = []
        self.n_found = 0  # pictures found so far
        self.n_errors = 0  # entries with an error so far
        self.predict_proba = model.predictor(backend=backend)  # one network, one upload

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        """The entries, one batch at a time (a batch is dropped once the next is asked for)."""
        per_batch = max(1, PREDICT_BATCH_BYTES // self.n_x)
        opened: list[Source] = []
        done: list[Source] = []  # listed to the end: closed once their last batch is decoded
        batch: list[Picture] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers) as pool:
            try:
                for item in self.pictures(opened):
                    if isinstance(item, Source):
                        done.append(item)
                        continue
                    batch.append(item)
                    if len(batch) >= per_batch:
                        yield self.classify(pool, batch)
                        batch = []
                        self.close(done, opened)
                if batch:
                    yield self.classify(pool, batch)
            finally:
                self.close(opened, opened)

    @staticmethod
    def close(sources: list[Source], opened: list[Source]) -> None:
        for source in list(sources):
            source.close()
            if source in opened:
                opened.remove(source)
        sources.clear()

    def found(self, n: int) -> None:
        self.n_found += n
        if self.progress is not None:
            self.progress.total = self.n_found
            self.progress.refresh()

    def pictures(self, opened: list[Source]) -> Iterator[Picture | Source]:
        """Every picture of the arguments in order, and after the pictures of a folder or
        zip its ``Source``, which the caller closes (``opened`` holds those still open)."""
        for arg in self.paths:
            kind = path_kind(Path(arg))
            if kind == "file":
                self.found(1)
                yield Picture({"file": arg}, None, arg)
                continue
            source = None
            try:
                source = Source(Path(arg))
                opened.append(source)
                listed = source.list()
            except Exception as exc:
                if source is not None:
                    self.close([source], opened)
                if isinstance(exc, DataError):
                    why = str(exc).removeprefix(f"{printable(arg)}: ")
                else:  # a damaged archive no check foresaw: still one line
                    why = f"cannot list its files ({type(exc).__name__}: {exc})"
                self.found(1)
                yield Picture({"file": arg, "error": why})
                continue
            images, skipped = usable_images(listed)
            skipped = sorted(source.problems + skipped)
            self.skipped += [(inside(arg, name), why) for name, why in skipped]
            if not images:
                self.found(1)
                what = "zip" if kind == "zip" else "folder"
                unused = f" ({len(skipped)} file(s) skipped)" if skipped else ""
                yield Picture({"file": arg, "error": f"no picture in this {what}{unused}"})
            self.found(len(images))
            for name, _, _ in images:
                yield Picture({"file": inside(arg, name)}, source, name)
            yield source

    def classify(self, pool: concurrent.futures.Executor, batch: list[Picture]) -> list[dict[str, Any]]:
        """Decode ``batch`` on ``pool``'s threads and classify it with one call of the
        network; the entries, filled in, in order."""
        todo = [p for p in batch if "error" not in p.entry]

        def read(i: int) -> bytes:
            picture = todo[i]
            if picture.source is not None:
                return picture.source.read(picture.name)
            try:
                return read_image_file(picture.name)
            except FileNotFoundError:
                raise ValueError("no such file") from None

        rows = np.empty((len(todo), self.n_x), dtype=np.uint8)  # C-order rows = example-contiguous X
        ok = []
        if self.progress is not None and len(todo) < len(batch):  # arguments that gave no picture
            self.progress.update(len(batch) - len(todo))
        for i, error in decode_rows(pool, rows, read, self.size):
            if error is None:
                ok.append(i)
            else:
                todo[i].entry["error"] = error
            if self.progress is not None:
                self.progress.update(1)
        if ok:
            X = (rows if len(ok) == len(todo) else rows[ok]).T  # (n_x, k) Fortran order
            P = self.predict_proba(X).astype(float)
            for j, i in enumerate(ok):
                _describe_prediction(
                    todo[i].entry, P[:, j], self.n_classes, self.classes, self.threshold, self.top
                )
        self.n_errors += sum("error" in p.entry for p in batch)
        return [p.entry for p in batch]


def predict_files(
    model_path: str,
    images: list[str],
    threshold: float | None = None,
    backend: str | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """Class, probability and label for each picture of ``images`` (files, folders, zips:
    ``Predictions``), resized to the model's input size, as a list.

    For every model ``probability`` is the probability of the predicted label, and ``top``
    lists the most probable classes as {"class_name", "label", "probability"} entries.
    Two-class models: the label is 1 where P(label 1) is above ``threshold`` (0.5 when
    None), and ``top`` holds both classes. K-class models: the most probable class, and
    ``top`` the ``top`` (1 when None) most probable ones. ``top`` for a two-class model
    and ``threshold`` for a K-class model do not apply: UsageError, in one line.
    The pictures are decoded a batch at a time and classified together: one network and
    one upload of the parameters for all of them, not one per picture.
    """
    return list(Predictions(model_path, images, threshold=threshold, backend=backend, top=top))


def csv_columns(ranked: int) -> list[str]:
    """The header of ``nnx predict --csv``: path,label,class,probability, the runners-up
    (class_2,probability_2, ... for --top N of a K-class model), then error."""
    columns = PREDICTIONS_CSV_HEADER.split(",")
    for k in range(2, ranked + 1):
        columns += [f"class_{k}", f"probability_{k}"]
    return [*columns, "error"]


def csv_row(entry: dict[str, Any], ranked: int) -> list[Any]:
    """One picture's row under ``csv_columns(ranked)`` (a picture that failed: its path and
    the error, the other cells empty)."""
    if "error" in entry:
        return [entry["file"], *[""] * (3 + 2 * (ranked - 1)), entry["error"]]
    row = [entry["file"], entry["label"], entry["class_name"], repr(entry["probability"])]
    runners = entry["top"][1:ranked]
    for t in runners:
        row += [t["class_name"], repr(t["probability"])]
    row += [""] * (2 * (ranked - 1 - len(runners)))
    return [*row, ""]


def _describe_prediction(
    entry: dict[str, Any], proba: np.ndarray, n_classes: int, classes: list, threshold: float, top: int
) -> None:
    """Fill ``entry`` with the class, probability and label of one picture's ``proba``."""
    if n_classes == 2:
        p1 = float(proba[0])
        label = int(p1 > threshold)
        both = [(label, p1 if label else 1.0 - p1), (1 - label, 1.0 - p1 if label else p1)]
        entry.update(probability=both[0][1], label=label, class_name=classes[label])
        entry["top"] = [{"class_name": classes[k], "label": k, "probability": p} for k, p in both]
        return
    order = np.argsort(-proba, kind="stable")[: max(1, top)]
    best = int(order[0])
    entry.update(probability=float(proba[best]), label=best, class_name=classes[best])
    entry["top"] = [
        {"class_name": classes[k], "label": int(k), "probability": float(proba[k])} for k in order
    ]


def describe_results(results: list[dict[str, Any]]) -> str:
    """One line per picture: ``photo.jpg: p=0.9996 label=0 (apple); next: sky 0.0002``, where
    p is the probability of the predicted label (for every number of classes) and the
    runners-up follow with theirs."""
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
