"""Backend registry and selection.

Selection, most specific first: an explicit ``backend=`` argument; the innermost
``use_backend(...)`` context; the ``NNX_BACKEND`` environment variable (read each time a
backend is needed, never frozen at import); then ``"auto"``: CuPy when a GPU is usable,
else Numba when it imports, else NumPy. The choice and the reason are always reported
(``Selection.reason``), so ``auto`` never falls back silently.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import BackendUnavailableError
from .base import Backend

log = logging.getLogger("nnx")

DIST_NAME = "nnx-nets"

# name -> (module, class, install hint)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "numpy": ("nnx.backends.numpy_backend", "NumpyBackend", f"pip install {DIST_NAME}"),
    "numba": ("nnx.backends.numba_backend", "NumbaBackend", f"pip install '{DIST_NAME}[numba]'"),
    "cupy": (
        "nnx.backends.cupy_backend",
        "CupyBackend",
        f"pip install '{DIST_NAME}[cuda12]' or '{DIST_NAME}[cuda13]' (matching your CUDA driver)",
    ),
}
AUTO_ORDER = ("cupy", "numba", "numpy")

_instances: dict[str, Backend] = {}
_status_cache: dict[str, str | None] = {}
_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("nnx_backend", default=None)


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run here, and if not, why and how to fix it."""

    name: str
    available: bool
    reason: str
    install: str

    def __str__(self) -> str:
        if self.available:
            return f"{self.name}: available ({self.reason})"
        return f"{self.name}: unavailable - {self.reason}; install with: {self.install}"


@dataclass(frozen=True)
class Selection:
    """The backend chosen for a piece of work and why it was chosen."""

    backend: Backend
    reason: str


def names() -> tuple[str, ...]:
    """Every backend nnx knows, available here or not."""
    return tuple(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The class of backend ``name``, imported without building it: optional packages
    (Numba, CuPy) are imported only when a backend object is made, so this works anywhere."""
    module, cls, _ = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def _probe(name: str) -> str | None:
    """None when backend ``name`` can run here, else the reason it cannot."""
    if name in _status_cache:
        return _status_cache[name]
    module, _, _ = _REGISTRY[name]
    reason: str | None
    try:
        mod = importlib.import_module(module)
        reason = mod.unavailable_reason() if hasattr(mod, "unavailable_reason") else None
    except ImportError as exc:
        reason = f"cannot import it ({exc})"
    _status_cache[name] = reason
    return reason


def available() -> dict[str, BackendStatus]:
    """Status of every known backend: ``{name: BackendStatus}`` with the reason for each missing one."""
    out = {}
    for name, (_, _, hint) in _REGISTRY.items():
        reason = _probe(name)
        out[name] = BackendStatus(name, reason is None, reason or "ready", hint)
    return out


def _instantiate(name: str) -> Backend:
    if name not in _instances:
        reason = _probe(name)
        module, cls, hint = _REGISTRY[name]
        if reason is not None:
            raise BackendUnavailableError(
                f"backend {name!r} is not available: {reason}. Install it with: {hint}"
            )
        _instances[name] = getattr(importlib.import_module(module), cls)()
    return _instances[name]


def _validate_name(name: str) -> str:
    key = name.strip().lower()
    if key != "auto" and key not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; expected one of: auto, {', '.join(_REGISTRY)}")
    return key


def select(backend: str | Backend | None = None) -> Selection:
    """Resolve a backend request to a ready backend and the reason it was chosen."""
    if isinstance(backend, Backend):
        return Selection(backend, "backend object passed explicitly")
    if backend is not None:
        source = "requested explicitly"
        name = backend
    elif _context.get() is not None:
        source, name = "from use_backend()", _context.get()
    elif os.environ.get("NNX_BACKEND"):
        source, name = "from NNX_BACKEND", os.environ["NNX_BACKEND"]
    else:
        source, name = "default", "auto"
    key = _validate_name(name)
    if key != "auto":
        return Selection(_instantiate(key), source)
    skipped = []
    for candidate in AUTO_ORDER:
        reason = _probe(candidate)
        if reason is None:
            why = f"auto ({source}): best available"
            if skipped:
                why += "; skipped " + "; ".join(skipped)
            log.info("nnx backend %s chosen by %s", candidate, why)
            return Selection(_instantiate(candidate), why)
        skipped.append(f"{candidate}: {reason}")
    raise BackendUnavailableError("no backend is available: " + "; ".join(skipped))


def get_backend(backend: str | Backend | None = None) -> Backend:
    """The backend object for a request (see ``select`` for the order of precedence)."""
    return select(backend).backend


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Within the ``with`` block, work without an explicit ``backend=`` runs on ``name``."""
    selection = select(_validate_name(name))
    token = _context.set(name)
    try:
        yield selection.backend
    finally:
        _context.reset(token)


__all__ = [
    "Backend",
    "BackendStatus",
    "Selection",
    "available",
    "backend_class",
    "get_backend",
    "names",
    "select",
    "use_backend",
]
