"""Layers: Linear holds host parameters; Sigmoid, ReLU, Tanh and Softmax name an activation;
Dropout drops units of the layer before it while training. With ``LOSSES`` they are the
vocabulary of a model description (``Sequential.config()``).

Layers only describe the network and hold its host parameters. The arithmetic lives in
the backend ops, driven by ``nnx.network``.
"""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np

from . import registry
from .initializers import INITIALIZERS, draw

LOSSES = registry.LOSSES  # what a Sequential model is trained on


class Layer:
    """Base of all layers."""

    def config(self) -> dict[str, Any]:
        """A JSON-able description from which ``layer_from_config`` rebuilds the layer."""
        return {"type": type(self).__name__}


class Linear(Layer):
    """Fully connected layer Z = W A + b with W (n_out, n_in) and b (n_out, 1).

    Parameters are drawn when the layer is built, on the host in float64, from ``seed``
    (an int) or, when no seed is given, from fresh entropy; a model's ``seed`` (or the
    first ``fit(seed=...)``) redraws layers built without one, so runs are reproducible.
    """

    def __init__(self, n_in: int, n_out: int, init: str = "xavier", seed: int | None = None):
        for label, value in (("n_in", n_in), ("n_out", n_out)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Linear {label} must be a positive integer, got {value!r}")
        if init not in INITIALIZERS:
            raise ValueError(f"unknown init {init!r}; expected one of {INITIALIZERS}")
        self.n_in, self.n_out, self.init = int(n_in), int(n_out), init
        self.seeded = seed is not None
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | np.random.SeedSequence | None) -> None:
        """Redraw W and b with this layer's initialiser from ``seed`` (None: fresh entropy)."""
        self.W, self.b = draw(self.init, self.n_in, self.n_out, np.random.default_rng(seed))

    def config(self) -> dict[str, Any]:
        return {"type": "Linear", "n_in": self.n_in, "n_out": self.n_out, "init": self.init}

    def __repr__(self) -> str:
        return f"Linear({self.n_in}, {self.n_out}, init={self.init!r})"


class Activation(Layer):
    """An elementwise activation; ``kind`` names the backend op."""

    kind: str = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sigmoid(Activation):
    """sigma(z) = 1 / (1 + exp(-z)), computed stably for any logit."""

    kind = "sigmoid"


class ReLU(Activation):
    """max(z, 0)."""

    kind = "relu"


class Tanh(Activation):
    """tanh(z)."""

    kind = "tanh"


class Softmax(Activation):
    """softmax over the K outputs of each example (a column): exp(z_k - max z) / sum.

    Only as the last layer, with loss="cross_entropy", which computes it from the logits.
    """

    kind = "softmax"


class Dropout(Layer):
    """Inverted dropout on the output of the layer before it, active only while training
    (``fit``): each unit of each example is zeroed with probability ``rate`` and the kept
    ones are scaled by 1 / (1 - rate), so inference (predict, evaluate, validation) uses
    the layer as the identity. Masks come from a counter-based generator keyed by the fit's
    seed, epoch, layer and element (``nnx.backends.philox``): every backend draws the same.
    It follows a hidden layer's activation (or a Linear), never the output layer.
    """

    def __init__(self, rate: float):
        self.rate = registry.check("dropout", rate, "Dropout rate")

    def config(self) -> dict[str, Any]:
        return {"type": "Dropout", "rate": self.rate}

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"


_ACTIVATION_TYPES = {cls.__name__: cls for cls in (Sigmoid, ReLU, Tanh, Softmax)}
# hidden-layer activations, by their names in nnx.registry.HIDDEN_ACTIVATIONS
ACTIVATION_BY_KIND = {cls.kind: cls for cls in (Sigmoid, ReLU, Tanh)}


LAYER_TYPES = ("Linear", "Dropout", *_ACTIVATION_TYPES)
_LINEAR_KEYS = {"type", "n_in", "n_out", "init"}


def check_layer_config(cfg: Any) -> dict[str, Any]:
    """Check a layer description without building anything; return it with defaults filled in.

    Raises TypeError or ValueError for anything ``Layer.config()`` would not have written:
    a non-dict, an unknown type, unknown keys, sizes that are not positive ints (floats,
    strings and bools are refused, not coerced), an unknown init.
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"a layer description must be a JSON object, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise ValueError(
            f"unknown layer type {reprlib.repr(kind)} in model description; expected one of {LAYER_TYPES}"
        )
    allowed = _LINEAR_KEYS if kind == "Linear" else {"type", "rate"} if kind == "Dropout" else {"type"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"{kind} layer description has unknown keys {reprlib.repr(unknown)}")
    if kind == "Dropout":
        rate = cfg.get("rate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"Dropout rate must be a number in [0, 1), got {reprlib.repr(rate)}")
        return {"type": kind, "rate": float(rate)}
    if kind != "Linear":
        return {"type": kind}
    checked: dict[str, Any] = {"type": kind}
    for label in ("n_in", "n_out"):
        value = cfg.get(label)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Linear {label} must be a positive integer, got {reprlib.repr(value)}")
        checked[label] = value
    init = cfg.get("init", "xavier")
    if not isinstance(init, str) or init not in INITIALIZERS:
        raise ValueError(f"unknown init {reprlib.repr(init)}; expected one of {INITIALIZERS}")
    checked["init"] = init
    return checked


def layer_from_config(cfg: dict[str, Any]) -> Layer:
    """Rebuild a layer from ``Layer.config()`` output (parameters are set separately).

    The description is checked first (``check_layer_config``); a Linear draws its
    parameters, n_in * n_out of them, so callers bound the sizes before calling this.
    """
    cfg = check_layer_config(cfg)
    if cfg["type"] == "Linear":
        return Linear(cfg["n_in"], cfg["n_out"], init=cfg["init"], seed=0)
    if cfg["type"] == "Dropout":
        return Dropout(cfg["rate"])
    return _ACTIVATION_TYPES[cfg["type"]]()
