"""``nnx demo``: the main job on built-in data, no download.

Trains logistic regression and the 12288->50->1 net on the synthetic 64x64x3 image set,
then the tutorials' toy problems (OR, AND by one neuron; XOR by a hidden layer; XOR by one
neuron once the x1*x2 feature cross is added), printing backend, loss, accuracy and time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import backends
from ..data.builtin import feature_cross, logic_gate, synthetic_images, train_test_split
from ..layers import Linear, Sigmoid, Tanh
from ..model import MLP, LogisticRegression, Sequential


def _row(
    name: str,
    model: Sequential,
    X,
    Y,
    Xt,
    Yt,
    epochs: int,
    lr: float,
    backend: str,
    dtype: str,
    out: Callable[[str], None],
) -> dict:
    t0 = time.perf_counter()
    hist = model.fit(X, Y, epochs=epochs, lr=lr, backend=backend, dtype=dtype, history_every=epochs)
    wall = time.perf_counter() - t0
    test = model.evaluate(Xt, Yt, backend=backend, dtype=dtype) if Xt is not None else None
    test_txt = f"  test acc {test['accuracy']:6.1%}" if test else ""
    out(
        f"{name:34s} loss {hist.loss[-1]:.4f}  train acc {hist.accuracy[-1]:6.1%}{test_txt}"
        f"  {hist.seconds_per_epoch * 1e3:8.3f} ms/epoch"
        f"  (first epoch {hist.first_epoch_seconds * 1e3:.1f} ms,"
        f" {epochs} epochs, {wall:.2f} s)"
    )
    return {
        "name": name,
        "loss": hist.loss[-1],
        "train_accuracy": hist.accuracy[-1],
        "test_accuracy": test["accuracy"] if test else None,
        "seconds_per_epoch": hist.seconds_per_epoch,
    }


def run_demo(
    backend: str | None = None,
    dtype: str = "float32",
    quick: bool = False,
    out: Callable[[str], None] = print,
) -> list[dict]:
    """Run the demo and return one result dict per trained model."""
    selection = backends.select(backend)
    name = selection.backend.name
    out(f"backend: {name}  ({selection.reason})   dtype: {dtype}")
    X, Y = synthetic_images(m=259, seed=1)
    Xtr, Ytr, Xte, Yte = train_test_split(X, Y, test_fraction=50 / 259, seed=1)
    out(
        f"data: SYNTHETIC image set, generated (no download): {Xtr.shape[1]} train / "
        f"{Xte.shape[1]} test pictures, 64x64x3 -> X {Xtr.shape} uint8"
    )
    scale = 10 if quick else 1
    rows = [
        _row(
            "logistic regression 12288->1",
            LogisticRegression(12288),
            Xtr,
            Ytr,
            Xte,
            Yte,
            2000 // scale,
            0.005,
            name,
            dtype,
            out,
        ),
        _row(
            "MLP 12288->50(relu)->1",
            MLP([12288, 50, 1], seed=1),
            Xtr,
            Ytr,
            Xte,
            Yte,
            600 // scale,
            0.01,
            name,
            dtype,
            out,
        ),
    ]
    out("toy sets (the tutorials' truth tables):")
    for gate in ("or", "and"):
        Xg, Yg = logic_gate(gate)
        rows.append(
            _row(
                f"{gate.upper()} by one neuron",
                LogisticRegression(2),
                Xg,
                Yg,
                None,
                None,
                5000 // scale,
                1.0,
                name,
                dtype,
                out,
            )
        )
    Xg, Yg = logic_gate("xor")
    xor_net = Sequential(Linear(2, 4, seed=3), Tanh(), Linear(4, 1, seed=4), Sigmoid())
    rows.append(_row("XOR by a 2-4-1 net", xor_net, Xg, Yg, None, None, 5000 // scale, 1.0, name, dtype, out))
    Xc = feature_cross(2 * Xg - 1)
    rows.append(
        _row(
            "XOR by one neuron + x1*x2 cross",
            LogisticRegression(3),
            Xc,
            Yg,
            None,
            None,
            3000 // scale,
            1.0,
            name,
            dtype,
            out,
        )
    )
    return rows
