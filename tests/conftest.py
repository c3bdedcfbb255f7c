"""Shared fixtures: every backend nnx knows, with a visible skip for those missing here."""

from __future__ import annotations

import numpy as np
import pytest

import nnx

ALL_BACKENDS = nnx.backends.names()
OTHER_BACKENDS = tuple(b for b in ALL_BACKENDS if b != "numpy")


def require_backend(name: str) -> str:
    status = nnx.backends.available()[name]
    if not status.available:
        pytest.skip(f"backend {name!r} unavailable here: {status.reason} ({status.install})")
    return name


@pytest.fixture(params=ALL_BACKENDS)
def backend(request) -> str:
    """Each backend by name; skipped visibly, with the reason, when it cannot run here."""
    return require_backend(request.param)


@pytest.fixture(params=OTHER_BACKENDS)
def other_backend(request) -> str:
    """Each non-reference backend, to compare against NumPy."""
    return require_backend(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
