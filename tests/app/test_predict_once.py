"""``nnx predict`` over many pictures builds its network, and uploads the parameters, once."""

import numpy as np
import pytest

pytest.importorskip("PIL", reason="nnx predict decodes pictures with Pillow")

from image_fixtures import kaggle_folder  # noqa: E402

import nnx  # noqa: E402
from nnx.data import decode_image  # noqa: E402
from nnx.runner import predict_files  # noqa: E402


@pytest.fixture
def pictures_and_model(tmp_path):
    root = tmp_path / "imgs"
    kaggle_folder(root, n_per_class=4, size=16, with_bad=False)
    model = nnx.MLP([8 * 8 * 3, 5, 1], seed=0)
    model.metadata = {"classes": ["cat", "dog"], "image_size": 8}
    model.save(tmp_path / "model.npz")
    files = sorted(str(p) for p in root.glob("*.jpg"))
    return str(tmp_path / "model.npz"), files


def test_many_pictures_upload_the_parameters_once(pictures_and_model, monkeypatch):
    model_path, files = pictures_and_model
    ops = nnx.get_backend("numpy")
    shapes = []
    real = ops.asarray

    def counting_asarray(a, *args, **kwargs):  # a spy on the real backend's own method
        shapes.append(np.shape(a))
        return real(a, *args, **kwargs)

    monkeypatch.setattr(ops, "asarray", counting_asarray)
    results = predict_files(model_path, [*files, "missing.jpg"], backend="numpy")
    assert len(files) >= 6 and len(results) == len(files) + 1 and "error" in results[-1]
    first_layer = (5, 8 * 8 * 3)
    assert shapes.count(first_layer) == 1, shapes  # W1 went to the backend once, not per picture
    loaded = nnx.load(model_path)
    for name, result in zip(files, results):
        with open(name, "rb") as fh:
            alone = loaded.predict_proba(decode_image(fh.read(), 8).reshape(-1, 1), backend="numpy")
        p1 = float(alone[0, 0])  # "probability" is the predicted label's: p1 for label 1, else 1 - p1
        assert result["label"] == int(p1 > 0.5)
        assert result["probability"] == pytest.approx(p1 if result["label"] else 1 - p1, rel=1e-6)


def test_batches_bound_the_memory_and_give_the_same_answers(pictures_and_model, monkeypatch):
    model_path, files = pictures_and_model
    whole = predict_files(model_path, files, backend="numpy")
    from nnx.app import predict_job

    monkeypatch.setattr(predict_job, "PREDICT_BATCH_BYTES", 2 * 8 * 8 * 3)  # two pictures a batch
    assert predict_files(model_path, files, backend="numpy") == whole
