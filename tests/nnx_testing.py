"""Helpers shared by the tests."""

import numpy as np

EXTREMES = [0.0, 1e-30, -1e-30, 1.0, -1.0, 30.0, -30.0, 89.0, -89.0, 710.0, -710.0, 1e4, -1e4]


def extreme_logits(dtype: str) -> np.ndarray:
    """(1, k) logits: EXTREMES that the dtype holds, plus its largest and smallest finite values."""
    finfo = np.finfo(dtype)
    values = [v for v in EXTREMES if abs(v) <= finfo.max] + [float(finfo.max), float(finfo.min)]
    return np.array([values], dtype=dtype)


def tolerance(dtype: str) -> dict:
    """Cross-backend tolerances: float64 to rtol 1e-7, float32 close to its rounding."""
    return {"rtol": 1e-7, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-4, "atol": 2e-5}
