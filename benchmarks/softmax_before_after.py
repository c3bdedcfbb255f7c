"""The softmax-regression epoch (K = 10) of another checkout against this one, in one process
with interleaved rounds, beside this checkout's binary (logistic-regression) epoch and the
parallel read of X: what issue30.py's softmax row measures, before and after at once.

    PYTHONPATH=. python benchmarks/softmax_before_after.py --before /path/to/checkout \
        [--n 12288] [--m 8192] [--x-dtype float32] [--rounds 15] [--serial]

The other checkout's ``nnx`` package is copied (once, under the temporary directory) as
``nnx_before`` and imported beside this one. ``--serial`` runs every kernel's serial build
and times thread CPU time (``time.thread_time``): on a machine shared with other processes
that measures the kernel, not the time slices it waited for. Medians and minima of the
rounds; GFLOP/s counts the two K x n x m products (2 flops per multiply-add).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _import_before(root: Path):
    tag = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    home = Path(tempfile.gettempdir()) / f"nnx_before_{tag}"
    package = home / "nnx_before"
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(root / "nnx", package, ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(home))
    import nnx_before.backends.numba_backend as before  # noqa: PLC0415

    return before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout to time as 'before'")
    parser.add_argument("--n", type=int, default=12288)
    parser.add_argument("--m", type=int, default=8192)
    parser.add_argument("--K", type=int, default=10)
    parser.add_argument("--x-dtype", default="float32", choices=["float32", "float64", "uint8"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--serial", action="store_true", help="serial builds, thread CPU time")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import nnx.backends.numba_backend as after_mod  # noqa: PLC0415

    before_mod = _import_before(args.before)
    if args.serial:
        before_mod.SERIAL_WORK = after_mod.SERIAL_WORK = 1 << 62
    before, after = before_mod.NumbaBackend(), after_mod.NumbaBackend()
    n, m, K = args.n, args.m, args.K
    rng = np.random.default_rng(2)
    if args.x_dtype == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
    else:
        X = np.asfortranarray(rng.random((n, m), dtype=np.float32).astype(args.x_dtype))
    dtype = "float64" if args.x_dtype == "float64" else "float32"
    labels = rng.integers(0, K, (1, m)).astype(dtype)
    Y = (labels % 2).astype(dtype)
    W_before, W_after = np.zeros((K, n), dtype), np.zeros((K, n), dtype)
    b_before, b_after = np.zeros((K, 1), dtype), np.zeros((K, 1), dtype)
    w, b = np.zeros((1, n), dtype), np.zeros((1, 1), dtype)
    read, _ = after.streaming_read(X)
    fns = {
        "softmax_before": lambda: before.softmax_epoch_(W_before, b_before, X, labels, 1e-3),
        "softmax_after": lambda: after.softmax_epoch_(W_after, b_after, X, labels, 1e-3),
        "binary_epoch": lambda: after.logreg_epoch_(w, b, X, Y, 1e-3, "bce"),
        "read": read,
    }
    clock = time.thread_time if args.serial else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    load = os.getloadavg()
    for _ in range(args.rounds):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    mode = "serial builds, thread CPU time" if args.serial else "all threads, wall time"
    print(f"n={n} m={m} K={K} X {args.x_dtype}, {args.rounds} rounds, {mode}")
    print(f"load average {load} before the rounds, {os.getloadavg()} after")
    med = {k: statistics.median(v) for k, v in times.items()}
    flop = 4 * n * m * K
    for name, v in times.items():
        rate = f"  {flop / med[name] / 1e9:6.1f} GFLOP/s" if name.startswith("softmax") else ""
        print(f"{name:15s} median {med[name] * 1e3:8.2f} ms  min {min(v) * 1e3:8.2f} ms{rate}")
    print(
        f"softmax / binary: before {med['softmax_before'] / med['binary_epoch']:.2f}, "
        f"after {med['softmax_after'] / med['binary_epoch']:.2f}; "
        f"after faster by {med['softmax_before'] / med['softmax_after']:.2f}x; "
        f"largest |W_after - W_before| {np.abs(W_after - W_before).max():.3g}"
    )


if __name__ == "__main__":
    main()
