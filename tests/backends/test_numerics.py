"""Sigmoid and BCE at fixed extreme logits, on every backend: finite, in range, and equal
to a float64 reference built from np.logaddexp (no hypothesis needed)."""

import numpy as np
import pytest
from nnx_testing import check_sigmoid_at_extreme_logits, extreme_logits, sigmoid64

import nnx


def _rtol(dtype: str) -> float:
    return 1e-12 if dtype == "float64" else 2e-6


_sigmoid64 = sigmoid64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_at_extreme_logits(backend, dtype):
    """Exact to rounding; float32 on CuPy also within finfo(float32).tiny, as the GPU
    flushes float32 denormals (see ``nnx_testing.sigmoid_atol``)."""
    check_sigmoid_at_extreme_logits(nnx.get_backend(backend), backend, dtype)


@pytest.mark.parametrize("label", [0.0, 1.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_at_extreme_logits(backend, dtype, label):
    """Every extreme logit against one label: the loss is the float64 mean of
    log(1 + e^z) - y z (up to ~max float / m per example), never inf or NaN."""
    ops = nnx.get_backend(backend)
    z = extreme_logits(dtype)
    y = np.full_like(z, label)
    m = z.shape[1]
    loss, correct, dz = ops.bce_from_logits(ops.asarray(z, dtype), ops.asarray(y, dtype))
    loss, correct, dz = ops.scalar(loss), ops.scalar(correct), ops.to_host(dz)
    z64 = z.astype(np.float64)
    per_example = np.logaddexp(0.0, z64) - label * z64
    assert np.isfinite(loss) and loss >= 0
    assert loss == pytest.approx(float(np.sum(per_example / m)), rel=_rtol(dtype))
    assert correct == int(np.sum((z64 > 0) == (label > 0.5)))
    assert np.all(np.isfinite(dz)) and np.all(np.abs(dz) <= (1 + 1e-6) / m)
    expected_dz = (_sigmoid64(z) - label) / m
    np.testing.assert_allclose(dz, expected_dz, rtol=_rtol(dtype), atol=_rtol(dtype) / m)


def test_bce_exact_values_at_extreme_logits(backend):
    ops = nnx.get_backend(backend)
    z = np.array([[1e4, -1e4, 1e4, -1e4, 0.0]])
    y = np.array([[1.0, 0.0, 0.0, 1.0, 1.0]])
    loss, _, dz = ops.bce_from_logits(ops.asarray(z, "float64"), ops.asarray(y, "float64"))
    # per-example losses: 0, 0, 1e4, 1e4, log 2
    assert ops.scalar(loss) == pytest.approx((2e4 + np.log(2)) / 5)
    np.testing.assert_allclose(ops.to_host(dz) * 5, [[0, 0, 1, -1, -0.5]])


@pytest.mark.parametrize("m", range(1, 41))
def test_bce_mean_at_max_float_stays_finite(backend, m):
    """m logits at -max float with label 1: each example's loss is max float itself, so
    the mean is too; the sum of the m rounded shares must not round past it to inf (it
    did for m = 11, 17, 18, 20, ... before, on NumPy and Numba alike)."""
    ops = nnx.get_backend(backend)
    z = np.full((1, m), np.finfo(np.float64).min)
    loss, _, dz = ops.bce_from_logits(ops.asarray(z, "float64"), ops.asarray(np.ones((1, m)), "float64"))
    loss = ops.scalar(loss)
    assert np.isfinite(loss) and loss == pytest.approx(np.finfo(np.float64).max, rel=1e-12)
    np.testing.assert_allclose(ops.to_host(dz), np.full((1, m), -1.0 / m))


@pytest.mark.parametrize("bad, expected", [(-np.inf, np.inf), (np.nan, np.nan)])
def test_bce_mean_keeps_inf_and_nan_inputs(backend, bad, expected):
    """An infinite or NaN logit is not a rounding overflow: its inf or NaN propagates."""
    ops = nnx.get_backend(backend)
    z = np.array([[np.finfo(np.float64).min] * 12 + [bad]])
    loss, _, _ = ops.bce_from_logits(ops.asarray(z, "float64"), ops.asarray(np.ones_like(z), "float64"))
    np.testing.assert_equal(ops.scalar(loss), expected)
