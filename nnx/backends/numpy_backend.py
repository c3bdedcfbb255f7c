"""The NumPy backend: the base ops with ``xp = numpy``, the reference every backend matches."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    """CPU backend running the reference ops on NumPy (BLAS for the products)."""

    name = "numpy"
    xp = np

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["numpy"] = np.__version__
        return info
