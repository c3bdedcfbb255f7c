"""The CUDA kernels of kernels/, run on the CPU through the emulation in tests/cuda_on_cpu.

Every launch goes through nnx.backends.cuda_launch, the same plans the CuPy backend
launches on a GPU, so the kernels' logic (indexing, register tiles, uint8 words, examples
per step, block reductions, barrier placement) and the wrappers' launch arithmetic (grid
sizes, argument types, scale and loss codes) are checked against the NumPy backend on
machines without a GPU. This is not a GPU run: test_cupy.py and the parametrized backend
tests cover the real device, and skip visibly without one.
"""

import ctypes
import sys
import threading

import numpy as np
import pytest
from cuda_emulation import (
    CXX,
    HOPPER,
    KERNELS,
    EmulatedCupy,
    EmulatedDevice,
    EmulatedModule,
    EmulationError,
    build,
    modelled_resident_blocks,
    sm90_registers,
)
from nnx_testing import ROOT, check_sigmoid_at_extreme_logits, extreme_logits, tolerance

import nnx
from nnx.backends import cuda_launch as plans
from nnx.backends import philox

pytestmark = pytest.mark.skipif(
    CXX is None, reason="no C++ compiler (g++ or clang++) to build the CPU emulation of the CUDA kernels"
)

REF = nnx.get_backend("numpy")
FLOATS = ("float32", "float64")


@pytest.fixture(scope="module")
def library(emulation_library):
    return emulation_library


@pytest.fixture(scope="module")
def module(library):
    return EmulatedModule(library)


@pytest.fixture(scope="module")
def module_reversed(library):
    """The same kernels with each block's warps run last to first (races show up)."""
    return EmulatedModule(library, reverse_warps=True)


HOPPER_SHARED = 227 * 1024  # opt-in shared memory per block of an H100 / H200


def run(module, plan: plans.Launch) -> None:
    plans.launch(module.get_function(plan.kernel), plan)


def test_every_instantiation_the_backend_compiles_is_emulated(module):
    signatures = {name: module.get_function(name).signature for name in KERNELS}
    uint8_pass = signatures["logreg_pass<float, unsigned char, 4, 6, 2>"]
    assert uint8_pass == ["p", "p", "p", "p", "i8", "i8", "f8", "i4", "p", "p"]
    staged = signatures["logreg_staged<float, unsigned char, 2, 2>"]
    assert staged == ["p", "p", "p", "p", "i8", "i8", "i4", "f8", "i4", "p", "p"]
    assert signatures["read_words"] == ["p", "i8", "i8", "p"]
    assert len(signatures) == len(plans.name_expressions()) + 1


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("activation", [None, "sigmoid", "relu", "tanh"])
def test_bias_activation_matches_numpy(module, dtype, activation):
    rng = np.random.default_rng(1)
    # 50 x 300 = 15000 elements with one SM: a 32-block grid, so the grid-stride loop runs twice
    Z = (rng.normal(size=(50, 300)) * 4).astype(dtype)
    b = rng.normal(size=(50, 1)).astype(dtype)
    expected = REF.bias_activation_(Z.copy(), b, activation)
    plan = plans.bias_act_launch(Z, b, activation, sm_count=1)
    assert plan.grid == (32,)
    run(module, plan)
    np.testing.assert_allclose(Z, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
def test_activation_backward_matches_numpy(module, dtype, activation):
    rng = np.random.default_rng(2)
    A = REF.bias_activation_(rng.normal(size=(7, 1301)).astype(dtype), np.zeros((7, 1), dtype), activation)
    A[0, :5] = 0  # relu's kink: the gradient there is 0
    dA = rng.normal(size=A.shape).astype(dtype)
    expected = REF.activation_backward_(dA.copy(), A, activation)
    run(module, plans.act_backward_launch(dA, A, activation, sm_count=1))
    np.testing.assert_allclose(dA, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_sigmoid_is_finite_and_matches_numpy_for_extreme_logits(module, dtype):
    Z = np.array([[-1e308 if dtype == "float64" else -3e38, -800, -30, -1e-9, 0, 1e-9, 30, 800, 3e38]], dtype)
    expected = REF.sigmoid_(Z.copy())
    run(module, plans.sigmoid_launch(Z, sm_count=1))
    assert np.all(np.isfinite(Z))
    np.testing.assert_allclose(Z, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m", [1, 7, 9000])
def test_bce_from_logits_matches_numpy(module, dtype, m):
    rng = np.random.default_rng(3)
    Z = (rng.normal(size=(1, m)) * 10).astype(dtype)
    Z[0, 0] = 500  # a saturated logit stays finite
    Y = (rng.random((1, m)) > 0.5).astype(dtype)
    check_bce_kernel(module, Z, Y)


@pytest.mark.parametrize("label", [0.0, 1.0])
@pytest.mark.parametrize("dtype", FLOATS)
def test_bce_from_logits_is_finite_at_extreme_logits(module, dtype, label):
    Z = extreme_logits(dtype)
    sums, got_dZ = check_bce_kernel(module, Z, np.full_like(Z, label))
    assert np.all(np.isfinite(sums)) and np.all(np.isfinite(got_dZ))


def check_bce_kernel(module, Z, Y):
    """bce_logits on the emulation against the NumPy backend; returns (partial sums, dZ)."""
    dtype = Z.dtype.name
    loss, correct, dZ = REF.bce_from_logits(Z, Y)
    partial = np.full((plans.bce_groups(Z.shape[1], 1), 2), np.nan)
    got_dZ = np.full_like(Z, np.nan)
    run(module, plans.bce_logits_launch(Z, Y, got_dZ, partial, sm_count=1))
    sums = partial.sum(axis=0)
    np.testing.assert_allclose(sums[0], loss, **tolerance(dtype))
    assert sums[1] == correct
    np.testing.assert_allclose(got_dZ, dZ, **tolerance(dtype))
    return sums, got_dZ


GPU_BLOCKS = modelled_resident_blocks  # each kernel's blocks per SM on an H100


def pass_plan(X, dtype, sm_count, kind="auto", shared_limit=HOPPER_SHARED, resident_blocks=GPU_BLOCKS):
    """The plan the backend makes for X, where X's memory is (its address decides too), with
    each kernel's blocks per SM as on an H100 (its occupancy from its sm_90 registers), so
    the blocks, hence the order of the float sums, are the GPU's."""
    n, m = X.shape
    at = plans.address(X)
    return plans.logreg_pass_plan(n, m, dtype, X.dtype, sm_count, shared_limit, kind, at, resident_blocks)


def emulated_logreg_epoch(
    module,
    w,
    b,
    X,
    Y,
    lr,
    loss,
    sm_count,
    kind="auto",
    shared_limit=HOPPER_SHARED,
    resident_blocks=GPU_BLOCKS,
):
    """One epoch through the backend's two launches, buffers as the backend makes them."""
    plan = pass_plan(X, w.dtype, sm_count, kind, shared_limit, resident_blocks)
    assert plan is not None, "no single-pass kernel takes this X"
    dw_partial = np.full((plan.groups, X.shape[0]), np.nan, w.dtype)
    stats = np.full((plan.groups, 3), np.nan)
    out = np.full(2, np.nan)
    for launch in plans.logreg_launches(plan, w, b, X, Y, dw_partial, stats, out, lr, loss, sm_count):
        run(module, launch)
    return out


LOGREG_CASES = [
    # (n, m, x dtype, sm_count): odd sizes, every tile family, m below / above the grid
    (3, 1, "float", 4),
    (37, 5, "float", 4),
    (1500, 37, "float", 3),
    (12288, 9, "float", 2),
    (12, 1, "uint8", 4),  # 4-pixel words, one example
    (1500, 37, "uint8", 3),  # 4-pixel words, an odd example count (a half-empty last step)
    (12288, 11, "uint8", 2),  # the tutorials' 64x64x3 images
    (1501, 6, "uint8", 2),  # n not a multiple of 4: one pixel per load
    (16, 3, "uint8", 4),  # one 16-byte word per row (staged)
    (1504, 13, "uint8", 3),  # staged: an odd example count, rows of 94 words
]


def logreg_params():
    """Every case with each single-pass kernel that takes it (logreg_staged needs rows of
    whole 16-byte words and is not built for double parameters on uint8 pixels)."""
    for n, m, x_kind, sm_count in LOGREG_CASES:
        for dtype in FLOATS:
            x_dtype = "uint8" if x_kind == "uint8" else dtype
            for kind in plans.PASS_KINDS:
                if plans.logreg_pass_plan(n, m, dtype, x_dtype, sm_count, HOPPER_SHARED, kind) is not None:
                    case_id = f"{kind}-{n}x{m}-{x_dtype}-{dtype}"
                    yield pytest.param(kind, n, m, x_kind, sm_count, dtype, id=case_id)


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize(("kind", "n", "m", "x_kind", "sm_count", "dtype"), list(logreg_params()))
def test_single_pass_logreg_epoch_matches_numpy(module, kind, n, m, x_kind, sm_count, dtype, loss):
    rng = np.random.default_rng(n * 1000 + m)
    if x_kind == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, size=(n, m), dtype=np.uint8))
        X_ref = X.astype(dtype) * np.array(1 / 255, dtype)
    else:
        X = np.asfortranarray(rng.random((n, m)).astype(dtype))
        X_ref = X
    Y = (rng.random((1, m)) > 0.5).astype(dtype)
    w = (rng.normal(size=(1, n)) * 0.05).astype(dtype)
    b = np.full((1, 1), 0.1, dtype)
    w_ref, b_ref = w.copy(), b.copy()
    for _ in range(3):
        out = emulated_logreg_epoch(module, w, b, X, Y, 0.5, loss, sm_count, kind)
        value, correct = REF.logreg_epoch_(w_ref, b_ref, X_ref, Y, 0.5, loss)
        np.testing.assert_allclose(out[0], value, **tolerance(dtype))
        assert out[1] == correct
    np.testing.assert_allclose(w, w_ref, **tolerance(dtype))
    np.testing.assert_allclose(b, b_ref, **tolerance(dtype))


@pytest.mark.parametrize("kind", plans.PASS_KINDS)
def test_an_epoch_over_several_waves_of_blocks_matches_numpy(module, monkeypatch, kind):
    """With at most 4 examples per block, 37 examples on 2 SMs take 5 (staged, a block
    per SM) or 3 (registers, 2 blocks per SM) whole waves of blocks: the same results as
    one wave."""
    monkeypatch.setattr(plans, "MAX_EXAMPLES_PER_BLOCK", 4)
    rng = np.random.default_rng(11)
    n, m = 1504, 37
    X = np.asfortranarray(rng.random((n, m)).astype(np.float32))
    Y = (rng.random((1, m)) > 0.5).astype(np.float32)
    twice = lambda name: 2  # noqa: E731
    groups = pass_plan(X, np.float32, 2, kind, resident_blocks=twice).groups
    assert groups == {"staged": 10, "registers": 12}[kind]
    w, b = np.zeros((1, n), np.float32), np.full((1, 1), 0.1, np.float32)
    w_ref, b_ref = w.copy(), b.copy()
    out = emulated_logreg_epoch(module, w, b, X, Y, 0.5, "bce", 2, kind, resident_blocks=twice)
    value, correct = REF.logreg_epoch_(w_ref, b_ref, X, Y, 0.5, "bce")
    np.testing.assert_allclose(out[0], value, **tolerance("float32"))
    assert out[1] == correct
    np.testing.assert_allclose(w, w_ref, **tolerance("float32"))
    np.testing.assert_allclose(b, b_ref, **tolerance("float32"))


@pytest.mark.parametrize("kind", plans.PASS_KINDS)
def test_single_pass_logreg_epoch_is_bitwise_repeatable_in_any_warp_order(module, module_reversed, kind):
    """Two runs, and a run with the warps in the opposite order, give the same bits: the
    reduction order is fixed and no warp reads shared memory another may still write."""
    rng = np.random.default_rng(5)
    X = np.asfortranarray(rng.integers(0, 256, size=(12288, 13), dtype=np.uint8))
    Y = (rng.random((1, 13)) > 0.5).astype(np.float32)
    results = []
    for emulated in (module, module, module_reversed):
        w, b = np.zeros((1, 12288), np.float32), np.zeros((1, 1), np.float32)
        out = [emulated_logreg_epoch(emulated, w, b, X, Y, 0.1, "bce", 2, kind) for _ in range(2)]
        results.append((w.tobytes(), b.tobytes(), np.stack(out).tobytes()))
    assert results[0] == results[1] == results[2]


def test_bce_partial_sums_do_not_depend_on_warp_order(module, module_reversed):
    rng = np.random.default_rng(6)
    Z = rng.normal(size=(1, 5000)).astype(np.float32)
    Y = (rng.random((1, 5000)) > 0.5).astype(np.float32)
    results = []
    for emulated in (module, module_reversed):
        partial, dZ = np.zeros((plans.bce_groups(5000, 2), 2)), np.zeros_like(Z)
        run(emulated, plans.bce_logits_launch(Z, Y, dZ, partial, sm_count=2))
        results.append((partial.tobytes(), dZ.tobytes()))
    assert results[0] == results[1]


@pytest.mark.parametrize("offset", [0, 1, 4, 8, 15])
def test_read_words_reads_any_view_in_aligned_words_without_writing(module, offset):
    """A view at any offset into a buffer: only whole, aligned 16-byte words are loaded
    (a misaligned one faults on a GPU; the emulation's alignment sanitizer reports it)."""
    buffer = np.arange(4096 + 16, dtype=np.uint8)
    X = buffer[offset : offset + 4096].reshape(64, 64, order="F")  # F-contiguous, as the backend's X
    sink = np.array([7], dtype=np.uint64)
    launch = plans.read_words_launch(X, sink, sm_count=2)
    assert launch.args[1] == -plans.address(X) % 16
    run(module, launch)
    assert sink[0] == 7
    assert plans.read_words_bytes(X) == (4096 - launch.args[1]) // 16 * 16


def test_a_launch_with_a_wrong_argument_type_is_refused(module):
    w, b = np.zeros((1, 4)), np.zeros((1, 1))
    kernel = module.get_function("logreg_update<double>")
    args = (w, b, np.zeros((1, 4)), np.zeros((1, 3)), np.int64(1), np.int64(4), np.int64(1))
    with pytest.raises(TypeError, match=r"takes \(p,p,p,p,i4,i8,i8,f8,f8,p\)"):
        kernel((1,), (32,), (*args, np.float64(0.1), np.float64(1.0), np.zeros(2)))


def test_the_emulation_reports_a_barrier_in_divergent_code(tmp_path):
    source = tmp_path / "divergent.cu"
    source.write_text(
        "__global__ void divergent(float* x) {\n"
        "    if (threadIdx.x < 16) { __syncthreads(); }\n"
        "    x[threadIdx.x] = 1.0f;\n"
        "}\n"
    )
    emulated = EmulatedModule(build(tmp_path, source, ["divergent"]))
    with pytest.raises(EmulationError, match="only some threads"):
        emulated.get_function("divergent")((1,), (64,), (np.zeros(64, np.float32),))


RACY_SOURCE = """
__global__ void block_sum_twice(const double* x, double* out, int fenced) {
    __shared__ double scratch[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    double total = 0.0;
    for (int call = 0; call < 2; ++call) {
        double v = x[call * blockDim.x + threadIdx.x];
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
        if (fenced) __syncthreads();  // without it, a fast warp overwrites what a slow one still reads
        if (lane == 0) scratch[warp] = v;
        __syncthreads();
        for (int w = 0; w < warps; ++w) total += scratch[w];
    }
    out[threadIdx.x] = total;
}
"""


def test_the_emulation_exposes_a_missing_barrier_as_a_warp_order_dependence(tmp_path):
    source = tmp_path / "racy.cu"
    source.write_text(RACY_SOURCE)
    library = build(tmp_path, source, ["block_sum_twice"])
    x = np.arange(256, dtype=np.float64)
    outputs = {}
    for fenced in (0, 1):
        for reverse in (False, True):
            out = np.zeros(128)
            kernel = EmulatedModule(library, reverse_warps=reverse).get_function("block_sum_twice")
            kernel((1,), (128,), (x, out, np.int32(fenced)))
            outputs[fenced, reverse] = out
    np.testing.assert_array_equal(outputs[1, False], np.full(128, x.sum()))
    np.testing.assert_array_equal(outputs[1, True], outputs[1, False])
    assert not np.array_equal(outputs[0, False], outputs[0, True])


def test_the_emulation_reports_a_write_past_an_argument(tmp_path):
    source = tmp_path / "past.cu"
    source.write_text("__global__ void write_past(float* x, long long n) { x[n + threadIdx.x] = 1.0f; }\n")
    kernel = EmulatedModule(build(tmp_path, source, ["write_past"])).get_function("write_past")
    x = np.zeros(10, np.float32)
    with pytest.raises(EmulationError, match="wrote outside argument 0"):
        kernel((1,), (4,), (x, np.int64(10)))
    with pytest.raises(ValueError, match="not C-contiguous"):
        kernel((1,), (4,), (np.zeros((4, 4), np.float32)[:, ::2], np.int64(0)))


ASYNC_SOURCE = """
__global__ void stage_then_read(const float* src, float* out, int wait_before_reading, int wait_at_exit) {
    NNX_DYNAMIC_SHARED(uint4, stage);
    nnx_copy16_async(stage + threadIdx.x, reinterpret_cast<const uint4*>(src) + threadIdx.x);
    nnx_copy_commit();
    if (wait_before_reading) nnx_copy_wait<0>();
    const float* mine = reinterpret_cast<const float*>(stage + threadIdx.x);
    for (int k = 0; k < 4; ++k) out[4 * threadIdx.x + k] = mine[k];
    if (wait_at_exit) nnx_copy_wait<0>();
}
"""


@pytest.fixture(scope="module")
def stage_then_read(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("async")
    source = out_dir / "async.cu"
    source.write_text(ASYNC_SOURCE)
    return EmulatedModule(build(out_dir, source, ["stage_then_read"])).get_function("stage_then_read")


def test_the_emulation_lands_an_asynchronous_copy_only_at_the_wait(stage_then_read):
    src = np.arange(256, dtype=np.float32)
    out = np.zeros(256, np.float32)
    stage_then_read((1,), (64,), (src, out, np.int32(1), np.int32(1)), shared_mem=64 * 16)
    np.testing.assert_array_equal(out, src)
    stage_then_read((1,), (64,), (src, out, np.int32(0), np.int32(1)), shared_mem=64 * 16)
    assert np.all(np.isnan(out))  # read before the wait: the stage holds no defined value yet
    with pytest.raises(EmulationError, match="exited with 1 asynchronous copies not waited for"):
        stage_then_read((1,), (64,), (src, out, np.int32(0), np.int32(0)), shared_mem=64 * 16)


def test_the_emulation_refuses_copies_outside_dynamic_shared_memory(stage_then_read):
    src, out = np.arange(256, dtype=np.float32), np.zeros(256, np.float32)
    with pytest.raises(EmulationError, match="outside the launch's dynamic shared memory"):
        stage_then_read((1,), (64,), (src, out, np.int32(1), np.int32(1)), shared_mem=32 * 16)


def test_a_launch_over_48_kb_of_shared_memory_needs_the_limit_raised(stage_then_read):
    src, out = np.arange(256, dtype=np.float32), np.zeros(256, np.float32)
    plan = plans.Launch("stage_then_read", (1,), (64,), (src, out, np.int32(1), np.int32(1)), 64 * 1024)
    with pytest.raises(EmulationError, match="over the kernel's max_dynamic_shared_size_bytes"):
        stage_then_read(plan.grid, plan.block, plan.args, shared_mem=plan.shared_mem)
    plans.launch(stage_then_read, plan)  # raises the limit first, as on a GPU
    assert stage_then_read.max_dynamic_shared_size_bytes == 64 * 1024
    np.testing.assert_array_equal(out, src)


def test_staged_pass_with_only_two_stages_matches_numpy(module):
    """A device with little shared memory gets the fewest stages that still overlap."""
    rng = np.random.default_rng(8)
    X = np.asfortranarray(rng.random((1500, 7)).astype(np.float32))
    Y = (rng.random((1, 7)) > 0.5).astype(np.float32)
    limit = 2 * 1500 * 4 + 256
    assert pass_plan(X, "float32", 2, shared_limit=limit).stages == 2
    w, b = (rng.normal(size=(1, 1500)) * 0.05).astype(np.float32), np.zeros((1, 1), np.float32)
    w_ref, b_ref = w.copy(), b.copy()
    out = emulated_logreg_epoch(module, w, b, X, Y, 0.5, "bce", 2, shared_limit=limit)
    value, correct = REF.logreg_epoch_(w_ref, b_ref, X, Y, 0.5, "bce")
    np.testing.assert_allclose(out[0], value, **tolerance("float32"))
    assert out[1] == correct
    np.testing.assert_allclose(w, w_ref, **tolerance("float32"))


# ------------------------------------------------------------------------------------------
# What the emulation checks as a GPU would: alignment, shared memory, denormals


MISALIGNED_SOURCE = """
__global__ void load_word(const unsigned char* bytes, unsigned* out) {
    uchar4 q = *reinterpret_cast<const uchar4*>(bytes);  // ld.global.v4.u8: 4-byte aligned only
    out[0] = q.x + q.y + q.z + q.w;
}
"""


def test_the_emulation_reports_a_misaligned_vector_load(tmp_path):
    """An argument keeps its address modulo 64, and the alignment sanitizer sees the load."""
    source = tmp_path / "misaligned.cu"
    source.write_text(MISALIGNED_SOURCE)
    kernel = EmulatedModule(build(tmp_path, source, ["load_word"])).get_function("load_word")
    buffer, out = np.arange(1, 9, dtype=np.uint8), np.zeros(1, np.uint32)
    kernel((1,), (32,), (buffer[4:], out))
    assert out[0] == 5 + 6 + 7 + 8
    with pytest.raises(EmulationError, match=r"misaligned .*uchar4.* 1 bytes past a 4-byte boundary"):
        kernel((1,), (32,), (buffer[1:], out))


def test_the_emulated_device_models_static_and_dynamic_shared_memory(module):
    """As CUDA: the dynamic limit starts at 48 KB minus the kernel's static shared memory
    and may be raised to the device's opt-in maximum minus it, no further."""
    kernel = module.get_function("logreg_staged<float, unsigned char, 2, 2>")
    assert kernel.shared_size_bytes == 32 * 2 * 8  # its reduction scratch
    assert kernel.max_dynamic_shared_size_bytes == 48 * 1024 - 512
    kernel.max_dynamic_shared_size_bytes = HOPPER_SHARED - 512
    with pytest.raises(EmulationError, match="over the device's 232448 bytes per block"):
        kernel.max_dynamic_shared_size_bytes = HOPPER_SHARED - 511
    assert module.get_function("bias_act<float>").shared_size_bytes == 0


def test_the_emulation_flushes_float_denormals_as_cupy_compiles_them(library):
    emulated = EmulatedModule(library)
    if not emulated.ftz_supported:
        pytest.skip("flushing denormals is emulated on x86 only")
    for ftz, expected in ((True, 0.0), (False, np.float32(2.2273639e-39))):
        Z = np.array([[-89.0]], np.float32)
        run(EmulatedModule(library, ftz=ftz), plans.sigmoid_launch(Z, sm_count=1))
        assert Z[0, 0] == expected
    Z = np.array([[-710.0]])  # double keeps its denormals on a GPU, and here
    run(emulated, plans.sigmoid_launch(Z, sm_count=1))
    assert Z[0, 0] == pytest.approx(np.exp(-710.0), rel=1e-12)


# ------------------------------------------------------------------------------------------
# Fault 1 of issue #24: vector loads chosen from n alone, at an odd address


def test_pixels_at_an_odd_address_are_loaded_one_at_a_time():
    n, m = 1504, 300
    aligned = plans.logreg_pass_plan(n, m, "float32", np.uint8, 132, HOPPER_SHARED, "registers", x_address=0)
    assert aligned.kernel == "logreg_pass<float, unsigned char, 4, 1, 2>"
    for address in (1, 2, 3, 5):
        odd = plans.logreg_pass_plan(n, m, "float32", np.uint8, 132, HOPPER_SHARED, x_address=address)
        assert odd.kernel == "logreg_pass<float, unsigned char, 1, 4, 1>"
    # 4-byte aligned but not 16: uchar4 loads, no 16-byte cp.async copies
    assert plans.logreg_pass_plan(n, m, "float32", np.uint8, 132, HOPPER_SHARED, x_address=4).kernel == (
        aligned.kernel
    )
    # floats not on their own boundary: no single-pass kernel can load them
    assert plans.logreg_pass_plan(n, m, "float32", np.float32, 132, HOPPER_SHARED, x_address=2) is None


@pytest.mark.parametrize(("offset", "n"), [(1, 1504), (3, 12288), (4, 1504), (8, 1504)])
def test_an_epoch_over_a_pixel_view_at_any_offset_matches_numpy(module, offset, n):
    """X a view `offset` bytes into a buffer, as test_cupy's GPU test builds it: the plan
    picks loads its address allows, and the emulation (same address modulo 64, alignment
    sanitizer) would report any load it does not."""
    rng = np.random.default_rng(offset)
    m = 13
    buffer = np.zeros(n * m + 64, np.uint8)
    X = buffer[offset : offset + n * m].reshape((n, m), order="F")
    X[...] = rng.integers(0, 256, (n, m), dtype=np.uint8)
    assert X.flags.f_contiguous and plans.address(X) % 16 == offset % 16
    Y = (rng.random((1, m)) > 0.5).astype(np.float32)
    w, b = (rng.normal(size=(1, n)) * 0.05).astype(np.float32), np.zeros((1, 1), np.float32)
    w_ref, b_ref = w.copy(), b.copy()
    out = emulated_logreg_epoch(module, w, b, X, Y, 0.5, "bce", 3)
    value, correct = REF.logreg_epoch_(
        w_ref, b_ref, X.astype(np.float32) * np.float32(1 / 255), Y, 0.5, "bce"
    )
    np.testing.assert_allclose(out[0], value, **tolerance("float32"))
    assert out[1] == correct
    np.testing.assert_allclose(w, w_ref, **tolerance("float32"))


# ------------------------------------------------------------------------------------------
# Fault 2 of issue #24: 48 KB of dynamic shared memory beside static shared memory

AT_48_KB = [  # (n, parameters, X): 8 stages of about 6 KB rows on an H100 (132 SMs)
    (1536, "float32", "float32"),
    (1532, "float32", "float32"),
    (768, "float64", "float64"),
    (766, "float64", "float64"),
    (3072, "float32", "uint8"),
    (3056, "float32", "uint8"),
]


@pytest.mark.parametrize(("n", "w_dtype", "x_dtype"), AT_48_KB)
def test_a_staged_epoch_at_48_kb_of_dynamic_shared_memory_matches_numpy(module, n, w_dtype, x_dtype):
    """Dynamic shared memory within 48 KB but over 48 KB with the static share: the launch
    must raise the kernel's limit first, or CUDA (and the emulated H100) refuses it."""
    rng = np.random.default_rng(n)
    m = 5
    if x_dtype == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
        X_ref = X.astype(w_dtype) * np.array(1 / 255, w_dtype)
    else:
        X = X_ref = np.asfortranarray(rng.random((n, m)).astype(x_dtype))
    plan = pass_plan(X, w_dtype, 132)
    kernel = module.get_function(plan.kernel)
    assert plan.kind == "staged" and plan.shared_mem <= 48 * 1024
    assert plan.shared_mem > kernel.max_dynamic_shared_size_bytes  # needs the opt-in
    Y = (rng.random((1, m)) > 0.5).astype(w_dtype)
    w, b = (rng.normal(size=(1, n)) * 0.05).astype(w_dtype), np.zeros((1, 1), w_dtype)
    w_ref, b_ref = w.copy(), b.copy()
    out = emulated_logreg_epoch(module, w, b, X, Y, 0.5, "bce", 132)
    value, correct = REF.logreg_epoch_(w_ref, b_ref, X_ref, Y, 0.5, "bce")
    np.testing.assert_allclose(out[0], value, **tolerance(w_dtype))
    assert out[1] == correct
    np.testing.assert_allclose(w, w_ref, **tolerance(w_dtype))


# ------------------------------------------------------------------------------------------
# Issue #18: NaN, infinities and the largest floats go through every kernel as through NumPy


def assert_same_as_numpy(got, expected, dtype):
    """NaN exactly where NumPy has NaN, the same infinities, finite values close."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], **tolerance(dtype))


def specials(dtype) -> np.ndarray:
    big = float(np.finfo(dtype).max)
    return np.array([np.nan, np.inf, -np.inf, big, -big, 0.0, -0.0, 1.5, -2.5], dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("activation", [None, "sigmoid", "relu", "tanh"])
def test_bias_activation_propagates_nan_and_inf_as_numpy(module, dtype, activation):
    values = specials(dtype)
    Z = np.tile(values, (len(values), 1))  # every value beside every bias
    b = values.reshape(-1, 1).copy()
    with np.errstate(all="ignore"):
        expected = REF.bias_activation_(Z.copy(), b, activation)
    run(module, plans.bias_act_launch(Z, b, activation, sm_count=1))
    assert_same_as_numpy(Z, expected, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
def test_activation_backward_propagates_nan_and_inf_as_numpy(module, dtype, activation):
    values = specials(dtype)
    A = np.tile(values, (len(values), 1))
    if activation == "sigmoid":
        A = np.clip(A, 0, 1, where=np.isfinite(A), out=A)  # outputs the activation can give, and NaN
    dA = np.tile(values.reshape(-1, 1), (1, len(values)))  # every gradient beside every output
    with np.errstate(all="ignore"):
        expected = REF.activation_backward_(dA.copy(), A, activation)
    run(module, plans.act_backward_launch(dA, A, activation, sm_count=1))
    assert_same_as_numpy(dA, expected, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_sigmoid_propagates_nan_and_inf_as_numpy(module, dtype):
    Z = specials(dtype).reshape(1, -1)
    with np.errstate(all="ignore"):
        expected = REF.sigmoid_(Z.copy())
    run(module, plans.sigmoid_launch(Z, sm_count=1))
    assert_same_as_numpy(Z, expected, dtype)


@pytest.mark.parametrize("label", [0.0, 1.0, np.nan])
@pytest.mark.parametrize("dtype", FLOATS)
def test_bce_from_logits_propagates_nan_and_inf_as_numpy(module, dtype, label):
    Z = specials(dtype).reshape(1, -1)
    for k in range(Z.shape[1]):  # each special logit alone among ordinary ones, then all at once
        Zk = np.where(np.arange(Z.shape[1]) == k, Z, np.array(0.5, dtype))
        for logits in (Zk, Z):
            Y = np.full_like(logits, label)
            with np.errstate(all="ignore"):
                loss, correct, dZ = REF.bce_from_logits(logits, Y)
            partial = np.full((plans.bce_groups(logits.shape[1], 1), 2), np.nan)
            got_dZ = np.full_like(logits, np.nan)
            run(module, plans.bce_logits_launch(logits, Y, got_dZ, partial, sm_count=1))
            sums = partial.sum(axis=0)
            assert_same_as_numpy(sums[0], loss, dtype)
            assert sums[1] == correct
            assert_same_as_numpy(got_dZ, dZ, dtype)


def logreg_specials(x_kind, dtype, case):
    """(w, b, X, Y) for a 64-feature, 5-example epoch with one kind of special value."""
    rng = np.random.default_rng(17)
    n, m = 64, 5
    big = np.finfo(dtype).max
    if x_kind == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, (n, m), dtype=np.uint8))
    else:
        X = np.asfortranarray(rng.random((n, m)).astype(dtype))
    w = (rng.normal(size=(1, n)) * 0.05).astype(dtype)
    b = np.full((1, 1), 0.1, dtype)
    Y = np.array([[0, 1, 0, 1, 0]], dtype)
    if case == "nan_in_x":
        X[7, 1] = np.nan
    elif case == "inf_in_x":
        X[7, 0], X[9, 1] = np.inf, -np.inf
    elif case == "largest_in_x":  # two examples of one block, both wrong: dz x sums to about 2 max / m
        X[3, 0] = X[3, 2] = big
        w[0, 3] = 0.01
    elif case == "nan_in_w":
        w[0, 5] = np.nan
    elif case == "inf_in_w":
        w[0, 5] = np.inf
    elif case == "largest_in_w":
        w[0, 5] = big
    elif case == "inf_bias":
        b[0, 0] = -np.inf
    elif case == "logit_past_max":  # each product finite, their sum past the largest float
        w[0, :] = big / 16
        X[:, :] = 255 if x_kind == "uint8" else 1
    return w, b, X, Y


LOGREG_SPECIALS = ["nan_in_x", "inf_in_x", "largest_in_x", "nan_in_w", "inf_in_w", "largest_in_w", "inf_bias"]
LOGREG_SPECIALS += ["logit_past_max"]


def logreg_special_params():
    for case in LOGREG_SPECIALS:
        for x_kind in ("float", "uint8"):
            if x_kind == "uint8" and case.endswith("_in_x"):
                continue  # pixels hold no specials
            for dtype in FLOATS:
                for kind in plans.PASS_KINDS:
                    x_dtype = "uint8" if x_kind == "uint8" else dtype
                    if plans.logreg_pass_plan(64, 5, dtype, x_dtype, 1, HOPPER_SHARED, kind) is not None:
                        yield pytest.param(case, x_kind, dtype, kind, id=f"{case}-{kind}-{x_dtype}-{dtype}")


@pytest.mark.parametrize(("case", "x_kind", "dtype", "kind"), list(logreg_special_params()))
def test_single_pass_logreg_epoch_propagates_nan_and_inf_as_numpy(module, case, x_kind, dtype, kind):
    """One epoch on one SM (every example in one block, or two): loss, correct count, w
    and b against the NumPy backend's generic epoch."""
    w, b, X, Y = logreg_specials(x_kind, dtype, case)
    X_ref = X.astype(dtype) * np.array(1 / 255, dtype) if x_kind == "uint8" else X
    w_ref, b_ref = w.copy(), b.copy()
    out = emulated_logreg_epoch(module, w, b, X, Y, 0.5, "bce", 1, kind)
    with np.errstate(all="ignore"):
        value, correct = REF.logreg_epoch_(w_ref, b_ref, X_ref, Y, 0.5, "bce")
    assert_same_as_numpy(out[0], value, dtype)
    assert out[1] == correct
    assert_same_as_numpy(w, w_ref, dtype)
    assert_same_as_numpy(b, b_ref, dtype)


# ------------------------------------------------------------------------------------------
# CupyBackend itself on the emulation: its wrappers, its plans, several threads at once

SMALL_GPU = EmulatedDevice(sm_count=4, name="emulated 4-SM GPU with Hopper's shared memory")


@pytest.fixture
def emulated_backend(library, monkeypatch):
    """A factory of CupyBackend objects on an emulated device (EmulatedCupy as cupy);
    returns (backend, the emulated cupy module). Softmax regression takes softmax_pass
    wherever it can run (``softmax_pass = "fused"``): these tests are about the kernels;
    which epoch the traffic model picks is tested in test_launch_plans.py."""

    def make(device=SMALL_GPU, compile_delay_s=0.0):
        fake = EmulatedCupy(library, device, compile_delay_s)
        monkeypatch.setitem(sys.modules, "cupy", fake)
        from nnx.backends.cupy_backend import CupyBackend

        ops = CupyBackend()
        ops.softmax_pass = "fused"
        return ops, fake

    return make


def test_the_backend_compiles_once_with_its_options(emulated_backend):
    ops, fake = emulated_backend()
    names = ops._compile_all()
    assert fake.modules_built == [plans.COMPILE_OPTIONS] and "read_words" in names
    assert ops.describe()["kernel_compile_s"] >= 0


def test_the_backend_takes_pixels_at_an_odd_address(emulated_backend):
    """test_cupy's GPU test on the emulated device: X a view one byte into a buffer."""
    ops, _ = emulated_backend()
    rng = np.random.default_rng(3)
    n, m = 1504, 13
    buffer = np.zeros(n * m + 1, np.uint8)
    Xd = buffer[1:].reshape((n, m), order="F")
    Xd[...] = rng.integers(0, 256, (n, m), dtype=np.uint8)
    Y = (rng.random((1, m)) > 0.5).astype(np.float32)
    w, b = np.zeros((1, n), np.float32), np.zeros((1, 1), np.float32)
    w_ref, b_ref = w.copy(), b.copy()
    loss, correct = ops.logreg_epoch_(w, b, Xd, ops.prepare_labels(Y, "float32"), 0.5, "bce")
    X_ref = Xd.astype(np.float32) * np.float32(1 / 255)
    ref_loss, ref_correct = REF.logreg_epoch_(w_ref, b_ref, X_ref, Y, 0.5, "bce")
    np.testing.assert_allclose(float(loss), ref_loss, **tolerance("float32"))
    assert float(correct) == ref_correct
    np.testing.assert_allclose(w, w_ref, **tolerance("float32"))
    read, nbytes = ops.streaming_read(Xd)
    read()
    assert nbytes == (n * m - 15) // 16 * 16


def test_a_softmax_model_predicts_on_the_backend_as_on_numpy(emulated_backend):
    """Softmax is over each column, not elementwise: the backend computes it with CuPy's
    ops, never with the elementwise kernel (which has no softmax), so a K-class model's
    probabilities are NumPy's; softmax's elementwise gradient is refused as on NumPy."""
    ops, _ = emulated_backend()
    X = np.random.default_rng(5).standard_normal((6, 9))
    model = nnx.MLP([6, 5, 3], seed=2)
    proba = model.predict_proba(X, backend=ops, dtype="float64")
    np.testing.assert_allclose(proba, model.predict_proba(X, backend="numpy", dtype="float64"), rtol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=0), 1.0, rtol=1e-12)
    P = ops.asarray(proba, "float64")
    with pytest.raises(ValueError, match="softmax has no elementwise derivative"):
        ops.activation_backward_(P.copy(), P, "softmax")


@pytest.mark.parametrize(("n", "w_dtype", "x_dtype"), AT_48_KB[::2])
def test_the_backend_raises_the_shared_memory_limit_at_48_kb(emulated_backend, n, w_dtype, x_dtype):
    ops, _ = emulated_backend(HOPPER)
    rng = np.random.default_rng(n)
    m = 3
    X = rng.integers(0, 256, (n, m), dtype=np.uint8) if x_dtype == "uint8" else rng.random((n, m))
    Xd = np.asfortranarray(X.astype(x_dtype))  # as prepare_fused_input leaves it on a GPU
    assert ops._pass_plan(n, m, w_dtype, Xd.dtype, plans.address(Xd)).shared_mem == 48 * 1024
    w, b, Y = np.zeros((1, n), w_dtype), np.zeros((1, 1), w_dtype), np.ones((1, m), w_dtype)
    ops.logreg_epoch_(w, b, Xd, Y, 0.5, "bce")
    assert np.all(np.isfinite(w)) and np.any(w != 0)


@pytest.mark.parametrize("dtype", FLOATS)
def test_sigmoid_at_extreme_logits_as_on_a_gpu(emulated_backend, dtype):
    """test_numerics' check for the CuPy backend, float kernels flushing denormals as the
    GPU does."""
    ops, fake = emulated_backend()
    if not fake.module.ftz_supported:
        pytest.skip("flushing denormals is emulated on x86 only")
    check_sigmoid_at_extreme_logits(ops, "cupy", dtype)


def run_threads(*targets):
    """Runs each target in its own thread; re-raises the first exception."""
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]


@pytest.mark.parametrize("kind", plans.PASS_KINDS)
def test_two_threads_training_models_of_one_shape_keep_their_own_partial_sums(emulated_backend, kind):
    """Issue #18: both threads' single passes run before either update (they meet after
    each pass); a partial-sum buffer shared by shape would hand one model the other's."""
    ops, fake = emulated_backend()
    meet = threading.Barrier(2, timeout=120)
    fake.module.after_launch = lambda name: (
        meet.wait() if name.startswith("logreg_") and "update" not in name else None
    )
    rng = np.random.default_rng(7)
    n, m = 1504, 11
    models = []
    for _ in range(2):
        X = np.asfortranarray(rng.random((n, m)).astype(np.float32))
        Y = (rng.random((1, m)) > 0.5).astype(np.float32)
        w, b = (rng.normal(size=(1, n)) * 0.05).astype(np.float32), np.zeros((1, 1), np.float32)
        models.append((X, Y, w, b, w.copy(), b.copy(), []))

    def train(X, Y, w, b, _w_ref, _b_ref, losses):
        with ops._forcing_pass(kind):
            for _ in range(2):
                loss, _ = ops.logreg_epoch_(w, b, X, Y, 0.5, "bce")
                losses.append(float(loss))

    run_threads(*(lambda model=model: train(*model) for model in models))
    for X, Y, w, b, w_ref, b_ref, losses in models:
        expected = [REF.logreg_epoch_(w_ref, b_ref, X, Y, 0.5, "bce")[0] for _ in range(2)]
        np.testing.assert_allclose(losses, expected, **tolerance("float32"))
        np.testing.assert_allclose(w, w_ref, **tolerance("float32"))
        np.testing.assert_allclose(b, b_ref, **tolerance("float32"))


def test_two_threads_asking_for_a_kernel_at_once_compile_the_module_once(emulated_backend):
    ops, fake = emulated_backend(compile_delay_s=0.5)
    run_threads(lambda: ops._kernel("bias_act<float>"), lambda: ops._kernel("sigmoid_inplace<float>"))
    assert len(fake.modules_built) == 1


def test_forcing_a_pass_applies_to_the_calling_thread_only(emulated_backend):
    ops, _ = emulated_backend()
    inside, done = threading.Event(), threading.Event()

    def force():
        with ops._forcing_pass("registers"):
            inside.set()
            done.wait(60)

    thread = threading.Thread(target=force)
    thread.start()
    inside.wait(60)
    try:
        assert ops._pass_plan(1504, 100, "float32", "float32").kind == "staged"  # this thread: auto
    finally:
        done.set()
        thread.join()


def test_nnx_info_reports_the_kernel_compile_as_a_first_call_cost(emulated_backend):
    from nnx import info

    ops, fake = emulated_backend()
    facts = {**ops.describe(), **info.kernel_compile(ops)}
    assert facts["kernel_compile_s"] >= 0 and facts["kernel_disk_cache"] is False  # "13.6.0"
    assert len(fake.modules_built) == 1
    report = {
        "nnx": "x", "python": "3", "platform": "p", "cpu": "c", "cpu_count": 2, "versions": {},
        "backends": {"cupy": {"available": True, "reason": "ok", **facts}},
        "auto": {"backend": "cupy", "reason": "a GPU"}, "blas": "threadpoolctl not installed",
    }  # fmt: skip
    text = info.format_info(report)
    assert "kernels compiled in" in text and "a first-call cost of each process (no disk cache)" in text
    assert info.kernel_compile(nnx.get_backend("numpy")) == {}


def test_the_gpu_benchmark_runs_on_the_emulated_device(emulated_backend, monkeypatch):
    """`nnx bench --backends cupy` end to end through the backend's declared methods (its
    timer, streaming read and kernel variants): every GPU row, reference and ratio."""
    from nnx import backends, bench

    ops, _ = emulated_backend()
    monkeypatch.setitem(backends._instances, "cupy", ops)
    monkeypatch.setitem(backends._status_cache, "cupy", None)
    result = bench.run(["cupy"], ms=(8,), x_dtypes=("float32",), repeats=1, with_torch=False)
    assert [(r["backend"], r["model"]) for r in result["rows"]] == [("cupy", m) for m in bench.MODELS]
    limits = result["limits"]
    assert list(limits) == ["gpu m=8,float32"]  # no CPU contender: no CPU references
    gpu = limits["gpu m=8,float32"]
    for key in ("gpu_copy_read_write_gb_s", "gpu_read_kernel_gb_s", "cublas_products_gflops"):
        assert gpu[key] > 0
    assert gpu["cupy_staged_pass_gb_s"] > 0 and gpu["cupy_registers_pass_gb_s"] > 0
    for row in result["rows"]:
        assert (
            row["ratios"]["x_read_vs_gpu_copy_bandwidth"] > 0
            and row["ratios"]["x_read_vs_gpu_read_kernel"] > 0
        )
    (mlp,) = [row for row in result["rows"] if row["model"] == "mlp"]
    assert mlp["ratios"]["cublas_products_time_over_epoch"] > 0
    assert result["environment"]["backends"]["cupy"]["kernel_compile_s"] >= 0


def test_the_emulation_plans_each_kernel_with_its_sm90_blocks_per_sm(emulated_backend):
    """As on an H100, a wave of logreg_pass holds as many blocks per SM as the kernel's
    sm_90 registers allow (1 to 3 here), so the emulated epoch has the GPU's blocks and
    sums its floats in the GPU's order: the backend's plans (the driver's occupancy on the
    emulated device) and the tests' own plans agree, and both differ from one block per SM."""
    single_pass = [name for name in sm90_registers() if name.startswith(("logreg_pass", "softmax_pass"))]
    per_sm = {name: modelled_resident_blocks(name) for name in single_pass}
    assert set(per_sm.values()) == {1, 2, 3}
    assert per_sm["logreg_pass<float, float, 1, 1, 1>"] == 3  # 37 registers
    assert per_sm["logreg_pass<float, unsigned char, 4, 2, 2>"] == 2  # 62
    assert per_sm["softmax_pass<float, unsigned char, 16>"] == 1  # 102
    ops, _ = emulated_backend()  # 4 SMs, blocks per SM modelled
    rng = np.random.default_rng(5)
    cases = ((1000, "float32", "float32"), (1504, "uint8", "float32"), (3000, "float64", "float64"))
    for n, x_dtype, w_dtype in cases:
        X = np.asfortranarray(rng.random((n, 30)).astype(x_dtype))
        with ops._forcing_pass("registers"):
            plan = ops._pass_plan(n, 30, w_dtype, x_dtype)
        ours = pass_plan(X, w_dtype, 4, "registers")
        assert plan == ours and ours.groups == 4 * per_sm[ours.kernel] > 4
        assert pass_plan(X, w_dtype, 4, "registers", resident_blocks=None).groups == 4  # one per SM


def test_the_register_kernel_grid_follows_the_kernels_occupancy(emulated_backend):
    """A wave of logreg_pass is as many blocks as fit at once: the driver's occupancy
    (here 3 per SM) times the SMs, one per SM when the driver cannot say."""
    ops, _ = emulated_backend(EmulatedDevice(sm_count=4, resident_blocks=3))
    with ops._forcing_pass("registers"):
        assert ops._pass_plan(12288, 10**5, "float32", "float32").groups % 12 == 0
        assert ops._pass_plan(12288, 30, "float32", "float32").groups == 12

    def unavailable(*_):
        raise RuntimeError("no occupancy here")

    ops, fake = emulated_backend(EmulatedDevice(sm_count=4, resident_blocks=3))
    fake.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor = unavailable
    with ops._forcing_pass("registers"):
        assert ops._pass_plan(12288, 30, "float32", "float32").groups == 4
    assert "no occupancy here" in ops.describe()["occupancy_error"]


# ------------------------------------------------------------------- softmax kernels
def _logits_with_specials(dtype, K=5, m=700, seed=11):
    rng = np.random.default_rng(seed)
    Z = (rng.normal(size=(K, m)) * 8).astype(dtype)
    top = np.finfo(dtype).max
    Z[:, 0] = [top, -top, 0.0, 1.0, -1.0][:K]  # a column spanning the whole float range
    Z[:, 1] = 3.0  # ties: argmax takes the first
    return Z


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m", [1, 7, 9000])
def test_softmax_xent_matches_numpy(module, dtype, m):
    rng = np.random.default_rng(m)
    Z = _logits_with_specials(dtype, m=max(m, 2))[:, :m].copy()
    Y = rng.integers(0, 5, (1, m)).astype(dtype)
    loss, correct, dZ = REF.softmax_cross_entropy(Z, Y)
    partial = np.full((plans.bce_groups(m, 1), 2), np.nan)
    got = np.full_like(Z, np.nan)
    run(module, plans.softmax_xent_launch(Z, Y, got, partial, sm_count=1))
    sums = partial.sum(axis=0)
    np.testing.assert_allclose(sums[0], loss, rtol=1e-12 if dtype == "float64" else 1e-6)
    assert sums[1] == correct
    np.testing.assert_allclose(got, dZ, **tolerance(dtype))
    assert np.all(np.isfinite(got)) and np.isfinite(sums[0])


@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_columns_match_numpy(module, dtype):
    Z = _logits_with_specials(dtype)
    expected = REF.softmax_(Z.copy())
    run(module, plans.softmax_launch(Z, sm_count=1))
    np.testing.assert_allclose(Z, expected, **tolerance(dtype))
    np.testing.assert_allclose(Z.sum(axis=0), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_softmax_kernels_propagate_nan_and_inf_as_numpy(module, dtype, bad):
    Z = _logits_with_specials(dtype, m=40)
    Z[2, 5] = bad
    Z[0, 9] = bad
    Y = (np.arange(40) % 5).astype(dtype).reshape(1, -1)
    with np.errstate(all="ignore"):
        loss, correct, dZ = REF.softmax_cross_entropy(Z, Y)
        expected = REF.softmax_(Z.copy())
    partial = np.zeros((plans.bce_groups(40, 1), 2))
    got = np.zeros_like(Z)
    run(module, plans.softmax_xent_launch(Z, Y, got, partial, sm_count=1))
    assert np.isnan(partial.sum(axis=0)[0]) == np.isnan(loss)
    assert partial.sum(axis=0)[1] == correct
    np.testing.assert_array_equal(np.isnan(got), np.isnan(dZ))
    run(module, plans.softmax_launch(Z, sm_count=1))
    np.testing.assert_array_equal(np.isnan(Z), np.isnan(expected))
    np.testing.assert_allclose(Z[~np.isnan(Z)], expected[~np.isnan(expected)], **tolerance(dtype))


def test_softmax_model_trains_on_the_emulated_backend_as_on_numpy(emulated_backend):
    """A softmax MLP and softmax regression on CupyBackend (emulated) against NumPy, float64."""
    ops, _ = emulated_backend()
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 90))
    y = rng.integers(0, 4, 90)
    for sizes in ([6, 4], [6, 5, 4]):
        runs = []
        for backend in (ops, "numpy"):
            model = nnx.MLP(sizes, seed=0) if len(sizes) > 2 else nnx.SoftmaxRegression(6, 4)
            model.fit(X, y, epochs=8, lr=0.5, backend=backend, dtype="float64")
            runs.append((model.parameters(), model.predict_proba(X, backend=backend)))
        (p_emu, P_emu), (p_ref, P_ref) = runs
        for (W, b), (Wr, br) in zip(p_emu, p_ref):
            np.testing.assert_allclose(W, Wr, **tolerance("float64"))
            np.testing.assert_allclose(b, br, **tolerance("float64"))
        np.testing.assert_allclose(P_emu, P_ref, **tolerance("float64"))


# ------------------------------------------------------------------------------------------
# Loss and gradient without the update (L-BFGS, issue #25): the single pass, then logreg_grad


def emulated_logreg_grad(module, w, b, X, Y, loss, sm_count, kind="auto"):
    """(dw (1, n) float64, out (3,) = loss, correct, db) through the backend's two launches."""
    plan = pass_plan(X, w.dtype, sm_count, kind)
    assert plan is not None, "no single-pass kernel takes this X"
    dw_partial = np.full((plan.groups, X.shape[0]), np.nan, w.dtype)
    stats = np.full((plan.groups, 3), np.nan)
    dw, out = np.full((1, X.shape[0]), np.nan), np.full(3, np.nan)
    for launch in plans.logreg_grad_launches(plan, w, b, X, Y, dw_partial, stats, dw, out, loss, sm_count):
        run(module, launch)
    return dw, out


GRAD_IDS = {
    "registers-37x5-float64-float64",
    "staged-1500x37-float32-float32",
    "staged-1500x37-float64-float64",
    "registers-1500x37-uint8-float32",  # 4-pixel words, 2 examples per step
    "registers-1500x37-uint8-float64",
    "staged-12288x11-uint8-float32",  # the tutorials' pictures
    "registers-1501x6-uint8-float32",  # one pixel per load
}
GRAD_CASES = [case for case in logreg_params() if case.id in GRAD_IDS]


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize(("kind", "n", "m", "x_kind", "sm_count", "dtype"), GRAD_CASES)
def test_logreg_loss_and_gradient_match_numpy_and_leave_the_parameters(
    module, kind, n, m, x_kind, sm_count, dtype, loss
):
    rng = np.random.default_rng(n + m)
    if x_kind == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, size=(n, m), dtype=np.uint8))
        X_ref = X.astype(dtype) * np.array(1 / 255, dtype)
    else:
        X = np.asfortranarray(rng.random((n, m)).astype(dtype))
        X_ref = X
    Y = (rng.random((1, m)) > 0.5).astype(dtype)
    w = (rng.normal(size=(1, n)) * 0.05).astype(dtype)
    b = np.full((1, 1), 0.1, dtype)
    w0, b0 = w.copy(), b.copy()
    dw, out = emulated_logreg_grad(module, w, b, X, Y, loss, sm_count, kind)
    assert np.array_equal(w, w0) and np.array_equal(b, b0)
    value, correct, dw_ref, db_ref = REF.logreg_loss_grad(w, b, X_ref, Y, loss)
    np.testing.assert_allclose(out[0], value, **tolerance(dtype))
    assert out[1] == correct
    scale = np.abs(dw_ref).max()
    np.testing.assert_allclose(
        dw, dw_ref, rtol=tolerance(dtype)["rtol"], atol=tolerance(dtype)["rtol"] * scale
    )
    np.testing.assert_allclose(out[2], db_ref[0, 0], **tolerance(dtype))
    # the gradient is the step the fused epoch takes (same kernel, same reduction order)
    emulated_logreg_epoch(module, w, b, X, Y, 1.0, loss, sm_count, kind)
    np.testing.assert_allclose(w0 - w, dw.astype(dtype), rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("kind", plans.PASS_KINDS)
def test_logreg_gradient_is_bitwise_repeatable_in_any_warp_order(module, module_reversed, kind):
    rng = np.random.default_rng(25)
    X = np.asfortranarray(rng.integers(0, 256, size=(1504, 13), dtype=np.uint8))
    Y = (rng.random((1, 13)) > 0.5).astype(np.float32)
    w, b = (rng.normal(size=(1, 1504)) * 0.01).astype(np.float32), np.zeros((1, 1), np.float32)
    results = []
    for emulated in (module, module, module_reversed):
        dw, out = emulated_logreg_grad(emulated, w, b, X, Y, "bce", 2, kind)
        results.append((dw.tobytes(), out.tobytes()))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("kind", plans.PASS_KINDS)
@pytest.mark.parametrize(("x_dtype", "dtype"), [("uint8", "float32"), ("float64", "float64")])
def test_the_backend_returns_the_logreg_gradient_as_float64(emulated_backend, kind, x_dtype, dtype):
    ops, _ = emulated_backend()
    rng = np.random.default_rng(3)
    n, m = 1504, 21
    X = rng.integers(0, 256, (n, m), dtype=np.uint8) if x_dtype == "uint8" else rng.random((n, m))
    Y = (rng.random((1, m)) > 0.5).astype(dtype)
    Xd = ops.prepare_fused_input(X, dtype)
    w, b = (rng.normal(size=(1, n)) * 0.05).astype(dtype), np.full((1, 1), -0.2, dtype)
    with ops._forcing_pass(kind):
        loss, correct, dw, db = ops.logreg_loss_grad(w, b, Xd, ops.prepare_labels(Y, dtype), "bce")
    X_ref = X.astype(dtype) * np.array(1 / 255, dtype) if x_dtype == "uint8" else X
    ref = REF.logreg_loss_grad(w, b, X_ref, Y, "bce")
    assert dw.dtype == db.dtype == np.float64 and dw.shape == (1, n) and db.shape == (1, 1)
    np.testing.assert_allclose(float(loss), ref[0], **tolerance(dtype))
    assert float(correct) == ref[1]
    np.testing.assert_allclose(dw, ref[2], rtol=tolerance(dtype)["rtol"], atol=1e-6 * np.abs(ref[2]).max())
    np.testing.assert_allclose(db, ref[3], **tolerance(dtype))


@pytest.mark.parametrize("model_kind", ["logreg", "softmax"])
def test_lbfgs_on_the_emulated_backend_matches_numpy(emulated_backend, model_kind):
    """fit_lbfgs end to end on CupyBackend (the CUDA kernels for logistic regression, the
    generic xp path for softmax) reaches the NumPy backend's parameters."""
    pytest.importorskip("scipy")
    from nnx.lbfgs import fit_lbfgs

    ops, _ = emulated_backend()
    rng = np.random.default_rng(8)
    n, m = 64, 48
    X = rng.integers(0, 256, (n, m), dtype=np.uint8)
    if model_kind == "logreg":
        Y, make = (rng.random((1, m)) > 0.5).astype(np.int64), lambda: nnx.LogisticRegression(n)
    else:
        Y, make = rng.integers(0, 3, (1, m)), lambda: nnx.SoftmaxRegression(n, 3)
    fitted = []
    for backend in (ops, "numpy"):
        model = make()
        history = fit_lbfgs(
            model, X, Y, nnx.LBFGS(tol=1e-9), epochs=6, l2=1.0, backend=backend, dtype="float64"
        )
        fitted.append((model.parameters()[0], history))
    (W, b), history = fitted[0]
    (W_ref, b_ref), history_ref = fitted[1]
    assert history.backend == "cupy" and history.epochs == history_ref.epochs == 6
    np.testing.assert_allclose(history.objective, history_ref.objective, rtol=1e-9)
    np.testing.assert_allclose(W, W_ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b, b_ref, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------
# The single-pass softmax-regression epoch (issue #20): softmax_pass, then softmax_update /
# softmax_grad, against the NumPy backend's generic two-product epoch


def softmax_plan(X, K, dtype, sm_count, shared_limit=HOPPER_SHARED, kind="fused"):
    n, m = X.shape
    return plans.softmax_pass_plan(
        n, m, K, dtype, X.dtype, sm_count, shared_limit, plans.address(X), modelled_resident_blocks, kind
    )


def softmax_partials(plan, K, n, dtype):
    """The three partial-sum buffers, NaN-filled: a row the kernel forgets to write shows."""
    return (
        np.full((plan.groups, K, n), np.nan, dtype),
        np.full((plan.groups, K), np.nan),
        np.full((plan.groups, 2), np.nan),
    )


def emulated_softmax_epoch(module, W, b, X, Y, lr, sm_count, shared_limit=HOPPER_SHARED, kind="fused"):
    """One epoch through the backend's two launches; returns out = (loss, correct)."""
    K, n = W.shape
    plan = softmax_plan(X, K, W.dtype, sm_count, shared_limit, kind)
    assert plan is not None, "softmax_pass cannot take this X"
    out = np.full(2, np.nan)
    partials = softmax_partials(plan, K, n, W.dtype)
    for launch in plans.softmax_launches(plan, W, b, X, Y, *partials, out, lr, sm_count):
        run(module, launch)
    return out


def emulated_softmax_grad(module, W, b, X, Y, sm_count, shared_limit=HOPPER_SHARED, kind="fused"):
    """(dW (K, n), db (K, 1), out (2,)) float64 through the backend's two launches."""
    K, n = W.shape
    plan = softmax_plan(X, K, W.dtype, sm_count, shared_limit, kind)
    dW, db, out = np.full((K, n), np.nan), np.full((K, 1), np.nan), np.full(2, np.nan)
    partials = softmax_partials(plan, K, n, W.dtype)
    for launch in plans.softmax_grad_launches(plan, W, b, X, Y, *partials, dW, db, out, sm_count):
        run(module, launch)
    return dW, db, out


def softmax_problem(n, m, K, x_kind, dtype, seed=0):
    """(W, b, X, Y, X as the NumPy backend takes it) for a K-class epoch."""
    rng = np.random.default_rng(seed + n + 7 * m + 31 * K)
    if x_kind == "uint8":
        X = np.asfortranarray(rng.integers(0, 256, size=(n, m), dtype=np.uint8))
        X_ref = X.astype(dtype) * np.array(1 / 255, dtype)
    else:
        X = np.asfortranarray(rng.random((n, m)).astype(dtype))
        X_ref = X
    Y = rng.integers(0, K, (1, m)).astype(dtype)
    W = (rng.normal(size=(K, n)) * 0.05).astype(dtype)
    b = (rng.normal(size=(K, 1)) * 0.1).astype(dtype)
    return W, b, X, Y, X_ref


SOFTMAX_CASES = [
    # (n, m, K, x kind, sm_count, shared limit): every KMAX, odd sizes, one and many
    # groups, half-empty last steps, class slices (the 64x64x3 pictures at K = 10 on a
    # Hopper GPU need 3; a small shared limit forces them elsewhere)
    (3, 1, 2, "float", 4, HOPPER_SHARED),
    (37, 9, 3, "float", 2, HOPPER_SHARED),
    (1501, 13, 5, "uint8", 3, HOPPER_SHARED),  # n not a multiple of 4, odd m
    (300, 41, 10, "uint8", 2, HOPPER_SHARED),  # KMAX 16: 2 examples per step
    (300, 41, 10, "float", 2, 3 * 300 * 8 + plans.SOFTMAX_STATIC_BYTES),  # slices of 3 classes
    (64, 23, 17, "float", 2, HOPPER_SHARED),  # KMAX 32: 1 example per step
    (40, 6, 32, "uint8", 1, HOPPER_SHARED),  # the most classes fused
    (12288, 7, 10, "uint8", 2, HOPPER_SHARED),  # the tutorials' pictures, 10 classes
]


def softmax_params():
    for n, m, K, x_kind, sm_count, limit in SOFTMAX_CASES:
        for dtype in FLOATS:
            if n == 12288 and dtype == "float64":
                continue  # the same path as float32 here; the emulation is slow at this size
            case_id = f"{n}x{m}-K{K}-{x_kind}-{dtype}-{limit}"
            yield pytest.param(n, m, K, x_kind, sm_count, limit, dtype, id=case_id)


@pytest.mark.parametrize(("n", "m", "K", "x_kind", "sm_count", "limit", "dtype"), list(softmax_params()))
def test_single_pass_softmax_epoch_matches_numpy(module, n, m, K, x_kind, sm_count, limit, dtype):
    W, b, X, Y, X_ref = softmax_problem(n, m, K, x_kind, dtype)
    W_ref, b_ref = W.copy(), b.copy()
    epochs = 1 if n == 12288 else 2  # the second starts from parameters the kernel updated
    for _ in range(epochs):
        out = emulated_softmax_epoch(module, W, b, X, Y, 0.5, sm_count, limit)
        value, correct = REF.softmax_epoch_(W_ref, b_ref, X_ref, Y, 0.5)
        np.testing.assert_allclose(out[0], value, **tolerance(dtype))
        assert out[1] == correct
    np.testing.assert_allclose(W, W_ref, **tolerance(dtype))
    np.testing.assert_allclose(b, b_ref, **tolerance(dtype))


def test_a_softmax_epoch_over_several_waves_of_blocks_matches_numpy(module, monkeypatch):
    """With at most 4 examples per block, 41 examples in class slices take several whole
    waves of groups: the same results as the NumPy backend."""
    monkeypatch.setattr(plans, "MAX_EXAMPLES_PER_BLOCK", 4)
    W, b, X, Y, X_ref = softmax_problem(200, 41, 6, "float", "float32")
    limit = 2 * 200 * 4 + plans.SOFTMAX_STATIC_BYTES  # 2 classes per block: 3 slices
    plan = softmax_plan(X, 6, W.dtype, 4, limit)
    assert plan.slices == 3 and plan.groups > 4
    W_ref, b_ref = W.copy(), b.copy()
    out = emulated_softmax_epoch(module, W, b, X, Y, 0.5, 4, limit)
    value, correct = REF.softmax_epoch_(W_ref, b_ref, X_ref, Y, 0.5)
    np.testing.assert_allclose(out[0], value, **tolerance("float32"))
    assert out[1] == correct
    np.testing.assert_allclose(W, W_ref, **tolerance("float32"))
    np.testing.assert_allclose(b, b_ref, **tolerance("float32"))


def test_single_pass_softmax_epoch_is_bitwise_repeatable_in_any_warp_order(module, module_reversed):
    W0, b0, X, Y, _ = softmax_problem(1504, 13, 10, "uint8", "float32")
    results = []
    for emulated in (module, module, module_reversed):
        W, b = W0.copy(), b0.copy()
        out = [emulated_softmax_epoch(emulated, W, b, X, Y, 0.1, 2) for _ in range(2)]
        grads = emulated_softmax_grad(emulated, W, b, X, Y, 2)
        results.append((W.tobytes(), b.tobytes(), np.stack(out).tobytes(), *(g.tobytes() for g in grads)))
    assert results[0] == results[1] == results[2]


SOFTMAX_SPECIALS = [
    "nan_in_x",
    "inf_in_x",
    "nan_in_w",
    "inf_in_w",
    "largest_in_w",
    "inf_bias",
    "logit_past_max",
]


def softmax_specials(x_kind, dtype, case):
    """(W, b, X, Y) for a 64-feature, 5-example, 3-class epoch with one kind of special."""
    W, b, X, Y, _ = softmax_problem(64, 5, 3, x_kind, dtype, seed=17)
    if case == "nan_in_x":
        X[7, 1] = np.nan
    elif case == "inf_in_x":
        X[7, 0], X[9, 1] = np.inf, -np.inf
    elif case == "nan_in_w":
        W[1, 5] = np.nan
    elif case == "inf_in_w":
        W[2, 5] = np.inf
    elif case == "largest_in_w":  # W * pixel overflows where W * (pixel / 255) does not
        W[0, 5] = np.finfo(dtype).max / 200
    elif case == "inf_bias":
        b[1, 0] = -np.inf
    elif case == "logit_past_max":  # each product finite, their sum past the largest float
        W[0, :] = np.finfo(dtype).max / 16
        X[:, :] = 255 if x_kind == "uint8" else 1
    return W, b, X, Y


def softmax_special_params():
    for case in SOFTMAX_SPECIALS:
        for x_kind in ("float", "uint8"):
            if x_kind == "uint8" and case.endswith("_in_x"):
                continue  # pixels hold no specials
            for dtype in FLOATS:
                yield pytest.param(case, x_kind, dtype, id=f"{case}-{x_kind}-{dtype}")


@pytest.mark.parametrize(("case", "x_kind", "dtype"), list(softmax_special_params()))
def test_single_pass_softmax_epoch_propagates_nan_and_inf_as_numpy(module, case, x_kind, dtype):
    W, b, X, Y = softmax_specials(x_kind, dtype, case)
    X_ref = X.astype(dtype) * np.array(1 / 255, dtype) if x_kind == "uint8" else X
    W_ref, b_ref = W.copy(), b.copy()
    out = emulated_softmax_epoch(module, W, b, X, Y, 0.5, 1)
    with np.errstate(all="ignore"):
        value, correct = REF.softmax_epoch_(W_ref, b_ref, X_ref, Y, 0.5)
    assert_same_as_numpy(out[0], value, dtype)
    assert out[1] == correct
    assert_same_as_numpy(W, W_ref, dtype)
    assert_same_as_numpy(b, b_ref, dtype)


@pytest.mark.parametrize(("x_kind", "dtype", "limit"), [
    ("uint8", "float32", HOPPER_SHARED),
    ("float", "float64", HOPPER_SHARED),
    ("uint8", "float64", 2 * 700 * 8 + plans.SOFTMAX_STATIC_BYTES),  # class slices
])  # fmt: skip
def test_softmax_loss_and_gradient_match_numpy_and_leave_the_parameters(module, x_kind, dtype, limit):
    W, b, X, Y, X_ref = softmax_problem(700, 19, 5, x_kind, dtype)
    W0, b0 = W.copy(), b.copy()
    dW, db, out = emulated_softmax_grad(module, W, b, X, Y, 2, limit)
    assert np.array_equal(W, W0) and np.array_equal(b, b0)
    value, correct, dW_ref, db_ref = REF.softmax_loss_grad(W, b, X_ref, Y)
    np.testing.assert_allclose(out[0], value, **tolerance(dtype))
    assert out[1] == correct
    scale = np.abs(dW_ref).max()
    rtol = tolerance(dtype)["rtol"]
    np.testing.assert_allclose(dW, dW_ref, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(db, db_ref, rtol=rtol, atol=rtol * np.abs(db_ref).max())
    # the gradient is the step the fused epoch takes (same kernel, same reduction order)
    emulated_softmax_epoch(module, W, b, X, Y, 1.0, 2, limit)
    np.testing.assert_allclose(W0 - W, dW.astype(dtype), rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize(("x_dtype", "dtype"), [("uint8", "float32"), ("float64", "float64")])
def test_the_backend_trains_softmax_regression_in_one_pass_as_numpy(emulated_backend, x_dtype, dtype):
    """CupyBackend takes raw pixels for softmax regression (prepare_fused_input with the
    class count) and trains it with softmax_pass: the NumPy backend's parameters, loss
    history and gradient (returned as float64)."""
    ops, fake = emulated_backend()
    launched = []
    fake.module.after_launch = launched.append
    rng = np.random.default_rng(4)
    n, m, K = 300, 40, 4
    X = rng.integers(0, 256, (n, m), dtype=np.uint8) if x_dtype == "uint8" else rng.random((n, m))
    y = rng.integers(0, K, m)
    assert ops.prepare_fused_input(X, dtype, K).dtype == np.dtype(x_dtype)
    runs = []
    for backend in (ops, "numpy"):
        model = nnx.SoftmaxRegression(n, K)
        history = model.fit(X, y, epochs=5, lr=0.5, backend=backend, dtype=dtype)
        runs.append((model.parameters()[0], history.loss))
    (W, b), loss = runs[0]
    (W_ref, b_ref), loss_ref = runs[1]
    kmax4 = f"softmax_pass<{plans.CTYPE[dtype]}, {plans.CTYPE[x_dtype]}, 4>"
    assert launched.count(kmax4) == 5 and launched.count(f"softmax_update<{plans.CTYPE[dtype]}>") == 5
    np.testing.assert_allclose(loss, loss_ref, **tolerance(dtype))
    np.testing.assert_allclose(W, W_ref, **tolerance(dtype))
    np.testing.assert_allclose(b, b_ref, **tolerance(dtype))
    Xd = ops.prepare_fused_input(X, dtype, K)
    Wd, bd = ops.asarray(W, dtype), ops.asarray(b, dtype)
    value, correct, dW, db = ops.softmax_loss_grad(Wd, bd, Xd, ops.prepare_labels(y.reshape(1, -1), dtype))
    assert launched[-2:] == [kmax4, f"softmax_grad<{plans.CTYPE[dtype]}>"]
    assert dW.dtype == db.dtype == np.float64 and dW.shape == (K, n) and db.shape == (K, 1)
    X_ref = X.astype(dtype) * np.array(1 / 255, dtype) if x_dtype == "uint8" else X
    ref = REF.softmax_loss_grad(W.astype(dtype), b.astype(dtype), X_ref, y.reshape(1, -1).astype(dtype))
    np.testing.assert_allclose(float(value), ref[0], **tolerance(dtype))
    assert float(correct) == ref[1]
    np.testing.assert_allclose(dW, ref[2], rtol=tolerance(dtype)["rtol"], atol=1e-6 * np.abs(ref[2]).max())


def test_two_threads_training_softmax_models_of_one_shape_keep_their_own_partial_sums(emulated_backend):
    """As for logistic regression: both threads' softmax passes run before either update."""
    ops, fake = emulated_backend()
    meet = threading.Barrier(2, timeout=120)
    passes = []

    def after_launch(name):
        if name.startswith("softmax_pass"):
            passes.append(name)
            meet.wait()

    fake.module.after_launch = after_launch
    models = []
    for seed in range(2):
        W, b, X, Y, _ = softmax_problem(700, 11, 5, "float", "float32", seed=seed)
        models.append((X, Y, W, b, W.copy(), b.copy(), []))

    def train(X, Y, W, b, _W_ref, _b_ref, losses):
        for _ in range(2):
            loss, _ = ops.softmax_epoch_(W, b, X, Y, 0.5)
            losses.append(float(loss))

    run_threads(*(lambda model=model: train(*model) for model in models))
    assert passes == ["softmax_pass<float, float, 8>"] * 4  # 2 threads x 2 epochs, all fused
    for X, Y, W, b, W_ref, b_ref, losses in models:
        expected = [REF.softmax_epoch_(W_ref, b_ref, X, Y, 0.5)[0] for _ in range(2)]
        np.testing.assert_allclose(losses, expected, **tolerance("float32"))
        np.testing.assert_allclose(W, W_ref, **tolerance("float32"))
        np.testing.assert_allclose(b, b_ref, **tolerance("float32"))


def test_the_gpu_runs_kernel_check_passes_on_the_emulated_device(emulated_backend):
    """benchmarks/gpu_check.py, the first step of the GPU run, end to end on the emulated
    device (small rows): every kernel's facts recorded, every kernel family checked
    against NumPy, none failing, so its first device call is not lost to the script."""
    import importlib.util

    path = ROOT / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    ops, _ = emulated_backend()
    result = gpu_check.run_checks(ops, features=(64,))
    assert result["failed"] == [], [c for c in result["checks"] if not c["ok"]]
    assert [k["kernel"] for k in result["kernels"]] == [*plans.name_expressions(), "read_words"]
    assert all("error" not in k and k["blocks_per_sm"] >= 1 for k in result["kernels"])
    families = {c["name"].split("<")[0].split(" ")[0] for c in result["checks"]}
    assert {
        "bias_act",
        "act_backward",
        "sgd_step",
        "adam_step",
        "dropout_apply",
        "logreg",
        "softmax_pass",
    } <= families
    assert result["compile_s"] is not None


# ------------------------------------------------------------------ dropout coalescing
# dropout_apply instantiated for a float that records its memory accesses: which thread of
# which block read (src) or wrote (dst) which address, in the order each thread did.
TRACED_DROPOUT = r"""
#include "nnx_kernels.cu"

#include <vector>

struct TracedAccess {
    long long block, thread, address;
    int write;
};
std::vector<TracedAccess> traced_accesses;

inline void nnx_trace(const void* at, int write) {
    long long address = (long long)(std::size_t)at;
    traced_accesses.push_back({(long long)blockIdx.x, (long long)threadIdx.x, address, write});
}

struct Traced {  // a float whose reads (as a factor) and writes (by assignment) are recorded
    float v;
    Traced() = default;
    Traced(double x) : v((float)x) {}
    Traced& operator=(const Traced& o) {
        nnx_trace(this, 1);
        v = o.v;
        return *this;
    }
};
inline Traced operator*(const Traced& a, const Traced& b) {
    nnx_trace(&a, 0);
    return Traced(a.v * b.v);
}

extern "C" long long traced_count() { return (long long)traced_accesses.size(); }
extern "C" void traced_copy(long long* out) {
    for (std::size_t i = 0; i < traced_accesses.size(); ++i) {
        const TracedAccess& a = traced_accesses[i];
        out[4 * i] = a.block, out[4 * i + 1] = a.thread, out[4 * i + 2] = a.address, out[4 * i + 3] = a.write;
    }
    traced_accesses.clear();
}
"""


@pytest.fixture(scope="module")
def traced_dropout(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traced_dropout")
    source = folder / "traced_dropout.cu"
    source.write_text(TRACED_DROPOUT.replace('"nnx_kernels.cu"', f'"{plans.kernel_source_path()}"'))
    return EmulatedModule(build(folder, source, ["dropout_apply<Traced>"]))


@pytest.mark.parametrize("shape", [(50, 70), (37, 33)])
def test_each_dropout_access_of_a_warp_is_one_contiguous_segment(traced_dropout, shape):
    """On C-ordered activations (the CuPy backend's), every read of src and write of dst
    that a warp's lanes make together touches neighbouring addresses: at most 32 elements
    from its first to its last (one 128-byte segment of float32), not elements m apart;
    and the mask drawn is still NumPy's (the Philox mask of element e = j * n + i)."""
    n, m = shape
    key = philox.DropoutKey(seed=(5 << 32) + 1, epoch=2, batch=7, layer=3)
    A = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    want = REF.dropout_(A.copy(), np.empty_like(A), 0.4, key)
    got = np.full_like(A, np.nan)
    plan = plans.dropout_launch(A, got, True, key.words(), philox.threshold(0.4), 1 / 0.6, 2)
    run(traced_dropout, plan._replace(kernel="dropout_apply<Traced>"))
    np.testing.assert_array_equal(got, want)
    library = traced_dropout.library
    library.traced_count.restype = ctypes.c_longlong
    trace = np.zeros((library.traced_count(), 4), np.int64)
    library.traced_copy(trace.ctypes.data_as(ctypes.c_void_p))
    assert len(trace) == 2 * n * m  # every element read once and written once
    by_warp: dict[tuple, list[list[int]]] = {}
    for block, thread, at, write in trace.tolist():
        lanes = by_warp.setdefault((block, thread // 32, write), [[] for _ in range(32)])
        lanes[thread % 32].append(at)
    for lanes in by_warp.values():
        for step in range(max(len(lane) for lane in lanes)):
            together = [lane[step] for lane in lanes if step < len(lane)]
            assert max(together) - min(together) < 32 * 4, "a warp's access spans more than 128 bytes"


# ------------------------------------------------------------------------------------------
# The tiled single pass (issue #32): softmax_tile, each load of W serving 32 examples, with
# softmax_pass's arguments, partial sums and finishing kernels

TILE_STATIC_FLOAT = plans.softmax_tile_static_bytes("float")
TILE_STATIC_DOUBLE = plans.softmax_tile_static_bytes("double")
TILED_CASES = [
    # (n, m, K, x kind, sm_count, shared limit): both builds (KMAX 16, 32), one and two
    # chunks of features (128 float, 64 double), a half-empty last tile, class slices
    (3, 1, 2, "float", 4, HOPPER_SHARED),
    (37, 45, 3, "float", 2, HOPPER_SHARED),  # two tiles, the second 13 examples
    (300, 41, 10, "uint8", 2, HOPPER_SHARED),  # 3 chunks of 128 features
    (300, 41, 10, "float", 2, 3 * 300 * 8 + TILE_STATIC_DOUBLE),  # slices of (at least) 3 classes
    (150, 40, 17, "float", 2, HOPPER_SHARED),  # KMAX 32: warps own 2 classes
    (40, 33, 32, "uint8", 1, HOPPER_SHARED),  # the most classes
]


def tiled_params():
    for n, m, K, x_kind, sm_count, limit in TILED_CASES:
        for dtype in FLOATS:
            yield pytest.param(
                n, m, K, x_kind, sm_count, limit, dtype, id=f"{n}x{m}-K{K}-{x_kind}-{dtype}-{limit}"
            )


@pytest.mark.parametrize(("n", "m", "K", "x_kind", "sm_count", "limit", "dtype"), list(tiled_params()))
def test_tiled_softmax_epoch_matches_numpy(module, n, m, K, x_kind, sm_count, limit, dtype):
    W, b, X, Y, X_ref = softmax_problem(n, m, K, x_kind, dtype)
    plan = softmax_plan(X, K, W.dtype, sm_count, limit, "tiled")
    assert plan.kernel.startswith("softmax_tile<") and plan.kernel.endswith(f", {16 if K <= 16 else 32}>")
    assert limit == HOPPER_SHARED or plan.slices > 1
    W_ref, b_ref = W.copy(), b.copy()
    for _ in range(3):
        out = emulated_softmax_epoch(module, W, b, X, Y, 0.5, sm_count, limit, "tiled")
        value, correct = REF.softmax_epoch_(W_ref, b_ref, X_ref, Y, 0.5)
        np.testing.assert_allclose(out[0], value, **tolerance(dtype))
        assert out[1] == correct
    np.testing.assert_allclose(W, W_ref, **tolerance(dtype))
    np.testing.assert_allclose(b, b_ref, **tolerance(dtype))


def test_a_tiled_softmax_epoch_over_several_waves_of_blocks_matches_numpy(module, monkeypatch):
    """With at most 32 examples (one tile) per block, 200 examples in 3 class slices take
    several whole waves of groups: the same results as the NumPy backend."""
    monkeypatch.setattr(plans, "MAX_EXAMPLES_PER_BLOCK", 32)
    W, b, X, Y, X_ref = softmax_problem(70, 200, 6, "uint8", "float32")
    limit = 2 * 70 * 4 + TILE_STATIC_FLOAT  # 2 classes per block: 3 slices
    plan = softmax_plan(X, 6, W.dtype, 2, limit, "tiled")
    assert plan.slices == 3 and plan.groups == 7 > 2 * 2 // 3
    W_ref, b_ref = W.copy(), b.copy()
    out = emulated_softmax_epoch(module, W, b, X, Y, 0.5, 2, limit, "tiled")
    value, correct = REF.softmax_epoch_(W_ref, b_ref, X_ref, Y, 0.5)
    np.testing.assert_allclose(out[0], value, **tolerance("float32"))
    assert out[1] == correct
    np.testing.assert_allclose(W, W_ref, **tolerance("float32"))
    np.testing.assert_allclose(b, b_ref, **tolerance("float32"))


def test_tiled_softmax_epoch_is_bitwise_repeatable_in_any_warp_order(module, module_reversed):
    W0, b0, X, Y, _ = softmax_problem(300, 70, 10, "uint8", "float32")
    results = []
    for emulated in (module, module, module_reversed):
        W, b = W0.copy(), b0.copy()
        out = [emulated_softmax_epoch(emulated, W, b, X, Y, 0.1, 2, kind="tiled") for _ in range(2)]
        grads = emulated_softmax_grad(emulated, W, b, X, Y, 2, kind="tiled")
        results.append((W.tobytes(), b.tobytes(), np.stack(out).tobytes(), *(g.tobytes() for g in grads)))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize(("case", "x_kind", "dtype"), list(softmax_special_params()))
def test_tiled_softmax_epoch_propagates_nan_and_inf_as_numpy(module, case, x_kind, dtype):
    """The specials of softmax_pass's test, the pixel-overflow redo (largest_in_w) included."""
    W, b, X, Y = softmax_specials(x_kind, dtype, case)
    X_ref = X.astype(dtype) * np.array(1 / 255, dtype) if x_kind == "uint8" else X
    W_ref, b_ref = W.copy(), b.copy()
    out = emulated_softmax_epoch(module, W, b, X, Y, 0.5, 1, kind="tiled")
    with np.errstate(all="ignore"):
        value, correct = REF.softmax_epoch_(W_ref, b_ref, X_ref, Y, 0.5)
    assert_same_as_numpy(out[0], value, dtype)
    assert out[1] == correct
    assert_same_as_numpy(W, W_ref, dtype)
    assert_same_as_numpy(b, b_ref, dtype)


@pytest.mark.parametrize(("x_kind", "dtype", "limit"), [
    ("uint8", "float32", HOPPER_SHARED),
    ("uint8", "float64", 2 * 200 * 8 + TILE_STATIC_DOUBLE),  # class slices
])  # fmt: skip
def test_tiled_softmax_loss_and_gradient_match_numpy(module, x_kind, dtype, limit):
    W, b, X, Y, X_ref = softmax_problem(200, 45, 5, x_kind, dtype)
    W0, b0 = W.copy(), b.copy()
    dW, db, out = emulated_softmax_grad(module, W, b, X, Y, 2, limit, "tiled")
    assert np.array_equal(W, W0) and np.array_equal(b, b0)
    value, correct, dW_ref, db_ref = REF.softmax_loss_grad(W, b, X_ref, Y)
    np.testing.assert_allclose(out[0], value, **tolerance(dtype))
    assert out[1] == correct
    rtol = tolerance(dtype)["rtol"]
    np.testing.assert_allclose(dW, dW_ref, rtol=rtol, atol=rtol * np.abs(dW_ref).max())
    np.testing.assert_allclose(db, db_ref, rtol=rtol, atol=rtol * np.abs(db_ref).max())


def test_the_plans_count_softmax_tiles_static_shared_memory(module):
    """The plan's static share of softmax_tile is what each build declares (KMAX 32's, the
    larger, exactly), so a plan never asks for more than the opt-in maximum."""
    for t in ("float", "double"):
        for xt in (t, "unsigned char"):
            sizes = [
                module.static_shared_bytes(f"softmax_tile<{t}, {xt}, {k}>") for k in plans.SOFTMAX_TILE_KMAX
            ]
            assert max(sizes) == sizes[-1] == plans.softmax_tile_static_bytes(t)


def test_the_backend_takes_softmax_tile_where_the_traffic_model_says(emulated_backend):
    """Under "auto", softmax regression on pixels with float32 parameters runs softmax_tile
    (each load of W serving 32 examples) as the plan says: the NumPy backend's parameters;
    float X takes the cuBLAS products (no single pass launched)."""
    ops, fake = emulated_backend()
    ops.softmax_pass = "auto"
    launched = []
    fake.module.after_launch = launched.append
    rng = np.random.default_rng(6)
    n, m, K = 200, 96, 6
    X = rng.integers(0, 256, (n, m), dtype=np.uint8)
    y = rng.integers(0, K, m)
    plan = plans.softmax_pass_plan(n, m, K, "float32", "uint8", ops.sm_count, ops.shared_limit)
    assert plan is not None and plan.kernel == "softmax_tile<float, unsigned char, 16>"
    runs = []
    for backend in (ops, "numpy"):
        model = nnx.SoftmaxRegression(n, K)
        history = model.fit(X, y, epochs=2, lr=0.5, backend=backend, dtype="float32")
        runs.append((model.parameters()[0], history.loss))
    assert launched.count(plan.kernel) == 2 and launched.count("softmax_update<float>") == 2
    assert not any(name.startswith("softmax_pass") for name in launched)
    (W, b), loss = runs[0]
    (W_ref, b_ref), loss_ref = runs[1]
    np.testing.assert_allclose(loss, loss_ref, **tolerance("float32"))
    np.testing.assert_allclose(W, W_ref, **tolerance("float32"))
    np.testing.assert_allclose(b, b_ref, **tolerance("float32"))
    launched.clear()
    nnx.SoftmaxRegression(n, K).fit(
        X.astype(np.float32) / 255, y, epochs=1, lr=0.5, backend=ops, dtype="float32"
    )
    assert not any(name.startswith(("softmax_pass", "softmax_tile")) for name in launched)
