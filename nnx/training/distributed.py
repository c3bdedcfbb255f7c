"""Exact data-parallel full-batch training on a Dask cluster (CPU or GPU workers).

``fit(model, X, Y, client=..., epochs=..., lr=...)`` takes a ``dask.array`` X (n_x, m)
chunked along the examples only. Each chunk of X and Y is checked and prepared once on
the worker that holds it (``nnx.training.chunks.Chunk``, on that worker's best nnx
backend: CuPy on a GPU worker, Numba on a CPU worker) and stays there. Every epoch, one
task per worker thread computes its chunks' loss and gradient sums divided by the whole m
(each chunk's kept apart); the sums are added in chunk order on the workers, the running
sum passed from the worker holding the first chunks to the one holding the next ones
(``chunks.fold``), and the worker holding the last chunks adds its own and applies the
optimizer's step (``hostloop.HostUpdate``); its result - the parameters and the optimizer
state - feeds the next epoch's tasks. L-BFGS asks for the summed loss and gradient at
each point its line search tries instead (added up the same way). Only parameters,
optimizer state and gradients cross the network, never data.

``epochs_ahead`` epochs are submitted at a time, as one task graph (one message to the
scheduler), each chained on the previous one's update, so the client waits for Dask once
per ``epochs_ahead`` epochs; it then reads the parameters and the figures of those epochs
(checking every loss) and starts the next batch of epochs from those parameters, which
also bounds what Dask must redo after a lost worker to at most ``epochs_ahead`` epochs
(Dask recomputes lost chunks from their source).

The result equals ``nnx.chunked.fit_chunked_locally`` with the same chunks and backend,
bit for bit. Without Dask installed, importing this module raises an ImportError naming
the ``nnx-nets[dask]`` extra; nothing else in nnx imports Dask.
"""

from __future__ import annotations

import uuid
from typing import Any

try:
    import dask
    import dask.array as da
    import distributed
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
    from dask.optimization import cull
    from distributed import KilledWorker
    from distributed.utils import CancelledError
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "nnx.distributed needs Dask (dask.array and distributed), which is not installed: "
        "pip install 'nnx-nets[dask]'"
    ) from exc

import numpy as np

from ..errors import WorkerLostError
from ..history import History
from ..validation import INPUT_DTYPES, check_positive
from .chunked import fit_chunked_locally as fit_chunked_locally
from .chunks import Chunk, Spec, combine, fold
from .hostloop import Step, advance, drive, dropout_of, lbfgs_on_chunks, plan, validator

__all__ = ["WorkerLostError", "fit", "fit_chunked_locally"]


# ------------------------------------------------------------------ tasks (run on workers)
def _chunk_backend(block: Any) -> str:
    return _chunk_of(block).backend


def _worker_grads(step: Step, *blocks: Any) -> tuple:
    return tuple(_chunk_of(b).grads(step.params, dropout_of(step)) for b in blocks)


def _lead_grads(step: Step, *blocks: Any) -> tuple:
    return (fold(_worker_grads(step, *blocks)),)  # the batch's first chunks: one share


def _fold(*shares: tuple) -> tuple:
    return (fold([p for share in shares for p in share]),)  # combine sorts by chunk


def _advance_groups(step: Step, rule: Any, *shares: tuple) -> Step:
    return advance(step, [p for share in shares for p in share], rule)  # combine sorts by chunk


def _start(step: Step) -> Step:
    return step


# ------------------------------------------------------------------------- checks
def _rechunk_hint(X: Any) -> str:
    return "X = X.rechunk({0: -1})  # all features of an example in one chunk"


def _check_X(X: Any, n_features: int) -> Any:
    if not isinstance(X, da.Array):
        raise TypeError(
            f"X must be a dask.array (n_x, m) chunked along the examples, got {type(X).__name__}; "
            "for data in memory use model.fit, or wrap it: da.from_array(X, chunks=(n_x, chunk_size))"
        )
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D with shape (n_features, m_examples), got shape {X.shape}")
    if X.dtype.name not in INPUT_DTYPES:
        raise TypeError(
            f"X has dtype {X.dtype}; expected float32, float64 or uint8 (raw pixels) - "
            "convert with X.astype('float32')"
        )
    if any(np.isnan(c) for dim in X.chunks for c in dim):
        raise ValueError(
            "X has chunks of unknown size (e.g. from da.from_delayed without shape or after "
            "boolean indexing); give the sizes (da.from_delayed(..., shape=...)) or call "
            "X = X.compute_chunk_sizes()"
        )
    n_x, m = X.shape
    if m == 0 or n_x == 0:
        raise ValueError(f"X is empty (shape {X.shape}); need at least one feature and one example")
    if n_x != n_features:
        if m == n_features:
            raise ValueError(
                f"X looks transposed: shape {X.shape} is (m, n_x) but nnx expects (n_x, m) = "
                f"({n_features}, m); pass X.T"
            )
        raise ValueError(f"X has {n_x} features (rows) but the model expects {n_features}")
    if len(X.chunks[0]) != 1:
        raise ValueError(
            f"X is chunked along the features too (row chunks {X.chunks[0]}); nnx.distributed splits "
            f"the examples (columns) only: {_rechunk_hint(X)}"
        )
    return X


def _check_Y(Y: Any, X: Any) -> Any:
    m = X.shape[1]
    if isinstance(Y, da.Array):
        Y2 = Y.reshape(1, -1) if Y.ndim == 1 else Y
        if Y2.ndim != 2 or Y2.shape[1] != m:
            raise ValueError(f"X has {m} examples (columns) but Y has shape {Y.shape}")
        if Y.ndim == 1 and Y.chunks[0] != X.chunks[1]:
            raise ValueError(
                f"Y's chunks {Y.chunks[0]} differ from X's column chunks {X.chunks[1]}; "
                "rechunk Y to match: Y = Y.rechunk(X.chunks[1])"
            )
        if Y.ndim == 2 and (Y2.chunks[1] != X.chunks[1] or len(Y2.chunks[0]) != 1):
            raise ValueError(
                f"Y's chunks {Y2.chunks} do not match X's column chunks {X.chunks[1]}; "
                "rechunk Y to match: Y = Y.rechunk({0: -1, 1: X.chunks[1]})"
            )
        return Y2
    Yh = np.asarray(Y)
    Yh = Yh.reshape(1, -1) if Yh.ndim == 1 else Yh
    if Yh.ndim != 2 or Yh.shape[1] != m:
        raise ValueError(f"X has {m} examples (columns) but Y has shape {np.shape(Y)}")
    return Yh  # labels in memory are small: each chunk's columns go with its task, once


def _client(client: Any) -> Any:
    if client is not None:
        status = str(getattr(client, "status", "running"))
        if status != "running":
            raise ValueError(
                f"the Dask client is {status}, not running: connect a new one "
                "(distributed.Client(...)) and pass it as client="
            )
        return client
    try:
        return distributed.get_client()
    except ValueError as exc:
        raise ValueError(
            "no Dask client: pass client=distributed.Client('tcp://scheduler:8786') (a running "
            "cluster) or client=distributed.Client(distributed.LocalCluster()) (this machine)"
        ) from exc


def _lost(exc: BaseException, what: str) -> WorkerLostError:
    return WorkerLostError(
        f"Dask could not finish {what}: {type(exc).__name__}: {exc}. Workers that die while "
        "holding or computing a task are replaced and the task recomputed from its source "
        "up to the scheduler's 'allowed-failures' times; here that was not enough (out of "
        "memory? a crashing backend?). The model's parameters were left as they were."
    )


# ---------------------------------------------------------------------------- fit
def fit(
    model: Any,
    X: Any,
    Y: Any,
    *,
    client: Any = None,
    epochs: int = 100,
    lr: float | None = None,
    backend: str | None = None,
    epochs_ahead: int = 16,
    **options: Any,
) -> History:
    """Full-batch training of ``model`` on a Dask cluster; returns the History.

    X is a ``dask.array`` (n_x, m), float32/float64/uint8, chunked along the examples only
    (one chunk of rows); Y (1, m) or (m,) - or one-hot (K, m) for a softmax model - as a
    ``dask.array`` with X's column chunks, or a NumPy array (sent once, in X's chunks).
    ``client`` defaults to the current Dask client. ``backend`` names the nnx backend of
    every worker (default: each worker's best: CuPy on a GPU worker, else Numba, else
    NumPy). The other options are ``model.fit``'s: ``lr`` or any step ``optimizer``,
    ``l2``, ``schedule``, ``early_stopping``, ``class_weight``, ``sample_weight`` (in
    memory), ``seed``, ``dtype``, ``verbose``, ``history_every``, ``warm_start``, Dropout
    layers (each chunk draws its columns of the whole batch's masks) and L-BFGS
    (``optimizer=nnx.LBFGS()``); mini-batches are refused before any work. The optimizer's state
    travels with the parameters, from each epoch's update task to the next.
    ``validation_data`` (in memory) is evaluated in this process every ``history_every``
    epochs, which then also sets how often the client synchronises (every epoch with
    early stopping). ``callback(epoch, params, history)`` runs at every synchronisation
    with host parameters; True stops there. ``epochs_ahead`` epochs are submitted at a time.

    On any error (bad chunk, divergence, lost workers beyond Dask's retries, Ctrl-C) the
    model's parameters are left as they were.
    """
    from . import engine

    if backend is not None and not isinstance(backend, str):
        raise TypeError("backend must be a backend name: each worker makes its own backend object")
    source = DaskSource(client, check_positive(epochs_ahead, "epochs_ahead", int), backend)
    return engine.run(model, X, Y, source, epochs=epochs, lr=lr, backend=backend, **options)


class DaskSource:
    """Gradient source of ``engine.run``: the chunks of a ``dask.array`` X on Dask workers."""

    name = "dask"

    def __init__(self, client: Any, epochs_ahead: int, backend: str | None):
        self.client, self.epochs_ahead, self.backend = client, epochs_ahead, backend

    def fit(self, model: Any, X: Any, Y: Any, opts: Any) -> Any:
        from .request import FitResult, fit_history

        X = _check_X(X, model.n_features)
        Y = _check_Y(Y, X)
        client = _client(self.client)
        m = int(X.shape[1])
        spec = Spec.of(model, opts.dtype, m, self.backend)
        weighted = opts.class_weight is not None or opts.sample_weight is not None
        if weighted and not isinstance(Y, np.ndarray):
            Y = np.asarray(Y.compute())  # labels are small: weights need them all, here
            Y = Y.reshape(1, -1) if Y.ndim == 1 else Y
        setup = plan(model, opts, m, Y)
        every = opts.history_every
        window = every if opts.validation_data is not None else self.epochs_ahead
        token = uuid.uuid4().hex[:8]
        validate = validator(model, opts, self.backend)
        chunks: list[Any] = []
        runner: _Windows | None = None
        try:
            chunks = _persist_chunks(client, X, Y, spec, token, setup.weights)
            runner = _Windows(client, chunks, setup.rule, token)
            names, reason = runner.describe()
            history = fit_history(",".join(names), reason, opts, setup.per_class)
            if opts.verbose:
                print(f"nnx: training on Dask: {reason}, dtype {opts.dtype}")
            if opts.solver == "lbfgs":
                host = lbfgs_on_chunks(setup, opts, m, history, validate, runner.gradients)
                history.backend_reason += runner.recoveries_note()
                return FitResult(host, history, history.backend, opts.dtype, None)
            step, state = drive(
                runner,
                setup.step,
                opts=opts,
                m=m,
                history=history,
                validate=validate,
                window=window,
                early=setup.early,
                best=setup.best,
            )
            history.backend_reason += runner.recoveries_note()
        except KilledWorker as exc:
            raise _lost(exc, "an epoch") from exc
        except CancelledError as exc:
            raise _lost(exc, "the training tasks") from exc
        finally:
            if runner is not None:
                runner.release()
            else:
                _release(chunks)
        return FitResult(step.params, history, history.backend, opts.dtype, state)


class _Source:
    """The graph that computes one chunk's X block (and Y block), carried inside the task
    that builds the chunk: the block is made where its chunk will live and is never sent
    anywhere. Dask keeps the task, so a lost chunk is recomputed from this source."""

    def __init__(
        self, graph: dict, keys: list[Any], labels: np.ndarray | None, weights: np.ndarray | None = None
    ):
        self.graph, self.keys, self.labels, self.weights = graph, keys, labels, weights

    def compute(self) -> tuple[Any, Any]:
        values = dask.get(self.graph, self.keys)  # the synchronous scheduler, in this task
        return values[0], values[1] if self.labels is None else self.labels


def _build_chunk(index: int, lo: int, source: _Source, spec: Spec) -> Chunk:
    X, Y = source.compute()
    return Chunk(index, lo, X, Y, spec, source.weights)


def _sources(X: Any, Y: Any, weights: np.ndarray | None = None) -> list[_Source] | None:
    """One ``_Source`` per column chunk, or None where a block is not computable from a
    graph (a persisted array: its blocks live on the workers already)."""
    arrays = [X] if isinstance(Y, np.ndarray) else [X, Y]
    graph: dict = {}
    keys = []
    for A in arrays:
        flat = list(dask.core.flatten(A.__dask_keys__()))
        graph.update(A.__dask_optimize__(A.__dask_graph__(), flat))
        keys.append(flat)
    edges = [0, *np.cumsum(X.chunks[1]).tolist()]
    sources = []
    for i in range(len(X.chunks[1])):
        want = [k[i] for k in keys]
        try:
            sub, _ = cull(graph, want)
        except KeyError:
            return None
        if not _self_contained(sub):  # built on persisted blocks (da.concatenate of them)
            return None
        labels = Y[:, edges[i] : edges[i + 1]].copy() if isinstance(Y, np.ndarray) else None
        part = None if weights is None else weights[edges[i] : edges[i + 1]].copy()
        sources.append(_Source(sub, want, labels, part))
    return sources


def _self_contained(graph: dict) -> bool:
    """Whether every task of ``graph`` finds the keys it depends on in ``graph``: not so
    where an array is built on blocks that were persisted (they live on the workers, not
    in the graph), which a worker's synchronous scheduler could not compute."""
    for task in graph.values():
        dependencies = getattr(task, "dependencies", None)  # Dask's task spec (2024.12 on)
        if dependencies is not None and not set(dependencies) <= graph.keys():
            return False
    return True


def _chunk_block(X: Any, Y: Any, spec: Spec, *weights: Any, block_info: Any = None) -> np.ndarray:
    """One X block and its Y block (and weights block) as a 1x1 object array holding their
    ``Chunk``."""
    index = block_info[0]["chunk-location"][1]
    lo = block_info[0]["array-location"][1][0]
    out = np.empty((1, 1), dtype=object)
    out[0, 0] = Chunk(index, lo, X, Y, spec, weights[0].reshape(-1) if weights else None)
    return out


def _chunk_of(block: Any) -> Chunk:
    return block[0, 0] if isinstance(block, np.ndarray) else block


def _persist_chunks(
    client: Any, X: Any, Y: Any, spec: Spec, token: str, weights: np.ndarray | None = None
) -> list[Any]:
    """One ``Chunk`` per column chunk, built and kept on the workers; errors name the chunk.

    Each chunk's task computes its X block itself (``_Source``) and is placed, loosely, on
    the workers in turn (consecutive chunks together), so no block ever moves. A persisted
    X (blocks already on the workers) is used where it is, through ``map_blocks``.
    """
    sources = _sources(X, Y, weights)
    if sources is None:
        if isinstance(Y, np.ndarray):
            Y = da.from_array(Y, chunks=(Y.shape[0], X.chunks[1]))
        extra = [] if weights is None else [da.from_array(weights.reshape(1, -1), chunks=(1, X.chunks[1]))]
        blocks = da.map_blocks(
            _chunk_block,
            X,
            Y,
            spec,
            *extra,
            dtype=object,
            chunks=((1,), (1,) * len(X.chunks[1])),
            meta=np.empty((0, 0), dtype=object),
            name=f"nnx-chunk-{token}",
        )
        futures = client.compute(list(blocks.to_delayed().ravel()))
    else:
        workers = sorted(client.ncores())
        edges = [0, *np.cumsum(X.chunks[1]).tolist()]
        n = len(sources)
        futures = [
            client.submit(
                _build_chunk,
                i,
                edges[i],
                source,
                spec,
                key=f"nnx-chunk-{token}-{i}",
                workers=[workers[i * len(workers) // n]] if workers else None,
                allow_other_workers=True,
            )
            for i, source in enumerate(sources)
        ]
    try:
        distributed.wait(futures)
        for f in futures:  # the first bad chunk, in chunk order, raises its own error
            if f.status == "error":
                f.result()
            elif f.status != "finished":
                raise WorkerLostError(f"preparing the data chunks failed: chunk future {f.key} is {f.status}")
    except BaseException:
        _release(futures)
        raise
    return futures


# The running sum of a window's epochs passes from worker to worker (one hop each, in
# series); with more workers than this, every worker sends its shares to one worker at
# once instead (more bytes to that worker, but one hop): the same sums in the same order.
CHAIN_MAX_WORKERS = 4


class _Windows:
    """Runs windows of epochs on the chunks kept on the workers.

    Every task is pinned to a worker (a strict restriction, so Dask's work stealing never
    moves a chunk or a share). A window is one task graph, sent to the scheduler in one
    message: per epoch, each group of a worker's chunks computes their shares on that
    worker; the chunks, in runs of consecutive chunks on one worker, pass their running sum
    on in chunk order (the worker holding the first chunks adds its own shares into one,
    each later run's worker adds its shares to the sum it receives); the worker of the last
    run adds its shares and applies the update (``_advance_groups``), whose result feeds
    the next epoch's tasks. So each worker sends one share per epoch and the parameters come
    back to it once: with every worker's chunks consecutive, 2 x (workers - 1) parameter-
    sized transfers per epoch (chunks spread one by one across workers: see ``_runs``).
    The client then waits for the last update. While it waits it
    checks, every ``POLL_SECONDS``, that the chunks are still where their tasks are pinned:
    after a lost worker Dask recomputes the lost chunks from their source on other workers,
    and the window is submitted again from its first epoch (the same start, so the same
    result), pinned to the chunks' new places.
    """

    POLL_SECONDS = 1.0
    MAX_RESUBMITS = 5

    def __init__(self, client: Any, chunks: list[Any], rule: Any, token: str):
        self.client, self.chunks, self.rule, self.token = client, chunks, rule, token
        self.attempt = 0
        self.recoveries = 0
        self.pending: Any = None
        self.placement = self._placement()
        self.chained, self.runs = self._runs()

    def _placement(self) -> list[str]:
        distributed.wait(self.chunks)
        for f in self.chunks:
            if f.status == "error":
                f.result()  # the chunk's own error (e.g. a chunk recomputed with bad data)
        who = self.client.who_has(self.chunks)
        places = []
        for f in self.chunks:
            holders = sorted(who.get(f.key, ()))
            if not holders:
                raise WorkerLostError(f"chunk {f.key} is in no worker's memory after it was computed")
            places.append(holders[0])
        return places

    def _runs(self) -> tuple[bool, list[tuple[str, list[list[Any]]]]]:
        """(chained, runs): where each worker's chunks are consecutive (as nnx places them),
        the chunks in runs of consecutive chunks, one per worker, in chunk order, and the
        running sum is passed along the runs; otherwise (a persisted X spread by Dask) it
        would take a hop per chunk, so each worker sends its shares to the worker holding
        the most chunks, which is last (so too with more than ``CHAIN_MAX_WORKERS``
        workers, where the chain's hops in series would cost more). Each run's chunks are
        in as many groups as its worker has threads (one task each)."""
        threads = self.client.ncores()
        runs: list[tuple[str, list[Any]]] = []
        for c, w in zip(self.chunks, self.placement):
            if runs and runs[-1][0] == w:
                runs[-1][1].append(c)
            else:
                runs.append((w, [c]))
        chained = len(runs) == len(set(self.placement)) and len(runs) <= CHAIN_MAX_WORKERS
        if not chained:
            by_worker: dict[str, list[Any]] = {}
            for c, w in zip(self.chunks, self.placement):
                by_worker.setdefault(w, []).append(c)
            runs = sorted(by_worker.items(), key=lambda item: (len(item[1]), item[0]))
        grouped = []
        for w, cs in runs:
            parts = max(1, min(threads.get(w, 1), len(cs)))
            grouped.append((w, [cs[k * len(cs) // parts : (k + 1) * len(cs) // parts] for k in range(parts)]))
        return chained, grouped

    def describe(self) -> tuple[list[str], str]:
        kinds = self.client.gather(
            [
                self.client.submit(_chunk_backend, c, workers=[w], allow_other_workers=False, pure=False)
                for c, w in zip(self.chunks, self.placement)
            ]
        )
        names = sorted(set(kinds))
        reason = (
            f"dask: {len(self.chunks)} chunk(s) on {len(set(self.placement))} worker(s), nnx backend "
            f"{'/'.join(names)} on the workers"
        )
        return names, reason

    def recoveries_note(self) -> str:
        if not self.recoveries:
            return ""
        return f"; {self.recoveries} window(s) redone after lost workers"

    def _shares(self, graph: dict, where: dict, step: str, grads: str, folds: str) -> list[str]:
        """Add to ``graph`` one evaluation at the parameters of the task ``step``: each
        group's chunk shares on its worker and, if ``chained``, the running sum in chunk
        order carried from run to run (``grads`` and ``folds`` prefix the keys). Returns
        the keys the last run's worker adds up: the running sum of the earlier runs, then
        its own groups (not chained: every group's)."""
        carried: list[str] = []
        j = 0
        for r, (worker, groups) in enumerate(self.runs):
            last = r == len(self.runs) - 1
            lead = self.chained and r == 0 and len(groups) == 1 and not last  # folds its chunks
            keys = []
            for cs in groups:
                key = f"{grads}-{j}"
                graph[key], where[key] = (_lead_grads if lead else _worker_grads, step, *cs), worker
                keys.append(key)
                j += 1
            if last or not self.chained:
                carried += keys
            elif lead:
                carried = keys
            else:
                key = f"{folds}-{r}"
                graph[key], where[key] = (_fold, *carried, *keys), worker
                carried = [key]
        return carried

    def _compute(self, graph: dict, where: dict, key: str) -> Any:
        """Send ``graph`` to the scheduler in one message, each task pinned to its worker in
        ``where``; the future of ``key``."""
        places = {k: [w] for k, w in where.items()}
        layer = MaterializedLayer(
            graph, annotations={"workers": places.__getitem__, "allow_other_workers": False}
        )
        return self.client.get(HighLevelGraph({key: layer}, {key: set()}), key, sync=False)

    def _submit(self, step: Step, first: int, count: int) -> Any:
        """Submit the window's epochs as one graph; the future of its last update.

        Per epoch: the shares (``_shares``), added up and the update applied on the worker
        holding the last chunks, where the window's starting Step also goes; its result
        feeds the next epoch's tasks.
        """
        tag = f"{self.token}-{self.attempt}"
        home = self.runs[-1][0]
        graph: dict = {}
        where: dict = {}
        pending = f"nnx-start-{tag}-{first}"
        graph[pending], where[pending] = (_start, step), home
        for epoch in range(first, first + count):
            shares = self._shares(
                graph, where, pending, f"nnx-grads-{tag}-{epoch}", f"nnx-fold-{tag}-{epoch}"
            )
            key = f"nnx-update-{tag}-{epoch}"
            graph[key], where[key] = (_advance_groups, pending, self.rule, *shares), home
            pending = key
        return self._compute(graph, where, pending)

    def run(self, step: Step, first: int, count: int) -> Step:
        """Epochs first..first+count-1 from ``step``; their final Step with the figures."""
        return self._wait(lambda: self._submit(step, first, count))

    def gradients(self, params: Any) -> tuple[float, int, Any]:
        """The whole batch's (loss, correct, gradients) at ``params`` (L-BFGS): every
        chunk's share computed where it lives, added up on the workers in chunk order as an
        epoch's are; one share comes back."""
        return combine(self._wait(lambda: self._submit_gradients(params)))

    def _submit_gradients(self, params: Any) -> Any:
        tag = f"{self.token}-{self.attempt}-{uuid.uuid4().hex[:6]}"
        home = self.runs[-1][0]
        graph: dict = {}
        where: dict = {}
        start = f"nnx-params-{tag}"
        graph[start], where[start] = (_start, Step(params)), home
        shares = self._shares(graph, where, start, f"nnx-lbfgs-grads-{tag}", f"nnx-lbfgs-fold-{tag}")
        key = f"nnx-lbfgs-shares-{tag}"
        graph[key], where[key] = (_fold, *shares), home
        return self._compute(graph, where, key)

    def _wait(self, submit: Any) -> Any:
        """The result of what ``submit()`` submits, submitted again (pinned to the chunks'
        new places) whenever a chunk leaves its worker while it runs."""
        while True:
            self.pending = submit()
            while True:
                try:
                    result = self.pending.result(timeout=self.POLL_SECONDS)
                    self.pending = None
                    return result
                except TimeoutError:
                    if self._chunks_in_place():
                        continue
                break
            # a chunk left its worker (lost and recomputed elsewhere): redo the window
            _release([self.pending])
            self.pending = None
            self.recoveries += 1
            if self.recoveries > self.MAX_RESUBMITS:
                raise WorkerLostError(
                    f"workers holding the data chunks were lost {self.recoveries} times during "
                    "this fit; stopping. The model's parameters were left as they were."
                )
            self.attempt += 1
            self.placement = self._placement()
            self.chained, self.runs = self._runs()

    def _chunks_in_place(self) -> bool:
        who = self.client.who_has(self.chunks)
        return all(w in who.get(f.key, ()) for f, w in zip(self.chunks, self.placement))

    def release(self) -> None:
        _release([*self.chunks, self.pending])
        self.chunks, self.pending = [], None


def _release(futures: list[Any]) -> None:
    """Let Dask forget our futures (and what only they needed). Not ``client.cancel``:
    it also cancels the keys' dependents, which Dask asserts someone still wants."""
    for f in futures:
        if f is not None:
            f.release()
