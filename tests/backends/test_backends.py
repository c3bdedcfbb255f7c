"""Backend registry and selection."""

import pytest

import nnx
from nnx.backends import select


def test_available_lists_every_backend_with_reason():
    status = nnx.backends.available()
    assert tuple(status) == nnx.backends.names() and "numpy" in status  # the reference backend
    assert status["numpy"].available
    for s in status.values():
        assert s.reason and s.install
        assert s.name in str(s)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'tpu'.*numpy"):
        nnx.get_backend("tpu")


def test_unavailable_backend_names_cause_and_extra():
    missing = [s for s in nnx.backends.available().values() if not s.available]
    if not missing:
        pytest.skip("every backend is available on this machine")
    s = missing[0]
    with pytest.raises(nnx.BackendUnavailableError) as info:
        nnx.get_backend(s.name)
    assert s.reason in str(info.value) and "pip install" in str(info.value)


def test_auto_picks_best_and_says_why():
    sel = select("auto")
    status = nnx.backends.available()
    expected = next(n for n in nnx.backends.AUTO_ORDER if status[n].available)
    assert sel.backend.name == expected
    assert sel.reason.startswith("auto")


def test_precedence_explicit_context_env(monkeypatch):
    monkeypatch.setenv("NNX_BACKEND", "numpy")
    assert select().reason == "from NNX_BACKEND"  # read at use time, not import
    monkeypatch.setenv("NNX_BACKEND", "tpu")
    with pytest.raises(ValueError, match="tpu"):
        select()
    with nnx.use_backend("numpy") as ops:
        assert ops.name == "numpy"
        assert select().reason == "from use_backend()"
        assert select("numpy").reason == "requested explicitly"
    monkeypatch.delenv("NNX_BACKEND")
    assert select().reason.startswith("auto")


def test_fit_history_records_backend_choice(rng):
    X = rng.standard_normal((2, 8))
    Y = (X[0:1] > 0).astype(float)
    with nnx.use_backend("numpy"):
        h = nnx.LogisticRegression(2).fit(X, Y, epochs=2)
    assert h.backend == "numpy" and h.backend_reason == "from use_backend()"


def test_host_backends_let_memory_errors_through_unchanged():
    """Only a GPU backend rewrites its own out-of-memory error (test_cupy.py checks that)."""
    ops = nnx.get_backend("numpy")
    with pytest.raises(MemoryError, match="^host$") as info:
        with ops.memory_errors_explained():
            raise MemoryError("host")
    assert type(info.value) is MemoryError
