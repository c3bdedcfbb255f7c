"""The epoch loop: full-batch or seeded mini-batch training of a DeviceNetwork.

Per-epoch loss and accuracy stay on the backend as device scalars and are read in one
go every ``history_every`` epochs, so a GPU is synchronised only where figures are read
(and every epoch with early stopping, which must read the validation loss). Every pending
loss is checked at that read: a NaN/inf stops training with an error naming the first
bad epoch. The learning rate of each epoch comes from the schedule (a pure function of
the epoch clock, which continues over warm starts and resumes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..callbacks import EarlyStopping
from ..history import History
from ..network import DeviceNetwork
from ..schedules import Schedule
from .divergence import cause_in, diverged, loss_diverged
from .threads import small_steps

log = logging.getLogger("nnx")

# callback(epoch, network, history) -> True to stop after this epoch (see nnx.callbacks)
EpochCallback = Callable[[int, DeviceNetwork, History], bool | None]


def progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a stripped install still trains
        return None
    return tqdm(total=total, unit="epoch", dynamic_ncols=True, leave=True)


class Batches:
    """The one place that decides how training data reach ``train_step``, and prepares them.

    * full batch (``batch_size`` None or >= m): X is prepared on the backend once;
    * mini-batches: X is prepared once and each batch is gathered on the backend;
    * streamed mini-batches: when X would take more than 80 % of the free device memory,
      X stays in host memory and each batch is prepared on its own.

    Every batch an epoch yields is prepared for ``train_step`` (``DeviceNetwork.prepare``):
    the step loop never sees raw host X. (L-BFGS prepares its full batch once itself, and
    chunked and Dask training prepare each column chunk once where it lives.) Full-batch X
    that does not fit raises the backend's out-of-memory error (``DeviceMemoryError`` on a
    GPU) naming ``batch_size=`` as the fix.
    """

    def __init__(
        self,
        net: DeviceNetwork,
        X: np.ndarray,
        Y: np.ndarray,
        batch_size: int | None,
        weights: np.ndarray | None = None,
    ):
        ops = net.ops
        self.net, self.m = net, X.shape[1]
        self.batch_size = None if batch_size is None or batch_size >= self.m else batch_size
        self.Y = ops.prepare_labels(Y, net.dtype)
        # a weight per example (class and sample weights), (1, m) on the backend, or None
        self.W = None if weights is None else ops.prepare_labels(weights, net.dtype)
        free = ops.free_bytes()
        self.streamed = self.batch_size is not None and free is not None and X.nbytes > 0.8 * free
        if self.streamed:
            log.info("fit: X (%.2f GB) exceeds free device memory; streaming mini-batches", X.nbytes / 1e9)
            self.X = X
        else:
            self.X = net.prepare(X, for_training=True)

    @property
    def full_batch(self) -> bool:
        return self.batch_size is None

    def batch(self, idx: np.ndarray) -> tuple[Any, Any]:
        """Columns ``idx`` of X and Y, prepared for ``train_step``."""
        ops = self.net.ops
        if self.streamed:
            Xb = self.net.prepare(np.asfortranarray(self.X[:, idx]), for_training=True)
        else:
            Xb = ops.take_columns(self.X, idx)
        return Xb, ops.take_columns(self.Y, idx)

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[Any, Any, float]]:
        """The batches of one epoch as (X, Y, share of the m examples), shuffled by ``rng``
        for mini-batches."""
        for Xb, Yb, _, share in self.steps(rng):
            yield Xb, Yb, share

    def steps(self, rng: np.random.Generator) -> Iterator[tuple[Any, Any, Any, float]]:
        """``epoch`` with each batch's example weights: (X, Y, weights or None, share)."""
        if self.full_batch:
            yield self.X, self.Y, self.W, 1.0
            return
        order = rng.permutation(self.m)
        for lo in range(0, self.m, self.batch_size):
            idx = order[lo : lo + self.batch_size]
            Xb, Yb = self.batch(idx)
            Wb = None if self.W is None else self.net.ops.take_columns(self.W, idx)
            yield Xb, Yb, Wb, len(idx) / self.m


def run_epochs(
    net: DeviceNetwork,
    data: Batches,
    *,
    epochs: int,
    lr: float,
    rng: np.random.Generator,
    history: History,
    history_every: int = 1,
    validation: tuple[Any, Any] | None = None,
    verbose: bool = False,
    callback: EpochCallback | None = None,
    schedule: Schedule | None = None,
    early_stopping: EarlyStopping | None = None,
) -> History:
    """Train ``net`` in place for up to ``epochs`` epochs on the batches ``data`` yields.

    ``lr`` is the base learning rate (``schedule`` scales it per epoch). With
    ``early_stopping`` (which needs ``validation``) the validation figure is read every
    epoch; its progress and best parameters live in ``net.state``.
    """
    ops = net.ops
    m = data.m
    bar = progress_bar(epochs, verbose)
    pending: list[tuple[int, Any, Any, Any, float]] = []
    start = time.perf_counter()
    es = early_stopping
    start_clock = net.state.epoch if net.state is not None else 0
    if es is not None:
        assert net.state is not None and validation is not None
        if net.state.early is None or net.state.early.get("stopped"):
            net.state.early, net.state.best = es.fresh(), None  # a new watch, no stale best
    try:
        for epoch in range(1, epochs + 1):
            clock = net.begin_epoch() or epoch
            lr_now = schedule.lr(lr, clock - 1) if schedule is not None else lr
            loss: Any = 0.0
            penalty: Any = 0.0
            correct: Any = 0
            for b, (Xb, Yb, Wb, share) in enumerate(data.steps(rng)):
                b_loss, b_correct = net.train_step(Xb, Yb, lr_now, Wb, b)
                if data.full_batch:
                    loss, correct, penalty = b_loss, b_correct, net.last_penalty
                else:
                    loss = loss + b_loss * share
                    correct = correct + b_correct
                    penalty = penalty + net.last_penalty * share
            pending.append((epoch, loss, correct, penalty, lr_now))
            if epoch == 1:
                ops.synchronize()
                history.first_epoch_seconds = time.perf_counter() - start
            val = None
            stop_early = False
            if es is not None:
                assert net.state is not None and net.state.early is not None and validation is not None
                v_loss, v_correct = net.evaluate(*validation)
                val = (ops.scalar(v_loss), ops.scalar(v_correct) / validation[1].shape[1])
                improved, stop_early = es.update(
                    net.state.early, clock, val[0] if es.mode == "min" else val[1]
                )
                if improved:
                    net.keep_best()
                if (stop_early or epoch == epochs) and es.restore_best and net.state.best is not None:
                    net.restore_best()  # before the callback: a checkpoint of this epoch holds them
                if stop_early:
                    history.stop_reason = es.reason(net.state.early, es.restore_best)
            record = epoch % history_every == 0 or epoch == epochs or stop_early
            if record:
                _flush(net, pending, m, history, history_every, validation, epoch, lr, val)
                pending.clear()
            stop = bool(callback(epoch, net, history)) if callback is not None else False
            if stop and not record:
                _flush(net, pending, m, history, history_every, validation, epoch, lr, val)
                pending.clear()
            if stop and not history.stop_reason:
                history.stop_reason = f"stopped by the callback after epoch {epoch}"
            if record or stop:
                if bar is not None:
                    bar.update(epoch - bar.n)
                    postfix = {"loss": f"{history.loss[-1]:.4g}", "acc": f"{history.accuracy[-1]:.3f}"}
                    if history.val_loss:
                        postfix["val_loss"] = f"{history.val_loss[-1]:.4g}"
                    bar.set_postfix(postfix, refresh=False)
            if stop or stop_early:
                history.epochs = epoch
                history.stopped_epoch = epoch
                break
        # the loss of an epoch is measured before its update: the last update is checked here
        check_parameters_finite(net, history.epochs, lr)
        if es is not None and net.state is not None and net.state.early is not None:
            best = net.state.early.get("best_epoch")
            history.best_epoch = None if best is None else best - start_clock
            if es.restore_best and net.state.best is not None and history.stopped_epoch is not None:
                net.restore_best()  # stopped by the callback: its checkpoint kept the last epoch
        ops.synchronize()
    finally:
        if bar is not None:
            bar.close()
    history.seconds = time.perf_counter() - start
    return history


def parameter_cause(net: DeviceNetwork) -> str:
    """What the parameters of ``net`` hold ("", "inf" or "nan"; see ``cause_in``)."""
    return cause_in(net.ops, net.flat_params())


def check_parameters_finite(net: DeviceNetwork, epoch: int, lr: float) -> None:
    """Raise TrainingDivergedError when a parameter of ``net`` is NaN or inf."""
    cause = parameter_cause(net)
    if cause:
        what = "inf" if cause == "inf" else "NaN"
        raise diverged(f"the parameters became {what} in the update of epoch {epoch}", lr, cause)


def _flush(
    net: DeviceNetwork,
    pending: list[tuple[int, Any, Any, Any, float]],
    m: int,
    history: History,
    every: int,
    validation: tuple[Any, Any] | None,
    epoch_now: int,
    lr: float,
    val: tuple[float, float] | None = None,
) -> None:
    """Read pending device scalars, check them, and record the epochs due; ``val`` is the
    validation (loss, accuracy) of this epoch when already measured."""
    ops = net.ops
    # losses, correct counts and L2 terms come over in one transfer (one GPU synchronisation)
    n = len(pending)
    values = ops.scalars(
        [loss for _, loss, _, _, _ in pending]
        + [correct for _, _, correct, _, _ in pending]
        + ([pen for _, _, _, pen, _ in pending] if net.l2 else [])
    )
    losses, corrects = values[:n], values[n : 2 * n]
    penalties = values[2 * n :] if net.l2 else [0.0] * n
    for (epoch, *_), value in zip(pending, losses):
        if not np.isfinite(value):
            cause = parameter_cause(net)
            raise loss_diverged(value, epoch, cause, lr)
    for (epoch, _, _, _, lr_now), value, correct, pen in zip(pending, losses, corrects, penalties):
        if epoch % every == 0 or epoch == epoch_now:
            history.epoch.append(epoch)
            history.loss.append(value)
            history.accuracy.append(float(correct) / m)
            history.epoch_lr.append(lr_now)
            if net.l2:
                history.l2_penalty.append(float(pen))
    if validation is not None:
        if val is None:
            Xv, Yv = validation
            v_loss, v_correct = net.evaluate(Xv, Yv)
            val = (ops.scalar(v_loss), ops.scalar(v_correct) / Yv.shape[1])
        history.val_loss.append(val[0])
        history.val_accuracy.append(val[1])


def fit_local(model: Any, X: Any, Y: Any, opts: Any) -> Any:
    """The step loop on in-memory X in this process (``engine.run``'s local step solver):
    full batch, seeded mini-batches or streamed batches, any step optimizer. Returns an
    ``request.FitResult``; the model itself is not touched."""
    from .. import backends
    from .request import FitResult, fit_history, local_data, prepared_validation, seeded_start

    data = local_data(model, X, Y, opts)
    optimizer, seed = opts.optimizer, opts.seed
    state = model.continued_state(optimizer) if opts.warm_start else None
    selection = backends.select(opts.backend)
    ops = selection.backend
    keyed = any(blk.dropout for blk in model.blocks) and (state is None or state.dropout_seed is None)
    rng, start, dropout_seed = seeded_start(model, seed, keyed)
    history = fit_history(ops.name, selection.reason, opts, data.per_class)
    if opts.verbose:
        print(f"nnx: training on backend {ops.name!r} ({selection.reason}), dtype {opts.dtype}")
    log.info("fit: backend %s (%s), dtype %s, %r", ops.name, selection.reason, opts.dtype, optimizer)
    with ops.memory_errors_explained():
        net = DeviceNetwork(ops, list(model.blocks), model.loss, start, opts.dtype)
        net.start_training(
            optimizer,
            state,
            l2=opts.l2,
            m=data.X.shape[1],
            weighted=data.weights is not None,
            dropout_seed=dropout_seed,
        )
        batches = Batches(net, data.X, data.Y, opts.batch_size, data.weights)
        validation = prepared_validation(net, data.validation)
        batch = batches.batch_size or batches.m
        with (
            np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"),
            small_steps(ops, net.params, batch),  # small products: BLAS on one thread
        ):
            run_epochs(
                net,
                batches,
                epochs=opts.epochs,
                lr=opts.base_lr,
                rng=rng,
                history=history,
                history_every=opts.history_every,
                validation=validation,
                verbose=opts.verbose,
                callback=opts.callback,
                schedule=opts.schedule,
                early_stopping=opts.early_stopping,
            )
        host_state = net.host_training_state()
        params = net.host_params()
    return FitResult(params, history, ops.name, opts.dtype, host_state)
