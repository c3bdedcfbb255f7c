"""Facts about this installation: versions, backends and why some are missing, threads."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

from .. import backends
from ..version import __version__


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    """The CPU model name where the OS tells it, else the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def kernel_compile(ops: Any) -> dict[str, Any]:
    """For a backend whose kernels are compiled on first use in each process (CuPy: NVRTC;
    CuPy 13.6 and 14.0 keep no disk cache of a module with name expressions, 14.1 and newer
    do): compile them now and report how long it took, the first-call cost a process pays
    (and that benchmark timings after this exclude); {} for other backends. A compile error
    is reported, not raised."""
    try:
        seconds = ops.compile_kernels()
    except Exception as exc:  # noqa: BLE001 - a fact for the report, not a crash of `nnx info`
        return {"kernel_compile_error": f"{type(exc).__name__}: {exc}"[:2000]}
    return {} if seconds is None else {"kernel_compile_s": seconds}


def collect() -> dict[str, Any]:
    """A JSON-able description of the installation and of every backend's status."""
    info: dict[str, Any] = {
        "nnx": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "versions": {
            name: _version(name)
            for name in (
                "numpy",
                "numba",
                "llvmlite",
                "cupy-cuda12x",
                "cupy-cuda13x",
                "torch",
                "pillow",
                "matplotlib",
                "tqdm",
                "threadpoolctl",
            )
        },
        "backends": {},
    }
    for name, status in backends.available().items():
        entry: dict[str, Any] = {"available": status.available, "reason": status.reason}
        if not status.available:
            entry["install"] = status.install
        else:
            ops = backends.get_backend(name)
            compiled = kernel_compile(ops)
            entry.update(ops.describe())
            entry.update(compiled)
        info["backends"][name] = entry
    # what a plain fit or `nnx train` here would pick: NNX_BACKEND when set, else auto
    info["auto"] = {"backend": (sel := backends.select(None)).backend.name, "reason": sel.reason}
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "num_threads", "version")} for p in threadpool_info()
        ]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    return info


def format_info(info: dict[str, Any]) -> str:
    """Human-readable text for ``nnx info``."""
    lines = [
        f"nnx {info['nnx']}  (python {info['python']}, {info['platform']})",
        f"cpu: {info['cpu']}  ({info['cpu_count']} logical cores)",
        "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v),
        "backends:",
    ]
    compile_keys = ("kernel_compile_s", "kernel_compile_error", "kernel_disk_cache")
    for name, entry in info["backends"].items():
        if entry["available"]:
            skip = ("available", "reason", "name", *compile_keys)
            extra = {k: v for k, v in entry.items() if k not in skip}
            detail = ", ".join(f"{k}={v}" for k, v in extra.items())
            lines.append(f"  {name:6s} available   {detail}")
            if entry.get("kernel_compile_error"):
                lines.append(f"         kernels failed to compile: {entry['kernel_compile_error']}")
            elif entry.get("kernel_compile_s") is not None:
                disk = entry.get("kernel_disk_cache")
                cached = "cached on disk after the first" if disk else "no disk cache"
                lines.append(
                    f"         kernels compiled in {entry['kernel_compile_s']:.1f} s: a first-call cost "
                    f"of each process ({cached})"
                )
        else:
            lines.append(f"  {name:6s} unavailable {entry['reason']}  -> {entry['install']}")
    lines.append(f"auto picks: {info['auto']['backend']} ({info['auto']['reason']})")
    if isinstance(info["blas"], list):
        for pool in info["blas"]:
            version = f" {pool['version']}" if pool.get("version") else ""
            lines.append(f"blas: {pool['internal_api']}{version} threads={pool['num_threads']}")
    return "\n".join(lines)
