"""Sequential models: build, fit, predict, evaluate, get/set parameters, save and load,
export to ONNX.

The model-file format itself is ``nnx.io`` (parts in, parts out); this module builds a
``Sequential`` from the parts it reads (``load``) and gives it the parts to write (``save``).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import backends
from .callbacks import EarlyStopping
from .checkpoint import CheckpointState, checkpoint_parts, read_checkpoint_parts
from .errors import ModelFormatError
from .history import History
from .initializers import draw
from .io import read_model_file, write_model_file
from .layers import (
    ACTIVATION_BY_KIND,
    LOSSES,
    Activation,
    Dropout,
    Layer,
    Linear,
    Sigmoid,
    Softmax,
    layer_from_config,
)
from .network import Block, DeviceNetwork
from .optim import Optimizer, TrainingState
from .schedules import Schedule
from .training.steploop import EpochCallback
from .validation import (
    check_class_labels,
    check_dtype,
    check_fits_dtype,
    check_targets,
    check_X,
    check_Y,
)

log = logging.getLogger("nnx")
Params = list[tuple[np.ndarray, np.ndarray]]


def _blocks(layers: Sequence[Layer], loss: str) -> list[Block]:
    """Group layers into Linear(+activation) blocks and check the stack is well formed."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
    if not layers:
        raise ValueError("a Sequential model needs at least one Linear layer")
    blocks: list[Block] = []
    dropped = False  # the last block already has its dropout
    for pos, layer in enumerate(layers):
        if isinstance(layer, Dropout):
            if not blocks or dropped:
                raise ValueError(
                    f"layer {pos} ({layer!r}) must follow a Linear layer or its activation "
                    "(one Dropout per layer; nnx does not drop the inputs themselves)"
                )
            if pos == len(layers) - 1:
                raise ValueError(f"layer {pos} ({layer!r}) cannot follow the output layer")
            blocks[-1] = Block(blocks[-1].n_in, blocks[-1].n_out, blocks[-1].activation, layer.rate)
            dropped = True
            continue
        if isinstance(layer, Linear):
            dropped = False
            if blocks and blocks[-1].n_out != layer.n_in:
                raise ValueError(
                    f"layer {pos} ({layer!r}) takes {layer.n_in} inputs but the previous "
                    f"Linear gives {blocks[-1].n_out}"
                )
            blocks.append(Block(layer.n_in, layer.n_out, None))
        elif isinstance(layer, Activation):
            if layer.kind == "softmax" and pos != len(layers) - 1:
                raise ValueError(f"layer {pos} (Softmax()) must be the last layer")
            if not blocks or blocks[-1].activation is not None or dropped:
                raise ValueError(
                    f"layer {pos} ({layer!r}) must follow a Linear layer: nnx stacks are "
                    "Linear, optionally followed by one activation and one Dropout, repeated"
                )
            blocks[-1] = Block(blocks[-1].n_in, blocks[-1].n_out, layer.kind)
        else:
            raise TypeError(f"layer {pos} is {layer!r}, not an nnx layer")
    last = blocks[-1]
    if loss == "cross_entropy":
        if last.activation != "softmax":
            raise ValueError(
                "loss='cross_entropy' needs the model to end in a Softmax layer (add nnx.Softmax())"
            )
        if last.n_out < 2:
            raise ValueError(
                "a softmax model needs at least 2 outputs (one per class); for two classes either "
                "use 2 outputs or a 1-output Sigmoid model with loss='bce'"
            )
        return blocks
    if last.activation == "softmax":
        raise ValueError("a Softmax output is trained with loss='cross_entropy'")
    if loss == "mse" and last.activation is None:
        return blocks  # regression: a linear output of any width, real-valued targets
    if last.n_out != 1:
        raise ValueError(
            f"the last Linear layer has {last.n_out} outputs; binary models end in 1 output "
            "(labels Y of shape (1, m)); for K classes end in Linear(n, K), Softmax() with "
            "loss='cross_entropy'; for K real-valued targets end in Linear(n, K) with no "
            "activation and loss='mse'"
        )
    if loss == "bce" and last.activation != "sigmoid":
        raise ValueError("loss='bce' needs the model to end in a Sigmoid layer (add nnx.Sigmoid())")
    return blocks


class Sequential:
    """A stack of layers trained by gradient descent on class labels or real targets.

    X is (n_x, m) with one example per column (float32, float64 or uint8 pixels, which
    nnx scales by 1/255 itself). Binary models (1 output, Sigmoid, loss "bce" or "mse")
    take Y of shape (1, m) or (m,) with values 0/1; K-class models (K outputs, Softmax,
    loss "cross_entropy") take integer labels 0..K-1 of shape (1, m) or (m,), or one-hot
    (K, m). Regression models (a last Linear with no activation, loss "mse": squared
    error 1/(2m) * sum over outputs and examples) take real targets (K, m), or (m,) for
    one output; their ``predict`` gives the outputs (K, m).
    """

    def __init__(self, *layers: Layer, loss: str = "bce", seed: int | None = None):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        self.layers: list[Layer] = list(layers)
        self.loss = loss
        self._blocks = _blocks(self.layers, loss)
        self._linears = [la for la in self.layers if isinstance(la, Linear)]
        # Layers built without a seed are redrawn by the model's seed, or by the first
        # fit(seed=...) unless training or set_parameters already fixed the parameters.
        self._init_fixed = all(la.seeded for la in self._linears)
        if seed is not None:
            self._store(self._drawn(seed))
            self._init_fixed = True
        self.seed = seed
        self.history: History | None = None
        self.last_backend: str | None = None
        # JSON-able facts saved with the model, e.g. {"classes": ["cat", "dog"], "image_size": 64}
        self.metadata: dict[str, Any] = {}
        self.epochs_trained = 0
        # Optimizer state (host copy) left by the last fit, continued by fit(warm_start=True).
        self.training_state: TrainingState | None = None
        # The compute dtype of the last fit (or of a loaded file); inference defaults to it.
        self.dtype: str | None = None
        # fit() from several threads at once runs the fits one after another
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- structure
    @property
    def n_features(self) -> int:
        """Number of input features n_x the model expects (rows of X)."""
        return self._linears[0].n_in

    @property
    def n_classes(self) -> int:
        """Number of classes: 2 for a binary (1-output) model, K for a K-output softmax model."""
        return self._linears[-1].n_out if self.loss == "cross_entropy" else 2

    @property
    def n_outputs(self) -> int:
        """Number of output units (rows of ``predict_proba`` / of a regression's ``predict``)."""
        return self._linears[-1].n_out

    @property
    def is_regression(self) -> bool:
        """True for a regression model: loss "mse" on a linear output (no activation)."""
        return self.loss == "mse" and self._blocks[-1].activation is None

    def config(self) -> dict[str, Any]:
        """A JSON-able architecture description (used by save/load)."""
        return {"layers": [la.config() for la in self.layers], "loss": self.loss}

    def __repr__(self) -> str:
        inner = ", ".join(repr(la) for la in self.layers)
        return f"Sequential({inner}, loss={self.loss!r})"

    # -------------------------------------------------------------- parameters
    def _drawn(self, seed: int) -> Params:
        """Parameters with every unseeded layer redrawn from ``seed`` (layers untouched)."""
        children = np.random.SeedSequence(seed).spawn(len(self._linears))
        return [
            (layer.W, layer.b)
            if layer.seeded
            else draw(layer.init, layer.n_in, layer.n_out, np.random.default_rng(child))
            for layer, child in zip(self._linears, children)
        ]

    def _store(self, params: Params) -> None:
        for layer, (W, b) in zip(self._linears, params):
            layer.W, layer.b = W, b

    def parameters(self) -> Params:
        """Host NumPy copies [(W, b), ...], W (n_out, n_in) and b (n_out, 1) per Linear
        (taken under the fit lock: never half of a fit's commit)."""
        with self._lock:
            return [(la.W.copy(), la.b.copy()) for la in self._linears]

    def set_parameters(self, params: Sequence[tuple[Any, Any]]) -> None:
        """Replace all parameters; shapes must match the architecture and values be finite."""
        params = list(params)
        if len(params) != len(self._linears):
            raise ValueError(f"expected {len(self._linears)} (W, b) pairs, got {len(params)}")
        checked = []
        for i, (pair, layer) in enumerate(zip(params, self._linears)):
            if len(pair) != 2:
                raise ValueError(f"parameter {i} must be a (W, b) pair")
            W, b = (np.array(p, copy=True) for p in pair)
            b = b.reshape(-1, 1) if b.ndim == 1 else b
            for name, arr, shape in (("W", W, (layer.n_out, layer.n_in)), ("b", b, (layer.n_out, 1))):
                if arr.shape != shape:
                    raise ValueError(f"layer {i} {name} has shape {arr.shape}, expected {shape}")
                if arr.dtype.kind != "f":
                    raise TypeError(f"layer {i} {name} must be floating point, got {arr.dtype}")
                if not np.isfinite(arr).all():
                    raise ValueError(f"layer {i} {name} contains NaN or inf")
            checked.append((W, b))
        self._store(checked)
        self._init_fixed = True

    # ----------------------------------------------------------------- training
    def fit(
        self,
        X: Any,
        Y: Any,
        epochs: int = 100,
        lr: float | None = None,
        *,
        optimizer: Optimizer | None = None,
        l2: float = 0.0,
        schedule: Schedule | None = None,
        early_stopping: EarlyStopping | None = None,
        class_weight: str | dict[int, float] | None = None,
        sample_weight: Any = None,
        warm_start: bool = False,
        validation_data: tuple[Any, Any] | None = None,
        batch_size: int | None = None,
        backend: str | backends.Backend | None = None,
        seed: int | np.random.Generator | None = None,
        dtype: str = "float32",
        verbose: bool = False,
        history_every: int = 1,
        callback: EpochCallback | None = None,
    ) -> History:
        """Train from the current parameters; returns the History of this fit.

        X (n_x, m) float32/float64/uint8, Y (1, m) or (m,) of 0/1 (or class labels for a
        softmax model). ``batch_size=None`` is full-batch; otherwise mini-batches in an
        order shuffled by ``seed`` (an int, or a numpy Generator whose state carries across
        calls, e.g. to resume). ``dtype`` is the compute precision.

        * ``lr`` alone is plain gradient descent at that rate (default 0.01), as in the
          tutorials; ``optimizer`` (``nnx.SGD``, ``RMSprop``, ``Adam``, ``AdamW``) brings
          its own rate instead (give one or the other).
        * ``l2``: the tutorials' L2 regularisation, l2 / (2m) * sum of squared weights
          added to the loss and l2 / m * W to the gradient (biases not penalised; m is
          the number of training examples).
        * ``schedule``: an ``nnx.schedules`` learning-rate schedule (per epoch).
        * ``early_stopping``: an ``nnx.EarlyStopping``, watching ``validation_data``.
        * ``class_weight`` ("balanced" or {class: weight}) and ``sample_weight`` (m,)
          weigh each example's loss (mean of w_i * loss_i over the m examples), for every
          loss ("mse" too); a regression model, which has no classes, takes
          ``sample_weight`` only.
        * ``warm_start=True`` continues the optimizer state of the previous fit (moments,
          step count, epoch clock of the schedule and dropout); otherwise each fit starts
          the optimizer afresh (the parameters always continue).
        * ``callback(epoch, network, history)`` runs after every epoch and may return True
          to stop there (see ``nnx.callbacks``).

        ``history_every=k`` records (and reads back) figures every k epochs. If training
        fails (bad input, NaN loss, Ctrl-C) the parameters are left exactly as they were.
        Fits of one model from several threads run one after another (each continues
        from the parameters the previous one left).
        """
        from .training import engine

        Y, classes = self._named_labels(Y)
        if classes is not None and validation_data is not None and len(validation_data) == 2:
            validation_data = (validation_data[0], self._named_labels(validation_data[1], classes)[0])
        history = engine.run(
            self,
            X,
            Y,
            "local",
            epochs=epochs,
            lr=lr,
            optimizer=optimizer,
            l2=l2,
            schedule=schedule,
            early_stopping=early_stopping,
            class_weight=class_weight,
            sample_weight=sample_weight,
            warm_start=warm_start,
            validation_data=validation_data,
            batch_size=batch_size,
            backend=backend,
            seed=seed,
            dtype=dtype,
            verbose=verbose,
            history_every=history_every,
            callback=callback,
        )
        if classes is not None:
            self.metadata["classes"] = classes
        return history

    def _named_labels(self, Y: Any, classes: list[str] | None = None) -> tuple[Any, list[str] | None]:
        """Labels of any kind as class numbers, and the class names they stand for.

        Numbers are class numbers (0/1 for a two-class model; 0..K-1 or one-hot for K
        classes) and come back unchanged with None, for the usual checks. Labels that are
        not numbers (text, bytes, objects such as "cat") are class names, numbered in
        sorted order (as scikit-learn's LabelEncoder numbers them): by ``classes`` when
        given, else by ``metadata["classes"]`` when that holds every label, else by the
        labels' own distinct values, which must then be as many as the model's classes
        (ValueError saying which model would fit)."""
        if not isinstance(Y, (list, tuple, np.ndarray)) or isinstance(Y, np.ma.MaskedArray):
            return Y, None
        values = np.asarray(Y)
        if values.dtype.kind not in "USO" or values.size == 0 or values.ndim > 2:
            return Y, None  # numbers are class numbers: the usual checks take them as they are
        if values.ndim == 2 and values.shape[0] != 1:
            return Y, None  # the usual checks say what shape labels take
        flat = values.reshape(-1)
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in flat.tolist()]
        known = classes if classes is not None else self.metadata.get("classes")
        if known is None or not set(names) <= set(map(str, known)):
            if classes is not None:
                raise ValueError(f"labels {sorted(set(names) - set(classes))[:5]} are not among {classes}")
            found = sorted(set(names))
            if len(found) != self.n_classes:
                raise ValueError(_class_count_message(found, self.n_classes, self.n_features))
            known = found
        index = {str(name): k for k, name in enumerate(known)}
        return np.array([[index[n] for n in names]], dtype=np.int64), [str(n) for n in known]

    # ----------------------------------------------------- what the engine uses
    @property
    def blocks(self) -> tuple[Block, ...]:
        """The layers grouped as Linear(+activation, +dropout) blocks, input to output."""
        return tuple(self._blocks)

    @property
    def fit_lock(self) -> threading.RLock:
        """Held for the whole of a fit: fits of one model from several threads run one after
        another."""
        return self._lock

    def check_labels(self, Y: Any, m: int) -> np.ndarray:
        """Y checked against the model's kind: 0/1 labels (1, m) for a binary model, class
        indices (1, m) for a K-class model (one-hot (K, m) accepted), real targets (K, m)
        for a regression model."""
        if self.is_regression:
            return check_targets(Y, m, self.n_outputs)
        if self.loss == "cross_entropy":
            return check_class_labels(Y, m, self.n_classes)
        return check_Y(Y, m)

    def start_parameters(self, seed: Any) -> Params:
        """Host parameters a fit starts from: the current ones, or - for a model whose
        layers were built without a seed and never trained or set - drawn from ``seed``
        (an int, or a numpy Generator), as ``fit(seed=...)`` does."""
        if self._init_fixed or not isinstance(seed, (int, np.integer, np.random.Generator)):
            return self.parameters()
        # a Generator gives one draw, the seed of the parameters (its state moves on)
        return self._drawn(int(seed.integers(2**63)) if isinstance(seed, np.random.Generator) else int(seed))

    def commit_fit(
        self,
        params: Params,
        history: History,
        *,
        backend: str,
        dtype: str,
        training_state: TrainingState | None = None,
    ) -> None:
        """Store a finished fit: its parameters (host arrays, copied), optimizer state,
        backend and dtype, and its History appended to the model's. The one place a fit
        writes a model's parameters (the engine calls it under ``fit_lock``)."""
        with self._lock:
            self._store([(np.array(W, copy=True), np.array(b, copy=True)) for W, b in params])
            self.training_state = training_state
            self._init_fixed = True
            self.last_backend = backend
            self.dtype = dtype
            if self.history is None:  # the model's record across fits; each fit returns its own
                self.history = History(
                    backend=history.backend,
                    backend_reason=history.backend_reason,
                    dtype=history.dtype,
                    lr=history.lr,
                    batch_size=history.batch_size,
                    optimizer=history.optimizer,
                    schedule=history.schedule,
                    l2=history.l2,
                )
            self.history.extend(history, offset=self.epochs_trained)
            self.epochs_trained += history.epochs

    def continued_state(self, optimizer: Optimizer) -> TrainingState | None:
        """The previous fit's optimizer state for ``warm_start``; None, with a warning that
        the optimizer starts fresh, when the model holds none (never trained, or loaded
        from a file saved without ``optimizer_state=True``); a ValueError when ``optimizer``
        is of another kind than the state's (its state would not fit)."""
        if self.training_state is None:
            warnings.warn(
                "warm_start=True: this model holds no optimizer state (never trained, trained by "
                "L-BFGS, or loaded from a file saved without optimizer_state=True); the "
                "optimizer starts fresh",
                UserWarning,
                stacklevel=5,
            )
        state = self.training_state
        if state is None:
            return None
        previous = state.optimizer.get("name")
        if previous != optimizer.name:
            raise ValueError(
                f"warm_start=True continues the state of the previous fit's {previous} optimizer, "
                f"but optimizer is {optimizer!r}; pass the same kind of optimizer or warm_start=False"
            )
        misfit = state.misfit([p.shape for pair in self.parameters() for p in pair])
        if misfit is not None:
            raise ValueError(
                f"warm_start=True: the saved optimizer state {misfit!r} does not fit the parameters"
            )
        return state

    def gradients(
        self, X: Any, Y: Any, *, backend: str | backends.Backend | None = None, dtype: str = "float64"
    ) -> tuple[float, Params]:  # float64 by default: gradients are for checking
        """(loss, [(dW, db), ...]) at the current parameters, as host arrays (no update)."""
        ops = backends.get_backend(backend)
        with ops.memory_errors_explained():
            net, Xd, Yd = self._network_for(X, Y, ops, dtype)
            loss, _, grads = net.loss_and_grads(Xd, Yd)
            return net.ops.scalar(loss), [(net.ops.to_host(dW), net.ops.to_host(db)) for dW, db in grads]

    # ---------------------------------------------------------------- inference
    def inference_dtype(self, dtype: str | None = None) -> str:
        """``dtype`` if given, else the dtype the model was trained or loaded in (float32
        for a model never trained)."""
        return check_dtype(dtype or self.dtype or "float32")

    def _network_for(self, X: Any, Y: Any, backend: Any, dtype: str | None):
        dtype = self.inference_dtype(dtype)
        X = check_fits_dtype(check_X(X, self.n_features), dtype)
        ops = backends.get_backend(backend)
        net = DeviceNetwork(ops, self._blocks, self.loss, self.parameters(), dtype)
        Yd = None if Y is None else ops.prepare_labels(self.check_labels(Y, X.shape[1]), dtype)
        return net, net.prepare(X, for_training=False), Yd

    def predict_proba(
        self, X: Any, *, backend: str | backends.Backend | None = None, dtype: str | None = None
    ) -> np.ndarray:
        """Probabilities for X (n_x, m) as a host NumPy array in the compute dtype (default:
        the dtype the model was trained or loaded in): (1, m) of class 1 for a binary
        model, (K, m) with columns summing to 1 for a K-class model. A regression model
        has no probabilities (TypeError): its ``predict`` gives the outputs."""
        if self.is_regression:
            raise TypeError("a regression model (linear output, 'mse') has no probabilities: use predict")
        return self._outputs(X, backend, dtype)

    def predictor(
        self, *, backend: str | backends.Backend | None = None, dtype: str | None = None
    ) -> Callable[[Any], np.ndarray]:
        """``predict_proba`` for many batches through one network: the parameters as they
        are now go to the backend once, here, and each call of the function returned
        classifies one X (n_x, m) with them (``nnx predict`` on thousands of pictures)."""
        if self.is_regression:
            raise TypeError("a regression model (linear output, 'mse') has no probabilities: use predict")
        ops = backends.get_backend(backend)
        dtype = self.inference_dtype(dtype)
        with ops.memory_errors_explained():
            net = DeviceNetwork(ops, self._blocks, self.loss, self.parameters(), dtype)

        def predict_proba(X: Any) -> np.ndarray:
            X = check_fits_dtype(check_X(X, self.n_features), dtype)
            with ops.memory_errors_explained(), np.errstate(over="ignore", under="ignore"):
                return net.ops.to_host(net.predict_proba(net.prepare(X, for_training=False)))

        return predict_proba

    def _outputs(self, X: Any, backend: Any, dtype: str | None) -> np.ndarray:
        """The output layer's activations for X as a host array."""
        ops = backends.get_backend(backend)
        with ops.memory_errors_explained(), np.errstate(over="ignore", under="ignore"):
            net, Xd, _ = self._network_for(X, None, ops, dtype)
            return net.ops.to_host(net.predict_proba(Xd))

    def logits(
        self, X: Any, *, backend: str | backends.Backend | None = None, dtype: str | None = None
    ) -> np.ndarray:
        """The output layer's pre-activations Z = W A + b for X (n_x, m): (1, m) for a
        binary model (sigmoid(Z) is the probability), (K, m) for a K-class model."""
        ops = backends.get_backend(backend)
        with ops.memory_errors_explained(), np.errstate(over="ignore", under="ignore"):
            net, Xd, _ = self._network_for(X, None, ops, dtype)
            return net.ops.to_host(net.forward(Xd, logits_out=True)[-1])

    def predict(
        self,
        X: Any,
        threshold: float = 0.5,
        *,
        backend: str | backends.Backend | None = None,
        dtype: str | None = None,
    ) -> np.ndarray:
        """Labels (1, m) as int64: for a binary model 1 where the probability exceeds
        ``threshold``, else 0; for a K-class model the most probable class 0..K-1
        (``threshold`` does not apply). A regression model gives its outputs (K, m) in
        the compute dtype."""
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        if self.is_regression:
            return self._outputs(X, backend, dtype)
        proba = self.predict_proba(X, backend=backend, dtype=dtype)
        if self.loss == "cross_entropy":
            return np.argmax(proba, axis=0).reshape(1, -1).astype(np.int64)
        return (proba > threshold).astype(np.int64)

    def evaluate(
        self, X: Any, Y: Any, *, backend: str | backends.Backend | None = None, dtype: str | None = None
    ) -> dict[str, float]:
        """{"loss": ..., "accuracy": ...} of the current parameters on (X, Y) ({"loss": ...}
        for a regression model)."""
        if self.metadata.get("classes"):  # labels given by name, as fit took them
            Y = self._named_labels(Y, [str(c) for c in self.metadata["classes"]])[0]
        ops = backends.get_backend(backend)
        with ops.memory_errors_explained(), np.errstate(over="ignore", under="ignore"):
            net, Xd, Yd = self._network_for(X, Y, ops, dtype)
            loss, correct = net.evaluate(Xd, Yd)
            if self.is_regression:  # no accuracy for real-valued targets
                return {"loss": net.ops.scalar(loss)}
            return {"loss": net.ops.scalar(loss), "accuracy": net.ops.scalar(correct) / Yd.shape[1]}

    # -------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike, *, optimizer_state: bool = False) -> None:
        """Write the model to ``path`` atomically (npz, no pickle); see ``nnx.load``.

        ``optimizer_state=True`` also writes the optimizer state of the last fit (moments,
        step and epoch clocks, dropout key, early stopping's progress) and the History, so
        that ``nnx.load(path).fit(..., warm_start=True)`` continues exactly as the model
        in memory would (``nnx.checkpoint``)."""
        with self._lock:  # parameters and optimizer state of the same fit
            self._write(path, optimizer_state)

    def to_onnx(
        self, path: str | os.PathLike, *, dtype: str | None = None, input_dtype: str | None = None
    ) -> None:
        """Write the model as an ONNX graph (opset ``nnx.onnx_export.OPSET`` = 17) to
        ``path``, atomically; an existing file there must be an ONNX export of nnx.

        Input ``X`` (m, n), one example per row; outputs ``probabilities`` ((m, 1) for a
        1-output model, (m, K) for K classes) and ``label`` (int64 (m,): ``predict`` at its
        default threshold), or ``prediction`` (m, K) for a regression model. Dropout is the
        identity. ``dtype`` is the graph's compute precision (default: the model's
        inference dtype); ``input_dtype`` "uint8" takes raw pixels and applies the 1/255
        inside the graph as nnx does (the default for a model trained on images, whose
        metadata has ``image_size``), "float32"/"float64" take features (the default: the
        compute dtype). Needs the ``onnx`` extra (ImportError naming it otherwise)."""
        from .onnx_export import write_onnx

        with self._lock:  # the parameters of one fit
            write_onnx(self, path, dtype=dtype, input_dtype=input_dtype)

    def _write(self, path: str | os.PathLike, optimizer_state: bool) -> None:
        extra, arrays = None, None
        if optimizer_state:
            extra, arrays = checkpoint_parts(self.training_state, self.history)
        write_model_file(
            path, self.config(), self.parameters(), self.last_backend, self.metadata, extra, arrays
        )


def _class_count_message(found: list[str], n_classes: int, n_features: int) -> str:
    """Why labels of ``len(found)`` classes do not fit a model of ``n_classes``, and which would."""
    K = len(found)
    shown = ", ".join(found[:5]) + (" ..." if K > 5 else "")
    if K < 2:
        return f"the labels hold one class only ({shown}); a classifier needs examples of two or more"
    model = "one output (two classes)" if n_classes == 2 else f"{n_classes} classes"
    fix = (
        f"nnx.SoftmaxRegression({n_features}, {K}) or nnx.MLP([{n_features}, ..., {K}])"
        if K > 2
        else f"nnx.LogisticRegression({n_features}) or nnx.MLP([{n_features}, ..., 1])"
    )
    return f"the labels hold {K} classes ({shown}), but this model has {model}; for {K} classes use {fix}"


def load(path: str | os.PathLike) -> Sequential:
    """Read a model written by ``Sequential.save`` (or ``nnx train``).

    Raises FileNotFoundError for a missing file (or a directory) and ModelFormatError for
    anything else that is not a model this nnx wrote: a truncated, corrupt or foreign
    file, a bare ``.npy``, a newer format version, unexpected, missing, duplicate,
    encrypted or oversized members, metadata of the wrong structure or types, JSON nested
    deeper than MAX_JSON_DEPTH, an architecture nnx cannot build or one that disagrees
    with the stored arrays, non-finite parameters, a malformed optimizer state or history.
    No pickle is ever loaded. A file saved with ``optimizer_state=True`` (or a checkpoint
    of ``nnx train``) gives the model its optimizer state and History back, so that
    ``fit(warm_start=True)`` continues as if never stopped.

    Memory is bounded whatever the file says: everything is checked against the limits
    (at most MAX_PARAMETERS = 2**26 parameters and MAX_META_CHARS = 2**23 characters of
    metadata, ``nnx.io``) and against the stored arrays' declared sizes before it is
    allocated, and the peak is below ``nnx.io.LOAD_MEMORY_BOUND``: 25 bytes per stored
    parameter plus 32 per metadata character plus 16 MiB, so at most 1872 MiB (1.83 GiB)
    at the limits and a few MiB for a typical model.
    """
    model, state = read_checkpoint(path)
    if state.training is not None:
        model.training_state = state.training
    if state.history is not None:
        model.history = state.history
        model.epochs_trained = state.history.epoch[-1] if state.history.epoch else state.history.epochs
    return model


def read_checkpoint(path: str | os.PathLike) -> tuple[Sequential, CheckpointState]:
    """The model in a model file and the training state it carries (``nnx.checkpoint``:
    optimizer state, History, ``nnx train``'s run fields), all checked; ModelFormatError
    when any part is malformed."""
    model, extra, states = load_checkpoint(path)
    try:
        state = read_checkpoint_parts(extra, states)
    except ValueError as exc:
        raise ModelFormatError(f"{path} is not a usable checkpoint: {exc}") from None
    if state.training is not None:
        misfit = state.training.misfit([p.shape for pair in model.parameters() for p in pair])
        if misfit is not None:
            raise ModelFormatError(f"{path}: the optimizer state {misfit!r} does not fit the parameters")
    return model, state


def load_checkpoint(
    path: str | os.PathLike,
) -> tuple[Sequential, dict[str, Any] | None, dict[str, list[np.ndarray]]]:
    """The model in a model file, the file's ``extra`` JSON (None in a plain model file)
    and its training-state arrays ({name: [one array per parameter, W0, b0, W1, ...]}; {}
    for a plain model file), checked like the parameters; ``read_checkpoint`` decodes the
    last two."""
    parts = read_model_file(path)
    arch = parts.architecture
    try:
        layers = [layer_from_config(cfg) for cfg in arch["layers"]]
        model = Sequential(*layers, loss=arch["loss"])
        model.set_parameters(parts.params)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path} has an inconsistent architecture or parameters: {exc}") from exc
    model.last_backend = parts.backend
    model.dtype = parts.dtype
    model.metadata = parts.metadata
    extra, states = parts.extra, parts.states
    del parts  # the file's parameter buffers: set_parameters made the model's own copies
    classes = model.metadata.get("classes")
    if classes is not None and len(classes) != model.n_classes:
        raise ModelFormatError(
            f"{path} is corrupt: it names {len(classes)} classes for a {model.n_classes}-class model"
        )
    return model, extra, states


def LogisticRegression(n_features: int, *, loss: str = "bce", seed: int | None = None) -> Sequential:
    """Logistic regression as in the tutorials: Linear(n, 1, init="zeros") + Sigmoid."""
    # zeros need no randomness, so the layer counts as seeded whatever ``seed`` is
    return Sequential(Linear(n_features, 1, init="zeros", seed=seed or 0), Sigmoid(), loss=loss)


def SoftmaxRegression(n_features: int, n_classes: int, *, seed: int | None = None) -> Sequential:
    """Multinomial logistic regression: Linear(n, K, init="zeros") + Softmax, cross-entropy."""
    return Sequential(
        Linear(n_features, n_classes, init="zeros", seed=seed or 0), Softmax(), loss="cross_entropy"
    )


def MLP(
    sizes: Sequence[int],
    *,
    hidden: str = "relu",
    init: str | None = None,
    loss: str | None = None,
    seed: int | None = None,
    dropout: float = 0.0,
) -> Sequential:
    """A fully connected net, e.g. MLP([12288, 50, 1]): hidden layers with ``hidden``
    activation ("relu", "sigmoid", "tanh") and a Sigmoid output with loss "bce" (or
    "mse"); with K > 1 outputs, e.g. MLP([64, 50, 10]), a Softmax output with loss
    "cross_entropy". ``init`` defaults to "he" for ReLU hidden layers and "xavier" otherwise.
    ``dropout`` > 0 puts a ``Dropout(dropout)`` after every hidden layer.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"MLP sizes need at least [n_x, 1], got {sizes}")
    if hidden not in ACTIVATION_BY_KIND:
        raise ValueError(f"unknown hidden activation {hidden!r}; expected one of {tuple(ACTIVATION_BY_KIND)}")
    hidden_init = init or ("he" if hidden == "relu" else "xavier")
    multiclass = sizes[-1] > 1
    loss = loss or ("cross_entropy" if multiclass else "bce")
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layer_init = (init or "xavier") if last else hidden_init
        layers.append(Linear(n_in, n_out, init=layer_init))
        if last and multiclass:
            layers.append(Softmax())
        else:
            layers.append(ACTIVATION_BY_KIND["sigmoid" if last else hidden]())
        if not last and dropout:
            layers.append(Dropout(dropout))
    return Sequential(*layers, loss=loss, seed=seed)
