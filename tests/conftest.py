"""Shared fixtures: every backend nnx knows, with a visible skip for those missing here;
the CPU emulation of the CUDA kernels, built once per run; a small npz data file. And,
before pytest-xdist's workers start, the Numba kernels compiled into their on-disk cache."""

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


# Numba compiles each kernel on its first call and caches it beside the source (cache=True),
# so on a fresh clone every process that calls a kernel before any other process has
# cached it compiles it again: with two workers, both compile the same kernels at once,
# and a command-line test's subprocess compiles whatever is not cached yet. Compiling the
# kernels most tests call once, before the workers start (one process per compute dtype,
# in parallel), leaves them to load from the cache. No result depends on it: a kernel
# missing from the cache is compiled where it is called, as without this step.
NUMBA_WARM_UP = """
import sys
import numpy as np
import nnx
dtype = sys.argv[1]
rng = np.random.default_rng(0)
for x_dtype in ("float32", "float64", "uint8"):
    X = (rng.random((12, 40)) * 255).astype(x_dtype)
    Y = (rng.random((1, 40)) > 0.5).astype(np.int64)
    y = rng.integers(0, 3, 40)
    for model, labels in (
        (nnx.LogisticRegression(12), Y),
        (nnx.SoftmaxRegression(12, 3), y),
        (nnx.MLP([12, 4, 1], seed=0), Y),
    ):
        model.fit(X, labels, epochs=2, backend="numba", dtype=dtype)
        model.predict_proba(X, backend="numba")
"""


def pytest_configure(config):
    """In pytest-xdist's controller of a whole-suite run (no paths given: pyproject's
    testpaths), before its workers start: compile the Numba kernels into their on-disk
    cache (see NUMBA_WARM_UP)."""
    workers = getattr(config.option, "numprocesses", None)
    if os.environ.get("PYTEST_XDIST_WORKER") or not workers or config.option.collectonly:
        return
    if config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return
    if not nnx.backends.available()["numba"].available:
        return
    import subprocess
    import sys

    from nnx_testing import ROOT

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    jobs = [
        subprocess.Popen([sys.executable, "-c", NUMBA_WARM_UP, dtype], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for dtype in ("float32", "float64")
    ]  # fmt: skip
    for job in jobs:
        try:
            job.wait(timeout=600)
        except subprocess.TimeoutExpired:
            job.kill()
