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


@dataclass(frozen=True)
class Block:
    """One Linear layer and the activation after it (None: no activation)."""

    n_in: int
    n_out: int
    activation: str | None


class DeviceNetwork:
    """Parameters on a backend plus the forward/backward passes over them.

    ``blocks`` describe the layers; ``loss`` is "bce" (the last activation must be sigmoid
    and is folded into the loss, computed from the logits), "cross_entropy" (the last
    activation is softmax, likewise folded) or "mse" (½·mean squared error on the last
    activation's output).
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
        self._buffers: dict[tuple, Any] = {}

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

    # ------------------------------------------------------------------ passes
    def forward(self, X: Any, logits_out: bool) -> list[Any]:
        """Activations [X, A1, ..., AL]; with ``logits_out`` the last one is the logits (the
        output activation is left to the loss).

        X is a prepared float input (n_x, m). Buffers are reused between calls.
        """
        acts = [X]
        A = X
        m = X.shape[1]
        last = len(self.blocks) - 1
        for i, (blk, (W, b)) in enumerate(zip(self.blocks, self.params)):
            Z = self.ops.matmul(W, A, out=self._buffer(("Z", i), (blk.n_out, m)))
            activation = None if (i == last and logits_out) else blk.activation
            A = self.ops.bias_activation_(Z, b, activation)
            acts.append(A)
        return acts

    def loss_and_grads(self, X: Any, Y: Any, m: int | None = None) -> tuple[Any, Any, list[tuple[Any, Any]]]:
        """(loss, correct, [(dW, db), ...]) at the current parameters, as backend arrays.

        No gradient is computed for X itself (the input layer needs no dX). ``m`` (default:
        X's columns) is the number of examples the loss is the mean over: for a chunk of a
        larger batch, pass the whole batch's m and the loss and gradients are the chunk's
        sums divided by that m, so adding the chunks' results gives the whole batch's.
        """
        ops = self.ops
        acts = self.forward(X, logits_out=self.folds_output)
        out = acts[-1]
        over = {} if m is None else {"m": m}
        if self.folds_output:
            value, correct, dZ = self._loss_from_logits(out, Y, **over)
        else:
            value, correct, dA = ops.mse(out, Y, **over)
            dZ = ops.activation_backward_(dA, out, self.blocks[-1].activation)
        grads: list[tuple[Any, Any]] = [None] * len(self.blocks)  # type: ignore[list-item]
        for i in range(len(self.blocks) - 1, -1, -1):
            W, _ = self.params[i]
            A_prev = acts[i]
            dW = ops.matmul(dZ, A_prev.T, out=self._buffer(("dW", i), W.shape, order="C"))
            db = ops.sum_columns(dZ)
            grads[i] = (dW, db)
            if i > 0:
                dA = ops.matmul(W.T, dZ, out=self._buffer(("dA", i - 1), A_prev.shape))
                dZ = ops.activation_backward_(dA, A_prev, self.blocks[i - 1].activation)
        return value, correct, grads

    def train_step(self, X: Any, Y: Any, lr: float) -> tuple[Any, Any]:
        """One gradient-descent step on the batch (X, Y); (loss, correct) before the update.

        Logistic regression goes through the backend's single-pass ``logreg_epoch_``; X must
        then come from ``prepare_fused_input``, otherwise from ``prepare_input``.
        """
        if self.is_logreg:
            w, b = self.params[0]
            return self.ops.logreg_epoch_(w, b, X, Y, lr, self.loss)
        if self.is_softmax_regression:
            W, b = self.params[0]
            return self.ops.softmax_epoch_(W, b, X, Y, lr)
        value, correct, grads = self.loss_and_grads(X, Y)
        flat_params = [p for pair in self.params for p in pair]
        flat_grads = [g for pair in grads for g in pair]
        self.ops.sgd_update_(flat_params, flat_grads, lr)
        return value, correct

    def prepare(self, X: np.ndarray, for_training: bool) -> Any:
        """Move host X to the backend in the form ``train_step`` (or ``forward``) expects."""
        if for_training and (self.is_logreg or self.is_softmax_regression):
            return self.ops.prepare_fused_input(X, self.dtype)
        return self.ops.prepare_input(X, self.dtype)

    def evaluate(self, X: Any, Y: Any) -> tuple[Any, Any]:
        """(loss, correct) at the current parameters, without gradients. X from ``prepare``."""
        acts = self.forward(X, logits_out=self.folds_output)
        if self.folds_output:
            value, correct, _ = self._loss_from_logits(acts[-1], Y)
        else:
            value, correct, _ = self.ops.mse(acts[-1], Y)
        return value, correct

    def _loss_from_logits(self, Z: Any, Y: Any, **over: Any) -> tuple[Any, Any, Any]:
        if self.loss == "cross_entropy":
            return self.ops.softmax_cross_entropy(Z, Y, **over)
        return self.ops.bce_from_logits(Z, Y, **over)

    def predict_proba(self, X: Any) -> Any:
        """Output probabilities, (1, m) binary or (K, m) softmax, as a backend array. X from
        ``prepare``."""
        acts = self.forward(X, logits_out=False)
        return acts[-1]
