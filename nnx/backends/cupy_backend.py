"""The CuPy backend: arrays on an NVIDIA GPU, cuBLAS products, CUDA kernels from kernels/.

Kernels are compiled lazily on first use with ``cupy.RawModule`` (float/double templates
through ``name_expressions``), once per process: CuPy caches a module built with name
expressions on disk only from 14.1 on and with a CUDA 12.4+ driver (``kernel_disk_cache``),
so elsewhere every process pays the NVRTC compile on its first kernel call;
``describe()`` reports how long the first call took (``kernel_compile_s``). CuPy compiles
with ``-ftz=true``: float32 kernels flush denormals to zero. Each wrapper checks dtype,
contiguity and shape before launching, because raw kernels ignore strides.

One backend object may be used from several threads at once: every scratch buffer
belongs to the call that uses it (from CuPy's memory pool), the module is compiled under
a lock, and ``_forcing_pass`` applies to the calling thread only.
TF32 is never enabled by nnx: products run in full float32 unless the user sets
CuPy's own ``CUPY_TF32=1``, which ``describe()`` reports.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import CudaForkedError, DeviceMemoryError
from . import cuda_launch as plans
from . import philox
from .base import Backend
from .codes import PIXEL_SCALE
from .timers import EventTimer

# The process that initialised CUDA through this module (a CupyBackend was built there).
# A child forked from it inherits the backend object but not a usable CUDA context.
_cuda_state: dict[str, int | None] = {"pid": None}


def _refuse_in_forked_child() -> None:
    """Raise CudaForkedError (one line) in a process forked after CUDA was initialised."""
    parent = _cuda_state["pid"]
    if parent is not None and parent != os.getpid():
        raise CudaForkedError(
            f"nnx cupy: this process (pid {os.getpid()}) was forked from pid {parent} after it "
            "initialised CUDA, and CUDA cannot run in a forked child: start worker processes with "
            "the 'spawn' start method (multiprocessing.get_context('spawn'), or "
            "multiprocessing.set_start_method('spawn'))"
        )


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


# CuPy keeps a RawModule built with name expressions in its disk cache from 14.1 on, and
# only where the CUDA driver is 12.4 or newer (cudaDriverGetVersion() >= 12040); elsewhere
# every process compiles the module again.
DISK_CACHE_CUPY = (14, 1)
DISK_CACHE_DRIVER = 12040


def kernel_disk_cache(version: str, driver: int | None) -> bool:
    """Whether CuPy ``version`` with a driver of version ``driver`` (as
    ``cupy.cuda.runtime.driverGetVersion()`` gives it, e.g. 12040 for 12.4; None when
    unknown) caches a RawModule built with name expressions on disk: CuPy 14.1 or newer
    and a driver of 12.4 or newer. Otherwise each process pays the compile on first use."""
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= DISK_CACHE_CUPY and driver is not None and int(driver) >= DISK_CACHE_DRIVER


class CupyBackend(Backend):
    """GPU backend: ``xp = cupy`` plus fused CUDA kernels.

    ``logreg_pass`` picks the single-pass logistic-regression kernel: ``"auto"`` (the
    default: ``logreg_staged``, rows through shared memory by asynchronous copies, where
    it fits, else ``logreg_pass``), ``"staged"`` or ``"registers"`` (the benchmark times
    both, through ``named_variants``; one that cannot take the data falls back to the
    generic cuBLAS epoch). ``_forcing_pass(kind)`` overrides it for the calling thread only.
    Softmax regression over K <= 32 classes trains with a single pass over X, also on raw
    uint8 pixels (see ``cuda_launch.softmax_pass_plan``): ``softmax_tile`` (each load of W
    serving 32 examples) or ``softmax_pass``, whichever the traffic model says moves fewer
    bytes, where that is fewer than the two cuBLAS products move; ``softmax_pass =
    "fused"`` or ``"tiled"`` takes that kernel wherever it can run.
    """

    name = "cupy"
    is_gpu = True
    fused_logreg = True
    fused_softmax = True

    def __init__(self) -> None:
        _refuse_in_forked_child()
        import cupy

        _cuda_state["pid"] = os.getpid()  # CUDA starts with the device queries below
        self.xp = cupy
        self.cp = cupy
        self._raw_module = None
        self.device = cupy.cuda.Device()
        self.sm_count = self.device.attributes["MultiProcessorCount"]
        self.shared_limit = self.device.attributes["MaxSharedMemoryPerBlockOptin"]
        self.logreg_pass = "auto"
        # "auto": softmax_tile or softmax_pass, whichever the traffic model says moves fewer
        # bytes, only where that is fewer than the two cuBLAS products move
        # (cuda_launch.softmax_traffic); "fused" / "tiled": that kernel wherever it can run
        self.softmax_pass = "auto"
        self.compile_seconds: float | None = None  # the module's first-call cost, once compiled
        self._lock = threading.Lock()  # guards the module, the kernels and the occupancies
        self._kernels: dict[str, Any] = {}
        self._occupancy: dict[str, int] = {}
        self.occupancy_error: str | None = None  # why the driver's occupancy was not used
        self._thread = threading.local()  # forcing_pass: the calling thread's kind

    # ----------------------------------------------------------- compilation
    @property
    def _module(self):
        """The RawModule, compiled by NVRTC on first use, once even when several threads
        ask at once. Cached on disk only where ``kernel_disk_cache`` says so: elsewhere each
        process pays ``compile_seconds`` on its first kernel."""
        if self._raw_module is None:
            with self._lock:
                if self._raw_module is None:
                    t0 = time.perf_counter()
                    module = self.cp.RawModule(
                        code=plans.kernel_source_path().read_text(),
                        options=plans.COMPILE_OPTIONS,
                        name_expressions=plans.name_expressions(),
                    )
                    module.compile()  # now, inside the lock and the timing, not at get_function
                    self.compile_seconds = time.perf_counter() - t0
                    self._raw_module = module
        return self._raw_module

    def _kernel(self, expression: str):
        """The compiled kernel for a name expression (a ``cupy.RawKernel``)."""
        _refuse_in_forked_child()
        found = self._kernels.get(expression)
        if found is None:
            module = self._module
            with self._lock:
                found = self._kernels.get(expression)
                if found is None:
                    found = self._kernels[expression] = module.get_function(expression)
        return found

    def _resident_blocks(self, expression: str) -> int:
        """Blocks of ``plans.PASS_BLOCK`` threads of kernel ``expression`` that fit on one SM
        at once (the driver's occupancy, from its registers and shared memory per block)."""
        blocks = self._occupancy.get(expression)
        if blocks is None:
            function = self._kernel(expression).kernel.ptr
            try:
                driver = self.cp.cuda.driver
                blocks = int(driver.occupancyMaxActiveBlocksPerMultiprocessor(function, plans.PASS_BLOCK, 0))
            except Exception as exc:  # noqa: BLE001 - one block per SM is always correct, if slower
                self.occupancy_error = f"{type(exc).__name__}: {exc}"
                blocks = 1
            self._occupancy[expression] = max(1, blocks)  # the same value from any thread
        return self._occupancy[expression]

    def _compile_all(self) -> list[str]:
        """Compile and fetch every kernel; returns their names."""
        for expr in plans.name_expressions():
            self._kernel(expr)
        self._kernel("read_words")
        return plans.name_expressions() + ["read_words"]

    def compile_kernels(self) -> float | None:
        """Compile every kernel now (NVRTC, once per process); the seconds the module took."""
        self._compile_all()
        return self.compile_seconds

    # ---------------------------------------------------------------- memory
    def asarray(self, host, dtype):
        _refuse_in_forked_child()
        return self._guard(
            lambda: self.cp.array(host, dtype=dtype, order="C", copy=True),
            np.dtype(dtype).itemsize * int(np.prod(np.shape(host))),
        )

    def to_host(self, a):
        _refuse_in_forked_child()
        return self.cp.asnumpy(a)

    def scalar(self, a) -> float:
        return float(a)

    def scalars(self, values: list) -> np.ndarray:
        """Many device scalars in one transfer (one synchronisation)."""
        _refuse_in_forked_child()
        if not values:
            return np.zeros(0)
        return self.cp.asnumpy(self.cp.stack([self.cp.asarray(v, dtype=self.cp.float64) for v in values]))

    def synchronize(self) -> None:
        _refuse_in_forked_child()
        self.cp.cuda.get_current_stream().synchronize()

    def free_bytes(self) -> int:
        """Free device memory plus what CuPy's pool holds for reuse."""
        _refuse_in_forked_child()
        free, _ = self.cp.cuda.runtime.memGetInfo()
        pool = self.cp.get_default_memory_pool()
        return int(free + pool.free_bytes())

    def _out_of_memory(self, what: str) -> DeviceMemoryError:
        free, total = self.cp.cuda.runtime.memGetInfo()
        return DeviceMemoryError(
            f"the GPU ({self._device_name()}) {what} ({free / 1e9:.2f} GB free of {total / 1e9:.2f} GB): "
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
        _refuse_in_forked_child()
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
        _refuse_in_forked_child()
        if isinstance(X, self.cp.ndarray):
            Xd = X
        else:
            Xd = self._to_device(np.asarray(X))
        if Xd.dtype == np.uint8:
            out = self._guard(lambda: Xd.astype(dtype, order="K"), Xd.size * np.dtype(dtype).itemsize)
            out *= out.dtype.type(PIXEL_SCALE)
            return out
        if Xd.dtype != np.dtype(dtype):
            return self._guard(lambda: Xd.astype(dtype, order="K"), Xd.size * np.dtype(dtype).itemsize)
        return Xd

    def prepare_fused_input(self, X, dtype, classes=None):
        """X on the device as the fused kernel reads it (see ``native_host_input``), or as
        scaled floats when the kernel (logistic regression's, or softmax regression's over
        ``classes`` classes) cannot take this many features."""
        _refuse_in_forked_child()
        native = np.uint8 if X.dtype == np.uint8 else np.dtype(dtype)
        n, m = X.shape
        if classes is None:
            plan = self._pass_plan(n, m, dtype, native)
        else:
            plan = plans.softmax_pass_plan(
                n, m, classes, dtype, native, self.sm_count, self.shared_limit, kind=self.softmax_pass
            )
            # (the grid does not matter here, only whether the kernel can take X)
        if plan is None:
            return self.prepare_input(X, dtype)
        if isinstance(X, self.cp.ndarray):
            return self.cp.asfortranarray(X)
        return self._to_device(self.native_host_input(np.asarray(X), dtype))

    def prepare_labels(self, Y, dtype):
        _refuse_in_forked_child()
        Y = np.asarray(Y, dtype=dtype)
        return self.cp.asarray(Y if Y.ndim == 2 else Y.reshape(1, -1))

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
        _refuse_in_forked_child()
        plans.launch(self._kernel(plan.kernel), plan)

    def _pass_plan(
        self, n: int, m: int, dtype: Any, x_dtype: Any, x_address: int = 0
    ) -> plans.PassPlan | None:
        """The single-pass kernel an epoch over X (n, m) of ``x_dtype``, starting at device
        address ``x_address``, with ``dtype`` parameters runs on this device (see
        ``cuda_launch.logreg_pass_plan``), or None for the generic cuBLAS path."""
        kind = getattr(self._thread, "forced_pass", None) or self.logreg_pass
        return plans.logreg_pass_plan(
            n, m, dtype, x_dtype, self.sm_count, self.shared_limit, kind, x_address, self._resident_blocks
        )

    @contextlib.contextmanager
    def _forcing_pass(self, kind: str) -> Iterator[None]:
        """Within the block, logistic-regression epochs of the calling thread use the
        ``kind`` single-pass kernel ("staged" or "registers"; see ``logreg_pass``); other
        threads keep theirs."""
        if kind not in plans.PASS_KINDS:
            raise ValueError(f"kind must be one of {plans.PASS_KINDS}, got {kind!r}")
        previous = getattr(self._thread, "forced_pass", None)
        self._thread.forced_pass = kind
        try:
            yield
        finally:
            self._thread.forced_pass = previous

    def named_variants(self, build, X, dtype):
        """The logistic-regression epoch with each single-pass kernel that can take X forced
        ("staged_pass", "registers_pass"), so a benchmark shows which one wins here."""
        native = np.uint8 if X.dtype == np.uint8 else np.dtype(dtype)
        out: dict[str, Callable[[], Any]] = {}
        for kind in plans.PASS_KINDS:
            with self._forcing_pass(kind):
                if self._pass_plan(X.shape[0], X.shape[1], dtype, native) is None:
                    continue
                epoch = build()

            def forced(kind=kind, epoch=epoch):
                with self._forcing_pass(kind):
                    epoch()

            out[f"{kind}_pass"] = forced
        return out

    # ------------------------------------------------------------ kernels
    def bias_activation_(self, Z, b, activation):
        floats = ("float32", "float64")
        if (
            activation == "softmax"  # over each column, not elementwise: no kernel, CuPy's ops
            or not (Z.flags.c_contiguous and b.flags.c_contiguous)
            or Z.dtype.name not in floats
        ):
            return super().bias_activation_(Z, b, activation)
        self._check("b", b, Z.dtype, (Z.shape[0], 1))
        elementwise = None if activation == "softmax" else activation  # softmax is per column
        self._launch(plans.bias_act_launch(Z, b, elementwise, self.sm_count))
        return self.softmax_(Z) if activation == "softmax" else Z

    def activation_backward_(self, dA, A, activation):
        if activation is None:
            return dA
        floats = ("float32", "float64")
        if (
            activation == "softmax"
            or not (dA.flags.c_contiguous and A.flags.c_contiguous)
            or dA.dtype.name not in floats
        ):
            return super().activation_backward_(dA, A, activation)
        self._check("A", A, dA.dtype, dA.shape)
        self._launch(plans.act_backward_launch(dA, A, activation, self.sm_count))
        return dA

    def sigmoid_(self, Z):
        if not Z.flags.c_contiguous or Z.dtype.name not in ("float32", "float64"):
            return super().sigmoid_(Z)
        self._launch(plans.sigmoid_launch(Z, self.sm_count))
        return Z

    def bce_from_logits(self, Z, Y, m=None):
        if (
            not (Z.flags.c_contiguous and Y.flags.c_contiguous)
            or Z.dtype.name not in ("float32", "float64")
            or m is not None  # the kernel divides by Z's columns: m= takes the base op
        ):
            return super().bce_from_logits(Z, Y, m)
        self._check("Y", Y, Z.dtype, Z.shape)
        partial = self.cp.empty((plans.bce_groups(Z.shape[1], self.sm_count), 2), dtype=self.cp.float64)
        dZ = self.cp.empty_like(Z)
        self._launch(plans.bce_logits_launch(Z, Y, dZ, partial, self.sm_count))
        sums = partial.sum(axis=0)  # fixed-size reduction: deterministic
        return self.finite_mean_loss(sums[0], Z, Y), sums[1], dZ

    def softmax_(self, Z):
        if not Z.flags.c_contiguous or Z.dtype.name not in ("float32", "float64"):
            return super().softmax_(Z)
        self._launch(plans.softmax_launch(Z, self.sm_count))
        return Z

    def softmax_cross_entropy(self, Z, Y, m=None):
        floats = ("float32", "float64")
        chunk = m is not None and m != Z.shape[1]  # a chunk of a larger batch: the base op scales
        if chunk or not (Z.flags.c_contiguous and Y.flags.c_contiguous) or Z.dtype.name not in floats:
            return super().softmax_cross_entropy(Z, Y, m=m)
        m = Z.shape[1]
        self._check("Y", Y, Z.dtype, (1, m))
        partial = self.cp.empty((plans.bce_groups(m, self.sm_count), 2), dtype=self.cp.float64)
        dZ = self._guard(lambda: self.cp.empty_like(Z), Z.nbytes)
        self._launch(plans.softmax_xent_launch(Z, Y, dZ, partial, self.sm_count))
        sums = partial.sum(axis=0)  # fixed-size reduction: deterministic
        return self.finite_mean_loss(sums[0], Z, Y), sums[1], dZ

    def _single_pass_plan(self, w, X) -> plans.PassPlan | None:
        """The single-pass kernel plan for parameters w over X, or None where X's layout,
        dtypes or size leave logistic regression to the generic cuBLAS path."""
        dtype = w.dtype
        if (
            not X.flags.f_contiguous
            or dtype.name not in ("float32", "float64")
            or X.dtype.name not in ("float32", "float64", "uint8")
            or (X.dtype != np.uint8 and X.dtype != dtype)
        ):
            return None
        return self._pass_plan(X.shape[0], X.shape[1], dtype, X.dtype, plans.address(X))

    def logreg_epoch_(self, w, b, X, Y, lr, loss):
        cp = self.cp
        n, m = X.shape
        dtype = w.dtype
        if (pass_plan := self._single_pass_plan(w, X)) is None:
            return super().logreg_epoch_(w, b, X, Y, lr, loss)  # generic cuBLAS path
        self._check("w", w, dtype, (1, n))
        self._check("b", b, dtype, (1, 1))
        self._check("Y", Y, dtype, (1, m))
        groups = pass_plan.groups
        # this call's own partial sums (CuPy's pool makes them cheap): never shared with
        # another thread's epoch of the same shape
        dw_partial = self._empty((groups, n), dtype)
        stats = self._empty((groups, 3), cp.float64)
        out = cp.empty(2, dtype=cp.float64)
        sms = self.sm_count
        for launch in plans.logreg_launches(pass_plan, w, b, X, Y, dw_partial, stats, out, lr, loss, sms):
            self._launch(launch)
        return out[0], out[1]

    def _softmax_plan(self, W, X) -> plans.SoftmaxPlan | None:
        """softmax_pass's plan for parameters W (K, n) over X, or None where X's layout,
        dtypes or size leave softmax regression to the generic cuBLAS path."""
        if not X.flags.f_contiguous or W.dtype.name not in ("float32", "float64"):
            return None
        n, m = X.shape
        return plans.softmax_pass_plan(
            n,
            m,
            W.shape[0],
            W.dtype,
            X.dtype,
            self.sm_count,
            self.shared_limit,
            plans.address(X),
            self._resident_blocks,
            self.softmax_pass,
        )

    def _softmax_pass_buffers(self, plan: plans.SoftmaxPlan, W, b, X, Y):
        """Checks the arguments and returns this call's own partial sums (dw, db, stats)."""
        K, n = W.shape
        self._check("W", W, W.dtype, (K, X.shape[0]))
        self._check("b", b, W.dtype, (K, 1))
        self._check("Y", Y, W.dtype, (1, X.shape[1]))
        dw_partial = self._empty((plan.groups, K, n), W.dtype)
        db_partial = self._empty((plan.groups, K), self.cp.float64)
        stats = self._empty((plan.groups, 2), self.cp.float64)
        return dw_partial, db_partial, stats

    def softmax_epoch_(self, W, b, X, Y, lr):
        """Softmax regression with X read once (``softmax_pass``), then the fixed-order
        reduction and step (``softmax_update``); the generic cuBLAS epoch where no plan fits."""
        if (plan := self._softmax_plan(W, X)) is None:
            return super().softmax_epoch_(W, b, X, Y, lr)
        partials = self._softmax_pass_buffers(plan, W, b, X, Y)
        out = self.cp.empty(2, dtype=self.cp.float64)
        for launch in plans.softmax_launches(plan, W, b, X, Y, *partials, out, lr, self.sm_count):
            self._launch(launch)
        return out[0], out[1]

    def softmax_loss_grad(self, W, b, X, Y):
        """``softmax_pass`` followed by a fixed-order reduction into float64 dW and db
        (``softmax_grad``) instead of the update; the generic path where no plan fits."""
        if (plan := self._softmax_plan(W, X)) is None:
            return super().softmax_loss_grad(W, b, X, Y)
        cp = self.cp
        partials = self._softmax_pass_buffers(plan, W, b, X, Y)
        dW = self._empty(W.shape, cp.float64)
        db = self._empty(b.shape, cp.float64)
        out = cp.empty(2, dtype=cp.float64)
        for launch in plans.softmax_grad_launches(plan, W, b, X, Y, *partials, dW, db, out, self.sm_count):
            self._launch(launch)
        return out[0], out[1], dW, db

    def _empty(self, shape, dtype):
        _refuse_in_forked_child()
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self._guard(lambda: self.cp.empty(shape, dtype=dtype), nbytes)

    # ------------------------------------------------------------- facts
    def _device_name(self) -> str:
        props = self.cp.cuda.runtime.getDeviceProperties(self.device.id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def streaming_read(self, X):
        """A pure read of X's own memory as aligned 16-byte words (the read_words kernel:
        the logistic-regression floor), and the bytes it reads."""
        sink = self.cp.zeros(1, dtype=self.cp.uint64)
        launch = plans.read_words_launch(X, sink, self.sm_count)
        return (lambda: self._launch(launch)), plans.read_words_bytes(X)

    def timer(self):
        """CUDA events on the current stream (the stream the kernels run on)."""
        _refuse_in_forked_child()
        cp = self.cp
        return EventTimer(cp.cuda.Event(), cp.cuda.Event(), lambda s, e: cp.cuda.get_elapsed_time(s, e) / 1e3)

    def describe(self) -> dict[str, Any]:
        _refuse_in_forked_child()
        cp = self.cp
        info = super().describe()
        info.update(
            device=self._device_name(),
            compute_capability=self.device.compute_capability,
            cupy=cp.__version__,
            cuda_runtime=cp.cuda.runtime.runtimeGetVersion(),
            cuda_driver=cp.cuda.runtime.driverGetVersion(),
            tf32=os.environ.get("CUPY_TF32", "0") == "1",
            shared_memory_per_block_optin=self.shared_limit,
            logreg_pass=self.logreg_pass,
            softmax_pass=self.softmax_pass,
            kernel_compile_s=self.compile_seconds,
            occupancy_error=self.occupancy_error,
            kernel_disk_cache=kernel_disk_cache(cp.__version__, cp.cuda.runtime.driverGetVersion()),
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

    # ------------------------------------ loss and gradient without the update (L-BFGS)
    def logreg_loss_grad(self, w, b, X, Y, loss):
        """The single pass of ``logreg_epoch_`` (the same kernel and plan) followed by a
        fixed-order reduction into a float64 gradient instead of the update."""
        cp = self.cp
        n, m = X.shape
        dtype = w.dtype
        if (pass_plan := self._single_pass_plan(w, X)) is None:
            return super().logreg_loss_grad(w, b, X, Y, loss)  # generic cuBLAS path
        self._check("w", w, dtype, (1, n))
        self._check("b", b, dtype, (1, 1))
        self._check("Y", Y, dtype, (1, m))
        dw_partial = self._empty((pass_plan.groups, n), dtype)
        stats = self._empty((pass_plan.groups, 3), cp.float64)
        dw = self._empty((1, n), cp.float64)
        out = cp.empty(3, dtype=cp.float64)
        launches = plans.logreg_grad_launches(
            pass_plan, w, b, X, Y, dw_partial, stats, dw, out, loss, self.sm_count
        )
        for launch in launches:
            self._launch(launch)
        return out[0], out[1], dw, out[2:3].reshape(1, 1)
