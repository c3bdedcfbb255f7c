"""Built-in data, kept at this import path: see ``nnx.data.builtin``."""

from __future__ import annotations

from .data.builtin import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_MIN_SIZE,
    feature_cross,
    logic_gate,
    synthetic_images,
    train_test_split,
)

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_MIN_SIZE",
    "feature_cross",
    "logic_gate",
    "synthetic_images",
    "train_test_split",
]
