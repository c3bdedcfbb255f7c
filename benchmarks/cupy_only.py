"""pytest plugin for the GPU run (benchmarks/run_gpu.sh): keep only the tests that run on
the CuPy backend, so device time is not spent on what CI already runs on CPUs.

Kept: every test of tests/backends/test_cupy.py, and every test parametrized with the backend
"cupy" (a ``backend`` / ``other_backend`` fixture or a ``backend`` parameter). Not kept:
the NVRTC/nvcc compile tests and the CPU emulation of the kernels, whose names also
contain "cupy" (``-k cupy`` would select them). Load with ``-p benchmarks.cupy_only``.
"""

from __future__ import annotations

from pathlib import Path

CUPY_FILES = ("test_cupy.py",)


def runs_on_cupy(item) -> bool:
    """Whether a collected test item runs on the CuPy backend."""
    if Path(str(item.fspath)).name in CUPY_FILES:
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    return any(value == "cupy" for value in callspec.params.values() if isinstance(value, str))


def pytest_collection_modifyitems(config, items):
    kept = [item for item in items if runs_on_cupy(item)]
    dropped = [item for item in items if not runs_on_cupy(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept
