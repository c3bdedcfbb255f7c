"""What the first GPU run depends on and the CPU can check: the CuPy backend refusing a
forked child, the kernels' rounding (no FMA where NumPy's rounding is promised), the
register budget of every tile a plan can choose, the softmax traffic model and
benchmarks/run_gpu.sh's dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from nnx_testing import ROOT

import nnx
from nnx.backends import cupy_backend
from nnx.errors import BackendUnavailableError


def _fake_cupy() -> SimpleNamespace:
    """Just enough of CuPy for CupyBackend() and asarray (NumPy arrays stand in)."""
    attributes = {"MultiProcessorCount": 4, "MaxSharedMemoryPerBlockOptin": 227 * 1024}
    return SimpleNamespace(
        __version__="13.6.0 (fake)",
        cuda=SimpleNamespace(Device=lambda *_: SimpleNamespace(id=0, attributes=attributes)),
        array=lambda host, dtype, order, copy: np.array(host, dtype=dtype, order=order, copy=copy),
    )


@pytest.fixture
def fake_cupy_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    monkeypatch.setitem(cupy_backend._cuda_state, "pid", None)
    return cupy_backend.CupyBackend()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_the_cupy_backend_refuses_a_child_forked_after_cuda_with_one_line_naming_spawn(fake_cupy_backend):
    ops = fake_cupy_backend
    assert ops.asarray([1.0, 2.0], "float32").dtype == np.float32  # the parent keeps working
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the inherited backend (and a new one) must refuse
        code = 1
        try:
            os.close(read_fd)
            messages = []
            for attempt in (lambda: ops.asarray([1.0], "float32"), cupy_backend.CupyBackend):
                try:
                    attempt()
                    messages.append("no error")
                except cupy_backend.CudaForkedError as exc:
                    messages.append(str(exc))
            with os.fdopen(write_fd, "w") as fh:
                fh.write("\0".join(messages))
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        messages = fh.read().split("\0")
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert len(messages) == 2
    for message in messages:
        assert "'spawn'" in message and "forked" in message and "\n" not in message, message
    assert issubclass(cupy_backend.CudaForkedError, BackendUnavailableError)


def test_every_entry_point_of_the_cupy_backend_checks_the_process(fake_cupy_backend, monkeypatch):
    ops = fake_cupy_backend
    parent = os.getpid()
    monkeypatch.setattr(cupy_backend.os, "getpid", lambda: parent + 1)
    calls = [
        lambda: ops.asarray([1.0], "float32"),
        lambda: ops.prepare_input(np.zeros((2, 2)), "float32"),
        lambda: ops.prepare_fused_input(np.zeros((2, 2)), "float32"),
        lambda: ops.prepare_labels(np.zeros(2), "float32"),
        lambda: ops.to_host(np.zeros(2)),
        lambda: ops._kernel("sgd_step<float>"),
        ops.synchronize,
        ops.describe,
    ]
    for call in calls:
        with pytest.raises(cupy_backend.CudaForkedError, match="'spawn' start method"):
            call()


# ------------------------------------------------------------------ FMA contraction
def _nvrtc():
    """The NVRTC compile helper of test_kernels_nvcc (skips without libnvrtc)."""
    sys.path.insert(0, os.path.dirname(__file__))
    import test_kernels_nvcc

    return test_kernels_nvcc


def _ptx_bodies(names: list[str]) -> dict[str, str]:
    """Each name expression's PTX entry (NVRTC for compute_90 with CuPy's options)."""
    _, lowered, ptx = _nvrtc()._nvrtc_compile(names, [b"--gpu-architecture=compute_90"])
    text = ptx.decode()
    return {n: text.split(f".entry {lowered[n]}", 1)[1].split(".entry", 1)[0] for n in names}


def test_kernels_that_promise_numpys_rounding_contain_no_fma():
    """NVRTC contracts a * b + c into one fma by default (one rounding where NumPy rounds
    twice; AdamW's p * shrink + step is one): the kernels in NUMPY_ROUNDING_KERNELS write
    every rounding down (__fmul_rn / __fadd_rn), so their PTX holds no fma at all."""
    from nnx.backends.cuda_launch import NUMPY_ROUNDING_KERNELS

    names = [f"{k}<{t}>" for k in NUMPY_ROUNDING_KERNELS for t in ("float", "double")]
    fused = {n: body.count("fma.") for n, body in _ptx_bodies(names).items() if "fma." in body}
    assert not fused, f"fma in kernels that promise NumPy's rounding: {fused}"


def test_the_fma_check_sees_a_contracted_multiply_add():
    """The same PTX check finds the fma NVRTC makes of the sigmoid's library exp (so an
    empty result above is not a check that cannot fail)."""
    assert "fma." in _ptx_bodies(["sigmoid_inplace<float>"])["sigmoid_inplace<float>"]


# ------------------------------------------------------------------ CuPy's disk cache
@pytest.mark.parametrize(
    ("cupy", "driver", "cached"),
    [
        ("14.1.0", 12040, True),
        ("14.2.1", 13000, True),
        ("14.1.0", 12030, False),  # CuPy caches name-expression modules only with driver 12.4+
        ("14.1.0", None, False),
        ("14.0.1", 13000, False),
        ("13.6.0", 12080, False),
        ("not a version", 13000, False),
    ],
)
def test_the_kernel_disk_cache_is_decided_from_cupy_and_the_driver(cupy, driver, cached):
    assert cupy_backend.kernel_disk_cache(cupy, driver) is cached


# ------------------------------------------------------------------ benchmarks/run_gpu.sh
needs_no_gpu = pytest.mark.skipif(
    nnx.backends.available()["cupy"].available, reason="a GPU is here: run_gpu.sh would run, not dry-run"
)


def _run_gpu(out: Path, env_extra: dict[str, str] | None = None, path_first: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "NNX_GPU_RUN_TOTAL_S")}
    first = path_first or Path(sys.executable).parent  # python3 on PATH: this interpreter
    env["PATH"] = f"{first}{os.pathsep}{env.get('PATH', '')}"
    env.update(env_extra or {})
    t0 = time.perf_counter()
    r = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "run_gpu.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return r, time.perf_counter() - t0


@needs_no_gpu
def test_the_gpu_run_dry_runs_here_in_under_2_minutes_and_leaves_its_summary(tmp_path):
    out = tmp_path / "out"
    r, seconds = _run_gpu(out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert seconds < 120
    summary = (out / "summary.txt").read_text()
    assert summary.startswith("nnx GPU run: dry run") and "on a GPU it would run:" in summary
    for planned in ("gpu_check.py --json", "nnx bench --backends cupy --m 65536", "-p benchmarks.cupy_only"):
        assert planned in summary, planned
    data = json.loads((out / "summary.json").read_text())
    assert data["ok"] and data["mode"] == "dry run"
    assert [s["step"] for s in data["steps"]] == ["env", "kernels", "bench", "tests"]
    assert all(s["status"] == "dry run" for s in data["steps"])
    kernels = json.loads((out / "kernels.json").read_text())
    assert kernels["dry_run"] and len(kernels["would_check"]) > 20
    # the tests step selects exactly the CuPy-parametrized tests: none of the NVRTC/nvcc
    # compile tests or the CPU emulation, which -k cupy would also pick
    selected = [line for line in (out / "tests.log").read_text().splitlines() if "::" in line]
    assert len(selected) > 100
    for node in selected:
        assert node.startswith("tests/backends/test_cupy.py::") or "cupy" in node.split("[", 1)[-1], node
        assert not node.startswith(
            ("tests/backends/test_kernels_nvcc.py", "tests/backends/test_kernels_on_cpu.py")
        ), node
    assert any(
        node.startswith("tests/training/test_trust_numerics.py::test_a_process_forked") for node in selected
    )


def test_the_gpu_run_leaves_its_summary_when_a_step_runs_out_of_time(tmp_path):
    """A step that hangs is interrupted at its budget, the rest is skipped when no time is
    left, and summary.txt and summary.json still record every step; the exit status says
    the run was not complete."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'case "$1" in\n'
        f'  -) exec "{sys.executable}" "$@" ;;  # the summary\n'
        "  -c) exit 1 ;;  # no GPU\n"
        "esac\n"
        'case "$*" in *--help*) exit 1 ;; esac\n'
        "exec sleep 60  # every step hangs\n"
    )
    fake.chmod(0o755)
    out = tmp_path / "out"
    r, seconds = _run_gpu(out, {"NNX_GPU_RUN_TOTAL_S": "17"}, path_first=bin_dir)
    assert r.returncode != 0 and seconds < 30
    data = json.loads((out / "summary.json").read_text())
    assert not data["ok"]
    assert [(s["step"], s["status"]) for s in data["steps"]] == [
        ("env", "timed out"),
        ("kernels", "skipped"),
        ("bench", "skipped"),
        ("tests", "skipped"),
    ]
    assert "timed out" in (out / "summary.txt").read_text()
