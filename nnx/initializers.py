"""Weight initialisers, drawn on the host in float64 so every backend starts from the same numbers."""

from __future__ import annotations

import numpy as np

INITIALIZERS = ("zeros", "uniform", "plain", "xavier", "he")


def draw(init: str, n_in: int, n_out: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw W (n_out, n_in) and b (n_out, 1) as float64; b is always zeros.

    * zeros   - W = 0 (logistic regression in the tutorials)
    * uniform - W ~ U(-0.01, 0.01) (the one-hidden-layer notebook)
    * plain   - W ~ N(0, 1) * 0.01
    * xavier  - W ~ N(0, 1) * sqrt(1 / n_in)
    * he      - W ~ N(0, 1) * sqrt(2 / n_in)
    """
    shape = (n_out, n_in)
    if init == "zeros":
        W = np.zeros(shape)
    elif init == "uniform":
        W = rng.uniform(-0.01, 0.01, size=shape)
    elif init == "plain":
        W = rng.standard_normal(shape) * 0.01
    elif init == "xavier":
        W = rng.standard_normal(shape) * np.sqrt(1.0 / n_in)
    elif init == "he":
        W = rng.standard_normal(shape) * np.sqrt(2.0 / n_in)
    else:
        raise ValueError(f"unknown init {init!r}; expected one of {INITIALIZERS}")
    return W, np.zeros((n_out, 1))
