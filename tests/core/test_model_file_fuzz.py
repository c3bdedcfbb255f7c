"""Fuzz nnx.load with mutated model files: only ModelFormatError or a correct model comes out.

Valid files (logistic regression and MLPs, float32 and float64, stored and deflated, with
metadata and checkpoint ``extra``) are mutated: byte flips, truncation, spliced bytes,
members replaced by .npy headers claiming any dtype and shape, dropped, extra and duplicate
members, JSON mutations (wrong types, deep nesting, huge numbers, NaN literals), other
__meta__ dtypes (a pickle among them), a bare .npy, zip bombs, other zip compressions.
For each file ``load`` must raise ModelFormatError (one line) or return a model equal to
what numpy itself reads from the file, and equal to the original where the mutation left
the parameters alone; with the limits scaled down, peak memory (tracemalloc) must stay
within ``nnx.io.load_memory_bound()``.
"""

from __future__ import annotations

import functools
import io
import json
import tempfile
import tracemalloc
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="fuzz tests need hypothesis: pip install 'nnx-nets[dev]'")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from model_file_craft import members_of, meta_npy, meta_of, npy, npy_raw, zip_bytes  # noqa: E402

import nnx  # noqa: E402

# Scaled-down limits, so that a file the loader wrongly trusted would blow the bound.
LIMITS = {"MAX_PARAMETERS": 2**12, "MAX_META_CHARS": 2**15}
BOMB_BYTES = 24 << 20  # above load_memory_bound() at LIMITS (about 17 MiB)


def _build_bases() -> dict[str, bytes]:
    logreg = nnx.Sequential(nnx.Linear(4, 1, init="zeros", seed=1), nnx.Sigmoid())
    logreg.set_parameters([(np.array([[0.5, -1.0, 2.0, 1e-300]]), np.array([[0.25]]))])
    logreg.metadata = {"classes": ["no", "yes"], "image_size": 1, "data": "fuzz \u00e9\U0001f600"}
    mlp = nnx.Sequential(
        nnx.Linear(5, 4, init="he", seed=1),
        nnx.ReLU(),
        nnx.Linear(4, 3, seed=2),
        nnx.Tanh(),
        nnx.Linear(3, 1, seed=3),
        nnx.Sigmoid(),
    )
    mlp.set_parameters([(W.astype(np.float32), b.astype(np.float32)) for W, b in mlp.parameters()])
    mse = nnx.Sequential(
        nnx.Linear(3, 2, init="plain", seed=4), nnx.Tanh(), nnx.Linear(2, 1, seed=5), loss="mse"
    )
    rng = np.random.default_rng(0)
    extra = {
        "config": {"data": "synthetic", "epochs": 10, "lr": 0.01},
        "epochs_done": 5,
        "rng_state": rng.bit_generator.state,
        "history": {"epoch": [1, 2], "loss": [0.69, float("nan")], "backend": "numpy"},
    }
    checkpoint = nnx.MLP([3, 2, 1], seed=6, dropout=0.25)  # a Dropout layer and optimizer state
    flat = [p for pair in checkpoint.parameters() for p in pair]
    state_arrays = {"exp_avg": [p * 0.5 for p in flat], "best": [p - 1 for p in flat]}
    bases = {}
    with tempfile.TemporaryDirectory() as tmp:
        logreg.save(Path(tmp) / "logreg.npz")
        cfg, params = mlp.config(), mlp.parameters()
        nnx.io.write_model_file(Path(tmp) / "mlp.npz", cfg, params, "numpy", {"k": [1, None]}, extra)
        mse.save(Path(tmp) / "mse.npz")
        nnx.io.write_model_file(
            Path(tmp) / "checkpoint.npz",
            checkpoint.config(),
            checkpoint.parameters(),
            "numpy",
            {},
            extra,
            state_arrays=state_arrays,
        )
        for name in ("logreg", "mlp", "mse", "checkpoint"):
            bases[name] = (Path(tmp) / f"{name}.npz").read_bytes()
    bases["mse_deflated"] = zip_bytes(members_of(bases["mse"]), zipfile.ZIP_DEFLATED)
    return bases


BASES = _build_bases()


def _original(name: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.npz"
        path.write_bytes(BASES[name])
        return nnx.model.load_checkpoint(path)[:2]


ORIGINAL = {name: _original(name) for name in BASES}

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
DIMS = st.sampled_from([0, 1, 2, 3, 4, 5, 2**31, 2**40, 2**62, 10**19 - 1])
DESCRS = ["<f4", "<f8", ">f8", "|O", "<i8", "|b1", "<U8", "|S8", "V8", "<c16", "<f2", "<M8[s]", "f8"]
NAMES = [
    "W9.npy",
    "b2.npy",
    "W3.npy",
    "x.npy",
    "__meta__.npy",
    "W0.npy",
    "b0.npy",
    "../W0.npy",
    "W00.npy",
    "w0.npy",
    "s0W0.npy",
    "s1b1.npy",
    "s2W0.npy",
]


@functools.cache
def _bomb(name: str, member: str, header_matches: bool) -> bytes:
    """``name`` with ``member`` replaced by BOMB_BYTES of zeros, deflated to ~25 KB."""
    members = members_of(BASES[name])
    original = dict(members)[member]
    if header_matches:
        raw = original[: original.index(b"\n") + 1] + bytes(BOMB_BYTES)
    else:
        raw = npy_raw("<f8", (BOMB_BYTES // 8,), bytes(BOMB_BYTES))
    return zip_bytes([(n, raw if n == member else d) for n, d in members], zipfile.ZIP_DEFLATED)


def _walk_and_mutate(draw, node):
    """Replace, delete or add one value somewhere in the JSON tree (in place)."""
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            node[key] = draw(JSON)
        elif action == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.text(max_size=8))] = draw(JSON)
        else:
            node.insert(key, draw(JSON))
        return
    if isinstance(node, dict):
        node[draw(st.text(max_size=8))] = draw(JSON)


@st.composite
def mutated_files(draw):
    """(base name, mutation, file bytes, whether the mutation may change parameter values)."""
    name = draw(st.sampled_from(sorted(BASES)))
    data = BASES[name]
    members = members_of(data)
    member_names = [n for n, _ in members]
    kind = draw(
        st.sampled_from(
            ["flip", "truncate", "splice", "header", "drop", "add", "json", "json_text", "meta_dtype"]
            + ["bare_npy", "bomb", "compress", "fine"]
        )
    )
    changes_values = False
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
        out = bytes(out)
    elif kind == "truncate":
        out = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "splice":
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 64))
        out = data[:at] + draw(st.binary(max_size=64)) + data[at + cut :]
    elif kind == "header":
        target = draw(st.sampled_from(member_names))
        shape = tuple(draw(st.lists(DIMS, max_size=3)))
        descr = draw(st.sampled_from(DESCRS))
        count = int(np.prod(shape, dtype=object))
        itemsize = int(descr[2:].split("[")[0]) if descr[2:3].isdigit() else 8
        if draw(st.booleans()) and count * itemsize <= 4096:
            body = draw(st.binary(min_size=count * itemsize, max_size=count * itemsize))
            changes_values = True
        else:
            body = draw(st.binary(max_size=256))
        version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
        raw = npy_raw(descr, shape, body, fortran=draw(st.booleans()), version=version)
        out = zip_bytes([(n, raw if n == target else d) for n, d in members])
    elif kind == "drop":
        target = draw(st.sampled_from(member_names))
        out = zip_bytes([(n, d) for n, d in members if n != target])
    elif kind == "add":
        extra_name = draw(st.sampled_from(NAMES))
        body = draw(st.sampled_from([d for _, d in members]) | st.binary(max_size=64))
        at = draw(st.integers(0, len(members)))
        out = zip_bytes(members[:at] + [(extra_name, body)] + members[at:])
    elif kind == "json":
        meta = meta_of(members)
        for _ in range(draw(st.integers(1, 3))):
            _walk_and_mutate(draw, meta)
        out = zip_bytes([(n, meta_npy(meta) if n == "__meta__.npy" else d) for n, d in members])
    elif kind == "json_text":
        text = json.dumps(meta_of(members))
        depth = draw(st.sampled_from([30, 31, 32, 33, 1000, 100_000]))
        hostile = draw(
            st.sampled_from(
                [
                    "[" * depth + "]" * depth,
                    '{"a":' * depth + "0" + "}" * depth,
                    "9" * draw(st.sampled_from([50, 101, 5000])),
                    "-" + "9" * 100,
                    "1e999",
                    "NaN",
                    "-Infinity",
                    '"\\ud800"',
                ]
            )
        )
        field = draw(
            st.sampled_from(['"n_in": ', '"format_version": ', '"extra": ', '"metadata": ', '"loss": '])
        )
        if field in text and draw(st.booleans()):
            at = text.index(field) + len(field)
            _, end = json.JSONDecoder().raw_decode(text, at)  # the field's value ...
            text = text[:at] + hostile + text[end:]  # ... replaced by the hostile text
        else:
            text = draw(st.sampled_from([hostile, text[: draw(st.integers(0, len(text)))], text + "x"]))
        out = zip_bytes([(n, meta_npy(text) if n == "__meta__.npy" and text else d) for n, d in members])
    elif kind == "meta_dtype":
        text = json.dumps(meta_of(members))
        forms = [
            np.array(text.encode()),  # bytes, |S
            np.array([text, text]),  # 1-d unicode
            np.array([text], dtype=object),  # a pickle
            np.array(3.0),
            np.array(text).astype(">U" + str(len(text))),  # big-endian unicode: fine
        ]
        raw = npy(draw(st.sampled_from(forms)))
        out = zip_bytes([(n, raw if n == "__meta__.npy" else d) for n, d in members])
    elif kind == "bare_npy":
        out = dict(members)[draw(st.sampled_from(member_names))]
    elif kind == "bomb":
        target = draw(st.sampled_from(member_names))
        out = _bomb(name, target, draw(st.booleans()))
    elif kind == "compress":
        method = draw(
            st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
        )
        out = zip_bytes(members, method)
    else:
        out = data
    return name, kind, out, changes_values


def _numpy_reads(data: bytes, n_linear: int):
    """What numpy itself reads from the file (no pickle): the parameters, the metadata and
    the training-state arrays."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        params = [(z[f"W{i}"], z[f"b{i}"]) for i in range(n_linear)]
        states = {
            name: [z[f"s{k}{p}{i}"] for i in range(n_linear) for p in "Wb"]
            for k, name in enumerate(meta.get("state_arrays", []))
        }
    return params, meta, states


def _same_json(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN == NaN here


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(mutated_files())
def test_mutated_model_files_give_a_correct_model_or_model_format_error(case):
    name, kind, data, changes_values = case
    with tempfile.TemporaryDirectory() as tmp, mock.patch.multiple(nnx.io, **LIMITS):
        path = Path(tmp) / "m.npz"
        path.write_bytes(data)
        bound = nnx.io.load_memory_bound()
        tracemalloc.start()
        try:
            model, extra, states = nnx.model.load_checkpoint(path)
        except nnx.ModelFormatError as exc:
            model = None
            assert "\n" not in str(exc) and str(path) in str(exc)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert peak <= bound, f"{kind}: peak {peak} bytes over the bound {bound}"
    event(f"{kind}: {'model' if model is not None else 'ModelFormatError'}")
    if model is None:
        return
    # A model came out: it is what the file holds, read independently by numpy ...
    ref_params, ref_meta, ref_states = _numpy_reads(data, len(model.parameters()))
    assert list(states) == list(ref_states)
    for slot, arrays in ref_states.items():
        for got, want in zip(states[slot], arrays, strict=True):
            np.testing.assert_array_equal(got.reshape(want.shape), want)
    for (W, b), (rW, rb) in zip(model.parameters(), ref_params, strict=True):
        np.testing.assert_array_equal(W, rW)
        np.testing.assert_array_equal(b, rb.reshape(-1, 1))
        assert W.dtype == rW.dtype.newbyteorder("=")
    arch = ref_meta["architecture"]
    assert [(la.get("type"), la.get("n_in"), la.get("n_out")) for la in arch["layers"]] == [
        (la["type"], la.get("n_in"), la.get("n_out")) for la in model.config()["layers"]
    ]
    assert model.loss == arch["loss"]
    assert _same_json(model.metadata, ref_meta.get("metadata") or {})
    assert _same_json(extra, ref_meta.get("extra"))
    # ... and, unless the mutation wrote new values, the original's parameters.
    if not changes_values:
        original, _ = ORIGINAL[name]
        for (W, b), (oW, ob) in zip(model.parameters(), original.parameters(), strict=True):
            np.testing.assert_array_equal(W, oW)
            np.testing.assert_array_equal(b, ob)


def test_bases_load():
    """The unmutated files load to the models they were saved from (the fuzz starts here)."""
    for name in BASES:
        model, extra = ORIGINAL[name]
        assert (extra is not None) == (name in ("mlp", "checkpoint"))
    assert ORIGINAL["mlp"][0].parameters()[0][0].dtype == np.float32
    assert ORIGINAL["mse_deflated"][0].loss == "mse"
