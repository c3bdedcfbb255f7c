"""The PNGs nnx draws, kept at this import path: see ``nnx.app.plot``."""

from __future__ import annotations

from .app.plot import (
    decision_boundary,
    learning_curves,
    pyplot,
    throughput,
)

__all__ = [
    "decision_boundary",
    "learning_curves",
    "pyplot",
    "throughput",
]
