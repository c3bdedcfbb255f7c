"""nnx train / predict through the command line (subprocess), as a user runs them."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("PIL", reason="image tests need Pillow: pip install 'nnx-nets[images]'")

from image_fixtures import kaggle_folder  # noqa: E402
from nnx_testing import CLI, run  # noqa: E402

import nnx  # noqa: E402


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "imgs"
    kaggle_folder(root, n_per_class=20)
    return root


def test_train_then_predict(image_dir, tmp_path):
    out = tmp_path / "run"
    r = run(
        "train",
        "--data",
        image_dir,
        "--model",
        "mlp",
        "--hidden",
        8,
        "--size",
        16,
        "--epochs",
        40,
        "--lr",
        0.05,
        "--backend",
        "numpy",
        "--out",
        out,
        "--quiet",
        "--positive",
        "dog",
    )
    assert r.returncode == 0, r.stderr
    assert "skipped 4 file(s), not used: " in r.stdout  # zero-byte, truncated, text, README
    for name in ("model.npz", "history.json", "history.csv", "learning_curve.png", "checkpoint.npz"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 40 and history["val_loss"] and history["backend"] == "numpy"
    assert (out / "history.csv").read_text().startswith("epoch,loss,accuracy,val_loss,val_accuracy")
    r = run("predict", out / "model.npz", image_dir / "dog.1.jpg", image_dir / "cat.2.jpg", "--json")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    assert [x["class_name"] in ("cat", "dog") for x in results] == [True, True]
    r = run("predict", out / "model.npz", image_dir / "cat.text.jpg")
    assert r.returncode == 1 and "error" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--epochs", "0"], "--epochs must be a positive integer"),
        (["train", "--lr", "-0.1"], "--lr must be a finite number > 0, got -0.1"),
        (["train", "--lr", "abc"], "invalid float value"),
        (["train", "--data", "/no/such/data"], "no such file or folder"),
        (["train", "--out", "/proc/nnx-cannot-write"], "not a writable folder"),
        (["train", "--model", "cnn"], "invalid choice"),
        (["predict", "/no/model.npz", "x.jpg"], "no model file"),
        (["bench", "--models", "cnn"], "unknown model"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message):
    r = run(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


def _train_args(image_dir, out, epochs):
    return [
        "train",
        "--data",
        image_dir,
        "--model",
        "mlp",
        "--hidden",
        32,
        "--size",
        32,
        "--epochs",
        epochs,
        "--lr",
        0.02,
        "--batch-size",
        7,
        "--seed",
        5,
        "--backend",
        "numpy",
        "--checkpoint-every",
        20,
        "--out",
        out,
        "--quiet",
    ]


# long enough that a run is still training well after its first checkpoint (epoch 20)
EPOCHS = 1000


@pytest.fixture(scope="module")
def reference_run(image_dir, tmp_path_factory):
    """The uninterrupted run every interrupted-and-resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("ref") / "ref"
    ref = run(*_train_args(image_dir, out, EPOCHS))
    assert ref.returncode == 0, ref.stderr
    return out


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_stopped_run_resumes_to_the_same_parameters(image_dir, reference_run, tmp_path, signame):
    signum = getattr(signal, signame)
    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [*CLI, *map(str, _train_args(image_dir, out, EPOCHS))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (out / "checkpoint.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr
    assert f"interrupted by {signame} after epoch" in stderr and "--resume" in stderr
    _, state, _ = nnx.model.load_checkpoint(out / "checkpoint.npz")
    assert 0 < state["epochs_done"] < EPOCHS
    assert not [p.name for p in out.iterdir() if ".nnx-tmp-" in p.name]

    changed = run(*_train_args(image_dir, out, EPOCHS), "--lr", 0.5, "--resume")
    assert changed.returncode == 2 and "hyper-parameters differ" in changed.stderr

    resumed = run(*_train_args(image_dir, out, EPOCHS), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from epoch {state['epochs_done']}" in resumed.stdout
    a, b = nnx.load(reference_run / "model.npz"), nnx.load(out / "model.npz")
    for (W0, b0), (W1, b1) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)
    full = json.loads((reference_run / "history.json").read_text())
    joined = json.loads((out / "history.json").read_text())
    assert joined["epoch"][-1] == EPOCHS
    np.testing.assert_array_equal(joined["loss"][-10:], full["loss"][-10:])


def test_resume_without_checkpoint(tmp_path):
    r = run("train", "--out", tmp_path / "none", "--resume", "--epochs", 5)
    assert r.returncode == 2 and "no checkpoint" in r.stderr


def test_train_without_data_uses_embedded_default(tmp_path):
    r = run("train", "--epochs", 20, "--out", tmp_path / "d", "--quiet", "--backend", "numpy")
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stdout and (tmp_path / "d" / "model.npz").is_file()


def test_env_backend_is_used(tmp_path):
    env = dict(os.environ, NNX_BACKEND="numpy")
    r = run("train", "--epochs", 3, "--out", tmp_path / "e", "--quiet", env=env)
    assert r.returncode == 0 and "backend numpy" in r.stdout
