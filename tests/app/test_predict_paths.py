"""``nnx predict MODEL PATH...`` on folders, zips and thousands of pictures: one network,
batches bounded in memory, a line per picture, ``--csv`` rows, skipped files reported once."""

import csv
import io
import json
import os
import zipfile

import numpy as np
import pytest

pytest.importorskip("PIL", reason="nnx predict decodes pictures with Pillow")

from PIL import Image  # noqa: E402

import nnx  # noqa: E402
from nnx import cli  # noqa: E402
from nnx.data import decode_image  # noqa: E402
from nnx.network import DeviceNetwork  # noqa: E402

SIZE = 4  # pictures are 4 x 4: 48 features
N_MANY = 2000


def _png(path, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path, format="PNG")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A three-class and a two-class model of 4 x 4 pictures, with weights that tell the
    pictures apart."""
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    three = nnx.SoftmaxRegression(SIZE * SIZE * 3, 3, seed=0)
    three.set_parameters([(rng.normal(0, 1, (3, 48)), rng.normal(0, 0.1, (3, 1)))])
    three.metadata = {"classes": ["apple", "leaf", "sky"], "image_size": SIZE}
    three.save(root / "three.npz")
    two = nnx.LogisticRegression(SIZE * SIZE * 3, seed=0)
    two.set_parameters([(rng.normal(0, 1, (1, 48)), np.zeros((1, 1)))])
    two.metadata = {"classes": ["cat", "dog"], "image_size": SIZE}
    two.save(root / "two.npz")
    return root / "three.npz", root / "two.npz"


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """2000 pictures in 20 nested folders; their paths relative to the top, sorted."""
    root = tmp_path_factory.mktemp("many") / "pictures"
    rng = np.random.default_rng(1)
    names = []
    for i in range(N_MANY):
        name = f"batch{i % 20}/{'deep/' if i % 3 == 0 else ''}{i}.png"
        _png(root / name, rng)
        names.append(name)
    return root, sorted(names)


def _main(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _direct(model_path, files):
    """P (K, m) of each picture decoded alone, through the model's own predict_proba."""
    X = np.stack([decode_image(open(f, "rb").read(), SIZE).reshape(-1) for f in files], axis=1)
    return nnx.load(model_path).predict_proba(X, backend="numpy")


def _networks_built(monkeypatch):
    """How many DeviceNetworks have been built (a spy on the real constructor)."""
    built = []
    real = DeviceNetwork.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(DeviceNetwork, "__init__", counting)
    return built


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_a_folder_of_2000_pictures_runs_through_one_network_into_the_csv(
    models, many, tmp_path, capsys, monkeypatch
):
    three, _ = models
    root, names = many
    out = tmp_path / "predictions.csv"
    built = _networks_built(monkeypatch)
    code, stdout, err = _main(capsys, "predict", three, root, "--csv", out, "--top", 2, "--backend", "numpy")
    assert code == 0, err
    assert len(built) == 1  # one network, one upload of the parameters, for all 2000
    assert "Errno" not in err and "Errno" not in stdout
    rows = _read_csv(out)
    assert out.read_text().count("\n") == N_MANY + 1
    assert rows[0] == ["path", "label", "class", "probability", "class_2", "probability_2", "error"]
    files = [os.path.join(str(root), n) for n in names]
    assert [r[0] for r in rows[1:]] == files  # sorted path order, nested folders included
    lines = stdout.splitlines()
    assert len(lines) == N_MANY and all(line.startswith(f"{f}: p=") for line, f in zip(lines, files))
    monkeypatch.undo()
    P = _direct(three, files)
    classes = ["apple", "leaf", "sky"]
    for j, row in enumerate(rows[1:]):
        first, second = np.argsort(-P[:, j], kind="stable")[:2]
        assert row[1] == str(first) and row[2] == classes[first]
        assert float(row[3]) == pytest.approx(P[first, j], rel=1e-6)
        assert row[4] == classes[second] and float(row[5]) == pytest.approx(P[second, j], rel=1e-6)
        assert row[6] == ""
    # the same numbers as nnx predict on one picture
    for j in (0, 777, N_MANY - 1):
        code, alone, _ = _main(capsys, "predict", three, files[j], "--top", 2, "--backend", "numpy")
        assert code == 0 and alone.strip() == lines[j]


def test_batches_bound_the_memory_whatever_the_number_of_pictures(models, many, monkeypatch):
    from nnx.app import predict_job
    from nnx.data import parallel

    three, _ = models
    root, _ = many
    per_batch = 64
    monkeypatch.setattr(predict_job, "PREDICT_BATCH_BYTES", per_batch * SIZE * SIZE * 3)
    built = _networks_built(monkeypatch)
    decoded, handed_out, calls = [0], [0], []
    real_decode, real_predict = parallel.decode_image, DeviceNetwork.predict_proba

    def counting_decode(data, size):
        decoded[0] += 1
        return real_decode(data, size)

    def watching_predict(self, X):
        calls.append((X.shape[1], decoded[0] - handed_out[0]))
        return real_predict(self, X)

    monkeypatch.setattr(parallel, "decode_image", counting_decode)
    monkeypatch.setattr(DeviceNetwork, "predict_proba", watching_predict)
    run = predict_job.Predictions(str(three), [str(root)], backend="numpy")
    for entry in run:
        assert "error" not in entry
        handed_out[0] += 1
    assert handed_out[0] == decoded[0] == N_MANY and len(built) == 1
    assert len(calls) == -(-N_MANY // per_batch)
    # each call classifies one batch, and the pictures decoded but not yet handed out are
    # that batch alone: every earlier one was handed out (and dropped) before
    assert all(m <= per_batch and pending == m for m, pending in calls), calls


def test_progress_counts_the_pictures_found_and_classified(models, tmp_path):
    from nnx.app.predict_job import Predictions

    three, _ = models
    rng = np.random.default_rng(2)
    for i in range(5):
        _png(tmp_path / "d" / f"{i}.png", rng)
    _png(tmp_path / "one.png", rng)

    class Recorder:
        total, n = 0, 0

        def refresh(self):
            pass

        def update(self, k):
            self.n += k

    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    paths = [
        tmp_path / "d",
        tmp_path / "one.png",
        tmp_path / "empty",
        tmp_path / "bad.zip",
        tmp_path / "no.png",
    ]
    bar = Recorder()
    entries = list(Predictions(str(three), [str(p) for p in paths], progress=bar))
    assert len(entries) == 9 and bar.total == 9 and bar.n == 9
    assert [e["file"] for e in entries if "error" in e] == [str(p) for p in paths[2:]]
    assert "cannot read the zip's list of members" in entries[-2]["error"]


def test_folders_zips_and_files_in_order_with_skipped_files_listed_once(models, tmp_path, capsys):
    three, _ = models
    rng = np.random.default_rng(3)
    folder = tmp_path / "photos"
    for name in ("b/2.png", "a/10.png", "a/9.jpg", "top.png", ".hidden/x.png", "__MACOSX/a/._9.png"):
        _png(folder / name, rng)
    (folder / "notes.txt").write_text("not a picture")
    (folder / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    os.mkfifo(folder / "pipe.png")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("z/1.png", "0.png"):
            _png(tmp_path / "src" / name, rng)
            zf.write(tmp_path / "src" / name, name)
        zf.writestr("README.md", "hello")
    single = tmp_path / "src" / "0.png"
    code, out, err = _main(capsys, "predict", three, folder, archive, single, tmp_path / "missing.png")
    assert code == 1  # a picture that does not decode, a path that does not exist
    shown = [line.split(": ", 1)[0] for line in out.splitlines()]
    assert shown == [
        f"{folder}/a/10.png",
        f"{folder}/a/9.jpg",
        f"{folder}/a/broken.png",
        f"{folder}/b/2.png",
        f"{folder}/top.png",
        f"{archive}/0.png",
        f"{archive}/z/1.png",
        str(single),
        str(tmp_path / "missing.png"),
    ]
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines[f"{folder}/a/broken.png"].startswith("error: ")
    assert lines[str(tmp_path / "missing.png")] == "error: no such file"
    assert lines[f"{archive}/0.png"] == lines[str(single)]  # the same picture, in a zip and alone
    # the files left out, once, with their reasons, on stderr (stdout is one line a picture)
    assert err.count("skipped 3 file(s), not used: ") == 1, err
    assert f"{folder}/notes.txt (not an image file extension)" in err
    assert f"{folder}/pipe.png (a FIFO, not a regular file; never opened)" in err
    assert f"{archive}/README.md (not an image file extension)" in err
    assert ".hidden" not in err + out and "__MACOSX" not in err + out


def test_a_folder_is_read_not_refused_and_an_empty_one_is_an_error(models, tmp_path, capsys):
    _, two = models
    rng = np.random.default_rng(4)
    for i in range(3):
        _png(tmp_path / "pics" / f"{i}.png", rng)
    code, out, err = _main(capsys, "predict", two, tmp_path / "pics", "--quiet")
    assert code == 0, err
    assert len(out.splitlines()) == 3 and "Errno" not in out + err and "Is a directory" not in out + err
    assert "\r" not in err and "predicting" not in err  # no progress bar where stderr is no terminal
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "a.txt").write_text("x")
    code, out, err = _main(capsys, "predict", two, tmp_path / "none")
    assert code == 1
    assert out.strip() == f"{tmp_path / 'none'}: error: no picture in this folder (1 file(s) skipped)"


def test_json_streams_the_same_array_for_files_and_folders(models, tmp_path, capsys):
    from nnx.runner import predict_files

    three, _ = models
    rng = np.random.default_rng(5)
    for i in range(4):
        _png(tmp_path / "d" / f"{i}.png", rng)
    paths = [str(tmp_path / "d"), str(tmp_path / "d" / "0.png"), str(tmp_path / "nope.png")]
    code, out, err = _main(capsys, "predict", three, *paths, "--json", "--top", 3)
    assert code == 1
    expected = predict_files(str(three), paths, top=3)
    assert out == json.dumps(expected, indent=2) + "\n"  # the format of one json.dumps, as before
    assert len(expected) == 6 and expected[0]["file"] == str(tmp_path / "d" / "0.png")


def test_csv_columns_quoting_and_a_foreign_file_refused(models, tmp_path, capsys):
    three, two = models
    rng = np.random.default_rng(6)
    odd = tmp_path / 'a,"quoted"\nname.png'
    _png(odd, rng)
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    out = tmp_path / "out.csv"
    code, stdout, err = _main(capsys, "predict", three, odd, tmp_path / "bad.png", "--csv", out, "--top", 5)
    assert code == 1, err
    rows = _read_csv(out)
    header = ["path", "label", "class", "probability", "class_2", "probability_2", "class_3", "probability_3"]
    assert rows[0] == [*header, "error"]  # --top 5 of 3 classes: the 3 there are
    assert rows[1][0] == str(odd)  # quoted by the csv module: the name comes back whole
    assert sum(float(rows[1][k]) for k in (3, 5, 7)) == pytest.approx(1.0)
    assert rows[2][0] == str(tmp_path / "bad.png") and rows[2][1:8] == [""] * 7 and rows[2][8]
    assert "\\n" in stdout.splitlines()[0]  # the line on stdout has the newline escaped
    # a two-class model: the predicted class and its probability (the other has 1 - it)
    code, _, err = _main(capsys, "predict", two, odd, "--csv", out)
    assert code == 0, err
    rows = _read_csv(out)  # nnx's own CSV is replaced
    assert rows[0] == ["path", "label", "class", "probability", "error"]
    assert rows[1][2] in ("cat", "dog") and float(rows[1][3]) >= 0.5
    # a file nnx did not write is never overwritten: refused before anything is read
    foreign = tmp_path / "mine.csv"
    foreign.write_text("path,label\nmy,data\n")
    code, stdout, err = _main(capsys, "predict", two, odd, "--csv", foreign)
    assert code == 2 and stdout == ""
    assert "refusing to overwrite --csv" in err and len(err.strip().splitlines()) == 1
    assert foreign.read_text() == "path,label\nmy,data\n"
    assert not [p for p in tmp_path.iterdir() if ".nnx-tmp-" in p.name]


def test_a_broken_stdout_is_not_blamed_on_the_csv(models, tmp_path, capsys, monkeypatch):
    _, two = models
    _png(tmp_path / "x.png", np.random.default_rng(7))

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    code = cli.main(["predict", str(two), str(tmp_path / "x.png"), "--csv", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "o.csv" not in err and not (tmp_path / "o.csv").exists()


def test_a_refused_zip_member_is_named_inside_its_zip(models, tmp_path, capsys):
    """A member with an absolute name is skipped and named as inside the zip, never as
    the path it points at outside it (os.path.join would drop the zip's path)."""
    three, _ = models
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((SIZE, SIZE, 3), dtype=np.uint8)).save(buffer, format="PNG")
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("/etc/abs.png", buffer.getvalue())
        zf.writestr("ok.png", buffer.getvalue())
    code, stdout, err = _main(capsys, "predict", three, archive)
    assert code == 0, err
    assert f"{archive}//etc/abs.png (refused" in err
    assert " /etc/abs.png" not in err and stdout.startswith(f"{archive}/ok.png: ")


def test_a_closed_stdout_is_one_line_not_an_internal_error(models, tmp_path, capsys, monkeypatch):
    """``nnx predict ... >&-``: Python's sys.stdout is None; one line saying so, exit 2."""
    three, _ = models
    _png(tmp_path / "x.png", np.random.default_rng(7))
    monkeypatch.setattr("sys.stdout", None)
    code = cli.main(["predict", str(three), str(tmp_path / "x.png"), "--csv", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "internal error" not in err and "standard output" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()
