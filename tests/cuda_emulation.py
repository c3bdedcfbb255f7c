"""The CUDA kernels of kernels/ compiled for the CPU emulation in tests/cuda_on_cpu, with
CuPy's RawModule calling convention: ``module.get_function(name)(grid, block, args)``.

Arguments are NumPy arrays (their data pointer is passed, as CuPy passes a device pointer)
and NumPy scalars; each launch checks them against the kernel's C parameter list, so a
wrapper that passes an int32 where the kernel takes a ``long long`` fails here as it would
misbehave on a GPU. What else a launch is checked for, as a GPU would fault or refuse it:

* alignment: each array keeps its address modulo 64 and the kernels are built with the
  alignment sanitizer, so a vector load at an address its width does not divide (a
  ``uchar4`` of a view at an odd offset) is an error, not a silently working CPU load;
* shared memory: each kernel's static shared memory is read from the built library and
  its dynamic limit modelled as CUDA does (48 KB minus the static share until raised, at
  most the device's opt-in maximum minus it), on an ``EmulatedDevice``;
* denormals: float kernels run with denormals flushed to zero, as CuPy compiles them
  (``-ftz=true``).

``EmulatedCupy`` puts ``CupyBackend`` itself on the emulation.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from nnx.backends.codes import cuda_defines
from nnx.backends.cuda_launch import kernel_source_path, name_expressions

HEADER_DIR = Path(__file__).resolve().parent / "cuda_on_cpu"
CXX = shutil.which("g++") or shutil.which("clang++")
NM = shutil.which("nm")
KERNELS = [*name_expressions(), "read_words"]


class EmulationError(RuntimeError):
    """A launch the emulation refused or a kernel fault it detected (e.g. a divergent barrier)."""


def launcher_source(kernel_file: Path, names: list[str]) -> str:
    """C++ that includes the kernels and exposes each instantiation by its name expression."""
    entries = ",\n".join(
        f'    {{"{n}", [](void** a) {{ cuda_on_cpu::call(&{n}, a); }}, cuda_on_cpu::signature(&{n}), '
        f"reinterpret_cast<void*>(&{n})}}"
        for n in names
    )
    return f"""#include "cuda_on_cpu.h"
#include "{kernel_file.name}"

#include <dlfcn.h>

namespace {{
struct Entry {{
    const char* name;
    void (*call)(void**);
    std::string signature;
    void* address;
}};
const Entry entries[] = {{
{entries}
}};
const Entry* find(const char* name) {{
    for (const Entry& e : entries)
        if (strcmp(e.name, name) == 0) return &e;
    return nullptr;
}}
void copy_out(const std::string& s, char* out, int capacity) {{
    snprintf(out, capacity, "%s", s.c_str());
}}
}}  // namespace

extern "C" int emu_signature(const char* name, char* out, int capacity) {{
    const Entry* e = find(name);
    if (!e) return 1;
    copy_out(e->signature, out, capacity);
    return 0;
}}

// The kernel's mangled (linker) name: its static __shared__ variables are named after it.
extern "C" int emu_symbol(const char* name, char* out, int capacity) {{
    const Entry* e = find(name);
    Dl_info info;
    if (!e || dladdr(e->address, &info) == 0 || info.dli_sname == nullptr) return 1;
    copy_out(info.dli_sname, out, capacity);
    return 0;
}}

extern "C" int emu_ftz_supported() {{ return NNX_EMULATE_FTZ; }}

extern "C" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                          unsigned bz, void** args, int reverse_warps, unsigned long long shared_bytes,
                          int ftz, char* error, int capacity) {{
    const Entry* e = find(name);
    if (!e) {{
        copy_out("no kernel instantiation named " + std::string(name), error, capacity);
        return 1;
    }}
    auto body = [&] {{ e->call(args); }};
    std::string message = cuda_on_cpu::launch({{gx, gy, gz}}, {{bx, by, bz}}, body, reverse_warps != 0,
                                              (std::size_t)shared_bytes, ftz != 0);
    copy_out(message, error, capacity);
    return message.empty() ? 0 : 1;
}}
"""


# The alignment sanitizer checks every load and store in the kernels; its reports go to
# handlers in cuda_on_cpu.h (no sanitizer runtime is linked).
SANITIZE = ["-fsanitize=alignment"]


def build(out_dir: Path, kernel_file: Path | None = None, names: list[str] | None = None) -> Path:
    """Compile kernels (default: nnx's, every instantiation the backend uses) and the
    emulation into a shared library in out_dir; returns its path."""
    if CXX is None:
        raise FileNotFoundError("no C++ compiler (g++ or clang++) on PATH")
    kernel_file = kernel_file or kernel_source_path()
    source = launcher_source(kernel_file, names or KERNELS)
    header = (HEADER_DIR / "cuda_on_cpu.h").read_text()
    text = source + kernel_file.read_text() + header + str(SANITIZE) + str(cuda_defines())
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    library = out_dir / f"nnx_kernels_on_cpu_{digest}.so"
    # out_dir may be shared by parallel test processes (pytest-xdist workers): one builds
    # while the others wait on the lock, and the library appears whole (renamed into place)
    with open(out_dir / f"build_{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not library.exists():
            cpp = out_dir / f"launcher_{digest}.cpp"
            obj = out_dir / f"launcher_{digest}.o"
            partial = out_dir / f"nnx_kernels_on_cpu_{digest}.{os.getpid()}.tmp"
            cpp.write_text(source)
            flags = ["-std=c++17", "-O1", "-fPIC", "-w", *SANITIZE, *cuda_defines()]
            includes = [f"-I{HEADER_DIR}", f"-I{kernel_file.parent}"]
            compile_ = [CXX, *flags, *includes, "-c", str(cpp), "-o", str(obj)]
            link = [CXX, "-shared", str(obj), "-o", str(partial), "-ldl"]
            for command in (compile_, link):
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    raise RuntimeError(f"compiling the CPU emulation failed:\n{result.stderr[-4000:]}")
            os.replace(partial, library)
    return library


def static_shared_symbols(library: Path) -> dict[str, int]:
    """Sizes of the function-local statics in ``library``, by symbol. The emulation turns
    ``__shared__`` into function-local statics, which the compiler names
    ``_ZZ<function>E<variable>``: a kernel's static shared memory is the sum over its own
    (see ``EmulatedModule.static_shared_bytes``), as a GPU's comes from the compiled kernel."""
    if NM is None:
        raise FileNotFoundError("no nm (binutils) on PATH to read the emulated kernels' shared memory")
    command = [NM, "-S", "--defined-only", str(library)]
    listing = subprocess.run(command, capture_output=True, text=True, check=True)
    sizes: dict[str, int] = {}
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3].startswith("_ZZ"):
            sizes[fields[3]] = int(fields[1], 16)
    return sizes


def _code(arg) -> str:
    if isinstance(arg, np.ndarray):
        return "p"
    if isinstance(arg, np.integer):
        return f"i{arg.dtype.itemsize}"
    if isinstance(arg, np.floating):
        return f"f{arg.dtype.itemsize}"
    raise TypeError(f"kernel arguments must be NumPy arrays or NumPy scalars, got {type(arg).__name__}")


# On each side of every array argument (0xFF bytes are NaN in any float type): wider than
# a whole 512-thread tile of 4-wide double words, so a tile that runs past its row lands in it.
GUARD_BYTES = 64 * 1024


def address(array: np.ndarray) -> int:
    """Where an array's memory starts (the emulation keeps it modulo 64)."""
    return array.ctypes.data


class GuardedArray:
    """An array argument copied between two guard zones of 0xFF bytes, as the kernel sees
    it: its memory, in memory order (a raw kernel ignores strides), starting at the same
    address modulo 64 as the caller's array (so a view at an odd offset stays at an odd
    offset, as it would on the device, and the alignment sanitizer sees it). Reading past
    the array reads NaN (or 255 pixels) into the results; writing past it is caught by
    ``check_and_copy_back``."""

    def __init__(self, index: int, array: np.ndarray) -> None:
        if not array.flags.c_contiguous:
            raise ValueError(f"argument {index} is not C-contiguous: a raw kernel would ignore its strides")
        self.index, self.array = index, array
        raw = np.full(array.nbytes + 2 * GUARD_BYTES + 64, 0xFF, np.uint8)
        start = (address(array) - GUARD_BYTES - raw.ctypes.data) % 64  # inner: array's address mod 64
        self.raw = raw[start : start + array.nbytes + 2 * GUARD_BYTES]
        self.inner = self.raw[GUARD_BYTES : GUARD_BYTES + array.nbytes]
        assert (address(self.inner) - address(array)) % 64 == 0
        self.inner[:] = array.reshape(-1).view(np.uint8)

    def check_and_copy_back(self, kernel: str) -> None:
        guards = np.concatenate([self.raw[:GUARD_BYTES], self.raw[-GUARD_BYTES:]])
        if np.any(guards != 0xFF):
            raise EmulationError(f"{kernel} wrote outside argument {self.index} ({self.array.nbytes} bytes)")
        if not np.array_equal(self.inner, self.array.reshape(-1).view(np.uint8)):
            if not self.array.flags.writeable:
                raise EmulationError(f"{kernel} wrote into read-only argument {self.index}")
            self.array.reshape(-1).view(np.uint8)[:] = self.inner


# Registers per thread of every kernel in the sm_90 build, as NVRTC 13 reports them
# (ptxas -v) with CuPy's options: the emulated device's occupancy comes from them, as an
# H100's does. test_kernels_nvcc.py checks the table against a fresh compile, and
# ``python tests/cuda_emulation.py --registers`` rewrites it from one.
SM90_REGISTERS_FILE = HEADER_DIR / "sm90_registers.json"
SM90 = {"registers": 65536, "threads": 2048, "blocks": 32, "register_unit": 256}


def sm90_registers() -> dict[str, int]:
    """Registers per thread by name expression (``SM90_REGISTERS_FILE``)."""
    return json.loads(SM90_REGISTERS_FILE.read_text())


def blocks_per_sm(registers: int, threads: int) -> int:
    """Blocks of ``threads`` threads at ``registers`` registers per thread that an sm_90 SM
    holds at once, as cudaOccupancyMaxActiveBlocksPerMultiprocessor counts them without
    dynamic shared memory: each warp's registers are allocated in units of 256, the SM
    has 64 K registers, 2048 threads and 32 blocks at most (the single-pass kernels'
    few KB of static shared memory never decide it)."""
    unit = SM90["register_unit"]
    per_warp = -(-registers * 32 // unit) * unit
    warps = -(-threads // 32)
    by_registers = SM90["registers"] // per_warp // warps
    return max(0, min(by_registers, SM90["threads"] // threads, SM90["blocks"]))


def modelled_resident_blocks(name: str, threads: int = 512) -> int:
    """The sm_90 occupancy of kernel ``name`` (launched with ``threads`` per block) from its
    registers: what the backend's ``resident_blocks`` gets from the driver on an H100."""
    return blocks_per_sm(sm90_registers()[name], threads)


def _value(arg):
    """A ctypes object holding a scalar argument's value."""
    return np.ctypeslib.as_ctypes(np.array([arg]))


@dataclass(frozen=True)
class EmulatedDevice:
    """The GPU the emulation checks launches against.

    ``shared_optin``: shared memory per block (static + dynamic) a kernel may use once its
    ``max_dynamic_shared_size_bytes`` is raised (CUDA's MaxSharedMemoryPerBlockOptin);
    ``default_shared``: what a block may use without that (48 KB on every GPU since
    Kepler), so a kernel's dynamic limit starts at ``default_shared`` minus its static
    shared memory. ``resident_blocks``: blocks of a single-pass kernel that fit on one SM
    at once (its occupancy, which the GPU derives from registers per thread): None, the
    default, models it from each kernel's registers in the sm_90 build
    (``modelled_resident_blocks``: 1 to 4 for the plans' kernels, as on an H100); a number
    sets it for every kernel.
    ``memory_bytes``: device memory, all of it reported free.
    """

    sm_count: int = 132
    shared_optin: int = 227 * 1024
    default_shared: int = 48 * 1024
    resident_blocks: int | None = None
    name: str = "emulated H100 (132 SMs, 227 KB opt-in shared memory per block)"
    memory_bytes: int = 80 * 2**30


HOPPER = EmulatedDevice()

# The emulation keeps launch state in process-wide C++ variables (one launch at a time, as
# one stream): launches from several Python threads take turns.
_LAUNCH_LOCK = threading.Lock()


class EmulatedKernel:
    """One kernel instantiation, called like a ``cupy.RawKernel``.

    As on a GPU: ``shared_size_bytes`` is the kernel's static shared memory;
    ``max_dynamic_shared_size_bytes`` starts at the device's 48 KB default minus that, may
    be raised up to the device's opt-in maximum minus it (more is refused, as
    cuFuncSetAttribute refuses it), and a launch with more dynamic shared memory than it
    allows is refused. Float kernels run with denormals flushed (see ``EmulatedModule``).
    """

    def __init__(self, module: EmulatedModule, name: str) -> None:
        self.module, self.name = module, name
        self.library, self.reverse_warps = module.library, module.reverse_warps
        buffer = ctypes.create_string_buffer(256)
        if self.library.emu_signature(name.encode(), buffer, 256) != 0:
            raise KeyError(f"no kernel instantiation named {name}")
        self.signature = buffer.value.decode().split(",")
        self.shared_size_bytes = module.static_shared_bytes(name)
        self._max_dynamic = module.device.default_shared - self.shared_size_bytes
        # CuPy compiles with -ftz=true: float arithmetic flushes denormals, double does not
        self.ftz = module.ftz and "double" not in name
        self.kernel = SimpleNamespace(ptr=id(self))  # cupy.RawKernel.kernel: the CUDA function
        module.kernel_names[id(self)] = name

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        return self._max_dynamic

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value: int) -> None:
        device = self.module.device
        if value < 0 or self.shared_size_bytes + value > device.shared_optin:
            raise EmulationError(
                f"{self.name}: max_dynamic_shared_size_bytes = {value} refused (CUDA_ERROR_INVALID_VALUE): "
                f"with its {self.shared_size_bytes} bytes of static shared memory that is over the "
                f"device's {device.shared_optin} bytes per block"
            )
        self._max_dynamic = int(value)

    def __call__(self, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        if shared_mem > self.max_dynamic_shared_size_bytes:
            raise EmulationError(
                f"{self.name}: {shared_mem} bytes of dynamic shared memory, over the kernel's "
                f"max_dynamic_shared_size_bytes ({self.max_dynamic_shared_size_bytes}; it has "
                f"{self.shared_size_bytes} bytes of static shared memory)"
            )
        codes = [_code(a) for a in args]
        if codes != self.signature:
            expected, got = ",".join(self.signature), ",".join(codes)
            raise TypeError(f"{self.name} takes ({expected}), launched with ({got})")
        guarded = {i: GuardedArray(i, a) for i, a in enumerate(args) if isinstance(a, np.ndarray)}
        # every ctypes object stays alive until the launch returns
        values = [
            ctypes.c_void_p(guarded[i].inner.ctypes.data) if i in guarded else _value(a)
            for i, a in enumerate(args)
        ]
        addresses = [ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values]
        slots = (ctypes.c_void_p * len(values))(*addresses)
        g = (*grid, 1, 1)[:3]
        b = (*block, 1, 1)[:3]
        error = ctypes.create_string_buffer(1024)
        reverse, ftz = int(self.reverse_warps), int(self.ftz)
        with _LAUNCH_LOCK:
            status = self.library.emu_launch(
                self.name.encode(), *g, *b, slots, reverse, shared_mem, ftz, error, 1024
            )
        if status != 0:
            raise EmulationError(f"{self.name}: {error.value.decode()}")
        for argument in guarded.values():
            argument.check_and_copy_back(self.name)
        if self.module.after_launch is not None:
            self.module.after_launch(self.name)


class EmulatedModule:
    """The compiled emulation, looked up like a cupy.RawModule, on ``device``.

    With reverse_warps, each block runs its warps last to first (see cuda_on_cpu.h): a
    kernel whose results change with the order races on shared memory. With ftz (the
    default, as CuPy compiles every module with -ftz=true), launches of kernels other than
    double instantiations flush denormals to zero where the CPU can (``ftz_supported``).
    ``after_launch``, when set, is called with the kernel's name after each launch (a test
    can make threads meet there, to interleave their launches in a chosen order).
    """

    def __init__(
        self, library: Path, reverse_warps: bool = False, device: EmulatedDevice = HOPPER, ftz: bool = True
    ) -> None:
        self.reverse_warps, self.device, self.path = reverse_warps, device, Path(library)
        self.library = ctypes.CDLL(str(library))
        self.library.emu_launch.argtypes = [ctypes.c_char_p, *[ctypes.c_uint] * 6, ctypes.c_void_p,
                                            ctypes.c_int, ctypes.c_ulonglong, ctypes.c_int,
                                            ctypes.c_char_p, ctypes.c_int]  # fmt: skip
        self.library.emu_signature.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        self.library.emu_symbol.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        self.ftz_supported = bool(self.library.emu_ftz_supported())
        self.ftz = ftz and self.ftz_supported
        self._statics: dict[str, int] | None = None
        self.after_launch: Callable[[str], None] | None = None
        self.kernel_names: dict[int, str] = {}  # EmulatedKernel.kernel.ptr -> name expression

    def static_shared_bytes(self, name: str) -> int:
        """Bytes of static ``__shared__`` memory kernel ``name`` declares."""
        buffer = ctypes.create_string_buffer(4096)
        if self.library.emu_symbol(name.encode(), buffer, 4096) != 0:
            raise KeyError(f"no symbol for kernel {name}")
        symbol = buffer.value.decode()
        if self._statics is None:
            self._statics = static_shared_symbols(self.path)
        prefix = "_ZZ" + symbol[2:] + "E" if symbol.startswith("_Z") else None
        if prefix is None:  # extern "C": locals are _ZZ<length><name>E...
            prefix = f"_ZZ{len(symbol)}{symbol}E"
        return sum(size for local, size in self._statics.items() if local.startswith(prefix))

    def compile(self) -> None:
        """As ``cupy.RawModule.compile``: the library is already built."""

    def get_function(self, name: str) -> EmulatedKernel:
        return EmulatedKernel(self, name)


class _EmulatedEvent:
    """cupy.cuda.Event on the emulation: kernels run as they are launched, so an event
    "records" the wall clock."""

    def __init__(self, *_: object, **__: object) -> None:
        self.at = 0.0

    def record(self, *_: object) -> None:
        self.at = time.perf_counter()

    def synchronize(self) -> None:
        pass


class EmulatedCupy(types.ModuleType):
    """Enough of CuPy, on the CPU, for ``CupyBackend``'s kernel wrappers to run through the
    emulation: NumPy arrays stand in for device arrays (their addresses modulo 64 are kept,
    see ``GuardedArray``), ``RawModule`` compiles nothing and looks kernels up in the
    emulation (counting how often it is built, with which options), the device is
    ``device``. Install it as ``sys.modules["cupy"]`` before constructing the backend;
    everything not defined here is NumPy's.
    """

    def __init__(self, library: Path, device: EmulatedDevice = HOPPER, compile_delay_s: float = 0.0) -> None:
        super().__init__("cupy")
        self.__version__ = "13.6.0 (emulated)"
        self.ndarray = np.ndarray
        self.modules_built: list[tuple] = []
        self.module = emulated = EmulatedModule(library, device=device)

        def raw_module(*, code: str, options: tuple = (), **_: object) -> EmulatedModule:
            time.sleep(compile_delay_s)  # a compile takes a while: long enough for another thread to ask
            self.modules_built.append(tuple(options))
            return emulated

        class OutOfMemoryError(MemoryError):
            pass

        attributes = {
            "MultiProcessorCount": device.sm_count,
            "MaxSharedMemoryPerBlockOptin": device.shared_optin,
        }

        def occupancy_of(function: int, threads: int, dynamic_shared: int) -> int:
            if device.resident_blocks is not None:
                return device.resident_blocks
            return modelled_resident_blocks(emulated.kernel_names[function], threads)

        occupancy = SimpleNamespace(occupancyMaxActiveBlocksPerMultiprocessor=occupancy_of)
        stream = SimpleNamespace(synchronize=lambda: None)
        self.RawModule = raw_module
        self.cuda = SimpleNamespace(
            Device=lambda *_: SimpleNamespace(id=0, attributes=attributes, compute_capability="90"),
            driver=occupancy,
            memory=SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
            runtime=SimpleNamespace(
                getDeviceProperties=lambda _: {"name": device.name},
                runtimeGetVersion=lambda: 0,
                driverGetVersion=lambda: 0,
                getDeviceCount=lambda: 1,
                memGetInfo=lambda: (device.memory_bytes, device.memory_bytes),  # (free, total)
            ),
            get_current_stream=lambda: stream,
            Event=_EmulatedEvent,
            get_elapsed_time=lambda start, end: (end.at - start.at) * 1e3,  # ms, as CuPy's
        )

    @staticmethod
    def get_default_memory_pool() -> SimpleNamespace:
        """CuPy's pool of freed device memory: host memory here, so it holds nothing."""
        return SimpleNamespace(free_bytes=lambda: 0)

    def asnumpy(self, a) -> np.ndarray:
        return np.array(a, copy=True)

    def __getattr__(self, name: str):
        return getattr(np, name)


def _write_register_table() -> None:
    """Rewrite ``SM90_REGISTERS_FILE`` from an NVRTC compile (as test_kernels_nvcc.py does)."""
    import test_kernels_nvcc

    table = test_kernels_nvcc.nvrtc_registers(KERNELS)
    SM90_REGISTERS_FILE.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(table)} kernels -> {SM90_REGISTERS_FILE}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--registers"]:
        raise SystemExit("usage: python tests/cuda_emulation.py --registers")
    _write_register_table()
