"""CuPy backend specifics: kernels compile, wrappers check inputs, clear GPU errors.

Cross-backend equivalence for CuPy runs through the parametrized tests (other_backend);
every test here is skipped visibly, with the reason, on a machine without a usable GPU.
"""

import os

import numpy as np
import pytest
from nnx_testing import ROOT, tolerance

import nnx
from nnx.backends.cuda_launch import PASS_KINDS

STATUS = nnx.backends.available()["cupy"]
needs_gpu = pytest.mark.skipif(not STATUS.available, reason=f"cupy backend unavailable: {STATUS.reason}")


@pytest.fixture
def ops():
    return nnx.get_backend("cupy")


@needs_gpu
def test_every_kernel_compiles(ops):
    names = ops._compile_all()
    assert "read_words" in names and any(n.startswith("logreg_pass<float, unsigned char, 4") for n in names)


@needs_gpu
def test_wrappers_check_dtype_contiguity_and_shape(ops):
    cp = ops.xp
    Z = cp.zeros((3, 5), dtype=cp.float32)
    with pytest.raises(TypeError, match="dtype"):
        ops.bias_activation_(Z, cp.zeros((3, 1), dtype=cp.float64), "relu")
    with pytest.raises(ValueError, match="shape"):
        ops.bias_activation_(Z, cp.zeros((4, 1), dtype=cp.float32), "relu")
    with pytest.raises(ValueError, match="shape"):
        ops.bce_from_logits(cp.zeros((1, 5), cp.float32), cp.zeros((1, 4), cp.float32))
    # non-contiguous inputs take the generic path and stay correct
    wide = cp.arange(30, dtype=cp.float32).reshape(3, 10)[:, ::2]
    got = ops.bias_activation_(wide, cp.ones((3, 1), dtype=cp.float32), "relu")
    np.testing.assert_allclose(ops.to_host(got), np.maximum(np.arange(30).reshape(3, 10)[:, ::2] + 1, 0))


PASS_DTYPES = [("float32", "float32"), ("float64", "float64"), ("uint8", "float32")]


@needs_gpu
@pytest.mark.parametrize(("x_dtype", "dtype"), PASS_DTYPES)
@pytest.mark.parametrize("n", [12288, 1504])
@pytest.mark.parametrize("kind", PASS_KINDS)
def test_each_single_pass_kernel_matches_numpy(ops, kind, n, x_dtype, dtype):
    """logreg_staged and logreg_pass, each forced, over more examples than the GPU has
    blocks (several steps per block, every shared-memory stage reused)."""
    rng = np.random.default_rng(n)
    m = 9 * ops.sm_count + 5
    if x_dtype == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
        X_ref = X.astype(dtype) * np.array(1 / 255, dtype)
    else:
        X = X_ref = np.asfortranarray(rng.random((n, m)).astype(x_dtype))
    Y = (rng.random((1, m)) > 0.5).astype(dtype)
    w0 = (rng.normal(size=(1, n)) * 0.02).astype(dtype)
    ref, ref_w, ref_b = nnx.get_backend("numpy"), w0.copy(), np.full((1, 1), 0.1, dtype)
    with ops._forcing_pass(kind):
        plan = ops._pass_plan(n, m, dtype, x_dtype)
        assert plan is not None and plan.kind == kind
        Xd, Yd = ops.prepare_fused_input(X, dtype), ops.prepare_labels(Y, dtype)
        w, b = ops.asarray(w0, dtype), ops.asarray(np.full((1, 1), 0.1), dtype)
        for _ in range(3):
            loss, correct = ops.logreg_epoch_(w, b, Xd, Yd, 0.5, "bce")
            ref_loss, ref_correct = ref.logreg_epoch_(ref_w, ref_b, X_ref, Y, 0.5, "bce")
            np.testing.assert_allclose(float(loss), ref_loss, **tolerance(dtype))
            assert float(correct) == ref_correct
    np.testing.assert_allclose(ops.to_host(w), ref_w, **tolerance(dtype))
    np.testing.assert_allclose(ops.to_host(b), ref_b, **tolerance(dtype))


@needs_gpu
def test_pixels_at_an_odd_address_take_the_register_kernel(ops):
    """A view one byte into a buffer cannot be copied in 16-byte words: same results."""
    rng = np.random.default_rng(3)
    n, m = 1504, 300
    X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
    Y = (rng.random((1, m)) > 0.5).astype(np.float32)
    buffer = ops.xp.zeros(n * m + 1, dtype=ops.xp.uint8)
    Xd = buffer[1:].reshape((n, m), order="F")
    Xd[...] = ops.xp.asarray(X)
    assert Xd.flags.f_contiguous and Xd.data.ptr % 16 == 1
    plan = ops._pass_plan(n, m, "float32", np.uint8, x_address=Xd.data.ptr)
    assert plan.kernel.startswith("logreg_pass<float, unsigned char, 1,")  # 1-byte loads: no uchar4
    w, b = ops.asarray(np.zeros((1, n)), "float32"), ops.asarray(np.zeros((1, 1)), "float32")
    ref_w, ref_b = np.zeros((1, n), np.float32), np.zeros((1, 1), np.float32)
    loss, correct = ops.logreg_epoch_(w, b, Xd, ops.prepare_labels(Y, "float32"), 0.5, "bce")
    X_ref = X.astype(np.float32) * np.float32(1 / 255)
    ref_loss, ref_correct = nnx.get_backend("numpy").logreg_epoch_(ref_w, ref_b, X_ref, Y, 0.5, "bce")
    np.testing.assert_allclose(float(loss), ref_loss, **tolerance("float32"))
    np.testing.assert_allclose(ops.to_host(w), ref_w, **tolerance("float32"))
    read, nbytes = ops.streaming_read(Xd)
    read()
    assert nbytes == (n * m - 15) // 16 * 16  # aligned 16-byte words from the first boundary
    ops.synchronize()


@needs_gpu
def test_tf32_is_off_unless_the_user_enables_it(ops):
    assert ops.describe()["tf32"] == (os.environ.get("CUPY_TF32") == "1")


@needs_gpu
def test_out_of_memory_is_a_clear_error(ops):
    huge = 1 << 50  # 1 PiB
    with pytest.raises(nnx.DeviceMemoryError, match=r"cannot hold 1125899\.91 GB more .* batch_size="):
        ops._guard(lambda: ops.xp.empty(huge, dtype=ops.xp.uint8), huge)


@needs_gpu
def test_an_allocation_without_its_own_guard_also_gives_the_clear_error(ops):
    expected = r"ran out of memory: Out of memory allocating .*batch_size="
    with pytest.raises(nnx.DeviceMemoryError, match=expected):
        with ops.memory_errors_explained():
            ops.xp.empty(1 << 50, dtype=ops.xp.uint8)


@needs_gpu
def test_streaming_mini_batches_match_device_resident_run(ops, monkeypatch, rng):
    X = np.asfortranarray(rng.integers(0, 256, (64, 300), dtype=np.uint8))
    Y = (rng.random((1, 300)) > 0.5).astype(float)
    a, b = nnx.MLP([64, 8, 1], seed=0), nnx.MLP([64, 8, 1], seed=0)
    a.fit(X, Y, epochs=3, batch_size=50, seed=1, backend="cupy", dtype="float64")
    monkeypatch.setattr(type(ops), "free_bytes", lambda self: 1000)  # pretend X does not fit
    b.fit(X, Y, epochs=3, batch_size=50, seed=1, backend="cupy", dtype="float64")
    for (W0, _), (W1, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(W1, W0, rtol=1e-12)


@needs_gpu
def test_fit_reads_no_loss_until_asked(rng):
    X = rng.standard_normal((10, 40))
    Y = (X[0:1] > 0).astype(float)
    h = nnx.LogisticRegression(10).fit(X, Y, epochs=30, history_every=10, backend="cupy")
    assert h.epoch == [10, 20, 30] and all(np.isfinite(h.loss))


def test_cuda_sources_ship_in_the_wheel(tmp_path):
    """Build the wheel and find kernels/*.cu inside it (as nnx/kernels/)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("build", reason="needs the 'build' package (pip install build)")
    pytest.importorskip("hatchling", reason="needs hatchling for an offline build (pip install hatchling)")
    root = ROOT
    src = tmp_path / "src"
    shutil.copytree(
        root,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", "dist", ".pytest_cache", "__pycache__", ".benchmarks"
        ),
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nnx/kernels/nnx_kernels.cu" in names
    assert wheel.name.startswith("nnx_nets-")
