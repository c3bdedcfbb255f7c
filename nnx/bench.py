"""Epoch throughput of every backend on 12288 x m batches, against the machine's limits.

One training epoch (forward, backward, update) is timed for logistic regression and the
12288->50->1 MLP, the MLP both with plain gradient descent ("mlp") and with Adam
("mlp-adam", its ``epoch_time_over_sgd`` ratio is the optimizer's overhead). Reference
points measured in the same run:

* read bandwidth: a parallel streaming sum over the same X (CPU; timed in the same
  interleaved rounds as the epochs it rates), or on a GPU a device-to-device copy of X
  (its rate counts the bytes read and the bytes written) and a pure-read kernel;
* BLAS/cuBLAS rate: the two big products an MLP epoch must do, W1 X and dZ1 X^T, alone;
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
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import backends
from .backends.cuda_launch import PASS_KINDS, read_words_bytes
from .errors import BackendUnavailableError
from .network import Block, DeviceNetwork
from .optim import Adam

N_X = 12288
HIDDEN = 50
MODELS = ("logreg", "mlp", "mlp-adam")  # mlp-adam: the MLP's epoch with an Adam step
X_DTYPES = ("float32", "float64", "uint8")


@dataclass
class Timing:
    """Median and spread (min, max) of repeated runs, in seconds, plus the first call."""

    median: float
    low: float
    high: float
    first: float
    runs: int


BLAS_IDLE_S = 0.3
_READ = "read_reference"  # contender name of the CPU read-bandwidth reference


@dataclass
class CudaEvents:
    """CUDA timing events of one library (CuPy or PyTorch): ``pair()`` makes a (start,
    end) pair recorded on that library's current stream, ``seconds(start, end)`` reads the
    time between them once ``end`` has been synchronised."""

    pair: Callable[[], tuple[Any, Any]]
    seconds: Callable[[Any, Any], float]


def cupy_events(ops: backends.Backend) -> CudaEvents:
    cp = ops.xp
    return CudaEvents(
        lambda: (cp.cuda.Event(), cp.cuda.Event()),
        lambda start, end: cp.cuda.get_elapsed_time(start, end) / 1e3,
    )


def torch_events(torch: Any) -> CudaEvents:
    def pair() -> tuple[Any, Any]:
        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    return CudaEvents(pair, lambda start, end: start.elapsed_time(end) / 1e3)


def time_gpu(ops: backends.Backend, fn: Callable[[], Any], repeats: int) -> Timing:
    """Time ``fn`` once cold, then ``repeats`` times warm with CUDA events (CuPy)."""
    events = cupy_events(ops)
    t0 = time.perf_counter()
    fn()
    ops.synchronize()
    first = time.perf_counter() - t0
    fn()
    ops.synchronize()
    start, end = events.pair()
    samples = []
    for _ in range(max(1, repeats)):
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(events.seconds(start, end))
    return Timing(statistics.median(samples), min(samples), max(samples), first, len(samples))


def gpu_limits(ops: backends.Backend, X: np.ndarray, repeats: int) -> dict[str, float]:
    """The device's memory rates on X as the fused kernels read it: a device-to-device copy
    (``gpu_copy_read_write_gb_s``: bytes read plus bytes written, 2 x X per copy, per
    second) and a pure-read kernel (``gpu_read_kernel_gb_s``: bytes read per second)."""
    cp = ops.xp
    Xd = ops.prepare_fused_input(X, "float32" if X.dtype != np.float64 else "float64")
    dst = cp.empty_like(Xd)
    t = time_gpu(ops, lambda: cp.copyto(dst, Xd), repeats)
    out = {"gpu_copy_read_write_gb_s": 2 * Xd.nbytes / t.median / 1e9}
    read_bytes = read_words_bytes(Xd)
    t = time_gpu(ops, lambda: ops.read_all(Xd), repeats)
    out["gpu_read_kernel_gb_s"] = read_bytes / t.median / 1e9
    return out


@dataclass
class Contender:
    """One thing timed in a group: an epoch on a backend, PyTorch's epoch, or the products.
    GPU work is timed with its library's CUDA ``events``; CPU work with the wall clock."""

    fn: Callable[[], Any]
    sync: Callable[[], None]
    events: CudaEvents | None = None


def time_interleaved(
    contenders: dict[str, Contender], repeats: int, burst_s: float = 0.05, idle_s: float | None = None
) -> dict[str, Timing]:
    """Time every contender once per round, for ``repeats`` rounds, and take medians.

    Interleaving keeps slow drift of a shared machine from favouring whoever ran first.
    In each round a contender first gets ``idle_s`` (default ``BLAS_IDLE_S``) for OpenBLAS
    workers (which spin ~0.1 s after a product) to go idle, then one untimed call to wake
    its threads, then a burst of calls lasting at least ``burst_s``; the sample is the
    mean time per call.
    """
    idle_s = BLAS_IDLE_S if idle_s is None else idle_s
    first: dict[str, float] = {}
    for name, c in contenders.items():  # cold call (compile, JIT) then one warm-up
        time.sleep(idle_s)
        t0 = time.perf_counter()
        c.fn()
        c.sync()
        first[name] = time.perf_counter() - t0
        c.fn()
        c.sync()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    calls: dict[str, int] = {}
    for _ in range(max(1, repeats)):
        for name, c in contenders.items():
            time.sleep(idle_s)
            c.fn()  # wake the threads (and the GPU clocks)
            c.sync()
            n = calls.get(name, 1)
            if c.events is not None:
                start, end = c.events.pair()
                start.record()
                for _ in range(n):
                    c.fn()
                end.record()
                end.synchronize()
                elapsed = c.events.seconds(start, end)
            else:
                t0 = time.perf_counter()
                for _ in range(n):
                    c.fn()
                c.sync()
                elapsed = time.perf_counter() - t0
            samples[name].append(elapsed / n)
            calls[name] = max(1, min(1000, int(burst_s / max(elapsed / n, 1e-6)) + 1))
    return {
        name: Timing(statistics.median(v), min(v), max(v), first[name], len(v)) for name, v in samples.items()
    }


def make_data(m: int, x_dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Example-contiguous X (12288, m) in ``x_dtype`` (uint8 pixels or floats in [0, 1)) and Y."""
    rng = np.random.default_rng(seed)
    if x_dtype == "uint8":
        Xt = rng.integers(0, 256, size=(m, N_X), dtype=np.uint8)
    else:
        Xt = rng.random((m, N_X), dtype=np.float32 if x_dtype == "float32" else np.float64)
    Y = (rng.random((1, m)) > 0.5).astype(np.float64)
    return Xt.T, Y


def _blocks(model: str) -> list[Block]:
    if model == "logreg":
        return [Block(N_X, 1, "sigmoid")]
    return [Block(N_X, HIDDEN, "relu"), Block(HIDDEN, 1, "sigmoid")]


def _params(model: str, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((blk.n_out, blk.n_in)) * np.sqrt(1.0 / blk.n_in), np.zeros((blk.n_out, 1)))
        for blk in _blocks(model)
    ]


def useful_flops(model: str, m: int) -> float:
    """Floating-point operations an epoch must do (products only: 2 per multiply-add)."""
    if model == "logreg":
        return 4.0 * N_X * m  # z = w X and dw = dz X^T
    return 4.0 * N_X * HIDDEN * m + 6.0 * HIDDEN * m  # W1 X, dZ1 X^T; layer 2 is tiny


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


def epoch_function(ops: backends.Backend, model: str, X: np.ndarray, Y: np.ndarray, dtype: str):
    """A closure running one full training epoch of ``model`` on prepared data."""
    net = DeviceNetwork(ops, _blocks(model), "bce", _params(model), dtype)
    if model == "mlp-adam":  # the update is one fused pass over parameters, gradients, moments
        net.start_training(Adam(lr=1e-3))
    Xd = net.prepare(X, for_training=True)
    Yd = ops.prepare_labels(Y, dtype)
    return lambda: net.train_step(Xd, Yd, 1e-3)


def pass_variants(
    ops: backends.Backend, X: np.ndarray, Y: np.ndarray, dtype: str
) -> dict[str, Callable[[], Any]]:
    """A logistic-regression epoch with each single-pass kernel the GPU backend can run
    on this data forced (``logreg_pass``: "staged", "registers"), one closure per kind;
    {} on backends without the choice. Timed beside the default epoch, they show which
    kernel wins on this device."""
    if not hasattr(ops, "pass_plan"):
        return {}
    native = X.dtype if X.dtype == np.uint8 else np.dtype(dtype)
    out = {}
    for kind in PASS_KINDS:
        with ops.forcing_pass(kind):
            if ops.pass_plan(X.shape[0], X.shape[1], dtype, native) is None:
                continue
            epoch = epoch_function(ops, "logreg", X, Y, dtype)

        def forced(kind=kind, epoch=epoch):
            with ops.forcing_pass(kind):
                epoch()

        out[f"{ops.name}_{kind}_pass"] = forced
    return out


def read_reference(X: np.ndarray) -> tuple[str, Callable[[], Any]]:
    """(name, closure) of a pure parallel read of X's own bytes: the CPU bandwidth reference.

    With Numba, a streaming integer sum over X viewed as 8-byte words on every thread;
    without it, NumPy's single-threaded sum (named so, as it is a weaker reference).
    """
    if backends.available()["numba"].available:  # the parallel reader, whichever backends run
        import numba

        from .backends import numba_kernels as k

        nb = numba.get_num_threads()
        partial = np.zeros(nb, dtype=np.int64)
        words = X.T.view(np.int64)  # the same bytes as X, read as 8-byte words
        return "cpu_read_gb_s", lambda: k.streaming_sum(words, nb, partial)
    return "cpu_read_gb_s_numpy_sum", lambda: X.sum(dtype=np.float64)


def blas_products(ops: backends.Backend, X: np.ndarray, dtype: str) -> dict[str, Callable[[], Any]]:
    """W1 X and dZ1 X^T (the MLP's two big products) alone on ``ops``, one closure per
    activation layout (row-major, and example-contiguous as the Numba backend keeps them);
    the faster of the two is the floor an MLP epoch is held to."""
    Xd = ops.prepare_input(X, dtype)
    m = X.shape[1]
    W1 = ops.asarray(np.random.default_rng(0).standard_normal((HIDDEN, N_X)) * 0.01, dtype)
    dZ_c = ops.asarray(np.random.default_rng(1).standard_normal((HIDDEN, m)) * 0.01, dtype)
    dW = ops.empty((HIDDEN, N_X), dtype)
    out = {}
    for order in ("C", "F"):
        Z = ops.empty((HIDDEN, m), dtype, order)
        dZ = ops.xp.asarray(dZ_c, order=order)

        def products(Z=Z, dZ=dZ):
            ops.matmul(W1, Xd, out=Z)
            ops.matmul(dZ, Xd.T, out=dW)

        out[order] = products
    return out


def torch_contenders(model: str, X: np.ndarray, Y: np.ndarray, dtype: str, device: str):
    """PyTorch (eager) on the same data, or ({}, {}) without PyTorch or its device.

    Returns ({name: Contender}, info): ``torch_<device>`` is the same epoch written by
    hand; for the float MLP also ``torch_<device>_products``, its two big products alone
    (X W1^T and dZ1^T X), timed beside ``blas_products`` to bound how much faster than
    PyTorch an MLP epoch whose products run in BLAS/cuBLAS can be. Both use one copy of X.
    On CUDA they are timed with PyTorch's CUDA events, as the CuPy rows are with CuPy's.
    """
    try:
        import torch
    except ImportError:
        return {}, {}
    if device == "cuda" and not torch.cuda.is_available():
        return {}, {}
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    dev = torch.device(device)
    scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    Xt = torch.from_numpy(np.ascontiguousarray(X.T)).to(dev)
    Xt = Xt.to(tdtype) * scale if X.dtype == np.uint8 else Xt.to(tdtype)
    y = torch.from_numpy(Y.reshape(-1, 1)).to(dev, tdtype)
    m = X.shape[1]
    lr = 1e-3
    params = [
        (torch.from_numpy(W).to(dev, tdtype), torch.from_numpy(b).to(dev, tdtype)) for W, b in _params(model)
    ]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    events = torch_events(torch) if dev.type == "cuda" else None
    made = {}
    if model == "logreg":
        ((w, b),) = params

        def step():
            z = Xt @ w.T + b
            dz = (torch.sigmoid(z) - y) / m
            w.sub_(lr * (dz.T @ Xt))
            b.sub_(lr * dz.sum())
    else:
        (W1, b1), (W2, b2) = params
        adam = torch.optim.Adam([W1, b1, W2, b2], lr=lr) if model == "mlp-adam" else None

        def step():
            z1 = torch.addmm(b1.T, Xt, W1.T)
            a1 = torch.relu(z1)
            z2 = torch.addmm(b2.T, a1, W2.T)
            dz2 = (torch.sigmoid(z2) - y) / m
            dW2 = dz2.T @ a1
            da1 = dz2 @ W2
            dz1 = da1 * (z1 > 0)
            dW1 = dz1.T @ Xt
            if adam is not None:
                W1.grad, b1.grad, W2.grad = dW1, dz1.sum(0, keepdim=True).T, dW2
                b2.grad = dz2.sum(0, keepdim=True).T
                adam.step()
                return
            W2.sub_(lr * dW2)
            b2.sub_(lr * dz2.sum(0, keepdim=True).T)
            W1.sub_(lr * dW1)
            b1.sub_(lr * dz1.sum(0, keepdim=True).T)

        if X.dtype != np.uint8:
            gen = torch.Generator(device="cpu").manual_seed(0)
            dZ1 = (torch.randn(m, HIDDEN, generator=gen) * 0.01).to(dev, tdtype)

            def products():
                Xt @ W1.T
                dZ1.T @ Xt

            made[f"torch_{device}_products"] = Contender(products, sync, events)

    made[f"torch_{device}"] = Contender(step, sync, events)
    info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        info["torch_tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return made, info


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
                    events = cupy_events(ops) if ops.is_gpu else None
                    contenders[name] = Contender(
                        epoch_function(ops, model, X, Y, dtype), ops.synchronize, events
                    )
                if model == "logreg" and gpu_ops is not None:
                    for name, fn in pass_variants(gpu_ops, X, Y, dtype).items():
                        contenders[name] = Contender(fn, gpu_ops.synchronize, cupy_events(gpu_ops))
                if cpu:  # the read reference runs in the same rounds as the epochs it rates
                    read_name, read_fn = read_reference(X)
                    contenders[_READ] = Contender(read_fn, lambda: None)
                if model == "mlp" and x_dtype != "uint8":
                    if cpu:
                        numpy_ops = backends.get_backend("numpy")
                        for order, fn in blas_products(numpy_ops, X, dtype).items():
                            contenders[f"blas_{order}"] = Contender(fn, numpy_ops.synchronize)
                    if gpu_ops is not None:
                        for order, fn in blas_products(gpu_ops, X, dtype).items():
                            contenders[f"cublas_{order}"] = Contender(
                                fn, gpu_ops.synchronize, cupy_events(gpu_ops)
                            )
                for device, wanted in (("cpu", cpu), ("cuda", gpu_ops is not None)):
                    if with_torch and wanted:
                        made, info = torch_contenders(model, X, Y, dtype, device)
                        contenders.update(made)
                        torch_info.update({f"{device}_{k}": v for k, v in info.items()})
                # with no CPU contender no OpenBLAS pool runs, so nothing has to go idle
                times = time_interleaved(contenders, repeats, idle_s=None if cpu else 0.0)
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
                        limits[key][f"{kind}_products_gflops"] = (
                            4.0 * N_X * HIDDEN * m / floor[kind].median / 1e9
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


def plot_throughput(result: dict[str, Any], path: str) -> None:
    """Examples/s against m per backend (log-log), one line per (backend, model, X dtype)."""
    from .files import PLOT_SOFTWARE, atomic_write
    from .plot import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[tuple, list[tuple[int, float]]] = {}
    for r in result["rows"]:
        series.setdefault((r["backend"], r["model"], r["x_dtype"]), []).append((r["m"], r["examples_per_s"]))
    for (backend, model, x_dtype), pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{backend} {model} {x_dtype}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size m (examples, 12288 features)")
    ax.set_ylabel("training examples / s (one epoch)")
    ax.set_title(f"nnx epoch throughput - {result['environment']['cpu']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(
        path,
        lambda fh: fig.savefig(fh, format="png", dpi=120, metadata={"Software": PLOT_SOFTWARE}),
        kind="plot",
    )
    plt.close(fig)
