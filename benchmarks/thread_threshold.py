"""Where threads start to pay, measured: the thresholds of ``nnx.backends.numba_backend``
(``SERIAL_WORK``) and ``nnx.training.threads`` (``STEP_BLAS_SERIAL_WORK``).

1. The fused logistic-regression kernel, serial build against parallel build, on X of
   n x m (float32, uint8, float64) from 2**14 to 2**22 multiply-adds (n * m).
2. One training step's BLAS products of an MLP n -> h -> 1 at batch B (W1 A, dZ1 A^T,
   the same multiply-adds as the step's products) on one BLAS thread against all of them.

Each case is timed in interleaved rounds (serial, parallel, serial, ...); the figure is the
fastest round (what the machine gives when nothing else runs) and the median (what it gave
while this run shared it). Prints one line per case and the load average; ``--json FILE``
keeps them. Run: ``python benchmarks/thread_threshold.py [--rounds 15] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time

import numpy as np


def _timed(fn, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def _race(serial, parallel, rounds: int, work: int, one_thread=None) -> dict:
    """``one_thread(True/False)`` switches BLAS to one thread and back around the serial
    rounds (outside the timing: threadpoolctl's own switch costs ~1 ms)."""
    serial()
    parallel()
    reps = max(1, int(2e6 // max(work, 1)))
    s_times, p_times = [], []
    for _ in range(rounds):
        if one_thread:
            one_thread(True)
        s_times.append(_timed(serial, reps))
        if one_thread:
            one_thread(False)
        p_times.append(_timed(parallel, reps))
    return {
        "serial_min_us": min(s_times) * 1e6,
        "parallel_min_us": min(p_times) * 1e6,
        "serial_median_us": statistics.median(s_times) * 1e6,
        "parallel_median_us": statistics.median(p_times) * 1e6,
    }


def kernel_cases(rounds: int) -> list[dict]:
    import numba

    from nnx.backends import numba_kernels as k

    threads = numba.get_num_threads()
    rng = np.random.default_rng(0)
    out = []
    for dtype in ("float32", "uint8", "float64"):
        compute = np.float64 if dtype == "float64" else np.float32
        for log2 in range(14, 23, 2):
            n = 1 << (log2 // 2)
            m = (1 << log2) // n
            if dtype == "uint8":
                X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
            else:
                X = np.asfortranarray(rng.random((n, m)).astype(dtype))
            w = np.zeros(n, compute)
            b = np.zeros(1, compute)
            y = (rng.random(m) > 0.5).astype(compute)
            scale = 1 / 255 if dtype == "uint8" else 1.0
            scratch = (np.empty((threads, n)), np.empty((threads, n), compute), np.empty((threads, 3)))
            args = (X.T, w, b, y, scale, 0.0, 0, *scratch)
            serial = functools.partial(k.logreg_epoch_serial, *args)
            row = _race(serial, functools.partial(k.logreg_epoch, *args), rounds, n * m)
            row.update(what="logreg kernel", dtype=dtype, work=n * m, n=n, m=m, threads=threads)
            out.append(row)
            print(_line(row), flush=True)
    return out


def _products(W, A, dZ) -> None:
    W @ A
    dZ @ A.T
    W.T @ dZ


def blas_cases(rounds: int) -> list[dict]:
    from threadpoolctl import ThreadpoolController

    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    saved = [lib.num_threads for lib in libs]
    threads = max(saved)

    def one_thread(on: bool) -> None:
        for lib, count in zip(libs, saved):
            lib.set_num_threads(1 if on else count)

    rng = np.random.default_rng(0)
    out = []
    shapes = [(20, 50, 200), (64, 50, 200), (256, 50, 200), (784, 50, 200), (784, 100, 1000)]
    shapes.append((4096, 50, 1000))
    for n, h, batch in shapes:
        A = np.asfortranarray(rng.random((n, batch), dtype=np.float32))
        W = rng.random((h, n), dtype=np.float32)
        dZ = np.asfortranarray(rng.random((h, batch), dtype=np.float32))

        step = functools.partial(_products, W, A, dZ)
        row = _race(step, step, rounds, 3 * n * h * batch, one_thread)
        row.update(what="MLP step products", dtype="float32", work=3 * n * h * batch, n=n, h=h, batch=batch)
        row["threads"] = threads
        out.append(row)
        print(_line(row), flush=True)
    return out


def _line(row: dict) -> str:
    ratio = row["serial_min_us"] / row["parallel_min_us"]
    return (
        f"{row['what']:18s} {row['dtype']:8s} work {row['work']:>9d}: serial {row['serial_min_us']:9.1f} us"
        f" (median {row['serial_median_us']:9.1f}), {row['threads']} threads {row['parallel_min_us']:9.1f} us"
        f" (median {row['parallel_median_us']:9.1f}); serial / parallel (fastest) {ratio:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", default=None)
    parser.add_argument("--blas-only", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = ([] if args.blas_only else kernel_cases(args.rounds)) + blas_cases(args.rounds)
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "load_before": load_before, "load_after": load_after}, f, indent=1)


if __name__ == "__main__":
    main()
