"""One name for each option: the command line's choices and the estimator's accepted values
come from ``nnx.registry``, and a bad value gets the same message from the Python API, the
command line (one line, exit 2) and the scikit-learn estimator."""

import argparse

import numpy as np
import pytest
from nnx_testing import one_line_error, run

import nnx
from nnx import cli, io, layers, optim, registry, schedules, validation


def _options(command: str) -> dict[str, argparse.Action]:
    parser = cli.build_parser()._subparsers._group_actions[0].choices[command]
    return {o: a for a in parser._actions for o in a.option_strings}


def _cli_error(capsys, tmp_path, *args) -> str:
    """The one line ``nnx train`` prints for a bad option, run in this process."""
    code = cli.main(["train", "--out", str(tmp_path / "o"), "--epochs", "2", "--quiet", *map(str, args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0].removeprefix("nnx: error: ")


def _data(m: int = 40):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, 3))
    return X, (X[:, 0] > 0).astype(int)


# ----------------------------------------------------------- the command line
def test_cli_choices_and_defaults_come_from_the_registry():
    train = _options("train")
    # every optimizer of the registry, L-BFGS included (nnx train --optimizer lbfgs)
    assert tuple(train["--optimizer"].choices) == tuple(registry.OPTIMIZERS)
    assert train["--optimizer"].default == registry.DEFAULT_OPTIMIZER == "sgd"
    assert "lbfgs" not in registry.STEP_OPTIMIZERS and "gd" not in registry.OPTIMIZERS
    assert registry.SCHEDULE_FORMS in " ".join(train["--schedule"].help.split())
    for command in ("demo", "train"):
        assert tuple(_options(command)["--dtype"].choices) == registry.COMPUTE_DTYPES
    for command in ("demo", "train", "predict"):
        assert tuple(_options(command)["--backend"].choices) == registry.backend_choices()
    assert registry.backend_choices() == ("auto", *nnx.backends.names())


def test_every_schedule_form_parses_and_others_are_refused():
    values = {"EPOCHS": "3", "GAMMA": "0.5", "MIN_LR": "0.001", "RATE": "0.1"}
    for spec in registry.SCHEDULES.values():
        full = ":".join([spec.name, *(values[metavar] for metavar, _, _ in spec.args)])
        schedule = registry.make_schedule(full, 50)
        assert isinstance(schedule, getattr(schedules, spec.attribute))
        assert spec.form().startswith(spec.name)
    assert registry.make_schedule("cosine", 50) == schedules.Cosine(total=50)
    assert registry.make_schedule("none", 50) is None and registry.make_schedule(None, 50) is None
    for bad in ("linear", "step", "step:2.5", "exponential:a", "cosine:1:2"):
        with pytest.raises(ValueError, match=r"schedule must be none, cosine\[:MIN_LR\]"):
            registry.make_schedule(bad, 50)


def test_the_cli_no_longer_offers_gd_but_reads_old_run_configs_that_say_it(tmp_path):
    assert "invalid choice: 'gd'" in one_line_error(run("train", "--optimizer", "gd", "--out", tmp_path))
    from nnx import runner

    assert runner.TrainConfig(optimizer="gd").optimizer == "sgd"
    assert runner.TRAINING_DEFAULTS["optimizer"] == "sgd"
    built = runner.build_optimizer(runner.TrainConfig(optimizer="gd", lr=0.1))
    assert built == nnx.SGD(lr=0.1) and built.plain


# --------------------------------------------------------------- the estimator
def test_the_estimator_accepts_exactly_the_registrys_optimizers_and_activations():
    sk = pytest.importorskip("nnx.sklearn")
    X, y = _data()
    # every optimizer of the registry, L-BFGS included (scikit-learn's solver="lbfgs")
    assert sk.OPTIMIZERS == tuple(registry.OPTIMIZERS)
    assert sk.NNXClassifier().optimizer == registry.DEFAULT_OPTIMIZER
    for name in registry.STEP_OPTIMIZERS:
        clf = sk.NNXClassifier(hidden_layer_sizes=(), optimizer=name, epochs=2, backend="numpy")
        assert clf.fit(X, y).model_.history.optimizer["name"] == registry.OPTIMIZERS[name].attribute
    clf = sk.NNXClassifier(hidden_layer_sizes=(), optimizer="lbfgs", epochs=2, backend="numpy")
    assert clf.fit(X, y).model_.history.objective  # L-BFGS records its objective
    for name in ("gd", "SGD", None):
        with pytest.raises(
            ValueError, match="optimizer must be one of sgd, rmsprop, adam, adamw, lbfgs, got"
        ):
            sk.NNXClassifier(optimizer=name, epochs=1, backend="numpy").fit(X, y)
    for name in (*registry.HIDDEN_ACTIVATIONS, *registry.ACTIVATION_ALIASES):
        sk.NNXClassifier(hidden_layer_sizes=(2,), activation=name, epochs=1, backend="numpy").fit(X, y)
    with pytest.raises(ValueError, match="activation must be one of sigmoid, relu, tanh, logistic"):
        sk.NNXClassifier(activation="softplus", epochs=1).fit(X, y)


def test_the_estimators_momentum_is_nnx_sgds():
    sk = pytest.importorskip("nnx.sklearn")
    X, y = _data()
    kw = dict(hidden_layer_sizes=(4,), epochs=20, lr=0.05, backend="numpy", dtype="float64", random_state=3)
    clf = sk.NNXClassifier(momentum=0.9, nesterovs_momentum=True, **kw).fit(X, y)
    assert clf.model_.history.optimizer == nnx.SGD(lr=0.05, momentum=0.9, nesterov=True).config()
    model = sk.build_network(3, 2, (4,), "relu", seed=3)
    sgd = nnx.SGD(lr=0.05, momentum=0.9, nesterov=True)
    model.fit(X.T, y, epochs=20, optimizer=sgd, seed=3, backend="numpy", dtype="float64")
    for mine, theirs in zip(clf.model_.parameters(), model.parameters()):
        for a, b in zip(mine, theirs):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="momentum applies to optimizer sgd or rmsprop, not adam"):
        sk.NNXClassifier(optimizer="adam", momentum=0.5, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="nesterovs_momentum applies to optimizer sgd, not rmsprop"):
        sk.NNXClassifier(optimizer="rmsprop", nesterovs_momentum=True, epochs=1).fit(X, y)


# ------------------------------------------------- one value, one message, everywhere
def _api_message(make) -> str:
    with pytest.raises((TypeError, ValueError)) as info:
        make()
    return str(info.value)


def _estimator_message(**params) -> str:
    sk = pytest.importorskip("nnx.sklearn")
    X, y = _data()
    with pytest.raises((TypeError, ValueError)) as info:
        sk.NNXClassifier(hidden_layer_sizes=(), epochs=1, backend="numpy", **params).fit(X, y)
    return str(info.value)


@pytest.mark.parametrize(
    "name, value, api, cli_args",
    [
        ("momentum", 1.0, lambda: nnx.SGD(momentum=1.0), ["--momentum", 1.0]),
        (
            "momentum",
            -0.5,
            lambda: nnx.RMSprop(momentum=-0.5),
            ["--momentum", -0.5, "--optimizer", "rmsprop"],
        ),
        ("lr", 0.0, lambda: nnx.Adam(lr=0.0), ["--lr", 0.0]),
        ("l2", -1.0, lambda: nnx.MLP([3, 2, 1]).fit(np.ones((3, 4)), [0, 1, 0, 1], l2=-1.0), ["--l2", -1.0]),
    ],
)
def test_a_bad_value_gets_one_message_from_api_cli_and_estimator(
    capsys, tmp_path, name, value, api, cli_args
):
    message = _api_message(api)
    assert message == f"{name} must {registry.RANGES[name].describe()}, got {value}"
    assert _cli_error(capsys, tmp_path, *cli_args) == f"--{message}"
    optimizer = {"optimizer": "rmsprop"} if "rmsprop" in cli_args else {}
    assert _estimator_message(**{name: value}, **optimizer) == message


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("adam", {"eps": 0}, "eps must be a finite number > 0, got 0.0"),
        ("rmsprop", {"eps": 0}, "eps must be a finite number > 0, got 0.0"),
        ("adamw", {"betas": (1, 0.9)}, "betas[0] must lie in [0, 1), got 1.0"),
        ("adam", {"betas": (0.9, 1.0)}, "betas[1] must lie in [0, 1), got 1.0"),
        ("sgd", {"momentum": 1.0}, "momentum must lie in [0, 1), got 1.0"),
        ("rmsprop", {"alpha": 1.0}, "alpha must lie in [0, 1), got 1.0"),
        ("sgd", {"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ],
)
def test_the_registry_and_the_classes_refuse_alike(name, options, message):
    cls = getattr(nnx, registry.OPTIMIZERS[name].attribute)
    assert _api_message(lambda: cls(**options)) == message
    assert _api_message(lambda: registry.make_optimizer(name, **options)) == message


def test_dropout_one_is_refused_alike_by_the_layer_the_builder_and_the_cli(capsys, tmp_path):
    rule = registry.RANGES["dropout"].describe() + ", got 1.0"
    assert rule == "lie in [0, 1), got 1.0"
    assert _api_message(lambda: nnx.Dropout(1.0)) == f"Dropout rate must {rule}"
    assert _api_message(lambda: nnx.MLP([3, 4, 1], dropout=1.0)) == f"Dropout rate must {rule}"
    assert _cli_error(capsys, tmp_path, "--model", "mlp", "--dropout", 1.0) == f"--dropout must {rule}"


def test_a_bad_value_is_one_line_exit_2_from_the_installed_command(tmp_path):
    line = one_line_error(run("train", "--momentum", "1", "--out", tmp_path / "o", "--quiet"))
    assert line == f"nnx: error: --{_api_message(lambda: nnx.SGD(momentum=1))}"


# ------------------------------------------------------------- one copy of each list
def test_every_list_lives_in_the_registry():
    assert validation.INPUT_DTYPES is registry.INPUT_DTYPES
    assert validation.COMPUTE_DTYPES is registry.COMPUTE_DTYPES
    assert layers.LOSSES is registry.LOSSES
    assert set(layers.ACTIVATION_BY_KIND) == set(registry.HIDDEN_ACTIVATIONS)
    assert io.STATE_ARRAY_NAMES == (*registry.SLOT_NAMES, "best")
    for name, spec in registry.OPTIMIZERS.items():
        if spec.solver != "step":
            continue
        cls = spec.cls()
        assert cls.name == spec.attribute and getattr(nnx, spec.attribute) is cls
        assert set(spec.hyper) == set(cls().config()) - {"name"}, name
    for everything in (
        nnx.SGD(momentum=0.5),
        nnx.RMSprop(centered=True, momentum=0.5),
        nnx.Adam(),
        nnx.AdamW(),
    ):
        spec = registry.optimizer_by_class_name(everything.name)
        assert everything.slots == spec.slots
    for dead in ("OPTIMIZER_NAMES", "SLOT_NAMES", "_BY_NAME"):
        assert not hasattr(optim, dead)
    assert not hasattr(optim.Optimizer, "stepwise") and not hasattr(schedules, "schedule_from_config")


def test_lbfgs_is_a_registered_solver_imported_only_when_asked_for():
    spec = registry.OPTIMIZERS["lbfgs"]
    assert spec.solver == "lbfgs" and spec.cls() is nnx.LBFGS
    pytest.importorskip("scipy")
    assert isinstance(registry.make_optimizer("lbfgs", tol=1e-5), nnx.LBFGS)
