"""L-BFGS: scipy's L-BFGS-B driving nnx's single-pass loss and gradient.

Full-batch quasi-Newton training to the optimum, as scikit-learn's ``LogisticRegression``
and ``MLPClassifier(solver="lbfgs")`` do, with every evaluation of the loss and gradient
on an nnx backend:

* logistic regression: ``Backend.logreg_loss_grad``, the fused epoch's single pass over X
  without its step (Numba and CUDA read X once, uint8 pixels raw);
* softmax regression: ``Backend.softmax_loss_grad`` (the chunked single pass on Numba);
* any other model: the network's forward and backward passes.

The parameters live on the backend. Per evaluation only the flat float64 parameter
vector goes to the backend and the flat gradient (plus two scalars) comes back, nothing
X-sized; the line search's trial points are evaluated by the same pass. The objective is

    mean loss + l2 / (2 m) * sum of ||W||^2 over the weight matrices (biases free),

so ``l2 = 1 / C`` matches scikit-learn's ``LogisticRegression(C=C)`` (which minimises
C * sum of losses + ||w||^2 / 2, the same objective times C * m) and ``l2 = alpha``
matches ``MLPClassifier(alpha=alpha)``.

scipy is an optional extra: ``pip install 'nnx-nets[lbfgs]'``.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backends
from ..errors import MinimisationStopped
from ..history import History
from ..network import DeviceNetwork
from ..validation import check_positive
from .divergence import cause_of, diverged
from .threads import BlasThreads

log = logging.getLogger("nnx")

INSTALL_HINT = "pip install 'nnx-nets[lbfgs]'"
STOP_REASONS = ("gradient tolerance", "max iterations", "max evaluations", "no progress", "callback")

# callback(iteration, network, history) -> True to stop after this iteration
IterationCallback = Callable[[int, DeviceNetwork, History], bool | None]


def _scipy_minimize() -> Callable[..., Any]:
    """scipy.optimize.minimize, or an ImportError naming the extra that installs it."""
    try:
        from scipy.optimize import minimize
    except ImportError as exc:
        raise ImportError(
            f"nnx.LBFGS needs scipy >= 1.9, which nnx installs as the optional extra 'lbfgs': "
            f"{INSTALL_HINT} (import failed: {exc})"
        ) from None
    return minimize


def _scipy_version() -> str:
    import scipy

    return scipy.__version__


class LBFGS:
    """Limited-memory BFGS (scipy's L-BFGS-B without bounds) for full-batch training.

    ``tol``: stop when the largest component of the objective's gradient is at most
    ``tol`` (scipy's ``gtol``, scikit-learn's ``tol``). ``m``: correction pairs kept, the
    memory of the method (scipy's ``maxcor``). ``ftol``: stop when an iteration lowers the
    objective by at most ``ftol`` relative (default 64 machine epsilons, scikit-learn's
    choice: in practice that means "no progress"). ``max_line_search``: evaluations one
    line search may take (scikit-learn uses 50). ``max_evaluations``: a cap on passes
    over X, line searches included (None: only the iteration limit, ``epochs``, applies).

    Not resumable mid-run: the memory (the last ``m`` steps and gradient changes) is not
    part of a model file or a checkpoint. Fitting again starts from the model's
    parameters with an empty memory, which costs a few iterations to rebuild.

    Without scipy, building one raises an ImportError naming the extra to install.
    """

    name = "lbfgs"

    def __init__(
        self,
        tol: float = 1e-6,
        m: int = 10,
        *,
        ftol: float = 64 * float(np.finfo(np.float64).eps),
        max_line_search: int = 50,
        max_evaluations: int | None = None,
    ):
        self.tol = check_positive(tol, "tol")
        self.m = check_positive(m, "m", int)
        self.ftol = check_positive(ftol, "ftol")
        self.max_line_search = check_positive(max_line_search, "max_line_search", int)
        self.max_evaluations = (
            None if max_evaluations is None else check_positive(max_evaluations, "max_evaluations", int)
        )
        _scipy_minimize()  # fail here, naming the extra, rather than at fit

    def __repr__(self) -> str:
        return (
            f"LBFGS(tol={self.tol!r}, m={self.m!r}, ftol={self.ftol!r}, "
            f"max_line_search={self.max_line_search!r}, max_evaluations={self.max_evaluations!r})"
        )

    def config(self) -> dict[str, Any]:
        """The hyper-parameters as a JSON-able dict."""
        return {
            "tol": self.tol,
            "m": self.m,
            "ftol": self.ftol,
            "max_line_search": self.max_line_search,
            "max_evaluations": self.max_evaluations,
        }

    def scipy_options(self, max_iterations: int) -> dict[str, Any]:
        """The ``options`` of ``scipy.optimize.minimize(method="L-BFGS-B")``."""
        maxfun = self.max_evaluations or max_iterations * (self.max_line_search + 1) + 1
        return {
            "maxiter": int(max_iterations),
            "maxfun": int(maxfun),
            "maxcor": self.m,
            "gtol": self.tol,
            "ftol": self.ftol,
            "maxls": self.max_line_search,
        }


def stop_reason(message: str, iterations: int, max_iterations: int) -> str:
    """One of ``STOP_REASONS`` for an L-BFGS-B result message (the wording differs
    between scipy versions: underscores before 1.15, spaces after)."""
    text = str(message).upper().replace("_", " ")
    if "PROJECTED GRADIENT" in text:
        return "gradient tolerance"
    if "ITERATIONS" in text or iterations >= max_iterations:
        return "max iterations"
    if "EVALUATIONS" in text:
        return "max evaluations"
    if "CALLBACK" in text:
        return "callback"
    # "RELATIVE REDUCTION OF F <= FACTR*EPSMCH" (ftol), "ABNORMAL" line searches, rounding
    return "no progress"


class FlatObjective(abc.ABC):
    """f(theta) = mean loss + l2 / (2 m) * sum ||W||^2 and its gradient, for the flat
    float64 parameter vector theta = [W1.ravel(), b1.ravel(), W2.ravel(), ...].

    Subclasses say where the loss and gradient come from (``load`` theta, then
    ``loss_and_gradient``), what a callback is handed (``view``), the parameters as host
    arrays (``host_params``) and the validation figures at the loaded point.
    """

    def __init__(self, shapes: list[tuple[int, ...]], m: int, l2: float):
        self.m, self.l2 = int(m), float(l2)
        self.slices: list[slice] = []
        weights: list[np.ndarray] = []
        start = 0
        for i, shape in enumerate(shapes):
            stop = start + int(np.prod(shape))
            self.slices.append(slice(start, stop))
            weights.append(np.full(stop - start, i % 2 == 0))  # W0, b0, W1, b1, ...
            start = stop
        self.shapes = shapes
        self.size = start
        self.weight_mask = np.concatenate(weights)
        self.evaluations = 0
        self.seconds = 0.0
        self.last: tuple[np.ndarray, float, float, float] | None = None  # theta, loss, correct, f

    @abc.abstractmethod
    def load(self, theta: np.ndarray) -> None:
        """See the class docstring."""

    @abc.abstractmethod
    def loss_and_gradient(self) -> tuple[float, float, np.ndarray]:
        """See the class docstring."""

    @abc.abstractmethod
    def flat_parameters(self) -> np.ndarray:
        """See the class docstring."""

    @abc.abstractmethod
    def host_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """See the class docstring."""

    @abc.abstractmethod
    def view(self) -> Any:
        """See the class docstring."""

    @abc.abstractmethod
    def validation(self) -> tuple[float, float] | None:
        """See the class docstring."""

    def penalty(self, theta: np.ndarray) -> tuple[float, np.ndarray | None]:
        """(l2 / (2 m) * ||weights||^2, its gradient), or (0, None) without L2."""
        if self.l2 == 0.0:
            return 0.0, None
        w = np.where(self.weight_mask, theta, 0.0)
        return 0.5 * self.l2 / self.m * float(w @ w), (self.l2 / self.m) * w

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        with BlasThreads.for_evaluation():
            self.load(theta)
            loss, correct, grad = self.loss_and_gradient()
        self.evaluations += 1
        penalty, penalty_grad = self.penalty(theta)
        if penalty_grad is not None:
            grad += penalty_grad
        f = loss + penalty
        if not np.isfinite(f) or not np.all(np.isfinite(grad)):
            raise diverged(
                f"L-BFGS: the loss became {loss} (gradient finite: {bool(np.all(np.isfinite(grad)))}) "
                f"at evaluation {self.evaluations}",
                cause=cause_of(f) if not np.isfinite(f) else "",
            )
        self.last = (theta.copy(), loss, correct, f)
        self.seconds += time.perf_counter() - start
        return f, grad


class Objective(FlatObjective):
    """The objective on ``net``'s backend with one pass over X (prepared by
    ``net.prepare(X, True)``) per evaluation: logistic and softmax regression through the
    backends' single-pass loss-and-gradient ops, other models through the network's
    passes. Each call copies theta into the network's parameters (a parameter-sized
    transfer) and returns the gradient as a host float64 vector (one such transfer)."""

    def __init__(
        self, net: DeviceNetwork, X: Any, Y: Any, l2: float, validation: Any = None, weights: Any = None
    ):
        super().__init__([p.shape for pair in net.params for p in pair], X.shape[1], l2)
        self.net, self.ops, self.X, self.Y = net, net.ops, X, Y
        self.validation_data = validation  # prepared (X_val, Y_val) or None
        self.weights = weights  # (1, m) on the backend: a weighted mean loss, or None

    def flat_parameters(self) -> np.ndarray:
        """The network's parameters as one host float64 vector."""
        flat = [self.ops.to_host(p).astype(np.float64).ravel() for pair in self.net.params for p in pair]
        return np.concatenate(flat)

    def load(self, theta: np.ndarray) -> None:
        """Copy theta into the network's parameters, in place (one transfer on a GPU)."""
        device = self.ops.xp.asarray(theta)
        params = [p for pair in self.net.params for p in pair]
        for p, sl in zip(params, self.slices):
            p[...] = device[sl].reshape(p.shape)

    def host_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.net.host_params()

    def view(self) -> DeviceNetwork:
        return self.net

    def validation(self) -> tuple[float, float] | None:
        if self.validation_data is None:
            return None
        v_loss, v_correct = self.net.evaluate(*self.validation_data)
        return self.ops.scalar(v_loss), self.ops.scalar(v_correct) / self.validation_data[1].shape[1]

    def loss_and_gradient(self) -> tuple[float, float, np.ndarray]:
        """(mean loss, correct, flat float64 gradient) at the network's parameters."""
        net, ops = self.net, self.ops
        if self.weights is not None:  # the single-pass ops take no weights
            value, correct, pairs = net.loss_and_grads(self.X, self.Y, self.weights)
            grads = [g for pair in pairs for g in pair]
        elif net.is_logreg:
            (w, b) = net.params[0]
            value, correct, dw, db = ops.logreg_loss_grad(w, b, self.X, self.Y, net.loss)
            grads = [dw, db]
        elif net.is_softmax_regression:
            (W, b) = net.params[0]
            value, correct, dW, db = ops.softmax_loss_grad(W, b, self.X, self.Y)
            grads = [dW, db]
        else:
            value, correct, pairs = net.loss_and_grads(self.X, self.Y)
            grads = [g for pair in pairs for g in pair]
        xp = ops.xp
        flat = xp.concatenate([xp.ravel(g).astype(xp.float64) for g in grads])
        loss, correct = ops.scalars([value, correct])
        return float(loss), float(correct), ops.to_host(flat)


class HostObjective(FlatObjective):
    """The objective over host parameters whose loss and gradient come from
    ``evaluate(params) -> (loss, correct, [(dW, db), ...])`` - chunked and Dask training's
    sums over column chunks. Callbacks get the host parameters, as in their step loop."""

    def __init__(
        self,
        params: list[tuple[np.ndarray, np.ndarray]],
        evaluate: Callable[[Any], tuple[float, int, Any]],
        m: int,
        l2: float,
        validate: Callable[[Any], tuple[float, float]] | None = None,
    ):
        super().__init__([p.shape for pair in params for p in pair], m, l2)
        self.dtype = params[0][0].dtype
        self.params = [(W.copy(), b.copy()) for W, b in params]
        self.evaluate, self.validate = evaluate, validate

    def flat_parameters(self) -> np.ndarray:
        return np.concatenate([p.astype(np.float64).ravel() for pair in self.params for p in pair])

    def load(self, theta: np.ndarray) -> None:
        flat = [theta[sl].reshape(shape).astype(self.dtype) for sl, shape in zip(self.slices, self.shapes)]
        self.params = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    def host_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(W.copy(), b.copy()) for W, b in self.params]

    def view(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.host_params()

    def validation(self) -> tuple[float, float] | None:
        return None if self.validate is None else self.validate(self.params)

    def loss_and_gradient(self) -> tuple[float, float, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            loss, correct, grads = self.evaluate(self.params)
        flat = np.concatenate([g.astype(np.float64).ravel() for pair in grads for g in pair])
        return float(loss), float(correct), flat


def fit_local_lbfgs(model: Any, X: Any, Y: Any, opts: Any) -> Any:
    """L-BFGS on in-memory X in this process (``engine.run``'s local L-BFGS solver);
    returns an ``request.FitResult`` and leaves the model untouched."""
    from .request import FitResult, fit_history, local_data, prepared_validation, seeded_start

    _scipy_minimize()  # fail here, naming the extra
    data = local_data(model, X, Y, opts)
    X, Y = data.X, data.Y
    selection = backends.select(opts.backend)
    ops = selection.backend
    history = fit_history(ops.name, selection.reason, opts, data.per_class)
    if opts.verbose:
        print(f"nnx: L-BFGS on backend {ops.name!r} ({selection.reason}), dtype {opts.dtype}, l2={opts.l2}")
    log.info("fit_lbfgs: backend %s (%s), dtype %s, l2 %s", ops.name, selection.reason, opts.dtype, opts.l2)
    with (
        ops.memory_errors_explained(),
        np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"),
    ):
        dtype = opts.dtype
        net = DeviceNetwork(
            ops, list(model.blocks), model.loss, seeded_start(model, opts.seed, False)[1], dtype
        )
        validation = prepared_validation(net, data.validation)
        weights = None if data.weights is None else ops.prepare_labels(data.weights, dtype)
        # the single-pass ops read X in their own form; the network's passes (which take
        # weights) read it as inference does
        prepared = net.prepare(X, for_training=weights is None)
        objective = Objective(net, prepared, ops.prepare_labels(Y, dtype), opts.l2, validation, weights)
        host = minimise(objective, opts, history)
    return FitResult(host, history, ops.name, dtype, None)


def minimise(objective: FlatObjective, opts: Any, history: History) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run scipy's L-BFGS-B on ``objective`` from its current parameters, recording each
    iteration in ``history`` (loss, accuracy, objective, validation), calling
    ``opts.callback(iteration, objective.view(), history)``; the final host parameters."""
    minimize = _scipy_minimize()
    optimizer, epochs, verbose, callback = opts.optimizer, opts.epochs, opts.verbose, opts.callback
    options = optimizer.scipy_options(epochs)
    every = max(1, epochs // 20)
    start = time.perf_counter()
    elapsed: list[float] = []  # seconds since the start, at the end of each iteration
    passes: list[int] = []  # evaluations (passes over X) so far, at the end of each iteration

    def on_iteration(theta: np.ndarray) -> None:
        if objective.last is None or not np.array_equal(objective.last[0], theta):
            objective(theta)  # not the last point evaluated (rare): evaluate it
        _, loss, correct, f = objective.last
        iteration = len(history.epoch) + 1
        history.epoch.append(iteration)
        history.loss.append(loss)
        history.accuracy.append(correct / objective.m)
        history.objective.append(f)
        with BlasThreads.for_evaluation():
            val = objective.validation()
        if val is not None:
            history.val_loss.append(val[0])
            history.val_accuracy.append(val[1])
        elapsed.append(time.perf_counter() - start)
        passes.append(objective.evaluations)
        if iteration == 1:
            history.first_epoch_seconds = elapsed[-1]
        if verbose and (iteration % every == 0 or iteration == epochs):
            extra = f", val_loss {history.val_loss[-1]:.6g}" if val is not None else ""
            print(f"  iteration {iteration}: objective {f:.10g}, loss {loss:.6g}{extra}")
        if callback is not None:
            with BlasThreads.for_evaluation():
                stop = callback(iteration, objective.view(), history)
            if stop:
                raise MinimisationStopped

    theta0 = objective.flat_parameters()
    stopped = False
    try:
        with BlasThreads.for_solver():
            result = minimize(
                objective, theta0, method="L-BFGS-B", jac=True, callback=on_iteration, options=options
            )
        theta, message, status = result.x, str(result.message), int(result.status)
        f_final, g_final = float(result.fun), np.asarray(result.jac, dtype=np.float64)
    except MinimisationStopped:
        stopped = True
        theta, loss, _, f_final = objective.last
        message, status = "CALLBACK REQUESTED HALT", 1
        g_final = None
    iterations = len(history.epoch)
    reason = "callback" if stopped else stop_reason(message, iterations, epochs)
    objective.load(theta)
    host = objective.host_params()
    history.seconds = time.perf_counter() - start
    history.epochs = iterations
    history.stop_reason = reason
    history.solver = {
        "method": f"L-BFGS-B (scipy {_scipy_version()})",
        **optimizer.config(),
        "l2": opts.l2,
        "message": message,
        "status": status,
        "iterations": iterations,
        "evaluations": objective.evaluations,
        "objective": f_final,
        "gradient_max": None if g_final is None else float(np.max(np.abs(g_final), initial=0.0)),
        "evaluation_seconds": objective.seconds,
        "elapsed": elapsed,
        "passes": passes,
        "resumable": False,
    }
    if verbose:
        print(
            f"nnx: L-BFGS stopped ({reason}: {message}) after {iterations} iterations, "
            f"{objective.evaluations} passes over X, objective {f_final:.10g}"
        )
    return host
