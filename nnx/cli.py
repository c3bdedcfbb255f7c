"""The ``nnx`` command line, kept at this import path: see ``nnx.app.cli``."""

from __future__ import annotations

from .app.cli import (
    BACKEND_CHOICES,
    EXIT_INTERNAL,
    EXIT_USAGE,
    build_parser,
    cmd_bench,
    cmd_demo,
    cmd_info,
    cmd_predict,
    cmd_train,
    main,
)

__all__ = [
    "BACKEND_CHOICES",
    "EXIT_INTERNAL",
    "EXIT_USAGE",
    "build_parser",
    "cmd_bench",
    "cmd_demo",
    "cmd_info",
    "cmd_predict",
    "cmd_train",
    "main",
]
