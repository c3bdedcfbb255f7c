"""The uint8 logistic-regression block on one core, in the kernel's form and three others.

    PYTHONPATH=. python benchmarks/uint8_forms.py [--m 1024]     # X (12288 x m) in cache
    NUMBA_CPU_NAME=znver2 NUMBA_CACHE_DIR=/tmp/nb PYTHONPATH=. python benchmarks/uint8_forms.py

Each form runs the fused pass over one block of m uint8 examples (``_logreg_block``'s
work: 8 dot products per tile, the loss terms, then dw for the 8 rows) on one thread; the
figure is the fastest of 11 calls, in G pixels/s. Forms:

* ``kernel``: ``numba_kernels._logreg_block`` as it is (each sweep converts its pixels);
* ``float tile``: the dot sweep converts each tile once into an (8, n) float32 tile, which
  the dw sweep reads (one conversion per pixel, one float store and reload);
* ``words``: pixels read four to a 32-bit word, unpacked with shifts and masks against a
  permuted w (no byte shuffles);
* ``16 rows``: 16-example tiles (two 8-wide dot sweeps, one 16-wide dw sweep);
* ``dots only``: the kernel's dot sweep alone (the dw sweep's share is the rest).

Not a test: it prints the rates and the largest relative difference of each form's dw
from the kernel's (the forms add in other orders).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from nnx.backends import numba_kernels as k

FAST = k._FAST
BYTE = np.uint32(255)


@njit(cache=False, fastmath=FAST)
def dot8_store(Xb, i, w, T, zero):
    x0, x1, x2, x3 = Xb[i], Xb[i + 1], Xb[i + 2], Xb[i + 3]
    x4, x5, x6, x7 = Xb[i + 4], Xb[i + 5], Xb[i + 6], Xb[i + 7]
    t0, t1, t2, t3, t4, t5, t6, t7 = T[0], T[1], T[2], T[3], T[4], T[5], T[6], T[7]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    for j in range(Xb.shape[1]):
        wj = w[j]
        v0 = zero + x0[j]
        v1 = zero + x1[j]
        v2 = zero + x2[j]
        v3 = zero + x3[j]
        v4 = zero + x4[j]
        v5 = zero + x5[j]
        v6 = zero + x6[j]
        v7 = zero + x7[j]
        t0[j] = v0
        t1[j] = v1
        t2[j] = v2
        t3[j] = v3
        t4[j] = v4
        t5[j] = v5
        t6[j] = v6
        t7[j] = v7
        s0 += wj * v0
        s1 += wj * v1
        s2 += wj * v2
        s3 += wj * v3
        s4 += wj * v4
        s5 += wj * v5
        s6 += wj * v6
        s7 += wj * v7
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(cache=False, fastmath=FAST)
def float_tile(Xb, yb, w, b, scale, acc, tacc, T):
    cnt, n = Xb.shape
    zero = w.dtype.type(0)
    acc[:] = 0.0
    tacc[:] = 0
    loss = 0.0
    tiles = cnt // 8
    for t in range(tiles):
        i = 8 * t
        s = dot8_store(Xb, i, w, T, zero)
        e = [zero] * 8
        for kk in range(8):
            z = np.float64(k._pixel_logit(Xb[i + kk], w, s[kk], scale) + b[0])
            lk, dk, ck = k._example_terms(z, np.float64(yb[i + kk]), 0)
            loss += lk
            e[kk] = zero + dk
        et = (e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7])
        k._dw8(T, 0, et, tacc)
        if t % 8 == 7:
            k._flush(acc, tacc)
    k._flush(acc, tacc)
    return loss


@njit(cache=False, fastmath=FAST, inline="always")
def _px(d, zero):
    return (
        zero + (d & BYTE),
        zero + ((d >> np.uint32(8)) & BYTE),
        zero + ((d >> np.uint32(16)) & BYTE),
        zero + (d >> np.uint32(24)),
    )


@njit(cache=False, fastmath=FAST)
def dot8_w(X4, i, wp, zero):
    """X4 (cnt, n/4) uint32 view; wp (4, n/4) with wp[q, c] = w[4c + q]"""
    x0, x1, x2, x3 = X4[i], X4[i + 1], X4[i + 2], X4[i + 3]
    x4, x5, x6, x7 = X4[i + 4], X4[i + 5], X4[i + 6], X4[i + 7]
    w0, w1, w2, w3 = wp[0], wp[1], wp[2], wp[3]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    for c in range(X4.shape[1]):
        a, b, cc, d = w0[c], w1[c], w2[c], w3[c]
        p = _px(x0[c], zero)
        s0 += a * p[0] + b * p[1] + cc * p[2] + d * p[3]
        p = _px(x1[c], zero)
        s1 += a * p[0] + b * p[1] + cc * p[2] + d * p[3]
        p = _px(x2[c], zero)
        s2 += a * p[0] + b * p[1] + cc * p[2] + d * p[3]
        p = _px(x3[c], zero)
        s3 += a * p[0] + b * p[1] + cc * p[2] + d * p[3]
        p = _px(x4[c], zero)
        s4 += a * p[0] + b * p[1] + cc * p[2] + d * p[3]
        p = _px(x5[c], zero)
        s5 += a * p[0] + b * p[1] + cc * p[2] + d * p[3]
        p = _px(x6[c], zero)
        s6 += a * p[0] + b * p[1] + cc * p[2] + d * p[3]
        p = _px(x7[c], zero)
        s7 += a * p[0] + b * p[1] + cc * p[2] + d * p[3]
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(cache=False, fastmath=FAST)
def dw8_w(X4, i, e, tp):
    x0, x1, x2, x3 = X4[i], X4[i + 1], X4[i + 2], X4[i + 3]
    x4, x5, x6, x7 = X4[i + 4], X4[i + 5], X4[i + 6], X4[i + 7]
    e0, e1, e2, e3, e4, e5, e6, e7 = e
    zero = e0 * 0
    t0, t1, t2, t3 = tp[0], tp[1], tp[2], tp[3]
    for c in range(X4.shape[1]):
        p0 = _px(x0[c], zero)
        p1 = _px(x1[c], zero)
        p2 = _px(x2[c], zero)
        p3 = _px(x3[c], zero)
        p4 = _px(x4[c], zero)
        p5 = _px(x5[c], zero)
        p6 = _px(x6[c], zero)
        p7 = _px(x7[c], zero)
        t0[c] += (
            e0 * p0[0]
            + e1 * p1[0]
            + e2 * p2[0]
            + e3 * p3[0]
            + e4 * p4[0]
            + e5 * p5[0]
            + e6 * p6[0]
            + e7 * p7[0]
        )
        t1[c] += (
            e0 * p0[1]
            + e1 * p1[1]
            + e2 * p2[1]
            + e3 * p3[1]
            + e4 * p4[1]
            + e5 * p5[1]
            + e6 * p6[1]
            + e7 * p7[1]
        )
        t2[c] += (
            e0 * p0[2]
            + e1 * p1[2]
            + e2 * p2[2]
            + e3 * p3[2]
            + e4 * p4[2]
            + e5 * p5[2]
            + e6 * p6[2]
            + e7 * p7[2]
        )
        t3[c] += (
            e0 * p0[3]
            + e1 * p1[3]
            + e2 * p2[3]
            + e3 * p3[3]
            + e4 * p4[3]
            + e5 * p5[3]
            + e6 * p6[3]
            + e7 * p7[3]
        )


@njit(cache=False, fastmath=FAST)
def words(X4, yb, wp, b, scale, acc, tp):
    cnt = X4.shape[0]
    zero = wp.dtype.type(0)
    tp[:] = 0
    loss = 0.0
    for t in range(cnt // 8):
        i = 8 * t
        s = dot8_w(X4, i, wp, zero)
        e = [zero] * 8
        for kk in range(8):
            z = np.float64(s[kk]) * scale + b[0]
            lk, dk, ck = k._example_terms(z, np.float64(yb[i + kk]), 0)
            loss += lk
            e[kk] = zero + dk
        dw8_w(X4, i, (e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]), tp)
    return loss


@njit(cache=False, fastmath=FAST)
def dw16(Xb, i, e, f, tacc):
    x0, x1, x2, x3 = Xb[i], Xb[i + 1], Xb[i + 2], Xb[i + 3]
    x4, x5, x6, x7 = Xb[i + 4], Xb[i + 5], Xb[i + 6], Xb[i + 7]
    y0, y1, y2, y3 = Xb[i + 8], Xb[i + 9], Xb[i + 10], Xb[i + 11]
    y4, y5, y6, y7 = Xb[i + 12], Xb[i + 13], Xb[i + 14], Xb[i + 15]
    e0, e1, e2, e3, e4, e5, e6, e7 = e
    f0, f1, f2, f3, f4, f5, f6, f7 = f
    for j in range(Xb.shape[1]):
        tacc[j] += (
            e0 * x0[j]
            + e1 * x1[j]
            + e2 * x2[j]
            + e3 * x3[j]
            + e4 * x4[j]
            + e5 * x5[j]
            + e6 * x6[j]
            + e7 * x7[j]
            + f0 * y0[j]
            + f1 * y1[j]
            + f2 * y2[j]
            + f3 * y3[j]
            + f4 * y4[j]
            + f5 * y5[j]
            + f6 * y6[j]
            + f7 * y7[j]
        )


@njit(cache=False, fastmath=FAST)
def rows16(Xb, yb, w, b, scale, acc, tacc):
    cnt, n = Xb.shape
    zero = w.dtype.type(0)
    acc[:] = 0.0
    tacc[:] = 0
    loss = 0.0
    for t in range(cnt // 16):
        i = 16 * t
        s = k._dot8(Xb, i, w, zero)
        s2 = k._dot8(Xb, i + 8, w, zero)
        e = [zero] * 16
        for kk in range(16):
            sk = s[kk] if kk < 8 else s2[kk - 8]
            z = np.float64(k._pixel_logit(Xb[i + kk], w, sk, scale) + b[0])
            lk, dk, ck = k._example_terms(z, np.float64(yb[i + kk]), 0)
            loss += lk
            e[kk] = zero + dk
        dw16(
            Xb,
            i,
            (e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]),
            (e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]),
            tacc,
        )
        if t % 4 == 3:
            k._flush(acc, tacc)
    k._flush(acc, tacc)
    return loss


@njit(cache=False, fastmath=FAST)
def kernel(Xb, y, w, b, scale, acc, tacc):
    return k._logreg_block(Xb, y, w, b, scale, 0, acc, tacc)


@njit(cache=False, fastmath=FAST)
def dots_only(Xb, w):
    zero = w.dtype.type(0)
    total = 0.0
    for t in range(Xb.shape[0] // 8):
        s = k._dot8(Xb, 8 * t, w, zero)
        total += s[0] + s[7]
    return total


def _fastest(fn, *args, calls: int = 11) -> float:
    fn(*args)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=1024)
    args = parser.parse_args()
    n, m = 12288, args.m
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (m, n), dtype=np.uint8)
    w = (rng.standard_normal(n) * 1e-3).astype(np.float32)
    b = np.zeros(1, np.float32)
    y = (rng.random(m) > 0.5).astype(np.float32)
    scale = 1 / 255
    acc, tacc = np.zeros(n), np.zeros(n, np.float32)
    kernel(X, y, w, b, scale, acc, tacc)
    ref = acc.copy()
    T = np.zeros((8, n), np.float32)
    wp = np.ascontiguousarray(w.reshape(-1, 4).T)
    tp = np.zeros((4, n // 4), np.float32)
    forms = {
        "kernel": (kernel, (X, y, w, b, scale, acc, tacc), lambda: acc),
        "float tile": (float_tile, (X, y, w, b, scale, acc, tacc, T), lambda: acc),
        "words": (words, (X.view(np.uint32), y, wp, b, scale, acc, tp), lambda: tp.T.reshape(-1)),
        "16 rows": (rows16, (X, y, w, b, scale, acc, tacc), lambda: acc),
        "dots only": (dots_only, (X, w), None),
    }
    for name, (fn, fargs, result) in forms.items():
        seconds = _fastest(fn, *fargs)
        diff = ""
        if result is not None:
            got = np.asarray(result(), np.float64)
            diff = f"  dw vs kernel {np.abs(got - ref).max() / np.abs(ref).max():.1e}"
        print(
            f"{name:10s} {seconds * 1e3:7.2f} ms  {n * m / seconds / 1e9:6.2f} G pixels/s{diff}", flush=True
        )


if __name__ == "__main__":
    main()
