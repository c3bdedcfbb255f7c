"""What the first GPU run depends on and the CPU can check: the CuPy backend refusing a
forked child, the kernels' rounding (no FMA where NumPy's rounding is promised), the
register budget of every tile a plan can choose, the softmax traffic model and
benchmarks/run_gpu.sh's dry run."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

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
