"""Philox4x32-10, the counter-based generator behind nnx's dropout masks, through ``xp``.

Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), as in Random123:
a 128-bit counter (four 32-bit words) and a 64-bit key (two words) give four 32-bit
outputs after ten rounds. Every output is a pure function of (counter, key), so every
backend computes the same mask from the same numbers wherever and in whatever order it
works: this NumPy/CuPy version, the Numba kernel (numba_kernels.philox4x32) and the CUDA
kernel (kernels/nnx_kernels.cu, nnx_philox) implement the same rounds.

The dropout mask of one activation array (n units, m examples of a batch) keeps element
(unit i, example j), whose layout-free index is e = j * n + i, when output word e % 4 of

    philox4x32_10(counter = (q mod 2^32, batch, epoch, layer * 2^16 + q // 2^32),
                  key = (seed mod 2^32, (seed // 2^32) mod 2^32)),   q = e // 4,

is at least ``threshold(rate)`` = floor(rate * 2^32); kept elements are scaled by
1 / (1 - rate) (inverted dropout). ``layer`` is the index of the Linear block whose output
is dropped, ``epoch`` the training clock (1, 2, ...; it continues over warm starts and
resumes) and ``batch`` the mini-batch of the epoch (0 for full batch).
"""

from __future__ import annotations

from typing import Any, NamedTuple

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
ROUNDS = 10


class DropoutKey(NamedTuple):
    """Everything a dropout mask depends on besides the element: the counter words and key."""

    seed: int  # 64-bit key
    epoch: int
    batch: int
    layer: int

    def words(self) -> tuple[int, int, int, int, int]:
        """(key0, key1, batch, epoch, layer * 2^16) as uint32-range ints."""
        return (
            self.seed & MASK32,
            (self.seed >> 32) & MASK32,
            self.batch & MASK32,
            self.epoch & MASK32,
            (self.layer & 0xFFFF) << 16,
        )


def threshold(rate: float) -> int:
    """The uint32 below which an element is dropped: floor(rate * 2^32) (rate in [0, 1))."""
    return min(int(float(rate) * 4294967296.0), MASK32)


def philox4x32(xp: Any, c0: Any, c1: Any, c2: Any, c3: Any, k0: int, k1: int) -> tuple[Any, Any, Any, Any]:
    """Philox4x32-10 of counters given as uint32 arrays (broadcastable) and a scalar key."""
    u32, u64 = xp.uint32, xp.uint64
    c0, c1, c2, c3 = (xp.asarray(c, dtype=u32) for c in (c0, c1, c2, c3))
    m0, m1 = u64(M0), u64(M1)
    for r in range(ROUNDS):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        p0 = c0.astype(u64) * m0
        p1 = c2.astype(u64) * m1
        hi0, lo0 = (p0 >> u64(32)).astype(u32), p0.astype(u32)
        hi1, lo1 = (p1 >> u64(32)).astype(u32), p1.astype(u32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ u32(k0), lo1, hi0 ^ c3 ^ u32(k1), lo0
    return c0, c1, c2, c3


def keep_mask(xp: Any, n: int, m: int, rate: float, key: DropoutKey, first_column: int = 0) -> Any:
    """The (n, m) boolean keep-mask of one activation array (see the module docstring).

    ``first_column`` > 0 gives columns first_column.. first_column + m - 1 of the mask of a
    wider array (a column chunk of the whole batch): exactly those columns of it."""
    first = first_column * n  # layout-free index of the first element
    total = n * m
    q = xp.arange(first // 4, (first + total + 3) // 4, dtype=xp.uint64)
    k0, k1, batch, epoch, layer_word = key.words()
    lo = (q & xp.uint64(MASK32)).astype(xp.uint32)
    hi = (q >> xp.uint64(32)).astype(xp.uint32) | xp.uint32(layer_word)
    words = philox4x32(xp, lo, xp.uint32(batch), xp.uint32(epoch), hi, k0, k1)
    skip = first % 4
    bits = xp.stack(words, axis=1).reshape(-1)[skip : skip + total]  # element e = 4 q + lane
    return (bits >= xp.uint32(threshold(rate))).reshape(m, n).T
