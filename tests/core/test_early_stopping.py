"""Early stopping on the validation loss or accuracy, and the epoch callback, on every backend."""

import json

import numpy as np
import pytest

import nnx


def _data(seed=0, n=8, m=40):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m))
    Y = (X[0] + X[1] > 0).astype(float).reshape(1, -1)
    return np.asfortranarray(X), Y


def _model():
    return nnx.MLP([8, 16, 1], seed=3)


def test_stops_after_patience_epochs_without_improvement_and_restores_the_best(backend):
    X, Y = _data()
    Xv, _ = _data(seed=1)
    Yv = 1 - (Xv[0] + Xv[1] > 0).astype(float).reshape(1, -1)  # flipped labels: learning hurts
    model = _model()
    h = model.fit(
        X,
        Y,
        epochs=200,
        optimizer=nnx.Adam(lr=0.05),
        validation_data=(Xv, Yv),
        early_stopping=nnx.EarlyStopping(patience=5),
        backend=backend,
        dtype="float64",
    )
    assert h.best_epoch == 1 and h.stopped_epoch == 6 and h.epochs == 6 and h.epoch[-1] == 6
    assert h.stop_reason.startswith("early stopping: val_loss did not improve by more than 0 for 5 epochs")
    assert "best val_loss" in h.stop_reason and "at epoch 1, whose parameters were restored" in h.stop_reason
    assert h.val_loss[0] == min(h.val_loss)
    one = _model()
    one.fit(X, Y, epochs=1, optimizer=nnx.Adam(lr=0.05), backend=backend, dtype="float64")
    for (W, b), (W1, b1) in zip(model.parameters(), one.parameters()):
        np.testing.assert_array_equal(W, W1)
        np.testing.assert_array_equal(b, b1)
    assert model.evaluate(Xv, Yv, backend=backend)["loss"] == pytest.approx(h.val_loss[0], rel=1e-12)
    saved = nnx.History.from_dict(json.loads(h.to_json()))
    assert (
        saved.stop_reason == h.stop_reason and saved.best_epoch == 1 and saved.early_stopping["patience"] == 5
    )


def test_without_an_early_stop_the_best_epoch_is_still_restored():
    X, Y = _data(seed=2)
    Xv, Yv = _data(seed=3, m=30)
    model = _model()
    h = model.fit(
        X,
        Y,
        epochs=60,
        lr=0.5,
        validation_data=(Xv, Yv),
        early_stopping=nnx.EarlyStopping(patience=1000),
        backend="numpy",
        dtype="float64",
    )
    assert h.stop_reason == "" and h.stopped_epoch is None and h.epochs == 60
    best = int(np.argmin(h.val_loss))
    assert h.best_epoch == h.epoch[best]
    assert model.evaluate(Xv, Yv)["loss"] == pytest.approx(h.val_loss[best], rel=1e-12)


def test_restore_best_false_keeps_the_last_epoch():
    X, Y = _data()
    Xv, _ = _data(seed=1)
    Yv = 1 - (Xv[0] + Xv[1] > 0).astype(float).reshape(1, -1)
    model = _model()
    es = nnx.EarlyStopping(patience=3, restore_best=False)
    h = model.fit(X, Y, epochs=50, lr=0.5, validation_data=(Xv, Yv), early_stopping=es, dtype="float64")
    assert h.epochs == 4 and "restored" not in h.stop_reason
    assert model.evaluate(Xv, Yv)["loss"] == pytest.approx(h.val_loss[-1], rel=1e-12)


def test_min_delta_and_accuracy_monitor():
    X, Y = _data(seed=4)
    Xv, Yv = _data(seed=5)
    h = _model().fit(
        X,
        Y,
        epochs=100,
        lr=0.1,
        validation_data=(Xv, Yv),
        dtype="float64",
        early_stopping=nnx.EarlyStopping(patience=4, min_delta=10.0),
    )
    assert h.epochs == 5 and h.best_epoch == 1  # nothing improves by 10
    es = nnx.EarlyStopping(patience=3, monitor="val_accuracy")
    assert es.mode == "max"
    progress = es.fresh()
    assert es.update(progress, 1, 0.5) == (True, False)
    assert es.update(progress, 2, 0.5) == (False, False)
    assert es.update(progress, 3, 0.75) == (True, False)
    assert es.update(progress, 4, float("nan")) == (False, False)
    assert es.update(progress, 5, 0.7) == (False, False)
    assert es.update(progress, 6, 0.74) == (False, True)
    assert progress == {"best": 0.75, "best_epoch": 3, "wait": 3, "stopped": True}


def test_early_stopping_stops_at_the_same_epoch_on_every_backend(other_backend):
    X, Y = _data(seed=6, m=80)
    Xv, Yv = _data(seed=7, m=40)
    runs = []
    for name in ("numpy", other_backend):
        model = nnx.MLP([8, 32, 1], seed=8, dropout=0.3)
        runs.append(
            model.fit(
                X,
                Y,
                epochs=400,
                optimizer=nnx.Adam(lr=0.02),
                validation_data=(Xv, Yv),
                seed=9,
                batch_size=20,
                early_stopping=nnx.EarlyStopping(patience=10),
                backend=name,
                dtype="float64",
            )
        )
    assert runs[0].stopped_epoch == runs[1].stopped_epoch and runs[0].best_epoch == runs[1].best_epoch
    np.testing.assert_allclose(runs[1].val_loss, runs[0].val_loss, rtol=1e-7)


def test_the_epoch_callback_is_public_api():
    X, Y = _data()
    seen = []

    def callback(epoch, network, history):
        seen.append((epoch, len(history.loss), network.host_params()[0][0].shape))
        state = network.host_training_state()
        assert state.step == epoch and state.optimizer["name"] == "Adam"
        return epoch == 3

    h = _model().fit(X, Y, epochs=10, optimizer=nnx.Adam(), callback=callback)
    assert seen == [(1, 1, (16, 8)), (2, 2, (16, 8)), (3, 3, (16, 8))]
    assert h.epochs == 3 and h.stopped_epoch == 3 and h.stop_reason == "stopped by the callback after epoch 3"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"patience": 0}, ValueError, "patience must be a positive integer"),
        ({"patience": 2.5}, ValueError, "patience must be a positive integer"),
        ({"min_delta": -1}, ValueError, "min_delta must be a finite number >= 0"),
        ({"min_delta": "0"}, TypeError, "min_delta must be a number"),
        ({"monitor": "loss"}, ValueError, "monitor must be one of"),
        ({"restore_best": 1}, TypeError, "restore_best must be True or False"),
    ],
)
def test_bad_early_stopping_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        nnx.EarlyStopping(**kwargs)
