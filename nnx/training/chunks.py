"""Column chunks of X: the pieces of exact full-batch training over chunks, in this
process or on Dask workers.

The loss of a full batch is a mean over its m examples, so its gradient is a sum: each
chunk of columns computes its examples' loss and gradient sums divided by the *whole*
batch's m (``DeviceNetwork.loss_and_grads(X, Y, m=...)``), and the chunks' results are
added in chunk order. This module holds those pieces, with no Dask:

* ``Spec`` - what a chunk needs to know about the model and the run (small, picklable);
* ``Chunk`` - one chunk of X and Y (and example weights), checked and prepared once on
  the backend of the process holding it; ``Chunk.grads(params)`` is its share of an epoch;
* ``combine`` - the chunks' shares added in chunk order (a fixed order, so the sum never
  depends on which chunk finished first); ``fold`` - the first chunks' shares so added
  into one share, which the later chunks' shares are then added to;
* ``column_chunks`` - chunk sizes along the examples.

A ``Chunk`` never needs to move (if Dask pickles one, e.g. to spill it, it travels as host
arrays and is prepared again where it is unpickled).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backends
from ..errors import DataError
from ..network import Block, DeviceNetwork
from ..optim import TrainingState
from ..validation import (
    check_class_labels,
    check_fits_dtype,
    check_positive,
    check_targets,
    check_X,
    check_Y,
)

Params = list[tuple[np.ndarray, np.ndarray]]


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
    n_targets: int | None = None  # outputs of a regression model (real targets), else None

    @classmethod
    def of(cls, model: Any, dtype: str, m: int, backend: str | None) -> Spec:
        return cls(
            blocks=tuple(model.blocks),
            loss=model.loss,
            dtype=dtype,
            m=int(m),
            n_features=model.n_features,
            n_classes=model.n_classes if model.loss == "cross_entropy" else None,
            backend=backend,
            n_targets=model.n_outputs if getattr(model, "is_regression", False) else None,
        )


@dataclass(frozen=True)
class Partial:
    """One chunk's share of an epoch: loss sum / m, correct count, gradient sums / m."""

    index: int
    loss: float
    correct: int
    grads: Params

    def __sizeof__(self) -> int:  # what Dask counts when it moves one
        return nbytes_of(self.grads) + 128


def nbytes_of(obj: Any) -> int:
    """Bytes of the arrays in parameters, gradients or an update rule's state."""
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if isinstance(obj, (list, tuple)):
        return sum(nbytes_of(o) for o in obj)
    if isinstance(obj, dict):
        return sum(nbytes_of(o) for o in obj.values())
    if isinstance(obj, TrainingState):
        return nbytes_of(obj.arrays())
    return sys.getsizeof(obj)


def _chunk_error(index: int, lo: int, hi: int, what: str, exc: Exception) -> Exception:
    kind = TypeError if isinstance(exc, TypeError) else DataError
    return kind(f"chunk {index} of {what} (examples {lo}..{hi - 1}): {exc}")


class Chunk:
    """Columns lo..hi-1 of X and Y, checked and prepared once on this process's backend.

    X is checked as ``fit`` checks it (dtype, shape, every value finite) and any error names
    the chunk and its examples; uint8 pixels are scaled by 1/255 once, here.
    """

    def __init__(self, index: int, lo: int, X: Any, Y: Any, spec: Spec, weights: Any = None):
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
            if spec.n_targets is not None:
                labels = check_targets(Y, X.shape[1], spec.n_targets)
            elif spec.n_classes is None:
                labels = check_Y(Y, X.shape[1])
            else:
                labels = check_class_labels(Y, X.shape[1], spec.n_classes)
        except (ValueError, TypeError) as exc:
            raise _chunk_error(index, self.lo, hi, "Y", exc) from None
        self.m_chunk = X.shape[1]
        self._prepare(X, labels, None if weights is None else np.asarray(weights, dtype=np.float64))

    def _prepare(self, X: np.ndarray, labels: np.ndarray, weights: np.ndarray | None) -> None:
        selection = backends.select(self.spec.backend)
        ops = self.ops = selection.backend
        self.backend_reason = selection.reason
        dtype = self.spec.dtype
        with ops.memory_errors_explained():
            # One layout whatever the source's (example-contiguous, as fit keeps activations
            # on CPU backends; prepare_input aligns a buffer Dask deserialised at an odd
            # address): the same chunk gives the same products bit for bit wherever it is.
            self.X = ops.prepare_input(np.asfortranarray(X), dtype)
            self.Y = ops.prepare_labels(labels, dtype)
            # a weighted loss is a mean over the chunk's own examples: weights scaled by
            # m_chunk / m make it this chunk's share of the whole batch's weighted mean
            self.weights = weights  # host, as given (pickled as is)
            self.W = None
            if weights is not None:
                scaled = (weights * (self.m_chunk / self.spec.m)).reshape(1, -1)
                self.W = ops.prepare_labels(scaled, dtype)
        self._net: DeviceNetwork | None = None
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.ops.name

    @property
    def hi(self) -> int:
        return self.lo + self.m_chunk

    def grads(self, params: Params, dropout: tuple[int, int] | None = None) -> Partial:
        """This chunk's loss, correct count and gradient sums, each divided by the whole
        batch's m, at ``params`` (host arrays); returned as host arrays. ``dropout`` (key
        seed, epoch) turns the model's Dropout layers on with the whole batch's masks, this
        chunk's columns of them (as the unchunked full-batch epoch draws them)."""
        spec = self.spec
        with self._lock, self.ops.memory_errors_explained():
            ops = self.ops
            net = self._net
            if net is None:
                net = self._net = DeviceNetwork(ops, list(spec.blocks), spec.loss, params, spec.dtype)
            else:  # keep the activation buffers; only the parameters change
                net.params = [(ops.asarray(W, spec.dtype), ops.asarray(b, spec.dtype)) for W, b in params]
            batch = None
            if dropout is not None and any(blk.dropout for blk in spec.blocks):
                seed, epoch = dropout
                net.state = TrainingState({}, epoch=epoch, dropout_seed=seed)
                net.first_column, batch = self.lo, 0
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                if self.W is None:
                    loss, correct, grads = net.loss_and_grads(self.X, self.Y, batch=batch, m=spec.m)
                else:
                    loss, correct, grads = net.loss_and_grads(self.X, self.Y, self.W, batch=batch)
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
            "weights": self.weights,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.index, self.lo, self.spec, self.m_chunk = (
            state["index"],
            state["lo"],
            state["spec"],
            state["m_chunk"],
        )
        self._prepare(state["X"], state["Y"], state["weights"])

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


def fold(partials: Sequence[Partial]) -> Partial:
    """The shares of the batch's first chunks (a share already folded counts as the chunks
    it holds) added in chunk order into one share, indexed by the first chunk: ``combine``
    of it and the later chunks' shares is ``combine`` of all the chunks' shares bit for bit
    (the same additions in the same order). What a Dask worker holding the first chunks, or
    handed the sum of the chunks before its own, sends on instead of one share per chunk."""
    if len(partials) == 1:
        return partials[0]
    with np.errstate(over="ignore", invalid="ignore"):
        loss, correct, total = combine(partials)
    return Partial(min(p.index for p in partials), loss, correct, total)


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
