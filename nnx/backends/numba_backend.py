"""The Numba backend: NumPy arrays, with the hot ops replaced by fused JIT kernels.

* Logistic regression runs one parallel kernel per epoch that reads X once (float32,
  float64, or uint8 pixels with the 1/255 folded in: 1 byte read per pixel); so does
  softmax regression up to 16 classes, and up to 32 in cache-sized chunks through BLAS.
* For deeper nets the big products stay in BLAS (W1 X and dZ1 X^T); everything between
  them is fused elementwise kernels. Those kernels are single-threaded on purpose: they
  touch only (n_hidden, m) arrays, and OpenBLAS worker threads keep spinning for ~0.1 s
  after each product, so a parallel kernel right after a BLAS call would fight them for
  the cores.

Safe to share: scratch memory belongs to each call, never to the backend, so several
threads may train separate models on one backend at once. Two hazards of Numba's
threading layers are handled here: the ``workqueue`` layer must not be entered from two
threads at once (parallel kernels are then serialised by a lock), and GNU OpenMP (the
``omp`` layer of the PyPI wheels) aborts a process forked after its threads started (such
a child runs serial builds of the same kernels, bitwise equal to the parallel ones).

Threads only where they pay (``ThreadPlan``): a fused kernel runs its serial build when a
call is too small to pay for waking threads, when the process's thread budget (Numba's
count, threadpoolctl's OpenMP limit, OMP_NUM_THREADS as joblib's loky workers get it) is
one thread, and when, beside busy processes, the serial build measures faster.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import philox
from .base import MAX_FUSED_CLASSES, Backend
from .codes import ACTIVATION_CODES, LOSS_CODES, PIXEL_SCALE

# Examples per chunk of the softmax-regression epoch: a float chunk (32 MB: ~680 examples
# of 12288 float32 features) stays in the last-level cache between its two BLAS products,
# and is large enough for those products to run near BLAS speed (2 MB chunks ran at half
# of it on a 2-core machine: too many small products).
_CHUNK_BYTES = 1 << 25
# Up to this many classes softmax regression takes the tiled one-pass kernel
# (``numba_kernels.softmax_loss_grad``); above it the chunks through BLAS, whose products
# gain more from K than the kernel's sweeps do (measured on a 2-core VM at m = 4096 with
# its earlier two-class sweeps: the kernel 1.4-2.6x faster for K = 3..16, level or slower
# from K = 20).
_TILED_SOFTMAX_CLASSES = 16
# The tiled kernel's per-thread partial sums (threads x K x n, float64 and compute dtype)
# and tile copies stay under this; past it (many threads, very wide X) the chunked path is used.
_TILED_SCRATCH_BYTES = 1 << 28
# A fused-kernel call doing fewer multiply-adds (examples x features x classes) than this
# runs the kernel's serial build: waking the threads and meeting at the barrier cost more
# than splitting such a call saves (~15-30 us on a quiet 2-core VM, and a whole time
# slice, ~10 ms, when a thread is descheduled on a busy one). Measured with
# benchmarks/thread_threshold.py (benchmarks/README.md, "Threads only where they pay"):
# the serial and parallel builds break even at 0.1-0.5 M multiply-adds on a quiet machine.
SERIAL_WORK = 1 << 18
log = logging.getLogger("nnx")


def padded_row(n: int, *itemsizes: int) -> int:
    """The smallest row length s >= n at which 8 consecutive rows of each item size start
    in 8 different 64-byte lines modulo 4 KB (8 different L1 sets). Rows n elements apart
    where n times the item size is (near) a multiple of 4 KB (n = 12288 float32: 48 KB)
    put every row's element j in one L1 set, and a sweep over 8 or 9 such rows misses L1
    on lines it has just loaded. Rows that 8 together fit in 4 KB stay n apart."""
    if 8 * n * max(itemsizes) <= 4096:
        return n
    s = n
    while True:
        if all(len({(r * s * size) % 4096 // 64 for r in range(8)}) == 8 for size in itemsizes):
            return s
        s += 1


_workqueue_lock = threading.Lock()
_fork_state = {"inherited_omp": False}  # True in a child forked after OpenMP threads started


def _threading_layer() -> str | None:
    """The Numba threading layer in use, or None before any parallel kernel ran."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _before_fork() -> None:
    _fork_state["parent_layer"] = _threading_layer() if "numba" in sys.modules else None


def _after_fork_in_child() -> None:
    if _fork_state.get("parent_layer") == "omp":
        _fork_state["inherited_omp"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def startup_environ(name: str) -> str | None:
    """The value of environment variable ``name`` this process was started with (Linux:
    /proc/self/environ), not a later change to ``os.environ``: a Dask LocalCluster sets
    OMP_NUM_THREADS=1 in its parent's ``os.environ`` for the workers it spawns, which says
    nothing about the parent's own threads. Elsewhere, ``os.environ``."""
    try:
        with open("/proc/self/environ", "rb") as fh:
            entries = fh.read().split(b"\0")
    except OSError:
        return os.environ.get(name)
    prefix = name.encode() + b"="
    for entry in entries:
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def _openmp_controllers() -> list[Any]:
    """threadpoolctl's controllers of the OpenMP runtimes loaded in this process ([] without
    threadpoolctl): their thread counts follow ``threadpool_limits`` and OMP_NUM_THREADS."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    try:
        return list(ThreadpoolController().select(user_api="openmp").lib_controllers)
    except Exception:  # noqa: BLE001 - a budget hint only: never fail a fit over it
        return []


class _Race:
    """Recent wall times per unit of work of one kernel's serial and parallel builds at one
    size class, the faster of the two, and when to try the other again."""

    __slots__ = ("times", "warm", "winner", "calls", "interval")

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {"parallel": [], "serial": []}
        self.warm: set[str] = set()  # builds timed once already (a first call may load code)
        self.winner = "parallel"
        self.calls = 0
        self.interval = 8


class ThreadPlan:
    """How many threads a fused kernel call runs on (1: its serial build).

    * Below ``SERIAL_WORK`` multiply-adds a call runs serially.
    * The process's thread budget: Numba's thread count (NUMBA_NUM_THREADS,
      ``numba.set_num_threads``), capped by the OpenMP limit threadpoolctl reports
      (``threadpool_limits``) and by the OMP_NUM_THREADS the process started with (not a
      later change to ``os.environ``, as a Dask LocalCluster makes for its workers), which
      joblib's loky backend sets in each worker to its share of the cores (``GridSearchCV(n_jobs=...)``,
      ``cross_val_score``) even where the parent's NUMBA_NUM_THREADS is passed on. While
      another thread of this process runs a parallel kernel, a call runs serially rather
      than doubling the threads on the cores.
    * Above the threshold, on a machine whose other processes keep the cores busy, a
      parallel call waits at its barrier for a descheduled thread; so the plan times both
      builds (per kernel and size class, by powers of two of the work; the fastest of each
      build's last 3 calls, its first call not counted), runs the faster, and retries the
      other after 8 calls, then 16, ... up to 256 while it stays slower.

    Which build runs never changes a result: both builds split the work into the same
    blocks (one per Numba thread, whatever the plan) and add them in the same order.
    """

    def __init__(self, adaptive: bool = True) -> None:
        self.adaptive = adaptive
        self._lock = threading.Lock()
        self._races: dict[tuple[str, int], _Race] = {}
        self._active = 0
        self._omp: tuple[str | None, list[Any]] | None = None

    def budget(self) -> int:
        """Threads a parallel call may use now, in this thread."""
        import numba

        threads = numba.get_num_threads()
        limit = self._openmp_limit()
        return max(1, min(threads, limit)) if limit else threads

    def _openmp_limit(self) -> int | None:
        layer = _threading_layer()
        cached = self._omp
        if cached is None or cached[0] != layer:  # rescan once the threading layer has loaded
            cached = self._omp = (layer, _openmp_controllers())
        counts = [lib.num_threads for lib in cached[1]]
        # Numba's OpenMP layer sets its runtime's count to NUMBA_NUM_THREADS when it starts,
        # so OMP_NUM_THREADS (what loky sets in a worker it starts) is read from the
        # environment the process started with too
        env = (startup_environ("OMP_NUM_THREADS") or "").split(",")[0].strip()
        if env.isdigit() and int(env) > 0:
            counts.append(int(env))
        return min(counts) if counts else None

    def threads(self, name: str, work: int) -> int:
        """Threads for a call of kernel ``name`` doing ``work`` multiply-adds (1: serial)."""
        if work < SERIAL_WORK or self._active:
            return 1
        budget = self.budget()
        if budget <= 1:
            return 1
        if not self.adaptive:
            return budget
        race = self._race(name, work)
        race.calls += 1
        probe = race.calls % race.interval == 0 or not race.times["serial"]
        path = race.winner if not probe or not race.times["parallel"] else _other(race.winner)
        return budget if path == "parallel" else 1

    def _race(self, name: str, work: int) -> _Race:
        key = (name, int(work).bit_length())
        race = self._races.get(key)
        if race is None:
            race = self._races.setdefault(key, _Race())
        return race

    def record(self, name: str, work: int, threads: int, seconds: float) -> None:
        """Note how long a call above the threshold took on ``threads`` threads."""
        if not self.adaptive or work < SERIAL_WORK:
            return
        race = self._race(name, work)
        path = "parallel" if threads > 1 else "serial"
        with self._lock:
            if path not in race.warm:  # not counted: it may include loading the build
                race.warm.add(path)
                return
            times = race.times[path]
            times.append(seconds / work)
            del times[:-3]
            if not race.times["parallel"] or not race.times["serial"]:
                return
            # each build's fastest recent call: a call descheduled once is slow once, while
            # on a machine whose other processes keep the cores busy every parallel call is
            best = min(("parallel", "serial"), key=lambda p: min(race.times[p]))
            if path != race.winner and best == race.winner:  # a probe that lost: wait longer
                race.interval = min(2 * race.interval, 256)
            elif best != race.winner:
                race.winner, race.interval = best, 8

    @contextlib.contextmanager
    def running(self, threads: int) -> Iterator[None]:
        """Count a parallel call as running (others then go serial) on ``threads`` threads."""
        import numba

        with self._lock:
            self._active += 1
        saved = numba.get_num_threads()
        try:
            if threads != saved:
                numba.set_num_threads(threads)
            yield
        finally:
            if threads != saved:
                numba.set_num_threads(saved)
            with self._lock:
                self._active -= 1


def _other(path: str) -> str:
    return "serial" if path == "parallel" else "parallel"


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
    fused_softmax = True
    activation_order = "F"

    def __init__(self) -> None:
        from . import numba_kernels

        self.k = numba_kernels
        self._warned_fork = False
        self.plan = ThreadPlan()

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _parallel(self, name: str, work: int, always: bool = False) -> Iterator[Any]:
        """The build of kernel ``name`` to call now for ``work`` multiply-adds: the serial
        build where ``self.plan`` says threads do not pay (and in a process forked after
        GNU OpenMP started, where a parallel launch would abort the process), else the
        parallel build on the plan's threads, held under a lock where the threading layer
        is not thread-safe (``always``: on all threads, whatever the plan says). Either gives
        bitwise the same results."""
        if _fork_state["inherited_omp"]:
            if not self._warned_fork:
                self._warned_fork = True
                log.warning(
                    "nnx numba: this process was forked after OpenMP threads started; its fused "
                    "kernels run on one thread (same results). Use the 'spawn' start method "
                    "or NUMBA_THREADING_LAYER=tbb for parallel kernels in child processes."
                )
            yield getattr(self.k, f"{name}_serial")
            return
        threads = self._num_threads() if always else self.plan.threads(name, work)
        start = time.perf_counter()
        if threads <= 1:
            yield getattr(self.k, f"{name}_serial")
        elif _threading_layer() in (None, "workqueue"):
            with _workqueue_lock, self.plan.running(threads):
                yield getattr(self.k, name)
        else:
            with self.plan.running(threads):
                yield getattr(self.k, name)
        if not always:
            self.plan.record(name, work, threads, time.perf_counter() - start)

    @staticmethod
    def _num_threads() -> int:
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
    def prepare_fused_input(self, X: np.ndarray, dtype: str, classes: int | None = None) -> np.ndarray:
        return self.native_host_input(X, dtype)

    def logreg_epoch_(self, w, b, X, Y, lr, loss):
        if not X.flags.f_contiguous:
            return super().logreg_epoch_(w, b, X, Y, lr, loss)
        nblocks = max(1, min(self._num_threads(), X.shape[1]))
        scale = PIXEL_SCALE if X.dtype == np.uint8 else 1.0
        # Scratch belongs to this call (a few hundred KB; two threads never share it).
        dw_part = np.empty((nblocks, X.shape[0]), dtype=np.float64)
        stats = np.empty((nblocks, 3), dtype=np.float64)
        tile_acc = np.empty(dw_part.shape, dtype=w.dtype)
        with self._parallel("logreg_epoch", X.size) as kernel:
            value, correct = kernel(
                X.T,
                w.reshape(-1),
                b.reshape(-1),
                Y.reshape(-1),
                scale,
                float(lr),
                LOSS_CODES[loss],
                dw_part,
                tile_acc,
                stats,
            )
        return np.float64(value), int(correct)

    # --------------------------------------------------------- elementwise ops
    def bias_activation_(self, Z, b, activation):
        if Z.dtype != b.dtype or not b.flags.c_contiguous:
            return super().bias_activation_(Z, b, activation)
        if Z.flags.c_contiguous and activation == "softmax" and Z.shape[1] > 1:
            return super().bias_activation_(Z, b, activation)
        if Z.flags.c_contiguous and activation != "softmax":
            return self.k.bias_activation(Z, b, ACTIVATION_CODES[activation])
        if Z.flags.f_contiguous:  # example-contiguous activations
            self.k.bias_activation_rows(Z.T, b.reshape(-1), ACTIVATION_CODES[activation])
            return Z
        return super().bias_activation_(Z, b, activation)

    def activation_backward_(self, dA, A, activation):
        if activation is None:
            return dA
        d_rows, a_rows = self._rows(dA), self._rows(A)
        if d_rows is None or a_rows is None or d_rows.shape != a_rows.shape or dA.dtype != A.dtype:
            return super().activation_backward_(dA, A, activation)
        self.k.activation_backward(d_rows, a_rows, ACTIVATION_CODES[activation])
        return dA

    def sigmoid_(self, Z):
        rows = self._rows(Z)
        if rows is None:
            return super().sigmoid_(Z)
        self.k.sigmoid_inplace(rows)
        return Z

    def softmax_(self, Z):
        if Z.flags.f_contiguous:
            self.k.softmax_rows(Z.T)
            return Z
        return super().softmax_(Z)

    def softmax_cross_entropy(self, Z, Y, m=None):
        if not Z.flags.f_contiguous or Y.dtype != Z.dtype:
            return super().softmax_cross_entropy(Z, Y, m)
        dZ = np.empty(Z.shape, dtype=Z.dtype, order="F")
        inv_m = 1.0 / (Z.shape[1] if m is None else m)
        loss, correct = self.k.softmax_xent_rows(Z.T, Y.reshape(-1), dZ.T, inv_m)
        return np.float64(loss), int(correct), dZ

    def softmax_epoch_(self, W, b, X, Y, lr):
        """Softmax regression with X read from memory once (``softmax_loss_grad``'s
        cache-blocked pass), then the step; (loss, correct) before it."""
        if not X.flags.f_contiguous or W.shape[0] > MAX_FUSED_CLASSES:
            return super().softmax_epoch_(W, b, X, Y, lr)
        loss, correct, dW, db = self.softmax_loss_grad(W, b, X, Y)
        W -= (lr * dW).astype(W.dtype)
        b -= (lr * db).astype(b.dtype)
        return loss, correct

    def bce_from_logits(self, Z, Y, m=None):
        if not (self._c(Z) and self._c(Y)) or Z.dtype != Y.dtype or m is not None:
            return super().bce_from_logits(Z, Y, m)  # the kernel divides by Z's columns: m= takes the base op
        dZ = np.empty_like(Z)
        loss, correct = self.k.bce_from_logits(Z, Y, dZ)
        if loss == np.inf:  # the sum's rounding past max float, or an infinite input
            loss = self.finite_mean_loss(np.float64(loss), Z, Y)
        return np.float64(loss), int(correct), dZ

    def sgd_update_(self, params, grads, lr):
        for p, g in zip(params, grads):
            if self._c(p) and self._c(g) and p.dtype == g.dtype:
                self.k.sgd_update(p, g, p.dtype.type(lr))
            else:
                p -= p.dtype.type(lr) * g

    # ------------------------------------------------------ weighted losses
    def bce_from_logits_weighted(self, Z, Y, weights):
        if not (self._c(Z) and self._c(Y) and self._c(weights)) or not Z.dtype == Y.dtype == weights.dtype:
            return super().bce_from_logits_weighted(Z, Y, weights)
        dZ = np.empty_like(Z)
        loss, correct = self.k.bce_from_logits_weighted(Z, Y, weights, dZ)
        return np.float64(loss), int(correct), dZ

    def softmax_cross_entropy_weighted(self, Z, Y, weights):
        if not Z.flags.f_contiguous or Y.dtype != Z.dtype or weights.dtype != Z.dtype:
            return super().softmax_cross_entropy_weighted(Z, Y, weights)
        dZ = np.empty(Z.shape, dtype=Z.dtype, order="F")
        loss, correct = self.k.softmax_xent_rows_weighted(
            Z.T, Y.reshape(-1), weights.reshape(-1), dZ.T, 1.0 / Z.shape[1]
        )
        return np.float64(loss), int(correct), dZ

    # ------------------------------------------------------- optimizer steps
    @staticmethod
    def _flat(arrays, dtype):
        """1-D views of C-contiguous arrays of ``dtype`` (None stands for an absent state
        array: a 0-length placeholder), or None when one cannot be viewed so."""
        out = []
        for a in arrays:
            if a is None:
                out.append(np.empty(0, dtype))
            elif not a.flags.c_contiguous or a.dtype != dtype:
                return None
            else:
                out.append(a.reshape(-1))
        return out

    def sgd_step_(self, p, g, buf, *, lr, momentum, dampening, nesterov, decay, first):
        flat = self._flat((p, g, buf), p.dtype)
        if flat is None:
            return super().sgd_step_(
                p,
                g,
                buf,
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                nesterov=nesterov,
                decay=decay,
                first=first,
            )
        hp = np.array([-lr, decay, momentum, 1 - dampening], dtype=p.dtype)
        self.k.sgd_step(*flat, hp, bool(momentum), bool(nesterov), bool(first))

    def rmsprop_step_(self, p, g, square_avg, grad_avg, buf, *, lr, alpha, eps, momentum, decay):
        flat = self._flat((p, g, square_avg, grad_avg, buf), p.dtype)
        if flat is None:
            return super().rmsprop_step_(
                p, g, square_avg, grad_avg, buf, lr=lr, alpha=alpha, eps=eps, momentum=momentum, decay=decay
            )
        weight = 1 - alpha
        hp = np.array([-lr, decay, alpha, 1 - alpha, eps, momentum, weight, 1 - weight], dtype=p.dtype)
        self.k.rmsprop_step(*flat, hp, grad_avg is not None, momentum > 0)

    def adam_step_(self, p, g, exp_avg, exp_avg_sq, *, beta1, beta2, eps, step_size, bc2_sqrt, decay, shrink):
        flat = self._flat((p, g, exp_avg, exp_avg_sq), p.dtype)
        if flat is None:
            return super().adam_step_(
                p,
                g,
                exp_avg,
                exp_avg_sq,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                step_size=step_size,
                bc2_sqrt=bc2_sqrt,
                decay=decay,
                shrink=shrink,
            )
        weight = 1 - beta1
        hp = np.array(
            [decay, shrink, weight, 1 - weight, beta2, 1 - beta2, bc2_sqrt, eps, -step_size], dtype=p.dtype
        )
        self.k.adam_step(*flat, hp, shrink != 1.0)

    # --------------------------------------------------------------- dropout
    @staticmethod
    def _dropout_args(rate, key, dtype):
        k0, k1, batch, epoch, layer_word = key.words()
        words = np.array([k0, k1, batch, epoch, layer_word, philox.threshold(rate)], dtype=np.uint64)
        return words, np.array([1.0 / (1.0 - rate)], dtype=dtype)

    def dropout_(self, A, out, rate, key):
        # element order e = j * n + i is the memory order of example-contiguous activations
        if not (A.flags.f_contiguous and out.flags.f_contiguous and A.dtype == out.dtype):
            return super().dropout_(A, out, rate, key)
        words, scale = self._dropout_args(rate, key, A.dtype)
        self.k.dropout_flat(A.T.reshape(-1), out.T.reshape(-1), words, scale)
        return out

    def dropout_backward_(self, dA, rate, key):
        if not dA.flags.f_contiguous:
            return super().dropout_backward_(dA, rate, key)
        words, scale = self._dropout_args(rate, key, dA.dtype)
        flat = dA.T.reshape(-1)
        self.k.dropout_flat(flat, flat, words, scale)
        return dA

    def describe(self) -> dict[str, Any]:
        import numba

        info = super().describe()
        info.update(numba=numba.__version__, threads=numba.get_num_threads())
        if _threading_layer() is None and not _fork_state["inherited_omp"]:
            # no parallel kernel has run yet in this process: run one to learn the layer
            self._streaming_sum(np.zeros((2, 2), np.int64), 1, np.zeros(1, np.int64))
        info["threading_layer"] = _threading_layer()
        if _fork_state["inherited_omp"]:
            info["threading_layer"] = "serial (forked after OpenMP started)"
        return info

    def _streaming_sum(self, words: np.ndarray, nblocks: int, partial: np.ndarray) -> int:
        """The read-bandwidth reference kernel (see ``numba_kernels.streaming_sum``)."""
        # the parallel read reference (and what starts the threading layer for describe)
        with self._parallel("streaming_sum", words.size, always=True) as kernel:
            return int(kernel(words, nblocks, partial))

    def streaming_read(self, X):
        """A streaming integer sum over X's bytes as 8-byte words, on every thread (the
        parallel read reference); NumPy's sum where X's rows are not whole words."""
        rows = self._rows(X)
        if rows is None or rows.shape[-1] * rows.itemsize % 8:
            return super().streaming_read(X)
        words = rows.view(np.int64)  # the same bytes as X, read as 8-byte words
        nblocks = self._num_threads()
        partial = np.zeros(nblocks, dtype=np.int64)
        return (lambda: self._streaming_sum(words, nblocks, partial)), int(X.nbytes)

    # ------------------------------------ loss and gradient without the update (L-BFGS)
    def logreg_loss_grad(self, w, b, X, Y, loss):
        """The fused pass of ``logreg_epoch_`` without its step: X read once, the gradient
        reduced in float64 in a fixed order (bitwise repeatable for a thread count)."""
        if not X.flags.f_contiguous:
            return super().logreg_loss_grad(w, b, X, Y, loss)
        n, m = X.shape
        nblocks = max(1, min(self._num_threads(), m))
        scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
        dw_part = np.empty((nblocks, n), dtype=np.float64)
        stats = np.empty((nblocks, 3), dtype=np.float64)
        tile_acc = np.empty(dw_part.shape, dtype=w.dtype)
        dw = np.empty((1, n), dtype=np.float64)
        with self._parallel("logreg_loss_grad", X.size) as kernel:
            value, correct, db = kernel(
                X.T,
                w.reshape(-1),
                b.reshape(-1),
                Y.reshape(-1),
                scale,
                0 if loss == "bce" else 1,
                dw_part,
                tile_acc,
                stats,
                dw.reshape(-1),
            )
        return np.float64(value), int(correct), dw, np.full((1, 1), db, dtype=np.float64)

    def _tiled_softmax_fits(self, W, b, X) -> bool:
        """Whether the tiled one-pass kernel takes this softmax regression (else chunks)."""
        K, n = W.shape
        threads = max(1, min(self._num_threads(), X.shape[1]))
        stride = padded_row(n, X.dtype.itemsize, W.dtype.itemsize)
        scratch = K * n * 8 + K * stride * W.dtype.itemsize + 8 * stride * X.dtype.itemsize
        return (
            K <= _TILED_SOFTMAX_CLASSES
            and (X.dtype == np.uint8 or X.dtype == W.dtype)
            and W.flags.c_contiguous
            and b.flags.c_contiguous
            and threads * scratch <= _TILED_SCRATCH_BYTES
        )

    def _tiled_softmax_loss_grad(self, W, b, X, Y):
        """``numba_kernels.softmax_loss_grad`` on every thread; scratch belongs to this call.
        W, the partial sums and each thread's copy of its 8-example tile get rows of
        ``padded_row`` elements (W's copy zero past n), so that no two rows a sweep reads
        fall in the same L1 cache sets."""
        K, n = W.shape
        m = X.shape[1]
        stride = padded_row(n, X.dtype.itemsize, W.dtype.itemsize)
        nblocks = max(1, min(self._num_threads(), m))
        Wp = np.zeros((K, stride), dtype=W.dtype)
        Wp[:, :n] = W
        dw_part = np.empty((nblocks, K, n), dtype=np.float64)
        tile_acc = np.empty((nblocks, K, stride), dtype=W.dtype)
        pack = np.zeros((nblocks, 8, stride), dtype=X.dtype)
        db_part = np.empty((nblocks, K), dtype=np.float64)
        stats = np.empty((nblocks, 2), dtype=np.float64)
        dW = np.empty((K, n), dtype=np.float64)
        db = np.empty((K, 1), dtype=np.float64)
        scale = PIXEL_SCALE if X.dtype == np.uint8 else 1.0
        with self._parallel("softmax_loss_grad", X.size * K) as kernel:
            loss, correct = kernel(
                X.T, Wp, b.reshape(-1), Y.reshape(-1), scale, 1.0 / m, dw_part, tile_acc, db_part, stats, dW,
                db.reshape(-1), pack,
            )  # fmt: skip
        return np.float64(loss), int(correct), dW, db

    def softmax_loss_grad(self, W, b, X, Y):
        """Softmax regression's loss and gradient with X read from memory once. Up to
        ``_TILED_SOFTMAX_CLASSES`` classes: one parallel kernel, 8 examples at a time (copied
        into a scratch tile with rows padded apart as they are read, then their logits,
        softmax cross-entropy, and dW from the cached copy). Up to
        ``MAX_FUSED_CLASSES``: examples in chunks that stay in cache between Z = W X (one
        BLAS product), the fused softmax, loss and dZ (one Numba pass over the logits) and
        dW += dZ X^T (a second product over the cached chunk). Partial sums in float64,
        added in a fixed order."""
        K = W.shape[0]
        if not X.flags.f_contiguous or K > MAX_FUSED_CLASSES:
            return super().softmax_loss_grad(W, b, X, Y)
        if self._tiled_softmax_fits(W, b, X):
            return self._tiled_softmax_loss_grad(W, b, X, Y)
        n, m = X.shape
        dtype = W.dtype
        chunk = max(8, _CHUNK_BYTES // (n * dtype.itemsize))
        # uint8 chunks are converted in cache without the 1/255, which is applied to the
        # (K, chunk) logits and to dW instead: 2 multiplies per class, not per pixel
        scale = PIXEL_SCALE if X.dtype == np.uint8 else 1.0
        dW = np.zeros((K, n), dtype=np.float64)
        dW_scaled = None  # chunks whose pixels had to be scaled first (see below)
        db = np.zeros((K, 1), dtype=np.float64)
        Zc = np.empty((K, chunk), dtype=dtype, order="F")
        dZc = np.empty((K, chunk), dtype=dtype, order="F")
        part = np.empty((K, n), dtype=dtype)
        floats = np.empty((n, chunk), dtype=dtype, order="F") if X.dtype != dtype else None
        labels = Y.reshape(-1)
        loss, correct = 0.0, 0
        for lo in range(0, m, chunk):
            hi = min(m, lo + chunk)
            Xc = X[:, lo:hi]
            if floats is not None:
                self.k.rows_to_float(Xc.T, floats[:, : hi - lo].T)
                Xc = floats[:, : hi - lo]
            Z = np.matmul(W, Xc, out=Zc[:, : hi - lo])
            prescaled = False
            if scale != 1.0:
                Z *= dtype.type(scale)
                if not np.isfinite(Z).all():
                    # W within 255x of the largest float (or not finite): W * pixel may
                    # overflow where NumPy's W * (pixel / 255) does not; redo it as NumPy does
                    Xc *= dtype.type(scale)
                    Z = np.matmul(W, Xc, out=Z)
                    prescaled = True
            Z += b
            dZ = dZc[:, : hi - lo]
            c_loss, c_correct = self.k.softmax_xent_rows(Z.T, labels[lo:hi], dZ.T, 1.0 / m)
            loss += c_loss
            correct += c_correct
            np.matmul(dZ, Xc.T, out=part)
            if prescaled:
                dW_scaled = part.astype(np.float64) if dW_scaled is None else dW_scaled + part
            else:
                dW += part
            db += dZ.sum(axis=1, keepdims=True)
        if scale != 1.0:
            dW *= scale
        if dW_scaled is not None:
            dW += dW_scaled
        return np.float64(loss), int(correct), dW, db
