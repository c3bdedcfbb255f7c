"""``nnx info``, kept at this import path: see ``nnx.app.info``."""

from __future__ import annotations

from .app.info import (
    collect,
    cpu_name,
    format_info,
    kernel_compile,
)

__all__ = [
    "collect",
    "cpu_name",
    "format_info",
    "kernel_compile",
]
