"""Dropout on column chunks: a chunk draws exactly its columns of the whole batch's mask,
so chunked and Dask training with Dropout layers equal the unchunked fit."""

import numpy as np
import pytest

import nnx
from nnx.backends import philox
from nnx.chunked import fit_chunked_locally


@pytest.mark.parametrize("n", [1, 3, 4, 7])
@pytest.mark.parametrize("first, width", [(0, 5), (1, 3), (5, 11), (13, 1)])
def test_a_chunks_mask_is_its_columns_of_the_batch_mask(n, first, width):
    key = philox.DropoutKey(seed=2**40 + 17, epoch=3, batch=0, layer=1)
    whole = philox.keep_mask(np, n, 40, 0.3, key)
    part = philox.keep_mask(np, n, width, 0.3, key, first_column=first)
    np.testing.assert_array_equal(part, whole[:, first : first + width])


def test_chunked_dropout_fit_equals_the_unchunked_fit(backend):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 61))
    Y = (X[0] + X[3] > 0).astype(np.int64).reshape(1, -1)
    kw = dict(epochs=6, optimizer=nnx.Adam(lr=0.02), seed=9, dtype="float64", backend=backend)
    a, b = nnx.MLP([5, 7, 1], seed=1, dropout=0.4), nnx.MLP([5, 7, 1], seed=1, dropout=0.4)
    ha = fit_chunked_locally(a, X, Y, chunks=(13, 30, 18), **kw)
    hb = b.fit(X, Y, **kw)
    for (Wa, ba), (Wb, bb) in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(Wa, Wb, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ba, bb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-10)
    assert a.training_state.dropout_seed == b.training_state.dropout_seed == 9
