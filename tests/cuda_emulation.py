"""The CUDA kernels of kernels/ compiled for the CPU emulation in tests/cuda_on_cpu, with
CuPy's RawModule calling convention: ``module.get_function(name)(grid, block, args)``.

Arguments are NumPy arrays (their data pointer is passed, as CuPy passes a device pointer)
and NumPy scalars; each launch checks them against the kernel's C parameter list, so a
wrapper that passes an int32 where the kernel takes a ``long long`` fails here as it would
misbehave on a GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np

from nnx.backends.cuda_launch import kernel_source_path, name_expressions

HEADER_DIR = Path(__file__).resolve().parent / "cuda_on_cpu"
CXX = shutil.which("g++") or shutil.which("clang++")
KERNELS = [*name_expressions(), "read_words"]


class EmulationError(RuntimeError):
    """A launch the emulation refused or a kernel fault it detected (e.g. a divergent barrier)."""


def launcher_source(kernel_file: Path, names: list[str]) -> str:
    """C++ that includes the kernels and exposes each instantiation by its name expression."""
    entries = ",\n".join(
        f'    {{"{n}", [](void** a) {{ cuda_on_cpu::call(&{n}, a); }}, cuda_on_cpu::signature(&{n})}}'
        for n in names
    )
    return f"""#include "cuda_on_cpu.h"
#include "{kernel_file.name}"

namespace {{
struct Entry {{
    const char* name;
    void (*call)(void**);
    std::string signature;
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

extern "C" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                          unsigned bz, void** args, int reverse_warps, unsigned long long shared_bytes,
                          char* error, int capacity) {{
    const Entry* e = find(name);
    if (!e) {{
        copy_out("no kernel instantiation named " + std::string(name), error, capacity);
        return 1;
    }}
    auto body = [&] {{ e->call(args); }};
    std::string message = cuda_on_cpu::launch({{gx, gy, gz}}, {{bx, by, bz}}, body, reverse_warps != 0,
                                              (std::size_t)shared_bytes);
    copy_out(message, error, capacity);
    return message.empty() ? 0 : 1;
}}
"""


def build(out_dir: Path, kernel_file: Path | None = None, names: list[str] | None = None) -> Path:
    """Compile kernels (default: nnx's, every instantiation the backend uses) and the
    emulation into a shared library in out_dir; returns its path."""
    if CXX is None:
        raise FileNotFoundError("no C++ compiler (g++ or clang++) on PATH")
    kernel_file = kernel_file or kernel_source_path()
    source = launcher_source(kernel_file, names or KERNELS)
    digest = hashlib.sha256(
        (source + kernel_file.read_text() + (HEADER_DIR / "cuda_on_cpu.h").read_text()).encode()
    ).hexdigest()[:16]
    library = out_dir / f"nnx_kernels_on_cpu_{digest}.so"
    if not library.exists():
        cpp = out_dir / f"launcher_{digest}.cpp"
        cpp.write_text(source)
        command = [CXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-w", f"-I{HEADER_DIR}",
                   f"-I{kernel_file.parent}", str(cpp), "-o", str(library)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling the CPU emulation failed:\n{result.stderr[-4000:]}")
    return library


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


class GuardedArray:
    """An array argument copied between two guard zones of 0xFF bytes, as the kernel sees
    it: its memory, in memory order (a raw kernel ignores strides). Reading past the array
    reads NaN (or 255 pixels) into the results; writing past it is caught by
    ``check_and_copy_back``."""

    def __init__(self, index: int, array: np.ndarray) -> None:
        if not array.flags.c_contiguous:
            raise ValueError(f"argument {index} is not C-contiguous: a raw kernel would ignore its strides")
        self.index, self.array = index, array
        raw = np.full(array.nbytes + 2 * GUARD_BYTES + 64, 0xFF, np.uint8)
        start = (-raw.ctypes.data) % 64  # 64-byte aligned, as device allocations are (>= 16 needed)
        self.raw = raw[start : start + array.nbytes + 2 * GUARD_BYTES]
        self.inner = self.raw[GUARD_BYTES : GUARD_BYTES + array.nbytes]
        self.inner[:] = array.reshape(-1).view(np.uint8)

    def check_and_copy_back(self, kernel: str) -> None:
        guards = np.concatenate([self.raw[:GUARD_BYTES], self.raw[-GUARD_BYTES:]])
        if np.any(guards != 0xFF):
            raise EmulationError(f"{kernel} wrote outside argument {self.index} ({self.array.nbytes} bytes)")
        if not np.array_equal(self.inner, self.array.reshape(-1).view(np.uint8)):
            if not self.array.flags.writeable:
                raise EmulationError(f"{kernel} wrote into read-only argument {self.index}")
            self.array.reshape(-1).view(np.uint8)[:] = self.inner


def _value(arg):
    """A ctypes object holding a scalar argument's value."""
    return np.ctypeslib.as_ctypes(np.array([arg]))


class EmulatedKernel:
    """One kernel instantiation, called like a ``cupy.RawKernel``. As on a GPU, a launch
    with more than 48 KB of dynamic shared memory is refused unless
    ``max_dynamic_shared_size_bytes`` was raised first (the shared memory left beside a
    kernel's static share is not modelled)."""

    def __init__(self, library: ctypes.CDLL, name: str, reverse_warps: bool) -> None:
        self.library, self.name, self.reverse_warps = library, name, reverse_warps
        self.max_dynamic_shared_size_bytes = 48 * 1024
        buffer = ctypes.create_string_buffer(256)
        if library.emu_signature(name.encode(), buffer, 256) != 0:
            raise KeyError(f"no kernel instantiation named {name}")
        self.signature = buffer.value.decode().split(",")

    def __call__(self, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        if shared_mem > self.max_dynamic_shared_size_bytes:
            raise EmulationError(
                f"{self.name}: {shared_mem} bytes of dynamic shared memory, over the kernel's "
                f"max_dynamic_shared_size_bytes ({self.max_dynamic_shared_size_bytes})"
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
        reverse = int(self.reverse_warps)
        status = self.library.emu_launch(self.name.encode(), *g, *b, slots, reverse, shared_mem, error, 1024)
        if status != 0:
            raise EmulationError(f"{self.name}: {error.value.decode()}")
        for argument in guarded.values():
            argument.check_and_copy_back(self.name)


class EmulatedModule:
    """The compiled emulation, looked up like a cupy.RawModule. With reverse_warps, each
    block runs its warps last to first (see cuda_on_cpu.h): a kernel whose results change
    with the order races on shared memory."""

    def __init__(self, library: Path, reverse_warps: bool = False) -> None:
        self.reverse_warps = reverse_warps
        self.library = ctypes.CDLL(str(library))
        self.library.emu_launch.argtypes = [ctypes.c_char_p, *[ctypes.c_uint] * 6, ctypes.c_void_p,
                                            ctypes.c_int, ctypes.c_ulonglong, ctypes.c_char_p,
                                            ctypes.c_int]  # fmt: skip
        self.library.emu_signature.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]

    def get_function(self, name: str) -> EmulatedKernel:
        return EmulatedKernel(self.library, name, self.reverse_warps)
