"""Numba kernels for the Numba backend. Importing this module needs numba.

All kernels are compiled with ``cache=True`` so a second process loads them from disk.
Activation and loss codes are those of ``codes`` (softmax on example-contiguous rows only).

The logistic-regression epoch reads X once: each thread takes a fixed block of examples
and walks it eight examples at a time; the eight dot products share each read of w, and
their dw contributions are added in one sweep while the eight examples are still in
cache (L2), so X crosses the memory bus once per epoch. Per-thread accumulators are summed in a fixed
order at the end, so the result is bitwise repeatable for a given thread count. The
softmax-regression pass (``softmax_loss_grad``) works the same way with K classes per tile.
"""

from __future__ import annotations

import math
import types

import numpy as np
from numba import njit, prange

from .codes import ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH, LOSS_BCE

# Reassociation lets LLVM vectorise the dot-product reductions; no-NaN/inf or
# approximate-function flags are deliberately not set (the loss must see inf/NaN).
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, inline="always")
def _sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True, inline="always")
def _example_terms(z, y, loss_code):
    """(loss, d loss/dz, correct) for one example with logit z and label y."""
    if loss_code == LOSS_BCE:
        e = math.exp(-abs(z))
        pos = z if not z < 0.0 else 0.0  # max(z, 0) that keeps NaN, as np.maximum does
        loss = pos - z * y + math.log1p(e)
        s = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
        correct = 1 if (z > 0) == (y > 0.5) else 0
        return loss, s - y, correct
    a = _sigmoid(z)
    d = a - y
    correct = 1 if (a > 0.5) == (y > 0.5) else 0
    return 0.5 * d * d, d * a * (1.0 - a), correct


@njit(cache=True, fastmath=_FAST)
def _dot8(Xb, i, w, zero):
    """Dot products of w with the 8 examples Xb[i:i+8], sharing each load of w."""
    x0, x1, x2, x3 = Xb[i], Xb[i + 1], Xb[i + 2], Xb[i + 3]
    x4, x5, x6, x7 = Xb[i + 4], Xb[i + 5], Xb[i + 6], Xb[i + 7]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    for j in range(Xb.shape[1]):
        wj = w[j]
        s0 += wj * x0[j]
        s1 += wj * x1[j]
        s2 += wj * x2[j]
        s3 += wj * x3[j]
        s4 += wj * x4[j]
        s5 += wj * x5[j]
        s6 += wj * x6[j]
        s7 += wj * x7[j]
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(cache=True, fastmath=_FAST)
def _dw8(Xb, i, e, tacc):
    """tacc += sum_k e[k] * Xb[i+k] over the 8 examples at i, in one sweep over tacc."""
    x0, x1, x2, x3 = Xb[i], Xb[i + 1], Xb[i + 2], Xb[i + 3]
    x4, x5, x6, x7 = Xb[i + 4], Xb[i + 5], Xb[i + 6], Xb[i + 7]
    e0, e1, e2, e3, e4, e5, e6, e7 = e
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
        )


@njit(cache=True)
def _flush(acc, tacc):
    for j in range(acc.shape[0]):
        acc[j] += tacc[j]
        tacc[j] = 0


@njit(cache=True, fastmath=_FAST)
def _dot_scaled(x, w, s):
    """w . (x * s), each element scaled first, as NumPy scales pixels (the overflow path)."""
    total = w.dtype.type(0)
    for j in range(x.shape[0]):
        total += w[j] * (x[j] * s)
    return total


@njit(cache=True, inline="always")
def _pixel_logit(x, w, s, scale):
    """scale * s rounded to w's dtype, s = w . x (b is then added in that dtype, as NumPy
    computes w X + b). From pixels (scale != 1), where w * pixel overflowed and
    w * (pixel * scale) would not (w within 255x of the largest float), w . (x * scale)
    as NumPy computes it."""
    z = np.float64(s) * scale
    if scale != 1.0 and not np.isfinite(z):
        z = np.float64(_dot_scaled(x, w, w.dtype.type(scale)))
    return w.dtype.type(z)


@njit(cache=True, fastmath=_FAST)
def _logreg_block(Xb, yb, w, b, scale, loss_code, acc, tacc):
    """The fused pass over one block of examples Xb (k, n); adds its dw into acc (float64).

    Returns (sum of losses, sum of dz, number correct) over the block.
    """
    cnt, n = Xb.shape
    zero = w.dtype.type(0)
    acc[:] = 0.0
    tacc[:] = 0
    loss = 0.0
    dbsum = 0.0
    correct = 0.0
    tiles = cnt // 8
    for t in range(tiles):
        i = 8 * t
        s = _dot8(Xb, i, w, zero)
        e = [zero] * 8
        for k in range(8):
            z = np.float64(_pixel_logit(Xb[i + k], w, s[k], scale) + b[0])
            lk, dk, ck = _example_terms(z, np.float64(yb[i + k]), loss_code)
            loss += lk
            dbsum += dk
            correct += ck
            e[k] = zero + dk
        et = (e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7])
        _dw8(Xb, i, et, tacc)
        if t % 8 == 7:  # flush the compute-dtype partial sums every 64 examples
            _flush(acc, tacc)
    for i in range(8 * tiles, cnt):
        xk = Xb[i]
        sk = zero
        for j in range(n):
            sk += w[j] * xk[j]
        z = np.float64(_pixel_logit(xk, w, sk, scale) + b[0])
        lk, dk, ck = _example_terms(z, np.float64(yb[i]), loss_code)
        loss += lk
        dbsum += dk
        correct += ck
        ek = zero + dk
        for j in range(n):
            tacc[j] += ek * xk[j]
    _flush(acc, tacc)
    return loss, dbsum, correct


def _logreg_epoch(Xt, w, b, y, scale, lr, loss_code, dw_part, tile_acc, stats):
    """One fused gradient-descent step of logistic regression; updates w and b in place.

    Xt (m, n) C-contiguous (example-contiguous X), float32/float64/uint8; the logit of
    example i is scale * (w . Xt[i]) + b[0]. w (n,) and b (1,) in the compute dtype;
    y (m,) labels. Scratch, one row per block (nblocks = number of threads):
    dw_part (nblocks, n) float64, tile_acc (nblocks, n) compute dtype, stats (nblocks, 3)
    float64. Returns (mean loss, number correct) at the parameters before the update.

    Examples go 8 at a time: the 8 dot products share each load of w, and the 8 dw
    contributions are added in one sweep while the 8 examples are still in cache. dw is
    summed in the compute dtype for at most 64 examples, then flushed into float64
    (blocked summation: float32 inputs keep float32 accuracy at any m).
    """
    m, n = Xt.shape
    nblocks = dw_part.shape[0]
    for blk in prange(nblocks):
        lo = blk * m // nblocks
        hi = (blk + 1) * m // nblocks
        loss, dbsum, correct = _logreg_block(
            Xt[lo:hi], y[lo:hi], w, b, scale, loss_code, dw_part[blk], tile_acc[blk]
        )
        stats[blk, 0] = loss
        stats[blk, 1] = dbsum
        stats[blk, 2] = correct
    # Fixed-order reduction over blocks, then the update (dw carries the 1/255 scale).
    step = lr * scale / m
    for j in prange(n):
        acc_j = 0.0
        for k in range(nblocks):
            acc_j += dw_part[k, j]
        w[j] -= step * acc_j
    total_loss = 0.0
    total_db = 0.0
    total_correct = 0.0
    for k in range(nblocks):
        total_loss += stats[k, 0]
        total_db += stats[k, 1]
        total_correct += stats[k, 2]
    b[0] -= lr * total_db / m
    return total_loss / m, total_correct


@njit(cache=True)
def bias_activation(Z, b, act):
    """Z <- act(Z + b) in place; Z (n, m) C-contiguous, b (n, 1)."""
    n, m = Z.shape
    for r in range(n):
        br = b[r, 0]
        row = Z[r]
        if act == ACT_NONE:
            for c in range(m):
                row[c] += br
        elif act == ACT_SIGMOID:
            for c in range(m):
                row[c] = _sigmoid(row[c] + br)
        elif act == ACT_RELU:
            for c in range(m):
                v = row[c] + br
                row[c] = 0.0 if v <= 0 else v  # NaN stays NaN, as np.maximum(v, 0) keeps it
        else:
            for c in range(m):
                row[c] = math.tanh(row[c] + br)
    return Z


@njit(cache=True)
def bias_activation_rows(Zt, b, act):
    """Zt <- act(Zt + b) in place for example-contiguous activations: Zt (m, n) C-contiguous
    is the transpose of Z (n, m) in Fortran order, and b (n,) is added to every row."""
    m, n = Zt.shape
    for c in range(m):
        row = Zt[c]
        if act == ACT_NONE:
            for r in range(n):
                row[r] += b[r]
        elif act == ACT_SIGMOID:
            for r in range(n):
                row[r] = _sigmoid(row[r] + b[r])
        elif act == ACT_RELU:
            for r in range(n):
                v = row[r] + b[r]
                row[r] = 0.0 if v <= 0 else v  # NaN stays NaN, as np.maximum(v, 0) keeps it
        elif act == ACT_TANH:
            for r in range(n):
                row[r] = math.tanh(row[r] + b[r])
        else:
            for r in range(n):
                row[r] += b[r]
            _softmax_row(row)
    return Zt


@njit(cache=True, inline="always")
def _row_max(z):
    """max(z) as NumPy's max: NaN if any element is NaN."""
    top = z[0]
    for k in range(1, z.shape[0]):
        v = z[k]
        if v > top or v != v:
            top = v
            if v != v:
                break
    return top


@njit(cache=True, inline="always")
def _row_argmax(z):
    """argmax(z) as NumPy's: the first maximum, or the first NaN."""
    best = 0
    top = z[0]
    if top != top:
        return 0
    for k in range(1, z.shape[0]):
        v = z[k]
        if v != v:
            return k
        if v > top:
            top = v
            best = k
    return best


@njit(cache=True)
def _softmax_row(z):
    """z <- softmax(z) in place, in float64 with the max subtracted first."""
    top = np.float64(_row_max(z))
    total = 0.0
    for k in range(z.shape[0]):
        total += math.exp(np.float64(z[k]) - top)
    for k in range(z.shape[0]):
        z[k] = math.exp(np.float64(z[k]) - top) / total


@njit(cache=True)
def softmax_rows(Zt):
    """Each row of Zt (m, K), C-contiguous, replaced by its softmax."""
    for i in range(Zt.shape[0]):
        _softmax_row(Zt[i])
    return Zt


@njit(cache=True)
def softmax_xent_rows(Zt, y, dZt, inv_m):
    """Cross-entropy of softmax over the rows of Zt (m, K) against class indices y (m,).

    dZt (m, K) <- (softmax(z) - onehot(y)) * inv_m, one pass over the logits, each row
    with its max subtracted first. Returns (sum over rows of inv_m * (logsumexp(z) - z_y),
    number of rows whose argmax is y).
    """
    m, K = Zt.shape
    loss = 0.0
    correct = 0
    for i in range(m):
        z = Zt[i]
        d = dZt[i]
        label = int(y[i])
        top = np.float64(_row_max(z))
        if _row_argmax(z) == label:
            correct += 1
        total = 0.0
        for k in range(K):
            total += math.exp(np.float64(z[k]) - top)
        loss += (math.log(total) - (np.float64(z[label]) - top)) * inv_m
        for k in range(K):  # exp again rather than store it rounded to the compute dtype
            p = math.exp(np.float64(z[k]) - top) / total
            d[k] = (p - (1.0 if k == label else 0.0)) * inv_m
    return loss, correct


@njit(cache=True)
def activation_backward(dA, A, act):
    """dA <- dA * act'(Z) in place, written with the output A; both (n, m) C-contiguous."""
    n, m = dA.shape
    for r in range(n):
        d = dA[r]
        a = A[r]
        if act == ACT_SIGMOID:
            for c in range(m):
                d[c] *= a[c] * (1 - a[c])
        elif act == ACT_RELU:
            for c in range(m):  # dA * (A > 0), as NumPy: inf * 0 and NaN * 0 give NaN
                d[c] *= 1.0 if a[c] > 0 else 0.0
        elif act == ACT_TANH:
            for c in range(m):
                d[c] *= 1 - a[c] * a[c]
    return dA


@njit(cache=True)
def sigmoid_inplace(Z):
    """Z <- sigmoid(Z) in place (any shape, C-contiguous)."""
    flat = Z.ravel()
    for k in range(flat.size):
        flat[k] = _sigmoid(flat[k])
    return Z


@njit(cache=True)
def bce_from_logits(Z, Y, dZ):
    """Loss (float64 mean), correct count, and dZ <- (sigmoid(Z) - Y) / m; all (1, m)."""
    m = Z.shape[1]
    inv_m = 1.0 / m
    loss = 0.0
    correct = 0
    z_row = Z[0]
    y_row = Y[0]
    d_row = dZ[0]
    for c in range(m):
        term, d, ok = _example_terms(np.float64(z_row[c]), np.float64(y_row[c]), 0)
        loss += term * inv_m
        correct += ok
        d_row[c] = d * inv_m
    return loss, correct


@njit(cache=True)
def sgd_update(p, g, lr):
    """p <- p - lr * g in place (same shape, C-contiguous)."""
    pf = p.ravel()
    gf = g.ravel()
    for k in range(pf.size):
        pf[k] -= lr * gf[k]


# ------------------------------------------------------------------ weighted losses
@njit(cache=True)
def bce_from_logits_weighted(Z, Y, W, dZ):
    """``bce_from_logits`` with a weight per example: loss sum(w l) / m, dZ = w (s - y) / m."""
    m = Z.shape[1]
    inv_m = 1.0 / m
    loss = 0.0
    correct = 0
    z_row = Z[0]
    y_row = Y[0]
    w_row = W[0]
    d_row = dZ[0]
    for c in range(m):
        w = np.float64(w_row[c])
        term, d, ok = _example_terms(np.float64(z_row[c]), np.float64(y_row[c]), 0)
        loss += term * w * inv_m
        correct += ok
        d_row[c] = d * w * inv_m
    return loss, correct


@njit(cache=True)
def softmax_xent_rows_weighted(Zt, y, w, dZt, inv_m):
    """``softmax_xent_rows`` with a weight per row (example): loss and dZ row i scaled by w[i]."""
    m, K = Zt.shape
    loss = 0.0
    correct = 0
    for i in range(m):
        z = Zt[i]
        d = dZt[i]
        label = int(y[i])
        wi = np.float64(w[i]) * inv_m
        top = np.float64(_row_max(z))
        if _row_argmax(z) == label:
            correct += 1
        total = 0.0
        for k in range(K):
            total += math.exp(np.float64(z[k]) - top)
        loss += (math.log(total) - (np.float64(z[label]) - top)) * wi
        for k in range(K):
            p = math.exp(np.float64(z[k]) - top) / total
            d[k] = (p - (1.0 if k == label else 0.0)) * wi
    return loss, correct


# ------------------------------------------------------------------ optimizer steps
# One pass over (parameter, gradient, state), all 1-D views of C-contiguous arrays of one
# dtype; ``hp`` holds the scalars in that dtype, so float32 parameters are updated in
# float32 arithmetic, operation for operation as the NumPy reference (nnx.backends.base).
# NumPy's error model: a division by zero gives inf/NaN as in NumPy (not an exception),
# and without the per-division check LLVM vectorises the loops (4x faster for Adam).
@njit(cache=True, error_model="numpy")
def sgd_step(p, g, buf, hp, momentum_on, nesterov, first):
    """torch.optim.SGD; hp = (-lr, decay, momentum, 1 - dampening)."""
    neg_lr, decay, momentum, damp1 = hp[0], hp[1], hp[2], hp[3]
    decay_on = decay != 0
    for k in range(p.size):
        pk = p[k]
        d = g[k]
        if decay_on:
            d = d + decay * pk
        if momentum_on:
            b = d if first else buf[k] * momentum + damp1 * d
            buf[k] = b
            d = d + momentum * b if nesterov else b
        p[k] = pk + neg_lr * d


@njit(cache=True, error_model="numpy")
def rmsprop_step(p, g, sq, ga, buf, hp, centered, momentum_on):
    """torch.optim.RMSprop; hp = (-lr, decay, alpha, 1 - alpha, eps, momentum, lerp weight
    1 - alpha, 1 - weight); ``ga`` only read when centered, ``buf`` with momentum."""
    neg_lr, decay, alpha, one_minus_alpha, eps, momentum = hp[0], hp[1], hp[2], hp[3], hp[4], hp[5]
    weight, rest = hp[6], hp[7]
    small = abs(np.float64(weight)) < 0.5
    decay_on = decay != 0
    for k in range(p.size):
        pk = p[k]
        gk = g[k]
        if decay_on:
            gk = gk + decay * pk
        s = sq[k] * alpha + one_minus_alpha * gk * gk
        sq[k] = s
        if centered:
            a = ga[k]
            a = a + weight * (gk - a) if small else gk - (gk - a) * rest
            ga[k] = a
            avg = np.sqrt(s + -a * a) + eps
        else:
            avg = np.sqrt(s) + eps
        if momentum_on:
            b = buf[k] * momentum + gk / avg
            buf[k] = b
            p[k] = pk + neg_lr * b
        else:
            p[k] = pk + neg_lr * gk / avg


@njit(cache=True, error_model="numpy")
def adam_step(p, g, m, v, hp, shrink_on):
    """torch.optim.Adam/AdamW; hp = (decay, shrink, lerp weight 1 - beta1, beta1, beta2,
    1 - beta2, sqrt(1 - beta2^t), eps, -lr / (1 - beta1^t))."""
    decay, shrink, weight, rest, beta2, one_minus_beta2 = hp[0], hp[1], hp[2], hp[3], hp[4], hp[5]
    bc2_sqrt, eps, neg_step = hp[6], hp[7], hp[8]
    small = abs(np.float64(weight)) < 0.5
    decay_on = decay != 0
    for k in range(p.size):
        pk = p[k]
        gk = g[k]
        if decay_on:
            gk = gk + decay * pk
        if shrink_on:
            pk = pk * shrink
        a = m[k]
        a = a + weight * (gk - a) if small else gk - (gk - a) * rest
        m[k] = a
        s = v[k] * beta2 + one_minus_beta2 * gk * gk
        v[k] = s
        denom = np.sqrt(s) / bc2_sqrt + eps
        p[k] = pk + neg_step * a / denom


# ------------------------------------------------------------------------- dropout
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


@njit(cache=True, inline="always")
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 (see nnx.backends.philox); every word a uint64 holding 32 bits."""
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _LOW32
            k1 = (k1 + _W1) & _LOW32
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0 = p0 >> _SHIFT32
        lo0 = p0 & _LOW32
        hi1 = p1 >> _SHIFT32
        lo1 = p1 & _LOW32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@njit(cache=True)
def dropout_flat(src, dst, words, scale):
    """dst[e] <- src[e] * (scale if kept else 0) over 1-D arrays in element order e (an
    example-contiguous activation's memory). words = (key0, key1, batch, epoch, layer
    word, threshold) as uint64; scale is a 1-element array in the activations' dtype."""
    k0, k1, batch, epoch, layer_word, thresh = words[0], words[1], words[2], words[3], words[4], words[5]
    kept = scale[0]
    dropped = kept * 0
    total = src.size
    for q in range((total + 3) // 4):
        qq = np.uint64(q)
        r = philox4x32(qq & _LOW32, batch, epoch, layer_word | (qq >> _SHIFT32), k0, k1)
        base = 4 * q
        for lane in range(min(4, total - base)):
            e = base + lane
            dst[e] = src[e] * (kept if r[lane] >= thresh else dropped)


def _streaming_sum(words, nblocks, partial):
    """Wrapping int64 sum of ``words`` (m, k) int64, a fixed block of rows per thread.

    A pure read of memory: integer adds are far cheaper than the load, so this runs at
    the machine's read bandwidth for whatever bytes ``words`` views (the benchmark's
    reference point; pass X's own memory viewed as int64).
    """
    m = words.shape[0]
    for blk in prange(nblocks):
        lo = blk * m // nblocks
        hi = (blk + 1) * m // nblocks
        block = words[lo:hi]
        s = np.int64(0)
        for i in range(hi - lo):
            row = block[i]
            for j in range(row.shape[0]):
                s += row[j]
        partial[blk] = s
    total = np.int64(0)
    for k in range(nblocks):
        total += partial[k]
    return total


@njit(cache=True)
def rows_to_float(src, dst):
    """dst (c, n) <- src (c, n) converted to dst's float type (uint8 pixels, unscaled).

    Single-threaded on purpose: it runs between two BLAS products, whose worker threads
    are still spinning (see the Numba backend's module notes)."""
    for i in range(src.shape[0]):
        s = src[i]
        d = dst[i]
        for j in range(s.shape[0]):
            d[j] = s[j]


def _serial_twin(func):
    """A copy of ``func`` named ``<name>_serial``: Numba's on-disk cache files are named
    by the function's qualified name and line, and their index does not tell a parallel
    build from a serial one, so the serial build gets its own name to be cached apart."""
    twin = types.FunctionType(func.__code__, func.__globals__, func.__name__ + "_serial", func.__defaults__)
    twin.__qualname__ = func.__qualname__ + "_serial"
    twin.__doc__ = func.__doc__
    return twin


def _builds(func):
    """(parallel build, serial build) of a kernel written with prange: the serial one runs
    prange as range. Both split the work into the same blocks and reduce them in the same
    order, so they give bitwise the same results. The serial build runs calls too small to
    pay for waking threads (see the Numba backend's thread plan) and in a process forked
    after GNU OpenMP started its threads, where a parallel launch would abort."""
    return njit(parallel=True, cache=True)(func), njit(cache=True)(_serial_twin(func))


logreg_epoch, logreg_epoch_serial = _builds(_logreg_epoch)
streaming_sum, streaming_sum_serial = _builds(_streaming_sum)


def _logreg_loss_grad(Xt, w, b, y, scale, loss_code, dw_part, tile_acc, stats, dw):
    """Logistic regression's loss and gradient in one pass over X, without the update.

    The pass of ``_logreg_epoch`` (same blocks, same per-block sums, same fixed-order
    reduction), minus the step: dw (n,) float64 <- the gradient of the mean loss with
    respect to w (the 1/255 of pixels included). Returns (mean loss, number correct,
    gradient with respect to b).
    """
    m, n = Xt.shape
    nblocks = dw_part.shape[0]
    for blk in prange(nblocks):
        lo = blk * m // nblocks
        hi = (blk + 1) * m // nblocks
        loss, dbsum, correct = _logreg_block(
            Xt[lo:hi], y[lo:hi], w, b, scale, loss_code, dw_part[blk], tile_acc[blk]
        )
        stats[blk, 0] = loss
        stats[blk, 1] = dbsum
        stats[blk, 2] = correct
    factor = scale / m
    for j in prange(n):
        acc_j = 0.0
        for k in range(nblocks):
            acc_j += dw_part[k, j]
        dw[j] = factor * acc_j
    total_loss = 0.0
    total_db = 0.0
    total_correct = 0.0
    for k in range(nblocks):
        total_loss += stats[k, 0]
        total_db += stats[k, 1]
        total_correct += stats[k, 2]
    return total_loss / m, total_correct, total_db / m


logreg_loss_grad, logreg_loss_grad_serial = _builds(_logreg_loss_grad)


# ----------------------------------------------- softmax regression: one pass over X
# Like the logistic-regression epoch, examples go 8 at a time, but each tile now meets K
# classes. The tile is first copied into a scratch block whose rows are padded apart
# (``pack``): X's rows, W's and the partial sums' are n elements apart, and at n = 12288
# float32 (48 KB, a multiple of 4 KB) every row's element j falls in the same L1 set, so
# the sweeps below missed L1 on rows they had just loaded (one core, rows in L2: 59 -> 79
# GFLOP/s for the dot products, 47 -> 67 for the dW sweep once the rows were padded apart).
# The logits take 4 examples x 5 classes per sweep (20 running sums, 9 loads per 20
# multiply-adds, against 10 per 16 for 8 examples x 2 classes: 79 -> 98-114 GFLOP/s), the
# dW sweep 8 examples x 3 classes (11 loads and 3 stores per 24, against 10 and 2 per 16).
# Remaining classes go 2 and 1 at a time.
@njit(cache=True, fastmath=_FAST)
def _dot8x2(Xb, i, w0, w1, zero):
    """The dot products of w0 and of w1 with the 8 examples Xb[i:i+8]: (8 for w0, 8 for w1)."""
    x0, x1, x2, x3 = Xb[i], Xb[i + 1], Xb[i + 2], Xb[i + 3]
    x4, x5, x6, x7 = Xb[i + 4], Xb[i + 5], Xb[i + 6], Xb[i + 7]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = zero
    for j in range(w0.shape[0]):
        a, c = w0[j], w1[j]
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        v4, v5, v6, v7 = x4[j], x5[j], x6[j], x7[j]
        s0 += a * v0
        s1 += a * v1
        s2 += a * v2
        s3 += a * v3
        s4 += a * v4
        s5 += a * v5
        s6 += a * v6
        s7 += a * v7
        t0 += c * v0
        t1 += c * v1
        t2 += c * v2
        t3 += c * v3
        t4 += c * v4
        t5 += c * v5
        t6 += c * v6
        t7 += c * v7
    return (s0, s1, s2, s3, s4, s5, s6, s7, t0, t1, t2, t3, t4, t5, t6, t7)


@njit(cache=True, fastmath=_FAST)
def _dw8x2(Xb, i, e, f, tacc0, tacc1):
    """tacc0 += sum_k e[k] Xb[i+k] and tacc1 += sum_k f[k] Xb[i+k] over the 8 examples at
    i, in one sweep over the rows."""
    x0, x1, x2, x3 = Xb[i], Xb[i + 1], Xb[i + 2], Xb[i + 3]
    x4, x5, x6, x7 = Xb[i + 4], Xb[i + 5], Xb[i + 6], Xb[i + 7]
    e0, e1, e2, e3, e4, e5, e6, e7 = e
    f0, f1, f2, f3, f4, f5, f6, f7 = f
    for j in range(tacc0.shape[0]):
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        v4, v5, v6, v7 = x4[j], x5[j], x6[j], x7[j]
        tacc0[j] += e0 * v0 + e1 * v1 + e2 * v2 + e3 * v3 + e4 * v4 + e5 * v5 + e6 * v6 + e7 * v7
        tacc1[j] += f0 * v0 + f1 * v1 + f2 * v2 + f3 * v3 + f4 * v4 + f5 * v5 + f6 * v6 + f7 * v7


@njit(cache=True, fastmath=_FAST)
def _dot4x5(Xb, i, W, k, zero):
    """The dot products of W[k:k+5] with the 4 examples Xb[i:i+4], example-major: 5 for
    Xb[i], then 5 for Xb[i+1], ... (20 running sums: each load serves 4 or 5 of them)."""
    x0, x1, x2, x3 = Xb[i], Xb[i + 1], Xb[i + 2], Xb[i + 3]
    w0, w1, w2, w3, w4 = W[k], W[k + 1], W[k + 2], W[k + 3], W[k + 4]
    a0 = a1 = a2 = a3 = a4 = zero
    b0 = b1 = b2 = b3 = b4 = zero
    c0 = c1 = c2 = c3 = c4 = zero
    d0 = d1 = d2 = d3 = d4 = zero
    for j in range(w0.shape[0]):
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        u0, u1, u2, u3, u4 = w0[j], w1[j], w2[j], w3[j], w4[j]
        a0 += u0 * v0
        a1 += u1 * v0
        a2 += u2 * v0
        a3 += u3 * v0
        a4 += u4 * v0
        b0 += u0 * v1
        b1 += u1 * v1
        b2 += u2 * v1
        b3 += u3 * v1
        b4 += u4 * v1
        c0 += u0 * v2
        c1 += u1 * v2
        c2 += u2 * v2
        c3 += u3 * v2
        c4 += u4 * v2
        d0 += u0 * v3
        d1 += u1 * v3
        d2 += u2 * v3
        d3 += u3 * v3
        d4 += u4 * v3
    return (a0, a1, a2, a3, a4, b0, b1, b2, b3, b4, c0, c1, c2, c3, c4, d0, d1, d2, d3, d4)


@njit(cache=True, fastmath=_FAST)
def _dot4x5_pack(Xb, i, W, k, zero, pack, h):
    """``_dot4x5`` over X's own rows Xb[i:i+4] (their n elements), copying them into
    pack[h:h+4] as they are read: the copy rides on the sweep that reads X from memory."""
    x0, x1, x2, x3 = Xb[i], Xb[i + 1], Xb[i + 2], Xb[i + 3]
    p0, p1, p2, p3 = pack[h], pack[h + 1], pack[h + 2], pack[h + 3]
    w0, w1, w2, w3, w4 = W[k], W[k + 1], W[k + 2], W[k + 3], W[k + 4]
    a0 = a1 = a2 = a3 = a4 = zero
    b0 = b1 = b2 = b3 = b4 = zero
    c0 = c1 = c2 = c3 = c4 = zero
    d0 = d1 = d2 = d3 = d4 = zero
    for j in range(x0.shape[0]):
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        p0[j], p1[j], p2[j], p3[j] = v0, v1, v2, v3
        u0, u1, u2, u3, u4 = w0[j], w1[j], w2[j], w3[j], w4[j]
        a0 += u0 * v0
        a1 += u1 * v0
        a2 += u2 * v0
        a3 += u3 * v0
        a4 += u4 * v0
        b0 += u0 * v1
        b1 += u1 * v1
        b2 += u2 * v1
        b3 += u3 * v1
        b4 += u4 * v1
        c0 += u0 * v2
        c1 += u1 * v2
        c2 += u2 * v2
        c3 += u3 * v2
        c4 += u4 * v2
        d0 += u0 * v3
        d1 += u1 * v3
        d2 += u2 * v3
        d3 += u3 * v3
        d4 += u4 * v3
    return (a0, a1, a2, a3, a4, b0, b1, b2, b3, b4, c0, c1, c2, c3, c4, d0, d1, d2, d3, d4)


@njit(cache=True, fastmath=_FAST)
def _dw8x3(Xb, i, e, f, h, tacc0, tacc1, tacc2):
    """tacc0 += sum_k e[k] Xb[i+k], tacc1 the same with f, tacc2 with h, over the 8
    examples at i, in one sweep over the rows."""
    x0, x1, x2, x3 = Xb[i], Xb[i + 1], Xb[i + 2], Xb[i + 3]
    x4, x5, x6, x7 = Xb[i + 4], Xb[i + 5], Xb[i + 6], Xb[i + 7]
    e0, e1, e2, e3, e4, e5, e6, e7 = e
    f0, f1, f2, f3, f4, f5, f6, f7 = f
    h0, h1, h2, h3, h4, h5, h6, h7 = h
    for j in range(tacc0.shape[0]):
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        v4, v5, v6, v7 = x4[j], x5[j], x6[j], x7[j]
        tacc0[j] += e0 * v0 + e1 * v1 + e2 * v2 + e3 * v3 + e4 * v4 + e5 * v5 + e6 * v6 + e7 * v7
        tacc1[j] += f0 * v0 + f1 * v1 + f2 * v2 + f3 * v3 + f4 * v4 + f5 * v5 + f6 * v6 + f7 * v7
        tacc2[j] += h0 * v0 + h1 * v1 + h2 * v2 + h3 * v3 + h4 * v4 + h5 * v5 + h6 * v6 + h7 * v7


@njit(cache=True, fastmath=_FAST)
def _dot1(x, w, zero):
    s = zero
    for j in range(x.shape[0]):
        s += w[j] * x[j]
    return s


@njit(cache=True, fastmath=_FAST)
def _axpy(x, a, tacc):
    for j in range(x.shape[0]):
        tacc[j] += a * x[j]


@njit(cache=True)
def _softmax_logits(Xb, i, count, W, b, scale, z, k0):
    """z[e, k] <- scale * (W[k] . Xb[i + e]) + b[k] for e < count (8, or 1), rounded to the
    compute dtype before b is added in it, as NumPy computes W X + b (kept in float64).
    From pixels (scale != 1), a logit whose sum of W * pixel overflowed is redone as
    W . (pixel * scale), as NumPy computes it. A tile of 8 may come from the padded
    scratch block (rows as long as W's, padded with zeros); a single example is a row
    of X itself (its dot products run over its own n elements). Classes below k0 hold
    scale * (W[k] . x) already (``_softmax_block``'s first sweep)."""
    K = W.shape[0]
    cast = W.dtype.type
    zero = cast(0)
    if count == 8:
        k = k0
        while k + 5 <= K:
            for h in range(0, 8, 4):
                q = _dot4x5(Xb, i + h, W, k, zero)
                for e in range(4):
                    for c in range(5):
                        z[h + e, k + c] = np.float64(q[5 * e + c]) * scale
            k += 5
        while k + 1 < K:
            s = _dot8x2(Xb, i, W[k], W[k + 1], zero)
            for e in range(8):
                z[e, k] = np.float64(s[e]) * scale
                z[e, k + 1] = np.float64(s[8 + e]) * scale
            k += 2
        if k < K:
            s1 = _dot8(Xb, i, W[k], zero)
            for e in range(8):
                z[e, k] = np.float64(s1[e]) * scale
    else:
        for k in range(K):
            z[0, k] = np.float64(_dot1(Xb[i], W[k], zero)) * scale
    for e in range(count):
        for k in range(K):
            if scale != 1.0 and not np.isfinite(z[e, k]):
                z[e, k] = np.float64(_dot_scaled(Xb[i + e], W[k], cast(scale)))
            z[e, k] = np.float64(cast(z[e, k]) + b[k])  # in the compute dtype, as NumPy's W X + b


@njit(cache=True, inline="always")
def _column8(g, k, cast):
    """Column k of the 8 examples' dz, g[0:8, k], rounded by ``cast``, as a tuple."""
    return (cast(g[0, k]), cast(g[1, k]), cast(g[2, k]), cast(g[3, k]),
            cast(g[4, k]), cast(g[5, k]), cast(g[6, k]), cast(g[7, k]))  # fmt: skip


@njit(cache=True)
def _softmax_dw(Xb, i, count, g, tacc):
    """tacc[k] += sum_e g[e, k] Xb[i + e] for e < count (8, or 1); g rounded to tacc's dtype."""
    K = tacc.shape[0]
    cast = tacc.dtype.type
    if count == 8:
        k = 0
        while k + 3 <= K:
            e, f, h = _column8(g, k, cast), _column8(g, k + 1, cast), _column8(g, k + 2, cast)
            _dw8x3(Xb, i, e, f, h, tacc[k], tacc[k + 1], tacc[k + 2])
            k += 3
        if k + 1 < K:
            _dw8x2(Xb, i, _column8(g, k, cast), _column8(g, k + 1, cast), tacc[k], tacc[k + 1])
            k += 2
        if k < K:
            _dw8(Xb, i, _column8(g, k, cast), tacc[k])
    else:
        for k in range(K):
            _axpy(Xb[i], cast(g[0, k]), tacc[k])


@njit(cache=True)
def _softmax_block(Xb, yb, W, b, scale, inv_m, acc, tacc, db, pack):
    """The fused pass over one block of examples Xb (c, n) for W (K, s), s >= n (rows
    padded with zeros past n): acc (K, n) float64 <- sum of dz / m * x (pixels unscaled),
    db (K,) <- sum of dz / m; tacc (K, s) and pack (8, s) scratch, pack's columns past n
    zero. Per tile of 8 examples: the 8 rows copied into pack (X read from memory once;
    with K >= 5 by the sweep for classes 0-4, which reads them), the 8 x K logits,
    softmax cross-entropy in float64 (``softmax_xent_rows``), then dW from the packed
    rows. dW sums stay in the compute dtype for at most 64 examples, then go to float64.
    Returns (sum of loss / m, correct)."""
    cnt, n = Xb.shape
    K = W.shape[0]
    acc[:] = 0.0
    tacc[:] = 0
    db[:] = 0.0
    z = np.empty((8, K), dtype=np.float64)
    g = np.empty((8, K), dtype=np.float64)
    loss = 0.0
    correct = 0
    i = 0
    tiles = 0
    zero = W.dtype.type(0)
    while i < cnt:
        k0 = 0
        if cnt - i >= 8:
            if K >= 5:  # classes 0-4 from X's rows, copied into pack on the way
                for h in range(0, 8, 4):
                    q = _dot4x5_pack(Xb, i + h, W, 0, zero, pack, h)
                    for e in range(4):
                        for c in range(5):
                            z[h + e, c] = np.float64(q[5 * e + c]) * scale
                k0 = 5
            else:
                for e in range(8):
                    src = Xb[i + e]
                    dst = pack[e]
                    for j in range(n):
                        dst[j] = src[j]
            count = 8
            rows, at = pack, 0
        else:
            count = 1
            rows, at = Xb, i
        _softmax_logits(rows, at, count, W, b, scale, z, k0)
        part_loss, part_correct = softmax_xent_rows(z[:count], yb[i : i + count], g[:count], inv_m)
        loss += part_loss
        correct += part_correct
        for e in range(count):
            for k in range(K):
                db[k] += g[e, k]
        _softmax_dw(rows, at, count, g, tacc)
        i += count
        tiles += 1
        if tiles % 8 == 0:  # flush the compute-dtype partial sums every 8 tiles
            for k in range(K):
                _flush(acc[k], tacc[k])
    for k in range(K):
        _flush(acc[k], tacc[k])
    return loss, correct


def _softmax_loss_grad(Xt, W, b, y, scale, inv_m, dw_part, tile_acc, db_part, stats, dW, db, pack):
    """Softmax regression's loss and gradient in one pass over X, without the update.

    Xt (m, n) C-contiguous (example-contiguous X), float32/float64/uint8; the logits of
    example i are scale * (W[:, :n] Xt[i]) + b; W (K, s) and b (K,) in the compute dtype,
    W's rows padded with zeros from n to s (``numba_backend.padded_row``); y (m,) class
    numbers. Scratch, one row per block (nblocks = threads): dw_part (nblocks, K, n)
    float64, tile_acc (nblocks, K, s) compute dtype, db_part (nblocks, K) and stats
    (nblocks, 2) float64, pack (nblocks, 8, s) in X's dtype, zero past column n. dW (K, n)
    and db (K,) float64 <- the gradient of the mean loss (the 1/255 of pixels included):
    the blocks' sums added in a fixed order, bitwise repeatable for a given thread count.
    Returns (mean loss, number correct).
    """
    m, n = Xt.shape
    K = W.shape[0]
    nblocks = dw_part.shape[0]
    for blk in prange(nblocks):
        lo = blk * m // nblocks
        hi = (blk + 1) * m // nblocks
        loss, correct = _softmax_block(
            Xt[lo:hi], y[lo:hi], W, b, scale, inv_m, dw_part[blk], tile_acc[blk], db_part[blk], pack[blk]
        )
        stats[blk, 0] = loss
        stats[blk, 1] = correct
    for j in prange(n):
        for k in range(K):
            s = 0.0
            for blk in range(nblocks):
                s += dw_part[blk, k, j]
            dW[k, j] = scale * s
    for k in range(K):
        s = 0.0
        for blk in range(nblocks):
            s += db_part[blk, k]
        db[k] = s
    total_loss = 0.0
    total_correct = 0.0
    for blk in range(nblocks):
        total_loss += stats[blk, 0]
        total_correct += stats[blk, 1]
    return total_loss, total_correct


softmax_loss_grad, softmax_loss_grad_serial = _builds(_softmax_loss_grad)
