"""Built-in data: a synthetic image-shaped two-class set and the tutorials' toy sets.

Nothing is downloaded. The image set is *synthetic*: generated deterministically from a
seed, shaped like the tutorials' 64x64x3 cat/non-cat pictures, for demos and tests.
"""

from __future__ import annotations

import numpy as np

SYNTHETIC_MIN_SIZE = 4  # the smallest picture (pixels a side) the synthetic set draws
SYNTHETIC_CLASSES = ("class 0", "class 1")  # its class names, by label


def synthetic_images(
    m: int = 209, size: int = 64, seed: int = 0, noise: float = 40.0
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic two-class image set: uint8 X (size*size*3, m) example-contiguous, Y (1, m).

    Class 1 pictures hold a warm, roughly round blob on a textured background; class 0
    hold cool diagonal stripes. Positions, sizes, colours and noise vary per image, so the
    classes overlap a little and a linear model does not reach 100 % on held-out data.
    """
    if m < 1 or size < SYNTHETIC_MIN_SIZE:
        raise ValueError(f"need m >= 1 and size >= {SYNTHETIC_MIN_SIZE}, got m={m}, size={size}")
    rng = np.random.default_rng(seed)
    Y = (np.arange(m) % 2).astype(np.int64)
    rng.shuffle(Y)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    X = np.empty((m, size, size, 3), dtype=np.uint8)
    for i in range(m):
        base = rng.uniform(60, 160, size=3)
        img = np.empty((size, size, 3))
        img[:] = base
        texture = np.sin((xx * rng.uniform(2, 8) + yy * rng.uniform(2, 8)) * np.pi)
        img += 20 * texture[..., None]
        if Y[i] == 1:
            cy, cx = rng.uniform(0.3, 0.7, size=2)
            r = rng.uniform(0.15, 0.3)
            blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
            img += blob[..., None] * np.array([90.0, 40.0, -40.0]) * rng.uniform(0.1, 0.5)
        else:
            freq = rng.uniform(3, 7)
            stripes = np.sin((xx - yy) * freq * 2 * np.pi)
            img += stripes[..., None] * np.array([-30.0, 0.0, 45.0]) * rng.uniform(0.1, 0.5)
        img += rng.normal(0.0, noise, size=img.shape)
        X[i] = np.clip(img, 0, 255).astype(np.uint8)
    # (m, size*size*3) C-order is the same memory as (n_x, m) in Fortran order.
    return X.reshape(m, -1).T, Y.reshape(1, m)


def logic_gate(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The tutorials' truth tables: X (2, 4) float64 and Y (1, 4) for "or", "and", "xor"."""
    X = np.array([[0, 0, 1, 1], [0, 1, 0, 1]], dtype=np.float64)
    tables = {
        "or": [0, 1, 1, 1],
        "and": [0, 0, 0, 1],
        "xor": [0, 1, 1, 0],
    }
    if name.lower() not in tables:
        raise ValueError(f"unknown gate {name!r}; expected one of {tuple(tables)}")
    return X, np.array([tables[name.lower()]], dtype=np.float64)


def feature_cross(X: np.ndarray) -> np.ndarray:
    """Append the product x1*x2 as a third feature: (2, m) -> (3, m). Makes XOR linearly separable
    when the inputs are centred (x in {-1, 1})."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != 2:
        raise ValueError(f"feature_cross needs X of shape (2, m), got {X.shape}")
    return np.vstack([X, X[0:1] * X[1:2]])


def train_test_split(
    X: np.ndarray, Y: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split columns into train and test parts, stratified by label and seeded.

    Returns (X_train, Y_train, X_test, Y_test), each X example-contiguous (Fortran order).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(Y).reshape(-1)
    test_idx = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        test_idx.extend(idx[: int(round(len(idx) * test_fraction))])
    test_mask = np.zeros(labels.size, dtype=bool)
    test_mask[test_idx] = True
    take = lambda mask: np.asfortranarray(X[:, mask])  # noqa: E731
    return take(~test_mask), Y.reshape(1, -1)[:, ~test_mask], take(test_mask), Y.reshape(1, -1)[:, test_mask]
