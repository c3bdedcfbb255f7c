"""``nnx bench``, kept at this import path: see ``nnx.app.bench``."""

from __future__ import annotations

from .app.bench import (
    BLAS_IDLE_S,
    MODELS,
    N_X,
    X_DTYPES,
    Row,
    format_table,
    gpu_limits,
    run,
)

__all__ = [
    "BLAS_IDLE_S",
    "MODELS",
    "N_X",
    "Row",
    "X_DTYPES",
    "format_table",
    "gpu_limits",
    "run",
]
