"""Optimizers: SGD (momentum, Nesterov), RMSprop, Adam and AdamW, in torch.optim's conventions.

These are the step optimizers: one update per batch. L-BFGS (``nnx.LBFGS``) is a solver
of the full-batch objective, not one of them. Their string names ("sgd", "rmsprop",
"adam", "adamw"), the ranges of their hyper-parameters and their state arrays' names live
in ``nnx.registry``, which every front end reads.

An optimizer object holds hyper-parameters only. Its state (momentum buffers, moment
estimates, the step count) is a ``TrainingState``: created once per ``fit`` on the
backend, next to the parameters, by the ``DeviceNetwork``; brought back to the host at the
end of the fit (so ``fit(..., warm_start=True)`` continues it) and saved in checkpoints.
Each step updates every parameter with one backend op over (parameter, gradient, state):
one fused pass on Numba, one kernel on CUDA, the same arithmetic through ``xp`` elsewhere.

The update equations are those of ``torch.optim`` (single-tensor, ``maximize=False``), in
the same order of floating-point operations, so that runs match PyTorch step for step:

* SGD: ``d = g + wd p``; with momentum ``buf = d`` on the first step, else
  ``buf = momentum buf + (1 - dampening) d``; ``d = d + momentum buf`` (Nesterov) or
  ``d = buf``; ``p -= lr d``.
* RMSprop: ``sq = alpha sq + (1 - alpha) g^2``; centered: ``ga = lerp(ga, g, 1 - alpha)``
  and ``avg = sqrt(sq - ga^2) + eps``, else ``avg = sqrt(sq) + eps``; with momentum
  ``buf = momentum buf + g / avg``, ``p -= lr buf``, else ``p -= lr g / avg``.
* Adam: ``m = lerp(m, g, 1 - beta1)``, ``v = beta2 v + (1 - beta2) g^2``,
  ``p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``; ``weight_decay``
  adds ``wd p`` to g (L2). AdamW instead shrinks ``p *= 1 - lr wd`` before the step.

The tutorials' momentum is the exponentially weighted average ``v = beta v + (1 - beta) g``,
``p -= lr v``. PyTorch's buffer (``dampening=0``) is that ``v`` divided by ``1 - beta``, so
``SGD(lr=lr * (1 - beta), momentum=beta)`` takes exactly the tutorials' steps;
``SGD(lr=lr, momentum=beta, dampening=beta)`` does too except on the first step (PyTorch
starts the buffer at the first gradient, not at ``(1 - beta) g``). The tutorials' RMSprop
and Adam are these ones (``alpha`` is their beta2; epsilon sits outside the square root,
as here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import registry


class Optimizer:
    """Base class of the step optimizers: hyper-parameters (each checked against its range
    in ``nnx.registry.RANGES``), the names of the state arrays kept per parameter, and the
    step. Subclasses define ``slots`` and ``update``.
    """

    name = "Optimizer"

    def __init__(self, lr: float):
        self.lr = registry.check("lr", lr)

    @property
    def slots(self) -> tuple[str, ...]:
        """Names of the state arrays kept per parameter (each shaped like the parameter)."""
        return ()

    @property
    def plain(self) -> bool:
        """True when a step is plain gradient descent, p -= lr g (no state, no decay)."""
        return False

    def config(self) -> dict[str, Any]:
        """A JSON-able description (recorded in the History and in checkpoints)."""
        return {"name": self.name, **self._hyper()}

    def _hyper(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Optimizer) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(repr(self))

    def update(
        self,
        ops: Any,
        params: list[Any],
        grads: list[Any],
        state: TrainingState,
        lr: float,
        decays: list[float],
    ) -> None:
        """One step for every parameter: ``params[i]`` and its state arrays updated in place
        from ``grads[i]``; ``decays[i]`` is an L2 coefficient added to that gradient
        (``g + decay p``) besides the optimizer's own ``weight_decay``; ``state.step`` has
        already been advanced to this step's number."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum, as ``torch.optim.SGD``.

    ``SGD(lr)`` is the tutorials' plain gradient descent (what ``fit(lr=...)`` runs).
    ``weight_decay`` adds ``wd * p`` to every gradient, biases included, as PyTorch does;
    ``fit(l2=...)`` penalises weights only.
    """

    name = "SGD"

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        super().__init__(lr)
        self.momentum = registry.check("momentum", momentum)
        self.dampening = registry.check("dampening", dampening)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening=0 (as in torch.optim.SGD)")
        self.weight_decay = registry.check("weight_decay", weight_decay)

    def _hyper(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "dampening": self.dampening,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    @property
    def slots(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    @property
    def plain(self) -> bool:
        return self.momentum == 0 and self.weight_decay == 0

    def update(self, ops, params, grads, state, lr, decays):
        bufs = state.slots.get("momentum_buffer") or [None] * len(params)
        for p, g, buf, decay in zip(params, grads, bufs, decays):
            ops.sgd_step_(
                p,
                g,
                buf,
                lr=lr,
                momentum=self.momentum,
                dampening=self.dampening,
                nesterov=self.nesterov,
                decay=self.weight_decay + decay,
                first=state.step == 1,
            )


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop`` (``alpha`` is the tutorials' beta2; eps outside
    the square root), with optional momentum and the centered variant."""

    name = "RMSprop"

    def __init__(
        self,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ):
        super().__init__(lr)
        self.alpha = registry.check("alpha", alpha)
        self.eps = registry.check("eps", eps)
        self.weight_decay = registry.check("weight_decay", weight_decay)
        self.momentum = registry.check("momentum", momentum)
        if not isinstance(centered, (bool, np.bool_)):
            raise TypeError(f"centered must be True or False, got {centered!r}")
        self.centered = bool(centered)

    def _hyper(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "alpha": self.alpha,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "centered": self.centered,
        }

    @property
    def slots(self) -> tuple[str, ...]:
        return (
            ("square_avg",)
            + (("grad_avg",) if self.centered else ())
            + (("momentum_buffer",) if self.momentum else ())
        )

    def update(self, ops, params, grads, state, lr, decays):
        n = len(params)
        sq = state.slots["square_avg"]
        ga = state.slots.get("grad_avg") or [None] * n
        bufs = state.slots.get("momentum_buffer") or [None] * n
        for i in range(n):
            ops.rmsprop_step_(
                params[i],
                grads[i],
                sq[i],
                ga[i],
                bufs[i],
                lr=lr,
                alpha=self.alpha,
                eps=self.eps,
                momentum=self.momentum,
                decay=self.weight_decay + decays[i],
            )


class Adam(Optimizer):
    """Adam as ``torch.optim.Adam`` (bias-corrected; ``weight_decay`` is L2 added to the
    gradient, biases included)."""

    name = "Adam"
    decoupled = False

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            registry.check("beta", betas[0], "betas[0]"),
            registry.check("beta", betas[1], "betas[1]"),
        )
        self.eps = registry.check("eps", eps)
        self.weight_decay = registry.check("weight_decay", weight_decay)

    def _hyper(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    @property
    def slots(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def update(self, ops, params, grads, state, lr, decays):
        beta1, beta2 = self.betas
        step = state.step
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bc2_sqrt = math.sqrt(bias_correction2)
        coupled = 0.0 if self.decoupled else self.weight_decay
        shrink = 1 - lr * self.weight_decay if self.decoupled else 1.0
        for p, g, m, v, decay in zip(
            params, grads, state.slots["exp_avg"], state.slots["exp_avg_sq"], decays
        ):
            ops.adam_step_(
                p,
                g,
                m,
                v,
                beta1=beta1,
                beta2=beta2,
                eps=self.eps,
                step_size=step_size,
                bc2_sqrt=bc2_sqrt,
                decay=coupled + decay,
                shrink=shrink,
            )


class AdamW(Adam):
    """AdamW as ``torch.optim.AdamW``: Adam with decoupled weight decay, ``p *= 1 - lr wd``
    before each step (every parameter, biases included)."""

    name = "AdamW"
    decoupled = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        super().__init__(lr, betas, eps, weight_decay)


def optimizer_from_config(cfg: Any) -> Optimizer:
    """Rebuild an optimizer from ``Optimizer.config()`` (ValueError/TypeError if malformed)."""
    spec = registry.optimizer_by_class_name(cfg.get("name")) if isinstance(cfg, dict) else None
    if spec is None or spec.solver != "step":
        raise ValueError(f"not an optimizer description: {cfg!r}")
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    if "betas" in kwargs and isinstance(kwargs["betas"], list):
        kwargs["betas"] = tuple(kwargs["betas"])
    return spec.cls()(**kwargs)


def check_optimizer(optimizer: Any) -> Optimizer | None:
    """``optimizer`` when it is None or a step optimizer; a TypeError otherwise."""
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be an nnx optimizer (nnx.SGD, nnx.RMSprop, nnx.Adam, nnx.AdamW), "
            f"got {type(optimizer).__name__}"
        )
    return optimizer


@dataclass
class TrainingState:
    """What training carries from step to step besides the parameters.

    ``slots[name]`` holds one array per parameter, in the order W0, b0, W1, b1, ... (on
    the backend during a fit, NumPy arrays on the host between fits and in checkpoints).
    ``step`` counts optimizer steps, ``epoch`` epochs (the clock of learning-rate
    schedules and dropout masks). ``dropout_seed`` keys the dropout masks. ``early``
    is early stopping's progress ({"best", "best_epoch", "wait", "stopped"}) and ``best``
    the parameters of its best epoch (flat, like the slots).
    """

    optimizer: dict[str, Any]
    step: int = 0
    epoch: int = 0
    slots: dict[str, list[Any]] = field(default_factory=dict)
    dropout_seed: int | None = None
    early: dict[str, Any] | None = None
    best: list[Any] | None = None

    def arrays(self) -> dict[str, list[Any]]:
        """Every per-parameter array list, by name (the slots, then "best")."""
        out = dict(self.slots)
        if self.best is not None:
            out["best"] = self.best
        return out

    def misfit(self, shapes: list[tuple[int, ...]]) -> str | None:
        """The name of a per-parameter array list whose shapes are not ``shapes`` (the
        parameters', W0, b0, W1, ...), or None when every one fits."""
        for name, arrays in self.arrays().items():
            if [tuple(a.shape) for a in arrays] != [tuple(s) for s in shapes]:
                return name
        return None

    def to_host(self, ops: Any) -> TrainingState:
        """A copy with every array as a host NumPy array."""
        return TrainingState(
            dict(self.optimizer),
            self.step,
            self.epoch,
            {k: [ops.to_host(a) for a in v] for k, v in self.slots.items()},
            self.dropout_seed,
            dict(self.early) if self.early is not None else None,
            [ops.to_host(a) for a in self.best] if self.best is not None else None,
        )

    def to_device(self, ops: Any, dtype: str) -> TrainingState:
        """A copy with every array on ``ops`` in ``dtype``."""
        return TrainingState(
            dict(self.optimizer),
            self.step,
            self.epoch,
            {k: [ops.asarray(a, dtype) for a in v] for k, v in self.slots.items()},
            self.dropout_seed,
            dict(self.early) if self.early is not None else None,
            [ops.asarray(a, dtype) for a in self.best] if self.best is not None else None,
        )

    def json(self) -> dict[str, Any]:
        """The JSON part (arrays are stored apart, see ``from_json``)."""
        return {
            "optimizer": self.optimizer,
            "step": self.step,
            "epoch": self.epoch,
            "slots": list(self.slots),
            "dropout_seed": self.dropout_seed,
            "early": self.early,
        }

    @classmethod
    def from_json(cls, data: Any, arrays: dict[str, list[np.ndarray]]) -> TrainingState:
        """Inverse of ``json`` plus ``arrays()``; ValueError when anything is malformed."""
        if not isinstance(data, dict):
            raise ValueError("the training state is not a JSON object")
        optimizer_from_config(data.get("optimizer"))  # checks it
        for key in ("step", "epoch"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"the training state's {key} is {value!r}")
        slots = data.get("slots")
        if not isinstance(slots, list) or any(s not in arrays for s in slots):
            raise ValueError("the training state's slots do not match its arrays")
        seed = data.get("dropout_seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"the training state's dropout_seed is {seed!r}")
        early = data.get("early")
        if early is not None and not isinstance(early, dict):
            raise ValueError("the training state's early-stopping progress is malformed")
        return cls(
            dict(data["optimizer"]),
            data["step"],
            data["epoch"],
            {s: arrays[s] for s in slots},
            seed,
            early,
            arrays.get("best"),
        )


__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "TrainingState",
    "optimizer_from_config",
]
