"""The epoch loop: full-batch or seeded mini-batch gradient descent on a DeviceNetwork.

Per-epoch loss and accuracy stay on the backend as device scalars and are read in one
go every ``history_every`` epochs, so a GPU is synchronised only where figures are read.
Every pending loss is checked at that read: a NaN/inf stops training with an error
naming the first bad epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .errors import TrainingDivergedError
from .history import History
from .network import DeviceNetwork

log = logging.getLogger("nnx")

# callback(epoch, network, history) -> True to stop after this epoch (e.g. on Ctrl-C)
EpochCallback = Callable[[int, DeviceNetwork, History], bool | None]


def _progress(total: int, enabled: bool):
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

    Every batch an epoch yields is prepared for ``train_step`` (``DeviceNetwork.prepare``);
    nothing else ever sees raw host X. Full-batch X that does not fit raises the backend's
    out-of-memory error (``DeviceMemoryError`` on a GPU) naming ``batch_size=`` as the fix.
    """

    def __init__(self, net: DeviceNetwork, X: np.ndarray, Y: np.ndarray, batch_size: int | None):
        ops = net.ops
        self.net, self.m = net, X.shape[1]
        self.batch_size = None if batch_size is None or batch_size >= self.m else batch_size
        self.Y = ops.prepare_labels(Y, net.dtype)
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
        if self.full_batch:
            yield self.X, self.Y, 1.0
            return
        order = rng.permutation(self.m)
        for lo in range(0, self.m, self.batch_size):
            idx = order[lo : lo + self.batch_size]
            Xb, Yb = self.batch(idx)
            yield Xb, Yb, len(idx) / self.m


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
) -> History:
    """Train ``net`` in place for ``epochs`` epochs on the batches ``data`` yields."""
    ops = net.ops
    m = data.m
    bar = _progress(epochs, verbose)
    pending: list[tuple[int, Any, Any]] = []
    start = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            if data.full_batch:
                loss, correct = net.train_step(data.X, data.Y, lr)
            else:
                loss, correct = 0.0, 0
                for Xb, Yb, share in data.epoch(rng):
                    b_loss, b_correct = net.train_step(Xb, Yb, lr)
                    loss = loss + b_loss * share
                    correct = correct + b_correct
            pending.append((epoch, loss, correct))
            if epoch == 1:
                ops.synchronize()
                history.first_epoch_seconds = time.perf_counter() - start
            record = epoch % history_every == 0 or epoch == epochs
            if record:
                _flush(net, pending, m, history, history_every, validation, epoch, lr)
                pending.clear()
            stop = bool(callback(epoch, net, history)) if callback is not None else False
            if stop and not record:
                _flush(net, pending, m, history, history_every, validation, epoch, lr)
                pending.clear()
            if record or stop:
                if bar is not None:
                    bar.update(epoch - bar.n)
                    postfix = {"loss": f"{history.loss[-1]:.4g}", "acc": f"{history.accuracy[-1]:.3f}"}
                    if history.val_loss:
                        postfix["val_loss"] = f"{history.val_loss[-1]:.4g}"
                    bar.set_postfix(postfix, refresh=False)
            if stop:
                history.epochs = epoch
                break
        ops.synchronize()
    finally:
        if bar is not None:
            bar.close()
    history.seconds = time.perf_counter() - start
    return history


def _flush(
    net: DeviceNetwork,
    pending: list[tuple[int, Any, Any]],
    m: int,
    history: History,
    every: int,
    validation: tuple[Any, Any] | None,
    epoch_now: int,
    lr: float,
) -> None:
    """Read pending device scalars, check them, and record the epochs due."""
    ops = net.ops
    # losses and correct counts come over in one transfer (one synchronisation on a GPU)
    values = ops.scalars([loss for _, loss, _ in pending] + [correct for _, _, correct in pending])
    losses, corrects = values[: len(pending)], values[len(pending) :]
    for (epoch, _, _), value in zip(pending, losses):
        if not np.isfinite(value):
            raise TrainingDivergedError(
                f"training diverged: the loss became {value} at epoch {epoch} (lr={lr}); "
                "lower the learning rate or check the inputs' scale. The model's parameters "
                "were left as they were before fit."
            )
    for (epoch, _, _), value, correct in zip(pending, losses, corrects):
        if epoch % every == 0 or epoch == epoch_now:
            history.epoch.append(epoch)
            history.loss.append(value)
            history.accuracy.append(float(correct) / m)
    if validation is not None:
        Xv, Yv = validation
        v_loss, v_correct = net.evaluate(Xv, Yv)
        history.val_loss.append(ops.scalar(v_loss))
        history.val_accuracy.append(ops.scalar(v_correct) / Yv.shape[1])
