"""Epoch throughput of every backend on 12288 x m batches, against the machine's limits.

This module runs the benchmark and writes its record; what is timed is built in
``bench_workloads`` and how it is timed is ``bench_timing`` (the PNG: ``plot.throughput``).
One training epoch (forward, backward, update) is timed for logistic regression, softmax
regression over 10 classes ("softmax") and the 12288->50->1 MLP, the MLP both with plain
gradient descent ("mlp") and with Adam ("mlp-adam", its ``epoch_time_over_sgd`` ratio is
the optimizer's overhead). Reference points measured in the same run:

* read bandwidth: a parallel streaming sum over the same X (CPU; timed in the same
  interleaved rounds as the epochs it rates), or on a GPU a device-to-device copy of X
  (its rate counts the bytes read and the bytes written) and a pure-read kernel;
* BLAS/cuBLAS rate: the two big products an MLP or softmax epoch must do, W X and
  dZ X^T, alone (``blas_products_time_over_epoch``: 1 is an epoch as fast as its products);
* PyTorch (CPU or CUDA, when installed) doing the same epoch by hand on the same data,
  and its two MLP products alone; the ratios of PyTorch's times to the read reference and
  to the BLAS products are the ceilings on the speedups over PyTorch in that run;
* on a GPU, the logistic-regression epoch with each single-pass kernel forced
  (``cupy_staged_pass``, ``cupy_registers_pass``), so the default's choice is checked.

Compile/JIT time (the first call) is reported apart from the steady state; the CUDA
module's compile (NVRTC, once per process: CuPy 13.6/14.0 keep no disk cache of it) is
done and timed by ``info.collect`` before any timing (``environment``, the GPU backend's
``kernel_compile_s``). Each figure is the median of several runs with its spread; GPU work
(CuPy and PyTorch CUDA alike) is timed with CUDA events on the stream that runs it.
"""

from __future__ import annotations

import datetime as _dt
import functools
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import backends
from ..errors import BackendUnavailableError
from .bench_timing import BLAS_IDLE_S, Contender, time_interleaved, time_repeated
from .bench_workloads import (
    MODELS,
    N_X,
    X_DTYPES,
    blas_products,
    epoch_function,
    kernel_variants,
    make_data,
    product_rows,
    read_reference,
    torch_contenders,
    useful_flops,
)

__all__ = ["BLAS_IDLE_S", "MODELS", "N_X", "X_DTYPES", "Row", "format_table", "run"]

_READ = "read_reference"  # contender name of the CPU read-bandwidth reference


def gpu_limits(ops: backends.Backend, X: np.ndarray, repeats: int) -> dict[str, float]:
    """The device's memory rates on X as the fused kernels read it: a device-to-device copy
    (``gpu_copy_read_write_gb_s``: bytes read plus bytes written, 2 x X per copy, per
    second) and a pure-read kernel (``gpu_read_kernel_gb_s``: bytes read per second)."""
    xp = ops.xp
    Xd = ops.prepare_fused_input(X, "float32" if X.dtype != np.float64 else "float64")
    dst = xp.empty_like(Xd)
    t = time_repeated(lambda: xp.copyto(dst, Xd), ops.synchronize, ops.timer(), repeats)
    out = {"gpu_copy_read_write_gb_s": 2 * Xd.nbytes / t.median / 1e9}
    read, read_bytes = ops.streaming_read(Xd)
    t = time_repeated(read, ops.synchronize, ops.timer(), repeats)
    out["gpu_read_kernel_gb_s"] = read_bytes / t.median / 1e9
    return out


@dataclass
class Row:
    """One measured configuration."""

    backend: str
    model: str
    m: int
    x_dtype: str
    compute_dtype: str
    seconds: float
    low: float
    high: float
    first_call: float
    examples_per_s: float
    x_gb_per_s: float
    gflops: float
    ratios: dict[str, float] = field(default_factory=dict)


def run(
    backend_names: Iterable[str],
    models: Iterable[str] = MODELS,
    ms: Iterable[int] = (256, 2048, 16384),
    x_dtypes: Iterable[str] = ("float32", "uint8"),
    repeats: int = 5,
    with_torch: bool = True,
    progress: Callable[[str], None] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Measure every (backend, model, m, x dtype) and return a JSON-able record.

    ``checkpoint``, when given, receives the record so far (``"complete": False``) after
    each group of rows, so a run stopped by a time limit still leaves what it measured.
    """
    from .info import collect

    say = progress or (lambda msg: None)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    environment = collect()
    names = [n for n in backend_names if backends.available()[n].available]
    skipped = {n: backends.available()[n].reason for n in backend_names if n not in names}
    if not names:
        raise BackendUnavailableError(
            "none of the requested backends can run here: "
            + "; ".join(f"{n} ({reason})" for n, reason in skipped.items())
        )
    rows: list[Row] = []
    limits: dict[str, Any] = {}
    torch_info: dict[str, Any] = {}
    snapshot = functools.partial(_record, started, environment, torch_info, skipped, limits, repeats, rows)
    for m in ms:
        for x_dtype in x_dtypes:
            X, Y = make_data(m, x_dtype)
            dtype = "float64" if x_dtype == "float64" else "float32"
            cpu = any(not backends.get_backend(n).is_gpu for n in names)
            gpu_ops = next((backends.get_backend(n) for n in names if backends.get_backend(n).is_gpu), None)
            if cpu:
                limits[f"m={m},{x_dtype}"] = {}
            if gpu_ops is not None:
                limits[f"gpu m={m},{x_dtype}"] = gpu_limits(gpu_ops, X, repeats)
            for model in models:
                say(f"m={m} {x_dtype} {model}: " + ", ".join(names))
                contenders: dict[str, Contender] = {}
                for name in names:
                    ops = backends.get_backend(name)
                    contenders[name] = Contender(
                        epoch_function(ops, model, X, Y, dtype), ops.synchronize, ops.timer()
                    )
                if model == "logreg" and gpu_ops is not None:
                    for name, fn in kernel_variants(gpu_ops, X, Y, dtype).items():
                        contenders[name] = Contender(fn, gpu_ops.synchronize, gpu_ops.timer())
                if cpu:  # the read reference runs in the same rounds as the epochs it rates
                    read_name, read_fn = read_reference(X)
                    contenders[_READ] = Contender(read_fn, lambda: None)
                # the two big products alone: the MLP's on floats, and softmax regression's
                # (its K x 12288 W; on floats, which also bounds the epoch on raw pixels)
                if (model == "mlp" and x_dtype != "uint8") or model == "softmax":
                    w_rows = product_rows(model)
                    if cpu:
                        numpy_ops = backends.get_backend("numpy")
                        for order, fn in blas_products(numpy_ops, X, dtype, w_rows).items():
                            contenders[f"blas_{order}"] = Contender(fn, numpy_ops.synchronize)
                    if gpu_ops is not None:
                        for order, fn in blas_products(gpu_ops, X, dtype, w_rows).items():
                            contenders[f"cublas_{order}"] = Contender(
                                fn, gpu_ops.synchronize, gpu_ops.timer()
                            )
                for device, wanted in (("cpu", cpu), ("cuda", gpu_ops is not None)):
                    if with_torch and wanted:
                        made, info = torch_contenders(model, X, Y, dtype, device)
                        contenders.update(made)
                        torch_info.update({f"{device}_{k}": v for k, v in info.items()})
                # with no CPU contender no OpenBLAS pool runs, so nothing has to go idle
                times = time_interleaved(contenders, repeats, idle_s=BLAS_IDLE_S if cpu else 0.0)
                read_bw = float("nan")
                if cpu:
                    read_bw = X.nbytes / times[_READ].median / 1e9
                    limits[f"m={m},{x_dtype}"][f"{read_name}_{model}_group"] = read_bw
                floor = {}
                for kind in ("blas", "cublas"):
                    layouts = [times[k] for k in (f"{kind}_C", f"{kind}_F") if k in times]
                    if layouts:
                        floor[kind] = min(layouts, key=lambda t: t.median)
                        key = f"m={m},{x_dtype}" if kind == "blas" else f"gpu m={m},{x_dtype}"
                        which = "" if model == "mlp" else f"{model}_"
                        limits[key][f"{kind}_{which}products_gflops"] = (
                            4.0 * N_X * product_rows(model) * m / floor[kind].median / 1e9
                        )
                        torch_name = "torch_cpu_products" if kind == "blas" else "torch_cuda_products"
                        if torch_name in times:  # the most an epoch with these products can gain
                            limits[key][f"{torch_name}_over_{kind}_products"] = (
                                times[torch_name].median / floor[kind].median
                            )
                if gpu_ops is not None:  # each single-pass kernel forced, as X read rate
                    for name in (n for n in times if n.endswith("_pass")):
                        limits[f"gpu m={m},{x_dtype}"][f"{name}_gb_s"] = X.nbytes / times[name].median / 1e9
                if cpu and model == "logreg" and "torch_cpu" in times:
                    # the most a kernel reading X once at the measured bandwidth can gain
                    limits[f"m={m},{x_dtype}"]["torch_cpu_logreg_epoch_over_read"] = (
                        times["torch_cpu"].median / times[_READ].median
                    )
                group_rows: list[Row] = []
                for name in names:
                    ops = backends.get_backend(name)
                    t = times[name]
                    row = Row(
                        backend=name,
                        model=model,
                        m=m,
                        x_dtype=x_dtype,
                        compute_dtype=dtype,
                        seconds=t.median,
                        low=t.low,
                        high=t.high,
                        first_call=t.first,
                        examples_per_s=m / t.median,
                        x_gb_per_s=X.nbytes / t.median / 1e9,
                        gflops=useful_flops(model, m) / t.median / 1e9,
                    )
                    if ops.is_gpu:
                        gpu = limits[f"gpu m={m},{x_dtype}"]
                        # X read per second against the copy's bytes moved (read + write) per second
                        row.ratios["x_read_vs_gpu_copy_bandwidth"] = (
                            row.x_gb_per_s / gpu["gpu_copy_read_write_gb_s"]
                        )
                        row.ratios["x_read_vs_gpu_read_kernel"] = row.x_gb_per_s / gpu["gpu_read_kernel_gb_s"]
                        if "cublas" in floor:
                            row.ratios["cublas_products_time_over_epoch"] = floor["cublas"].median / t.median
                        if "torch_cuda" in times:
                            row.ratios["speedup_vs_torch_cuda"] = times["torch_cuda"].median / t.median
                    else:
                        row.ratios["x_read_vs_bandwidth"] = row.x_gb_per_s / read_bw
                        if "blas" in floor:
                            row.ratios["blas_products_time_over_epoch"] = floor["blas"].median / t.median
                        if "torch_cpu" in times:
                            row.ratios["speedup_vs_torch_cpu"] = times["torch_cpu"].median / t.median
                    group_rows.append(row)
                base = next((r for r in group_rows if r.backend == "numpy"), None)
                for row in group_rows:
                    if base is not None:
                        row.ratios["speedup_vs_numpy"] = base.seconds / row.seconds
                rows.extend(group_rows)
                del contenders, times
                if checkpoint is not None:
                    checkpoint(snapshot(complete=False))
    return snapshot(complete=True)


def _record(
    started: str,
    environment: dict[str, Any],
    torch_info: dict[str, Any],
    skipped: dict[str, str],
    limits: dict[str, Any],
    repeats: int,
    rows: list[Row],
    complete: bool,
) -> dict[str, Any]:
    """The JSON-able record of the rows so far, with uint8 vs float32 ratios where both ran."""
    by_key = {(r.backend, r.model, r.m, r.x_dtype): r for r in rows}
    for r in rows:
        f32 = by_key.get((r.backend, r.model, r.m, "float32"))
        if r.x_dtype == "uint8" and f32 is not None:
            r.ratios["speedup_vs_float32_input"] = f32.seconds / r.seconds
        sgd = by_key.get((r.backend, "mlp", r.m, r.x_dtype))
        if r.model == "mlp-adam" and sgd is not None:  # the optimizer step's overhead
            r.ratios["epoch_time_over_sgd"] = r.seconds / sgd.seconds
    return {
        "date": started,
        "complete": complete,
        "environment": environment,
        "torch": dict(torch_info),
        "skipped_backends": skipped,
        "limits": {k: dict(v) for k, v in limits.items()},
        "repeats": repeats,
        "rows": [asdict(r) for r in rows],
    }


def format_table(result: dict[str, Any]) -> str:
    """The rows as a fixed-width text table of times and ratios."""
    head = (
        f"{'backend':8s} {'model':8s} {'m':>6s} {'X':7s} {'median ms':>10s} {'spread ms':>15s} "
        f"{'first ms':>9s} {'ex/s':>10s} {'X GB/s':>7s} {'GFLOP/s':>8s}  ratios"
    )
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        ratios = "  ".join(f"{k}={v:.2f}" for k, v in r["ratios"].items())
        lines.append(
            f"{r['backend']:8s} {r['model']:8s} {r['m']:6d} {r['x_dtype']:7s} {r['seconds'] * 1e3:10.2f} "
            f"{r['low'] * 1e3:7.2f}-{r['high'] * 1e3:<7.2f} {r['first_call'] * 1e3:9.1f} "
            f"{r['examples_per_s']:10.3g} {r['x_gb_per_s']:7.2f} {r['gflops']:8.1f}  {ratios}"
        )
    for key, lim in result["limits"].items():
        lines.append(f"limits {key}: " + ", ".join(f"{k}={v:.3g}" for k, v in lim.items()))
    if result["skipped_backends"]:
        lines.append("skipped: " + "; ".join(f"{k} ({v})" for k, v in result["skipped_backends"].items()))
    return "\n".join(lines)
