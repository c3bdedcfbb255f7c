"""First step of the GPU run (benchmarks/run_gpu.sh): compile the kernels once, record what
the compiler and the driver made of each, and check every kernel family against the NumPy
backend on small sizes.

Per instantiation (every name expression, plus read_words) it records the compile's
first-call cost, registers per thread, local memory per thread (spilled registers and
stack), static shared memory, the most threads a block may have, and the blocks of the
kernel's launch size that fit on one SM (the driver's occupancy). Then each kernel family
runs on small inputs and is compared with the NumPy backend: results and errors go to
the JSON; nothing stops at the first failure. Exit status 1 when a check failed.

Without a usable GPU (``--dry-run``, or CuPy finds none) it only says what it would run.

    python3 benchmarks/gpu_check.py --json OUT/kernels.json [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nnx  # noqa: E402
from nnx.backends import cuda_launch as plans  # noqa: E402
from nnx.backends.philox import DropoutKey  # noqa: E402

ATTRIBUTES = (
    "num_regs",
    "local_size_bytes",
    "shared_size_bytes",
    "max_threads_per_block",
    "const_size_bytes",
)
PASS_KERNELS = ("logreg_pass", "logreg_staged", "softmax_pass", "softmax_tile")


def launch_block(name: str) -> int:
    """Threads per block the plans launch ``name`` with."""
    return plans.PASS_BLOCK if name.startswith(PASS_KERNELS) else plans.BLOCK


def kernel_facts(ops: Any) -> list[dict[str, Any]]:
    """What the compiler and the driver made of every kernel (None where not reported)."""
    rows = []
    driver = getattr(getattr(ops.cp, "cuda", None), "driver", None)
    for name in [*plans.name_expressions(), "read_words"]:
        row: dict[str, Any] = {"kernel": name, "block": launch_block(name)}
        try:
            kernel = ops._kernel(name)
            for attribute in ATTRIBUTES:
                value = getattr(kernel, attribute, None)
                row[attribute] = int(value) if value is not None else None
            try:
                row["blocks_per_sm"] = int(
                    driver.occupancyMaxActiveBlocksPerMultiprocessor(kernel.kernel.ptr, row["block"], 0)
                )
            except Exception as exc:  # noqa: BLE001 - recorded, not fatal
                row["blocks_per_sm"] = None
                row["occupancy_error"] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        rows.append(row)
    return rows


def _compare(got: Any, want: Any, rtol: float, atol: float) -> dict[str, Any]:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return {"ok": False, "error": f"shape {got.shape} != {want.shape}"}
    same_special = np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(
        got[np.isinf(got)], want[np.isinf(got)]
    )
    finite = np.isfinite(got) & np.isfinite(want)
    diff = np.abs(got[finite] - want[finite])
    scale = np.abs(want[finite])
    ok = bool(same_special and np.all(diff <= atol + rtol * scale))
    return {
        "ok": ok,
        "max_abs_err": float(diff.max()) if diff.size else 0.0,
        "max_rel_err": float((diff / np.maximum(scale, 1e-300)).max()) if diff.size else 0.0,
    }


def _tol(dtype: str) -> tuple[float, float]:
    return (2e-4, 1e-6) if dtype == "float32" else (1e-10, 1e-13)


def checks(
    ops: Any, ref: Any, sm_count: int, features: tuple[int, ...] = (1504, 12288)
) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """(name, check) for every kernel family: each runs ``ops`` and the NumPy backend
    ``ref`` on the same small inputs and returns the comparison; the single-pass epochs
    at each of ``features``."""
    rng = np.random.default_rng(0)
    out: list[tuple[str, Callable[[], dict[str, Any]]]] = []

    def both(fn: Callable[[Any, Callable[[Any], Any]], Any], dtype: str) -> dict[str, Any]:
        got = fn(ops, lambda a: ops.asarray(a, dtype))
        want = fn(ref, lambda a: np.array(a, dtype=dtype))
        got = [ops.to_host(g) if hasattr(g, "shape") else float(g) for g in got]
        results = [_compare(g, w, *_tol(dtype)) for g, w in zip(got, want)]
        return {"ok": all(r["ok"] for r in results), "parts": results}

    for dtype in ("float32", "float64"):
        Z0 = rng.standard_normal((7, 300)) * 4
        Z0[0, :4] = [np.nan, np.inf, -np.inf, 80.0]
        b0 = rng.standard_normal((7, 1))
        for act in ("sigmoid", "relu", "tanh", None):
            out.append(
                (
                    f"bias_act<{dtype}> {act}",
                    lambda d=dtype, a=act, Z0=Z0, b0=b0: both(
                        lambda o, put: [o.bias_activation_(put(Z0), put(b0), a)], d
                    ),
                )
            )
            if act is not None:
                A0 = np.abs(rng.random((7, 300)))
                out.append(
                    (
                        f"act_backward<{dtype}> {act}",
                        lambda d=dtype, a=act, A0=A0, Z0=Z0: both(
                            lambda o, put: [o.activation_backward_(put(Z0), put(A0), a)], d
                        ),
                    )
                )
        out.append(
            (
                f"sigmoid_inplace<{dtype}>",
                lambda d=dtype, Z0=Z0: both(lambda o, put: [o.sigmoid_(put(Z0))], d),
            )
        )
        Y1 = (rng.random((1, 300)) > 0.5).astype(float)
        out.append(
            (
                f"bce_logits<{dtype}>",
                lambda d=dtype, Y1=Y1, Z0=Z0: both(
                    lambda o, put: list(o.bce_from_logits(put(Z0[:1]), put(Y1))), d
                ),
            )
        )
        out.append(
            (
                f"softmax_columns<{dtype}>",
                lambda d=dtype, Z0=Z0: both(lambda o, put: [o.softmax_(put(Z0))], d),
            )
        )
        Yk = rng.integers(0, 7, (1, 300)).astype(float)
        out.append(
            (
                f"softmax_xent<{dtype}>",
                lambda d=dtype, Yk=Yk, Z0=Z0: both(
                    lambda o, put: list(o.softmax_cross_entropy(put(Z0), put(Yk))), d
                ),
            )
        )
        out += _optimizer_checks(ops, ref, dtype, both, rng)
    out += _epoch_checks(ops, ref, sm_count, rng, features)
    return out


def _optimizer_checks(ops, ref, dtype, both, rng):
    p0, g0 = rng.standard_normal((33, 17)), rng.standard_normal((33, 17))
    s0 = np.abs(rng.standard_normal((33, 17)))

    def sgd(o, put):
        p, buf = put(p0), put(s0)
        o.sgd_step_(
            p, put(g0), buf, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True, decay=0.01, first=False
        )
        return [p, buf]

    def rmsprop(o, put):
        p, sq, ga, buf = put(p0), put(s0), put(g0 * 0.1), put(s0)
        o.rmsprop_step_(p, put(g0), sq, ga, buf, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.9, decay=0.01)
        return [p, sq, ga, buf]

    def adam(o, put):
        p, m, v = put(p0), put(g0 * 0.1), put(s0)
        o.adam_step_(
            p,
            put(g0),
            m,
            v,
            beta1=0.9,
            beta2=0.999,
            eps=1e-8,
            step_size=1e-3 / 0.1,
            bc2_sqrt=0.0316,
            decay=0.0,
            shrink=0.999,
        )
        return [p, m, v]

    def dropout(o, put):
        A = put(p0)
        return [o.dropout_(A, o.xp.empty_like(A), 0.3, DropoutKey(12345, 2, 3, 1))]

    return [
        (f"{name}<{dtype}>", lambda fn=fn: both(fn, dtype))
        for name, fn in (
            ("sgd_step", sgd),
            ("rmsprop_step", rmsprop),
            ("adam_step", adam),
            ("dropout_apply", dropout),
        )
    ]


def _epoch_checks(ops, ref, sm_count, rng, features):
    out = []
    m = 3 * sm_count + 5
    for n in features:
        for x_dtype, dtype in (("float32", "float32"), ("float64", "float64"), ("uint8", "float32")):
            if x_dtype == "uint8":
                X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
                X_ref = X.astype(dtype) * np.array(1 / 255, dtype)
            else:
                X = X_ref = np.asfortranarray(rng.random((n, m)).astype(x_dtype))
            Y = (rng.random((1, m)) > 0.5).astype(dtype)
            w0 = (rng.normal(size=(1, n)) * 0.02).astype(dtype)
            for kind in plans.PASS_KINDS:
                out.append(
                    (
                        f"logreg {kind} n={n} {x_dtype}",
                        lambda k=kind, X=X, X_ref=X_ref, Y=Y, w0=w0, d=dtype: _logreg(
                            ops, ref, k, X, X_ref, Y, w0, d
                        ),
                    )
                )
            K = 3
            y = rng.integers(0, K, (1, m)).astype(dtype)
            W0 = (rng.normal(size=(K, n)) * 0.02).astype(dtype)
            for kind, kernel in (("fused", "softmax_pass"), ("tiled", "softmax_tile")):
                out.append(
                    (
                        f"{kernel} n={n} K={K} {x_dtype}",
                        lambda X=X, X_ref=X_ref, y=y, W0=W0, d=dtype, k=kind: _softmax(
                            ops, ref, X, X_ref, y, W0, d, k
                        ),
                    )
                )
    Xr = np.zeros(4096 + 3, np.uint8)[3:]
    out.append(("read_words", lambda: _read_words(ops, Xr)))
    return out


def _logreg(ops, ref, kind, X, X_ref, Y, w0, dtype):
    with ops._forcing_pass(kind):
        plan = ops._pass_plan(X.shape[0], X.shape[1], dtype, X.dtype)
        if plan is None:
            return {"ok": True, "skipped": f"no {kind} plan for this X"}
        Xd, Yd = ops.prepare_fused_input(X, dtype), ops.prepare_labels(Y, dtype)
        w, b = ops.asarray(w0, dtype), ops.asarray(np.full((1, 1), 0.1), dtype)
        rw, rb = w0.copy(), np.full((1, 1), 0.1, dtype)
        losses = [
            (
                float(ops.logreg_epoch_(w, b, Xd, Yd, 0.5, "bce")[0]),
                ref.logreg_epoch_(rw, rb, X_ref, Y, 0.5, "bce")[0],
            )
            for _ in range(2)
        ]
        got = ops.logreg_loss_grad(w, b, Xd, Yd, "bce")
        want = ref.logreg_loss_grad(rw, rb, X_ref, Y, "bce")
    rtol, atol = (1e-4, 1e-6) if dtype == "float32" else (1e-9, 1e-12)
    parts = [
        _compare([g for g, _ in losses], [r for _, r in losses], rtol, atol),
        _compare(ops.to_host(w), rw, rtol, atol),
        _compare(ops.to_host(got[2]), want[2], rtol, atol),
    ]
    return {"ok": all(p["ok"] for p in parts), "kernel": plan.kernel, "parts": parts}


def _softmax(ops, ref, X, X_ref, y, W0, dtype, kind):
    previous, ops.softmax_pass = ops.softmax_pass, kind  # the kernel, whatever the traffic model says
    try:
        Xd = ops.prepare_fused_input(X, dtype, W0.shape[0])
        W, b = ops.asarray(W0, dtype), ops.asarray(np.zeros((W0.shape[0], 1)), dtype)
        rW, rb = W0.copy(), np.zeros((W0.shape[0], 1), dtype)
        Yd = ops.prepare_labels(y, dtype)
        losses = [
            (float(ops.softmax_epoch_(W, b, Xd, Yd, 0.5)[0]), ref.softmax_epoch_(rW, rb, X_ref, y, 0.5)[0])
            for _ in range(2)
        ]
        got = ops.softmax_loss_grad(W, b, Xd, Yd)
        want = ref.softmax_loss_grad(rW, rb, X_ref, y)
    finally:
        ops.softmax_pass = previous
    rtol, atol = (1e-4, 1e-6) if dtype == "float32" else (1e-9, 1e-12)
    parts = [
        _compare([g for g, _ in losses], [r for _, r in losses], rtol, atol),
        _compare(ops.to_host(W), rW, rtol, atol),
        _compare(ops.to_host(got[2]), want[2], rtol, atol),
    ]
    return {"ok": all(p["ok"] for p in parts), "parts": parts}


def _read_words(ops, X):
    run, nbytes = ops.streaming_read(ops.xp.asarray(X) if not isinstance(X, ops.xp.ndarray) else X)
    run()
    ops.synchronize()
    return {"ok": nbytes <= X.nbytes, "bytes": int(nbytes)}


def run_checks(ops: Any, features: tuple[int, ...] = (1504, 12288)) -> dict[str, Any]:
    """Compile, record every kernel's facts, run every check; the results as a dict."""
    result: dict[str, Any] = {"device": None}
    t0 = time.perf_counter()
    result["compile_s"] = ops.compile_kernels()  # the first-call cost (a compile or a disk-cache load)
    result["compile_wall_s"] = time.perf_counter() - t0
    try:
        result["device"] = {k: v for k, v in ops.describe().items() if isinstance(v, (str, int, float, bool))}
    except Exception as exc:  # noqa: BLE001
        result["device_error"] = f"{type(exc).__name__}: {exc}"
    result["kernels"] = kernel_facts(ops)
    ref = nnx.get_backend("numpy")
    result["checks"] = []
    for name, check in checks(ops, ref, ops.sm_count, features):
        t = time.perf_counter()
        try:
            row = check()
        except Exception as exc:  # noqa: BLE001 - every check runs; the error is the result
            row = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                "traceback": traceback.format_exc(limit=4),
            }
        row.update(name=name, seconds=round(time.perf_counter() - t, 4))
        result["checks"].append(row)
        print(f"{'ok  ' if row['ok'] else 'FAIL'} {name}  {row.get('error', '')}", flush=True)
    result["failed"] = [c["name"] for c in result["checks"] if not c["ok"]]
    return result


def dry_run() -> dict[str, Any]:
    """What a run on a GPU would do, without one."""
    names = [*plans.name_expressions(), "read_words"]

    class _Names:  # stands in for a backend: only the check names are taken
        sm_count = 132

    planned = [name for name, _ in checks(_Names(), None, 132, (1504, 12288))]
    return {
        "dry_run": True,
        "would_compile": len(names),
        "kernels": names,
        "would_check": planned,
        "would_record": [*ATTRIBUTES, "blocks_per_sm"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--dry-run", action="store_true", help="only say what would run")
    args = parser.parse_args(argv)
    status = nnx.backends.available()["cupy"]
    if args.dry_run or not status.available:
        result = dry_run()
        result["reason"] = "--dry-run" if args.dry_run else f"cupy unavailable: {status.reason}"
        print(
            f"dry run ({result['reason']}): would compile {result['would_compile']} kernels, record "
            f"{', '.join(result['would_record'])} for each, and run {len(result['would_check'])} checks "
            "against NumPy"
        )
        code = 0
    else:
        result = run_checks(nnx.get_backend("cupy"))
        compiled = result["compile_s"]
        print(
            f"kernels: first call {compiled if compiled is None else round(compiled, 1)} s; "
            f"{len(result['failed'])} of {len(result['checks'])} checks failed"
        )
        code = 1 if result["failed"] else 0
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
