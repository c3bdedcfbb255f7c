"""Threads only where they pay: which build of a fused Numba kernel runs a call (serial
below the work threshold, parallel above it, on the process's thread budget), that both
builds give bitwise the same results, that a joblib/loky worker gets its share of the
cores, and the step loop's one-BLAS-thread rule. No timing is asserted anywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

from nnx.backends import get_backend, numba_backend  # noqa: E402
from nnx.backends.numba_backend import NumbaBackend, ThreadPlan  # noqa: E402


class _Recorder:
    """The kernels module, noting the name of every kernel build fetched from it."""

    def __init__(self, kernels):
        self.kernels, self.fetched = kernels, []

    def __getattr__(self, name):
        self.fetched.append(name)
        return getattr(self.kernels, name)


def _backend(adaptive: bool = False) -> tuple[NumbaBackend, _Recorder]:
    ops = NumbaBackend()
    ops.plan = ThreadPlan(adaptive=adaptive)
    rec = _Recorder(ops.k)
    ops.k = rec
    return ops, rec


def _logreg_problem(n: int, m: int, dtype: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
        compute = np.float32
    else:
        X = np.asfortranarray(rng.standard_normal((n, m)).astype(dtype))
        compute = np.dtype(dtype)
    w = (0.01 * rng.standard_normal((1, n))).astype(compute)
    b = np.full((1, 1), 0.1, compute)
    Y = (rng.random((1, m)) > 0.5).astype(compute)
    return X, w, b, Y


def _two_threads() -> bool:
    return ThreadPlan().budget() >= 2


def test_the_serial_build_runs_below_the_threshold_and_the_parallel_one_above(monkeypatch):
    ops, rec = _backend()
    X, w, b, Y = _logreg_problem(4, 8, "float32")
    ops.logreg_epoch_(w.copy(), b.copy(), X, Y, 0.1, "bce")
    assert rec.fetched == ["logreg_epoch_serial"]  # 32 multiply-adds: far below SERIAL_WORK
    if not _two_threads():
        pytest.skip("one thread in this process's budget: every call runs serially")
    monkeypatch.setattr(numba_backend, "SERIAL_WORK", 32)
    rec.fetched.clear()
    ops.logreg_epoch_(w.copy(), b.copy(), X, Y, 0.1, "bce")
    assert rec.fetched == ["logreg_epoch"]
    monkeypatch.setattr(numba_backend, "SERIAL_WORK", 33)
    rec.fetched.clear()
    ops.logreg_epoch_(w.copy(), b.copy(), X, Y, 0.1, "bce")
    assert rec.fetched == ["logreg_epoch_serial"]


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8"])
def test_serial_and_parallel_builds_give_bitwise_the_same_results(monkeypatch, dtype):
    """Both builds split the examples into one block per Numba thread and add the blocks
    in a fixed order: the same bits, whichever runs (the epoch, L-BFGS's loss and gradient,
    and softmax regression's tiled pass)."""
    X, w, b, Y = _logreg_problem(37, 203, dtype)
    rng = np.random.default_rng(1)
    compute = w.dtype
    W = (0.01 * rng.standard_normal((5, 37))).astype(compute)
    bK = np.zeros((5, 1), compute)
    labels = rng.integers(0, 5, (1, 203)).astype(compute)
    results = {}
    for path, threshold in (("serial", 1 << 60), ("parallel", 0)):
        monkeypatch.setattr(numba_backend, "SERIAL_WORK", threshold)
        ops, rec = _backend()
        w1, b1 = w.copy(), b.copy()
        epoch = ops.logreg_epoch_(w1, b1, X, Y, 0.5, "bce")
        grad = ops.logreg_loss_grad(w, b, X, Y, "bce")
        soft = ops.softmax_loss_grad(W, bK, X, labels)
        results[path] = (w1, b1, *epoch, *grad, *soft)
        serial = path == "serial" or not _two_threads()
        suffix = "_serial" if serial else ""
        kernels = ["logreg_epoch", "logreg_loss_grad", "softmax_loss_grad"]
        assert rec.fetched == [name + suffix for name in kernels]
    for a, c in zip(results["serial"], results["parallel"]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c), strict=True)
    # and the serial path agrees with the NumPy backend as the parallel one always did
    ref = get_backend("numpy")
    w2, b2 = w.copy(), b.copy()
    ref_loss, ref_correct = ref.logreg_epoch_(w2, b2, X, Y, 0.5, "bce")
    tol = {"float64": 1e-7, "float32": 2e-5, "uint8": 2e-5}[dtype]
    np.testing.assert_allclose(results["serial"][0], w2, rtol=tol, atol=tol * 1e-2)
    np.testing.assert_allclose(results["serial"][2], ref_loss, rtol=tol)
    assert results["serial"][3] == ref_correct


def test_a_threadpoolctl_limit_caps_the_budget():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    plan = ThreadPlan()
    ops, _ = _backend()
    X, w, b, Y = _logreg_problem(64, 64, "float32")
    ops.logreg_epoch_(w, b, X, Y, 0.1, "bce")  # load the threading layer (and its OpenMP)
    if not threadpoolctl.threadpool_info() or not any(
        d["user_api"] == "openmp" for d in threadpoolctl.threadpool_info()
    ):
        pytest.skip("no OpenMP runtime loaded for threadpoolctl to limit")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert plan.budget() == 1
        assert plan.threads("logreg_epoch", 1 << 30) == 1


_BUDGET = (
    "import numba\n"
    "from nnx.backends import numba_backend\n"
    "numba_backend._openmp_controllers = lambda: []\n"
    "print(numba.get_num_threads(), numba_backend.ThreadPlan().budget())\n"
)


@pytest.mark.parametrize("value, capped", [("1", True), ("junk", False)])
def test_the_omp_num_threads_variable_caps_the_budget(value, capped):
    """OMP_NUM_THREADS in the environment a process starts with (as loky starts workers)."""
    env = {**os.environ, "OMP_NUM_THREADS": value, "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", _BUDGET], env=env, capture_output=True, text=True, check=True)
    threads, budget = map(int, out.stdout.split())
    assert budget == (1 if capped else threads)


def test_a_later_omp_num_threads_in_os_environ_does_not_cap_it(monkeypatch):
    """A Dask LocalCluster sets OMP_NUM_THREADS=1 in its parent's os.environ for the
    workers it spawns; the parent's own kernels keep their threads (they went serial)."""
    monkeypatch.setattr(numba_backend, "_openmp_controllers", lambda: [])
    before = ThreadPlan().budget()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ThreadPlan().budget() == before


def _worker_budget() -> tuple[int, int]:
    import numba

    from nnx.backends.numba_backend import ThreadPlan

    return numba.get_num_threads(), ThreadPlan().budget()


def test_a_loky_worker_gets_its_share_of_the_cores(monkeypatch):
    """joblib's loky backend sets NUMBA_NUM_THREADS and OMP_NUM_THREADS in each worker to
    cores // n_jobs, unless the parent's environment sets them: with NUMBA_NUM_THREADS=2
    in the parent each worker's Numba has 2 threads, and its budget is still its share."""
    joblib = pytest.importorskip("joblib")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    share = max(1, joblib.cpu_count() // 2)
    got = joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(_worker_budget)() for _ in range(2))
    assert [numba_threads for numba_threads, _ in got] == [2, 2]
    assert [budget for _, budget in got] == [min(2, share)] * 2


def test_the_race_runs_the_faster_build_and_retries_the_other_ever_less_often(monkeypatch):
    """Above the threshold the plan times both builds (made-up timings here) and keeps the
    faster; a retry of the slower one that loses again doubles the wait before the next."""
    plan = ThreadPlan(adaptive=True)
    monkeypatch.setattr(plan, "budget", lambda: 2)
    work = 1 << 20
    assert plan.threads("k", work) == 2  # first call: parallel (not counted: it may load code)
    plan.record("k", work, 2, 5.0)
    assert plan.threads("k", work) == 2
    plan.record("k", work, 2, 0.030)  # a barrier that waited a time slice
    assert plan.threads("k", work) == 1  # then the serial build is tried, twice (its first
    plan.record("k", work, 1, 5.0)  # call not counted either)
    assert plan.threads("k", work) == 1
    plan.record("k", work, 1, 0.001)
    picks = []
    for _ in range(38):
        threads = plan.threads("k", work)
        picks.append(threads)
        plan.record("k", work, threads, 0.030 if threads == 2 else 0.001)
    # calls 5..42: the parallel build is retried at calls 8, 16 and 32 (the wait doubling)
    assert [call for call, threads in enumerate(picks, start=5) if threads == 2] == [8, 16, 32]
    other_size = 1 << 25
    assert plan.threads("k", other_size) == 2  # another size class is raced apart
    for _ in range(3):  # parallel wins again: it becomes the choice
        plan.record("k", work, 2, 0.0001)
    assert plan.threads("k", work) == 2


def test_one_or_two_disturbed_parallel_calls_do_not_hand_the_race_to_the_serial_build(monkeypatch):
    """A parallel call whose thread was descheduled once (another process woke up) is slow
    once: the plan keeps the parallel build while one of its last 3 calls was fast, and
    turns to the serial one only when all 3 were slower than it (a busy machine)."""
    plan = ThreadPlan(adaptive=True)
    monkeypatch.setattr(plan, "budget", lambda: 2)
    work = 1 << 20
    for threads, seconds in ((2, 5.0), (2, 0.001), (1, 5.0), (1, 0.0016)):  # both builds timed
        assert plan.threads("k", work) == threads
        plan.record("k", work, threads, seconds)
    for seconds in (0.020, 0.011):  # two calls that waited a time slice at the barrier
        assert plan.threads("k", work) == 2
        plan.record("k", work, 2, seconds)
    assert plan.threads("k", work) == 2
    plan.record("k", work, 2, 0.015)  # the third slow one in a row: the machine is busy
    assert plan.threads("k", work) == 2  # call 8: the loser's scheduled retry, slow again
    plan.record("k", work, 2, 0.012)
    assert plan.threads("k", work) == 1  # the serial build runs


def test_a_call_beside_another_threads_parallel_call_runs_serially(monkeypatch):
    plan = ThreadPlan(adaptive=False)
    monkeypatch.setattr(plan, "budget", lambda: 2)
    assert plan.threads("k", 1 << 30) == 2
    with plan.running(1):
        assert plan.threads("k", 1 << 30) == 1
    assert plan.threads("k", 1 << 30) == 2


def test_small_steps_run_blas_on_one_thread_and_large_ones_as_configured():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import nnx
    from nnx.training import threads

    def blas_threads():
        return max(
            (d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"), default=1
        )

    before = blas_threads()
    seen = []
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 400)).astype(np.float32)
    Y = (X[:1] > 0).astype(np.float32)
    model = nnx.MLP([20, 50, 1], seed=0)
    assert threads.step_work([(np.zeros((50, 20)), None), (np.zeros((1, 50)), None)], 200) < (
        threads.STEP_BLAS_SERIAL_WORK
    )
    record = lambda *a: seen.append(blas_threads())  # noqa: E731
    model.fit(X, Y, epochs=2, batch_size=200, backend="numpy", callback=record)
    assert seen == [1, 1]
    assert blas_threads() == before  # restored after the fit
    seen.clear()
    big = np.zeros((threads.STEP_BLAS_SERIAL_WORK // 600 + 1, 20), np.float32)
    assert threads.step_work([(big, None)], 200) >= threads.STEP_BLAS_SERIAL_WORK
    with threads.small_steps(get_backend("numpy"), [(big, None)], 200):
        seen.append(blas_threads())
    assert seen == [before]
