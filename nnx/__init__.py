"""nnx: a from-scratch neural-network library with swappable NumPy / Numba / CuPy backends.

X is (n_x, m) with one example per column, Y is (1, m), W is (n_out, n_in), b is (n_out, 1).
"""

from __future__ import annotations

from . import backends, schedules
from .backends import available as available_backends
from .backends import get_backend, use_backend
from .callbacks import EarlyStopping
from .errors import BackendUnavailableError, DeviceMemoryError, ModelFormatError, TrainingDivergedError
from .history import History
from .layers import Dropout, Linear, ReLU, Sigmoid, Softmax, Tanh
from .lbfgs import LBFGS
from .model import MLP, LogisticRegression, Sequential, SoftmaxRegression, load
from .optim import SGD, Adam, AdamW, RMSprop
from .version import __version__

__all__ = [
    "LBFGS",
    "MLP",
    "SGD",
    "Adam",
    "AdamW",
    "BackendUnavailableError",
    "DeviceMemoryError",
    "Dropout",
    "EarlyStopping",
    "History",
    "Linear",
    "LogisticRegression",
    "ModelFormatError",
    "RMSprop",
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
    "schedules",
    "use_backend",
]
