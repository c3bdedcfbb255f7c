"""Optimizers, L2 and learning-rate schedules, on every backend.

Each is checked step for step against the independent float64 reference of torch.optim's
update equations in tests/reference.py (always), against PyTorch itself where it is
installed, and across backends; float64 to rtol 1e-9 on NumPy and 1e-7 elsewhere.
"""

import math

import numpy as np
import pytest
from nnx_testing import tolerance
from reference import ReferenceOptimizer, mlp_train

import nnx
from nnx.optim import TrainingState
from nnx.schedules import Cosine, Exponential, InverseTime, Step

CASES = {
    "sgd": (lambda: nnx.SGD(lr=0.1), ("sgd", {})),
    "momentum": (
        lambda: nnx.SGD(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
        ("sgd", {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ),
    "nesterov": (
        lambda: nnx.SGD(lr=0.05, momentum=0.8, nesterov=True),
        ("sgd", {"momentum": 0.8, "nesterov": True}),
    ),
    "rmsprop": (lambda: nnx.RMSprop(lr=0.01), ("rmsprop", {})),
    "rmsprop-centered": (
        lambda: nnx.RMSprop(lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.02, momentum=0.5, centered=True),
        ("rmsprop", {"alpha": 0.9, "eps": 1e-6, "weight_decay": 0.02, "momentum": 0.5, "centered": True}),
    ),
    "adam": (lambda: nnx.Adam(lr=0.01), ("adam", {})),
    "adam-l2": (
        lambda: nnx.Adam(lr=0.02, betas=(0.3, 0.4), eps=1e-6, weight_decay=0.05),  # lerp's other branch
        ("adam", {"betas": (0.3, 0.4), "eps": 1e-6, "weight_decay": 0.05}),
    ),
    "adamw": (lambda: nnx.AdamW(lr=0.01, weight_decay=0.1), ("adamw", {"weight_decay": 0.1})),
}


def _rtol(backend):
    return 1e-9 if backend == "numpy" else 1e-7


def _data(seed=0, n=6, m=40):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    Y = (X[0] + 0.5 * X[1] - X[2] * X[3] + 0.3 * rng.standard_normal(m) > 0).astype(float).reshape(1, -1)
    return np.asfortranarray(X), Y


def _initial(sizes, seed=1):
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((sizes[i + 1], sizes[i])) * 0.5, rng.standard_normal((sizes[i + 1], 1)) * 0.1)
        for i in range(len(sizes) - 1)
    ]


def _mlp(sizes, dropout=0.0):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nnx.Linear(sizes[i], sizes[i + 1], seed=0))
        last = i == len(sizes) - 2
        layers.append(nnx.Sigmoid() if last else nnx.ReLU())
        if dropout and not last:
            layers.append(nnx.Dropout(dropout))
    return nnx.Sequential(*layers)


def _close(got, want, rtol):
    for (W, b), (We, be) in zip(got, want):
        np.testing.assert_allclose(W, We, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(b, be, rtol=rtol, atol=1e-12)


# ----------------------------------------------------------------- the ops themselves
@pytest.mark.parametrize("case", sorted(CASES))
def test_optimizer_step_ops_match_the_reference_for_100_steps(backend, case):
    make, (kind, hyper) = CASES[case]
    optimizer = make()
    ops = nnx.get_backend(backend)
    rng = np.random.default_rng(2)
    shapes = [(5, 7), (5, 1)]
    start = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(100)]
    decays = [0.03, 0.0]  # an L2 coefficient on the first array only
    params = [ops.asarray(p, "float64") for p in start]
    state = TrainingState(
        optimizer.config(), slots={s: [ops.zeros(p.shape, "float64") for p in start] for s in optimizer.slots}
    )
    ref = ReferenceOptimizer(kind, **hyper)
    want = [p.copy() for p in start]
    for step, g in enumerate(grads, 1):
        state.step = step
        optimizer.update(ops, params, [ops.asarray(x, "float64") for x in g], state, optimizer.lr, decays)
        want = ref.step(want, g, optimizer.lr, decays)
    for got, expected in zip(params, want):
        np.testing.assert_allclose(ops.to_host(got), expected, rtol=_rtol(backend), atol=1e-13)


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_steps_match_numpy_on_every_backend(other_backend, case):
    make, _ = CASES[case]
    rng = np.random.default_rng(3)
    start = rng.standard_normal((4, 9)).astype(np.float32)
    grads = [rng.standard_normal((4, 9)).astype(np.float32) for _ in range(30)]
    out = []
    for name in ("numpy", other_backend):
        ops = nnx.get_backend(name)
        optimizer = make()
        p = ops.asarray(start, "float32")
        state = TrainingState(
            optimizer.config(), slots={s: [ops.zeros(p.shape, "float32")] for s in optimizer.slots}
        )
        for step, g in enumerate(grads, 1):
            state.step = step
            optimizer.update(ops, [p], [ops.asarray(g, "float32")], state, optimizer.lr, [0.01])
        out.append(ops.to_host(p))
    assert out[1].dtype == np.float32
    np.testing.assert_allclose(out[1], out[0], **tolerance("float32"))


# ------------------------------------------------------------- whole fits, step by step
@pytest.mark.parametrize("case", sorted(CASES))
def test_100_full_batch_epochs_match_the_reference(backend, case):
    make, (kind, hyper) = CASES[case]
    X, Y = _data()
    sizes = [6, 5, 1]
    params = _initial(sizes)
    model = _mlp(sizes)
    model.set_parameters(params)
    history = model.fit(X, Y, epochs=100, optimizer=make(), backend=backend, dtype="float64")
    want, losses = mlp_train(X, Y, params, ["relu"], 100, ReferenceOptimizer(kind, **hyper), make().lr)
    _close(model.parameters(), want, _rtol(backend))
    np.testing.assert_allclose(history.loss, losses, rtol=1e-9)


@pytest.mark.parametrize("case", ["momentum", "rmsprop-centered", "adam", "adamw"])
def test_minibatches_l2_and_a_schedule_match_the_reference(backend, case):
    make, (kind, hyper) = CASES[case]
    X, Y = _data(seed=4, m=50)
    sizes = [6, 4, 3, 1]
    params = _initial(sizes, seed=5)
    model = _mlp(sizes)
    model.set_parameters(params)
    schedule = Step(7, gamma=0.5)
    optimizer = make()
    history = model.fit(
        X,
        Y,
        epochs=30,
        optimizer=optimizer,
        l2=0.3,
        schedule=schedule,
        batch_size=16,
        seed=11,
        backend=backend,
        dtype="float64",
    )
    want, losses = mlp_train(
        X,
        Y,
        params,
        ["relu", "relu"],
        30,
        ReferenceOptimizer(kind, **hyper),
        optimizer.lr,
        l2=0.3,
        seed=11,
        batch_size=16,
        lr_at=lambda e: schedule.lr(optimizer.lr, e),
    )
    _close(model.parameters(), want, _rtol(backend))
    np.testing.assert_allclose(history.loss, losses, rtol=1e-9)
    assert history.l2 == 0.3 and len(history.l2_penalty) == 30 and all(p > 0 for p in history.l2_penalty)
    assert history.epoch_lr[:8] == [optimizer.lr] * 7 + [optimizer.lr * 0.5]
    assert history.optimizer == optimizer.config() and history.schedule == schedule.config()


def test_logistic_regression_with_adam_takes_the_generic_path_and_matches(backend):
    X, Y = _data(seed=6, n=5, m=60)
    model = nnx.LogisticRegression(5)
    model.fit(X, Y, epochs=100, optimizer=nnx.Adam(lr=0.05), backend=backend, dtype="float64")
    params = [(np.zeros((1, 5)), np.zeros((1, 1)))]
    ref = ReferenceOptimizer("adam")
    W, b = params[0]
    for _ in range(100):
        A = 1 / (1 + np.exp(-(W @ X + b)))
        dZ = (A - Y) / X.shape[1]
        W, b = ref.step([W, b], [dZ @ X.T, dZ.sum(axis=1, keepdims=True)], 0.05)
    _close(model.parameters(), [(W, b)], _rtol(backend))


def test_plain_lr_keeps_the_single_pass_epoch_and_equals_sgd(backend):
    X, Y = _data(seed=7, n=5, m=60)
    a, b = nnx.LogisticRegression(5), nnx.LogisticRegression(5)
    a.fit(X, Y, epochs=50, lr=0.3, backend=backend, dtype="float64")
    b.fit(X, Y, epochs=50, optimizer=nnx.SGD(lr=0.3), backend=backend, dtype="float64")
    _close(a.parameters(), b.parameters(), 0)
    assert a.history.optimizer == {"name": "SGD", **nnx.SGD(lr=0.3)._hyper()}


# ------------------------------------------------------------------------- L2
def test_l2_is_the_tutorials_penalty_and_gradient(backend):
    X, Y = _data(seed=8)
    sizes = [6, 5, 1]
    params = _initial(sizes, seed=9)
    model = _mlp(sizes)
    model.set_parameters(params)
    lam, m = 0.7, X.shape[1]
    h = model.fit(X, Y, epochs=1, lr=0.2, l2=lam, backend=backend, dtype="float64")
    penalty = lam / (2 * m) * sum((W**2).sum() for W, _ in params)
    assert h.l2_penalty[0] == pytest.approx(penalty, rel=1e-12)
    data_loss = _mlp(sizes)
    data_loss.set_parameters(params)
    assert h.loss[0] == pytest.approx(data_loss.evaluate(X, Y, dtype="float64")["loss"] + penalty, rel=1e-12)
    _, grads = data_loss.gradients(X, Y)
    want = [(W - 0.2 * (dW + lam / m * W), b - 0.2 * db) for (W, b), (dW, db) in zip(params, grads)]
    _close(model.parameters(), want, 1e-12)


def test_l2_matches_pytorch_sgd_weight_decay_on_the_weights(backend):
    torch = pytest.importorskip("torch", reason="the PyTorch comparison needs torch (optional)")
    X, Y = _data(seed=10)
    sizes = [6, 5, 1]
    params = _initial(sizes, seed=11)
    lam, m, lr = 0.5, X.shape[1], 0.3
    Ws = [torch.tensor(W, requires_grad=True) for W, _ in params]
    bs = [torch.tensor(b[:, 0], requires_grad=True) for _, b in params]
    opt = torch.optim.SGD(
        [{"params": Ws, "weight_decay": lam / m}, {"params": bs, "weight_decay": 0.0}], lr=lr
    )
    _torch_fit(torch, opt, Ws, bs, X, Y, 100)
    model = _mlp(sizes)
    model.set_parameters(params)
    model.fit(X, Y, epochs=100, lr=lr, l2=lam, backend=backend, dtype="float64")
    _close(model.parameters(), _torch_params(Ws, bs), _rtol(backend))


def _torch_fit(torch, opt, Ws, bs, X, Y, epochs, scheduler=None):
    Xt, Yt = torch.tensor(X.T.copy()), torch.tensor(Y[0])
    for _ in range(epochs):
        opt.zero_grad()
        h = Xt
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = h @ W.T + b
            if i < len(Ws) - 1:
                h = torch.relu(h)
        torch.nn.functional.binary_cross_entropy_with_logits(h[:, 0], Yt).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def _torch_params(Ws, bs):
    return [(W.detach().numpy(), b.detach().numpy().reshape(-1, 1)) for W, b in zip(Ws, bs)]


TORCH_OPTIMIZERS = {
    "momentum": lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "nesterov": lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
    "rmsprop": lambda t, ps: t.optim.RMSprop(ps, lr=0.01),
    "rmsprop-centered": lambda t, ps: t.optim.RMSprop(
        ps, lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.02, momentum=0.5, centered=True
    ),
    "adam": lambda t, ps: t.optim.Adam(ps, lr=0.01),
    "adam-l2": lambda t, ps: t.optim.Adam(ps, lr=0.02, betas=(0.3, 0.4), eps=1e-6, weight_decay=0.05),
    "adamw": lambda t, ps: t.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("case", sorted(TORCH_OPTIMIZERS))
def test_100_steps_match_torch_optim(backend, case):
    torch = pytest.importorskip("torch", reason="the PyTorch comparison needs torch (optional)")
    X, Y = _data(seed=12)
    sizes = [6, 5, 1]
    params = _initial(sizes, seed=13)
    Ws = [torch.tensor(W, requires_grad=True) for W, _ in params]
    bs = [torch.tensor(b[:, 0], requires_grad=True) for _, b in params]
    _torch_fit(torch, TORCH_OPTIMIZERS[case](torch, [*Ws, *bs]), Ws, bs, X, Y, 100)
    model = _mlp(sizes)
    model.set_parameters(params)
    model.fit(X, Y, epochs=100, optimizer=CASES[case][0](), backend=backend, dtype="float64")
    _close(model.parameters(), _torch_params(Ws, bs), _rtol(backend))


def test_adam_with_l2_and_a_cosine_schedule_matches_torch(backend):
    torch = pytest.importorskip("torch", reason="the PyTorch comparison needs torch (optional)")
    X, Y = _data(seed=14)
    sizes = [6, 5, 1]
    params = _initial(sizes, seed=15)
    lam, m = 0.4, X.shape[1]
    Ws = [torch.tensor(W, requires_grad=True) for W, _ in params]
    bs = [torch.tensor(b[:, 0], requires_grad=True) for _, b in params]
    opt = torch.optim.Adam([{"params": Ws, "weight_decay": lam / m}, {"params": bs}], lr=0.02)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=0.001)
    _torch_fit(torch, opt, Ws, bs, X, Y, 100, scheduler)
    model = _mlp(sizes)
    model.set_parameters(params)
    model.fit(
        X,
        Y,
        epochs=100,
        optimizer=nnx.Adam(lr=0.02),
        l2=lam,
        schedule=Cosine(100, min_lr=0.001),
        backend=backend,
        dtype="float64",
    )
    _close(model.parameters(), _torch_params(Ws, bs), _rtol(backend))


# ------------------------------------------------------------------ schedules
SCHEDULES = [
    (Step(7, gamma=0.5), lambda lr, e: lr * 0.5 ** (e // 7)),
    (Exponential(0.97), lambda lr, e: lr * 0.97**e),
    (InverseTime(0.3), lambda lr, e: lr / (1 + 0.3 * e)),
    (InverseTime(1.0, interval=10), lambda lr, e: lr / (1 + math.floor(e / 10))),
    (Cosine(50, min_lr=0.01), lambda lr, e: 0.01 + (lr - 0.01) * (1 + math.cos(math.pi * e / 50)) / 2),
]


@pytest.mark.parametrize("schedule, formula", SCHEDULES, ids=lambda s: repr(s) if not callable(s) else "")
def test_schedules_are_pure_functions_of_the_epoch(schedule, formula):
    for e in range(50):
        assert schedule.lr(0.3, e) == pytest.approx(formula(0.3, e), rel=1e-13)
    assert schedule.lr(0.3, 20) == schedule.lr(0.3, 20)  # no state
    if isinstance(schedule, Cosine):
        assert schedule.lr(0.3, 50) == schedule.lr(0.3, 500) == 0.01


TORCH_SCHEDULERS = [
    (Step(7, gamma=0.5), lambda t, o: t.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    (Exponential(0.97), lambda t, o: t.optim.lr_scheduler.ExponentialLR(o, gamma=0.97)),
    (InverseTime(0.3), lambda t, o: t.optim.lr_scheduler.LambdaLR(o, lambda e: 1 / (1 + 0.3 * e))),
    (Cosine(50, min_lr=0.01), lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50, eta_min=0.01)),
]


@pytest.mark.parametrize("schedule, make", TORCH_SCHEDULERS, ids=lambda s: repr(s) if not callable(s) else "")
def test_schedules_match_torch_lr_schedulers(schedule, make):
    torch = pytest.importorskip("torch", reason="the PyTorch comparison needs torch (optional)")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    scheduler = make(torch, opt)
    for e in range(50):
        assert schedule.lr(0.3, e) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        scheduler.step()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Step(0), "step_size must be a positive integer"),
        (lambda: Step(3, gamma=-1), "gamma must be a finite number > 0"),
        (lambda: Exponential(float("nan")), "gamma"),
        (lambda: InverseTime(-0.1), "decay_rate"),
        (lambda: Cosine(10.5), "total must be a positive integer"),
        (lambda: Cosine(10, min_lr="0"), "min_lr must be a number"),
    ],
)
def test_bad_schedule_arguments_are_named(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# ------------------------------------------------------------------ warm start
@pytest.mark.parametrize("batch_size", [None, 16])
def test_warm_start_continues_exactly(backend, batch_size):
    X, Y = _data(seed=16, m=48)
    params = _initial([6, 5, 1], seed=17)
    whole, parts = _mlp([6, 5, 1]), _mlp([6, 5, 1])
    for model in (whole, parts):
        model.set_parameters(params)
    kwargs = dict(schedule=Exponential(0.95), backend=backend, dtype="float64", batch_size=batch_size)
    rng = np.random.default_rng(3)
    whole.fit(X, Y, epochs=40, optimizer=nnx.Adam(lr=0.01), seed=np.random.default_rng(3), **kwargs)
    parts.fit(X, Y, epochs=25, optimizer=nnx.Adam(lr=0.01), seed=rng, **kwargs)
    assert parts.training_state.step == 25 * (1 if batch_size is None else 3)
    parts.fit(X, Y, epochs=15, optimizer=nnx.Adam(lr=0.01), seed=rng, warm_start=True, **kwargs)
    _close(parts.parameters(), whole.parameters(), 0)
    assert parts.training_state.epoch == 40


def test_without_warm_start_the_optimizer_starts_afresh():
    X, Y = _data(seed=18)
    params = _initial([6, 5, 1], seed=19)
    a, b = _mlp([6, 5, 1]), _mlp([6, 5, 1])
    a.set_parameters(params)
    a.fit(X, Y, epochs=10, optimizer=nnx.Adam(lr=0.01), backend="numpy", dtype="float64")
    b.set_parameters(a.parameters())
    a.fit(X, Y, epochs=10, optimizer=nnx.Adam(lr=0.01), backend="numpy", dtype="float64")
    b.fit(X, Y, epochs=10, optimizer=nnx.Adam(lr=0.01), backend="numpy", dtype="float64")
    _close(a.parameters(), b.parameters(), 0)
    assert a.training_state.step == 10


def test_warm_start_refuses_another_kind_of_optimizer():
    X, Y = _data(seed=20)
    model = _mlp([6, 5, 1])
    model.fit(X, Y, epochs=2, optimizer=nnx.Adam(), backend="numpy")
    with pytest.raises(ValueError, match="warm_start=True continues the state of the previous fit's Adam"):
        model.fit(X, Y, epochs=2, optimizer=nnx.RMSprop(), warm_start=True, backend="numpy")
    model.fit(X, Y, epochs=2, optimizer=nnx.AdamW(), backend="numpy")  # a fresh start is fine


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"optimizer": "adam"}, TypeError, "optimizer must be an nnx optimizer"),
        ({"optimizer": nnx.Adam(), "lr": 0.1}, ValueError, "either as lr= or in the optimizer"),
        ({"lr": -1.0}, ValueError, "lr must be a positive finite number"),
        ({"l2": -0.1}, ValueError, "l2 must be a finite number >= 0"),
        ({"l2": "0.1"}, TypeError, "l2 must be a number"),
        ({"schedule": "cosine"}, TypeError, "schedule must be an nnx.schedules object"),
        ({"early_stopping": nnx.EarlyStopping()}, ValueError, "pass validation_data"),
        ({"early_stopping": 5}, TypeError, "early_stopping must be an nnx.EarlyStopping"),
        ({"warm_start": "yes"}, TypeError, "warm_start must be True or False"),
    ],
)
def test_bad_fit_arguments_are_named(kwargs, error, message):
    X, Y = _data()
    with pytest.raises(error, match=message):
        _mlp([6, 5, 1]).fit(X, Y, epochs=1, backend="numpy", **kwargs)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nnx.SGD(lr=0), "lr must be a finite number > 0"),
        (lambda: nnx.SGD(momentum=-0.1), "momentum must lie in"),
        (lambda: nnx.SGD(nesterov=True), "nesterov=True needs momentum > 0"),
        (lambda: nnx.SGD(nesterov=1), "nesterov must be True or False"),
        (lambda: nnx.RMSprop(alpha=1.0), "alpha must lie in"),
        (lambda: nnx.Adam(betas=(0.9,)), "betas must be a pair"),
        (lambda: nnx.Adam(betas=(0.9, 1.5)), r"betas\[1\] must lie in"),
        (lambda: nnx.Adam(eps=float("inf")), "eps must be a finite number > 0"),
        (lambda: nnx.AdamW(weight_decay=-1), "weight_decay must be a finite number >= 0"),
        (lambda: nnx.Adam(lr="fast"), "lr must be a number"),
    ],
)
def test_bad_optimizer_arguments_are_named(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_optimizers_describe_themselves():
    assert nnx.optim.optimizer_from_config(nnx.AdamW(lr=0.1).config()) == nnx.AdamW(lr=0.1)
    assert repr(nnx.SGD(lr=0.1, momentum=0.9)).startswith("SGD(lr=0.1, momentum=0.9")
    assert nnx.SGD().slots == () and nnx.SGD(momentum=0.5).slots == ("momentum_buffer",)
    assert nnx.RMSprop(centered=True, momentum=0.1).slots == ("square_avg", "grad_avg", "momentum_buffer")
    assert nnx.Adam().slots == ("exp_avg", "exp_avg_sq")


@pytest.mark.parametrize("case", sorted(CASES))
def test_steps_propagate_nan_and_inf_as_numpy(backend, case):
    """A NaN or inf gradient (or 0/0 in RMSprop with eps=0) gives what NumPy gives, never
    an exception."""
    make, _ = CASES[case]
    results = []
    for name in ("numpy", backend):
        ops = nnx.get_backend(name)
        optimizer = make()
        if isinstance(optimizer, nnx.RMSprop):
            optimizer.eps = 0.0
        p = ops.asarray(np.array([[1.0, -2.0, 0.5, 3.0]]), "float64")
        g = ops.asarray(np.array([[np.nan, np.inf, 0.0, -np.inf]]), "float64")
        state = TrainingState(
            optimizer.config(), slots={s: [ops.zeros((1, 4), "float64")] for s in optimizer.slots}
        )
        with np.errstate(all="ignore"):
            for step in (1, 2):
                state.step = step
                optimizer.update(ops, [p], [g], state, optimizer.lr, [0.0])
        results.append(ops.to_host(p))
    np.testing.assert_array_equal(results[1], results[0])
    assert np.isnan(results[0][0, 0])


def test_the_tutorials_momentum_is_sgd_with_a_scaled_rate(backend):
    """v = beta v + (1 - beta) dW, W -= alpha v (the tutorials) is SGD(alpha (1 - beta), beta)."""
    X, Y = _data(seed=21)
    params = _initial([6, 5, 1], seed=22)
    model = _mlp([6, 5, 1])
    model.set_parameters(params)
    alpha, beta = 0.3, 0.9
    model.fit(
        X,
        Y,
        epochs=50,
        optimizer=nnx.SGD(lr=alpha * (1 - beta), momentum=beta),
        backend=backend,
        dtype="float64",
    )

    class Tutorial:  # the exponentially weighted average, written as the tutorials do
        def __init__(self):
            self.v = None

        def step(self, ps, gs, lr, decays=None):
            self.v = [0 * g for g in gs] if self.v is None else self.v
            self.v = [beta * v + (1 - beta) * g for v, g in zip(self.v, gs)]
            return [p - alpha * v for p, v in zip(ps, self.v)]

    want, _ = mlp_train(X, Y, params, ["relu"], 50, Tutorial(), alpha)
    _close(model.parameters(), want, 1e-9 if backend == "numpy" else 1e-7)
