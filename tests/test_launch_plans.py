"""Which single-pass logistic-regression kernel the CUDA launch plans pick, with how many
shared-memory stages and blocks: pure arithmetic on shapes and dtypes, no GPU or compiler."""

import numpy as np
import pytest

from nnx.backends import cuda_launch as plans

H100 = dict(sm_count=132, shared_limit=227 * 1024)
A100 = dict(sm_count=108, shared_limit=163 * 1024)


def plan(n, m, w_dtype, x_dtype, kind="auto", sm_count=132, shared_limit=227 * 1024):
    return plans.logreg_pass_plan(n, m, w_dtype, x_dtype, sm_count, shared_limit, kind)


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
    assert p.groups == 2 * 132  # logreg_pass runs 2 blocks per SM


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
    p = plan(12288, m, "float32", "float32", kind, sm_count=sm_count)
    wave = sm_count if kind == "staged" else 2 * sm_count
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
