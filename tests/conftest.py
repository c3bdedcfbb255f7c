"""Shared fixtures: every backend nnx knows, with a visible skip for those missing here;
the CPU emulation of the CUDA kernels, built once per run; a small npz data file."""

from __future__ import annotations

import os

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


@pytest.fixture
def npz_data(tmp_path):
    """A small npz data file (X: 4 features x 40 examples, Y: 0/1 labels) for the command line."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 40))
    Y = (X[0] + X[1] > 0).astype(np.float64).reshape(1, -1)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, Y=Y)
    return path


@pytest.fixture(scope="session")
def emulation_library(tmp_path_factory):
    """The CUDA kernels compiled for the CPU emulation (tests/cuda_emulation.py), built once
    per test run: in the folder the pytest-xdist workers of one run share, where one of
    them builds it and the others wait for it."""
    from cuda_emulation import build

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out_dir = shared / "cuda_on_cpu"
    out_dir.mkdir(exist_ok=True)
    return build(out_dir)
