"""The suite collects where only numpy, pytest and pytest-benchmark are installed.

A module that imports an optional package at its top (hypothesis, Pillow, matplotlib,
h5py, torch, numba, cupy, ...) without ``pytest.importorskip`` stops the whole run at
collection, on a bare install or on a machine where nothing can be installed (the lent
GPU machine, whose one test run would be lost). This test catches it by collecting the
suite in a fresh interpreter where every optional package fails to import.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OPTIONAL = (
    "PIL",
    "build",
    "cupy",
    "h5py",
    "hatchling",
    "hypothesis",
    "matplotlib",
    "numba",
    "scipy",
    "sklearn",
    "nvidia",
    "threadpoolctl",
    "torch",
    "tqdm",
)

# Plugin autoload is off (hypothesis ships a pytest plugin); pytest-benchmark is loaded by name.
# sys.modules[name] = None makes `import name` raise ImportError and find_spec(name) None,
# as for a package that is not installed.
COLLECT = f"""
import sys
sys.modules.update(dict.fromkeys({OPTIONAL!r}))
import pytest
args = ["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "pytest_benchmark.plugin"]
sys.exit(pytest.main(args + ["tests", "benchmarks"]))
"""


def test_suite_collects_without_any_optional_package():
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, "-c", COLLECT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "tests/test_numerics.py::test_sigmoid_at_extreme_logits" in output
    assert "SKIPPED [1] tests/test_numerics_property.py" in output  # skipped visibly, with the reason
