"""Which single-pass kernel the CUDA launch plans pick for logistic and softmax regression,
with how many shared-memory stages, class slices and blocks: pure arithmetic on shapes and
dtypes, no GPU or compiler."""

import numpy as np
import pytest

from nnx.backends import cuda_launch as plans

H100 = dict(sm_count=132, shared_limit=227 * 1024)
A100 = dict(sm_count=108, shared_limit=163 * 1024)


def plan(n, m, w_dtype, x_dtype, kind="auto", sm_count=132, shared_limit=227 * 1024, **options):
    return plans.logreg_pass_plan(n, m, w_dtype, x_dtype, sm_count, shared_limit, kind, **options)


@pytest.mark.parametrize(
    ("w_dtype", "x_dtype", "kernel", "stages", "step_bytes"),
    [
        ("float32", "float32", "logreg_staged<float, float, 6, 1>", 3, 12288 * 4),
        ("float32", "uint8", "logreg_staged<float, unsigned char, 2, 2>", 6, 2 * 12288),  # 2 rows a step
        ("float64", "float64", "logreg_staged<double, double, 12, 1>", 2, 12288 * 8),
    ],
)
def test_a_12288_feature_epoch_on_hopper_stages_its_rows(w_dtype, x_dtype, kernel, stages, step_bytes):
    p = plan(12288, 65536, w_dtype, x_dtype, **H100)
    assert (p.kind, p.kernel, p.stages, p.shared_mem) == ("staged", kernel, stages, stages * step_bytes)
    assert p.shared_mem <= H100["shared_limit"] and p.groups == 132  # one block per SM


def test_double_parameters_on_pixels_keep_the_register_kernel():
    p = plan(12288, 65536, "float64", "uint8", **H100)
    assert (p.kind, p.kernel, p.shared_mem) == ("registers", "logreg_pass<double, unsigned char, 4, 6, 1>", 0)
    assert p.groups == 132  # one wave: logreg_pass at 126 registers a thread fits once per SM
    resident = plan(12288, 65536, "float64", "uint8", sm_count=132, resident_blocks=lambda name: 3)
    assert resident.groups == 3 * 132  # a kernel that fits 3 times per SM gets 3 blocks per SM


def test_too_little_shared_memory_falls_back_to_the_register_kernel():
    assert plan(12288, 1000, "float64", "float64", **A100).kind == "registers"  # 2 x 96 KB > 163 KB
    assert plan(12288, 1000, "float32", "float32", **A100).stages == 3
    assert plan(12288, 1000, "float32", "float32", sm_count=80, shared_limit=48 * 1024).kind == "registers"
    assert plan(12288, 1000, "float32", "float32", shared_limit=2 * 49152 + 256).stages == 2


def test_rows_that_are_not_whole_16_byte_words_take_the_register_kernel():
    assert plan(1501, 10, "float32", "uint8").kind == "registers"
    assert plan(1500, 10, "float32", "uint8").kind == "registers"  # 1500 bytes: not whole words
    assert plan(1504, 10, "float32", "uint8").kind == "staged"
    assert plan(37, 10, "float64", "float64").kind == "registers"
    assert plan(1501, 10, "float32", "uint8", kind="staged") is None


def test_forcing_a_kind_and_too_many_features():
    assert plan(12288, 10, "float32", "float32", kind="registers").kind == "registers"
    assert plan(10**6, 10, "float32", "float32") is None  # neither holds a million features
    with pytest.raises(ValueError, match="kind must be 'auto' or one of"):
        plan(12288, 10, "float32", "float32", kind="fast")


def test_few_examples_get_no_idle_blocks():
    assert plan(12288, 5, "float32", "uint8").groups == 3  # two examples a step
    assert plan(12288, 5, "float32", "float32").groups == 5


@pytest.mark.parametrize("kind", plans.PASS_KINDS)
@pytest.mark.parametrize(("m", "sm_count"), [(2**17, 4), (2**20, 132), (10**6 + 7, 108), (65536, 132)])
def test_no_block_sums_more_than_its_share_of_examples(kind, m, sm_count):
    """dw's float32 accuracy must not depend on the GPU's size: a long epoch gets more
    blocks, in whole waves, rather than longer float sums per block."""
    per_sm = 1 if kind == "staged" else 2  # logreg_pass here as if it fitted twice per SM
    p = plan(12288, m, "float32", "float32", kind, sm_count=sm_count, resident_blocks=lambda name: per_sm)
    wave = per_sm * sm_count
    assert p.groups % wave == 0
    assert -(-m // p.groups) <= plans.MAX_EXAMPLES_PER_BLOCK
    assert (p.groups == wave) == (m <= wave * plans.MAX_EXAMPLES_PER_BLOCK)  # no more blocks than needed


def test_the_launch_refuses_partial_sums_of_the_wrong_shape():
    n, m = 1504, 40
    p = plan(n, m, "float32", "float32", sm_count=4)
    w, b, Y = np.zeros((1, n), np.float32), np.zeros((1, 1), np.float32), np.zeros((1, m), np.float32)
    X = np.zeros((n, m), np.float32, order="F")
    with pytest.raises(ValueError, match=r"for a pass of 4 blocks over 1504 features"):
        plans.logreg_launches(
            p, w, b, X, Y, np.zeros((8, n), np.float32), np.zeros((8, 3)), np.zeros(2), 0.1, "bce", 4
        )


class ModelledKernel:
    """A kernel's shared-memory limits as CUDA keeps them: ``max_dynamic_shared_size_bytes``
    starts at 48 KB minus the static share, may be raised to the opt-in maximum minus it,
    and a launch over it is refused."""

    def __init__(self, static: int, optin: int = 227 * 1024) -> None:
        self.static, self.optin = static, optin
        self._limit = 48 * 1024 - static
        self.launched_with = None

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        return self._limit

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value: int) -> None:
        assert self.static + value <= self.optin, "CUDA_ERROR_INVALID_VALUE"
        self._limit = value

    def __call__(self, grid, block, args, shared_mem=0):
        assert shared_mem <= self._limit, f"launch refused: {shared_mem} > {self._limit} bytes"
        self.launched_with = shared_mem


@pytest.mark.parametrize(
    ("n", "w_dtype", "x_dtype"),
    [
        (1536, "float32", "float32"),
        (768, "float64", "float64"),
        (3072, "float32", "uint8"),
        (1532, "float32", "float32"),
    ],
)
def test_a_plan_at_48_kb_of_dynamic_shared_memory_raises_the_kernel_limit(n, w_dtype, x_dtype):
    """8 stages of 6 KB rows on an H100: 48 KB or just under of dynamic shared memory,
    beside the kernel's 256 or 512 static bytes: over the default limit, so the launch
    raises it first (within the device's 227 KB with the static share)."""
    p = plan(n, 1000, w_dtype, x_dtype, **H100)
    static = 32 * 8 * plans.staged_examples_per_step(plans.CTYPE[x_dtype])
    assert p.kind == "staged" and p.stages == 8
    assert 48 * 1024 - static < p.shared_mem <= 48 * 1024
    assert p.shared_mem + static <= H100["shared_limit"]
    kernel = ModelledKernel(static)
    plans.launch(kernel, plans.Launch(p.kernel, (p.groups,), (plans.PASS_BLOCK,), (), p.shared_mem))
    assert kernel.launched_with == p.shared_mem and kernel.max_dynamic_shared_size_bytes >= p.shared_mem


def test_the_largest_plan_fits_the_opt_in_maximum_with_its_static_shared_memory():
    for n in (1504, 3008, 6016, 12288):
        for w_dtype, x_dtype in (("float32", "float32"), ("float64", "float64"), ("float32", "uint8")):
            p = plan(n, 10**5, w_dtype, x_dtype, shared_limit=100 * 1024)
            if p is not None and p.kind == "staged":
                static = 32 * 8 * plans.staged_examples_per_step(plans.CTYPE[x_dtype])
                kernel = ModelledKernel(static, optin=100 * 1024)
                plans.launch(kernel, plans.Launch(p.kernel, (1,), (512,), (), p.shared_mem))


# ------------------------------------------------------------- softmax regression (#20)
def softmax_plan(
    n, m, K, w_dtype, x_dtype, sm_count=132, shared_limit=227 * 1024, x_address=0, resident=None, kind="fused"
):
    return plans.softmax_pass_plan(
        n, m, K, w_dtype, x_dtype, sm_count, shared_limit, x_address, resident, kind
    )


def test_softmax_dw_stays_in_one_block_where_it_fits():
    """CIFAR-sized rows at K = 10: 120 KB of dW, one slice, one block per SM (two would
    not fit in 227 KB), 2 examples per step (KMAX 16)."""
    p = softmax_plan(3072, 50000, 10, "float32", "uint8")
    assert (p.kernel, p.slices, p.per, p.shared_mem) == (
        "softmax_pass<float, unsigned char, 16>",
        1,
        10,
        10 * 3072 * 4,
    )
    assert p.groups == 132 * -(-50000 // (132 * plans.MAX_EXAMPLES_PER_BLOCK))
    # 31 KB of dW: shared memory would hold 5 blocks per SM, threads 4; registers decide
    for resident, per_sm in ((None, 1), (lambda name: 2, 2), (lambda name: 8, 4)):
        small = softmax_plan(784, 60000, 10, "float32", "float32", resident=resident)
        waves = -(-60000 // (per_sm * 132 * plans.MAX_EXAMPLES_PER_BLOCK))
        assert small.slices == 1 and small.groups == per_sm * 132 * waves


def test_softmax_classes_are_split_into_slices_only_when_dw_does_not_fit():
    """The 64x64x3 pictures at K = 10: 480 KB of float dW, so 3 slices of 4 classes
    (192 KB each); a wave of 132 SMs holds 44 groups of 3 blocks."""
    p = softmax_plan(12288, 50000, 10, "float32", "uint8")
    assert (p.slices, p.per, p.shared_mem) == (3, 4, 4 * 12288 * 4)
    assert p.groups == 44 * -(-50000 // (44 * plans.MAX_EXAMPLES_PER_BLOCK))
    assert p.shared_mem + plans.SOFTMAX_STATIC_BYTES <= 227 * 1024
    double = softmax_plan(12288, 50000, 10, "float64", "uint8")
    assert (double.slices, double.per) == (5, 2)  # 96 KB a class row: 2 per block


@pytest.mark.parametrize(
    ("n", "K", "w_dtype", "x_dtype", "x_address", "why"),
    [
        (12288, 33, "float32", "uint8", 0, "more classes than MAX_FUSED_CLASSES"),
        (12288, 10, "float32", "float64", 0, "X in another float type"),
        (12288, 10, "float32", "float32", 2, "X not aligned to its elements"),
        (60000, 2, "float32", "float32", 0, "one class row of dW over 227 KB"),
    ],
)
def test_softmax_regression_the_kernel_cannot_take_goes_to_cublas(n, K, w_dtype, x_dtype, x_address, why):
    assert softmax_plan(n, 100, K, w_dtype, x_dtype, x_address=x_address) is None, why


def test_softmax_kmax_ends_at_the_fused_class_limit():
    from nnx.backends.base import MAX_FUSED_CLASSES

    assert plans.SOFTMAX_KMAX[-1] == MAX_FUSED_CLASSES
    for dtype in ("float32", "float64"):
        assert softmax_plan(100, 10, MAX_FUSED_CLASSES, dtype, dtype).kernel.endswith(", 32>")
        assert softmax_plan(100, 10, MAX_FUSED_CLASSES + 1, dtype, dtype) is None


@pytest.mark.parametrize(
    ("K", "kmax"), [(1, 4), (4, 4), (5, 8), (8, 8), (9, 16), (10, 16), (16, 16), (17, 32), (32, 32)]
)
@pytest.mark.parametrize("w_dtype", ["float32", "float64"])
def test_softmax_classes_take_the_smallest_build_that_holds_them(K, kmax, w_dtype):
    """K = 9..16 take the KMAX = 16 build (2 examples per step), which keeps everything in
    registers on sm_90 (test_kernels_nvcc.py checks every build); it had been dropped for
    spilling, leaving those K one example per step."""
    for x_dtype in (w_dtype, "uint8"):
        p = softmax_plan(300, 200, K, w_dtype, x_dtype)
        assert p.kernel.endswith(f", {kmax}>")
        assert p.groups == min(200 // (32 // kmax), 132)  # one block per step, up to a wave
        assert p.kernel in plans.name_expressions()


@pytest.mark.parametrize("x_dtype", ["float32", "uint8"])
def test_softmax_at_12288_features_and_10_classes_takes_the_cublas_products(x_dtype):
    """The traffic model (kernels/README.md): at n = 12288, K = 10, float32, softmax_pass
    reads all K rows of W for each step of one example, in each of 3 class slices: over
    15x the bytes of X, against two reads of X by the cuBLAS products. "auto" leaves it
    to them until a GPU has measured it; "fused" still takes the kernel."""
    traffic = plans.softmax_traffic(12288, 65536, 10, "float32", x_dtype, 3)
    assert traffic.fused > 15 * 65536 * 12288 * 4 > traffic.fused / 30
    assert traffic.fused > traffic.cublas
    assert softmax_plan(12288, 65536, 10, "float32", x_dtype, kind="auto") is None
    assert softmax_plan(12288, 65536, 10, "float32", x_dtype).slices == 3


@pytest.mark.parametrize(
    ("n", "m", "K", "w_dtype", "x_dtype"),
    [
        (784, 60000, 4, "float32", "uint8"),  # few classes on pixels: W per 8 examples, X 1 byte
        (784, 60000, 2, "float32", "uint8"),
        (784, 60000, 10, "float32", "uint8"),
        (784, 60000, 2, "float32", "float32"),  # float X: read twice either way, plus W
        (3072, 50000, 10, "float32", "uint8"),
        (300, 40, 4, "float64", "float64"),
        (300, 40, 5, "float32", "uint8"),
        (12288, 65536, 3, "float64", "uint8"),
    ],
)
def test_auto_takes_the_single_pass_exactly_where_it_moves_fewer_bytes(n, m, K, w_dtype, x_dtype):
    """ "auto" takes whichever of softmax_pass and softmax_tile the traffic model says moves
    fewer bytes (each with its own class slices), and only where that is fewer than the two
    cuBLAS products move; else None (the products)."""
    fused = softmax_plan(n, m, K, w_dtype, x_dtype)
    tiled = softmax_plan(n, m, K, w_dtype, x_dtype, kind="tiled")
    assert fused is not None and tiled is not None
    traffic = plans.softmax_traffic(n, m, K, w_dtype, x_dtype, fused.slices, tiled.slices)
    auto = softmax_plan(n, m, K, w_dtype, x_dtype, kind="auto")
    best = min(traffic.fused, traffic.tiled)
    assert (auto is not None) == (best < traffic.cublas)
    if auto is not None:
        assert auto == (tiled if traffic.tiled < traffic.fused else fused)


def test_pixels_with_float32_parameters_take_softmax_tile_for_every_class_count():
    """In one slice the tile moves 2 + K / 8 bytes per example and feature on pixels with
    float32 parameters, against the products' 8: "auto" takes it for every K <= 32 (and
    softmax_pass, 2 + K / 2 at best, for none); float X keeps the products."""
    for K in range(1, 33):
        p = softmax_plan(784, 60000, K, "float32", "uint8", kind="auto")
        assert p is not None and p.slices == 1, K
        assert p.kernel == f"softmax_tile<float, unsigned char, {16 if K <= 16 else 32}>"
        assert p.groups == 132  # 1875 tiles: one wave of one block per SM, 455 examples each
        assert softmax_plan(784, 60000, K, "float32", "float32", kind="auto") is None
    with pytest.raises(ValueError, match="kind must be one of"):
        softmax_plan(784, 60000, 4, "float32", "uint8", kind="fast")


def test_the_tile_traffic_model_reads_w_once_per_32_examples():
    """softmax_tile's W traffic is S * K * n * ws per tile of 32 examples: at n = 12288,
    K = 10, float32 on pixels (3 slices) 6 + 3.75 bytes per example and feature, still
    more than the products' 8 (the slices each read X twice), so "auto" keeps them there;
    in one slice (3072 features) 2 + 1.25 (+ the partial sums)."""
    n, m = 12288, 65536
    tiled = softmax_plan(n, m, 10, "float32", "uint8", kind="tiled")
    assert (tiled.kernel, tiled.slices) == ("softmax_tile<float, unsigned char, 16>", 3)
    traffic = plans.softmax_traffic(n, m, 10, "float32", "uint8", 3)
    w_bytes = 3 * (m // 32) * 10 * n * 4
    assert traffic.tiled - 2 * 3 * m * n == w_bytes + 2 * 44 * 10 * n * 4 + 2 * 10 * n * 4 + m * 4
    assert traffic.fused > 4 * traffic.tiled and traffic.cublas < traffic.tiled < 1.25 * traffic.cublas
    assert softmax_plan(n, m, 10, "float32", "uint8", kind="auto") is None
    one = plans.softmax_traffic(3072, m, 10, "float32", "uint8", 1)
    assert 3.25 < one.tiled / (m * 3072) < 3.5 < 8 < one.cublas / (m * 3072)  # + partial sums of dW


def test_softmax_tile_leaves_room_for_its_static_shared_memory():
    """Its static share (29 KB float, 33 KB double) counts against the opt-in maximum:
    dW rows that softmax_pass holds in one slice may take two here, and the shared
    memory of a wave's blocks stays within the SM's."""
    static = plans.softmax_tile_static_bytes("float")
    limit = 10 * 1000 * 4 + static
    assert softmax_plan(1000, 5000, 10, "float32", "uint8", shared_limit=limit, kind="tiled").slices == 1
    assert softmax_plan(1000, 5000, 10, "float32", "uint8", shared_limit=limit - 1, kind="tiled").slices == 2
    p = softmax_plan(3072, 50000, 10, "float32", "uint8", resident=lambda name: 2, kind="tiled")
    assert p.shared_mem + static <= 227 * 1024 and p.groups == 132  # 120 KB of dW: one block per SM
    assert p.kernel in plans.name_expressions()


# -------------------------------------------------------------------------------- dropout
def test_c_ordered_dropout_takes_a_block_per_32_by_32_tile():
    """C-ordered activations (the CuPy backend's) take one block per tile of 32 units x 32
    examples (warps along the examples, neighbouring addresses), up to 32 blocks per SM;
    example-contiguous ones one thread per 4 consecutive elements."""
    assert plans.dropout_grid(50, 70, True, 132) == 2 * 3
    assert plans.dropout_grid(4096, 65536, True, 132) == 132 * 32
    assert plans.dropout_grid(50, 70, False, 132) == plans.elementwise_grid(50 * 70 // 4 + 1, 132)
    src = np.zeros((50, 70), np.float32)
    launch = plans.dropout_launch(src, src, True, (1, 2, 3, 4, 5), 7, 2.0, 132)
    assert launch.grid == (6,) and launch.block == (plans.BLOCK,) and plans.BLOCK % plans.DROPOUT_TILE == 0
