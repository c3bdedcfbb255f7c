"""The Numba backend: NumPy arrays, with the hot ops replaced by fused JIT kernels.

* Logistic regression runs one parallel kernel per epoch that reads X once (float32,
  float64, or uint8 pixels with the 1/255 folded in: 1 byte read per pixel).
* For deeper nets the big products stay in BLAS (W1 X and dZ1 X^T); everything between
  them is fused elementwise kernels. Those kernels are single-threaded on purpose: they
  touch only (n_hidden, m) arrays, and OpenBLAS worker threads keep spinning for ~0.1 s
  after each product, so a parallel kernel right after a BLAS call would fight them for
  the cores.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from .base import Backend

_ACT_CODES = {None: 0, "sigmoid": 1, "relu": 2, "tanh": 3}


def unavailable_reason() -> str | None:
    """None when numba imports, else why not."""
    if importlib.util.find_spec("numba") is None:
        return "numba is not installed"
    try:
        import numba  # noqa: F401
    except Exception as exc:  # a broken llvmlite raises all sorts
        return f"numba failed to import ({exc})"
    return None


class NumbaBackend(Backend):
    """CPU backend with fused, parallel Numba kernels (threads: NUMBA_NUM_THREADS)."""

    name = "numba"
    xp = np
    fused_logreg = True
    input_dtypes = ("float32", "float64", "uint8")
    activation_order = "F"

    def __init__(self) -> None:
        from . import numba_kernels

        self.k = numba_kernels
        self._scratch: dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------------ helpers
    def _scratch_buf(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._scratch.get((key, shape))
        if buf is None:
            buf = self._scratch[(key, shape)] = np.empty(shape, dtype=np.float64)
        return buf

    @staticmethod
    def num_threads() -> int:
        import numba

        return numba.get_num_threads()

    @staticmethod
    def _c(a: np.ndarray) -> bool:
        return a.flags.c_contiguous

    @staticmethod
    def _rows(a: np.ndarray) -> np.ndarray | None:
        """A C-contiguous view with the same elements (itself, or the transpose of a
        Fortran-ordered array), for layout-agnostic elementwise kernels; else None."""
        if a.flags.c_contiguous:
            return a
        if a.flags.f_contiguous:
            return a.T
        return None

    # ------------------------------------------------------------ fused logreg
    def prepare_fused_input(self, X: np.ndarray, dtype: str) -> np.ndarray:
        return self.native_host_input(X, dtype)

    def logreg_epoch_(self, w, b, X, Y, lr, loss):
        if not X.flags.f_contiguous:
            return super().logreg_epoch_(w, b, X, Y, lr, loss)
        nblocks = max(1, min(self.num_threads(), X.shape[1]))
        scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
        dw_part = self._scratch_buf("dw", (nblocks, X.shape[0]))
        stats = self._scratch_buf("stats", (nblocks, 3))
        tile_acc = self._scratch.get(("tile", w.dtype.name, dw_part.shape))
        if tile_acc is None:
            tile_acc = self._scratch[("tile", w.dtype.name, dw_part.shape)] = np.empty(
                dw_part.shape, dtype=w.dtype
            )
        value, correct = self.k.logreg_epoch(
            X.T,
            w.reshape(-1),
            b.reshape(-1),
            Y.reshape(-1),
            scale,
            float(lr),
            0 if loss == "bce" else 1,
            dw_part,
            tile_acc,
            stats,
        )
        return np.float64(value), int(correct)

    # --------------------------------------------------------- elementwise ops
    def bias_activation_(self, Z, b, activation):
        if Z.dtype != b.dtype or not b.flags.c_contiguous:
            return super().bias_activation_(Z, b, activation)
        if Z.flags.c_contiguous:
            return self.k.bias_activation(Z, b, _ACT_CODES[activation])
        if Z.flags.f_contiguous:  # example-contiguous activations
            self.k.bias_activation_rows(Z.T, b.reshape(-1), _ACT_CODES[activation])
            return Z
        return super().bias_activation_(Z, b, activation)

    def activation_backward_(self, dA, A, activation):
        if activation is None:
            return dA
        d_rows, a_rows = self._rows(dA), self._rows(A)
        if d_rows is None or a_rows is None or d_rows.shape != a_rows.shape or dA.dtype != A.dtype:
            return super().activation_backward_(dA, A, activation)
        self.k.activation_backward(d_rows, a_rows, _ACT_CODES[activation])
        return dA

    def sigmoid_(self, Z):
        rows = self._rows(Z)
        if rows is None:
            return super().sigmoid_(Z)
        self.k.sigmoid_inplace(rows)
        return Z

    def bce_from_logits(self, Z, Y):
        if not (self._c(Z) and self._c(Y)) or Z.dtype != Y.dtype:
            return super().bce_from_logits(Z, Y)
        dZ = np.empty_like(Z)
        loss, correct = self.k.bce_from_logits(Z, Y, dZ)
        return np.float64(loss), int(correct), dZ

    def sgd_update_(self, params, grads, lr):
        for p, g in zip(params, grads):
            if self._c(p) and self._c(g) and p.dtype == g.dtype:
                self.k.sgd_update(p, g, p.dtype.type(lr))
            else:
                p -= p.dtype.type(lr) * g

    def describe(self) -> dict[str, Any]:
        import numba

        info = super().describe()
        info.update(numba=numba.__version__, threads=numba.get_num_threads())
        try:
            info["threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet in this process
            self.k.streaming_sum(np.zeros((2, 2), np.int64), 1, np.zeros(1, np.int64))
            info["threading_layer"] = numba.threading_layer()
        return info
