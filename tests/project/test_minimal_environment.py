"""The suite collects where only numpy and pytest (with or without pytest-benchmark) are
installed.

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

from nnx_testing import ROOT

OPTIONAL = (
    "PIL",
    "build",
    "cupy",
    "dask",
    "distributed",
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

# Plugin autoload is off (hypothesis ships a pytest plugin); pytest-benchmark and pytest-xdist
# are loaded by name where both are installed (otherwise pyproject's addopts, which need
# them, are replaced and benchmarks/, which needs pytest-benchmark's fixture, left out, as
# benchmarks/run_gpu.sh does).
# sys.modules[name] = None makes `import name` raise ImportError and find_spec(name) None,
# as for a package that is not installed.
COLLECT = f"""
import importlib.util
import sys
has_plugins = all(importlib.util.find_spec(p) is not None for p in ("pytest_benchmark", "xdist"))
sys.modules.update(dict.fromkeys({OPTIONAL!r}))
import pytest
args = ["--collect-only", "-q", "-p", "no:cacheprovider"]
if has_plugins:
    args += ["-p", "pytest_benchmark.plugin", "-p", "xdist.plugin", "tests", "benchmarks"]
else:
    args += ["-o", "addopts=-ra", "tests"]
sys.exit(pytest.main(args))
"""


def test_suite_collects_without_any_optional_package():
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, "-c", COLLECT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "tests/backends/test_numerics.py::test_sigmoid_at_extreme_logits" in output
    # skipped visibly, with the reason
    assert "SKIPPED [1] tests/backends/test_numerics_property.py" in output


def test_the_gpu_run_collects_the_suite_without_pytest_benchmark(tmp_path):
    """benchmarks/run_gpu.sh on a machine where pytest-benchmark is not loaded (here:
    disabled with -p no:benchmark): pyproject's --benchmark-disable would stop pytest
    before any test ("unrecognized arguments"); the script sees the option is missing,
    replaces addopts and runs tests/ only. Without a GPU its dry run collects the CuPy
    tests as the run would, from another directory, with a relative output folder."""
    env = {**os.environ, "PYTEST_ADDOPTS": "-p no:benchmark"}
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert plain.returncode != 0 and "--benchmark-disable" in plain.stderr  # the fault, unguarded
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # python3: this one
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "run_gpu.sh"), "out"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "pytest-benchmark not loaded" in (tmp_path / "out" / "pytest-setup.txt").read_text()
    assert (tmp_path / "out" / "summary.txt").is_file()
    collected = (tmp_path / "out" / "tests.log").read_text()
    assert "tests/backends/test_cupy.py::test_every_kernel_compiles" in collected
    assert "benchmarks/" not in collected
