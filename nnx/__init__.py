"""nnx: a from-scratch neural-network library with swappable NumPy / Numba / CuPy backends.

X is (n_x, m) with one example per column, Y is (1, m), W is (n_out, n_in), b is (n_out, 1).
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import backends
from .backends import available as available_backends
from .backends import get_backend, use_backend
from .errors import BackendUnavailableError, DeviceMemoryError, ModelFormatError, TrainingDivergedError
from .history import History
from .io import load
from .layers import Linear, ReLU, Sigmoid, Softmax, Tanh
from .lbfgs import LBFGS
from .model import MLP, LogisticRegression, Sequential, SoftmaxRegression

__all__ = [
    "MLP",
    "LBFGS",
    "BackendUnavailableError",
    "DeviceMemoryError",
    "History",
    "Linear",
    "LogisticRegression",
    "ModelFormatError",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxRegression",
    "Tanh",
    "TrainingDivergedError",
    "__version__",
    "available_backends",
    "backends",
    "get_backend",
    "load",
    "use_backend",
]
