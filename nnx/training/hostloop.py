"""The host side of chunked and Dask training: the update rule, the epoch driver and L-BFGS
over the chunks' summed gradients.

* ``HostUpdate`` - any nnx step optimizer with its state, the L2 penalty and the schedule,
  applied on host arrays, one call per epoch (pure: it returns new arrays);
* ``Step`` - parameters, optimizer state and the figures of the epochs since the last read;
* ``advance`` - one epoch's combine and update (what a Dask update task runs);
* ``plan`` / ``drive`` - the start of a chunked or Dask fit and its epochs, a window at a
  time through a runner (``LocalChunks`` here, ``nnx.distributed``'s on Dask): figures
  checked and recorded, early stopping, the callback;
* ``lbfgs_on_chunks`` - L-BFGS whose objective is the chunks' summed loss and gradient.

Everything that crosses processes (parameters, ``Partial``, ``Step``) is small host data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backends
from ..history import History
from ..network import DeviceNetwork
from ..optim import SGD, Optimizer, TrainingState
from ..schedules import Schedule
from ..validation import (
    example_weights,
)
from .chunks import Chunk, Partial, combine, nbytes_of
from .divergence import cause_in, loss_diverged
from .request import seeded_start
from .steploop import progress_bar

Params = list[tuple[np.ndarray, np.ndarray]]
# callback(epoch, params, history) -> True to stop; called where the parameters are on the
# host: every epoch in a chunked fit, at every synchronisation in nnx.distributed.fit
ChunkCallback = Callable[[int, Params, History], bool | None]


@dataclass(frozen=True)
class Step:
    """Parameters after an epoch, the update's state, and the figures of the epochs since
    the last read-out: (loss with its L2 term, correct count, L2 term, learning rate, what
    the update left in the parameters: "", "inf" or "nan") per epoch, the first four
    measured at the start of its epoch."""

    params: Params
    state: Any = None
    figures: tuple[tuple[float, int, float, float, str], ...] = ()

    def cleared(self) -> Step:
        """The same parameters and state with the figures already read removed."""
        return Step(self.params, self.state)

    def __sizeof__(self) -> int:  # what Dask counts when it moves one
        return nbytes_of(self.params) + nbytes_of(self.state) + 32 * len(self.figures) + 128


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


def _params_cause(params: Params) -> str:
    return cause_in(backends.get_backend("numpy"), [p for pair in params for p in pair])


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
        cause = _params_cause(params)  # read on the client only if a loss turns non-finite
    return Step(params, state, step.figures + ((loss + penalty, correct, penalty, lr, cause),))


# ----------------------------------------------------------------- shared by both fits
def validator(model: Any, opts: Any, backend: Any) -> Callable[[Params], tuple[float, float]] | None:
    """A function params -> (val_loss, val_accuracy) on in-memory validation data, run in
    this process (None without validation data)."""
    from .request import validation_arrays

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
    best: Params | None = None  # and the parameters of its best epoch


def plan(model: Any, opts: Any, m: int, labels: Any) -> Plan:
    """The update rule, first Step and example weights of a chunked or Dask fit.
    ``labels`` are the host labels (needed only for class and sample weights)."""
    weights = per_class = None
    if opts.class_weight is not None or opts.sample_weight is not None:
        Y = model.check_labels(np.asarray(labels), m)
        weights, per_class = example_weights(
            Y, model.n_classes, opts.class_weight, opts.sample_weight, regression=model.is_regression
        )
    # L-BFGS needs no update rule: its steps are scipy's (plain SGD stands in, unused)
    stepper = opts.optimizer if opts.solver == "steps" else SGD(lr=1.0)
    rule = HostUpdate(stepper, opts.l2, m, opts.schedule)
    state = model.continued_state(opts.optimizer) if opts.warm_start else None
    keyed = any(blk.dropout for blk in model.blocks) and (state is None or state.dropout_seed is None)
    _, first, key = seeded_start(model, opts.seed, keyed)
    params = [(np.array(W, dtype=opts.dtype), np.array(b, dtype=opts.dtype)) for W, b in first]
    early = None if state is None or state.early is None else dict(state.early)
    best = None
    if state is not None and state.best is not None:
        flat = [np.array(a, dtype=opts.dtype) for a in state.best]
        best = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    start = rule.init(params, state)
    if key is not None:
        start.dropout_seed = key
    return Plan(rule, Step(params, start), weights, per_class, early, best)


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
    best: Params | None = None,
) -> tuple[Step, TrainingState]:
    """The epochs of a chunked or Dask fit, ``window`` at a time through ``runner.run``:
    each window's figures checked (a NaN/inf loss raises, naming its epoch) and recorded
    every ``history_every`` epochs, early stopping and the callback at each window's end.
    ``early`` is early stopping's progress continued from a warm start (None: a new watch)
    and ``best`` the parameters of its best epoch so far. As ``model.fit``'s step loop:
    the best parameters are restored when early stopping ends the fit, at its last epoch,
    and after a callback stopped it. Returns the last Step (its figures read) and the
    training state to keep."""
    es, every, epochs = opts.early_stopping, opts.history_every, opts.epochs
    window = 1 if es is not None else window
    start_state = step.state
    if es is not None and (early is None or early.get("stopped")):
        early, best = es.fresh(), None  # a new watch, no stale best
    start_clock = start_state.epoch
    bar = progress_bar(epochs, opts.verbose)
    start = time.perf_counter()
    done = 0
    try:
        while done < epochs:
            count = min(window, epochs - done)
            step = runner.run(step, done + 1, count)
            end = done + count
            if done == 0:
                history.first_epoch_seconds = (time.perf_counter() - start) / count
            for offset, (value, *_, cause) in enumerate(step.figures):
                if not np.isfinite(value):  # cause: what that epoch's update left
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
    if es is not None and es.restore_best and best is not None and history.stopped_epoch is not None:
        step = Step(best, step.state)  # stopped by the callback: its epoch had the last ones
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
    for offset, (value, correct, penalty, lr, _) in enumerate(step.figures):
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
