"""Property tests: sigmoid and BCE stay finite and in range for any finite logit.

The fixed extreme logits are checked without hypothesis in test_numerics.py.
"""

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property tests need hypothesis: pip install 'nnx-nets[dev]'")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402
from nnx_testing import EXTREMES  # noqa: E402

import nnx  # noqa: E402


def _logits(dtype):
    finfo = np.finfo(dtype)
    elems = st.one_of(
        st.floats(-1e4, 1e4, width=finfo.bits),
        st.floats(float(finfo.min), float(finfo.max), width=finfo.bits),
        st.sampled_from([float(np.array(v, dtype=dtype)) for v in EXTREMES]),
    )
    return arrays(dtype, st.tuples(st.just(1), st.integers(1, 40)), elements=elems)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_finite_and_in_range(backend, dtype):
    ops = nnx.get_backend(backend)

    @settings(max_examples=150, deadline=None)
    @given(_logits(dtype))
    def check(z):
        out = ops.to_host(ops.sigmoid_(ops.asarray(z, dtype)))
        assert np.all(np.isfinite(out))
        assert np.all((out >= 0) & (out <= 1))
        mid = np.abs(z) < 20
        np.testing.assert_allclose(out[mid], 1 / (1 + np.exp(-z[mid].astype(np.float64))), rtol=1e-5)

    check()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_from_logits_finite(backend, dtype):
    ops = nnx.get_backend(backend)

    @settings(max_examples=150, deadline=None)
    @given(_logits(dtype), st.data())
    def check(z, data):
        y = data.draw(arrays(dtype, z.shape, elements=st.sampled_from([0.0, 1.0])))
        loss, correct, dz = ops.bce_from_logits(ops.asarray(z, dtype), ops.asarray(y, dtype))
        loss, dz = ops.scalar(loss), ops.to_host(dz)
        m = z.shape[1]
        assert np.isfinite(loss) and loss >= 0
        assert np.all(np.isfinite(dz)) and np.all(np.abs(dz) <= 1.0 / m * (1 + 1e-6))
        assert 0 <= ops.scalar(correct) <= m

    check()
