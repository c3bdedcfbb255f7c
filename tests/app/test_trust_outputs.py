"""Nothing lost, nothing silently wrong, never a traceback: output files, resumes and the CLI.

Real files, real subprocesses, real signals and (as root) a real full disk on a small tmpfs.
"""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from nnx_testing import CLI, one_line_error, run

import nnx
from nnx import files
from nnx.errors import OutputWriteError, UnsafeOutputError
from nnx.files import atomic_write, printable
from nnx.runner import OUTPUTS


def small_train(*extra):
    return ["train", "--epochs", 3, "--quiet", "--backend", "numpy", "--size", 8, *extra]


# ----------------------------------------------------------------- never lose a file
def test_cache_pointed_at_the_data_zip_is_refused_and_the_zip_kept(tmp_path):
    pytest.importorskip("PIL", reason="image loading needs Pillow: pip install 'nnx-nets[images]'")
    from image_fixtures import kaggle_folder

    root = tmp_path / "imgs"
    kaggle_folder(root, n_per_class=4, with_bad=False)
    data = tmp_path / "d.zip"
    with zipfile.ZipFile(data, "w") as zf:
        for f in sorted(root.iterdir()):
            zf.write(f, f.name)
    before = data.read_bytes()
    line = one_line_error(run(*small_train("--data", data, "--cache", data, "--out", tmp_path / "o")))
    assert "--cache" in line and data.read_bytes() == before


def test_cache_pointed_at_a_model_is_refused_and_the_model_kept(tmp_path):
    model_path = tmp_path / "model.npz"
    nnx.LogisticRegression(4).save(model_path)
    before = model_path.read_bytes()
    line = one_line_error(run(*small_train("--cache", model_path, "--out", tmp_path / "o")))
    assert "not an nnx image cache" in line and model_path.read_bytes() == before


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_foreign_file_in_out_folder_is_refused_before_training(tmp_path, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(b"my thesis, not an nnx file")
    line = one_line_error(run(*small_train("--out", out)))
    assert name in line and "refusing to overwrite" in line
    assert (out / name).read_bytes() == b"my thesis, not an nnx file"
    assert sorted(p.name for p in out.iterdir()) == [name]  # nothing else written


def test_rerun_into_the_same_folder_overwrites_its_own_files(tmp_path):
    out = tmp_path / "run"
    assert run(*small_train("--out", out)).returncode == 0
    # issue 33: a plain rerun no longer discards the previous run; --overwrite asks for it
    assert "--overwrite" in one_line_error(run(*small_train("--out", out)))
    r = run(*small_train("--out", out, "--overwrite"))
    assert r.returncode == 0, r.stderr


def test_out_that_is_a_file_or_a_folder_where_a_file_goes(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_line_error(run(*small_train("--out", tmp_path / "file")))
    out = tmp_path / "run"
    (out / "model.npz").mkdir(parents=True)
    assert "it is a folder" in one_line_error(run(*small_train("--out", out)))


def test_save_refuses_foreign_files_folders_and_missing_parents(tmp_path):
    model = nnx.LogisticRegression(3)
    foreign = tmp_path / "notes.npz"
    np.savez(foreign, X=np.zeros(3))  # an npz, but not nnx's
    with pytest.raises(UnsafeOutputError, match="not an nnx model"):
        model.save(foreign)
    with pytest.raises(UnsafeOutputError, match="folder"):
        model.save(tmp_path)
    with pytest.raises(OutputWriteError, match="does not exist"):
        model.save(tmp_path / "missing" / "m.npz")
    model.save(tmp_path / "m.npz")
    model.save(tmp_path / "m.npz")  # its own file: fine


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        nnx.LogisticRegression(3).save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~mask


def test_temp_file_of_a_killed_write_is_cleaned_by_the_next_write(tmp_path):
    target = tmp_path / "m.npz"
    code = (
        "import sys, time\n"
        "from nnx.files import atomic_write\n"
        "def slow(fh):\n"
        "    fh.write(b'partial')\n"
        "    fh.flush()\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        f"atomic_write({str(target)!r}, slow, kind='model')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait(timeout=30)
    leftovers = [p for p in tmp_path.iterdir() if ".nnx-tmp-" in p.name]
    assert len(leftovers) == 1 and not target.exists()
    nnx.LogisticRegression(3).save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.skipif(not hasattr(os, "getppid"), reason="POSIX PIDs")
def test_a_stale_temp_file_named_after_a_live_pid_is_cleaned(tmp_path):
    """The writer died, but its PID now names a live process here (reused, or the temp
    came from another PID namespace sharing the folder): nobody holds the temp file's
    lock, so once past the grace period it goes."""
    target = tmp_path / "m.npz"
    stale = tmp_path / f".m.npz.nnx-tmp-{os.getppid()}-abc.tmp"  # the parent: alive
    stale.write_bytes(b"partial")
    young = tmp_path / f".m.npz.nnx-tmp-{os.getppid()}-def.tmp"
    young.write_bytes(b"partial")
    old = time.time() - 2 * files.UNLOCKED_TEMP_GRACE_S
    os.utime(stale, (old, old))
    nnx.LogisticRegression(3).save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.npz", young.name])


def test_a_temp_file_a_live_writer_holds_is_kept_whatever_its_pid(tmp_path):
    """A writer elsewhere (its PID means nothing here) still holds its temp file locked:
    the next write leaves it alone."""
    pytest.importorskip("fcntl")
    held = tmp_path / ".m.npz.nnx-tmp-999999999-abc.tmp"  # a PID that runs nowhere here
    held.write_bytes(b"partial")
    old = time.time() - 2 * files.UNLOCKED_TEMP_GRACE_S
    os.utime(held, (old, old))
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(held)!r}, os.O_RDONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        nnx.LogisticRegression(3).save(tmp_path / "m.npz")
        assert held.exists()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    nnx.LogisticRegression(3).save(tmp_path / "m.npz")  # its writer gone: now it goes
    assert not held.exists()


def test_failed_write_keeps_the_old_file_and_names_the_target(tmp_path):
    target = tmp_path / "m.npz"
    nnx.LogisticRegression(3).save(target)
    before = target.read_bytes()

    def broken(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputWriteError) as info:
        atomic_write(target, broken, kind="model")
    assert str(target) in str(info.value) and ".nnx-tmp-" not in str(info.value)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 256 KiB filesystem that fills up (root only: mounting needs it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill a disk needs root")
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_full_disk_is_one_line_and_leaves_no_temp(tiny_tmpfs):
    out = tiny_tmpfs / "run"
    line = one_line_error(
        run("train", "--model", "mlp", "--epochs", 2, "--quiet", "--backend", "numpy", "--out", out)
    )
    assert "No space left on device" in line and "cannot write" in line
    assert not [p for p in out.rglob("*") if ".nnx-tmp-" in p.name]
    with pytest.raises(OutputWriteError, match="No space left"):
        nnx.MLP([12288, 50, 1], seed=0).save(tiny_tmpfs / "m.npz")
    assert not list(tiny_tmpfs.glob(".m.npz*"))


def test_bench_json_over_a_foreign_file_is_refused_before_timing(tmp_path):
    foreign = tmp_path / "results.json"
    foreign.write_text('{"mine": true}')
    line = one_line_error(run("bench", "--backends", "numpy", "--m", 8, "--no-torch", "--json", foreign))
    assert "--json" in line and foreign.read_text() == '{"mine": true}'


# ---------------------------------------------------------------------- resuming
def test_resume_refuses_different_data_at_the_same_path(tmp_path, npz_data):
    out = tmp_path / "run"
    args = ["train", "--data", npz_data, "--epochs", 10, "--quiet", "--backend", "numpy", "--out", out]
    assert run(*args, "--checkpoint-every", 5).returncode == 0
    X = np.load(npz_data)["X"]
    Y = np.load(npz_data)["Y"]
    X[0, 0] += 1.0
    np.savez(npz_data, X=X, Y=Y)
    line = one_line_error(run(*args, "--checkpoint-every", 5, "--resume"))
    assert "training data differ" in line


def _corrupt_checkpoint(path: Path, **changes):
    model, state, _ = nnx.model.load_checkpoint(path)
    state.update(changes)
    nnx.io.write_model_file(path, model.config(), model.parameters(), None, model.metadata, state)


@pytest.mark.parametrize(
    "changes",
    [
        {"epochs_done": "ten"},
        {"epochs_done": 10**6},
        {"rng_state": {"bit_generator": "nonsense"}},
        {"history": {"loss": "x"}},
        {"config": None},
    ],
)
def test_resume_refuses_a_malformed_checkpoint_in_one_line(tmp_path, npz_data, changes):
    out = tmp_path / "run"
    args = ["train", "--data", npz_data, "--epochs", 10, "--quiet", "--backend", "numpy", "--out", out]
    assert run(*args).returncode == 0
    _corrupt_checkpoint(out / "checkpoint.npz", **changes)
    line = one_line_error(run(*args, "--resume"))
    assert "--resume" in line


def test_resume_of_a_garbage_checkpoint_is_one_line(tmp_path, npz_data):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"PK\x03\x04 truncated")
    line = one_line_error(run("train", "--data", npz_data, "--out", out, "--resume", "--quiet"))
    assert "checkpoint.npz" in line


# ------------------------------------------------------------ arguments and input
@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--size", 0], "--size must be a positive integer"),
        (["train", "--size", 100000], "--size must be a positive integer up to"),
        (["train", "--hidden", 10**7, "--model", "mlp"], "--hidden must be"),
        (["train", "--epochs", 10**12], "--epochs must be"),
        (["train", "--seed", -1], "--seed must be an integer from 0"),
        (["train", "--seed", 2**40], "--seed must be an integer from 0"),
        (["train", "--val-split", 1.0], "--val-split must lie in [0, 1)"),
        (["train", "--val-split", "nan"], "--val-split must lie in [0, 1)"),
        (["train", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
        (["train", "--batch-size", 0], "--batch-size must be a positive integer"),
        (["train", "--checkpoint-every", -5], "--checkpoint-every must be"),
        (["predict", "m.npz", "x.jpg", "--threshold", 1.5], "--threshold must lie in [0, 1]"),
        (["predict", "m.npz", "x.jpg", "--threshold", "nan"], "--threshold must lie in [0, 1]"),
        (["bench", "--m", 0], "--m values must lie in"),
        (["bench", "--m", 10**9, "--backends", "numpy"], "--m values must lie in"),
        (["bench", "--m", 5 * 10**7, "--backends", "numpy"], "GiB"),
        (["bench", "--repeats", 0], "--repeats"),
        (["bench", "--backends", "tpu"], "unknown backend"),
        (["bench", "--m", ","], "at least one value"),
    ],
)
def test_out_of_range_arguments_are_one_line_before_work(tmp_path, args, message):
    extra = ["--out", tmp_path / "o"] if args[0] == "train" else []
    assert message in one_line_error(run(*args, *extra))


def test_positive_with_npz_data_is_refused(tmp_path, npz_data):
    line = one_line_error(run("train", "--data", npz_data, "--positive", "dog", "--out", tmp_path / "o"))
    assert "--positive" in line


def test_val_split_that_empties_a_class_is_refused(tmp_path):
    X = np.random.default_rng(0).standard_normal((3, 5))
    path = tmp_path / "few.npz"
    np.savez(path, X=X, Y=np.array([[0, 0, 0, 0, 1]]))
    line = one_line_error(run("train", "--data", path, "--val-split", 0.2, "--out", tmp_path / "o"))
    assert "has no example of class" in line and "--val-split" in line


@pytest.mark.parametrize("command", [["train", "--epochs", 1], ["demo", "--quick"], ["predict", "m", "x"]])
def test_bogus_nnx_backend_is_one_line(command):
    env = dict(os.environ, NNX_BACKEND="bogus")
    line = one_line_error(run(*command, env=env))
    assert "NNX_BACKEND='bogus'" in line


def test_unexpected_error_is_one_line_naming_a_bug(monkeypatch, capsys):
    from nnx.app import cli

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "cmd_info", broken)
    monkeypatch.delenv("NNX_DEBUG", raising=False)
    assert cli.main(["info"]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error" in err[0] and "--debug" in err[0] and "boom" in err[0]
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["info", "--debug"])


def test_file_names_cannot_forge_output_lines(tmp_path):
    model = tmp_path / "m.npz"
    net = nnx.LogisticRegression(8 * 8 * 3)
    net.metadata = {"image_size": 8}
    net.save(model)
    evil = tmp_path / "x.jpg\nnnx: all good\x1b[2J.jpg"
    evil.write_bytes(b"not an image")
    r = run("predict", model, evil)
    assert r.returncode == 1
    assert len(r.stdout.strip().splitlines()) == 1 and "\\n" in r.stdout and "\x1b" not in r.stdout


def test_printable_escapes_control_characters():
    assert printable("cat.jpg") == "cat.jpg"
    assert printable("a\nb\x1b[0m\tc") == "a\\nb\\x1b[0m\\tc"


def test_sigterm_during_a_fit_leaves_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--epochs", 10**6, "--backend", "numpy", "--quiet", "--checkpoint-every", 10**6]
    proc = subprocess.Popen(
        [*CLI, *map(str, [*args, "--size", 16, "--out", out])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while "data:" not in (proc.stdout.readline() or "data:") and time.time() < deadline:
        pass
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    _, state, _ = nnx.model.load_checkpoint(out / "checkpoint.npz")
    assert state["epochs_done"] >= 1
    assert json.loads((out / "history.json").read_text())["epoch"][-1] == state["epochs_done"]
