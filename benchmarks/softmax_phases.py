"""Where the tiled softmax pass (``numba_kernels.softmax_loss_grad``) spends its time, one
core at a time: each sweep form alone on one 8-example tile held in cache, and the copy of
a tile out of X in memory, with and without the first logit sweep riding on it.

    PYTHONPATH=. python benchmarks/softmax_phases.py [--n 12288] [--K 10]

Times are thread CPU time (``time.thread_time``), the fastest of 7 calls of a loop of
repeats, so other processes on a shared machine slow them less than wall time. GFLOP/s
counts 2 flops per multiply-add (8 examples x K classes x n features per product).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from nnx.backends import numba_kernels as nk
from nnx.backends.numba_backend import padded_row


@njit(cache=True)
def _logits_8x2(P, W, reps):
    zero = W.dtype.type(0)
    t = 0.0
    for _ in range(reps):
        for k in range(0, W.shape[0] - 1, 2):
            t += nk._dot8x2(P, 0, W[k], W[k + 1], zero)[0]
    return t


@njit(cache=True)
def _logits_4x5(P, W, reps):
    zero = W.dtype.type(0)
    t = 0.0
    for _ in range(reps):
        for k in range(0, W.shape[0] - 4, 5):
            for h in range(0, 8, 4):
                t += nk._dot4x5(P, h, W, k, zero)[0]
    return t


@njit(cache=True)
def _dw_8x2(P, T, reps):
    c = T.dtype.type(1e-6)
    e = (c, c, c, c, c, c, c, c)
    for _ in range(reps):
        for k in range(0, T.shape[0] - 1, 2):
            nk._dw8x2(P, 0, e, e, T[k], T[k + 1])
    return T[0, 0]


@njit(cache=True)
def _dw_8x3(P, T, reps):
    c = T.dtype.type(1e-6)
    e = (c, c, c, c, c, c, c, c)
    K = T.shape[0]
    for _ in range(reps):
        k = 0
        while k + 3 <= K:
            nk._dw8x3(P, 0, e, e, e, T[k], T[k + 1], T[k + 2])
            k += 3
        while k < K:
            nk._dw8(P, 0, e, T[k])
            k += 1
    return T[0, 0]


@njit(cache=True)
def _copy(X, P, reps):
    n = X.shape[1]
    for r in range(reps):
        i = (8 * r) % (X.shape[0] - 7)
        for e in range(8):
            src = X[i + e]
            dst = P[e]
            for j in range(n):
                dst[j] = src[j]
    return P[0, 0]


@njit(cache=True)
def _copy_with_logits(X, W, P, reps):
    zero = W.dtype.type(0)
    t = 0.0
    for r in range(reps):
        i = (8 * r) % (X.shape[0] - 7)
        for h in range(0, 8, 4):
            t += nk._dot4x5_pack(X, i + h, W, 0, zero, P, h)[0]
    return t


def _best(fn, reps: int) -> float:
    fn(1)
    best = float("inf")
    for _ in range(7):
        start = time.thread_time()
        fn(reps)
        best = min(best, time.thread_time() - start)
    return best / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=12288)
    parser.add_argument("--K", type=int, default=10)
    parser.add_argument("--m", type=int, default=4096, help="examples of X in memory for the copy rows")
    args = parser.parse_args()
    n, K = args.n, args.K
    rng = np.random.default_rng(0)
    flop = 2 * 8 * K * n
    for s in sorted({n, padded_row(n, 4, 4)}):
        P = rng.random((8, s), dtype=np.float32)
        W = (rng.random((K, s), dtype=np.float32) * 1e-3).astype(np.float32)
        T = np.zeros((K, s), np.float32)
        reps = max(1, int(3e8 // flop))
        label = "rows n apart" if s == n else f"rows padded to {s}"
        for name, kernel, operands in (
            ("logits 8 examples x 2 classes", _logits_8x2, (P, W)),
            ("logits 4 examples x 5 classes", _logits_4x5, (P, W)),
            ("dW 8 examples x 2 classes", _dw_8x2, (P, T)),
            ("dW 8 examples x 3 classes", _dw_8x3, (P, T)),
        ):
            sec = _best(lambda r, kernel=kernel, operands=operands: kernel(*operands, r), reps)
            print(f"n={n} {label:20s} {name:30s} {sec * 1e6:8.2f} us/tile  {flop / sec / 1e9:6.1f} GFLOP/s")
    s = padded_row(n, 4, 4)
    X = rng.random((args.m, n), dtype=np.float32)
    P = np.zeros((8, s), np.float32)
    W = (rng.random((K, s), dtype=np.float32) * 1e-3).astype(np.float32)
    tile = 8 * n * 4
    reps = args.m // 8
    for name, fn in (
        ("copy of a tile out of X", lambda r: _copy(X, P, r)),
        ("copy + logits of classes 0-4", lambda r: _copy_with_logits(X, W, P, r)),
    ):
        sec = _best(fn, reps)
        rate = f"{tile / sec / 1e9:6.1f} GB/s"
        print(f"n={n} X {X.nbytes / 1e6:.0f} MB {name:34s} {sec * 1e6:8.2f} us/tile  {rate}")


if __name__ == "__main__":
    main()
