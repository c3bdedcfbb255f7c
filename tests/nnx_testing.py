"""Helpers shared by the tests."""

import subprocess
import sys

import numpy as np

EXTREMES = [0.0, 1e-30, -1e-30, 1.0, -1.0, 30.0, -30.0, 89.0, -89.0, 710.0, -710.0, 1e4, -1e4]


def extreme_logits(dtype: str) -> np.ndarray:
    """(1, k) logits: EXTREMES that the dtype holds, plus its largest and smallest finite values."""
    finfo = np.finfo(dtype)
    values = [v for v in EXTREMES if abs(v) <= finfo.max] + [float(finfo.max), float(finfo.min)]
    return np.array([values], dtype=dtype)


def tolerance(dtype: str) -> dict:
    """Cross-backend tolerances: float64 to rtol 1e-7, float32 close to its rounding."""
    return {"rtol": 1e-7, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-4, "atol": 2e-5}


def sigmoid64(z: np.ndarray) -> np.ndarray:
    """sigmoid(z) = exp(-log(1 + e^-z)) in float64, finite for every logit."""
    return np.exp(-np.logaddexp(0.0, -z.astype(np.float64)))


def sigmoid_atol(backend: str, dtype: str) -> float:
    """Absolute tolerance of a backend's sigmoid against ``sigmoid64``: 0, except float32
    on CuPy, whose kernels are compiled with -ftz=true (CuPy adds it to every compile):
    a result below the smallest normal float32 (sigmoid(-89) = 2.2e-39) flushes to 0."""
    return float(np.finfo(np.float32).tiny) if (backend == "cupy" and dtype == "float32") else 0.0


def check_sigmoid_at_extreme_logits(ops, backend: str, dtype: str) -> None:
    """``ops.sigmoid_`` at ``extreme_logits``: finite, in [0, 1], equal to the float64
    reference to rtol 1e-12 (float64) or 2e-6 (float32) and ``sigmoid_atol``."""
    z = extreme_logits(dtype)
    out = ops.to_host(ops.sigmoid_(ops.asarray(z, dtype)))
    assert out.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    rtol = 1e-12 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(out, sigmoid64(z).astype(dtype), rtol=rtol, atol=sigmoid_atol(backend, dtype))


# ------------------------------------------------------------- the nnx command line
CLI = [sys.executable, "-m", "nnx"]


def run(*args, env=None, timeout=600):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(r, code=2):
    """The run failed with ``code`` and exactly one line on stderr, without a traceback."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]
