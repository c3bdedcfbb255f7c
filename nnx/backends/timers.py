"""Timers for work queued on a backend: what ``Backend.timer()`` returns.

Each has ``start()`` and ``stop()``, which returns the seconds in between. On a CPU that is
the wall clock, read once the backend's queued work is done; on a GPU, a pair of events
recorded on the stream that runs the work, so host overheads between launches do not
count (CuPy's events for the CuPy backend, PyTorch's for the PyTorch reference).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class Timer(Protocol):
    def start(self) -> None: ...

    def stop(self) -> float: ...


class WallClockTimer:
    """Wall-clock seconds from ``start()`` until ``synchronize()`` returns in ``stop()``."""

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self._synchronize = synchronize
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        self._synchronize()
        return time.perf_counter() - self._t0


class EventTimer:
    """Device seconds between two events recorded on the current stream: ``start_event``
    and ``end_event`` are a library's CUDA events (``record()``, ``synchronize()``), and
    ``elapsed(start, end)`` reads the seconds between them once ``end`` has completed."""

    def __init__(self, start_event: Any, end_event: Any, elapsed: Callable[[Any, Any], float]) -> None:
        self._start, self._end, self._elapsed = start_event, end_event, elapsed

    def start(self) -> None:
        self._start.record()

    def stop(self) -> float:
        self._end.record()
        self._end.synchronize()
        return self._elapsed(self._start, self._end)
