"""What the benchmark times: data, nnx epochs on each backend, and the references.

Each builder returns closures ready for ``bench_timing``: one training epoch of
logistic regression or the 12288->50->1 MLP on a backend (and on each of its kernel
variants), the read-bandwidth reference, the MLP's two big products alone (BLAS/cuBLAS),
and PyTorch doing the same epoch by hand on the same data. Backends are reached only
through the methods ``Backend`` declares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backends
from ..backends.codes import PIXEL_SCALE
from ..backends.timers import EventTimer
from ..network import Block, DeviceNetwork
from ..optim import Adam
from .bench_timing import Contender

N_X = 12288
HIDDEN = 50
CLASSES = 10  # outputs of the softmax-regression row
# mlp-adam: the MLP's epoch with an Adam step; softmax: softmax regression over CLASSES
MODELS = ("logreg", "softmax", "mlp", "mlp-adam")
X_DTYPES = ("float32", "float64", "uint8")


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
    if model == "softmax":
        return [Block(N_X, CLASSES, "softmax")]
    return [Block(N_X, HIDDEN, "relu"), Block(HIDDEN, 1, "sigmoid")]


def _labels(model: str, Y: np.ndarray) -> np.ndarray:
    """The labels ``model`` trains on: Y's 0/1, or class numbers 0..CLASSES-1 for softmax."""
    if model == "softmax":
        return (np.arange(Y.shape[1]) % CLASSES).reshape(1, -1).astype(np.float64)
    return Y


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
    if model == "softmax":
        return 4.0 * N_X * CLASSES * m  # Z = W X and dW = dZ X^T
    return 4.0 * N_X * HIDDEN * m + 6.0 * HIDDEN * m  # W1 X, dZ1 X^T; layer 2 is tiny


def epoch_function(ops: backends.Backend, model: str, X: np.ndarray, Y: np.ndarray, dtype: str):
    """A closure running one full training epoch of ``model`` on prepared data."""
    loss = "cross_entropy" if model == "softmax" else "bce"
    net = DeviceNetwork(ops, _blocks(model), loss, _params(model), dtype)
    if model == "mlp-adam":  # the update is one fused pass over parameters, gradients, moments
        net.start_training(Adam(lr=1e-3))
    Xd = net.prepare(X, for_training=True)
    Yd = ops.prepare_labels(_labels(model, Y), dtype)
    return lambda: net.train_step(Xd, Yd, 1e-3)


def kernel_variants(
    ops: backends.Backend, X: np.ndarray, Y: np.ndarray, dtype: str
) -> dict[str, Callable[[], Any]]:
    """A logistic-regression epoch with each of the backend's alternative kernels forced
    (``Backend.named_variants``: on a GPU, ``cupy_staged_pass`` and ``cupy_registers_pass``),
    named ``<backend>_<variant>``; {} on backends without the choice. Timed beside the
    default epoch, they show which kernel wins on this device."""
    build = lambda: epoch_function(ops, "logreg", X, Y, dtype)  # noqa: E731
    return {f"{ops.name}_{name}": fn for name, fn in ops.named_variants(build, X, dtype).items()}


def read_reference(X: np.ndarray) -> tuple[str, Callable[[], Any]]:
    """(name, closure) of a pure read of X's own bytes: the CPU bandwidth reference.

    The Numba backend's streaming read (every thread) where Numba runs, whichever backends
    are benchmarked; without it, the NumPy backend's single-threaded sum (named so, as it
    is a weaker reference).
    """
    parallel = backends.available()["numba"].available
    read, _ = backends.get_backend("numba" if parallel else "numpy").streaming_read(X)
    return ("cpu_read_gb_s" if parallel else "cpu_read_gb_s_numpy_sum"), read


def product_rows(model: str) -> int:
    """Rows of the weight matrix in ``model``'s two big products (W X and dZ X^T)."""
    return CLASSES if model == "softmax" else HIDDEN


def blas_products(
    ops: backends.Backend, X: np.ndarray, dtype: str, rows: int = HIDDEN
) -> dict[str, Callable[[], Any]]:
    """W X and dZ X^T for W of ``rows`` x 12288 (the MLP's first layer, or softmax
    regression's K classes) alone on ``ops``, on X as floats, one closure per activation
    layout (row-major, and example-contiguous as the Numba backend keeps them); the faster
    of the two is the floor an epoch doing those products is held to."""
    Xd = ops.prepare_input(X, dtype)
    m = X.shape[1]
    W1 = ops.asarray(np.random.default_rng(0).standard_normal((rows, N_X)) * 0.01, dtype)
    dZ_c = ops.asarray(np.random.default_rng(1).standard_normal((rows, m)) * 0.01, dtype)
    dW = ops.empty((rows, N_X), dtype)
    out = {}
    for order in ("C", "F"):
        Z = ops.empty((rows, m), dtype, order)
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
    scale = PIXEL_SCALE if X.dtype == np.uint8 else 1.0
    Xt = torch.from_numpy(np.ascontiguousarray(X.T)).to(dev)
    Xt = Xt.to(tdtype) * scale if X.dtype == np.uint8 else Xt.to(tdtype)
    y = torch.from_numpy(Y.reshape(-1, 1)).to(dev, tdtype)
    m = X.shape[1]
    lr = 1e-3
    params = [
        (torch.from_numpy(W).to(dev, tdtype), torch.from_numpy(b).to(dev, tdtype)) for W, b in _params(model)
    ]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timer() -> EventTimer | None:
        if dev.type != "cuda":
            return None  # the wall clock
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        return EventTimer(start, end, lambda s, e: s.elapsed_time(e) / 1e3)

    made = {}
    if model == "logreg":
        ((w, b),) = params

        def step():
            z = Xt @ w.T + b
            dz = (torch.sigmoid(z) - y) / m
            w.sub_(lr * (dz.T @ Xt))
            b.sub_(lr * dz.sum())
    elif model == "softmax":
        ((w, b),) = params
        labels = torch.from_numpy(_labels(model, Y).reshape(-1).astype(np.int64)).to(dev)
        onehot = torch.nn.functional.one_hot(labels, CLASSES).to(tdtype)

        def step():
            z = Xt @ w.T + b.T
            dz = (torch.softmax(z, dim=1) - onehot) / m
            w.sub_(lr * (dz.T @ Xt))
            b.sub_(lr * dz.sum(0, keepdim=True).T)
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

            made[f"torch_{device}_products"] = Contender(products, sync, timer())

    made[f"torch_{device}"] = Contender(step, sync, timer())
    info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        info["torch_tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return made, info
