"""Saving and loading models: npz without pickle, written atomically, versioned."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFormatError
from .files import MODEL_FORMAT, atomic_write
from .layers import layer_from_config

FORMAT = MODEL_FORMAT
FORMAT_VERSION = 1


def save_model(model: Any, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` (a Sequential) to ``path`` as npz: architecture JSON, dtype,
    format version, metadata, optional ``extra`` JSON (checkpoint state) and one W/b
    array per Linear layer."""
    write_model_file(path, model.config(), model.parameters(), model.last_backend, model.metadata, extra)


def write_model_file(
    path: str | os.PathLike,
    config: dict[str, Any],
    params: list[tuple[np.ndarray, np.ndarray]],
    backend: str | None = None,
    metadata: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the model-file npz from its parts (atomically; no pickle anywhere)."""
    from . import __version__

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nnx_version": __version__,
        "architecture": config,
        "dtype": str(params[0][0].dtype),
        "backend": backend,
        "metadata": metadata or {},
        "extra": extra,
    }
    arrays = {"__meta__": np.array(json.dumps(meta))}
    for i, (W, b) in enumerate(params):
        arrays[f"W{i}"] = W
        arrays[f"b{i}"] = b
    atomic_write(path, lambda fh: np.savez(fh, **arrays), kind="model")


def load(path: str | os.PathLike) -> Any:
    """Read a model written by ``save``. Raises FileNotFoundError for a missing file and
    ModelFormatError for a truncated, corrupt, foreign or newer-version file."""
    return load_with_extra(path)[0]


def load_with_extra(path: str | os.PathLike) -> tuple[Any, dict[str, Any] | None]:
    """``load`` plus the ``extra`` JSON stored with the model (checkpoint state), or None."""
    from .model import Sequential

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "__meta__" not in data.files:
                raise ModelFormatError(f"{path} is an npz file but not an nnx model (no __meta__ entry)")
            meta = json.loads(str(data["__meta__"]))
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
    except ModelFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ModelFormatError(
            f"{path} cannot be read as an nnx model (truncated or corrupt file?): {exc}"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFormatError(f"{path} is not an nnx model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} uses model format version {version}, newer than this nnx reads "
            f"({FORMAT_VERSION}); upgrade nnx to load it"
        )
    try:
        arch = meta["architecture"]
        layers = [layer_from_config(cfg) for cfg in arch["layers"]]
        model = Sequential(*layers, loss=arch["loss"])
        n = len(model.parameters())
        model.set_parameters([(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n)])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path} has an inconsistent architecture or parameters: {exc}") from exc
    model.last_backend = meta.get("backend")
    model.dtype = meta.get("dtype") if meta.get("dtype") in ("float32", "float64") else None
    model.metadata = dict(meta.get("metadata") or {})
    return model, meta.get("extra")
