"""Plots with matplotlib (the ``plot`` extra): learning curves, 2-D decision boundaries and
the benchmark's throughput.

Each function writes a PNG atomically and returns its path.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..data.builtin import feature_cross
from ..files import PLOT_SOFTWARE, atomic_write
from ..history import History


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; ImportError naming the extra when it is missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'nnx-nets[plot]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike, dpi: int = 110) -> str:
    atomic_write(
        path,
        lambda fh: fig.savefig(fh, format="png", dpi=dpi, metadata={"Software": PLOT_SOFTWARE}),
        kind="plot",
    )
    return str(path)


def learning_curves(history: History, path: str | os.PathLike, title: str | None = None) -> str:
    """Train (and validation) loss and accuracy against epoch, side by side, as a PNG."""
    if not history.epoch:
        raise ValueError("the history holds no recorded epochs to plot")
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(history.epoch, history.loss, label="train")
    ax_acc.plot(history.epoch, history.accuracy, label="train")
    if history.val_loss:
        ax_loss.plot(history.epoch, history.val_loss, label="validation")
        ax_acc.plot(history.epoch, history.val_accuracy, label="validation")
    lbfgs = bool(history.solver)  # an L-BFGS fit records its solver; its epochs are iterations
    unit = "iteration" if lbfgs else "epoch"
    ax_loss.set(xlabel=unit, ylabel="loss", title="loss")
    ax_acc.set(xlabel=unit, ylabel="accuracy", title="accuracy", ylim=(-0.02, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend()
    how = "L-BFGS" if lbfgs else f"lr {history.lr}"
    fig.suptitle(title or f"learning curves (backend {history.backend}, {how})")
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def decision_boundary(
    model: Any,
    X: np.ndarray,
    Y: np.ndarray,
    path: str | os.PathLike,
    *,
    shaded: bool = True,
    cross: bool = False,
    resolution: int = 300,
    title: str | None = None,
) -> str:
    """The model's decision boundary over 2-D data X (2, m) with labels Y, as a PNG.

    Binary models: ``shaded`` fills the plane with the predicted probability, otherwise
    only the 0.5 contour is drawn. K-class (softmax) models: the plane is split into the K
    regions of the predicted class (shaded by the winning probability when ``shaded``),
    with the boundaries between them drawn. ``cross`` feeds the model (x1, x2, x1*x2) - the
    tutorials' feature cross - while plotting in the (x1, x2) plane.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y)
    if X.ndim != 2 or X.shape[0] != 2:
        raise ValueError(f"decision boundaries are drawn for 2-D data X (2, m), got {X.shape}")
    Y = Y.argmax(axis=0) if Y.ndim == 2 and Y.shape[0] > 1 else Y.reshape(-1)  # one-hot -> labels
    plt = pyplot()
    pad = 0.5 * max(np.ptp(X[0]), np.ptp(X[1]), 1e-3)
    xs = np.linspace(X[0].min() - pad, X[0].max() + pad, resolution)
    ys = np.linspace(X[1].min() - pad, X[1].max() + pad, resolution)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.vstack([gx.ravel(), gy.ravel()])
    proba = model.predict_proba(feature_cross(grid) if cross else grid)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if proba.shape[0] == 1:
        proba = proba.reshape(gx.shape)
        if shaded:
            filled = ax.contourf(gx, gy, proba, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.7)
            fig.colorbar(filled, ax=ax, label="P(y = 1)")
        ax.contour(gx, gy, proba, levels=[0.5], colors="k", linewidths=1.5)
        ax.scatter(X[0], X[1], c=Y, cmap="RdBu_r", edgecolors="k", s=40, vmin=0, vmax=1)
    else:
        K = proba.shape[0]
        region = proba.argmax(axis=0).reshape(gx.shape)
        colours = plt.get_cmap("tab10" if K <= 10 else "tab20")
        levels = np.arange(K + 1) - 0.5
        ax.contourf(gx, gy, region, levels=levels, cmap=colours, vmin=0, vmax=colours.N - 1, alpha=0.35)
        if shaded:  # darker where the winning class is surer
            sure = proba.max(axis=0).reshape(gx.shape)
            ax.contourf(gx, gy, sure, levels=np.linspace(1 / K, 1, 11), cmap="Greys", alpha=0.25)
        ax.contour(gx, gy, region, levels=levels[1:-1], colors="k", linewidths=1.0)
        ax.scatter(X[0], X[1], c=Y, cmap=colours, vmin=0, vmax=colours.N - 1, edgecolors="k", s=40)
    default_title = "decision boundary" + (" (x1*x2 cross)" if cross else "")
    ax.set(xlabel="x1", ylabel="x2", title=title or default_title)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def throughput(result: dict[str, Any], path: str | os.PathLike) -> str:
    """``nnx bench``'s record as examples/s against m (log-log), one line per (backend,
    model, X dtype)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[tuple, list[tuple[int, float]]] = {}
    for r in result["rows"]:
        series.setdefault((r["backend"], r["model"], r["x_dtype"]), []).append((r["m"], r["examples_per_s"]))
    for (backend, model, x_dtype), pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{backend} {model} {x_dtype}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size m (examples, 12288 features)")
    ax.set_ylabel("training examples / s (one epoch)")
    ax.set_title(f"nnx epoch throughput - {result['environment']['cpu']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        return _save(fig, path, dpi=120)
    finally:
        plt.close(fig)


def confusion_matrix(matrix: np.ndarray, classes: list[str], path: str | os.PathLike, title: str = "") -> str:
    """A K x K confusion matrix (rows: the true class, columns: the predicted one) drawn as a
    heat map with each count written in its cell, as a PNG."""
    plt = pyplot()
    matrix = np.asarray(matrix)
    k = len(classes)
    side = min(12.0, 2.5 + 0.6 * k)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xlabel="predicted class",
        ylabel="true class",
        title=title or "confusion matrix",
    )
    ax.set_xticklabels(classes, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticklabels(classes)
    if k <= 30:  # counts stay legible
        top = matrix.max() if matrix.size else 0
        for i in range(k):
            for j in range(k):
                color = "white" if top and matrix[i, j] > top / 2 else "black"
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=color)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
