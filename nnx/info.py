"""Facts about this installation: versions, backends and why some are missing, threads."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

from . import __version__, backends


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
            entry.update(backends.get_backend(name).describe())
        info["backends"][name] = entry
    info["auto"] = {"backend": (sel := backends.select("auto")).backend.name, "reason": sel.reason}
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
    for name, entry in info["backends"].items():
        if entry["available"]:
            extra = {k: v for k, v in entry.items() if k not in ("available", "reason", "name")}
            detail = ", ".join(f"{k}={v}" for k, v in extra.items())
            lines.append(f"  {name:6s} available   {detail}")
        else:
            lines.append(f"  {name:6s} unavailable {entry['reason']}  -> {entry['install']}")
    lines.append(f"auto picks: {info['auto']['backend']} ({info['auto']['reason']})")
    if isinstance(info["blas"], list):
        for pool in info["blas"]:
            lines.append(f"blas: {pool['internal_api']} {pool.get('version')} threads={pool['num_threads']}")
    return "\n".join(lines)
