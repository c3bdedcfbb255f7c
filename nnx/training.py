"""The epoch loop: full-batch or seeded mini-batch gradient descent on a DeviceNetwork.

Per-epoch loss and accuracy stay on the backend as device scalars and are read in one
go every ``history_every`` epochs, so a GPU is synchronised only where figures are read.
Every pending loss is checked at that read: a NaN/inf stops training with an error
naming the first bad epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import TrainingDivergedError
from .history import History
from .network import DeviceNetwork

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


def run_epochs(
    net: DeviceNetwork,
    X: Any,
    Y: Any,
    *,
    epochs: int,
    lr: float,
    batch_size: int | None,
    rng: np.random.Generator,
    history: History,
    history_every: int = 1,
    validation: tuple[Any, Any] | None = None,
    verbose: bool = False,
    callback: EpochCallback | None = None,
    batch_of: Callable[[np.ndarray], tuple[Any, Any]] | None = None,
) -> History:
    """Train ``net`` in place for ``epochs`` epochs on prepared backend arrays (X, Y).

    ``batch_of(idx)`` returns the mini-batch of columns ``idx`` ready for ``train_step``;
    by default the columns are gathered on the backend from X and Y.
    """
    ops = net.ops
    m = Y.shape[1]
    full_batch = batch_size is None or batch_size >= m
    if batch_of is None:
        batch_of = lambda idx: (ops.take_columns(X, idx), ops.take_columns(Y, idx))  # noqa: E731
    bar = _progress(epochs, verbose)
    pending: list[tuple[int, Any, Any]] = []
    start = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            if full_batch:
                loss, correct = net.train_step(X, Y, lr)
            else:
                order = rng.permutation(m)
                loss, correct = 0.0, 0
                for lo in range(0, m, batch_size):
                    idx = order[lo : lo + batch_size]
                    b_loss, b_correct = net.train_step(*batch_of(idx), lr)
                    loss = loss + b_loss * (len(idx) / m)
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
