"""Helpers shared by the tests: defined here once, imported everywhere."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

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
    """``python -m nnx ARGS...`` as a user runs it (each argument through ``str``)."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def python(code: str, *, cwd=ROOT, env=None, timeout=300) -> subprocess.CompletedProcess:
    """``code`` (dedented) in a fresh interpreter that imports this checkout's nnx; ``env``
    (default: this process's environment) with the checkout first on PYTHONPATH."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def one_line_error(r, code=2):
    """The run failed with ``code`` and exactly one line on stderr, without a traceback."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ------------------------------------------------------------- gradient checks
def numeric_gradients(model, X, Y, eps=1e-6):
    """Central differences of the model's float64 NumPy loss in each parameter, as
    [(dW, db), ...] like ``model.gradients``; the parameters are left as they were."""
    params = model.parameters()
    grads = []
    for W, b in params:
        pair = []
        for arr in (W, b):
            g = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                values = []
                for step in (eps, -eps):
                    arr[idx] = old + step
                    model.set_parameters(params)
                    values.append(model.evaluate(X, Y, backend="numpy", dtype="float64")["loss"])
                arr[idx] = old
                g[idx] = (values[0] - values[1]) / (2 * eps)
            pair.append(g)
        grads.append(tuple(pair))
    model.set_parameters(params)
    return grads
