"""Full-batch gradient descent split exactly over column chunks of X.

The loss of a full batch is a mean over its m examples, so its gradient is a sum: each
chunk of columns computes its examples' loss and gradient sums divided by the *whole*
batch's m (``DeviceNetwork.loss_and_grads(X, Y, m=...)``), the chunks' results are added
in chunk order, and one update is applied. This module holds those pieces, with no Dask:

* ``Chunk`` - one chunk of X and Y, checked and prepared once on the backend of the
  process holding it; ``Chunk.grads(params)`` is one chunk's share of an epoch;
* ``combine`` - the chunks' shares added in chunk order (a fixed order, so the sum never
  depends on which chunk finished first);
* ``GradientDescent`` - the update rule, one ``update`` call per epoch on host arrays (the
  place an optimizer object plugs in);
* ``advance`` - one epoch's combine and update;
* ``fit_chunked_locally`` - the single-process loop over the same pieces: the reference
  that ``nnx.distributed.fit`` equals bitwise for the same chunks and backend.

Everything that crosses processes here (``Spec``, parameters, ``Partial``, ``Step``) is
small host data; a ``Chunk`` never needs to move (if Dask pickles one, e.g. to spill it,
it travels as host arrays and is prepared again where it is unpickled).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backends
from ..errors import DataError, TrainingDivergedError
from ..history import History
from ..network import Block, DeviceNetwork
from ..validation import (
    INPUT_DTYPES,
    check_class_labels,
    check_dtype,
    check_fits_dtype,
    check_positive,
    check_X,
    check_Y,
)

log = logging.getLogger("nnx")
Params = list[tuple[np.ndarray, np.ndarray]]
# callback(epoch, params, history) -> True to stop; called where the parameters are on the
# host: every epoch here, at every synchronisation in nnx.distributed.fit
ChunkCallback = Callable[[int, Params, History], bool | None]


@dataclass(frozen=True)
class Spec:
    """What a chunk needs to know about the model and the run (small, picklable)."""

    blocks: tuple[Block, ...]
    loss: str
    dtype: str
    m: int  # examples in the whole batch: every chunk divides by it
    n_features: int
    n_classes: int | None  # K for a softmax model, None for a binary one
    backend: str | None  # None: the best backend of the process holding the chunk

    @classmethod
    def of(cls, model: Any, dtype: str, m: int, backend: str | None) -> Spec:
        return cls(
            blocks=tuple(model._blocks),
            loss=model.loss,
            dtype=dtype,
            m=int(m),
            n_features=model.n_features,
            n_classes=model.n_classes if model.loss == "cross_entropy" else None,
            backend=backend,
        )


@dataclass(frozen=True)
class Partial:
    """One chunk's share of an epoch: loss sum / m, correct count, gradient sums / m."""

    index: int
    loss: float
    correct: int
    grads: Params

    def __sizeof__(self) -> int:  # what Dask counts when it moves one
        return _nbytes(self.grads) + 128


@dataclass(frozen=True)
class Step:
    """Parameters after an epoch, the update rule's state, and the figures (loss and
    correct count at the start of each epoch) of the epochs since the last read-out."""

    params: Params
    state: Any = None
    losses: tuple[float, ...] = ()
    corrects: tuple[int, ...] = ()

    def cleared(self) -> Step:
        """The same parameters and state with the figures already read removed."""
        return Step(self.params, self.state)

    def __sizeof__(self) -> int:  # what Dask counts when it moves one
        return _nbytes(self.params) + _nbytes(self.state) + 16 * len(self.losses) + 128


def _nbytes(obj: Any) -> int:
    """Bytes of the arrays in parameters, gradients or an update rule's state."""
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o) for o in obj.values())
    return sys.getsizeof(obj)


def _chunk_error(index: int, lo: int, hi: int, what: str, exc: Exception) -> Exception:
    kind = TypeError if isinstance(exc, TypeError) else DataError
    return kind(f"chunk {index} of {what} (examples {lo}..{hi - 1}): {exc}")


class Chunk:
    """Columns lo..hi-1 of X and Y, checked and prepared once on this process's backend.

    X is checked as ``fit`` checks it (dtype, shape, every value finite) and any error names
    the chunk and its examples; uint8 pixels are scaled by 1/255 once, here.
    """

    def __init__(self, index: int, lo: int, X: Any, Y: Any, spec: Spec):
        self.index, self.lo, self.spec = index, int(lo), spec
        X = np.asarray(X)
        hi = self.lo + (X.shape[1] if X.ndim == 2 else 0)
        try:
            X = check_fits_dtype(check_X(X, spec.n_features), spec.dtype)
        except (ValueError, TypeError) as exc:
            if "NaN/inf" in str(exc):
                exc = _nonfinite(X, self.lo)
            raise _chunk_error(index, self.lo, hi, "X", exc) from None
        try:
            if spec.n_classes is None:
                labels = check_Y(Y, X.shape[1])
            else:
                labels = check_class_labels(Y, X.shape[1], spec.n_classes)
        except (ValueError, TypeError) as exc:
            raise _chunk_error(index, self.lo, hi, "Y", exc) from None
        self.m_chunk = X.shape[1]
        self._prepare(X, labels)

    def _prepare(self, X: np.ndarray, labels: np.ndarray) -> None:
        selection = backends.select(self.spec.backend)
        ops = self.ops = selection.backend
        self.backend_reason = selection.reason
        dtype = self.spec.dtype
        with ops.memory_errors_explained():
            # One layout whatever the source's (example-contiguous, as fit keeps activations
            # on CPU backends), aligned (a buffer Dask deserialised may not be, and NumPy
            # computes products of unaligned arrays without BLAS, rounding differently): the
            # same chunk gives the same products bit for bit wherever it is.
            X = np.asfortranarray(X)
            if not X.flags.aligned:
                X = np.array(X, order="F")
            self.X = ops.prepare_input(X, dtype)
            self.Y = ops.prepare_labels(labels, dtype)
        self._net: DeviceNetwork | None = None
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.ops.name

    @property
    def hi(self) -> int:
        return self.lo + self.m_chunk

    def grads(self, params: Params) -> Partial:
        """This chunk's loss, correct count and gradient sums, each divided by the whole
        batch's m, at ``params`` (host arrays); returned as host arrays."""
        spec = self.spec
        with self._lock, self.ops.memory_errors_explained():
            ops = self.ops
            net = self._net
            if net is None:
                net = self._net = DeviceNetwork(ops, list(spec.blocks), spec.loss, params, spec.dtype)
            else:  # keep the activation buffers; only the parameters change
                net.params = [(ops.asarray(W, spec.dtype), ops.asarray(b, spec.dtype)) for W, b in params]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                loss, correct, grads = net.loss_and_grads(self.X, self.Y, m=spec.m)
                host = [(ops.to_host(dW), ops.to_host(db)) for dW, db in grads]
                value, count = ops.scalars([loss, correct])
        return Partial(self.index, float(value), int(count), host)

    # A chunk pickles as host arrays (Dask spilling it to disk, or moving it after all) and
    # is prepared again, on the unpickling process's backend, where it lands.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "lo": self.lo,
            "spec": self.spec,
            "m_chunk": self.m_chunk,
            "X": self.ops.to_host(self.X),
            "Y": self.ops.to_host(self.Y),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.index, self.lo, self.spec, self.m_chunk = (
            state["index"],
            state["lo"],
            state["spec"],
            state["m_chunk"],
        )
        self._prepare(state["X"], state["Y"])

    def __sizeof__(self) -> int:  # what Dask counts for this object (X on a GPU included)
        return int(self.X.nbytes + self.Y.nbytes) + 1024

    def __repr__(self) -> str:
        return (
            f"Chunk({self.index}, examples {self.lo}..{self.hi - 1}, {self.backend}, "
            f"{self.spec.dtype}, {self.X.nbytes / 1e6:.1f} MB)"
        )


def _nonfinite(X: np.ndarray, lo: int) -> DataError:
    bad = ~np.isfinite(X)
    rows, cols = np.nonzero(bad)
    return DataError(
        f"X contains {int(bad.sum())} NaN/inf value(s), first at feature {rows[0]}, example "
        f"{lo + cols[0]} of the whole X; clean or impute the data first"
    )


def combine(partials: Sequence[Partial]) -> tuple[float, int, Params]:
    """The chunks' shares added in chunk order: (loss, correct, gradients) of the batch.

    The order is the chunks' (sorted by index), never the order they arrived in, so the
    sum is the same bit for bit wherever and whenever each chunk was computed.
    """
    ordered = sorted(partials, key=lambda p: p.index)
    first = ordered[0]
    loss, correct = first.loss, first.correct
    total = [(dW.copy(), db.copy()) for dW, db in first.grads]
    for part in ordered[1:]:
        loss += part.loss
        correct += part.correct
        for (tW, tb), (dW, db) in zip(total, part.grads):
            tW += dW
            tb += db
    return loss, correct, total


class GradientDescent:
    """Plain gradient descent: p <- p - lr * g, on host arrays, returning new arrays.

    The update rule's interface, one call per epoch: ``init(params) -> state`` and
    ``update(params, grads, state) -> (params, state)``. An optimizer with state (moments)
    keeps it in ``state``, which travels with the parameters.
    """

    def __init__(self, lr: float):
        self.lr = check_positive(lr, "lr")

    def init(self, params: Params) -> Any:
        return None

    def update(self, params: Params, grads: Params, state: Any) -> tuple[Params, Any]:
        new = []
        for (W, b), (dW, db) in zip(params, grads):
            new.append((W - W.dtype.type(self.lr) * dW, b - b.dtype.type(self.lr) * db))
        return new, state

    def __repr__(self) -> str:
        return f"GradientDescent(lr={self.lr})"


def update_rule(lr: float | None, optimizer: Any) -> GradientDescent:
    """The update rule of a run; only plain gradient descent (``lr=``) for now."""
    if optimizer is not None:
        raise ValueError(
            f"only plain gradient descent (lr=) for now; optimizer={optimizer!r} is not supported "
            "by chunked or distributed training yet"
        )
    return GradientDescent(0.01 if lr is None else lr)


def advance(step: Step, partials: Sequence[Partial], rule: GradientDescent) -> Step:
    """One epoch: the chunks' shares combined in chunk order, then one update."""
    loss, correct, grads = combine(partials)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        params, state = rule.update(step.params, grads, step.state)
    return Step(params, state, step.losses + (loss,), step.corrects + (correct,))


# ----------------------------------------------------------------- shared by both fits
def start_params(model: Any, seed: Any, dtype: str) -> Params:
    """The parameters a fit starts from, as ``Sequential.fit`` chooses them, in ``dtype``."""
    redraw = not model._init_fixed and isinstance(seed, (int, np.integer))
    start = model._drawn(int(seed)) if redraw else model.parameters()
    return [(np.array(W, dtype=dtype), np.array(b, dtype=dtype)) for W, b in start]


def check_seed(seed: Any) -> Any:
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be an int or None for full-batch chunked training (it only draws the "
            f"initial parameters), got {seed!r}"
        )
    return seed


def divergence(epoch: int, value: float, lr: float) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"training diverged: the loss became {value} at epoch {epoch} (lr={lr}); "
        "lower the learning rate or check the inputs' scale. The model's parameters "
        "were left as they were before fit."
    )


def record(
    history: History,
    step: Step,
    first_epoch: int,
    m: int,
    every: int,
    last_epoch: int,
    lr: float,
    validation: Callable[[Params], tuple[float, float]] | None = None,
) -> None:
    """Check the figures of epochs first_epoch.. (any NaN/inf loss raises, naming its
    epoch) and record those due: every ``every`` epochs and the last one."""
    for offset, value in enumerate(step.losses):
        if not np.isfinite(value):
            raise divergence(first_epoch + offset, value, lr)
    for offset, (value, correct) in enumerate(zip(step.losses, step.corrects)):
        epoch = first_epoch + offset
        if epoch % every == 0 or epoch == last_epoch:
            history.epoch.append(epoch)
            history.loss.append(float(value))
            history.accuracy.append(correct / m)
    if validation is not None:
        v_loss, v_acc = validation(step.params)
        history.val_loss.append(v_loss)
        history.val_accuracy.append(v_acc)


def validator(model: Any, validation_data: Any, dtype: str, backend: Any):
    """A function params -> (val_loss, val_accuracy) on in-memory validation data, run in
    this process (None without validation data)."""
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError("validation_data must be a pair (X_val, Y_val)")
    Xv = check_X(validation_data[0], model.n_features)
    Yv = model._labels(validation_data[1], Xv.shape[1])
    ops = backends.get_backend(backend)
    Xd = None

    def evaluate(params: Params) -> tuple[float, float]:
        nonlocal Xd
        net = DeviceNetwork(ops, model._blocks, model.loss, params, dtype)
        if Xd is None:
            Xd = (net.prepare(Xv, for_training=False), ops.prepare_labels(Yv, dtype))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            loss, correct = net.evaluate(*Xd)
        return ops.scalar(loss), ops.scalar(correct) / Yv.shape[1]

    return evaluate


def finish(model: Any, params: Params, history: History, dtype: str, backend_name: str) -> None:
    """Store a finished run in the model as ``Sequential.fit`` does."""
    model._store([(W.copy(), b.copy()) for W, b in params])
    model._init_fixed = True
    model.last_backend = backend_name
    model.dtype = dtype
    if model.history is None:
        model.history = History(
            backend=history.backend,
            backend_reason=history.backend_reason,
            dtype=history.dtype,
            lr=history.lr,
            batch_size=None,
        )
    model.history.extend(history, offset=model.epochs_trained)
    model.epochs_trained += history.epochs


@contextlib.contextmanager
def _blas_limited(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without it BLAS runs as configured
        log.info("fit_chunked_locally: threadpoolctl is not installed; BLAS threads not limited")
        yield
        return
    with threadpool_limits(limits=check_positive(threads, "blas_threads", int), user_api="blas"):
        yield


def column_chunks(m: int, chunks: int | Sequence[int]) -> tuple[int, ...]:
    """Chunk sizes along the examples: an int is a chunk size (the last chunk may be
    shorter), a sequence gives each chunk's size (they must add up to m)."""
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, bool):
        size = check_positive(int(chunks), "chunks", int)
        return tuple(min(size, m - lo) for lo in range(0, m, size))
    sizes = tuple(int(c) for c in chunks)
    if not sizes or any(c <= 0 for c in sizes) or sum(sizes) != m:
        raise ValueError(f"chunk sizes {sizes} must be positive and add up to the {m} examples of X")
    return sizes


def fit_chunked_locally(
    model: Any,
    X: Any,
    Y: Any,
    *,
    chunks: int | Sequence[int],
    epochs: int = 100,
    lr: float = 0.01,
    optimizer: Any = None,
    backend: str | None = None,
    seed: int | None = None,
    dtype: str = "float32",
    history_every: int = 1,
    validation_data: tuple[Any, Any] | None = None,
    callback: ChunkCallback | None = None,
    blas_threads: int | None = 1,
) -> History:
    """Full-batch gradient descent in this process, X split into column ``chunks``.

    The single-machine reference of ``nnx.distributed.fit``: the same ``Chunk``, ``combine``
    and update code, so for the same chunk sizes, backend and dtype both give the same
    parameters bit for bit. Against ``model.fit`` (unchunked) they agree to rounding (the
    sums are grouped differently; see the README). ``callback(epoch, params, history)``
    runs after every epoch with host parameters; True stops there. On any error the
    model's parameters are left as they were.

    ``blas_threads=1`` runs the BLAS products on one thread, as a Dask worker does (its
    nanny sets OPENBLAS_NUM_THREADS=1 and the like): a multi-threaded BLAS may split a
    product's sums differently and round differently. ``None`` leaves BLAS as configured
    (faster; then equal to a distributed run only where the products happen not to split).
    Needs threadpoolctl (the numba extra) to take effect.
    """
    epochs = check_positive(epochs, "epochs", int)
    history_every = check_positive(history_every, "history_every", int)
    dtype = check_dtype(dtype)
    seed = check_seed(seed)
    rule = update_rule(lr, optimizer)
    if isinstance(backend, backends.Backend):
        backend = backend.name
    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    if X.ndim != 2 or X.size == 0 or X.shape[0] != model.n_features or X.dtype.name not in INPUT_DTYPES:
        check_X(X, model.n_features)  # its message; the values are checked chunk by chunk
    m = X.shape[1]
    Y = np.asarray(Y)
    Y2 = Y.reshape(1, -1) if Y.ndim == 1 else Y
    if Y2.ndim != 2 or Y2.shape[1] != m:
        raise ValueError(f"X has {m} examples (columns) but Y has shape {Y.shape}")
    sizes = column_chunks(m, chunks)
    spec = Spec.of(model, dtype, m, backend)
    with model._lock, _blas_limited(blas_threads):
        validate = validator(model, validation_data, dtype, backend)
        edges = [int(e) for e in np.concatenate([[0], np.cumsum(sizes)])]
        parts = [
            Chunk(i, lo, X[:, lo:hi], Y2[:, lo:hi], spec) for i, (lo, hi) in enumerate(zip(edges, edges[1:]))
        ]
        names = sorted({c.backend for c in parts})
        history = History(
            backend=",".join(names),
            backend_reason=f"chunked locally: {len(parts)} chunks ({parts[0].backend_reason})",
            dtype=dtype,
            epochs=epochs,
            lr=rule.lr,
        )
        params = start_params(model, seed, dtype)
        step = Step(params, rule.init(params))
        start = time.perf_counter()
        first = 1
        for epoch in range(1, epochs + 1):
            step = advance(step, [c.grads(step.params) for c in parts], rule)
            if epoch == 1:
                history.first_epoch_seconds = time.perf_counter() - start
            due = epoch % history_every == 0 or epoch == epochs
            if due:
                record(history, step, first, m, history_every, epochs, rule.lr, validate)
                first, step = epoch + 1, step.cleared()
            if callback is not None and callback(epoch, step.params, history):
                if not due:  # the epoch stopped at is recorded, as fit does
                    record(history, step, first, m, history_every, epoch, rule.lr, validate)
                history.epochs = epoch
                break
        history.seconds = time.perf_counter() - start
        finish(model, step.params, history, dtype, history.backend)
    return history
