"""pytest-benchmark: one full training epoch per (model, m, dtype) group, every backend.

By default (the README's test command, CI) each benchmark runs once at a tiny size so the
harness stays working. Real sizes:
    NNX_BENCH_FULL=1 python3 -m pytest benchmarks --benchmark-enable
extra_info holds examples/s, GB/s of X read and useful GFLOP/s. Nothing is asserted
about speed: figures are data (see `nnx bench` for ratios against the machine's limits).
"""

import os

import numpy as np
import pytest

import nnx
from nnx import bench_workloads

SMOKE = os.environ.get("NNX_BENCH_FULL") != "1"

GPU = nnx.backends.available()["cupy"].available
MS = [64] if SMOKE else [256, 2048, 16384] + ([65536] if GPU else [])
X_DTYPES = ["float32", "uint8"] if SMOKE else ["float32", "float64", "uint8"]
BACKENDS = nnx.backends.names()

_data_cache: dict = {}


def _data(m, x_dtype):
    key = (m, x_dtype)
    if key not in _data_cache:
        _data_cache.clear()  # keep at most one large X alive
        _data_cache[key] = bench_workloads.make_data(m, x_dtype)
    return _data_cache[key]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_dtype", X_DTYPES)
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("model", bench_workloads.MODELS)
def test_epoch(benchmark, model, m, x_dtype, backend):
    status = nnx.backends.available()[backend]
    if not status.available:
        pytest.skip(f"backend {backend!r} unavailable here: {status.reason}")
    ops = nnx.get_backend(backend)
    if m > 16384 and not ops.is_gpu:
        pytest.skip("m > 16384 is measured on GPUs only")
    X, Y = _data(m, x_dtype)
    dtype = "float64" if x_dtype == "float64" else "float32"
    step = bench_workloads.epoch_function(ops, model, X, Y, dtype)
    step()  # JIT / kernel compile outside the timing
    ops.synchronize()
    # the backend's timer, as `nnx bench` times: CUDA events on the stream the kernels run
    # on for a GPU (host overheads between launches do not count), the wall clock after
    # synchronize() on a CPU. pytest-benchmark's own figures stay wall-clock.
    timer = ops.timer()
    samples = []

    def epoch():
        timer.start()
        step()
        samples.append(timer.stop())

    benchmark.group = f"{model}-m{m}-{x_dtype}"
    benchmark.pedantic(epoch, rounds=1 if SMOKE else 5, warmup_rounds=0 if SMOKE else 1)
    measured = samples[-(1 if SMOKE else 5) :]  # the timed rounds, not the warm-up
    seconds = float(np.median(measured)) if measured else None
    if seconds:
        benchmark.extra_info.update(
            epoch_s=seconds,
            timer=type(timer).__name__,
            examples_per_s=m / seconds,
            x_gb_per_s=X.nbytes / seconds / 1e9,
            gflops=bench_workloads.useful_flops(model, m) / seconds / 1e9,
        )
    assert np.isfinite(ops.scalar(step()[0]))  # the epoch still produces a finite loss
