"""The backend base class: every op written once through an array namespace ``xp``.

A backend subclass sets ``xp`` (numpy or cupy) and overrides only the ops it makes
faster. The model code (``nnx.network``) calls nothing but the methods defined here, so
it runs unchanged on every backend.

Conventions for every op: activations are (n, m) with one column per example; weights W
are (n_out, n_in); biases b are (n_out, 1); the input X is (n_x, m). Ops whose names end
in an underscore work in place on their first argument and return it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

ACTIVATIONS = ("sigmoid", "relu", "tanh", "softmax", None)
# The single-pass softmax-regression epoch keeps K running sums per example; past this many
# classes the generic two-product epoch is used.
MAX_FUSED_CLASSES = 32


class Backend:
    """Reference implementation of the ops through ``self.xp``.

    Capability flags, read by the model code:

    * ``is_gpu`` - arrays live on a GPU; host copies cost a transfer.
    * ``fused_logreg`` - ``logreg_epoch_`` reads X once per epoch (a real fused kernel);
      the generic version below is correct but reads X twice.
    * ``input_dtypes`` - dtypes ``prepare_fused_input`` keeps as they are (uint8 pixels are
      read raw with the 1/255 scale folded into the kernel).
    * ``activation_order`` - memory order of the (n, m) activation buffers: "F" keeps each
      example's units contiguous, which makes BLAS faster on the skinny products
      W1 X and dZ1 X^T; parameter gradients always match the parameters ("C").
    """

    name = "base"
    xp: Any = np
    is_gpu = False
    fused_logreg = False
    input_dtypes: tuple[str, ...] = ()
    activation_order = "C"

    # ------------------------------------------------------------------ memory
    def asarray(self, host: np.ndarray, dtype: str) -> Any:
        """A fresh C-contiguous copy of ``host`` on this backend in ``dtype`` (never a view)."""
        return self.xp.array(host, dtype=dtype, order="C", copy=True)

    def to_host(self, a: Any) -> np.ndarray:
        """A NumPy copy of a backend array (shape and dtype kept)."""
        return np.array(a, copy=True)

    def scalar(self, a: Any) -> float:
        """A device scalar (0-d array) as a Python float; on a GPU this synchronises."""
        return float(a)

    def scalars(self, values: list[Any]) -> np.ndarray:
        """Several device scalars as one float64 host array (GPU backends: one transfer)."""
        return np.array([float(v) for v in values], dtype=np.float64)

    def free_bytes(self) -> int | None:
        """Free memory on the device, or None where X simply lives in host memory."""
        return None

    def empty(self, shape: tuple[int, ...], dtype: str, order: str = "C") -> Any:
        return self.xp.empty(shape, dtype=dtype, order=order)

    def zeros(self, shape: tuple[int, ...], dtype: str) -> Any:
        return self.xp.zeros(shape, dtype=dtype)

    def prepare_input(self, X: np.ndarray, dtype: str) -> Any:
        """X (n_x, m) on this backend as floats in ``dtype``, ready for matmul.

        uint8 pixels are scaled by 1/255 here, once per fit (one converted copy, made in
        place, never a float temporary per epoch). Float X already in ``dtype`` on the
        host is used without a copy on CPU backends.
        """
        xp = self.xp
        if X.dtype == np.uint8:
            out = xp.asarray(X, order="K").astype(dtype, order="K")
            out *= out.dtype.type(1.0 / 255.0)
            return out
        return xp.asarray(X, dtype=dtype, order="K")

    def prepare_fused_input(self, X: np.ndarray, dtype: str) -> Any:
        """X for ``logreg_epoch_``; the generic version is ``prepare_input``."""
        return self.prepare_input(X, dtype)

    @staticmethod
    def native_host_input(X: np.ndarray, dtype: str) -> np.ndarray:
        """Host X as a fused kernel reads it: uint8 kept raw (1 byte per pixel, the 1/255 is
        folded into the kernel), floats in the compute ``dtype``, example-contiguous
        (Fortran order). No copy when X already is that; one converting copy otherwise."""
        if X.dtype != np.uint8 and X.dtype != np.dtype(dtype):
            return np.asarray(X, dtype=dtype, order="F")
        return np.asfortranarray(X)

    def prepare_labels(self, Y: np.ndarray, dtype: str) -> Any:
        """Labels (1, m) in ``dtype`` on this backend."""
        return self.xp.asarray(Y, dtype=dtype).reshape(1, -1)

    def take_columns(self, A: Any, idx: np.ndarray) -> Any:
        """Columns ``idx`` of A (a mini-batch), as a new array with A's memory order."""
        xp = self.xp
        order = "F" if A.flags.f_contiguous and not A.flags.c_contiguous else "C"
        return xp.asarray(A[:, xp.asarray(idx)], order=order)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU backends)."""

    @contextlib.contextmanager
    def memory_errors_explained(self) -> Iterator[None]:
        """Context for work on this backend: a GPU backend turns its own out-of-memory error
        into ``nnx.DeviceMemoryError`` (bytes wanted, bytes free, what to do); host
        backends let MemoryError through as it is."""
        yield

    # --------------------------------------------------------------- forward ops
    def matmul(self, A: Any, B: Any, out: Any | None = None) -> Any:
        """A @ B, written into ``out`` when given."""
        return self.xp.matmul(A, B, out=out)

    def sigmoid_(self, Z: Any) -> Any:
        """Z <- sigmoid(Z), stable for any logit: exp is only taken of -|z|."""
        xp = self.xp
        e = xp.exp(-xp.abs(Z))
        num = xp.where(Z >= 0, Z.dtype.type(1), e)
        e += 1
        xp.divide(num, e, out=Z)
        return Z

    def bias_activation_(self, Z: Any, b: Any, activation: str | None) -> Any:
        """Z <- activation(Z + b) in place; b is (n, 1) and broadcasts over the m columns."""
        Z += b
        if activation == "sigmoid":
            self.sigmoid_(Z)
        elif activation == "relu":
            self.xp.maximum(Z, 0, out=Z)
        elif activation == "tanh":
            self.xp.tanh(Z, out=Z)
        elif activation == "softmax":
            self.softmax_(Z)
        elif activation is not None:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        return Z

    def softmax_(self, Z: Any) -> Any:
        """Z <- softmax of each column of Z (K, m), computed in float64 with the column max
        subtracted first (exp never overflows for finite logits)."""
        S = Z.astype(np.float64)
        S -= Z.max(axis=0, keepdims=True)
        self.xp.exp(S, out=S)
        S /= S.sum(axis=0, keepdims=True)
        Z[...] = S
        return Z

    # -------------------------------------------------------------- backward ops
    def activation_backward_(self, dA: Any, A: Any, activation: str | None) -> Any:
        """dA <- dA * activation'(Z), written in terms of the output A = activation(Z)."""
        if activation == "sigmoid":
            dA *= A * (1 - A)
        elif activation == "relu":
            dA *= A > 0
        elif activation == "tanh":
            dA *= 1 - A * A
        elif activation == "softmax":
            raise ValueError("softmax has no elementwise derivative: use it with loss='cross_entropy'")
        elif activation is not None:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        return dA

    def sum_columns(self, dZ: Any) -> Any:
        """Row sums of dZ (n, m) as (n, 1): the bias gradient."""
        return dZ.sum(axis=1, keepdims=True)

    def sgd_update_(self, params: list[Any], grads: list[Any], lr: float) -> None:
        """p <- p - lr * g for every parameter, in place."""
        for p, g in zip(params, grads):
            p -= p.dtype.type(lr) * g

    # ----------------------------------------------------------------- losses
    def bce_from_logits(self, Z: Any, Y: Any) -> tuple[Any, Any, Any]:
        """Binary cross-entropy of sigmoid(Z) against Y, from the logits Z (1, m).

        Returns (loss, correct, dZ): the mean loss as a device scalar, the number of
        examples with (Z > 0) == Y as a device scalar, and dZ = (sigmoid(Z) - Y) / m.
        Uses max(z, 0) - z*y + log1p(exp(-|z|)): finite for every finite logit.
        """
        xp = self.xp
        m = Z.shape[1]
        e = xp.exp(-xp.abs(Z))
        terms = xp.maximum(Z, 0) - Z * Y + xp.log1p(e)
        terms *= Z.dtype.type(1.0 / m)  # scale before summing: a plain mean overflows near max float
        loss = terms.sum(dtype=np.float64)
        correct = xp.count_nonzero((Z > 0) == (Y > 0.5))
        sig = xp.where(Z >= 0, Z.dtype.type(1), e)
        sig /= 1 + e
        sig -= Y
        sig *= Z.dtype.type(1.0 / m)
        return loss, correct, sig

    def softmax_cross_entropy(self, Z: Any, Y: Any) -> tuple[Any, Any, Any]:
        """Cross-entropy of softmax(Z) against class labels, from the logits Z (K, m).

        Y (1, m) holds each example's class index 0..K-1 (in Z's dtype). Returns (loss,
        correct, dZ): the mean of logsumexp(z) - z_y as a float64 device scalar, the
        number of examples whose largest logit is their label (ties and NaN resolved as
        ``argmax``), and dZ = (softmax(Z) - onehot(Y)) / m in Z's dtype. Each column's max
        is subtracted first and the rest is done in float64, so the loss is finite
        whenever the spread of each column's logits is (always, for float32 logits).
        """
        xp = self.xp
        K, m = Z.shape
        cols = xp.arange(m)
        labels = Y.reshape(-1).astype(xp.int64)
        correct = xp.count_nonzero(xp.argmax(Z, axis=0) == labels)
        S = Z.astype(np.float64)
        S -= Z.max(axis=0, keepdims=True)
        shifted_label = S[labels, cols]
        xp.exp(S, out=S)
        total = S.sum(axis=0)
        loss = ((xp.log(total) - shifted_label) * (1.0 / m)).sum()
        S /= total
        S[labels, cols] -= 1
        S *= 1.0 / m
        return loss, correct, S.astype(Z.dtype, order="K")

    def mse(self, A: Any, Y: Any) -> tuple[Any, Any, Any]:
        """Squared error in the tutorials' form 1/(2m) * sum((A - Y)^2), from outputs A (1, m).

        Returns (loss, correct, dA) with dA = (A - Y) / m and correct counting
        (A > 0.5) == Y.
        """
        xp = self.xp
        m = A.shape[1]
        diff = A - Y
        loss = 0.5 * (diff * diff).mean(dtype=np.float64)
        correct = xp.count_nonzero((A > 0.5) == (Y > 0.5))
        diff *= A.dtype.type(1.0 / m)
        return loss, correct, diff

    # ------------------------------------------------- fused logistic regression
    def logreg_epoch_(self, w: Any, b: Any, X: Any, Y: Any, lr: float, loss: str) -> tuple[Any, Any]:
        """One gradient-descent step of logistic regression, updating w (1, n_x), b (1, 1).

        X is what ``prepare_fused_input`` returned; loss is "bce" or "mse" on sigmoid(w.x+b).
        Returns (loss, correct) at the parameters before the update, as device scalars.
        This generic version reads X twice (z = w X, then dw = dz X^T); backends with
        ``fused_logreg`` read it once.
        """
        if X.dtype == np.uint8:  # raw pixels from a fused-input layout: scale here (slow path)
            X = X.astype(w.dtype)
            X *= X.dtype.type(1.0 / 255.0)
        elif X.dtype != w.dtype:
            X = X.astype(w.dtype)
        Z = self.matmul(w, X)
        Z += b
        if loss == "bce":
            value, correct, dZ = self.bce_from_logits(Z, Y)
        else:
            A = self.sigmoid_(Z)
            value, correct, dZ = self.mse(A, Y)
            self.activation_backward_(dZ, A, "sigmoid")
        dw = self.matmul(dZ, X.T)
        db = self.sum_columns(dZ)
        self.sgd_update_([w, b], [dw, db], lr)
        return value, correct

    # --------------------------------------------- fused softmax regression
    def softmax_epoch_(self, W: Any, b: Any, X: Any, Y: Any, lr: float) -> tuple[Any, Any]:
        """One gradient-descent step of softmax regression, updating W (K, n_x), b (K, 1).

        X is what ``prepare_fused_input`` returned, Y (1, m) the class indices. Returns
        (loss, correct) at the parameters before the update, as device scalars. This
        generic version reads X twice (Z = W X, then dW = dZ X^T); backends with
        ``fused_logreg`` read it once for K up to ``MAX_FUSED_CLASSES``.
        """
        if X.dtype == np.uint8:
            X = X.astype(W.dtype)
            X *= X.dtype.type(1.0 / 255.0)
        elif X.dtype != W.dtype:
            X = X.astype(W.dtype)
        Z = self.matmul(W, X)
        Z += b
        value, correct, dZ = self.softmax_cross_entropy(Z, Y)
        dW = self.matmul(dZ, X.T)
        db = self.sum_columns(dZ)
        self.sgd_update_([W, b], [dW, db], lr)
        return value, correct

    def describe(self) -> dict[str, Any]:
        """Facts about this backend for ``nnx info`` and benchmark records."""
        return {"name": self.name, "gpu": self.is_gpu, "fused_logreg": self.fused_logreg}

    # ------------------------------------ loss and gradient without the update (L-BFGS)
    def _fused_floats(self, X: Any, dtype: Any) -> Any:
        """A fused-input X as floats in ``dtype`` (raw pixels scaled by 1/255 here)."""
        if X.dtype == np.uint8:
            X = X.astype(dtype)
            X *= X.dtype.type(1.0 / 255.0)
        elif X.dtype != dtype:
            X = X.astype(dtype)
        return X

    def logreg_loss_grad(self, w: Any, b: Any, X: Any, Y: Any, loss: str) -> tuple[Any, Any, Any, Any]:
        """Logistic regression's loss and gradient at (w, b), with no update.

        The single pass of ``logreg_epoch_`` without its step: X is what
        ``prepare_fused_input`` returned, w (1, n_x) and b (1, 1) the parameters, loss "bce"
        or "mse". Returns (loss, correct, dw, db): the mean loss (float64) and the number
        correct as device scalars, and the gradient of the mean loss as float64 device
        arrays dw (1, n_x) and db (1, 1). Deterministic. This generic version reads X
        twice; backends with ``fused_logreg`` read it once.
        """
        X = self._fused_floats(X, w.dtype)
        Z = self.matmul(w, X)
        Z += b
        if loss == "bce":
            value, correct, dZ = self.bce_from_logits(Z, Y)
        else:
            A = self.sigmoid_(Z)
            value, correct, dZ = self.mse(A, Y)
            self.activation_backward_(dZ, A, "sigmoid")
        dw = self.matmul(dZ, X.T)
        db = self.sum_columns(dZ)
        return value, correct, dw.astype(np.float64), db.astype(np.float64)

    def softmax_loss_grad(self, W: Any, b: Any, X: Any, Y: Any) -> tuple[Any, Any, Any, Any]:
        """Softmax regression's cross-entropy and gradient at (W, b), with no update.

        The pass of ``softmax_epoch_`` without its step: X from ``prepare_fused_input``, Y
        (1, m) class indices. Returns (loss, correct, dW (K, n_x), db (K, 1)), the gradient
        of the mean loss as float64 device arrays. Deterministic. This generic version
        reads X twice (Z = W X, then dW = dZ X^T).
        """
        X = self._fused_floats(X, W.dtype)
        Z = self.matmul(W, X)
        Z += b
        value, correct, dZ = self.softmax_cross_entropy(Z, Y)
        dW = self.matmul(dZ, X.T)
        db = self.sum_columns(dZ)
        return value, correct, dW.astype(np.float64), db.astype(np.float64)
