"""One epoch of nnx.distributed.fit against the workers' compute alone and one process.

    PYTHONPATH=. python benchmarks/distributed_epoch.py            # the issue's sizes
    PYTHONPATH=. python benchmarks/distributed_epoch.py --small    # a quick run

A LocalCluster of 2 worker processes x 1 thread holds X (n_x x m float32, made on the
workers by ``da.random``, never on the client) in 4 column chunks. For each model it prints:

* the distributed epoch: wall time of the measured fit / epochs (the client's view);
* the workers' compute alone: from Dask's task stream, the busiest worker's summed
  compute time of the fit's tasks (chunk gradients, updates) / epochs;
* the overhead ratio: distributed epoch / workers' compute alone;
* the single-process Numba epoch: ``model.fit`` on the same X (fetched to the client for
  this comparison only) with Numba on all cores;
* bytes moved per epoch, from the workers' own transfer logs (worker to worker: what each
  worker fetched; worker to client: what the client gathered), and the data bytes moved
  (X and Y blocks and the prepared chunks, setup included: must be 0, the data never moves);
* whether the distributed parameters equal ``fit_chunked_locally`` (same chunks) bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _logs(dask_worker):
    return {
        "in": list(dask_worker.transfer_incoming_log),
        "out": list(dask_worker.transfer_outgoing_log),
    }


def _clear_logs(dask_worker):
    dask_worker.transfer_incoming_log.clear()
    dask_worker.transfer_outgoing_log.clear()


def _prefix(key) -> str:
    key = key[0] if isinstance(key, tuple) else key
    return str(key)


def measure(client, make_model, X, Y, args, label: str) -> dict:
    import distributed

    from nnx.distributed import fit, fit_chunked_locally

    workers = set(client.scheduler_info(n_workers=-1)["workers"])
    fit(make_model(), X, Y, client=client, epochs=args.warmup, lr=args.lr)  # JIT, imports
    client.run(_clear_logs)  # from here on, the measured fit: setup (chunks made) and epochs
    model = make_model()
    with distributed.get_task_stream(client) as stream:
        history = fit(model, X, Y, client=client, epochs=args.epochs, lr=args.lr, epochs_ahead=args.ahead)
    logs = client.run(_logs)
    epoch_s = history.seconds / args.epochs

    busy: dict[str, float] = {}
    grads_busy: dict[str, float] = {}
    for task in stream.data:
        name = _prefix(task["key"])
        if not name.startswith(("nnx-grads-", "nnx-fold-", "nnx-update-", "nnx-start-")):
            continue
        compute = sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
        busy[task["worker"]] = busy.get(task["worker"], 0.0) + compute
        if name.startswith("nnx-grads-"):
            grads_busy[task["worker"]] = grads_busy.get(task["worker"], 0.0) + compute
    compute_s = max(busy.values()) / args.epochs
    grads_s = max(grads_busy.values()) / args.epochs

    w2w = w2c = chunk_bytes = 0
    for entries in logs.values():
        for e in entries["in"]:
            names = [_prefix(k) for k in e["keys"]]
            if any(n.startswith(("nnx-chunk-", X.name, Y.name)) for n in names):
                chunk_bytes += e["total"]
            if any(n.startswith("nnx-") for n in names):
                w2w += e["total"]
        for e in entries["out"]:
            if e["who"] not in workers and any(_prefix(k).startswith("nnx-") for k in e["keys"]):
                w2c += e["total"]

    row = {
        "model": label,
        "epochs": args.epochs,
        "epochs_ahead": args.ahead,
        "distributed_epoch_ms": 1e3 * epoch_s,
        "workers_compute_ms": 1e3 * compute_s,
        "workers_chunk_grads_ms": 1e3 * grads_s,
        "overhead_ratio": epoch_s / compute_s,
        "worker_to_worker_bytes_per_epoch": w2w / args.epochs,
        "worker_to_client_bytes_per_epoch": w2c / args.epochs,
        "chunk_bytes_moved": chunk_bytes,
        "param_bytes": sum(W.nbytes + b.nbytes for W, b in model.parameters()),
    }
    if not args.skip_single:
        Xh = X.compute()
        Yh = Y.compute()
        ref = make_model()
        fit_chunked_locally(ref, Xh, Yh, chunks=X.chunks[1], epochs=args.epochs, lr=args.lr, backend="numba")
        row["bitwise_equal_to_fit_chunked_locally"] = all(
            np.array_equal(p, q) for a, b in zip(model.parameters(), ref.parameters()) for p, q in zip(a, b)
        )
        single = make_model()
        single.fit(Xh, Yh, epochs=1, lr=args.lr, backend="numba")  # JIT
        h = single.fit(Xh, Yh, epochs=args.epochs, lr=args.lr, backend="numba")
        row["single_process_numba_epoch_ms"] = 1e3 * h.seconds / args.epochs
        row["distributed_vs_single_process"] = epoch_s / (h.seconds / args.epochs)
        del Xh
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-x", type=int, default=12288)
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--m", type=int, default=16384)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--ahead", type=int, default=20, help="epochs_ahead of the measured fit")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--models", default="mlp,logreg")
    parser.add_argument("--skip-single", action="store_true", help="no single-process comparison")
    parser.add_argument("--small", action="store_true", help="n_x 1024, m 4096: a quick run")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.small:
        args.n_x, args.m = 1024, 4096

    import dask.array as da
    from distributed import Client, LocalCluster

    import nnx

    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    try:
        size = -(-args.m // args.chunks)
        X = da.random.default_rng(0).random((args.n_x, args.m), chunks=(args.n_x, size), dtype=np.float32)
        Y = (da.random.default_rng(1).random((1, args.m), chunks=(1, size)) > 0.5).astype(np.int64)
        print(
            f"X {args.n_x} x {args.m} float32 ({X.nbytes / 1e6:.0f} MB) in {len(X.chunks[1])} chunks on "
            f"{args.workers} worker processes x 1 thread; {os.cpu_count()} CPU(s) here; "
            f"epochs {args.epochs}, epochs_ahead {args.ahead}"
        )
        makers = {
            "mlp": (f"MLP {args.n_x}->{args.hidden}->1", lambda: nnx.MLP([args.n_x, args.hidden, 1], seed=0)),
            "logreg": ("logistic regression", lambda: nnx.LogisticRegression(args.n_x)),
        }
        rows = []
        for key in args.models.split(","):
            label, make = makers[key]
            start = time.perf_counter()
            row = measure(client, make, X, Y, args, label)
            rows.append(row)
            print(f"\n{label}  ({time.perf_counter() - start:.0f} s to measure)")
            print(f"  distributed epoch          {row['distributed_epoch_ms']:8.1f} ms")
            print(
                f"  workers' compute alone     {row['workers_compute_ms']:8.1f} ms "
                f"(chunk gradients {row['workers_chunk_grads_ms']:.1f} ms)"
            )
            print(f"  overhead ratio             {row['overhead_ratio']:8.3f}")
            if "single_process_numba_epoch_ms" in row:
                print(f"  single-process Numba epoch {row['single_process_numba_epoch_ms']:8.1f} ms")
                print(f"  distributed / single       {row['distributed_vs_single_process']:8.3f}")
                print(
                    f"  bitwise equal to fit_chunked_locally: {row['bitwise_equal_to_fit_chunked_locally']}"
                )
            w2w, w2c = row["worker_to_worker_bytes_per_epoch"], row["worker_to_client_bytes_per_epoch"]
            print(
                f"  bytes moved per epoch      {w2w / 1e6:8.2f} MB worker to worker, {w2c / 1e6:.3f} MB "
                f"to the client (parameters: {row['param_bytes'] / 1e6:.2f} MB); "
                f"data bytes moved: {row['chunk_bytes_moved']}"
            )
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=2)
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
