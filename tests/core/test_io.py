"""Save/load: no pickle, atomic, versioned, clear errors for bad files."""

import json
import os
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest
from model_file_craft import members_of, meta_npy, meta_of, npy, npy_raw, replace, with_meta, zip_bytes

import nnx
from nnx.io import FORMAT_VERSION


@pytest.fixture
def trained(rng):
    X = rng.standard_normal((5, 30))
    Y = (X[0:1] > 0).astype(float)
    model = nnx.Sequential(
        nnx.Linear(5, 4, init="he", seed=1),
        nnx.ReLU(),
        nnx.Linear(4, 3, seed=2),
        nnx.Tanh(),
        nnx.Linear(3, 1, seed=3),
        nnx.Sigmoid(),
    )
    model.fit(X, Y, epochs=20, lr=0.1)
    return model, X


def test_round_trip_gives_identical_predictions(trained, tmp_path):
    model, X = trained
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = nnx.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.config() == model.config()
    for (W0, b0), (W1, b1) in zip(model.parameters(), loaded.parameters()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)
        assert W0.dtype == W1.dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp file left


def test_file_has_no_pickled_objects(trained, tmp_path):
    model, _ = trained
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
    assert meta["format_version"] == FORMAT_VERSION and meta["dtype"] == "float32"


def test_truncated_file(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(nnx.ModelFormatError, match="truncated or corrupt"):
        nnx.load(path)


def test_foreign_and_missing_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(nnx.ModelFormatError, match="not an nnx model"):
        nnx.load(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(nnx.ModelFormatError):
        nnx.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        nnx.load(tmp_path / "absent.npz")


def test_newer_version_refused(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["format_version"] = FORMAT_VERSION + 1
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(nnx.ModelFormatError, match="newer"):
        nnx.load(path)


def test_failed_save_keeps_previous_file(trained, tmp_path, monkeypatch):
    model, X = trained
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


# ------------------------------------------------- model files are untrusted input
# Crafted files: nnx.load gives a correct model or ModelFormatError, allocates nothing
# before the file's claims are checked, and never unpickles (tests/core/test_model_file_fuzz.py
# throws mutated files at it).


def _saved(model, tmp_path, name="m.npz"):
    path = tmp_path / name
    model.save(path)
    return path, members_of(path.read_bytes())


def _refused(path, match=None):
    """Load ``path``: ModelFormatError, with at most 1 MiB allocated on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(nnx.ModelFormatError, match=match) as info:
            nnx.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated before refusing"
    assert "\n" not in str(info.value)
    return str(info.value)


def _same_parameters(a, b):
    for (W0, b0), (W1, b1) in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)


def test_bare_npy_and_non_zip_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 3)))
    _refused(tmp_path / "a.npy", "bare .npy")
    (tmp_path / "z.npz").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    _refused(tmp_path / "z.npz", "not an npz archive")
    (tmp_path / "e.npz").write_bytes(zip_bytes([]))
    _refused(tmp_path / "e.npz", "not an npz archive")
    (tmp_path / "n.npz").write_bytes(zip_bytes([("a.txt", b"hi")]))
    _refused(tmp_path / "n.npz", "unexpected member 'a.txt'")


def test_directory_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        nnx.load(tmp_path)


def test_pickled_member_is_never_unpickled(trained, tmp_path, monkeypatch):
    model, _ = trained
    path, members = _saved(model, tmp_path)

    def no_pickle(*args, **kwargs):
        raise AssertionError("a model file was unpickled")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    obj = np.array([{"evil": 1}, None], dtype=object)
    for name in ("W0.npy", "__meta__.npy"):
        path.write_bytes(zip_bytes(replace(members, name, npy(obj))))
        _refused(path, "dtype|not a JSON string")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m + [("extra.npy", npy(np.zeros(2)))], "unexpected member 'extra.npy'"),
        (lambda m: m + [("W3.npy", npy(np.zeros((1, 1))))], "unexpected members \\['W3.npy'\\]"),
        (lambda m: [x for x in m if x[0] != "b1.npy"], "missing members \\['b1.npy'\\]"),
        (lambda m: m + [m[1]], "appears twice"),
        (lambda m: m + [m[0]], "appears twice"),
        (lambda m: [x for x in m if x[0] != "__meta__.npy"], "no __meta__"),
        (lambda m: m + [("W0.npy/x", b"")], "unexpected member"),
        (lambda m: m + [("W01.npy", b"")], "unexpected member"),
    ],
)
def test_unexpected_missing_and_duplicate_members(trained, tmp_path, change, match):
    model, _ = trained
    path, members = _saved(model, tmp_path)
    path.write_bytes(zip_bytes(change(members)))
    _refused(path, match)


@pytest.mark.parametrize(
    "member, header, match",
    [
        ("W0.npy", ("<i8", (4, 5)), "dtype '<i8'"),
        ("W0.npy", ("|O", (4, 5)), "dtype '\\|O'"),
        ("W0.npy", ("<c16", (4, 5)), "dtype"),
        ("W0.npy", ("<f4", (5, 4)), "shape \\(5, 4\\)"),
        ("W0.npy", ("<f4", (2**40, 2**40)), "shape"),
        ("W0.npy", ("<f4", (20,)), "shape"),
        ("b0.npy", ("<f4", (4, 2)), "shape"),
        ("__meta__.npy", ("<U999999999", ()), "characters of metadata"),
        ("__meta__.npy", ("<U10", (3,)), "not a JSON string"),
        ("__meta__.npy", ("|S10", ()), "not a JSON string"),
    ],
)
def test_npy_headers_are_checked_before_reading_data(trained, tmp_path, member, header, match):
    model, _ = trained
    path, members = _saved(model, tmp_path)
    path.write_bytes(zip_bytes(replace(members, member, npy_raw(*header, data=bytes(80)))))
    _refused(path, match)


@pytest.mark.parametrize(
    "member, raw, match",
    [
        ("W0.npy", npy_raw("<f4", (4, 5), bytes(79)), "79 data bytes"),
        ("W0.npy", npy_raw("<f4", (4, 5), bytes(81)), "81 data bytes"),
        ("W0.npy", npy_raw("<f4", (4, 5), bytes(80), version=(9, 0)), "format version"),
        ("W0.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': [1]}\n" + bytes(80), "malformed"),
        ("W0.npy", b"\x93NUMPY\x01\x00\x10\x00" + b"x" * 15 + b"\n" + bytes(80), "malformed"),
        ("W0.npy", b"not an npy file at all" + bytes(80), "not a .npy"),
        (
            "__meta__.npy",
            b"\x93NUMPY\x01\x00" + (5000).to_bytes(2, "little") + bytes(5000),
            "5000-byte .npy header",
        ),
        ("__meta__.npy", b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little"), "2147483648-byte .npy header"),
        ("__meta__.npy", b"\x93NUMP", "ends early"),
        ("__meta__.npy", npy_raw("<U3", (), b"[]"), "2 data bytes"),
    ],
)
def test_malformed_npy_members(trained, tmp_path, member, raw, match):
    model, _ = trained
    path, members = _saved(model, tmp_path)
    path.write_bytes(zip_bytes(replace(members, member, raw)))
    _refused(path, match)


def _arch(n_in, n_out):
    return {
        "layers": [{"type": "Linear", "n_in": n_in, "n_out": n_out, "init": "zeros"}, {"type": "Sigmoid"}],
        "loss": "bce",
    }


def test_a_tiny_file_cannot_ask_for_terabytes(tmp_path):
    """A file of a few hundred bytes claiming a 2**20 x 2**20 layer, a 4 GiB member, a
    2**40 x 2**40 array or a 64 MiB zip bomb is refused with nothing allocated for it."""
    meta = {"format": "nnx-model", "format_version": 1, "architecture": _arch(2**20, 1)}
    small = [("W0.npy", npy(np.zeros((1, 4)))), ("b0.npy", npy(np.zeros((1, 1))))]
    path = tmp_path / "m.npz"
    path.write_bytes(zip_bytes([("__meta__.npy", meta_npy(meta)), *small]))
    assert path.stat().st_size < 2000
    _refused(path, "declares .* bytes, which cannot hold the 1048576 floats")

    meta["architecture"] = _arch(2**20, 2**20)
    path.write_bytes(zip_bytes([("__meta__.npy", meta_npy(meta)), *small]))
    _refused(path, "more than 67108864 parameters")

    meta["architecture"] = _arch(4, 1)
    claim = npy_raw("<f8", (2**40, 2**40), bytes(32))
    path.write_bytes(zip_bytes([("__meta__.npy", meta_npy(meta)), ("W0.npy", claim), small[1]]))
    _refused(path)

    # the zip directory says W0 holds 0xFFFFFFF0 bytes (non-zip64 32-bit size fields)
    data = bytearray(zip_bytes([("__meta__.npy", meta_npy(meta)), *small]))
    entry = data.index(b"PK\x01\x02")  # the directory's entries, then W0's
    while data[entry + 46 : entry + 52] != b"W0.npy":
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 20 : entry + 28] = (0xFFFFFFF0).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    _refused(path, "declares 4294967280 bytes")

    bomb = [("W0.npy", npy_raw("<f8", (1, 4), bytes(64 << 20))), small[1]]
    path.write_bytes(zip_bytes([("__meta__.npy", meta_npy(meta)), *bomb], zipfile.ZIP_DEFLATED))
    assert path.stat().st_size < 200_000
    _refused(path, "declares 67108992 bytes")


def test_zip_directory_is_bounded(tmp_path):
    many = [(f"W{i}.npy", b"") for i in range(600)]
    (tmp_path / "many.npz").write_bytes(zip_bytes(many))
    _refused(tmp_path / "many.npz", "600 members|zip directory asks")
    huge = [("x" * 60000 + str(i), b"") for i in range(10)]
    (tmp_path / "huge.npz").write_bytes(zip_bytes(huge))
    _refused(tmp_path / "huge.npz", "zip directory asks for a .*-byte read")


def test_other_compression_and_encryption_refused(trained, tmp_path):
    model, _ = trained
    path, members = _saved(model, tmp_path)
    path.write_bytes(zip_bytes(members, zipfile.ZIP_LZMA))
    _refused(path, "zip method 14")
    data = bytearray(zip_bytes(members))
    entry = data.index(b"PK\x01\x02")
    data[entry + 8] |= 1  # the encrypted flag in the directory
    path.write_bytes(bytes(data))
    _refused(path, "encrypted")


META_MUTATIONS = {
    "format_version bool": lambda m: m.update(format_version=True),
    "format_version str": lambda m: m.update(format_version="1"),
    "format_version float": lambda m: m.update(format_version=1.0),
    "format_version 0": lambda m: m.update(format_version=0),
    "format missing": lambda m: m.pop("format"),
    "not an object": lambda m: (m.clear(), m.update(format=["nnx-model"])),
    "architecture list": lambda m: m.update(architecture=[]),
    "architecture extra key": lambda m: m["architecture"].update(seed=1),
    "layers dict": lambda m: m["architecture"].update(layers={}),
    "layers empty": lambda m: m["architecture"].update(layers=[]),
    "too many layers": lambda m: m["architecture"]["layers"].extend([{"type": "ReLU"}] * 300),
    "layer not object": lambda m: m["architecture"]["layers"].__setitem__(0, "Linear"),
    "layer unknown type": lambda m: m["architecture"]["layers"][1].update(type="Softmax"),
    "layer type not str": lambda m: m["architecture"]["layers"][1].update(type=["ReLU"]),
    "layer unknown key": lambda m: m["architecture"]["layers"][1].update(inplace=True),
    "n_in float": lambda m: m["architecture"]["layers"][0].update(n_in=5.0),
    "n_in str": lambda m: m["architecture"]["layers"][0].update(n_in="5"),
    "n_in bool": lambda m: m["architecture"]["layers"][0].update(n_in=True),
    "n_in zero": lambda m: m["architecture"]["layers"][0].update(n_in=0),
    "n_out negative": lambda m: m["architecture"]["layers"][0].update(n_out=-4),
    "n_out huge": lambda m: m["architecture"]["layers"][0].update(n_out=10**30),
    "n_out changed": lambda m: m["architecture"]["layers"][0].update(n_out=5),
    "init unknown": lambda m: m["architecture"]["layers"][0].update(init="glorot"),
    "init not str": lambda m: m["architecture"]["layers"][0].update(init=None),
    "loss unknown": lambda m: m["architecture"].update(loss="hinge"),
    "loss list": lambda m: m["architecture"].update(loss=["bce"]),
    "bce without sigmoid": lambda m: m["architecture"]["layers"].pop(),
    "two activations": lambda m: m["architecture"]["layers"].insert(2, {"type": "ReLU"}),
    "dtype": lambda m: m.update(dtype="int8"),
    "backend": lambda m: m.update(backend=7),
    "nnx_version": lambda m: m.update(nnx_version=1.0),
    "metadata list": lambda m: m.update(metadata=[1]),
    "extra str": lambda m: m.update(extra="state"),
    "classes three": lambda m: m["metadata"].update(classes=["a", "b", "c"]),
    "classes not str": lambda m: m["metadata"].update(classes=[0, 1]),
    "classes str": lambda m: m["metadata"].update(classes="ab"),
    "image_size str": lambda m: m["metadata"].update(image_size="64"),
    "image_size float": lambda m: m["metadata"].update(image_size=2.0),
    "image_size zero": lambda m: m["metadata"].update(image_size=0),
}


@pytest.mark.parametrize("mutation", sorted(META_MUTATIONS))
def test_metadata_structure_and_types_are_checked(trained, tmp_path, mutation):
    model, _ = trained
    model.metadata = {"classes": ["cat", "dog"], "image_size": 2, "data": "x"}
    path, members = _saved(model, tmp_path)
    meta = meta_of(members)
    META_MUTATIONS[mutation](meta)
    path.write_bytes(zip_bytes(with_meta(members, meta)))
    _refused(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[" * 33 + "]" * 33, "nested deeper than 32"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 32|JSON arrays/objects"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "nested deeper than 32"),
        ("[" * 70_000, "JSON arrays/objects"),
        ('{"format": "nnx-model", "format_version": ' + "9" * 5000 + "}", "more than 100 digits"),
        ('{"format": "nnx-model", "format_version": NaN}', "format_version is nan"),
        ('{"format": "nnx-model", "format_version": 1e999}', "format_version is inf"),
        ('{"format": "nnx-model", "format_version": 1', "not valid JSON"),
        ("", "not valid JSON"),
        ("\x00\x00", "not valid JSON"),
    ],
)
def test_hostile_json(trained, tmp_path, text, match):
    model, _ = trained
    path, members = _saved(model, tmp_path)
    path.write_bytes(
        zip_bytes(with_meta(members, text) if text else replace(members, "__meta__.npy", npy(np.array(""))))
    )
    _refused(path, match)


def test_non_utf32_metadata_refused(trained, tmp_path):
    model, _ = trained
    path, members = _saved(model, tmp_path)
    path.write_bytes(zip_bytes(replace(members, "__meta__.npy", npy_raw("<U2", (), b"\x00\xd8\x00\x00" * 2))))
    _refused(path, "truncated or corrupt")  # a lone surrogate is not a character


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_parameters_refused(trained, tmp_path, bad):
    model, _ = trained
    path, members = _saved(model, tmp_path)
    W = model.parameters()[1][0]
    W[0, 0] = bad
    path.write_bytes(zip_bytes(replace(members, "W1.npy", npy(W))))
    _refused(path, "NaN or inf")


def test_stored_variants_load_identically(trained, tmp_path):
    """Fortran order, big-endian, .npy format 2.0, 1-d b, float64 and deflated members all
    load to the same parameters (numpy may write any of them)."""
    model, X = trained
    path, members = _saved(model, tmp_path)
    params = model.parameters()
    W0, b0 = params[0]
    variants = [
        replace(members, "W0.npy", npy(np.asfortranarray(W0))),
        replace(members, "W0.npy", npy(W0.astype(">f4"))),
        replace(members, "W0.npy", npy_raw("<f4", W0.shape, W0.tobytes(), version=(2, 0))),
        replace(members, "b0.npy", npy(b0.ravel())),
        replace(members, "W0.npy", npy(W0.astype(np.float64))),
    ]
    for variant in variants:
        path.write_bytes(zip_bytes(variant))
        _same_parameters(nnx.load(path), model)
    path.write_bytes(zip_bytes(members, zipfile.ZIP_DEFLATED))
    loaded = nnx.load(path)
    _same_parameters(loaded, model)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_checkpoint_extra_round_trips(trained, tmp_path):
    model, _ = trained
    rng = np.random.default_rng(7)
    extra = {"epochs_done": 3, "rng_state": rng.bit_generator.state, "history": {"loss": [0.5, float("nan")]}}
    nnx.io.write_model_file(tmp_path / "c.npz", model.config(), model.parameters(), "numpy", {"a": 1}, extra)
    loaded, state, _ = nnx.model.load_checkpoint(tmp_path / "c.npz")
    _same_parameters(loaded, model)
    assert state["rng_state"] == rng.bit_generator.state and state["epochs_done"] == 3
    assert np.isnan(state["history"]["loss"][1]) and loaded.metadata == {"a": 1}
    assert loaded.last_backend == "numpy"


def test_limits_are_inclusive(trained, tmp_path, monkeypatch):
    model, _ = trained
    path, members = _saved(model, tmp_path)
    n = sum(W.size + b.size for W, b in model.parameters())
    chars = len(json.dumps(meta_of(members)))
    for limit, value, match in (
        ("MAX_PARAMETERS", n, "parameters"),
        ("MAX_META_CHARS", chars, "characters of metadata"),
        ("MAX_LAYERS", len(model.layers), "layers"),
        ("MAX_JSON_DEPTH", 4, "nested deeper"),
    ):
        monkeypatch.setattr(nnx.io, limit, value)
        _same_parameters(nnx.load(path), model)
        monkeypatch.setattr(nnx.io, limit, value - 1)
        _refused(path, match)
        monkeypatch.undo()


def test_peak_memory_within_the_stated_bound(tmp_path):
    """25 bytes per stored float64 parameter (see nnx.io.load_memory_bound), measured."""
    model = nnx.Sequential(
        nnx.Linear(1000, 500, seed=1), nnx.ReLU(), nnx.Linear(500, 1, seed=2), nnx.Sigmoid()
    )
    model.set_parameters(model.parameters())
    path = tmp_path / "big.npz"
    model.save(path)
    n = sum(W.size + b.size for W, b in model.parameters())
    chars = len(json.dumps(meta_of(members_of(path.read_bytes()))))
    tracemalloc.start()
    try:
        loaded = nnx.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _same_parameters(loaded, model)
    assert peak <= 25 * n + 32 * chars + (1 << 20), peak / n
    assert nnx.io.LOAD_MEMORY_BOUND == 25 * 2**26 + 32 * 2**23 + (16 << 20)


@pytest.mark.parametrize(
    "mutation", ["classes three", "image_size str", "n_in float", "format_version str", "layer unknown key"]
)
def test_predict_cli_reports_crafted_files_in_one_line(trained, tmp_path, capsys, mutation):
    from nnx.cli import main

    model, _ = trained
    model.metadata = {"classes": ["cat", "dog"], "image_size": 2, "data": "x"}
    path, members = _saved(model, tmp_path)
    meta = meta_of(members)
    META_MUTATIONS[mutation](meta)
    path.write_bytes(zip_bytes(with_meta(members, meta)))
    assert main(["predict", str(path), str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnx: error: ") and err.count("\n") == 1, err


def test_layer_from_config_refuses_what_config_never_writes():
    from nnx.layers import layer_from_config

    assert layer_from_config({"type": "Linear", "n_in": 3, "n_out": 2}).init == "xavier"
    for cfg in (
        {"type": "Linear", "n_in": 3.7, "n_out": 2},
        {"type": "Linear", "n_in": "3", "n_out": 2},
        {"type": "Linear", "n_in": True, "n_out": 2},
        {"type": "Linear", "n_in": 3, "n_out": 2, "bias": False},
        {"type": "ReLU", "alpha": 0.1},
        {"type": None},
        ["Linear"],
    ):
        with pytest.raises((TypeError, ValueError)):
            layer_from_config(cfg)
