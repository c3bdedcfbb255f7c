"""Time to the optimum: nnx L-BFGS against scikit-learn's LogisticRegression (issue #25).

    python benchmarks/time_to_optimum.py --m 8000,20000 --dtype uint8,float32

For each m and each dtype of X, logistic regression is fitted on 12288 x m pictures
(``nnx.datasets.synthetic_images`` with a share of the labels flipped, so the optimum is
finite) with L2 matching C (nnx: l2 = 1 / C), first by nnx L-BFGS, then by
``sklearn.linear_model.LogisticRegression(C=C)`` (its lbfgs solver), then by nnx again:
the two nnx runs bracket scikit-learn's, so load from other processes on a shared
machine shows up as a difference between them. Reported per contender: the time to reach
scikit-learn's final objective to 1e-6 relative (for nnx, the first iteration whose
parameters do), the iterations and passes over X that took, and the ratio of the times.

Objectives are those both minimise, mean log-loss + ||w||^2 / (2 C m), each measured by
its own solver while it runs; the target (scikit-learn's final objective) and nnx's
iterate that reaches it are then checked by an independent float64 evaluation in
NumPy on the exact data (uint8 pixels / 255), outside the timings. scikit-learn takes
floats: on uint8 X it gets X / 255 as float32 (its cheapest exact-enough input).
scikit-learn's progress is recorded by wrapping the objective it hands to
``scipy.optimize.minimize`` (a Python call per evaluation; nothing else changes).
A pass over X: one nnx evaluation reads X once; a scikit-learn evaluation reads it twice
(X w, then X^T times the residuals).

After each nnx run the same process times, on the same X, the evaluation's kernel alone
(``Backend.logreg_loss_grad``), the fused epoch and a parallel read of X (``pass_check``,
fastest and median of 5, interleaved), and records which kernel builds the run's
evaluations took (``builds``: the thread plan's serial or parallel one). An nnx
``seconds_per_evaluation`` well above ``pass_check``'s kernel time means the machine was
busy during the run, not that an evaluation did more than one pass.

This is a benchmark, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nnx  # noqa: E402
from nnx.datasets import synthetic_images  # noqa: E402
from nnx.lbfgs import fit_lbfgs  # noqa: E402


def pictures(m: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 X (12288, m) example-contiguous and Y (1, m) with ``noise`` of labels flipped."""
    X, Y = synthetic_images(m, seed=seed)
    flip = np.random.default_rng(seed + 1).random(m) < noise
    return X, np.where(flip, 1 - Y, Y).astype(np.int64)


def objective64(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, C: float) -> float:
    """mean log-loss + ||w||^2 / (2 C m) in float64 on X (n, m) F-ordered (uint8 / 255)."""
    n, m = X.shape
    scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    w = np.asarray(w, np.float64).reshape(-1)
    total = 0.0
    for lo in range(0, m, 2048):
        hi = min(m, lo + 2048)
        z = (w @ X[:, lo:hi].astype(np.float64)) * scale + b
        total += float(np.sum(np.logaddexp(0.0, z) - y[lo:hi] * z))
    return total / m + float(w @ w) / (2.0 * C * m)


def run_sklearn(X_sk: np.ndarray, y: np.ndarray, C: float, max_iter: int, tol: float) -> dict:
    """Fit scikit-learn's LogisticRegression, recording (seconds, objective) per evaluation."""
    import warnings

    import scipy.optimize
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    trace: list[tuple[float, float]] = []
    results = []
    original = scipy.optimize.minimize
    start = [0.0]

    def recording_minimize(fun, x0, *args, **kwargs):
        def recorded(w, *fargs):
            value = fun(w, *fargs)
            trace.append((time.perf_counter() - start[0], float(value[0])))
            return value

        result = original(recorded, x0, *args, **kwargs)
        results.append(result)
        return result

    scipy.optimize.minimize = recording_minimize
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start[0] = time.perf_counter()
            model = LogisticRegression(C=C, max_iter=max_iter, tol=tol).fit(X_sk, y)
            seconds = time.perf_counter() - start[0]
    finally:
        scipy.optimize.minimize = original
    result = results[-1]
    return {
        "seconds": seconds,
        "iterations": int(model.n_iter_[0]),
        "evaluations": int(result.nfev),
        "passes": 2 * int(result.nfev),
        "message": str(result.message),
        "own_objective": float(result.fun),
        "trace": trace,
        "coef": model.coef_.reshape(-1),
        "intercept": float(model.intercept_[0]),
    }


def run_nnx(X: np.ndarray, y: np.ndarray, C: float, target_own: float, args) -> dict:
    """nnx L-BFGS from zeros, recording each iteration's parameters; stops ``args.after``
    iterations after its own objective first falls to ``target_own`` (or at its own stop)."""
    snapshots: list[tuple[np.ndarray, float]] = []
    reached = [None]

    def record(iteration, net, history):
        w, b = net.params[0]
        snapshots.append((net.ops.to_host(w).reshape(-1).copy(), float(net.ops.to_host(b)[0, 0])))
        if reached[0] is None and history.objective[-1] <= target_own:
            reached[0] = iteration
        return reached[0] is not None and iteration >= reached[0] + args.after

    model = nnx.LogisticRegression(X.shape[0])
    optimizer = nnx.LBFGS(tol=args.nnx_tol, m=10)
    ops = nnx.get_backend(args.backend)
    builds: dict[str, int] = {}
    parallel = getattr(ops, "_parallel", None)
    if parallel is not None:  # Numba: count the builds (serial / parallel) the plan hands out

        @contextlib.contextmanager
        def counted(name, work, always=False):
            with parallel(name, work, always) as kernel:
                key = getattr(kernel, "__name__", name)
                builds[key] = builds.get(key, 0) + 1
                yield kernel

        ops._parallel = counted
    t0 = time.perf_counter()
    try:
        history = fit_lbfgs(
            model,
            X,
            y,
            optimizer,
            epochs=args.nnx_max_iter,
            l2=1.0 / C,
            backend=args.backend,
            dtype=args.compute,
            callback=record,
        )
    finally:
        if parallel is not None:
            del ops._parallel  # the bound method again
    seconds = time.perf_counter() - t0
    solver = history.solver
    return {
        "seconds": seconds,
        # input checks before fit_lbfgs's own clock starts count too
        "prelude": seconds - history.seconds,
        "history": history,
        "snapshots": snapshots,
        "iterations": solver["iterations"],
        "evaluations": solver["evaluations"],
        "evaluation_seconds": solver["evaluation_seconds"],
        "builds": builds,
    }


def pass_check(X: np.ndarray, y: np.ndarray, args, rounds: int = 5) -> dict:
    """Milliseconds (fastest, median of ``rounds``, interleaved) of one evaluation's kernel
    (``logreg_loss_grad``), one fused epoch and one parallel read of X, in this process on
    the X the nnx runs read: what an evaluation costs on this machine now."""
    ops = nnx.get_backend(args.backend)
    dtype = args.compute
    Xp = ops.prepare_fused_input(X, dtype)
    Yp = ops.prepare_labels(y.reshape(1, -1), dtype)
    w = ops.asarray(np.zeros((1, X.shape[0])), dtype)
    b = ops.asarray(np.zeros((1, 1)), dtype)
    read, _ = ops.streaming_read(Xp)
    runs = {
        "evaluation_kernel": lambda: ops.logreg_loss_grad(w, b, Xp, Yp, "bce"),
        "fused_epoch": lambda: ops.logreg_epoch_(w, b, Xp, Yp, 0.0, "bce"),
        "read": read,
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():
        f()
    for _ in range(rounds):
        for name, f in runs.items():
            t = time.perf_counter()
            f()
            ops.synchronize()
            times[name].append(time.perf_counter() - t)
    out = {f"{k}_ms": [1e3 * min(v), 1e3 * float(np.median(v))] for k, v in times.items()}
    out["load_average"] = os.getloadavg()
    return out


def first_reaching(X, y, C, snapshots, own, target64) -> tuple[int | None, float]:
    """Index of the first snapshot whose float64 objective is <= target64 (binary search:
    L-BFGS iterates lower the objective monotonically), starting near where nnx's own
    figures cross; and the best float64 objective seen."""
    evaluate = lambda i: objective64(X, y, snapshots[i][0], snapshots[i][1], C)  # noqa: E731
    last = evaluate(len(snapshots) - 1)
    if last > target64:
        return None, last
    lo, hi = 0, len(snapshots) - 1  # hi reaches it
    guess = next((i for i, f in enumerate(own) if f <= target64 * (1 + 2e-6)), hi)
    lo = max(0, guess - 8)
    if evaluate(lo) <= target64:
        lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if evaluate(mid) <= target64:
            hi = mid
        else:
            lo = mid + 1
    return hi, last


def one_case(m: int, x_dtype: str, X8: np.ndarray, y: np.ndarray, args) -> dict:
    C = args.C
    X = X8 if x_dtype == "uint8" else (X8 * np.float32(1 / 255)).astype(np.float32, order="F")
    X_sk = X.T if x_dtype == "float32" else np.ascontiguousarray(X8.T, dtype=np.float32) * np.float32(1 / 255)
    label = f"m={m} X {x_dtype}"
    print(f"\n== {label}: nnx ({args.backend}, compute {args.compute}) / scikit-learn / nnx", flush=True)

    # scikit-learn's run decides the target; nnx runs on both sides of it
    first_guess = run_nnx(X, y[0], C, -np.inf, _quick(args))  # warm (page faults, caches)
    sk = run_sklearn(X_sk, y[0], C, args.sk_max_iter, args.sk_tol)
    target_own = sk["own_objective"] * (1 + args.rel)
    nnx_runs = []
    for _ in range(2):
        nnx_runs.append(run_nnx(X, y[0], C, target_own, args))
        nnx_runs[-1]["pass_check"] = pass_check(X, y[0], args)
    del first_guess

    sk64 = objective64(X8 if x_dtype == "uint8" else X, y[0], sk["coef"], sk["intercept"], C)
    target64 = sk64 * (1 + args.rel)
    sk_hit = next(t for t, f in sk["trace"] if f <= target_own)
    sk_evals_to_hit = next(i + 1 for i, (_, f) in enumerate(sk["trace"]) if f <= target_own)
    row = {
        "m": m,
        "x_dtype": x_dtype,
        "C": C,
        "target_objective": target64,
        "sklearn": {
            "seconds_to_target": sk_hit,
            "seconds_total": sk["seconds"],
            "iterations": sk["iterations"],
            "evaluations": sk["evaluations"],
            "passes_to_target": 2 * sk_evals_to_hit,
            "final_objective_float64": sk64,
            "message": sk["message"],
            "seconds_per_evaluation": sk["seconds"] / sk["evaluations"],
        },
        "nnx": [],
    }
    for run in nnx_runs:
        history = run["history"]
        own = history.objective
        index, best = first_reaching(
            X8 if x_dtype == "uint8" else X, y[0], C, run["snapshots"], own, target64
        )
        entry = {
            "iterations_run": run["iterations"],
            "evaluations_run": run["evaluations"],
            "seconds_total": run["seconds"],
            "seconds_per_evaluation": run["evaluation_seconds"] / run["evaluations"],
            "stop_reason": history.stop_reason,
            "best_objective_float64": best,
            "builds": run["builds"],
            "pass_check": run["pass_check"],
        }
        if index is not None:
            # passes to reach it: evaluations up to that iteration (scipy evaluates x0 first)
            seconds = run["prelude"] + history.solver["elapsed"][index]
            entry.update(
                seconds_to_target=seconds,
                iterations_to_target=index + 1,
                passes_to_target=history.solver["passes"][index],
                ratio=sk_hit / seconds,
            )
        row["nnx"].append(entry)
    report(row)
    return row


def _quick(args):
    """Options for the warm-up run: a few iterations."""
    quick = argparse.Namespace(**vars(args))
    quick.nnx_max_iter, quick.after = 3, 0
    return quick


def report(row: dict) -> None:
    sk = row["sklearn"]
    print(
        f"  scikit-learn: {sk['seconds_to_target']:.2f} s to its final objective "
        f"{sk['final_objective_float64']:.10g} "
        f"(fit {sk['seconds_total']:.2f} s, {sk['iterations']} iterations, {sk['evaluations']} evaluations = "
        f"{sk['passes_to_target']} passes to target, {1e3 * sk['seconds_per_evaluation']:.1f} ms/evaluation; "
        f"{sk['message']})"
    )
    for i, run in enumerate(row["nnx"], 1):
        if "seconds_to_target" in run:
            print(
                f"  nnx run {i}: {run['seconds_to_target']:.2f} s to target, "
                f"{run['iterations_to_target']} iterations, {run['passes_to_target']} passes "
                f"({1e3 * run['seconds_per_evaluation']:.1f} ms/evaluation, one pass each) -> "
                f"{run['ratio']:.1f}x faster than scikit-learn"
            )
        else:
            print(
                f"  nnx run {i}: did not reach the target in {run['iterations_run']} iterations "
                f"(best {run['best_objective_float64']:.10g}, {run['stop_reason']})"
            )
        check = run["pass_check"]
        kernel, epoch, read = (check[f"{k}_ms"] for k in ("evaluation_kernel", "fused_epoch", "read"))
        print(
            f"    same process after it: evaluation kernel {kernel[0]:.1f} ms, "
            f"fused epoch {epoch[0]:.1f} ms, read of X {read[0]:.1f} ms (fastest of 5; "
            f"medians {kernel[1]:.1f} / {epoch[1]:.1f} / {read[1]:.1f}); builds {run['builds']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", default="8000", help="comma-separated example counts (default 8000)")
    parser.add_argument("--dtype", default="uint8,float32", help="dtypes of X: uint8, float32")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength (nnx l2 = 1/C)")
    parser.add_argument("--noise", type=float, default=0.2, help="share of labels flipped")
    parser.add_argument("--rel", type=float, default=1e-6, help="relative tolerance on the target")
    parser.add_argument("--sk-max-iter", type=int, default=1000)
    parser.add_argument("--sk-tol", type=float, default=1e-4, help="scikit-learn's tol (its default)")
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--compute", default="float32", help="nnx compute dtype")
    parser.add_argument("--nnx-tol", type=float, default=1e-8)
    parser.add_argument("--nnx-max-iter", type=int, default=3000)
    parser.add_argument("--after", type=int, default=10, help="nnx iterations run past the target")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.m.split(",")]
    dtypes = args.dtype.split(",")
    import sklearn

    env = {
        "argv": sys.argv,
        "python": platform.python_version(),
        "nnx": nnx.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "backend": nnx.get_backend(args.backend).describe(),
        "load_average_start": os.getloadavg(),
    }
    print(json.dumps({k: v for k, v in env.items() if k != "argv"}))
    # compile nnx's kernels for these dtypes before any timing (Numba caches them on disk)
    Xw, Yw = pictures(64, args.noise, seed=99)
    for dtype in dtypes:
        Xq = Xw if dtype == "uint8" else (Xw / 255).astype(np.float32, order="F")
        fit_lbfgs(nnx.LogisticRegression(Xq.shape[0]), Xq, Yw, nnx.LBFGS(), epochs=2, backend=args.backend)
    rows = []
    for m in sizes:
        t0 = time.perf_counter()
        X8, y = pictures(m, args.noise)
        print(f"\nbuilt {m} pictures in {time.perf_counter() - t0:.1f} s", flush=True)
        for dtype in dtypes:
            rows.append(one_case(m, dtype, X8, y, args))
    env["load_average_end"] = os.getloadavg()
    print("\nsummary (time to scikit-learn's final objective, to 1e-6 relative):")
    for row in rows:
        ratios = [r.get("ratio") for r in row["nnx"]]
        shown = ", ".join("not reached" if r is None else f"{r:.1f}x" for r in ratios)
        sk = row["sklearn"]
        times = ", ".join(f"{r['seconds_to_target']:.2f} s" for r in row["nnx"] if "seconds_to_target" in r)
        print(
            f"  m={row['m']:>6} X {row['x_dtype']:>7}: scikit-learn {sk['seconds_to_target']:.2f} s, "
            f"nnx {times} -> nnx faster by {shown}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
