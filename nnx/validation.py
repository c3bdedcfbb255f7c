"""Input checks: every bad input gets a ValueError/TypeError saying what is wrong and what was expected."""

from __future__ import annotations

from typing import Any

import numpy as np

from .registry import COMPUTE_DTYPES, INPUT_DTYPES  # noqa: F401 (re-exported)


def check_dtype(dtype: Any) -> str:
    """Normalise a compute dtype; only float32 and float64 are supported."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return name


def _as_host_array(value: Any, label: str) -> np.ndarray:
    if hasattr(value, "__cuda_array_interface__") and not isinstance(value, np.ndarray):
        raise TypeError(
            f"{label} is a GPU array; nnx takes host NumPy arrays and moves them itself "
            f"(pass cupy.asnumpy({label}))"
        )
    if isinstance(value, np.ma.MaskedArray):
        if np.ma.getmaskarray(value).any():
            raise ValueError(
                f"{label} is a masked array with masked entries, which nnx would not skip: fill them "
                "(np.ma.filled) or drop those examples first"
            )
        return np.asarray(value.data)
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:  # e.g. ragged nested lists
        raise TypeError(f"{label} must be an array-like of numbers: {exc}") from exc


def check_X(X: Any, n_features: int | None = None) -> np.ndarray:
    """Validate inputs X of shape (n_x, m) and return them as a NumPy array (no copy).

    Accepts float32, float64 (used as they are) and uint8 (raw pixels, scaled by 1/255
    later); other numeric types are refused rather than copied silently.
    """
    X = _as_host_array(X, "X")
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-D with shape (n_features, m_examples), got {X.ndim}-D shape {X.shape}"
            + ("; for one example use X.reshape(-1, 1)" if X.ndim == 1 else "")
        )
    if X.dtype.name not in INPUT_DTYPES:
        raise TypeError(
            f"X has dtype {X.dtype}; expected float32, float64 or uint8 (raw pixels) - "
            f"convert with X.astype('float32')"
        )
    n_x, m = X.shape
    if m == 0 or n_x == 0:
        raise ValueError(f"X is empty (shape {X.shape}); need at least one feature and one example")
    if n_features is not None and n_x != n_features:
        if m == n_features:
            raise ValueError(
                f"X looks transposed: shape {X.shape} is (m, n_x) but nnx expects "
                f"(n_x, m) = ({n_features}, m); pass X.T"
            )
        raise ValueError(f"X has {n_x} features (rows) but the model expects {n_features}")
    if X.dtype != np.uint8:
        _check_finite(X)
    return X


def _check_finite(X: np.ndarray) -> None:
    # One streaming pass with no X-sized temporary: a float64 sum of finite float32 values
    # cannot overflow, so a finite sum proves every value finite. Only a non-finite sum
    # (or float64 data near overflow) needs the exact per-element check.
    with np.errstate(over="ignore", invalid="ignore"):
        total = X.sum(dtype=np.float64)
    if np.isfinite(total):
        return
    bad = ~np.isfinite(X)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(
            f"X contains {int(bad.sum())} NaN/inf value(s), first at feature {rows[0]}, "
            f"example {cols[0]}; clean or impute the data first"
        )


def check_fits_dtype(X: np.ndarray, dtype: str, label: str = "X") -> np.ndarray:
    """Refuse float X with values beyond the range of the compute ``dtype`` (they would
    become inf in the converted copy and poison training); returns X unchanged."""
    if X.dtype.kind != "f" or np.finfo(X.dtype).max <= np.finfo(dtype).max:
        return X
    top = np.finfo(dtype).max
    hi, lo = X.max(), X.min()  # two streaming passes, no X-sized temporary
    if hi > top or lo < -top:
        bad = hi if hi > top else lo
        raise ValueError(
            f"{label} holds {bad:.4g}, beyond the range of {dtype} (|x| <= {top:.4g}); "
            f"rescale the data or train with dtype='float64'"
        )
    return X


def check_Y(Y: Any, m: int) -> np.ndarray:
    """Validate binary labels Y of shape (1, m) or (m,) and return them as (1, m)."""
    Y = _as_host_array(Y, "Y")
    if Y.ndim == 1:
        Y = Y.reshape(1, -1)
    if Y.ndim != 2 or Y.shape[0] != 1:
        raise ValueError(f"Y must have shape (1, m) or (m,), got {Y.shape}")
    if Y.shape[1] != m:
        raise ValueError(f"X has {m} examples (columns) but Y has {Y.shape[1]} labels")
    if Y.dtype.kind not in "biuf":
        raise TypeError(f"Y must be numeric 0/1 labels, got dtype {Y.dtype}")
    values = np.unique(Y)
    if not np.isin(values, (0, 1)).all():
        bad = [v for v in values.tolist() if v not in (0, 1)][:5]
        if len(values) > 2:  # more than two classes given to a one-output model
            raise ValueError(
                f"labels must be 0 or 1 for this two-class (one-output) model, found {len(values)} "
                f"classes ({', '.join(map(str, values.tolist()[:5]))}); for K classes use "
                "nnx.SoftmaxRegression(n, K) or nnx.MLP([n, ..., K])"
            )
        raise ValueError(f"labels must be 0 or 1, found {bad}; map your classes to 0/1 first")
    return Y


def check_targets(Y: Any, m: int, n_outputs: int) -> np.ndarray:
    """Validate real-valued regression targets and return them as float64 (n_outputs, m).

    Accepts (m,) or (1, m) for one output and (n_outputs, m) for several; values must be
    finite numbers."""
    Y = _as_host_array(Y, "Y")
    if Y.dtype.kind not in "biuf" or Y.dtype.kind == "b":
        raise TypeError(f"Y must hold real-valued targets (numbers), got dtype {Y.dtype}")
    if Y.ndim == 1 and n_outputs == 1:
        Y = Y.reshape(1, -1)
    if Y.ndim != 2 or Y.shape[0] != n_outputs:
        expected = "(m,) or (1, m)" if n_outputs == 1 else f"({n_outputs}, m)"
        raise ValueError(f"Y must have shape {expected} for this {n_outputs}-output model, got {Y.shape}")
    if Y.shape[1] != m:
        raise ValueError(f"X has {m} examples (columns) but Y has {Y.shape[1]} targets")
    Y = Y.astype(np.float64)
    if not np.isfinite(Y).all():
        raise ValueError("Y contains NaN or inf targets; clean or drop those examples first")
    return Y


def check_positive(value: Any, label: str, kind: type = float) -> Any:
    """A strictly positive finite number (int or float) or a ValueError naming ``label``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{label} must be a number, got {value!r}")
    if not np.isfinite(value) or value <= 0 or (kind is int and int(value) != value):
        expected = "a positive integer" if kind is int else "a positive finite number"
        raise ValueError(f"{label} must be {expected}, got {value!r}")
    return kind(value)


def check_class_labels(Y: Any, m: int, n_classes: int) -> np.ndarray:
    """Validate multi-class labels and return them as (1, m) int64 class indices.

    Accepts integer labels 0..K-1 of shape (m,) or (1, m) (integral floats too), or a
    one-hot (K, m) array whose columns each hold a single 1.
    """
    Y = _as_host_array(Y, "Y")
    K = n_classes
    if Y.dtype.kind not in "biuf":
        raise TypeError(
            f"Y must hold integer class labels 0..{K - 1} or a one-hot (K, m) array, got dtype {Y.dtype}"
        )
    if Y.ndim == 2 and Y.shape == (K, m) and K > 1:
        if not np.isin(Y, (0, 1)).all() or not (Y.sum(axis=0) == 1).all():
            raise ValueError(
                f"Y of shape {Y.shape} is read as one-hot (K, m) labels, but not every column holds "
                "exactly one 1 and zeros elsewhere"
            )
        return np.argmax(Y, axis=0).reshape(1, -1).astype(np.int64)
    if Y.ndim == 1:
        Y = Y.reshape(1, -1)
    if Y.ndim != 2 or Y.shape[0] != 1:
        raise ValueError(
            f"Y must be class labels of shape (m,) or (1, m), or one-hot ({K}, m); got shape {Y.shape}"
        )
    if Y.shape[1] != m:
        raise ValueError(f"X has {m} examples (columns) but Y has {Y.shape[1]} labels")
    values = np.unique(Y)
    bad = [v for v in values.tolist() if not (float(v).is_integer() and 0 <= v < K)]
    if bad:
        raise ValueError(
            f"labels must be integers 0..{K - 1} for this {K}-class model, found {bad[:5]}; "
            "map your classes to 0..K-1 first"
        )
    return Y.astype(np.int64)


def _number(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(
        value, (int, float, np.integer, np.floating)
    )


def class_weights(class_weight: Any, labels: np.ndarray, n_classes: int) -> np.ndarray | None:
    """Per-class weights (K,) from ``class_weight``: None; "balanced" (m / (K * count_c),
    as scikit-learn's ``compute_class_weight``, from the training labels, every class
    present); or a dict {class: weight} (classes 0..K-1, weights finite and >= 0, not all
    zero; absent classes weigh 1)."""
    if class_weight is None:
        return None
    K = n_classes
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f'class_weight must be "balanced", a dict {{class: weight}} or None, got {class_weight!r}'
            )
        counts = np.bincount(labels, minlength=K)
        if (counts == 0).any():
            missing = [int(c) for c in np.flatnonzero(counts == 0)]
            shown = ", ".join(map(str, missing[:5]))
            shown += f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(
                'class_weight="balanced" needs every class in the training labels; '
                f"classes {shown} are absent"
            )
        return labels.size / (K * counts.astype(np.float64))
    if not isinstance(class_weight, dict):
        raise TypeError(
            'class_weight must be "balanced", a dict {class: weight} or None, '
            f"got {type(class_weight).__name__}"
        )
    weights = np.ones(K)
    for key, value in class_weight.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)) or not 0 <= key < K:
            raise ValueError(f"class_weight keys must be class labels 0..{K - 1}, got {key!r}")
        if not _number(value) or not np.isfinite(value) or value < 0:
            raise ValueError(f"class_weight[{key}] must be a finite number >= 0, got {value!r}")
        weights[int(key)] = float(value)
    if not weights.any():
        raise ValueError("class_weight gives every class weight 0: nothing would be learned")
    return weights


def check_sample_weight(sample_weight: Any, m: int) -> np.ndarray | None:
    """``sample_weight`` as (m,) float64: one finite weight >= 0 per example, not all zero."""
    if sample_weight is None:
        return None
    w = _as_host_array(sample_weight, "sample_weight")
    if w.dtype.kind not in "biuf" or w.dtype.kind == "b":
        raise TypeError(f"sample_weight must hold numbers, got dtype {w.dtype}")
    if w.ndim == 2 and w.shape[0] == 1:
        w = w.reshape(-1)
    if w.shape != (m,):
        raise ValueError(f"sample_weight must have shape ({m},), one weight per example, got {w.shape}")
    w = w.astype(np.float64)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")
    if not w.any():
        raise ValueError("sample_weight is zero for every example: nothing would be learned")
    return w


def example_weights(
    labels: np.ndarray,
    n_classes: int,
    class_weight: Any,
    sample_weight: Any,
    *,
    regression: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(weight per example (m,) float64 or None, per-class weights (K,) or None) for a fit.

    ``labels`` are class labels (1, m) or (m,), or for a ``regression`` model (loss "mse"
    on a linear output) the real targets (K, m): those take ``sample_weight`` (m,) only,
    since they have no classes. Every loss, "mse" included, takes the weights."""
    if regression:
        if class_weight is not None:
            raise ValueError(
                "class_weight needs classes; a regression model (loss='mse' on a linear output) "
                "takes sample_weight only"
            )
        return check_sample_weight(sample_weight, np.asarray(labels).shape[-1]), None
    labels = np.asarray(labels).reshape(-1)
    per_class = class_weights(class_weight, labels, n_classes)
    per_example = check_sample_weight(sample_weight, labels.size)
    if per_class is None and per_example is None:
        return None, None
    weights = np.ones(labels.size) if per_class is None else per_class[labels.astype(np.int64)]
    if per_example is not None:
        weights = weights * per_example
    if not weights.any():
        raise ValueError("class_weight and sample_weight together give every example weight 0")
    return weights, per_class
