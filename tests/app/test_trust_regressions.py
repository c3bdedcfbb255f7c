"""Regressions found by an adversarial review of the Trust claims (one test per finding).

Real files, real subprocesses and real signals, as in test_trust_outputs.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nnx_testing import one_line_error, run

import nnx
from nnx.files import _recognise, check_target
from nnx.runner import OUTPUTS


def small_train(*extra):
    return ["train", "--epochs", 3, "--quiet", "--backend", "numpy", "--size", 8, *extra]


@pytest.fixture
def imgs(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="image loading needs Pillow")
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for k, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 128, (8, 8, 3), dtype=np.uint8) + 100 * k
            Image.fromarray(pixels.astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


# ------------------------------------------------- F2: nnx's own big files are nnx's
def test_model_with_over_a_mib_of_metadata_is_recognised_and_overwritten(tmp_path):
    path = tmp_path / "model.npz"
    model = nnx.LogisticRegression(4)
    model.metadata = {"note": "x" * 600_000}  # > 2 MiB of UTF-32 JSON
    model.save(path)
    assert path.stat().st_size > 2 << 20
    assert _recognise(path, "model")
    model.save(path)  # over its own file: no refusal
    check_target(path, "model")


def test_image_cache_with_big_metadata_is_recognised(tmp_path):
    from nnx.data import _write_cache

    path = tmp_path / "cache.npz"
    files = [f"cat/{i:06d}-a-long-file-name-for-the-cache.png" for i in range(12_000)]
    X = np.zeros((3, len(files)), np.uint8)
    Y = np.zeros((1, len(files)), np.int64)
    _write_cache(path, "k" * 64, X, Y, files, [])
    assert path.is_file() and _recognise(path, "cache")
    # a cache of nnx before the marker (its JSON began with "key")
    np.savez(path, X=X, Y=Y, meta=np.array(json.dumps({"key": "k", "files": files, "skipped": []})))
    assert _recognise(path, "cache")
    # a foreign npz with the marker text buried later is not nnx's
    np.savez(path, meta=np.array(json.dumps({"other": 1, "format": "nnx-image-cache"})))
    assert not _recognise(path, "cache")


# ------------------------------------------- F6: a blow-up in the last update is caught
@pytest.mark.parametrize("backend", [b for b in ("numpy", "numba") if nnx.backends.available()[b].available])
def test_divergence_in_the_final_update_is_caught_and_the_model_kept(backend):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((4, 50)) * 10).astype(np.float32)
    Y = (X[:1] > 0).astype(np.float32)
    model = nnx.LogisticRegression(4)
    before = model.parameters()
    with pytest.raises(nnx.TrainingDivergedError, match="epoch 1"):
        model.fit(X, Y, epochs=1, lr=1e38, backend=backend)
    for (W0, b0), (W1, b1) in zip(before, model.parameters()):
        assert np.array_equal(W0, W1) and np.array_equal(b0, b1)


def test_cli_divergence_in_the_only_epoch_is_one_line_and_writes_no_model(tmp_path, imgs):
    out = tmp_path / "dv"
    line = one_line_error(run(*small_train("--data", imgs, "--epochs", 1, "--lr", 1e300, "--out", out)))
    assert "diverged" in line
    assert not (out / "model.npz").exists() and not (out / "checkpoint.npz").exists()


# ------------------------------ F3: outputs inside the data folder would become data
@pytest.mark.parametrize("option", ["--out", "--cache"])
def test_output_inside_the_data_folder_is_refused_before_work(tmp_path, imgs, option):
    target = imgs / ("run1" if option == "--out" else "cache.npz")
    extra = [option, target] if option == "--out" else [option, target, "--out", tmp_path / "o"]
    line = one_line_error(run(*small_train("--data", imgs, *extra)))
    assert option in line and "inside the --data folder" in line
    assert sorted(p.name for p in imgs.iterdir()) == ["cat", "dog"]


# ----------------------------------- F1: two outputs on one path, refused before work
@pytest.mark.parametrize("name", ["model.npz", "checkpoint.npz", "history.json"])
def test_cache_that_is_one_of_the_runs_outputs_is_refused_before_work(tmp_path, imgs, name):
    out = tmp_path / "c1"
    line = one_line_error(run(*small_train("--data", imgs, "--out", out, "--cache", f"{out}/../c1/{name}")))
    assert "--cache" in line and name in line and not out.exists()


def test_bench_json_and_plot_on_one_file_are_refused_before_timing(tmp_path):
    target = tmp_path / "s.out"
    line = one_line_error(run("bench", "--json", target, "--plot", f"{tmp_path}/./s.out", "--m", 8))
    assert "--json and --plot" in line and not target.exists()


# -------------------------------------- F8: never write a model nnx refuses to load
def test_model_over_the_load_limit_is_refused_before_work(tmp_path, imgs):
    out = tmp_path / "rbig"
    args = ["--data", imgs, "--size", 64, "--model", "mlp", "--hidden", 5500, "--out", out]
    line = one_line_error(run(*small_train(*args)))
    assert "MAX_PARAMETERS" in line and not out.exists()
    # with Adam a checkpoint keeps two more arrays per parameter
    args = ["--data", imgs, "--size", 64, "--model", "mlp", "--hidden", 2000, "--optimizer", "adam"]
    assert "MAX_PARAMETERS" in one_line_error(run(*small_train(*args, "--out", out)))


def test_save_refuses_a_model_over_the_load_limit(tmp_path):
    from nnx.io import MAX_PARAMETERS

    model = nnx.MLP([12288, 5500, 1])
    with pytest.raises(ValueError, match=f"{MAX_PARAMETERS:,}"):
        model.save(tmp_path / "big.npz")
    assert not (tmp_path / "big.npz").exists()


# ----------------------------- F20: an unavailable backend is refused before loading data
@pytest.mark.skipif(nnx.backends.available()["cupy"].available, reason="cupy is available here")
@pytest.mark.parametrize("how", ["flag", "env"])
def test_unavailable_backend_is_refused_before_the_data_are_read(tmp_path, how, monkeypatch):
    data = tmp_path / "missing-later.npz"
    np.savez(data, X=np.zeros((2, 8)), Y=np.zeros((1, 8)))
    os.chmod(data, 0)  # reading it would fail with a different message
    env = {**os.environ, "NNX_BACKEND": "cupy"} if how == "env" else None
    args = ["train", "--data", data, "--out", tmp_path / "o", "--quiet"]
    line = one_line_error(run(*args, *(["--backend", "cupy"] if how == "flag" else []), env=env))
    assert "cupy" in line and "not available" in line and not (tmp_path / "o").exists()


# ----------------------------------------------- F10-F13: data problems in one line
def _npz(path, X, Y):
    np.savez(path, X=X, Y=Y)
    return path


def _xy(m=20):
    X = np.random.default_rng(0).standard_normal((3, m))
    return X, (np.arange(m) % 2).astype(np.float64)


def test_float64_data_beyond_float32_is_a_one_line_data_error(tmp_path):
    X, Y = _xy()
    data = _npz(tmp_path / "f64.npz", X * 1e300, Y)
    line = one_line_error(run("train", "--data", data, "--out", tmp_path / "o", "--quiet", "--epochs", 2))
    assert "f64.npz" in line and "--dtype float64" in line and "internal error" not in line


@pytest.mark.parametrize("kind", ["npz", "csv"])
def test_one_huge_label_is_refused_at_once(tmp_path, kind):
    X, Y = _xy()
    Y[-1] = 1e12 if kind == "npz" else 1e15
    if kind == "npz":
        data = _npz(tmp_path / "big.npz", X, Y)
    else:
        data = tmp_path / "big.csv"
        np.savetxt(data, np.vstack([X, Y]), delimiter=",")
    line = one_line_error(run("train", "--data", data, "--out", tmp_path / "o", "--quiet", timeout=60))
    assert data.name in line and "largest label" in line and "10,000" in line


def test_an_inf_label_is_one_line_without_a_warning(tmp_path):
    X, Y = _xy()
    Y[-1] = np.inf
    data = _npz(tmp_path / "inf.npz", X, Y)
    line = one_line_error(run("train", "--data", data, "--out", tmp_path / "o", "--quiet"))
    assert "inf.npz" in line and "inf" in line


@pytest.mark.parametrize("labels, message", [("gap", "no example of class '1'"), ("one", "one class only")])
def test_a_class_missing_from_the_whole_data_names_the_file_and_the_fix(tmp_path, labels, message):
    X, Y = _xy()
    Y = Y * 2 if labels == "gap" else np.zeros_like(Y)
    data = _npz(tmp_path / "d.npz", X, Y)
    line = one_line_error(run("train", "--data", data, "--out", tmp_path / "o", "--quiet"))
    assert message in line and "d.npz" in line and "--val-split" not in line


# ------------------------------------------ F14: --positive matches folder names' case
def test_positive_matches_class_folders_whatever_their_case(tmp_path, imgs):
    for name in ("cat", "dog"):
        (imgs / name).rename(imgs / name.capitalize())
    r = run(*small_train("--data", imgs, "--positive", "dog", "--out", tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert "label 1 = Dog" in r.stdout


# ------------------------------------ F15: malformed checkpoints are one line, not a bug
def _rng_minus_5(state):
    state["rng_state"]["state"]["state"] = -5


def _long_val_loss(state):
    state["history"]["val_loss"] = state["history"]["val_loss"] + [0.5, 0.5]


def _seconds_text(state):
    state["history"]["seconds"] = "x"


def _backend_number(state):
    state["history"]["backend"] = 3


@pytest.mark.parametrize("corrupt", [_rng_minus_5, _long_val_loss, _seconds_text, _backend_number])
def test_resume_refuses_malformed_state_fields_in_one_line(tmp_path, npz_data, corrupt):
    out = tmp_path / "run"
    args = ["train", "--data", npz_data, "--epochs", 10, "--quiet", "--backend", "numpy", "--out", out]
    assert run(*args, "--checkpoint-every", 5).returncode == 0
    path = out / "checkpoint.npz"
    model, state, _ = nnx.model.load_checkpoint(path)
    corrupt(state)
    nnx.io.write_model_file(path, model.config(), model.parameters(), None, model.metadata, state)
    line = one_line_error(run(*args, "--resume"))
    assert "--resume" in line and "not a usable" in line


# --------------------------- F16, F17: stop signals from data loading to the last output
_SIGNAL_AT = """
import os, signal, sys
import nnx.cli, nnx.app.train_job, nnx.model
where, count = sys.argv[1], int(sys.argv[2])

def hook(original):
    def wrapped(*args, **kwargs):
        for _ in range(count):
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)
    return wrapped

if where == "load":
    nnx.app.train_job.load_data = hook(nnx.app.train_job.load_data)
elif where == "write":
    nnx.app.train_job.write_outputs = hook(nnx.app.train_job.write_outputs)
else:
    nnx.model.Sequential.fit = hook(nnx.model.Sequential.fit)
sys.exit(nnx.cli.main(sys.argv[3:]))
"""


def _signalled_run(where, count, *args):
    cmd = [sys.executable, "-c", _SIGNAL_AT, where, str(count), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_sigterm_while_the_data_load_stops_in_one_line_writing_nothing(tmp_path, npz_data):
    out = tmp_path / "run"
    r = _signalled_run("load", 1, *small_train("--data", npz_data, "--out", out))
    line = one_line_error(r, code=143)
    assert "before training" in line and "nothing written" in line
    assert not any(out.iterdir())


def test_sigterm_while_the_outputs_are_written_finishes_them_then_exits_143(tmp_path, npz_data):
    out = tmp_path / "run"
    r = _signalled_run("write", 1, *small_train("--data", npz_data, "--out", out))
    line = one_line_error(r, code=143)
    assert "SIGTERM" in line
    assert nnx.load(out / "model.npz") and json.loads((out / "history.json").read_text())["epochs"] == 3


def test_a_second_sigterm_does_not_abort_the_checkpoint(tmp_path, npz_data):
    out = tmp_path / "run"
    r = _signalled_run("fit", 2, *small_train("--data", npz_data, "--out", out, "--epochs", 1000))
    line = one_line_error(r, code=143)
    assert "SIGTERM" in line and "--resume" in line
    _, state, _ = nnx.model.load_checkpoint(out / "checkpoint.npz")
    assert state["epochs_done"] == 1


# ---------------------------- F18: resuming a complete run keeps its recorded history
def test_resume_of_a_complete_checkpoint_keeps_backend_and_time(tmp_path, npz_data):
    out = tmp_path / "run"
    args = small_train("--data", npz_data, "--out", out)
    assert run(*args).returncode == 0
    first = json.loads((out / "history.json").read_text())
    r = run(*args, "--resume")
    assert r.returncode == 0, r.stderr
    again = json.loads((out / "history.json").read_text())
    assert again["backend"] == first["backend"] == "numpy" and "backend numpy" in r.stdout
    assert again["seconds"] > 0 and again["epoch"] == first["epoch"]


# ------------------------------------------------- F19: names never forge output lines
def test_out_names_cannot_forge_lines_anywhere(tmp_path, npz_data):
    out = tmp_path / "rN\nnnx: error: FORGED"
    args = small_train("--data", npz_data, "--out", out)
    for r in (run(*args), run(*args, "--resume")):
        assert r.returncode == 0, r.stderr
        lines = (r.stdout + r.stderr).splitlines()
        assert not any(line.startswith("nnx: error: FORGED") for line in lines), lines


def test_output_errors_raised_to_python_callers_escape_names(tmp_path):
    from nnx.errors import OutputWriteError, UnsafeOutputError

    folder = tmp_path / "a\nb"
    folder.mkdir()
    (folder / "model.npz").write_bytes(b"not nnx's")
    with pytest.raises(UnsafeOutputError) as info:
        check_target(folder / "model.npz", "model")
    assert "\n" not in str(info.value) and "a\\nb" in str(info.value)
    with pytest.raises(OutputWriteError) as info:
        check_target(folder / "x\ny" / "model.npz", "model")
    assert "\n" not in str(info.value)


# ------------------------------------------- F7: a FIFO or a device is not "missing"
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_load_of_a_fifo_or_device_is_a_format_error_not_missing(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "model.npz"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    with pytest.raises(nnx.ModelFormatError, match="not a regular file"):
        nnx.load(path)  # returns at once: a FIFO is never opened
    line = one_line_error(run("predict", path, tmp_path / "x.png"))
    assert "not a regular file" in line


# -------------------------------------- F21: --debug before the subcommand is honoured
@pytest.mark.parametrize("before", [True, False])
def test_debug_flag_before_or_after_the_subcommand_shows_the_traceback(before, monkeypatch, capsys):
    from nnx.app import cli

    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "cmd_info", boom)
    monkeypatch.delenv("NNX_DEBUG", raising=False)
    argv = ["--debug", "info"] if before else ["info", "--debug"]
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(argv)
    assert cli.main(["info"]) == cli.EXIT_INTERNAL  # without --debug: one line, exit 70
    assert "internal error" in capsys.readouterr().err


# ------------------------------------------- F5: one run at a time on an --out folder
def test_a_second_run_on_the_same_out_is_refused_while_the_first_runs(tmp_path, npz_data):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running nnx train holds it
        line = one_line_error(run(*small_train("--data", npz_data, "--out", out)))
        assert "another nnx run is using" in line and not any(out.iterdir())
    finally:
        os.close(fd)
    assert run(*small_train("--data", npz_data, "--out", out)).returncode == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.npz", "checkpoint.npz", "history.json"} <= names <= set(OUTPUTS)  # no lock file left


# ------------------------------------- F9: a tabular model is never applied to pixels
def test_predict_refuses_a_model_not_trained_on_images(tmp_path, imgs):
    X = np.random.default_rng(0).standard_normal((12, 40))  # 12 = 3 * 2 * 2 features
    data = tmp_path / "t.npz"
    np.savez(data, X=X, Y=(X[0] > 0).astype(np.float64))
    out = tmp_path / "tab"
    assert run("train", "--data", data, "--out", out, "--epochs", 2, "--quiet").returncode == 0
    line = one_line_error(run("predict", out / "model.npz", imgs / "cat" / "0.png"))
    assert "not trained on images" in line
