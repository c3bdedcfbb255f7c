"""Optimizer state in checkpoints and the training options of ``nnx train``.

An interrupted and resumed run must end bit-identical to an uninterrupted one with every
option on (Adam, L2, dropout, a schedule, early stopping, class weights, mini-batches);
a resume with different options is refused; the model-file loader reads the state
arrays as strictly as the parameters.
"""

import json
import os
import signal

import numpy as np
import pytest
from model_file_craft import members_of, meta_of, npy, replace, with_meta, zip_bytes
from nnx_testing import one_line_error, run

import nnx
import nnx.app.checkpoint
from nnx import runner
from nnx.data.builtin import train_test_split
from nnx.errors import UsageError


@pytest.fixture
def npz_data(tmp_path):
    """This module's own data (overrides conftest's): 90 examples of 6 features, about 1
    positive in 4, enough for mini-batches, a validation split and early stopping."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 90))
    Y = (X[0] + X[1] * X[2] > 0.8).astype(np.float64).reshape(1, -1)  # about 1 positive in 4
    path = tmp_path / "d.npz"
    np.savez(path, X=X, Y=Y)
    return path


def _cfg(data, out, **changes):
    options = dict(
        data=str(data),
        model="mlp",
        hidden=8,
        epochs=40,
        lr=0.01,
        batch_size=16,
        seed=3,
        dtype="float64",
        backend="numpy",
        out=str(out),
        checkpoint_every=7,
        optimizer="adam",
        l2=0.05,
        dropout=0.25,
        schedule="cosine",
        early_stopping=1000,
        class_weight="balanced",
    )
    options.update(changes)
    return runner.TrainConfig(**options)


def _quiet(*args):
    pass


def _interrupt_after_first_checkpoint(monkeypatch):
    """Send this process SIGINT right after the run's first checkpoint, as Ctrl-C would."""
    original = nnx.app.checkpoint.write_model_file
    calls = []

    def write(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(nnx.app.checkpoint, "write_model_file", write)


def _same_models(a, b):
    for (W0, b0), (W1, b1) in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"optimizer": "sgd", "momentum": 0.9, "schedule": "step:10:0.5", "class_weight": "0:1,1:2.5"},
        {"optimizer": "rmsprop", "schedule": "inverse-time:0.1", "dropout": 0.0, "batch_size": None},
    ],
)
def test_interrupted_and_resumed_run_ends_bit_identical(tmp_path, npz_data, monkeypatch, changes):
    full = runner.train(_cfg(npz_data, tmp_path / "full", **changes), verbose=False, say=_quiet)
    assert full.epochs_done == 40 and not full.interrupted
    cut_cfg = _cfg(npz_data, tmp_path / "cut", **changes)
    with monkeypatch.context() as patched:
        _interrupt_after_first_checkpoint(patched)
        cut = runner.train(cut_cfg, verbose=False, say=_quiet)
    assert cut.interrupted and cut.epochs_done == 8  # the checkpoint at 7, then the stop at 8
    _, state, arrays = nnx.model.load_checkpoint(tmp_path / "cut" / "checkpoint.npz")
    assert state["training"]["step"] == 8 * (1 if cut_cfg.batch_size is None else 5)  # 72 examples in 16s
    assert state["training"]["epoch"] == 8 and set(arrays) == {*state["training"]["slots"], "best"}
    resumed = runner.train(cut_cfg, resume=True, verbose=False, say=_quiet)
    assert resumed.epochs_done == 40
    _same_models(nnx.load(tmp_path / "full" / "model.npz"), nnx.load(tmp_path / "cut" / "model.npz"))
    a = json.loads((tmp_path / "full" / "history.json").read_text())
    b = json.loads((tmp_path / "cut" / "history.json").read_text())
    for key in (
        "epoch",
        "loss",
        "val_loss",
        "epoch_lr",
        "l2_penalty",
        "optimizer",
        "schedule",
        "class_weight",
    ):
        assert a[key] == b[key], key
    assert a["optimizer"]["name"] == {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}[cut_cfg.optimizer]


@pytest.mark.parametrize(
    "changes, name",
    [
        ({"optimizer": "adamw"}, "optimizer"),
        ({"l2": 0.1}, "l2"),
        ({"dropout": 0.5}, "dropout"),
        ({"schedule": "exponential:0.9"}, "schedule"),
        ({"early_stopping": 5}, "early_stopping"),
        ({"class_weight": None}, "class_weight"),
    ],
)
def test_resume_with_different_training_options_is_refused(tmp_path, npz_data, changes, name):
    runner.train(_cfg(npz_data, tmp_path / "r", epochs=10), verbose=False, say=_quiet)
    with pytest.raises(UsageError, match=f"hyper-parameters differ from the checkpoint \\({name}: "):
        runner.train(
            _cfg(npz_data, tmp_path / "r", epochs=10, **changes), resume=True, verbose=False, say=_quiet
        )


def test_an_early_stopped_run_is_finished_on_resume(tmp_path, npz_data):
    cfg = _cfg(npz_data, tmp_path / "es", epochs=300, early_stopping=3, lr=0.05, val_split=0.5)
    said = []
    first = runner.train(cfg, verbose=False, say=said.append)
    assert first.epochs_done < 300 and first.stop_reason.startswith("early stopping")
    h = first.history
    assert h.stopped_epoch == first.epochs_done and h.best_epoch == first.epochs_done - 3
    model = nnx.load(tmp_path / "es" / "model.npz")
    _, state, _ = nnx.model.load_checkpoint(tmp_path / "es" / "checkpoint.npz")
    assert state["finished"] is True and state["epochs_done"] == first.epochs_done
    _same_models(model, nnx.load(tmp_path / "es" / "checkpoint.npz"))  # the restored best
    again = runner.train(cfg, resume=True, verbose=False, say=said.append)
    assert again.epochs_done == first.epochs_done
    assert any("had already ended: early stopping" in line for line in said)
    _same_models(model, nnx.load(tmp_path / "es" / "model.npz"))


def test_a_checkpoint_of_an_older_nnx_still_resumes(tmp_path, npz_data):
    """Checkpoints written before optimizers existed lack the new options and the state."""
    cfg = _cfg(
        npz_data,
        tmp_path / "old",
        epochs=10,
        optimizer="gd",
        l2=0.0,
        dropout=0.0,
        schedule=None,
        early_stopping=None,
        class_weight=None,
    )
    runner.train(cfg, verbose=False, say=_quiet)
    path = tmp_path / "old" / "checkpoint.npz"
    model, state, _ = nnx.model.load_checkpoint(path)
    state["epochs_done"] = 5
    for key in runner.TRAINING_DEFAULTS:
        del state["config"][key]
    del state["training"], state["finished"]
    nnx.io.write_model_file(path, model.config(), model.parameters(), "numpy", model.metadata, state)
    assert runner.train(cfg, resume=True, verbose=False, say=_quiet).epochs_done == 10


# ------------------------------------------------------------------- model files
def _checkpoint(tmp_path):
    model = nnx.MLP([4, 3, 1], seed=0)
    flat = [p for pair in model.parameters() for p in pair]
    arrays = {"exp_avg": [p * 0.5 for p in flat], "best": [p + 1 for p in flat]}
    path = tmp_path / "c.npz"
    nnx.io.write_model_file(
        path, model.config(), model.parameters(), "numpy", {}, {"k": 1}, state_arrays=arrays
    )
    return model, arrays, path


def test_state_arrays_round_trip_and_plain_load_ignores_them(tmp_path):
    model, arrays, path = _checkpoint(tmp_path)
    loaded, extra, states = nnx.model.load_checkpoint(path)
    assert extra == {"k": 1} and list(states) == ["exp_avg", "best"]
    for name in arrays:
        for got, want in zip(states[name], arrays[name], strict=True):
            np.testing.assert_array_equal(got, want)
    _same_models(nnx.load(path), model)
    names = sorted(n for n, _ in members_of(path.read_bytes()))
    assert names == sorted(
        ["__meta__.npy"] + [f"{s}{p}{i}.npy" for s in ("", "s0", "s1") for p in "Wb" for i in (0, 1)]
    )


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ms: [(n, d) for n, d in ms if n != "s1b0.npy"], r"missing members \['s1b0.npy'\]"),
        (lambda ms: ms + [("s2W0.npy", dict(ms)["s0W0.npy"])], r"unexpected members \['s2W0.npy'\]"),
        (lambda ms: replace(ms, "s0W0.npy", npy(np.zeros((2, 2)))), "shape"),
        (lambda ms: replace(ms, "s0W0.npy", npy(np.zeros((3, 4), np.int64))), "dtype"),
        (
            lambda ms: with_meta(ms, {**meta_of(ms), "state_arrays": ["exp_avg", "nonsense"]}),
            "state_arrays must",
        ),
        (lambda ms: with_meta(ms, {**meta_of(ms), "state_arrays": ["best", "best"]}), "state_arrays must"),
        (lambda ms: with_meta(ms, {**meta_of(ms), "state_arrays": "best"}), "state_arrays must"),
        (lambda ms: ms + [("x.npy", b"")], "unexpected member"),
    ],
)
def test_malformed_state_arrays_are_refused(tmp_path, mutate, message):
    _, _, path = _checkpoint(tmp_path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(zip_bytes(mutate(members_of(path.read_bytes()))))
    with pytest.raises(nnx.ModelFormatError, match=message):
        nnx.model.load_checkpoint(bad)


def test_state_arrays_count_against_the_parameter_limit(tmp_path, monkeypatch):
    model, _, path = _checkpoint(tmp_path)
    n = sum(W.size + b.size for W, b in model.parameters())
    monkeypatch.setattr(nnx.io, "MAX_PARAMETERS", 3 * n)
    nnx.model.load_checkpoint(path)
    monkeypatch.setattr(nnx.io, "MAX_PARAMETERS", 3 * n - 1)
    with pytest.raises(nnx.ModelFormatError, match="training-state arrays included"):
        nnx.model.load_checkpoint(path)


def test_writer_refuses_unknown_state_array_names(tmp_path):
    model = nnx.MLP([4, 3, 1], seed=0)
    flat = [p for pair in model.parameters() for p in pair]
    with pytest.raises(ValueError, match="state array 'velocity'"):
        nnx.io.write_model_file(
            tmp_path / "x.npz", model.config(), model.parameters(), state_arrays={"velocity": flat}
        )


# ------------------------------------------------------------------------ the CLI
def test_cli_trains_with_every_option_and_records_them(tmp_path, npz_data):
    out = tmp_path / "run"
    r = run(
        "train",
        "--data",
        npz_data,
        "--model",
        "mlp",
        "--hidden",
        8,
        "--epochs",
        300,
        "--optimizer",
        "adam",
        "--lr",
        1e-2,
        "--l2",
        0.01,
        "--dropout",
        0.2,
        "--schedule",
        "cosine",
        "--early-stopping",
        5,
        "--class-weight",
        "balanced",
        "--backend",
        "numpy",
        "--out",
        out,
        "--quiet",
        "--val-split",
        0.5,
    )
    assert r.returncode == 0, r.stderr
    assert "stopped at epoch" in r.stdout and "early stopping: val_loss did not improve" in r.stdout
    history = json.loads((out / "history.json").read_text())
    assert history["optimizer"]["name"] == "Adam" and history["optimizer"]["lr"] == 0.01
    assert history["schedule"] == {"name": "Cosine", "total": 300, "min_lr": 0.0}
    assert history["l2"] == 0.01 and history["l2_penalty"] and history["early_stopping"]["patience"] == 5
    assert len(history["class_weight"]) == 2 and history["stop_reason"].startswith("early stopping")
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,loss,accuracy,val_loss,val_accuracy,l2_penalty,epoch_lr"
    _, state, _ = nnx.model.load_checkpoint(out / "checkpoint.npz")
    assert {k: state["config"][k] for k in runner.TRAINING_DEFAULTS} == {
        "optimizer": "adam",
        "momentum": 0.0,
        "nesterov": False,
        "l2": 0.01,
        "dropout": 0.2,
        "schedule": "cosine",
        "early_stopping": 5,
        "class_weight": "balanced",
    }
    assert [la["type"] for la in nnx.load(out / "model.npz").config()["layers"]].count("Dropout") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dropout", 0.2], "--dropout needs a hidden layer"),
        (["--model", "mlp", "--dropout", 1.0], "--dropout must lie in [0, 1), got 1.0"),
        (["--early-stopping", 5, "--val-split", 0], "--early-stopping watches the validation split"),
        (["--early-stopping", 0], "--early-stopping must be a positive integer"),
        (["--schedule", "linear"], "--schedule must be none, cosine"),
        (["--schedule", "step:0"], "--schedule 'step:0': step_size must be a positive integer"),
        (["--schedule", "exponential:-1"], "gamma must be a finite number > 0"),
        (["--class-weight", "0:1,2:3"], "--class-weight names class '2', which the data do not have"),
        (["--class-weight", "dog:2"], "--class-weight names class 'dog', which the data do not have"),
        (["--class-weight", "0:1,0:2"], "--class-weight must be none, balanced or CLASS:WEIGHT"),
        (["--class-weight", "heavy"], "--class-weight must be"),
        (["--momentum", 0.9, "--optimizer", "adam"], "--momentum applies to --optimizer sgd"),
        (["--momentum", -1, "--optimizer", "sgd"], "--momentum must lie in [0, 1), got -1.0"),
        (["--l2", "nan"], "--l2 must be a finite number >= 0"),
        (["--optimizer", "newton"], "invalid choice"),
    ],
)
def test_cli_refuses_bad_training_options_in_one_line(tmp_path, npz_data, args, message):
    r = run("train", "--data", npz_data, "--out", tmp_path / "o", "--epochs", 3, "--quiet", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# ------------------------------------------------------------- --optimizer lbfgs
def _lbfgs_reference(npz_data, epochs, l2, val_split=0.25, seed=3, hidden=8):
    """What ``nnx train --optimizer lbfgs`` computes, in Python: the same split and model
    fitted by ``model.fit(optimizer=nnx.LBFGS())``."""
    with np.load(npz_data) as f:
        X, Y = f["X"], f["Y"]
    X, Y, Xv, Yv = train_test_split(X, Y, test_fraction=val_split, seed=seed)
    model = nnx.MLP([6, hidden, 1], seed=seed)
    history = model.fit(
        X,
        Y,
        optimizer=nnx.LBFGS(),
        epochs=epochs,
        l2=l2,
        dtype="float64",
        backend="numpy",
        validation_data=(Xv, Yv),
    )
    return model, history


def test_cli_trains_with_lbfgs_as_model_fit_does(tmp_path, npz_data):
    """--optimizer lbfgs is nnx.LBFGS through the one engine: --epochs its iterations, --l2
    its l2, the default --lr not sent; the parameters are model.fit's bit for bit and the
    history, CSV and learning curve record the iterations."""
    out = tmp_path / "lbfgs"
    args = ["--data", npz_data, "--model", "mlp", "--hidden", 8, "--seed", 3, "--val-split", 0.25]
    args += ["--optimizer", "lbfgs", "--epochs", 25, "--l2", 0.05, "--dtype", "float64"]
    r = run("train", *args, "--backend", "numpy", "--out", out, "--quiet", "--checkpoint-every", 10)
    assert r.returncode == 0, r.stderr
    assert "trained mlp with L-BFGS (max iterations) for 25 iterations" in r.stdout
    ref, ref_history = _lbfgs_reference(npz_data, 25, 0.05)
    _same_models(nnx.load(out / "model.npz"), ref)
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == list(range(1, 26)) and history["loss"] == ref_history.loss
    assert history["loss"][-1] < 0.5 * history["loss"][0]  # it converges
    assert history["l2"] == 0.05 and history["optimizer"] is None and history["lr"] == 0.0
    assert history["solver"]["method"].startswith("L-BFGS-B") and history["solver"]["iterations"] == 25
    assert history["solver"]["l2"] == 0.05 and history["stop_reason"] == "max iterations"
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,loss,accuracy,val_loss,val_accuracy,objective"
    assert (out / "learning_curve.png").is_file() or "no learning curve (" in r.stdout
    _, state, arrays = nnx.model.load_checkpoint(out / "checkpoint.npz")
    assert state["epochs_done"] == 25 and "training" not in state and not arrays  # no optimizer state
    assert state["config"]["optimizer"] == "lbfgs" and state["config"]["lr"] is None


def test_an_lbfgs_run_stops_on_a_signal_after_the_iteration_and_is_not_resumed(
    tmp_path, npz_data, monkeypatch
):
    """Ctrl-C stops an L-BFGS run after the current iteration: the checkpoint (every
    --checkpoint-every iterations) and the outputs hold that iteration's parameters, as a
    fit of that many iterations; --resume is refused in one line, before any work, since
    L-BFGS keeps no state between fits."""
    cfg = _cfg(
        npz_data,
        tmp_path / "cut",
        optimizer="lbfgs",
        lr=None,
        batch_size=None,
        dropout=0.0,
        schedule=None,
        early_stopping=None,
        class_weight=None,
        epochs=40,
        val_split=0.25,
    )
    with monkeypatch.context() as patched:
        _interrupt_after_first_checkpoint(patched)
        cut = runner.train(cfg, verbose=False, say=_quiet)
    assert cut.interrupted and cut.epochs_done == 8  # the checkpoint at 7, then the stop at 8
    assert cut.history.stop_reason.endswith("an L-BFGS run cannot be resumed")
    ref, _ = _lbfgs_reference(npz_data, 8, 0.05)
    _same_models(nnx.load(tmp_path / "cut" / "model.npz"), ref)
    _same_models(nnx.load(tmp_path / "cut" / "checkpoint.npz"), ref)
    with pytest.raises(
        UsageError, match=r"^--resume does not apply to --optimizer lbfgs \(L-BFGS keeps no state"
    ):
        runner.train(cfg, resume=True, verbose=False, say=_quiet)
    with pytest.raises(
        UsageError, match=r"holds a run \(model.npz, checkpoint.npz\); replace it with --overwrite"
    ):
        runner.train(cfg, verbose=False, say=_quiet)
    again = runner.train(cfg, overwrite=True, verbose=False, say=_quiet)
    assert again.epochs_done == 40 and not again.interrupted


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--lr", 0.01],
            "--lr does not apply to --optimizer lbfgs (L-BFGS chooses each step by its line search)",
        ),
        (
            ["--schedule", "cosine"],
            "--schedule does not apply to --optimizer lbfgs (L-BFGS chooses each step",
        ),
        (
            ["--batch-size", 16],
            "--batch-size does not apply to --optimizer lbfgs (L-BFGS minimises the full-batch",
        ),
        (
            ["--early-stopping", 3],
            "--early-stopping does not apply to --optimizer lbfgs (L-BFGS stops at the",
        ),
        (
            ["--model", "mlp", "--dropout", 0.2],
            "--dropout does not apply to --optimizer lbfgs (L-BFGS needs a",
        ),
        (["--resume"], "--resume does not apply to --optimizer lbfgs (L-BFGS keeps no state between fits"),
        (["--momentum", 0.9], "--momentum applies to --optimizer sgd or rmsprop, not lbfgs"),
        (["--epochs", 20001], "--epochs 20001 with --optimizer lbfgs: L-BFGS records every iteration"),
    ],
)
def test_cli_refuses_what_lbfgs_cannot_honour_in_one_line(tmp_path, npz_data, args, message):
    """Options L-BFGS cannot honour, given explicitly, are refused with the engine's reason
    before any work (nothing written); their defaults (--lr 0.005) are not sent to it."""
    out = tmp_path / "o"
    r = run("train", "--data", npz_data, "--out", out, "--quiet", "--optimizer", "lbfgs", *args)
    line = one_line_error(r)
    assert message in line, line
    assert not out.exists()
    with pytest.raises(UsageError, match="--lr does not apply to --optimizer lbfgs"):
        runner.check_config(runner.TrainConfig(optimizer="lbfgs", lr=0.005))
    assert runner.TrainConfig(optimizer="lbfgs").lr is None and runner.TrainConfig().lr == 0.005


def test_a_run_without_a_checkpoint_is_never_told_to_resume(tmp_path, npz_data):
    """An L-BFGS run that ended before its first checkpoint leaves model.npz alone; a new
    run there is told --overwrite, not --resume (which would answer "no checkpoint ...;
    start without --resume": advice in a circle)."""
    lbfgs = dict(optimizer="lbfgs", lr=None, batch_size=None, dropout=0.0, schedule=None)
    lbfgs.update(early_stopping=None, class_weight=None, epochs=2000, checkpoint_every=2000)
    done = runner.train(_cfg(npz_data, tmp_path / "o", **lbfgs), verbose=False, say=_quiet)
    assert done.epochs_done < 2000  # it stopped by itself, before a checkpoint was due
    assert not (tmp_path / "o" / "checkpoint.npz").exists()
    with pytest.raises(UsageError, match=r"holds a run \(model.npz\); replace it with --overwrite") as info:
        runner.train(_cfg(npz_data, tmp_path / "o"), verbose=False, say=_quiet)
    assert "--resume" not in str(info.value)
