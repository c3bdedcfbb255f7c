"""BLAS thread counts during training, in one place: a fixed limit for chunked training
(``blas_limited``) and L-BFGS's one thread for its own step (``BlasThreads``)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from ..validation import check_positive

log = logging.getLogger("nnx")


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
        """Within the block, BLAS runs on one thread (outside ``for_evaluation``)."""
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

    @staticmethod
    def _blas_libraries() -> list[Any]:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return []
        try:
            return list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # noqa: BLE001 - an optimisation only: never fail a fit over it
            return []
