"""Damaged files, generated: a loader either loads or raises DataError, never anything else."""

import io
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nnx.data import DataError, load_csv, load_images, load_npz  # noqa: E402

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, X=np.linspace(0, 1, 12).reshape(3, 4), Y=np.array([0, 1, 1, 0]))
    return buf.getvalue()


NPZ = _npz_bytes()
damage = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)


def _damaged(data: bytes, flips, cut) -> bytes:
    out = bytearray(data)
    for at, value in flips:
        out[at % len(out)] = value
    return bytes(out[: max(0, len(out) - cut)])


@SETTINGS
@given(flips=damage, cut=st.sampled_from([0, 0, 1, 22, 100]))
def test_damaged_npz_loads_or_is_a_data_error(tmp_path, flips, cut):
    path = tmp_path / "d.npz"
    path.write_bytes(_damaged(NPZ, flips, cut))
    try:
        X, Y = load_npz(path)
    except DataError as exc:
        assert "\n" not in str(exc)
    else:
        assert X.shape[1] == Y.shape[1]


@SETTINGS
@given(text=st.binary(max_size=200) | st.text(alphabet='01,.-+e \n\r\tnaif"x', max_size=80).map(str.encode))
def test_any_bytes_as_csv_load_or_are_a_data_error(tmp_path, text):
    path = tmp_path / "d.csv"
    path.write_bytes(text)
    try:
        X, Y = load_csv(path)
    except DataError as exc:
        assert "\n" not in str(exc)
    else:
        assert np.isfinite(X).all() and set(np.unique(Y)) <= {0.0, 1.0}


def _image_zip() -> bytes:
    pytest.importorskip("PIL", reason="image tests need Pillow")
    from image_fixtures import class_images, jpeg_bytes

    cats, dogs = class_images(2, size=16)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (c, d) in enumerate(zip(cats, dogs)):
            zf.writestr(f"cat.{i}.jpg", jpeg_bytes(c))
            zf.writestr(f"dog.{i}.jpg", jpeg_bytes(d))
    return buf.getvalue()


@SETTINGS
@given(flips=damage, cut=st.sampled_from([0, 0, 0, 1, 30]))
def test_damaged_image_zip_loads_or_is_a_data_error(tmp_path, flips, cut):
    path = tmp_path / "a.zip"
    path.write_bytes(_damaged(_image_zip(), flips, cut))
    try:
        data = load_images(path, size=8, val_split=0, progress=False, workers=1)
    except DataError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(data.files) + len(data.skipped) >= 1
