"""The CuPy backend: arrays on an NVIDIA GPU, cuBLAS products, CUDA kernels from kernels/.

Kernels are compiled lazily on first use with ``cupy.RawModule`` (float/double templates
through ``name_expressions``; CuPy caches the binaries on disk). Each wrapper checks
dtype, contiguity and shape before launching, because raw kernels ignore strides.
TF32 is never enabled by nnx: products run in full float32 unless the user sets
CuPy's own ``CUPY_TF32=1``, which ``describe()`` reports.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np

from ..errors import DeviceMemoryError
from . import cuda_launch as plans
from . import philox
from .base import Backend


def unavailable_reason() -> str | None:
    """None when CuPy imports and finds a CUDA device, else why not (never raises)."""
    if importlib.util.find_spec("cupy") is None:
        return "cupy is not installed"
    try:
        import cupy
    except Exception as exc:  # broken install, missing CUDA libraries
        return f"cupy failed to import ({exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, driver too old, ...
        return (
            f"no usable CUDA device (driver/runtime error: {exc}); CuPy needs an NVIDIA GPU and its "
            "driver (`nvidia-smi` lists both), and a cupy wheel no newer than that driver's CUDA"
        )
    if count < 1:
        return "no CUDA device found"
    return None


class CupyBackend(Backend):
    """GPU backend: ``xp = cupy`` plus fused CUDA kernels.

    ``logreg_pass`` picks the single-pass logistic-regression kernel: ``"auto"`` (the
    default: ``logreg_staged``, rows through shared memory by asynchronous copies, where
    it fits, else ``logreg_pass``), ``"staged"`` or ``"registers"`` (the benchmark times
    both; one that cannot take the data falls back to the generic cuBLAS epoch).
    """

    name = "cupy"
    is_gpu = True
    fused_logreg = True
    input_dtypes = ("float32", "float64", "uint8")

    def __init__(self) -> None:
        import cupy

        self.xp = cupy
        self.cp = cupy
        self._module = None
        self.device = cupy.cuda.Device()
        self.sm_count = self.device.attributes["MultiProcessorCount"]
        self.shared_limit = self.device.attributes["MaxSharedMemoryPerBlockOptin"]
        self.logreg_pass = "auto"
        self._scratch: dict[tuple, Any] = {}

    # ----------------------------------------------------------- compilation
    @property
    def module(self):
        """The RawModule, compiled on first use (NVRTC); CuPy caches the binary on disk."""
        if self._module is None:
            self._module = self.cp.RawModule(
                code=plans.kernel_source_path().read_text(),
                options=("--std=c++14",),
                name_expressions=plans.name_expressions(),
            )
        return self._module

    @cache  # noqa: B019 - one backend instance per process
    def kernel(self, expression: str):
        return self.module.get_function(expression)

    def compile_all(self) -> list[str]:
        """Compile and fetch every kernel (used by the tests); returns their names."""
        for expr in plans.name_expressions():
            self.kernel(expr)
        self.kernel("read_words")
        return plans.name_expressions() + ["read_words"]

    # ---------------------------------------------------------------- memory
    def asarray(self, host, dtype):
        return self._guard(
            lambda: self.cp.array(host, dtype=dtype, order="C", copy=True),
            np.dtype(dtype).itemsize * int(np.prod(np.shape(host))),
        )

    def to_host(self, a):
        return self.cp.asnumpy(a)

    def scalar(self, a) -> float:
        return float(a)

    def scalars(self, values: list) -> np.ndarray:
        """Many device scalars in one transfer (one synchronisation)."""
        if not values:
            return np.zeros(0)
        return self.cp.asnumpy(self.cp.stack([self.cp.asarray(v, dtype=self.cp.float64) for v in values]))

    def synchronize(self) -> None:
        self.cp.cuda.get_current_stream().synchronize()

    def free_bytes(self) -> int:
        """Free device memory plus what CuPy's pool holds for reuse."""
        free, _ = self.cp.cuda.runtime.memGetInfo()
        pool = self.cp.get_default_memory_pool()
        return int(free + pool.free_bytes())

    def _out_of_memory(self, what: str) -> DeviceMemoryError:
        free, total = self.cp.cuda.runtime.memGetInfo()
        return DeviceMemoryError(
            f"the GPU ({self.device_name()}) {what} ({free / 1e9:.2f} GB free of {total / 1e9:.2f} GB): "
            "train with batch_size= so mini-batches stream from host memory, or use a smaller "
            "dtype (uint8 pixels, float32)"
        )

    def _guard(self, make, nbytes: int):
        try:
            return make()
        except self.cp.cuda.memory.OutOfMemoryError:
            raise self._out_of_memory(f"cannot hold {nbytes / 1e9:.2f} GB more") from None

    @contextlib.contextmanager
    def memory_errors_explained(self) -> Iterator[None]:
        try:
            yield
        except self.cp.cuda.memory.OutOfMemoryError as exc:  # an allocation without its own guard
            raise self._out_of_memory(f"ran out of memory: {str(exc).rstrip('.')}") from None

    def _to_device(self, X: np.ndarray) -> Any:
        """Copy host X to the device through pinned memory, keeping dtype and memory order."""
        cp = self.cp
        order = "F" if X.flags.f_contiguous and not X.flags.c_contiguous else "C"
        out = self._guard(lambda: cp.empty(X.shape, dtype=X.dtype, order=order), X.nbytes)
        try:
            mem = cp.cuda.alloc_pinned_memory(X.nbytes)
            staged = np.frombuffer(mem, X.dtype, X.size).reshape(X.shape, order=order)
            staged[...] = X
        except Exception:  # pinned memory is an optimisation, not a requirement
            staged = np.asarray(X, order=order)
        out.set(staged)
        # From pinned memory set() only queues the copy on the stream: wait for it before the
        # staging buffer returns to CuPy's pinned pool, where the next transfer could reuse it
        # mid-copy. Once per fit, and the first kernel would wait for X anyway.
        self.synchronize()
        return out

    def prepare_input(self, X, dtype):
        if isinstance(X, self.cp.ndarray):
            Xd = X
        else:
            Xd = self._to_device(np.asarray(X))
        if Xd.dtype == np.uint8:
            out = self._guard(lambda: Xd.astype(dtype, order="K"), Xd.size * np.dtype(dtype).itemsize)
            out *= out.dtype.type(1.0 / 255.0)
            return out
        if Xd.dtype != np.dtype(dtype):
            return self._guard(lambda: Xd.astype(dtype, order="K"), Xd.size * np.dtype(dtype).itemsize)
        return Xd

    def prepare_fused_input(self, X, dtype):
        """X on the device as the fused kernel reads it (see ``native_host_input``), or as
        scaled floats when the kernel cannot take this many features."""
        native = np.uint8 if X.dtype == np.uint8 else np.dtype(dtype)
        if self.pass_plan(X.shape[0], X.shape[1], dtype, native) is None:
            return self.prepare_input(X, dtype)
        if isinstance(X, self.cp.ndarray):
            return self.cp.asfortranarray(X)
        return self._to_device(self.native_host_input(np.asarray(X), dtype))

    def prepare_labels(self, Y, dtype):
        return self.cp.asarray(np.asarray(Y, dtype=dtype).reshape(1, -1))

    # --------------------------------------------------------------- checks
    def _check(self, label: str, a, dtype=None, shape=None) -> None:
        if not isinstance(a, self.cp.ndarray):
            raise TypeError(f"{label} must be a CuPy array on the GPU, got {type(a).__name__}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{label} must be C-contiguous for the CUDA kernel")
        if dtype is not None and a.dtype != dtype:
            raise TypeError(f"{label} has dtype {a.dtype}, expected {dtype}")
        if shape is not None and a.shape != shape:
            raise ValueError(f"{label} has shape {a.shape}, expected {shape}")

    def _launch(self, plan: plans.Launch) -> None:
        plans.launch(self.kernel(plan.kernel), plan)

    def pass_plan(
        self, n: int, m: int, dtype: Any, x_dtype: Any, aligned_16: bool = True
    ) -> plans.PassPlan | None:
        """The single-pass kernel an epoch over X (n, m) of ``x_dtype`` with ``dtype``
        parameters runs on this device (see ``cuda_launch.logreg_pass_plan``), or None
        for the generic cuBLAS path."""
        return plans.logreg_pass_plan(
            n, m, dtype, x_dtype, self.sm_count, self.shared_limit, self.logreg_pass, aligned_16
        )

    @contextlib.contextmanager
    def forcing_pass(self, kind: str) -> Iterator[None]:
        """Within the block, logistic-regression epochs use the ``kind`` single-pass
        kernel ("staged" or "registers"; see ``logreg_pass``)."""
        previous, self.logreg_pass = self.logreg_pass, kind
        try:
            yield
        finally:
            self.logreg_pass = previous

    # ------------------------------------------------------------ kernels
    def bias_activation_(self, Z, b, activation):
        if not (Z.flags.c_contiguous and b.flags.c_contiguous) or Z.dtype.name not in ("float32", "float64"):
            return super().bias_activation_(Z, b, activation)
        self._check("b", b, Z.dtype, (Z.shape[0], 1))
        self._launch(plans.bias_act_launch(Z, b, activation, self.sm_count))
        return Z

    def activation_backward_(self, dA, A, activation):
        if activation is None:
            return dA
        floats = ("float32", "float64")
        if not (dA.flags.c_contiguous and A.flags.c_contiguous) or dA.dtype.name not in floats:
            return super().activation_backward_(dA, A, activation)
        self._check("A", A, dA.dtype, dA.shape)
        self._launch(plans.act_backward_launch(dA, A, activation, self.sm_count))
        return dA

    def sigmoid_(self, Z):
        if not Z.flags.c_contiguous or Z.dtype.name not in ("float32", "float64"):
            return super().sigmoid_(Z)
        self._launch(plans.sigmoid_launch(Z, self.sm_count))
        return Z

    def bce_from_logits(self, Z, Y):
        if not (Z.flags.c_contiguous and Y.flags.c_contiguous) or Z.dtype.name not in ("float32", "float64"):
            return super().bce_from_logits(Z, Y)
        self._check("Y", Y, Z.dtype, Z.shape)
        partial = self.cp.empty((plans.bce_groups(Z.shape[1], self.sm_count), 2), dtype=self.cp.float64)
        dZ = self.cp.empty_like(Z)
        self._launch(plans.bce_logits_launch(Z, Y, dZ, partial, self.sm_count))
        sums = partial.sum(axis=0)  # fixed-size reduction: deterministic
        return sums[0], sums[1], dZ

    def logreg_epoch_(self, w, b, X, Y, lr, loss):
        cp = self.cp
        n, m = X.shape
        dtype = w.dtype
        if (
            not X.flags.f_contiguous
            or dtype.name not in ("float32", "float64")
            or X.dtype.name not in self.input_dtypes
            or (X.dtype != np.uint8 and X.dtype != dtype)
            or (pass_plan := self.pass_plan(n, m, dtype, X.dtype, X.data.ptr % 16 == 0)) is None
        ):
            return super().logreg_epoch_(w, b, X, Y, lr, loss)  # generic cuBLAS path
        self._check("w", w, dtype, (1, n))
        self._check("b", b, dtype, (1, 1))
        self._check("Y", Y, dtype, (1, m))
        groups = pass_plan.groups
        dw_partial = self._scratch_buffer(("dw", groups, n, dtype.name), (groups, n), dtype)
        stats = self._scratch_buffer(("stats", groups), (groups, 3), cp.float64)
        out = cp.empty(2, dtype=cp.float64)
        sms = self.sm_count
        for launch in plans.logreg_launches(pass_plan, w, b, X, Y, dw_partial, stats, out, lr, loss, sms):
            self._launch(launch)
        return out[0], out[1]

    def _scratch_buffer(self, key, shape, dtype):
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = self._guard(
                lambda: self.cp.empty(shape, dtype=dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize
            )
        return buf

    # ------------------------------------------------------------- facts
    def device_name(self) -> str:
        props = self.cp.cuda.runtime.getDeviceProperties(self.device.id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def read_all(self, X) -> None:
        """Launch a pure read of X's own memory as 16-byte words (the bandwidth reference
        the benchmark times; the logistic-regression floor)."""
        sink = self._scratch_buffer(("sink",), (1,), self.cp.uint64)
        self._launch(plans.read_words_launch(X, sink, self.sm_count))

    def describe(self) -> dict[str, Any]:
        cp = self.cp
        info = super().describe()
        info.update(
            device=self.device_name(),
            compute_capability=self.device.compute_capability,
            cupy=cp.__version__,
            cuda_runtime=cp.cuda.runtime.runtimeGetVersion(),
            cuda_driver=cp.cuda.runtime.driverGetVersion(),
            tf32=os.environ.get("CUPY_TF32", "0") == "1",
            shared_memory_per_block_optin=self.shared_limit,
            logreg_pass=self.logreg_pass,
        )
        return info

    # ------------------------------------------- optimizer steps and dropout (nnx.optim)
    def _one_pass(self, p, *arrays) -> bool:
        """Whether the fused kernels can take p and its gradient/state arrays (None: absent)."""
        return p.dtype.name in ("float32", "float64") and all(
            a is None or (isinstance(a, self.cp.ndarray) and a.flags.c_contiguous and a.dtype == p.dtype)
            for a in (p, *arrays)
        )

    def _or_unused(self, a, p):
        return a if a is not None else self.cp.empty(1, dtype=p.dtype)  # never read by the kernel

    def sgd_step_(self, p, g, buf, *, lr, momentum, dampening, nesterov, decay, first):
        if not self._one_pass(p, g, buf):
            return super().sgd_step_(
                p,
                g,
                buf,
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                nesterov=nesterov,
                decay=decay,
                first=first,
            )
        self._launch(
            plans.sgd_step_launch(
                p, g, self._or_unused(buf, p), self.sm_count, neg_lr=-lr, decay=decay, momentum=momentum,
                damp1=1 - dampening, momentum_on=bool(momentum), nesterov=bool(nesterov), first=bool(first),
            )
        )  # fmt: skip

    def rmsprop_step_(self, p, g, square_avg, grad_avg, buf, *, lr, alpha, eps, momentum, decay):
        if not self._one_pass(p, g, square_avg, grad_avg, buf):
            return super().rmsprop_step_(
                p, g, square_avg, grad_avg, buf, lr=lr, alpha=alpha, eps=eps, momentum=momentum, decay=decay
            )
        self._launch(
            plans.rmsprop_step_launch(
                p, g, square_avg, self._or_unused(grad_avg, p), self._or_unused(buf, p), self.sm_count,
                neg_lr=-lr, decay=decay, alpha=alpha, eps=eps, momentum=momentum,
                centered=grad_avg is not None, momentum_on=momentum > 0,
            )
        )  # fmt: skip

    def adam_step_(self, p, g, exp_avg, exp_avg_sq, *, beta1, beta2, eps, step_size, bc2_sqrt, decay, shrink):
        if not self._one_pass(p, g, exp_avg, exp_avg_sq):
            return super().adam_step_(
                p, g, exp_avg, exp_avg_sq, beta1=beta1, beta2=beta2, eps=eps, step_size=step_size,
                bc2_sqrt=bc2_sqrt, decay=decay, shrink=shrink,
            )  # fmt: skip
        self._launch(
            plans.adam_step_launch(
                p, g, exp_avg, exp_avg_sq, self.sm_count, beta1=beta1, beta2=beta2, eps=eps,
                step_size=step_size, bc2_sqrt=bc2_sqrt, decay=decay, shrink=shrink,
            )
        )  # fmt: skip

    def dropout_(self, A, out, rate, key):
        if not (self._one_pass(A, out) and A.shape == out.shape and A.ndim == 2):
            return super().dropout_(A, out, rate, key)
        scale = 1.0 / (1.0 - rate)
        self._launch(
            plans.dropout_launch(A, out, True, key.words(), philox.threshold(rate), scale, self.sm_count)
        )
        return out

    def dropout_backward_(self, dA, rate, key):
        return self.dropout_(dA, dA, rate, key)
