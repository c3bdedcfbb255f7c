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
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import philox
from .codes import PIXEL_SCALE
from .philox import DropoutKey
from .timers import Timer, WallClockTimer

ACTIVATIONS = ("sigmoid", "relu", "tanh", "softmax", None)
# The single-pass softmax-regression epoch keeps K running sums per example; past this many
# classes the generic two-product epoch is used.
MAX_FUSED_CLASSES = 32


def aligned(X: Any) -> Any:
    """Host X whose elements sit at addresses that are multiples of their size, as NumPy
    allocates them: X itself, or an aligned copy (same order) of X viewed at an odd offset
    (a buffer Dask or ``np.frombuffer`` hands over). NumPy computes products of unaligned
    arrays without BLAS: several times slower, and rounded otherwise than the same X
    aligned. Device arrays are returned as they are."""
    if isinstance(X, np.ndarray) and not X.flags.aligned:
        return np.array(X, order="K")
    return X


class Backend:
    """Reference implementation of the ops through ``self.xp``.

    Capability flags, each with where it is read:

    * ``is_gpu`` - arrays live on a GPU; host copies cost a transfer. Read by the
      benchmark (GPU references and ratios) and reported by ``describe()``.
    * ``fused_logreg`` - ``logreg_epoch_`` reads X once per epoch (a real fused kernel);
      the generic version below is correct but reads X twice. Reported by ``describe()``
      (``nnx info``, benchmark records).
    * ``fused_softmax`` - ``softmax_epoch_`` reads X from memory once per epoch and takes X
      from ``prepare_fused_input`` (raw uint8 pixels); otherwise softmax regression trains
      on ``prepare_input``'s floats with the generic two-product epoch. Read by
      ``DeviceNetwork.prepare``.
    * ``activation_order`` - memory order of the (n, m) activation buffers: "F" keeps each
      example's units contiguous, which makes BLAS faster on the skinny products
      W1 X and dZ1 X^T; parameter gradients always match the parameters ("C"). Read by
      ``nnx.network`` when it allocates them.

    Subclasses override only the methods declared here, with the same signatures
    (tests/backends/test_backend_interface.py checks it).
    """

    name = "base"
    xp: Any = np
    is_gpu = False
    fused_logreg = False
    fused_softmax = False
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
        """A zero-filled C-ordered array on this backend (optimizer state starts so)."""
        return self.xp.zeros(shape, dtype=dtype)

    def prepare_input(self, X: np.ndarray, dtype: str) -> Any:
        """X (n_x, m) on this backend as floats in ``dtype``, ready for matmul.

        uint8 pixels are scaled by 1/255 here, once per fit (one converted copy, made in
        place, never a float temporary per epoch). Float X already in ``dtype`` on the
        host is used without a copy on CPU backends.
        """
        xp = self.xp
        X = aligned(X)
        if X.dtype == np.uint8:
            out = xp.asarray(X, order="K").astype(dtype, order="K")
            out *= out.dtype.type(PIXEL_SCALE)
            return out
        return xp.asarray(X, dtype=dtype, order="K")

    def prepare_fused_input(self, X: np.ndarray, dtype: str, classes: int | None = None) -> Any:
        """X for ``logreg_epoch_`` (``classes`` None) or for ``softmax_epoch_`` over
        ``classes`` classes; the generic version is ``prepare_input``."""
        return self.prepare_input(X, dtype)

    @staticmethod
    def native_host_input(X: np.ndarray, dtype: str) -> np.ndarray:
        """Host X as a fused kernel reads it: uint8 kept raw (1 byte per pixel, the 1/255 is
        folded into the kernel), floats in the compute ``dtype``, example-contiguous
        (Fortran order). No copy when X already is that; one converting copy otherwise."""
        if X.dtype != np.uint8 and X.dtype != np.dtype(dtype):
            return np.asarray(X, dtype=dtype, order="F")
        return aligned(np.asfortranarray(X))

    def prepare_labels(self, Y: np.ndarray, dtype: str) -> Any:
        """Labels (1, m) in ``dtype`` on this backend; 2-D targets (K, m) keep their shape."""
        Y = self.xp.asarray(Y, dtype=dtype)
        return Y if Y.ndim == 2 else Y.reshape(1, -1)

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

    def copy_(self, dst: Any, src: Any) -> Any:
        """dst <- src (same shape) in place; returns dst."""
        self.xp.copyto(dst, src)
        return dst

    def sum_squares(self, a: Any) -> Any:
        """The sum of a's squared elements as a float64 device scalar (an L2 penalty)."""
        flat = a.reshape(-1).astype(np.float64)
        return self.xp.dot(flat, flat)

    # ------------------------------------------------------------- optimizer steps
    # One op per parameter array: p and its state updated in place from the gradient g, in
    # torch.optim's order of floating-point operations (see nnx.optim). ``decay`` adds
    # decay * p to g first (L2 / coupled weight decay); 0 skips it. Scalars are rounded to
    # the parameter's dtype, as PyTorch does for a tensor of that dtype. g is not modified.
    def sgd_step_(
        self,
        p: Any,
        g: Any,
        buf: Any | None,
        *,
        lr: float,
        momentum: float,
        dampening: float,
        nesterov: bool,
        decay: float,
        first: bool,
    ) -> None:
        """torch.optim.SGD for one parameter; ``buf`` is its momentum buffer (None without
        momentum), ``first`` whether this is the first step (the buffer starts at d)."""
        t = p.dtype.type
        d = g + t(decay) * p if decay else g
        if momentum:
            if first:
                self.copy_(buf, d)
            else:
                buf *= t(momentum)
                buf += t(1 - dampening) * d
            d = d + t(momentum) * buf if nesterov else buf
        p += t(-lr) * d

    def rmsprop_step_(
        self,
        p: Any,
        g: Any,
        square_avg: Any,
        grad_avg: Any | None,
        buf: Any | None,
        *,
        lr: float,
        alpha: float,
        eps: float,
        momentum: float,
        decay: float,
    ) -> None:
        """torch.optim.RMSprop for one parameter; ``grad_avg`` only when centered, ``buf``
        only with momentum."""
        xp, t = self.xp, p.dtype.type
        if decay:
            g = g + t(decay) * p
        tmp = xp.multiply(g, t(1 - alpha))  # two parameter-sized temporaries in all
        tmp *= g
        square_avg *= t(alpha)
        square_avg += tmp
        if grad_avg is not None:
            self._lerp_(grad_avg, g, 1 - alpha, tmp)
            xp.multiply(grad_avg, t(-1), out=tmp)
            tmp *= grad_avg
            tmp += square_avg
            avg = xp.sqrt(tmp, out=tmp)
        else:
            avg = xp.sqrt(square_avg, out=tmp)
        avg += t(eps)
        if momentum > 0:
            buf *= t(momentum)
            buf += g / avg
            p += t(-lr) * buf
        else:
            step = xp.multiply(g, t(-lr))
            step /= avg
            p += step

    def adam_step_(
        self,
        p: Any,
        g: Any,
        exp_avg: Any,
        exp_avg_sq: Any,
        *,
        beta1: float,
        beta2: float,
        eps: float,
        step_size: float,
        bc2_sqrt: float,
        decay: float,
        shrink: float,
    ) -> None:
        """torch.optim.Adam / AdamW for one parameter: ``step_size`` = lr / (1 - beta1^t),
        ``bc2_sqrt`` = sqrt(1 - beta2^t), ``shrink`` = 1 - lr * wd (AdamW; 1 skips it)."""
        xp, t = self.xp, p.dtype.type
        if decay:
            g = g + t(decay) * p
        if shrink != 1.0:
            p *= t(shrink)
        tmp = xp.empty_like(p)  # two parameter-sized temporaries in all
        self._lerp_(exp_avg, g, 1 - beta1, tmp)
        xp.multiply(g, t(1 - beta2), out=tmp)
        tmp *= g
        exp_avg_sq *= t(beta2)
        exp_avg_sq += tmp
        denom = xp.sqrt(exp_avg_sq, out=tmp)
        denom /= t(bc2_sqrt)
        denom += t(eps)
        step = xp.multiply(exp_avg, t(-step_size))
        step /= denom
        p += step

    def _lerp_(self, a: Any, end: Any, weight: float, tmp: Any) -> None:
        """a <- lerp(a, end, weight) in PyTorch's two-branch form (exact at weight 0 and 1);
        ``tmp`` is scratch of a's shape."""
        xp, t = self.xp, a.dtype.type
        xp.subtract(end, a, out=tmp)
        if abs(weight) < 0.5:
            tmp *= t(weight)
            a += tmp
        else:
            tmp *= t(1 - weight)
            xp.subtract(end, tmp, out=a)

    # ------------------------------------------------------------------- dropout
    def dropout_mask(self, shape: tuple[int, int], rate: float, key: DropoutKey, dtype: Any) -> Any:
        """The (n, m) inverted-dropout multiplier: 1 / (1 - rate) where kept, else 0 (see
        ``nnx.backends.philox`` for which elements are kept)."""
        keep = philox.keep_mask(self.xp, shape[0], shape[1], rate, key)
        scale = np.dtype(dtype).type(1.0 / (1.0 - rate))
        return keep.astype(dtype) * scale

    def dropout_(self, A: Any, out: Any, rate: float, key: DropoutKey) -> Any:
        """out <- A * mask (A's dropped-out copy for the next layer; out may be A). A NaN or
        inf in A stays NaN where dropped (a product, as in NumPy)."""
        self.xp.multiply(A, self.dropout_mask(A.shape, rate, key, A.dtype), out=out)
        return out

    def dropout_backward_(self, dA: Any, rate: float, key: DropoutKey) -> Any:
        """dA <- dA * mask: the gradient through the same mask ``dropout_`` applied."""
        dA *= self.dropout_mask(dA.shape, rate, key, dA.dtype)
        return dA

    def dropout_columns_(self, A: Any, out: Any, rate: float, key: DropoutKey, first_column: int) -> Any:
        """``dropout_`` for a column chunk of a batch: A holds the batch's columns
        first_column.. and gets exactly those columns of the batch's mask (chunked and Dask
        training). Written once through ``xp`` for every backend."""
        keep = philox.keep_mask(self.xp, A.shape[0], A.shape[1], rate, key, first_column)
        scale = np.dtype(A.dtype).type(1.0 / (1.0 - rate))
        self.xp.multiply(A, keep.astype(A.dtype) * scale, out=out)
        return out

    def dropout_columns_backward_(self, dA: Any, rate: float, key: DropoutKey, first_column: int) -> Any:
        """``dropout_backward_`` through ``dropout_columns_``'s mask."""
        keep = philox.keep_mask(self.xp, dA.shape[0], dA.shape[1], rate, key, first_column)
        dA *= keep.astype(dA.dtype) * np.dtype(dA.dtype).type(1.0 / (1.0 - rate))
        return dA

    # ----------------------------------------------------------------- losses
    def bce_from_logits_weighted(self, Z: Any, Y: Any, weights: Any) -> tuple[Any, Any, Any]:
        """``bce_from_logits`` with a weight per example, weights (1, m): the loss is
        sum(w_i * l_i) / m and dZ = w * (sigmoid(Z) - Y) / m (PyTorch's
        ``BCEWithLogitsLoss(weight=w)``; class weights w_0, w_1 are its ``weight=w_0,
        pos_weight=w_1 / w_0``). ``correct`` is not weighted."""
        xp = self.xp
        m = Z.shape[1]
        e = xp.exp(-xp.abs(Z))
        terms = xp.maximum(Z, 0) - Z * Y + xp.log1p(e)
        terms *= weights
        terms *= Z.dtype.type(1.0 / m)
        loss = terms.sum(dtype=np.float64)
        correct = xp.count_nonzero((Z > 0) == (Y > 0.5))
        sig = xp.where(Z >= 0, Z.dtype.type(1), e)
        sig /= 1 + e
        sig -= Y
        sig *= weights
        sig *= Z.dtype.type(1.0 / m)
        return loss, correct, sig

    def softmax_cross_entropy_weighted(self, Z: Any, Y: Any, weights: Any) -> tuple[Any, Any, Any]:
        """``softmax_cross_entropy`` with a weight per example, weights (1, m): the loss is
        sum(w_i * l_i) / m and column i of dZ is scaled by w_i (PyTorch's
        ``cross_entropy(weight=class_w, reduction="sum") / m`` for class weights; its
        ``"mean"`` divides by the sum of the weights instead)."""
        xp = self.xp
        K, m = Z.shape
        cols = xp.arange(m)
        labels = Y.reshape(-1).astype(xp.int64)
        correct = xp.count_nonzero(xp.argmax(Z, axis=0) == labels)
        w = weights.reshape(-1).astype(np.float64)
        S = Z.astype(np.float64)
        S -= Z.max(axis=0, keepdims=True)
        shifted_label = S[labels, cols]
        xp.exp(S, out=S)
        total = S.sum(axis=0)
        loss = ((xp.log(total) - shifted_label) * w * (1.0 / m)).sum()
        S /= total
        S[labels, cols] -= 1
        S *= w * (1.0 / m)
        return loss, correct, S.astype(Z.dtype, order="K")

    def mse_weighted(self, A: Any, Y: Any, weights: Any) -> tuple[Any, Any, Any]:
        """``mse`` with a weight per example, weights (1, m): the loss is
        1/(2m) * sum_i w_i * sum_k (A_ki - Y_ki)^2 and dA = w * (A - Y) / m (as the weighted
        cross-entropies: a mean over the m examples, not over the weights; a weight of 2 is
        the example counted twice in a batch of m + 1). ``correct`` is not weighted.
        A, Y (K, m) and weights (1, m) in A's dtype; loss a float64 device scalar."""
        xp = self.xp
        m = A.shape[1]
        diff = A - Y
        terms = diff * diff
        terms *= weights
        loss = 0.5 * (terms.sum(dtype=np.float64) / m)
        correct = xp.count_nonzero((A > 0.5) == (Y > 0.5))
        diff *= weights
        diff *= A.dtype.type(1.0 / m)
        return loss, correct, diff

    # ----------------------------------------------------------------- losses
    def bce_from_logits(self, Z: Any, Y: Any, m: int | None = None) -> tuple[Any, Any, Any]:
        """Binary cross-entropy of sigmoid(Z) against Y, from the logits Z (1, m).

        Returns (loss, correct, dZ): the mean loss as a device scalar, the number of
        examples with (Z > 0) == Y as a device scalar, and dZ = (sigmoid(Z) - Y) / m.
        Uses max(z, 0) - z*y + log1p(exp(-|z|)): finite for every finite logit.
        ``m`` (default: Z's columns) is the divisor: a chunk of a larger batch passes the
        whole batch's m, so its loss and dZ are its exact share of the whole batch's mean.
        """
        xp = self.xp
        m = Z.shape[1] if m is None else m
        e = xp.exp(-xp.abs(Z))
        terms = xp.maximum(Z, 0) - Z * Y + xp.log1p(e)
        terms *= Z.dtype.type(1.0 / m)  # scale before summing: a plain mean overflows near max float
        with np.errstate(over="ignore"):  # finite_mean_loss takes a rounding overflow back
            loss = self.finite_mean_loss(terms.sum(dtype=np.float64), Z, Y)
        correct = xp.count_nonzero((Z > 0) == (Y > 0.5))
        sig = xp.where(Z >= 0, Z.dtype.type(1), e)
        sig /= 1 + e
        sig -= Y
        sig *= Z.dtype.type(1.0 / m)
        return loss, correct, sig

    def finite_mean_loss(self, loss: Any, Z: Any, Y: Any) -> Any:
        """``loss`` (a float64 device scalar: the mean of per-example losses, each at most
        max float) with +inf taken back to the largest float64 where every logit in Z and
        label in Y is finite: then the true mean is finite, and only the rounding of the
        terms' sum went past max float. Infinite or NaN inputs keep their inf or NaN."""
        if Z.dtype != np.float64:  # float32 terms cannot take a float64 sum past max float
            return loss
        xp = self.xp
        finite_inputs = xp.isfinite(Z).all() & xp.isfinite(Y).all()
        return xp.where(xp.isposinf(loss) & finite_inputs, np.finfo(np.float64).max, loss)

    def softmax_cross_entropy(self, Z: Any, Y: Any, m: int | None = None) -> tuple[Any, Any, Any]:
        """Cross-entropy of softmax(Z) against class labels, from the logits Z (K, m).

        Y (1, m) holds each example's class index 0..K-1 (in Z's dtype). Returns (loss,
        correct, dZ): the mean of logsumexp(z) - z_y as a float64 device scalar, the
        number of examples whose largest logit is their label (ties and NaN resolved as
        ``argmax``), and dZ = (softmax(Z) - onehot(Y)) / m in Z's dtype. Each column's max
        is subtracted first and the rest is done in float64, so the loss is finite
        whenever the spread of each column's logits is (always, for float32 logits).
        ``m`` (default: Z's columns) is the divisor, as in ``bce_from_logits``.
        """
        xp = self.xp
        cols = xp.arange(Z.shape[1])
        m = Z.shape[1] if m is None else m
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

    def mse(self, A: Any, Y: Any, m: int | None = None) -> tuple[Any, Any, Any]:
        """Squared error in the tutorials' form 1/(2m) * sum((A - Y)^2), from outputs A (K, m)
        (summed over the K outputs, averaged over the m examples).

        Returns (loss, correct, dA) with dA = (A - Y) / m and correct counting
        (A > 0.5) == Y. ``m`` (default: A's columns) is the divisor, as in ``bce_from_logits``.
        """
        xp = self.xp
        diff = A - Y
        m = A.shape[1] if m is None else m
        loss = 0.5 * ((diff * diff).sum(dtype=np.float64) / m)
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
        value, correct, dw, db = self._logreg_grads(w, b, X, Y, loss)
        self.sgd_update_([w, b], [dw, db], lr)
        return value, correct

    def _logreg_grads(self, w: Any, b: Any, X: Any, Y: Any, loss: str) -> tuple[Any, Any, Any, Any]:
        """(loss, correct, dw, db) of logistic regression in the compute dtype, reading X
        twice (Z = w X, then dw = dz X^T): the generic epoch and loss-and-gradient."""
        X = self._fused_floats(X, w.dtype)
        Z = self.matmul(w, X)
        Z += b
        if loss == "bce":
            value, correct, dZ = self.bce_from_logits(Z, Y)
        else:
            A = self.sigmoid_(Z)
            value, correct, dZ = self.mse(A, Y)
            self.activation_backward_(dZ, A, "sigmoid")
        return value, correct, self.matmul(dZ, X.T), self.sum_columns(dZ)

    # --------------------------------------------- fused softmax regression
    def softmax_epoch_(self, W: Any, b: Any, X: Any, Y: Any, lr: float) -> tuple[Any, Any]:
        """One gradient-descent step of softmax regression, updating W (K, n_x), b (K, 1).

        X is what ``prepare_fused_input`` returned, Y (1, m) the class indices. Returns
        (loss, correct) at the parameters before the update, as device scalars. This
        generic version reads X twice (Z = W X, then dW = dZ X^T); backends with
        ``fused_softmax`` read it once for K up to ``MAX_FUSED_CLASSES``.
        """
        value, correct, dW, db = self._softmax_grads(W, b, X, Y)
        self.sgd_update_([W, b], [dW, db], lr)
        return value, correct

    def _softmax_grads(self, W: Any, b: Any, X: Any, Y: Any) -> tuple[Any, Any, Any, Any]:
        """(loss, correct, dW, db) of softmax regression in the compute dtype, reading X
        twice (Z = W X, then dW = dZ X^T): the generic epoch and loss-and-gradient."""
        X = self._fused_floats(X, W.dtype)
        Z = self.matmul(W, X)
        Z += b
        value, correct, dZ = self.softmax_cross_entropy(Z, Y)
        return value, correct, self.matmul(dZ, X.T), self.sum_columns(dZ)

    # ------------------------------------------- facts and measuring (info, bench)
    def describe(self) -> dict[str, Any]:
        """Facts about this backend for ``nnx info`` and benchmark records."""
        return {"name": self.name, "gpu": self.is_gpu, "fused_logreg": self.fused_logreg}

    def compile_kernels(self) -> float | None:
        """Compile now what this backend would compile on first use in each process and
        return the seconds it took (that first-call cost); None where nothing is compiled
        ahead (here)."""
        return None

    def timer(self) -> Timer:
        """A timer of work queued on this backend: ``start()``, then ``stop()`` returns the
        seconds since. Here the wall clock, read after ``synchronize()``."""
        return WallClockTimer(self.synchronize)

    def streaming_read(self, X: Any) -> tuple[Callable[[], Any], int]:
        """(read, nbytes): a closure reading X's memory once and doing nothing else, as fast
        as this backend can, and the bytes it reads: the bandwidth an epoch that reads X
        once is rated against. Here NumPy's single-threaded float64 sum of X."""
        return (lambda: X.sum(dtype=np.float64)), int(X.nbytes)

    def named_variants(
        self, build: Callable[[], Callable[[], Any]], X: np.ndarray, dtype: str
    ) -> dict[str, Callable[[], Any]]:
        """The alternative kernels this backend has for a logistic-regression epoch over
        host X in compute ``dtype``, as {name: closure}: ``build()`` is called once with
        the kernel forced and returns the epoch, and the closure runs it with the kernel
        forced again. {} where the backend has no choice of kernel (here)."""
        return {}

    # ------------------------------------ loss and gradient without the update (L-BFGS)
    def _fused_floats(self, X: Any, dtype: Any) -> Any:
        """A fused-input X as floats in ``dtype`` (raw pixels scaled by 1/255 here)."""
        if X.dtype == np.uint8:
            X = X.astype(dtype)
            X *= X.dtype.type(PIXEL_SCALE)
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
        value, correct, dw, db = self._logreg_grads(w, b, X, Y, loss)
        return value, correct, dw.astype(np.float64), db.astype(np.float64)

    def softmax_loss_grad(self, W: Any, b: Any, X: Any, Y: Any) -> tuple[Any, Any, Any, Any]:
        """Softmax regression's cross-entropy and gradient at (W, b), with no update.

        The pass of ``softmax_epoch_`` without its step: X from ``prepare_fused_input``, Y
        (1, m) class indices. Returns (loss, correct, dW (K, n_x), db (K, 1)), the gradient
        of the mean loss as float64 device arrays. Deterministic. This generic version
        reads X twice (Z = W X, then dW = dZ X^T).
        """
        value, correct, dW, db = self._softmax_grads(W, b, X, Y)
        return value, correct, dW.astype(np.float64), db.astype(np.float64)
