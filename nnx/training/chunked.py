"""Exact full-batch training over column chunks of X in this process
(``fit_chunked_locally``): the single-machine reference of ``nnx.distributed.fit``, built
from the same pieces (``nnx.training.chunks`` and ``nnx.training.hostloop``), so for the
same chunks, backend and dtype both give the same parameters bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backends
from ..history import History
from ..validation import (
    INPUT_DTYPES,
    check_X,
)
from .chunks import Chunk, Partial, Spec, column_chunks, combine
from .hostloop import (
    ChunkCallback,
    HostUpdate,
    LocalChunks,
    Step,
    drive,
    lbfgs_on_chunks,
    local_gradients,
    plan,
    validator,
)
from .threads import blas_limited


@dataclass
class ChunkedSource:
    """Gradient source of ``engine.run``: X split into column ``chunks`` in this process."""

    chunks: int | Sequence[int]
    blas_threads: int | None = 1
    backend: str | None = None
    name = "chunked"

    def fit(self, model: Any, X: Any, Y: Any, opts: Any) -> Any:
        from .request import FitResult, fit_history

        X = X if isinstance(X, np.ndarray) else np.asarray(X)
        if X.ndim != 2 or X.size == 0 or X.shape[0] != model.n_features or X.dtype.name not in INPUT_DTYPES:
            check_X(X, model.n_features)  # its message; the values are checked chunk by chunk
        m = X.shape[1]
        Y = np.asarray(Y)
        Y2 = Y.reshape(1, -1) if Y.ndim == 1 else Y
        if Y2.ndim != 2 or Y2.shape[1] != m:
            raise ValueError(f"X has {m} examples (columns) but Y has shape {Y.shape}")
        sizes = column_chunks(m, self.chunks)
        spec = Spec.of(model, opts.dtype, m, self.backend)
        setup = plan(model, opts, m, Y2)
        with blas_limited(self.blas_threads):
            validate = validator(model, opts, self.backend)
            edges = [int(e) for e in np.concatenate([[0], np.cumsum(sizes)])]
            parts = [
                Chunk(i, lo, X[:, lo:hi], Y2[:, lo:hi], spec, _columns(setup.weights, lo, hi))
                for i, (lo, hi) in enumerate(zip(edges, edges[1:]))
            ]
            names = sorted({c.backend for c in parts})
            reason = f"chunked locally: {len(parts)} chunks ({parts[0].backend_reason})"
            if opts.verbose:
                print(f"nnx: training on {reason}, dtype {opts.dtype}")
            history = fit_history(",".join(names), reason, opts, setup.per_class)
            if opts.solver == "lbfgs":
                host = lbfgs_on_chunks(setup, opts, m, history, validate, lambda p: local_gradients(parts, p))
                return FitResult(host, history, history.backend, opts.dtype, None)
            step, state = drive(
                LocalChunks(parts, setup.rule),
                setup.step,
                opts=opts,
                m=m,
                history=history,
                validate=validate,
                window=1,
                early=setup.early,
                best=setup.best,
            )
        return FitResult(step.params, history, history.backend, opts.dtype, state)


def _columns(weights: np.ndarray | None, lo: int, hi: int) -> np.ndarray | None:
    return None if weights is None else weights[lo:hi]


def fit_chunked_locally(
    model: Any,
    X: Any,
    Y: Any,
    *,
    chunks: int | Sequence[int],
    epochs: int = 100,
    lr: float | None = None,
    backend: str | None = None,
    blas_threads: int | None = 1,
    **options: Any,
) -> History:
    """Full-batch training in this process, X split into column ``chunks``.

    The single-machine reference of ``nnx.distributed.fit``: the same ``Chunk``, ``combine``
    and update code, so for the same chunk sizes, backend and dtype both give the same
    parameters bit for bit. Against ``model.fit`` (unchunked) they agree to rounding (the
    sums are grouped differently; see the README). Takes ``model.fit``'s options (any step
    optimizer or ``nnx.LBFGS()``, ``l2``, ``schedule``, ``early_stopping``, ``class_weight``,
    ``sample_weight``, ``validation_data``, ``history_every``, ``seed``, ``dtype``,
    ``warm_start``, ``verbose``, Dropout layers); mini-batches, which full-batch chunks
    cannot do, are refused before any work. ``callback(epoch, params, history)`` runs after
    every epoch with host parameters; True stops there. On any error the model's
    parameters are left as they were.

    ``blas_threads=1`` runs the BLAS products on one thread, as a Dask worker does (its
    nanny sets OPENBLAS_NUM_THREADS=1 and the like): a multi-threaded BLAS may split a
    product's sums differently and round differently. ``None`` leaves BLAS as configured
    (faster; then equal to a distributed run only where the products happen not to split).
    Needs threadpoolctl (the numba extra) to take effect.
    """
    from . import engine

    if isinstance(backend, backends.Backend):
        backend = backend.name
    source = ChunkedSource(chunks, blas_threads, backend)
    return engine.run(model, X, Y, source, epochs=epochs, lr=lr, backend=backend, **options)


__all__ = [
    "Chunk",
    "ChunkCallback",
    "ChunkedSource",
    "HostUpdate",
    "Partial",
    "Spec",
    "Step",
    "column_chunks",
    "combine",
    "fit_chunked_locally",
]
