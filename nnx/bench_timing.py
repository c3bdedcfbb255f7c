"""How ``nnx bench`` times, kept at this import path: see ``nnx.app.bench_timing``."""

from __future__ import annotations

from .app.bench_timing import (
    BLAS_IDLE_S,
    Contender,
    Timing,
    time_interleaved,
    time_repeated,
)

__all__ = [
    "BLAS_IDLE_S",
    "Contender",
    "Timing",
    "time_interleaved",
    "time_repeated",
]
