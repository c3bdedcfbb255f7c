"""The benchmark's timing harness: medians of interleaved rounds, first calls apart.

Nothing here knows what is timed. A ``Contender`` is a closure, how to wait for its queued
work, and a timer (``Backend.timer()``: the wall clock on a CPU, CUDA events on a GPU).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backends.timers import Timer, WallClockTimer

# OpenBLAS workers spin for ~0.1 s after each product; each timed round first waits this
# long so they are idle, as a training loop's next epoch would find them.
BLAS_IDLE_S = 0.3


@dataclass
class Timing:
    """Median and spread (min, max) of repeated runs, in seconds, plus the first call."""

    median: float
    low: float
    high: float
    first: float
    runs: int


@dataclass
class Contender:
    """One thing timed in a group: an epoch on a backend, PyTorch's epoch, or the products.
    ``timer`` times a burst of calls (default: the wall clock, read after ``sync``); GPU work
    is timed with its library's CUDA events."""

    fn: Callable[[], Any]
    sync: Callable[[], None]
    timer: Timer | None = None

    def __post_init__(self) -> None:
        if self.timer is None:
            self.timer = WallClockTimer(self.sync)


def _first_call(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    """Wall-clock seconds of one call until its work is done (compile and JIT included)."""
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def time_repeated(fn: Callable[[], Any], sync: Callable[[], None], timer: Timer, repeats: int) -> Timing:
    """Time ``fn`` once cold (wall clock), then once more untimed, then ``repeats`` times
    with ``timer``."""
    first = _first_call(fn, sync)
    fn()
    sync()
    samples = []
    for _ in range(max(1, repeats)):
        timer.start()
        fn()
        samples.append(timer.stop())
    return Timing(statistics.median(samples), min(samples), max(samples), first, len(samples))


def time_interleaved(
    contenders: dict[str, Contender], repeats: int, burst_s: float = 0.05, idle_s: float = BLAS_IDLE_S
) -> dict[str, Timing]:
    """Time every contender once per round, for ``repeats`` rounds, and take medians.

    Interleaving keeps slow drift of a shared machine from favouring whoever ran first.
    In each round a contender first gets ``idle_s`` for OpenBLAS workers (which spin
    ~0.1 s after a product) to go idle, then one untimed call to wake its threads, then a
    burst of calls lasting at least ``burst_s``; the sample is the mean time per call.
    """
    first: dict[str, float] = {}
    for name, c in contenders.items():  # cold call (compile, JIT) then one warm-up
        time.sleep(idle_s)
        first[name] = _first_call(c.fn, c.sync)
        c.fn()
        c.sync()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    calls: dict[str, int] = {}
    for _ in range(max(1, repeats)):
        for name, c in contenders.items():
            time.sleep(idle_s)
            c.fn()  # wake the threads (and the GPU clocks)
            c.sync()
            n = calls.get(name, 1)
            c.timer.start()
            for _ in range(n):
                c.fn()
            elapsed = c.timer.stop()
            samples[name].append(elapsed / n)
            calls[name] = max(1, min(1000, int(burst_s / max(elapsed / n, 1e-6)) + 1))
    return {
        name: Timing(statistics.median(v), min(v), max(v), first[name], len(v)) for name, v in samples.items()
    }
