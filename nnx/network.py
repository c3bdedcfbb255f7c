"""The model code that runs unchanged on every backend: forward, backward and update.

A ``DeviceNetwork`` is a model's parameters copied onto one backend in one dtype for one
piece of work (a ``fit``, a prediction). It calls only backend ops and reuses its
activation and gradient buffers from step to step, so an epoch allocates nothing X-sized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends.base import Backend
from .backends.philox import DropoutKey
from .optim import Optimizer, TrainingState


@dataclass(frozen=True)
class Block:
    """One Linear layer, the activation after it (None: no activation) and the rate of the
    dropout applied to that output in training (0: none)."""

    n_in: int
    n_out: int
    activation: str | None
    dropout: float = 0.0


class DeviceNetwork:
    """Parameters on a backend plus the forward/backward passes over them.

    ``blocks`` describe the layers; ``loss`` is "bce" (the last activation must be sigmoid
    and is folded into the loss, computed from the logits), "cross_entropy" (the last
    activation is softmax, likewise folded) or "mse" (½·squared error summed over the
    outputs, averaged over the examples, on the last activation's output; with no last
    activation this is regression on real targets (K, m)). Every loss takes a weight per
    example (``loss_and_grads(weights=)``): the mean over the m examples of w_i * loss_i.
    """

    def __init__(
        self,
        ops: Backend,
        blocks: list[Block],
        loss: str,
        host_params: list[tuple[np.ndarray, np.ndarray]],
        dtype: str,
    ):
        self.ops, self.blocks, self.loss, self.dtype = ops, blocks, loss, dtype
        self.params = [(ops.asarray(W, dtype), ops.asarray(b, dtype)) for W, b in host_params]
        self.is_logreg = len(blocks) == 1 and blocks[0].activation == "sigmoid"
        self.is_softmax_regression = len(blocks) == 1 and blocks[0].activation == "softmax"
        self.folds_output = loss in ("bce", "cross_entropy")  # loss computed from the logits
        # regression: "mse" on a linear output of any width, real targets (K, m)
        self.regression = loss == "mse" and blocks[-1].activation is None
        self._buffers: dict[tuple, Any] = {}
        # Training setup (``start_training``); without it a step is plain gradient descent.
        self.fused = self.is_logreg or self.is_softmax_regression  # single-pass epoch op
        self.optimizer: Optimizer | None = None
        self.state: TrainingState | None = None  # on this backend during a fit
        self.l2 = 0.0
        self.decays = [0.0] * (2 * len(blocks))
        self.m_total = 1
        self.last_penalty: Any = 0.0  # the L2 term of the last step's loss
        # a column chunk of a larger batch (chunked training): its first column there, so
        # that dropout draws the batch's mask for exactly these columns
        self.first_column: int | None = None

    # ---------------------------------------------------------------- helpers
    def _buffer(self, tag: tuple, shape: tuple[int, ...], order: str | None = None) -> Any:
        """A reused buffer; activations use the backend's layout unless ``order`` is given."""
        key = (tag, shape)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = self.ops.empty(shape, self.dtype, order or self.ops.activation_order)
        return buf

    def host_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Host NumPy copies of the parameters: [(W, b), ...]."""
        return [(self.ops.to_host(W), self.ops.to_host(b)) for W, b in self.params]

    def flat_params(self) -> list[Any]:
        """The parameters as one list W0, b0, W1, b1, ... (the order of optimizer state)."""
        return [p for pair in self.params for p in pair]

    # --------------------------------------------------------------- training
    def start_training(
        self,
        optimizer: Optimizer,
        state: TrainingState | None = None,
        *,
        l2: float = 0.0,
        m: int = 1,
        weighted: bool = False,
        dropout_seed: int | None = None,
    ) -> None:
        """Set up a fit: ``optimizer`` with its state on this backend (``state``, a host
        ``TrainingState`` to continue, else a fresh one; state arrays it lacks start at
        zero), the L2 penalty ``l2`` / (2 ``m``) sum of squared weights, whether examples
        carry weights, and the key of the dropout masks. Call before ``prepare``: the
        single-pass epochs of logistic and softmax regression run only plain gradient
        descent without L2 or example weights."""
        ops = self.ops
        host = state if state is not None else TrainingState(optimizer.config())
        device = host.to_device(ops, self.dtype)
        flat = self.flat_params()
        device.slots = {
            name: device.slots.get(name) or [ops.zeros(p.shape, self.dtype) for p in flat]
            for name in optimizer.slots
        }
        device.optimizer = optimizer.config()
        if device.dropout_seed is None:
            device.dropout_seed = dropout_seed
        self.optimizer, self.state = optimizer, device
        self.l2, self.m_total = float(l2), int(m)
        self.decays = [self.l2 / self.m_total if i % 2 == 0 else 0.0 for i in range(len(flat))]
        self.fused = (
            (self.is_logreg or self.is_softmax_regression) and optimizer.plain and not l2 and not weighted
        )

    def host_training_state(self) -> TrainingState | None:
        """A host copy of the optimizer state (None before ``start_training``)."""
        return None if self.state is None else self.state.to_host(self.ops)

    def begin_epoch(self) -> int:
        """Advance the epoch clock (schedules, dropout masks); returns the epoch's number."""
        if self.state is None:
            return 0
        self.state.epoch += 1
        return self.state.epoch

    def keep_best(self) -> None:
        """Copy the parameters into the state's ``best`` arrays (early stopping)."""
        ops, state = self.ops, self.state
        assert state is not None
        flat = self.flat_params()
        if state.best is None:
            state.best = [ops.zeros(p.shape, self.dtype) for p in flat]
        for dst, src in zip(state.best, flat):
            ops.copy_(dst, src)

    def restore_best(self) -> None:
        """Copy the state's ``best`` arrays back into the parameters."""
        assert self.state is not None and self.state.best is not None
        for dst, src in zip(self.flat_params(), self.state.best):
            self.ops.copy_(dst, src)

    def penalty(self) -> Any:
        """The L2 term l2 / (2 m) * sum of squared weights, as a device scalar."""
        total = 0.0
        for W, _ in self.params:
            total = total + self.ops.sum_squares(W)
        return total * (self.l2 / (2 * self.m_total))

    # ------------------------------------------------------------------ passes
    def forward(self, X: Any, logits_out: bool, batch: int | None = None) -> list[Any]:
        """Activations [X, A1, ..., AL]; with ``logits_out`` the last one is the logits (the
        output activation is left to the loss).

        X is a prepared float input (n_x, m). Buffers are reused between calls. With
        ``batch`` (training: the mini-batch of the epoch) each block with a dropout rate
        passes on its output times the dropout mask.
        """
        return self._forward(X, logits_out, batch)[0]

    def _forward(self, X: Any, logits_out: bool, batch: int | None) -> tuple[list[Any], list[Any]]:
        """``forward``'s activations, and each block's activation output before dropout."""
        acts = [X]
        outputs = []
        A = X
        m = X.shape[1]
        last = len(self.blocks) - 1
        for i, (blk, (W, b)) in enumerate(zip(self.blocks, self.params)):
            Z = self.ops.matmul(W, A, out=self._buffer(("Z", i), (blk.n_out, m)))
            activation = None if (i == last and logits_out) else blk.activation
            A = self.ops.bias_activation_(Z, b, activation)
            outputs.append(A)
            if batch is not None and blk.dropout > 0 and i < last:
                out, key = self._buffer(("D", i), A.shape), self._dropout_key(i, batch)
                if self.first_column is None:
                    A = self.ops.dropout_(A, out, blk.dropout, key)
                else:
                    A = self.ops.dropout_columns_(A, out, blk.dropout, key, self.first_column)
            acts.append(A)
        return acts, outputs

    def _dropout_key(self, layer: int, batch: int) -> DropoutKey:
        assert self.state is not None and self.state.dropout_seed is not None, "dropout needs start_training"
        return DropoutKey(self.state.dropout_seed, self.state.epoch, batch, layer)

    def loss_and_grads(
        self, X: Any, Y: Any, weights: Any | None = None, batch: int | None = None, m: int | None = None
    ) -> tuple[Any, Any, list[tuple[Any, Any]]]:
        """(loss, correct, [(dW, db), ...]) at the current parameters, as backend arrays.

        ``weights`` (1, m) weigh each example's loss; ``batch`` (training) turns dropout on
        with that batch's masks. No gradient is computed for X itself (the input layer
        needs no dX). ``m`` (default: X's columns) is the number of examples the loss is
        the mean over: for a chunk of a larger batch, pass the whole batch's m and the
        loss and gradients are the chunk's sums divided by that m, so adding the chunks'
        results gives the whole batch's.
        """
        ops = self.ops
        acts, outputs = self._forward(X, self.folds_output, batch)
        out = acts[-1]
        over = {} if m is None else {"m": m}
        if self.folds_output:
            value, correct, dZ = self._loss_from_logits(out, Y, weights, **over)
        else:
            if weights is not None and over:
                raise ValueError("example or class weights are not supported on chunks of a batch (m=)")
            if weights is not None:
                value, correct, dA = ops.mse_weighted(out, Y, weights)
            else:
                value, correct, dA = ops.mse(out, Y, **over)
            if self.regression:
                correct = 0  # no accuracy for real-valued targets
            dZ = ops.activation_backward_(dA, out, self.blocks[-1].activation)
        grads: list[tuple[Any, Any]] = [None] * len(self.blocks)  # type: ignore[list-item]
        for i in range(len(self.blocks) - 1, -1, -1):
            W, _ = self.params[i]
            A_prev = acts[i]  # what block i saw: the previous output after dropout
            dW = ops.matmul(dZ, A_prev.T, out=self._buffer(("dW", i), W.shape, order="C"))
            db = ops.sum_columns(dZ)
            grads[i] = (dW, db)
            if i > 0:
                prev = self.blocks[i - 1]
                dA = ops.matmul(W.T, dZ, out=self._buffer(("dA", i - 1), A_prev.shape))
                if batch is not None and prev.dropout > 0:
                    key = self._dropout_key(i - 1, batch)
                    if self.first_column is None:
                        ops.dropout_backward_(dA, prev.dropout, key)
                    else:
                        ops.dropout_columns_backward_(dA, prev.dropout, key, self.first_column)
                dZ = ops.activation_backward_(dA, outputs[i - 1], prev.activation)
        return value, correct, grads

    def train_step(
        self, X: Any, Y: Any, lr: float, weights: Any | None = None, batch: int = 0
    ) -> tuple[Any, Any]:
        """One optimizer step on the batch (X, Y); (loss, correct) before the update.

        Without ``start_training`` the step is plain gradient descent at rate ``lr``.
        Logistic and softmax regression with plain gradient descent go through the
        backend's single-pass ``logreg_epoch_`` / ``softmax_epoch_`` (``fused``); X must
        then come from ``prepare_fused_input``, otherwise from ``prepare_input``.
        ``batch`` numbers the mini-batch in its epoch (dropout masks). The loss includes
        the L2 term (also kept in ``last_penalty``).
        """
        if self.state is not None:
            self.state.step += 1
        if self.fused:
            W, b = self.params[0]
            if self.is_logreg:
                return self.ops.logreg_epoch_(W, b, X, Y, lr, self.loss)
            return self.ops.softmax_epoch_(W, b, X, Y, lr)
        value, correct, grads = self.loss_and_grads(X, Y, weights, batch if self.state is not None else None)
        if self.l2:
            self.last_penalty = self.penalty()
            value = value + self.last_penalty
        flat_params = self.flat_params()
        flat_grads = [g for pair in grads for g in pair]
        if self.optimizer is None or self.state is None:
            self.ops.sgd_update_(flat_params, flat_grads, lr)
        else:
            self.optimizer.update(self.ops, flat_params, flat_grads, self.state, lr, self.decays)
        return value, correct

    def prepare(self, X: np.ndarray, for_training: bool) -> Any:
        """Move host X to the backend in the form ``train_step`` (or ``forward``) expects."""
        # raw uint8 pixels only where the backend's softmax epoch reads them itself
        if for_training and self.fused and (self.is_logreg or self.ops.fused_softmax):
            classes = None if self.is_logreg else self.blocks[0].n_out
            return self.ops.prepare_fused_input(X, self.dtype, classes)
        return self.ops.prepare_input(X, self.dtype)

    def evaluate(self, X: Any, Y: Any) -> tuple[Any, Any]:
        """(loss, correct) at the current parameters, without gradients. X from ``prepare``."""
        acts = self.forward(X, logits_out=self.folds_output)
        if self.folds_output:
            value, correct, _ = self._loss_from_logits(acts[-1], Y)
        else:
            value, correct, _ = self.ops.mse(acts[-1], Y)
            if self.regression:
                correct = 0
        return value, correct

    def _loss_from_logits(
        self, Z: Any, Y: Any, weights: Any | None = None, **over: Any
    ) -> tuple[Any, Any, Any]:
        if weights is not None and over:
            raise ValueError("example or class weights are not supported on chunks of a batch (m=)")
        if self.loss == "cross_entropy":
            if weights is not None:
                return self.ops.softmax_cross_entropy_weighted(Z, Y, weights)
            return self.ops.softmax_cross_entropy(Z, Y, **over)
        if weights is not None:
            return self.ops.bce_from_logits_weighted(Z, Y, weights)
        return self.ops.bce_from_logits(Z, Y, **over)

    def predict_proba(self, X: Any) -> Any:
        """Output probabilities, (1, m) binary or (K, m) softmax, as a backend array. X from
        ``prepare``."""
        acts = self.forward(X, logits_out=False)
        return acts[-1]
