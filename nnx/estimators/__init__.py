"""scikit-learn estimators backed by nnx (the ``sklearn`` extra), a module each:
``common`` (the shared base estimator), ``classifier`` (``NNXClassifier``) and
``regressor`` (``NNXRegressor``). ``nnx.sklearn`` is the public path; this package
imports scikit-learn only when one of them is asked for."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "NNXClassifier": "classifier",
    "NNXRegressor": "regressor",
    "build_regressor": "regressor",
    "MULTICLASS_SUPPORTED": "common",
    "OPTIMIZERS": "common",
    "NNXEstimator": "common",
    "build_network": "common",
    "log_proba_from_logits": "common",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nnx.estimators' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
