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

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backends
from ..errors import DataError
from ..history import History
from ..network import Block, DeviceNetwork
from ..optim import SGD, Optimizer, TrainingState
from ..schedules import Schedule
from ..validation import (
    INPUT_DTYPES,
    check_class_labels,
    check_fits_dtype,
    check_positive,
    check_X,
    check_Y,
    example_weights,
)
from .divergence import loss_diverged
from .steploop import _progress
from .threads import blas_limited

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
            blocks=tuple(model.blocks),
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
    """Parameters after an epoch, the update's state, and the figures of the epochs since
    the last read-out: (loss with its L2 term, correct count, L2 term, learning rate) per
    epoch, each measured at the start of its epoch."""

    params: Params
    state: Any = None
    figures: tuple[tuple[float, int, float, float], ...] = ()

    def cleared(self) -> Step:
        """The same parameters and state with the figures already read removed."""
        return Step(self.params, self.state)

    def __sizeof__(self) -> int:  # what Dask counts when it moves one
        return _nbytes(self.params) + _nbytes(self.state) + 32 * len(self.figures) + 128


def _nbytes(obj: Any) -> int:
    """Bytes of the arrays in parameters, gradients or an update rule's state."""
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o) for o in obj.values())
    if isinstance(obj, TrainingState):
        return _nbytes(obj.arrays())
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
            if spec.n_classes is None:
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
            # on CPU backends), aligned (a buffer Dask deserialised may not be, and NumPy
            # computes products of unaligned arrays without BLAS, rounding differently): the
            # same chunk gives the same products bit for bit wherever it is.
            X = np.asfortranarray(X)
            if not X.flags.aligned:
                X = np.array(X, order="F")
            self.X = ops.prepare_input(X, dtype)
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


class HostUpdate:
    """The update of chunked and Dask training, on host arrays: any nnx step optimizer
    (SGD with or without momentum, RMSprop, Adam, AdamW) with its state, the L2 penalty
    l2 / (2 m) * sum of squared weights (biases free) and the learning-rate schedule, as
    ``DeviceNetwork.train_step`` applies them in a local fit, through the NumPy backend's
    optimizer ops.

    ``update`` is pure - it returns new parameter and state arrays and never changes its
    inputs - since Dask may run one update twice (a task recomputed after a lost worker).
    """

    def __init__(self, optimizer: Optimizer, l2: float, m: int, schedule: Schedule | None):
        self.optimizer, self.l2, self.m, self.schedule = optimizer, float(l2), int(m), schedule
        self.lr = float(optimizer.lr)

    def init(self, params: Params, state: TrainingState | None) -> TrainingState:
        """The host state the first update continues: ``state`` (warm start), else a fresh
        one; slots it lacks start at zero."""
        flat = [p for pair in params for p in pair]
        base = state if state is not None else TrainingState(self.optimizer.config())
        slots = {
            name: [np.array(a, dtype=p.dtype) for a, p in zip(base.slots[name], flat)]
            if name in base.slots
            else [np.zeros_like(p) for p in flat]
            for name in self.optimizer.slots
        }
        return TrainingState(self.optimizer.config(), base.step, base.epoch, slots, base.dropout_seed)

    def update(
        self, params: Params, grads: Params, state: TrainingState
    ) -> tuple[Params, TrainingState, float, float]:
        """One epoch's step: (new parameters, new state, the L2 term of the loss at
        ``params``, the epoch's learning rate)."""
        ops = backends.get_backend("numpy")
        new = TrainingState(
            dict(state.optimizer),
            state.step + 1,
            state.epoch + 1,
            {k: [a.copy() for a in v] for k, v in state.slots.items()},
            state.dropout_seed,
        )
        lr = self.schedule.lr(self.lr, new.epoch - 1) if self.schedule is not None else self.lr
        flat = [p.copy() for pair in params for p in pair]
        flat_grads = [g for pair in grads for g in pair]
        penalty = 0.0
        if self.l2:
            total = 0.0
            for W, _ in params:
                total = total + ops.sum_squares(W)
            penalty = float(total * (self.l2 / (2 * self.m)))
        decays = [self.l2 / self.m if i % 2 == 0 else 0.0 for i in range(len(flat))]
        self.optimizer.update(ops, flat, flat_grads, new, lr, decays)
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)], new, penalty, lr

    def __repr__(self) -> str:
        return f"HostUpdate({self.optimizer!r}, l2={self.l2}, schedule={self.schedule!r})"


def dropout_of(step: Step) -> tuple[int, int] | None:
    """(key seed, epoch) of the dropout masks of the epoch that starts at ``step``."""
    state = step.state
    if state is None or state.dropout_seed is None:
        return None
    return state.dropout_seed, state.epoch + 1


def advance(step: Step, partials: Sequence[Partial], rule: HostUpdate) -> Step:
    """One epoch: the chunks' shares combined in chunk order, then one update."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        loss, correct, grads = combine(partials)
        params, state, penalty, lr = rule.update(step.params, grads, step.state)
    return Step(params, state, step.figures + ((loss + penalty, correct, penalty, lr),))


# ----------------------------------------------------------------- shared by both fits
def check_seed(seed: Any) -> Any:
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be an int or None for full-batch chunked training (it only draws the "
            f"initial parameters), got {seed!r}"
        )
    return seed


def validator(model: Any, opts: Any, backend: Any) -> Callable[[Params], tuple[float, float]] | None:
    """A function params -> (val_loss, val_accuracy) on in-memory validation data, run in
    this process (None without validation data)."""
    from .engine import validation_arrays

    checked = validation_arrays(model, opts)
    if checked is None:
        return None
    Xv, Yv = checked
    ops = backends.get_backend(backend)
    blocks, dtype = list(model.blocks), opts.dtype
    prepared = None

    def evaluate(params: Params) -> tuple[float, float]:
        nonlocal prepared
        net = DeviceNetwork(ops, blocks, model.loss, params, dtype)
        if prepared is None:
            prepared = (net.prepare(Xv, for_training=False), ops.prepare_labels(Yv, dtype))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            loss, correct = net.evaluate(*prepared)
        return ops.scalar(loss), ops.scalar(correct) / Yv.shape[1]

    return evaluate


@dataclass
class Plan:
    """What chunked and Dask training share before the first epoch: the update rule, the
    starting Step, the per-example weights (or None) and the History."""

    rule: HostUpdate
    step: Step
    weights: np.ndarray | None
    per_class: np.ndarray | None
    early: dict[str, Any] | None = None  # early stopping's progress, continued by warm_start


def plan(model: Any, opts: Any, m: int, labels: Any) -> Plan:
    """The update rule, first Step and example weights of a chunked or Dask fit.
    ``labels`` are the host labels (needed only for class and sample weights)."""
    check_seed(opts.seed)
    weights = per_class = None
    if opts.class_weight is not None or opts.sample_weight is not None:
        Y = model.check_labels(np.asarray(labels), m)
        weights, per_class = example_weights(
            Y, model.n_classes, model.loss, opts.class_weight, opts.sample_weight
        )
    # L-BFGS needs no update rule: its steps are scipy's (plain SGD stands in, unused)
    stepper = opts.optimizer if opts.solver == "steps" else SGD(lr=1.0)
    rule = HostUpdate(stepper, opts.l2, m, opts.schedule)
    state = model.continued_state(opts.optimizer) if opts.warm_start else None
    params = [
        (np.array(W, dtype=opts.dtype), np.array(b, dtype=opts.dtype))
        for W, b in model.start_parameters(opts.seed)
    ]
    early = None if state is None or state.early is None else dict(state.early)
    start = rule.init(params, state)
    if any(blk.dropout for blk in model.blocks) and start.dropout_seed is None:
        # as a local fit keys its masks: an int seed itself, else one draw
        seed = opts.seed
        start.dropout_seed = (
            int(seed) % 2**64 if seed is not None else int(np.random.default_rng().integers(2**63))
        )
    return Plan(rule, Step(params, start), weights, per_class, early)


class LocalChunks:
    """Runs epochs on chunks held in this process (the reference of the Dask runner)."""

    def __init__(self, chunks: list[Chunk], rule: HostUpdate):
        self.chunks, self.rule = chunks, rule

    def run(self, step: Step, first: int, count: int) -> Step:
        for _ in range(count):
            step = advance(step, [c.grads(step.params, dropout_of(step)) for c in self.chunks], self.rule)
        return step


def drive(
    runner: Any,
    step: Step,
    *,
    opts: Any,
    m: int,
    history: History,
    validate: Callable[[Params], tuple[float, float]] | None,
    window: int,
    early: dict[str, Any] | None = None,
) -> tuple[Step, TrainingState]:
    """The epochs of a chunked or Dask fit, ``window`` at a time through ``runner.run``:
    each window's figures checked (a NaN/inf loss raises, naming its epoch) and recorded
    every ``history_every`` epochs, early stopping and the callback at each window's end.
    ``early`` is early stopping's progress continued from a warm start (None: a new watch).
    Returns the last Step (its figures read) and the training state to keep."""
    es, every, epochs = opts.early_stopping, opts.history_every, opts.epochs
    window = 1 if es is not None else window
    start_state = step.state
    if es is not None and (early is None or early.get("stopped")):
        early = es.fresh()  # a new watch, no stale best
    start_clock = start_state.epoch
    best: Params | None = None
    bar = _progress(epochs, opts.verbose)
    start = time.perf_counter()
    done = 0
    try:
        while done < epochs:
            count = min(window, epochs - done)
            step = runner.run(step, done + 1, count)
            end = done + count
            if done == 0:
                history.first_epoch_seconds = (time.perf_counter() - start) / count
            for offset, (value, *_) in enumerate(step.figures):
                if not np.isfinite(value):
                    cause = _params_cause(step.params)
                    raise loss_diverged(value, done + 1 + offset, cause, history.lr)
            val = None
            stop_early = False
            if es is not None:
                assert validate is not None and early is not None
                val = validate(step.params)
                improved, stop_early = es.update(
                    early, step.state.epoch, val[0] if es.mode == "min" else val[1]
                )
                if improved:
                    best = [(W.copy(), b.copy()) for W, b in step.params]
                if (stop_early or end == epochs) and es.restore_best and best is not None:
                    step = Step(best, step.state, step.figures)
                if stop_early:
                    history.stop_reason = es.reason(early, es.restore_best)
            due = end % every == 0 or end == epochs or stop_early
            # every window's epochs due are recorded; the validation figures where due
            final = end if stop_early else epochs
            measured = (val or validate(step.params)) if due and validate is not None else None
            _record(history, step, done + 1, m, every, final, measured)
            stop = False
            if opts.callback is not None:
                stop = bool(opts.callback(end, step.params, history))
                if stop and not due:  # the epoch stopped at is recorded, as fit does
                    measured = validate(step.params) if validate is not None else None
                    _record(
                        history, Step(step.params, step.state, step.figures[-1:]), end, m, 0, end, measured
                    )
                if stop and not history.stop_reason:
                    history.stop_reason = f"stopped by the callback after epoch {end}"
            step = step.cleared()
            done = end
            if bar is not None:
                bar.update(done - bar.n)
                if history.loss:
                    bar.set_postfix({"loss": f"{history.loss[-1]:.4g}"}, refresh=False)
            if stop or stop_early:
                history.epochs = history.stopped_epoch = done
                break
    finally:
        if bar is not None:
            bar.close()
    history.seconds = time.perf_counter() - start
    state = step.state
    if es is not None and early is not None:
        best_epoch = early.get("best_epoch")
        history.best_epoch = None if best_epoch is None else best_epoch - start_clock
        state = TrainingState(
            state.optimizer,
            state.step,
            state.epoch,
            state.slots,
            state.dropout_seed,
            early,
            None if best is None else [p for pair in best for p in pair],
        )
    return step, state


def _params_cause(params: Params) -> str:
    flat = [p for pair in params for p in pair]
    if all(np.isfinite(p).all() for p in flat):
        return ""
    return "inf" if any(np.isinf(p).any() for p in flat) else "nan"


def _record(
    history: History,
    step: Step,
    first_epoch: int,
    m: int,
    every: int,
    last_epoch: int,
    validation: tuple[float, float] | None,
) -> None:
    """Record the figures of epochs first_epoch.. that are due (every ``every`` epochs, 0:
    none, and ``last_epoch``), then the ``validation`` figures (loss, accuracy), if any."""
    for offset, (value, correct, penalty, lr) in enumerate(step.figures):
        epoch = first_epoch + offset
        if epoch == last_epoch or (every and epoch % every == 0):
            history.epoch.append(epoch)
            history.loss.append(float(value))
            history.accuracy.append(correct / m)
            history.epoch_lr.append(lr)
            if history.l2:
                history.l2_penalty.append(float(penalty))
    if validation is not None:
        history.val_loss.append(validation[0])
        history.val_accuracy.append(validation[1])


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


@dataclass
class ChunkedSource:
    """Gradient source of ``engine.run``: X split into column ``chunks`` in this process."""

    chunks: int | Sequence[int]
    blas_threads: int | None = 1
    backend: str | None = None
    name = "chunked"

    def fit(self, model: Any, X: Any, Y: Any, opts: Any) -> Any:
        from .engine import FitResult, fit_history

        X = X if isinstance(X, np.ndarray) else np.asarray(X)
        if X.ndim != 2 or X.size == 0 or X.shape[0] != model.n_features or X.dtype.name not in INPUT_DTYPES:
            check_X(X, model.n_features)  # its message; the values are checked chunk by chunk
        m = X.shape[1]
        Y = np.asarray(Y)
        Y2 = Y.reshape(1, -1) if Y.ndim == 1 else Y
        if Y2.ndim != 2 or Y2.shape[1] != m:
            raise ValueError(f"X has {m} examples (columns) but Y has shape {Y.shape}")
        sizes = column_chunks(m, self.chunks)
        spec = Spec.of(model, opts.dtype, m, self.backend)
        setup = plan(model, opts, m, Y2)
        with blas_limited(self.blas_threads):
            validate = validator(model, opts, self.backend)
            edges = [int(e) for e in np.concatenate([[0], np.cumsum(sizes)])]
            parts = [
                Chunk(i, lo, X[:, lo:hi], Y2[:, lo:hi], spec, _columns(setup.weights, lo, hi))
                for i, (lo, hi) in enumerate(zip(edges, edges[1:]))
            ]
            names = sorted({c.backend for c in parts})
            reason = f"chunked locally: {len(parts)} chunks ({parts[0].backend_reason})"
            history = fit_history(",".join(names), reason, opts, setup.per_class)
            if opts.solver == "lbfgs":
                host = lbfgs_on_chunks(setup, opts, m, history, validate, lambda p: local_gradients(parts, p))
                return FitResult(host, history, history.backend, opts.dtype, None)
            step, state = drive(
                LocalChunks(parts, setup.rule),
                setup.step,
                opts=opts,
                m=m,
                history=history,
                validate=validate,
                window=1,
                early=setup.early,
            )
        return FitResult(step.params, history, history.backend, opts.dtype, state)


def local_gradients(chunks: list[Chunk], params: Params) -> tuple[float, int, Params]:
    """The whole batch's (loss, correct, gradients) at ``params`` from chunks held here."""
    return combine([c.grads(params) for c in chunks])


def lbfgs_on_chunks(
    setup: Plan,
    opts: Any,
    m: int,
    history: History,
    validate: Callable[[Params], tuple[float, float]] | None,
    gradients: Callable[[Params], tuple[float, int, Params]],
) -> Params:
    """L-BFGS over the chunks' summed loss and gradient (``gradients(params)``); the
    final host parameters."""
    from .lbfgs import HostObjective, minimise

    objective = HostObjective(setup.step.params, gradients, m, opts.l2, validate)
    return minimise(objective, opts, history)


def _columns(weights: np.ndarray | None, lo: int, hi: int) -> np.ndarray | None:
    return None if weights is None else weights[lo:hi]


def fit_chunked_locally(
    model: Any,
    X: Any,
    Y: Any,
    *,
    chunks: int | Sequence[int],
    epochs: int = 100,
    lr: float | None = None,
    backend: str | None = None,
    blas_threads: int | None = 1,
    **options: Any,
) -> History:
    """Full-batch training in this process, X split into column ``chunks``.

    The single-machine reference of ``nnx.distributed.fit``: the same ``Chunk``, ``combine``
    and update code, so for the same chunk sizes, backend and dtype both give the same
    parameters bit for bit. Against ``model.fit`` (unchunked) they agree to rounding (the
    sums are grouped differently; see the README). Takes ``model.fit``'s options (any step
    optimizer, ``l2``, ``schedule``, ``early_stopping``, ``class_weight``, ``sample_weight``,
    ``validation_data``, ``history_every``, ``seed``, ``dtype``, ``warm_start``, ``verbose``);
    what full-batch chunks cannot do (mini-batches, Dropout layers) is refused before any
    work. ``callback(epoch, params, history)`` runs after every epoch with host parameters;
    True stops there. On any error the model's parameters are left as they were.

    ``blas_threads=1`` runs the BLAS products on one thread, as a Dask worker does (its
    nanny sets OPENBLAS_NUM_THREADS=1 and the like): a multi-threaded BLAS may split a
    product's sums differently and round differently. ``None`` leaves BLAS as configured
    (faster; then equal to a distributed run only where the products happen not to split).
    Needs threadpoolctl (the numba extra) to take effect.
    """
    from . import engine

    if isinstance(backend, backends.Backend):
        backend = backend.name
    source = ChunkedSource(chunks, blas_threads, backend)
    return engine.run(model, X, Y, source, epochs=epochs, lr=lr, backend=backend, **options)
