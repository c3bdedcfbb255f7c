"""ONNX export (``Sequential.to_onnx``, ``nnx export``): every model kind nnx trains, run by
onnxruntime, against ``predict_proba`` (float32 to 1e-6, float64 to 1e-12) and ``predict``
(labels equal); uint8 pixels; Dropout; regression; the command end to end; output safety;
the one-line errors. Tests that need onnx and onnxruntime skip, saying so, without them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from nnx_testing import ROOT

import nnx
from nnx import Dropout, Linear, ReLU, Sequential, Sigmoid, Tanh
from nnx.app import cli
from nnx.errors import UnsafeOutputError

HAVE_ONNX = (
    importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None
)
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX, reason="ONNX export needs onnx and onnxruntime: pip install 'nnx-nets[onnx]'"
)
TOLERANCE = {"float32": 1e-6, "float64": 1e-12}
N = 12  # features of the tiny models
README = (ROOT / "README.md").read_text()


def _kinds() -> dict[str, Callable[[], Sequential]]:
    return {
        "logistic": lambda: nnx.LogisticRegression(N),
        "softmax-regression": lambda: nnx.SoftmaxRegression(N, 4),
        "mlp-relu-binary": lambda: nnx.MLP([N, 8, 6, 1], hidden="relu", seed=1),
        "mlp-sigmoid-binary": lambda: nnx.MLP([N, 8, 1], hidden="sigmoid", seed=1),
        "mlp-tanh-3-classes-dropout": lambda: nnx.MLP([N, 8, 3], hidden="tanh", dropout=0.3, seed=1),
        "mse-sigmoid-binary": lambda: Sequential(
            Linear(N, 6), Tanh(), Linear(6, 1), Sigmoid(), loss="mse", seed=2
        ),
        "mse-tanh-output": lambda: Sequential(Linear(N, 6), ReLU(), Linear(6, 1), Tanh(), loss="mse", seed=2),
        "hidden-linear": lambda: Sequential(Linear(N, 5), Linear(5, 1), Sigmoid(), seed=3),
        "regression": lambda: Sequential(
            Linear(N, 6), ReLU(), Dropout(0.2), Linear(6, 3), loss="mse", seed=2
        ),
    }


KINDS = _kinds()


def _data(model: Sequential, m: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, m))
    if model.is_regression:
        return X, X[: model.n_outputs] - X[model.n_outputs : 2 * model.n_outputs]
    if model.loss == "cross_entropy":
        return X, np.argmax(X[: model.n_classes], axis=0)
    return X, (X[0] + X[1] > 0).astype(np.int64)


def _trained(kind: str, dtype: str) -> tuple[Sequential, np.ndarray]:
    model = KINDS[kind]()
    X, Y = _data(model)
    model.fit(X, Y, epochs=20, lr=0.3, dtype=dtype, seed=0, backend="numpy")
    return model, X


def _session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path, X_rows: np.ndarray) -> dict[str, np.ndarray]:
    session = _session(path)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X_rows})))


def _rows(X: np.ndarray, dtype: str) -> np.ndarray:
    """nnx's (n, m) as the (m, n) rows an ONNX runtime takes."""
    return np.ascontiguousarray(X.T, dtype=dtype)


@needs_onnx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_model_kind_matches_predict_proba_and_predict(kind, dtype, tmp_path):
    model, X = _trained(kind, dtype)
    path = tmp_path / "model.onnx"
    model.to_onnx(path)
    out = _run(path, _rows(X, dtype))
    if model.is_regression:
        assert set(out) == {"prediction"}
        expected = model.predict(X, backend="numpy").T
        assert out["prediction"].dtype == np.dtype(dtype) and out["prediction"].shape == expected.shape
        np.testing.assert_allclose(out["prediction"], expected, rtol=0, atol=TOLERANCE[dtype])
        return
    assert list(out) == ["probabilities", "label"]
    proba = model.predict_proba(X, backend="numpy").T
    assert out["probabilities"].dtype == np.dtype(dtype) and out["probabilities"].shape == proba.shape
    np.testing.assert_allclose(out["probabilities"], proba, rtol=0, atol=TOLERANCE[dtype])
    assert out["label"].dtype == np.int64 and out["label"].shape == (X.shape[1],)
    np.testing.assert_array_equal(out["label"], model.predict(X, backend="numpy").ravel())


@needs_onnx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uint8_pixels_take_the_scale_inside_the_graph(dtype, tmp_path):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(N, 80), dtype=np.uint8)
    labels = (pixels[0].astype(int) > pixels[1]).astype(np.int64)
    model = nnx.MLP([N, 8, 1], hidden="relu", seed=4)
    model.fit(pixels, labels, epochs=20, lr=0.5, dtype=dtype, seed=0, backend="numpy")
    model.metadata["image_size"] = 2  # trained on pictures: uint8 input by default
    model.to_onnx(tmp_path / "m.onnx")
    session = _session(tmp_path / "m.onnx")
    assert session.get_inputs()[0].type == "tensor(uint8)"
    proba, label = session.run(None, {"X": np.ascontiguousarray(pixels.T)})
    np.testing.assert_allclose(
        proba, model.predict_proba(pixels, backend="numpy").T, rtol=0, atol=TOLERANCE[dtype]
    )
    np.testing.assert_array_equal(label, model.predict(pixels, backend="numpy").ravel())
    # features instead, when asked: the same numbers from the scaled floats
    model.to_onnx(tmp_path / "f.onnx", input_dtype="float64")
    scaled = pixels.astype(dtype) * np.dtype(dtype).type(1 / 255)
    assert _session(tmp_path / "f.onnx").get_inputs()[0].type == "tensor(double)"
    np.testing.assert_allclose(
        _run(tmp_path / "f.onnx", _rows(scaled, "float64"))["probabilities"], proba, atol=1e-6
    )


@needs_onnx
def test_the_graph_states_its_opset_names_and_metadata(tmp_path):
    import onnx

    from nnx.onnx_export import OPSET

    model, X = _trained("mlp-tanh-3-classes-dropout", "float32")
    model.metadata["classes"] = ["cat", "dog", "eel"]
    model.to_onnx(tmp_path / "m.onnx", dtype="float64")
    proto = onnx.load(tmp_path / "m.onnx")
    assert OPSET == 17 and [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert proto.producer_name == "nnx" and proto.producer_version == nnx.__version__
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Gemm", "Tanh", "Gemm", "Softmax", "ArgMax"]  # no Dropout at inference
    (x,) = proto.graph.input
    dims = x.type.tensor_type.shape.dim
    assert x.name == "X" and dims[0].dim_param == "m" and dims[1].dim_value == N
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["nnx_version"] == nnx.__version__ and props["classes"] == '["cat", "dog", "eel"]'
    assert props["dtype"] == "float64"
    out = _run(tmp_path / "m.onnx", _rows(X, "float64"))
    np.testing.assert_allclose(
        out["probabilities"], model.predict_proba(X, dtype="float64", backend="numpy").T, atol=1e-12
    )


@needs_onnx
def test_bad_arguments_are_refused_before_the_path_is_touched(tmp_path):
    model = nnx.LogisticRegression(3)
    with pytest.raises(ValueError, match="input_dtype must be one of float32, float64, uint8"):
        model.to_onnx(tmp_path / "m.onnx", input_dtype="int8")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        model.to_onnx(tmp_path / "m.onnx", dtype="float16")
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_never_over_a_file_nnx_did_not_write(tmp_path, capsys):
    model = nnx.LogisticRegression(3)
    foreign = tmp_path / "other.onnx"
    foreign.write_bytes(b"\x08\x08\x12\x07pytorch")  # an ONNX model of another producer
    with pytest.raises(UnsafeOutputError, match="not an ONNX model written by nnx"):
        model.to_onnx(foreign)
    assert foreign.read_bytes() == b"\x08\x08\x12\x07pytorch"
    model.save(tmp_path / "model.npz")
    assert cli.main(["export", str(tmp_path / "model.npz"), str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to overwrite" in err
    own = tmp_path / "own.onnx"  # an earlier export of nnx is replaced, atomically
    model.to_onnx(own)
    model.to_onnx(own, dtype="float32")
    assert _session(own).get_inputs()[0].type == "tensor(float)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "other.onnx", "own.onnx"]


def _one_line_error(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("nnx: error: ")
    return captured.err


@needs_onnx
def test_the_command_fails_in_one_line(tmp_path, capsys):
    nnx.LogisticRegression(3).save(tmp_path / "model.npz")
    (tmp_path / "notes.txt").write_text("not a model")
    model = str(tmp_path / "model.npz")
    assert "no model file at" in _one_line_error(capsys, ["export", str(tmp_path / "none.npz"), "o.onnx"])
    assert "no model file at" in _one_line_error(capsys, ["export", str(tmp_path), "o.onnx"])
    assert "not an nnx model file" in _one_line_error(
        capsys, ["export", str(tmp_path / "notes.txt"), "o.onnx"]
    )
    missing = str(tmp_path / "no" / "o.onnx")
    assert "does not exist" in _one_line_error(capsys, ["export", model, missing])
    assert "it is a folder" in _one_line_error(capsys, ["export", model, str(tmp_path)])
    assert "refusing to overwrite" in _one_line_error(capsys, ["export", model, str(tmp_path / "notes.txt")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "notes.txt"]


def test_without_onnx_the_error_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    model = nnx.LogisticRegression(3)
    with pytest.raises(ImportError, match=re.escape("pip install 'nnx-nets[onnx]'")) as info:
        model.to_onnx(tmp_path / "m.onnx")
    assert "\n" not in str(info.value)
    model.save(tmp_path / "model.npz")
    err = _one_line_error(capsys, ["export", str(tmp_path / "model.npz"), str(tmp_path / "m.onnx")])
    assert "pip install 'nnx-nets[onnx]'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


@needs_onnx
def test_nnx_export_end_to_end(tmp_path):
    """One launch of the command, as a user runs it, on a model trained on pictures."""
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(2 * 2 * 3, 60), dtype=np.uint8)
    labels = pixels[:3].argmax(axis=0)
    model = nnx.MLP([12, 6, 3], seed=0)
    model.fit(pixels, labels, epochs=20, lr=0.5, seed=0, backend="numpy")
    model.metadata.update(image_size=2, classes=["red", "green", "blue"])
    model.save(tmp_path / "model.npz")
    out = tmp_path / "model.onnx"
    r = subprocess.run(
        [sys.executable, "-m", "nnx", "export", str(tmp_path / "model.npz"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        f"wrote {out}: ONNX opset 17, input X (m, 12) uint8, outputs probabilities, label, compute float32\n"
    )
    proba, label = _session(out).run(None, {"X": np.ascontiguousarray(pixels.T)})
    loaded = nnx.load(tmp_path / "model.npz")
    np.testing.assert_allclose(proba, loaded.predict_proba(pixels, backend="numpy").T, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(label, loaded.predict(pixels, backend="numpy").ravel())


def test_the_readme_lists_the_export_api_and_command(monkeypatch):
    from test_readme import test_the_cli_table_matches_help

    test_the_cli_table_matches_help("export", monkeypatch)
    assert "`to_onnx(path, dtype=, input_dtype=)`" in README
    assert "Opset 17" in README


@needs_onnx
def test_the_readme_deployment_runs(tmp_path, monkeypatch):
    """The README's export command and onnxruntime lines, on a model trained on 64 x 64
    pictures: the labels are nnx's."""
    (command,) = [b for b in re.findall(r"```bash\n(.*?)```", README, re.S) if "nnx export" in b]
    (usage,) = [b for b in re.findall(r"```text\n(.*?)```", README, re.S) if "onnxruntime" in b]
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(12288, 4), dtype=np.uint8)
    model = nnx.LogisticRegression(12288)
    model.set_parameters([(rng.standard_normal((1, 12288)) * 0.01, np.zeros((1, 1)))])
    model.metadata["image_size"] = 64
    (tmp_path / "my_run").mkdir()
    model.save("my_run/model.npz")
    assert cli.main(command.split("  #", 1)[0].split()[1:]) == 0
    namespace = {"pixels": np.ascontiguousarray(pixels.T)}
    exec(compile(usage, "README.md onnxruntime lines", "exec"), namespace)  # noqa: S102
    np.testing.assert_array_equal(namespace["label"], model.predict(pixels, backend="numpy").ravel())
    np.testing.assert_allclose(
        namespace["probabilities"], model.predict_proba(pixels, backend="numpy").T, atol=1e-6
    )
