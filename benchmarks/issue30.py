"""Issue 30's table, one row at a time: speed at the machine's limits and on a busy machine.

    PYTHONPATH=. python benchmarks/issue30.py --json benchmarks/results/FILE.json [--rows a,b]

Rows (``--rows``, default all; each prints its figures and its goal):

* ``or3``      - three processes each fitting ``LogisticRegression(2)`` on the OR truth
  table at once, and one alone: ms per epoch, Numba against the NumPy backend.
* ``busy4``    - the same 4-example fit while two busy processes (started and stopped here)
  keep the cores busy: ms per epoch over repeated fits (median and worst), both backends.
* ``busylarge`` - logistic regression on 12288 x 2048 float32 beside two busy processes:
  ms per epoch, Numba against the NumPy backend (the first rows' goal at a large size).
* ``gridsearch`` - ``GridSearchCV(NNXClassifier(...), n_jobs=2)`` beside two busy
  processes: wall time with Numba's default threads, with NUMBA_NUM_THREADS=1 set (the
  issue's reference), and with the NumPy backend.
* ``uint8``    - the logistic-regression epoch on 12288 x m uint8 pixels against float32
  (each epoch against a parallel read of its own bytes, timed in the same rounds).
* ``fcc``      - the freeCodeCamp run: E epochs over m = 20000 uint8 pictures (12288
  features) against reading their bytes E times (``--fcc-epochs``, default 500, a tenth of
  the issue's 5000: the floor is scaled alike, E x one timed read of X).
* ``softmax``  - softmax regression K = 10 against the binary epoch on the same float32 X.
* ``lbfgs``    - ``benchmarks/time_to_optimum.py`` (nnx L-BFGS against scikit-learn's
  LogisticRegression to its objective) at ``--lbfgs-m`` examples (default 4000), float32
  and uint8. The issue's row is m = 20000, on a quiet machine (15-25 minutes):
  ``PYTHONPATH=. python benchmarks/issue30.py --json FILE --rows lbfgs --lbfgs-m 20000``.
* ``distributed`` - ``benchmarks/distributed_epoch.py --models mlp`` (MLP 12288-50-1,
  m = 8192): 2 local workers x 1 thread against one process on all threads.

The busy processes are plain Python loops, each stopped after the row (and never later
than ``--busy-limit`` seconds). The JSON keeps every figure, the machine (CPU, cores, load
average before and after each row), the date and the versions. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# NNX_ROOT=<another checkout> times that checkout's nnx with this script (a before/after run)
NNX = Path(os.environ.get("NNX_ROOT", ROOT))
sys.path.insert(0, str(NNX))

OR_X = "np.asfortranarray(np.array([[0, 0, 1, 1], [0, 1, 0, 1]], np.float32))"
OR_Y = "np.array([[0, 1, 1, 1]], np.float32)"


@contextlib.contextmanager
def busy_processes(count: int = 2, limit: float = 600.0):
    """``count`` processes spinning on a core each, stopped when the block ends (or after
    ``limit`` seconds on their own)."""
    code = f"import time\nend = time.time() + {limit}\nwhile time.time() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(NNX) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


_OR_FIT = f"""
import sys, time, statistics, numpy as np, nnx
backend, epochs, start_at, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
X, Y = {OR_X}, {OR_Y}
m = nnx.LogisticRegression(2)
m.fit(X, Y, epochs=5, lr=0.5, backend=backend)
while time.time() < start_at:
    time.sleep(0.005)
times = []
end = time.time() + seconds
while time.time() < end or len(times) < 3:
    t = time.perf_counter()
    m.fit(X, Y, epochs=epochs, lr=0.5, backend=backend, history_every=epochs)
    times.append((time.perf_counter() - t) / epochs * 1e3)
print(statistics.median(times), max(times))
"""


def _or_processes(backend: str, count: int, seconds: float, epochs: int = 500) -> list[tuple[float, float]]:
    start_at = time.time() + 8.0  # every process imported and warmed up by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OR_FIT, backend, str(epochs), str(start_at), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for _ in range(count)
    ]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=120)
        median, worst = (float(v) for v in stdout.split())
        out.append((median, worst))
    return out


def row_or3(args) -> dict:
    row: dict = {"goal": "Numba <= 1.5x the NumPy backend"}
    for count in (1, 3):
        for backend in ("numba", "numpy"):
            res = _or_processes(backend, count, args.seconds)
            row[f"{backend}_{count}proc_ms_per_epoch"] = statistics.median(r[0] for r in res)
            row[f"{backend}_{count}proc_worst_ms_per_epoch"] = max(r[1] for r in res)
        row[f"numba_over_numpy_{count}proc"] = (
            row[f"numba_{count}proc_ms_per_epoch"] / row[f"numpy_{count}proc_ms_per_epoch"]
        )
    return row


def _or_fits_here(backend: str, repeats: int, epochs: int = 2000) -> list[float]:
    import nnx

    X = np.asfortranarray(np.array([[0, 0, 1, 1], [0, 1, 0, 1]], np.float32))
    Y = np.array([[0, 1, 1, 1]], np.float32)
    model = nnx.LogisticRegression(2)
    model.fit(X, Y, epochs=5, lr=0.5, backend=backend)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.fit(X, Y, epochs=epochs, lr=0.5, backend=backend, history_every=epochs)
        times.append((time.perf_counter() - t) / epochs * 1e3)
    return times


def row_busy4(args) -> dict:
    row: dict = {"goal": "Numba <= 1.5x the NumPy backend, run to run"}
    with busy_processes(limit=args.busy_limit):
        times = {"numba": [], "numpy": []}
        for _ in range(args.busy_rounds):
            for backend in times:
                times[backend] += _or_fits_here(backend, 1)
    for backend, values in times.items():
        row[f"{backend}_ms_per_epoch_median"] = statistics.median(values)
        row[f"{backend}_ms_per_epoch_min"] = min(values)
        row[f"{backend}_ms_per_epoch_max"] = max(values)
    row["numba_over_numpy_median"] = row["numba_ms_per_epoch_median"] / row["numpy_ms_per_epoch_median"]
    row["numba_over_numpy_worst"] = row["numba_ms_per_epoch_max"] / row["numpy_ms_per_epoch_max"]
    return row


def row_busylarge(args) -> dict:
    """The first row's goal at a large size: logistic regression on 12288 x 2048 float32
    (25 M multiply-adds a call, far above the serial threshold) beside two busy processes."""
    import nnx

    rng = np.random.default_rng(3)
    X = np.asfortranarray(rng.random((12288, 2048), dtype=np.float32))
    Y = (rng.random((1, 2048)) > 0.5).astype(np.float32)
    epochs = args.large_epochs
    row: dict = {"goal": "Numba <= 1.5x the NumPy backend", "n": 12288, "m": 2048, "epochs": epochs}
    with busy_processes(limit=args.busy_limit):
        times: dict[str, list[float]] = {"numba": [], "numpy": []}
        for _ in range(3):
            for backend in times:
                model = nnx.LogisticRegression(12288)
                model.fit(X, Y, epochs=1, lr=0.01, backend=backend)
                t = time.perf_counter()
                model.fit(X, Y, epochs=epochs, lr=0.01, backend=backend, history_every=epochs)
                times[backend].append((time.perf_counter() - t) / epochs * 1e3)
    for backend, values in times.items():
        row[f"{backend}_ms_per_epoch"] = values
        row[f"{backend}_ms_per_epoch_median"] = statistics.median(values)
    row["numba_over_numpy"] = row["numba_ms_per_epoch_median"] / row["numpy_ms_per_epoch_median"]
    return row


_GRID = """
import time, numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from nnx.sklearn import NNXClassifier
import sys
backend, hidden = sys.argv[1], tuple(int(h) for h in sys.argv[2].split(",") if h)
X, y = make_classification(n_samples=600, n_features=20, random_state=0)
X = X.astype(np.float32)
clf = NNXClassifier(hidden_layer_sizes=hidden, epochs=300, backend=backend, random_state=0)
grid = {"lr": [0.01, 0.03, 0.1, 0.3]}
GridSearchCV(clf, grid, cv=3, n_jobs=2).fit(X[:60], y[:60])  # workers started, kernels loaded
t = time.perf_counter()
GridSearchCV(clf, grid, cv=3, n_jobs=2).fit(X, y)
print(time.perf_counter() - t)
"""


def row_gridsearch(args) -> dict:
    row: dict = {"goal": "jobs share the cores: default Numba threads <= NUMBA_NUM_THREADS=1 (x1.5)"}
    cases = {
        "numba_default": ("numba", {}),
        "numba_one_thread": ("numba", {"NUMBA_NUM_THREADS": "1"}),
        "numba_parent_NUMBA_NUM_THREADS_2": ("numba", {"NUMBA_NUM_THREADS": "2"}),
        "numpy": ("numpy", {}),
    }
    with busy_processes(limit=args.busy_limit):
        for hidden in ("", "50"):
            label = "logreg" if not hidden else "mlp50"
            for _ in range(args.grid_rounds):
                for name, (backend, extra) in cases.items():
                    out = subprocess.run(
                        [sys.executable, "-c", _GRID, backend, hidden],
                        capture_output=True,
                        text=True,
                        env=_env(**extra),
                        timeout=600,
                    )
                    if out.returncode:
                        raise RuntimeError(out.stderr[-2000:])
                    row.setdefault(f"{label}_{name}_s", []).append(float(out.stdout.split()[-1]))
            for name in cases:
                row[f"{label}_{name}_s_median"] = statistics.median(row[f"{label}_{name}_s"])
            row[f"{label}_default_over_one_thread"] = (
                row[f"{label}_numba_default_s_median"] / row[f"{label}_numba_one_thread_s_median"]
            )
            row[f"{label}_numba_over_numpy"] = (
                row[f"{label}_numba_default_s_median"] / row[f"{label}_numpy_s_median"]
            )
    return row


def _timed_rounds(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each callable, timed in interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


@contextlib.contextmanager
def _build(ops, build: str):
    """Run the block's fused kernels on one build: "parallel" (the thread plan's race off:
    every call on all threads) or "serial" (one Numba thread)."""
    import numba

    saved_adaptive, saved_threads = ops.plan.adaptive, numba.get_num_threads()
    if build == "parallel":
        ops.plan.adaptive = False
    else:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        ops.plan.adaptive = saved_adaptive
        numba.set_num_threads(saved_threads)


def _on_build(ops, build: str, fn):
    def run():
        with _build(ops, build):
            fn()

    return run


def _with_builds(ops, fns: dict, names: tuple) -> dict:
    """``fns`` plus, for each of ``names``, the same call pinned to each build: whether the
    thread plan's choice (the plain entry) was the faster build is then in the figures."""
    out = dict(fns)
    for name in names:
        for build in ("parallel", "serial"):
            out[f"{name}_{build}"] = _on_build(ops, build, fns[name])
    return out


def _logreg_problem(n: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X8 = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
    Y = (rng.random((1, m)) > 0.5).astype(np.float32)
    return X8, Y


def row_uint8(args) -> dict:
    from nnx.backends import get_backend

    ops = get_backend("numba")
    n, m = 12288, args.m
    X8, Y = _logreg_problem(n, m)
    X32 = np.asfortranarray(X8, dtype=np.float32) / np.float32(255)
    w8, w32 = np.zeros((1, n), np.float32), np.zeros((1, n), np.float32)
    b8, b32 = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)
    read8, bytes8 = ops.streaming_read(X8)
    read32, bytes32 = ops.streaming_read(X32)
    fns = {
        "uint8_epoch": lambda: ops.logreg_epoch_(w8, b8, X8, Y, 1e-3, "bce"),
        "float32_epoch": lambda: ops.logreg_epoch_(w32, b32, X32, Y, 1e-3, "bce"),
        "uint8_read": read8,
        "float32_read": read32,
    }
    t = _timed_rounds(_with_builds(ops, fns, ("uint8_epoch", "float32_epoch")), args.rounds)
    row = {f"{k}_ms": v * 1e3 for k, v in t.items()}
    row.update(
        n=n,
        m=m,
        goal="float32 epoch / uint8 epoch >= 4",
        float32_over_uint8=t["float32_epoch"] / t["uint8_epoch"],
        uint8_epoch_over_its_read=t["uint8_epoch"] / t["uint8_read"],
        float32_epoch_over_its_read=t["float32_epoch"] / t["float32_read"],
        read_GBps_uint8=bytes8 / t["uint8_read"] / 1e9,
        read_GBps_float32=bytes32 / t["float32_read"] / 1e9,
        bound_float32_read_over_uint8_read=t["float32_read"] / t["uint8_read"],
    )
    return row


def row_fcc(args) -> dict:
    import nnx
    from nnx.backends import get_backend

    ops = get_backend("numba")
    n, m, epochs = 12288, 20000, args.fcc_epochs
    X8, Y = _logreg_problem(n, m, seed=1)
    read, nbytes = ops.streaming_read(X8)
    read_times = []
    for _ in range(max(5, args.rounds)):
        t = time.perf_counter()
        read()
        read_times.append(time.perf_counter() - t)
    model = nnx.LogisticRegression(n)
    model.fit(X8, Y, epochs=2, lr=0.005, backend="numba")
    t = time.perf_counter()
    model.fit(X8, Y, epochs=epochs, lr=0.005, backend="numba", history_every=epochs)
    fit_s = time.perf_counter() - t
    read_times.sort()
    floor = epochs * statistics.median(read_times)
    return {
        "goal": "fit <= 1.2x the bytes floor",
        "epochs": epochs,
        "issue_epochs": 5000,
        "fit_s": fit_s,
        "floor_s": floor,
        "fit_over_floor": fit_s / floor,
        "fit_s_scaled_to_5000": fit_s * 5000 / epochs,
        "floor_s_scaled_to_5000": floor * 5000 / epochs,
        "read_GBps": nbytes / statistics.median(read_times) / 1e9,
    }


def row_softmax(args) -> dict:
    from nnx.backends import get_backend

    ops = get_backend("numba")
    n, m, K = 12288, args.softmax_m, 10
    rng = np.random.default_rng(2)
    X = np.asfortranarray(rng.random((n, m), dtype=np.float32))
    labels = rng.integers(0, K, (1, m)).astype(np.float32)
    Y = (labels % 2).astype(np.float32)
    W = np.zeros((K, n), np.float32)
    bK = np.zeros((K, 1), np.float32)
    w, b = np.zeros((1, n), np.float32), np.zeros((1, 1), np.float32)
    read, _ = ops.streaming_read(X)
    fns = {
        "softmax_epoch": lambda: ops.softmax_epoch_(W, bK, X, labels, 1e-3),
        "binary_epoch": lambda: ops.logreg_epoch_(w, b, X, Y, 1e-3, "bce"),
        "read": read,
    }
    t = _timed_rounds(_with_builds(ops, fns, ("softmax_epoch", "binary_epoch")), args.rounds)
    row = {f"{k}_ms": v * 1e3 for k, v in t.items()}
    flops = 4 * n * m * K  # two products of K x n x m multiply-adds
    row.update(
        n=n,
        m=m,
        K=K,
        goal="softmax / binary <= 2.5 (and >= 1.5x PyTorch: nnx bench under a PyTorch install)",
        softmax_over_binary=t["softmax_epoch"] / t["binary_epoch"],
        softmax_GFLOPs=flops / t["softmax_epoch"] / 1e9,
    )
    return row


def row_lbfgs(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tto.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "time_to_optimum.py"), "--m", str(args.lbfgs_m)]
        cmd += ["--dtype", "float32,uint8", "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=3000)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        data = json.loads(out.read_text())
    row: dict = {"goal": "nnx reaches scikit-learn's objective >= 5x sooner", "m": args.lbfgs_m}
    for res in data["results"]:
        row[f"{res['x_dtype']}_nnx_faster_by"] = [r.get("ratio") for r in res["nnx"]]
        # ms per evaluation in the run against the same kernel timed alone after it (median):
        # far apart means the machine was busy, not that an evaluation did more work
        row[f"{res['x_dtype']}_ms_per_evaluation_vs_kernel"] = [
            [1e3 * run["seconds_per_evaluation"], run["pass_check"]["evaluation_kernel_ms"][1]]
            for run in res["nnx"]
        ]
        row[f"{res['x_dtype']}_detail"] = res
    return row


def row_distributed(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dist.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "distributed_epoch.py"), "--models", "mlp"]
        cmd += ["--m", "8192", "--chunks", "2", "--epochs", str(args.dist_epochs), "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=3000)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        rows = json.loads(out.read_text())
    row = {"goal": "2 workers x 1 thread <= 1.15x one process x 2 threads", "detail": rows}
    row["distributed_over_single_process"] = rows[0].get("distributed_vs_single_process")
    return row


ROWS = {
    "or3": row_or3,
    "busy4": row_busy4,
    "busylarge": row_busylarge,
    "gridsearch": row_gridsearch,
    "uint8": row_uint8,
    "fcc": row_fcc,
    "softmax": row_softmax,
    "lbfgs": row_lbfgs,
    "distributed": row_distributed,
}


def machine() -> dict:
    import numba
    import numpy

    import nnx

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "nnx_root": str(NNX),
        "nnx": getattr(nnx, "__version__", "?"),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    for mod in ("sklearn", "dask", "threadpoolctl", "torch"):
        with contextlib.suppress(ImportError):
            info[mod] = __import__(mod).__version__
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=NNX)
        info["commit"] = commit.stdout.strip()
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--json", default=None, help="rewritten after every row")
    parser.add_argument("--seconds", type=float, default=3.0, help="or3: seconds each process fits")
    parser.add_argument("--busy-rounds", type=int, default=10)
    parser.add_argument("--busy-limit", type=float, default=300.0, help="busy processes stop by then")
    parser.add_argument("--grid-rounds", type=int, default=1)
    parser.add_argument("--large-epochs", type=int, default=30, help="busylarge: epochs per fit")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (median)")
    parser.add_argument("--m", type=int, default=16384, help="uint8: examples")
    parser.add_argument("--fcc-epochs", type=int, default=500)
    parser.add_argument("--softmax-m", type=int, default=8192)
    parser.add_argument("--lbfgs-m", type=int, default=4000)
    parser.add_argument("--dist-epochs", type=int, default=10)
    args = parser.parse_args()
    record = {"machine": machine(), "rows": {}, "argv": sys.argv[1:]}
    for name in args.rows.split(","):
        load_before = os.getloadavg()
        start = time.perf_counter()
        row = ROWS[name](args)
        row["seconds"] = time.perf_counter() - start
        row["load_before"], row["load_after"] = load_before, os.getloadavg()
        record["rows"][name] = row
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "detail"}
        shown = {k: v for k, v in shown.items() if not k.endswith("_detail")}
        print(name, json.dumps(shown), flush=True)
        if args.json:
            tmp = Path(args.json + ".tmp")
            tmp.write_text(json.dumps(record, indent=1, default=str))
            tmp.replace(args.json)


if __name__ == "__main__":
    main()
