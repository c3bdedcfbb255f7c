"""BLAS thread counts during training, in one place: a fixed limit for chunked training
(``blas_limited``), L-BFGS's one thread for its own step (``BlasThreads``), and one thread
for the step loop where its products are small (``small_steps``)."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

from ..validation import check_positive

log = logging.getLogger("nnx")

# A training step whose BLAS products do fewer multiply-adds than this runs BLAS on one
# thread. Measured with benchmarks/thread_threshold.py on a 2-core VM (the three products
# of an MLP step, fastest of 11 rounds): one thread and two break even between 1.9 M
# (0.96x) and 7.7 M multiply-adds (two threads 1.24x faster); below, the second thread
# only adds wake-ups, and on a busy machine a descheduled BLAS worker makes each product
# wait (an Adam fit at batch 200 took 0.66-1.06 s under load, 0.09-0.14 s on one thread).
STEP_BLAS_SERIAL_WORK = 1 << 22


@contextlib.contextmanager
def blas_limited(threads: int | None) -> Iterator[None]:
    """Within the block BLAS runs on at most ``threads`` threads (None: as configured), as
    a Dask worker's does (its nanny sets OPENBLAS_NUM_THREADS=1 and the like), so that
    products split their sums alike. Needs threadpoolctl (the numba extra); without it
    nothing is changed."""
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without it BLAS runs as configured
        log.info("threadpoolctl is not installed; BLAS threads not limited")
        yield
        return
    with threadpool_limits(limits=check_positive(threads, "blas_threads", int), user_api="blas"):
        yield


class BlasThreads:
    """One BLAS thread for scipy's L-BFGS-B step, the process's own number for evaluations.

    The step (the two-loop recursion and the line search's bookkeeping) is BLAS level-1
    and level-2 work on vectors of the n parameters. On several threads each of those
    small calls wakes the BLAS workers: for n = 12289 an iteration took 1.9 ms on one
    thread and 8 ms on two on this project's 2-core machine, 44 ms while other processes
    kept its cores busy, often more than the evaluation itself. So the step runs on one
    thread, and every evaluation (whose products may use BLAS) on the threads the process
    had. Process-wide, as BLAS thread counts are: while fits run, other threads' BLAS calls
    outside evaluations may run single-threaded too (slower, never different). Without
    threadpoolctl (it comes with the numba extra) nothing is changed.
    """

    _lock = threading.Lock()
    _active = 0
    _libraries: list[Any] = []
    _saved: list[int] = []

    @classmethod
    @contextlib.contextmanager
    def for_solver(cls) -> Iterator[None]:
        """Within the block, BLAS runs on one thread (outside ``for_evaluation``); the step
        loop's small steps use it too (``small_steps``)."""
        with cls._lock:
            if cls._active == 0:
                cls._libraries = cls._blas_libraries()
                cls._saved = [lib.num_threads for lib in cls._libraries]
            cls._active += 1
            cls._set(1)
        try:
            yield
        finally:
            with cls._lock:
                cls._active -= 1
                if cls._active == 0:
                    cls._restore()
                    cls._libraries, cls._saved = [], []

    @classmethod
    @contextlib.contextmanager
    def for_evaluation(cls) -> Iterator[None]:
        """Within the block, BLAS runs on the threads it had before any fit began."""
        with cls._lock:
            cls._restore()
        try:
            yield
        finally:
            with cls._lock:
                if cls._active > 0:
                    cls._set(1)

    @classmethod
    def _set(cls, threads: int) -> None:
        for lib in cls._libraries:
            lib.set_num_threads(threads)

    @classmethod
    def _restore(cls) -> None:
        for lib, threads in zip(cls._libraries, cls._saved):
            lib.set_num_threads(threads)

    # the BLAS libraries, looked up again (~0.3 ms) only once more modules were imported
    # (scipy brings its own OpenBLAS)
    _found: list[Any] | None = None
    _modules_seen = 0

    @classmethod
    def _blas_libraries(cls) -> list[Any]:
        if cls._found is None or len(sys.modules) != cls._modules_seen:
            cls._modules_seen = len(sys.modules)
            try:
                from threadpoolctl import ThreadpoolController

                cls._found = list(ThreadpoolController().select(user_api="blas").lib_controllers)
            except Exception:  # noqa: BLE001 - an optimisation only (ImportError included)
                cls._found = []
        return cls._found


def step_work(params: list[tuple[Any, Any]], batch: int) -> int:
    """Multiply-adds of one step's BLAS products: each weight matrix meets the batch three
    times (W A forward, dZ A^T and W^T dZ backward)."""
    return 3 * batch * sum(int(W.size) for W, _ in params)


@contextlib.contextmanager
def small_steps(ops: Any, params: list[tuple[Any, Any]], batch: int) -> Iterator[None]:
    """Within the block (a fit's epochs), BLAS runs on one thread when the backend computes
    on the host (NumPy arrays) and a step's products do fewer than
    ``STEP_BLAS_SERIAL_WORK`` multiply-adds; else as configured. Process-wide and counted
    with L-BFGS's step (``BlasThreads``): another thread's BLAS calls meanwhile may run on
    one thread too (slower, never different)."""
    import numpy as np

    if getattr(ops, "xp", None) is not np or step_work(params, batch) >= STEP_BLAS_SERIAL_WORK:
        yield
        return
    with BlasThreads.for_solver():
        yield
