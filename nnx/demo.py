"""``nnx demo``, kept at this import path: see ``nnx.app.demo``."""

from __future__ import annotations

from .app.demo import (
    run_demo,
)

__all__ = [
    "run_demo",
]
