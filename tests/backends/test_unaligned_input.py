"""X at an odd address (a buffer Dask or ``np.frombuffer`` hands over): a fit and a
prediction are bitwise those of the same X aligned, on every backend. NumPy computes
products of unaligned arrays without BLAS, several times slower and rounded otherwise."""

import numpy as np
import pytest

import nnx
from nnx.backends.base import aligned


def _unaligned(a: np.ndarray, order: str) -> np.ndarray:
    """a's values in a view that starts one byte into its buffer (not aligned)."""
    buf = bytearray(a.nbytes + 1)
    out = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape, order=order)
    out[...] = a
    assert not out.flags.aligned and out.flags[f"{order}_CONTIGUOUS"]
    return out


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", [lambda n: nnx.LogisticRegression(n), lambda n: nnx.MLP([n, 16, 1], seed=0)])
def test_an_unaligned_X_fits_and_predicts_as_the_aligned_one(backend, order, dtype, make):
    rng = np.random.default_rng(0)
    X = np.asarray(rng.standard_normal((300, 200)), dtype=dtype, order=order)
    Y = (X[:1] + X[1:2] > 0).astype(np.int64)
    Xu = _unaligned(X, order)
    fits = []
    for data in (X, Xu):
        model = make(300)
        model.fit(data, Y, epochs=5, lr=0.1, backend=backend, dtype=dtype)
        fits.append((model, model.predict_proba(data, backend=backend)))
    (a, pa), (b, pb) = fits
    for (Wa, ba), (Wb, bb) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)
    np.testing.assert_array_equal(pa, pb)


def test_aligned_copies_only_what_is_not_aligned():
    X = np.ones((4, 3), np.float32, order="F")
    assert aligned(X) is X
    Xu = _unaligned(X, "F")
    Xa = aligned(Xu)
    assert Xa.flags.aligned and Xa.flags.f_contiguous and np.array_equal(Xa, X)
