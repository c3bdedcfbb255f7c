"""The optimizer-step and dropout CUDA kernels, run on the CPU through the emulation in
tests/cuda_on_cpu with the launch plans the CuPy backend uses (nnx.backends.cuda_launch),
against the NumPy backend's reference ops. Not a GPU run: the CuPy backend's own tests
(the parametrized backend tests) cover the device and skip visibly without one."""

import numpy as np
import pytest
from cuda_emulation import CXX, EmulatedModule
from nnx_testing import tolerance

import nnx
from nnx.backends import cuda_launch as plans
from nnx.backends import philox
from nnx.backends.philox import DropoutKey

pytestmark = pytest.mark.skipif(
    CXX is None, reason="no C++ compiler (g++ or clang++) to build the CPU emulation of the CUDA kernels"
)

REF = nnx.get_backend("numpy")


@pytest.fixture(scope="module")
def module(emulation_library):
    return EmulatedModule(emulation_library)


def run(module, plan):
    plans.launch(module.get_function(plan.kernel), plan)


def _arrays(dtype, shape=(37, 29), count=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "momentum, dampening, nesterov, decay",
    [(0.0, 0.0, False, 0.0), (0.9, 0.1, False, 0.01), (0.8, 0.0, True, 0.0)],
)
def test_sgd_step_kernel_matches_numpy(module, dtype, momentum, dampening, nesterov, decay):
    p, g, buf, _ = _arrays(dtype)
    want_p, want_buf = p.copy(), buf.copy()
    unused = np.zeros(1, dtype)
    for first in (True, False, False):
        REF.sgd_step_(
            want_p,
            g,
            want_buf if momentum else None,
            lr=0.1,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            decay=decay,
            first=first,
        )
        run(
            module,
            plans.sgd_step_launch(
                p,
                g,
                buf if momentum else unused,
                1,
                neg_lr=-0.1,
                decay=decay,
                momentum=momentum,
                damp1=1 - dampening,
                momentum_on=bool(momentum),
                nesterov=nesterov,
                first=first,
            ),
        )
    np.testing.assert_allclose(p, want_p, **tolerance(dtype))
    if momentum:
        np.testing.assert_allclose(buf, want_buf, **tolerance(dtype))
    assert unused[0] == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("centered, momentum", [(False, 0.0), (True, 0.5)])
def test_rmsprop_step_kernel_matches_numpy(module, dtype, centered, momentum):
    p, g, _, _ = _arrays(dtype, seed=1)
    state = [np.zeros_like(p) for _ in range(3)]
    want_p, want = p.copy(), [s.copy() for s in state]
    for _ in range(3):
        REF.rmsprop_step_(
            want_p,
            g,
            want[0],
            want[1] if centered else None,
            want[2] if momentum else None,
            lr=0.01,
            alpha=0.9,
            eps=1e-6,
            momentum=momentum,
            decay=0.02,
        )
        run(
            module,
            plans.rmsprop_step_launch(
                p,
                g,
                *state,
                1,
                neg_lr=-0.01,
                decay=0.02,
                alpha=0.9,
                eps=1e-6,
                momentum=momentum,
                centered=centered,
                momentum_on=momentum > 0,
            ),
        )
    for got, expected in zip([p, *state], [want_p, *want]):
        np.testing.assert_allclose(got, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("betas, decay, shrink", [((0.9, 0.999), 0.0, 1.0), ((0.3, 0.4), 0.05, 0.999)])
def test_adam_step_kernel_matches_numpy(module, dtype, betas, decay, shrink):
    p, g, _, _ = _arrays(dtype, shape=(1000,), seed=2)  # several blocks of the grid-stride loop
    m, v = np.zeros_like(p), np.zeros_like(p)
    want_p, want_m, want_v = p.copy(), m.copy(), v.copy()
    for t in range(1, 4):
        scalars = dict(
            beta1=betas[0],
            beta2=betas[1],
            eps=1e-8,
            step_size=0.01 / (1 - betas[0] ** t),
            bc2_sqrt=(1 - betas[1] ** t) ** 0.5,
            decay=decay,
            shrink=shrink,
        )
        REF.adam_step_(want_p, g, want_m, want_v, **scalars)
        run(module, plans.adam_step_launch(p, g, m, v, 1, **scalars))
    for got, expected in zip((p, m, v), (want_p, want_m, want_v)):
        np.testing.assert_allclose(got, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c_order", [True, False])
@pytest.mark.parametrize("shape", [(7, 13), (50, 33)])
def test_dropout_kernel_draws_the_numpy_masks_exactly(module, dtype, c_order, shape):
    key = DropoutKey(seed=(7 << 32) + 99, epoch=4, batch=3, layer=2)
    A = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    want = REF.dropout_(A.copy(), np.empty_like(A), 0.35, key)
    host = A if c_order else np.asfortranarray(A)
    src = host if c_order else host.T  # the kernel takes memory: F-ordered (n, m) is C-ordered (m, n)
    dst = np.empty_like(src)
    plan = plans.dropout_launch(
        src if c_order else src.T,
        dst if c_order else dst.T,
        c_order,
        key.words(),
        philox.threshold(0.35),
        1 / 0.65,
        1,
    )
    # raw kernels take contiguous memory: hand the emulation the C-contiguous views
    plan = plan._replace(args=(src, dst, *plan.args[2:]))
    run(module, plan)
    got = dst if c_order else dst.T
    np.testing.assert_array_equal(got, want)
    in_place = src.copy()
    run(module, plan._replace(args=(in_place, in_place, *plan.args[2:])))
    np.testing.assert_array_equal(in_place if c_order else in_place.T, want)


# ------------------------------------------------ the CuPy backend's own wrappers
class _NumpyAsCupy:
    """Just enough of the cupy module for the CuPy backend's optimizer and dropout methods."""

    ndarray = np.ndarray
    empty = staticmethod(np.empty)


@pytest.fixture(scope="module")
def cupy_on_cpu(module):
    """A CupyBackend whose arrays are NumPy arrays and whose kernels run in the emulation:
    its optimizer-step and dropout methods (argument order, flags, the placeholder for an
    absent state array) are then checked without a GPU."""
    from nnx.backends.cupy_backend import CupyBackend

    ops = CupyBackend.__new__(CupyBackend)
    ops.xp, ops.cp, ops.sm_count = np, _NumpyAsCupy, 2
    ops._kernel = module.get_function  # instead of the RawModule's (cached) lookup
    return ops


@pytest.mark.parametrize("case", ["momentum", "nesterov", "rmsprop", "rmsprop-centered", "adam", "adamw"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_backend_optimizer_methods_match_numpy(cupy_on_cpu, case, dtype):
    from test_optim import CASES

    from nnx.optim import TrainingState

    rng = np.random.default_rng(5)
    start = [rng.standard_normal((6, 11)).astype(dtype), rng.standard_normal((6, 1)).astype(dtype)]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in start] for _ in range(5)]
    results = []
    for ops in (REF, cupy_on_cpu):
        optimizer = CASES[case][0]()
        params = [p.copy() for p in start]
        state = TrainingState(
            optimizer.config(), slots={s: [np.zeros_like(p) for p in start] for s in optimizer.slots}
        )
        for step, g in enumerate(grads, 1):
            state.step = step
            optimizer.update(ops, params, g, state, optimizer.lr, [0.02, 0.0])
        results.append(params)
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, **tolerance(dtype))


def test_cupy_backend_dropout_methods_match_numpy(cupy_on_cpu):
    key = DropoutKey(seed=123, epoch=2, batch=1, layer=0)
    A = np.random.default_rng(6).standard_normal((9, 17))
    want = REF.dropout_(A, np.empty_like(A), 0.4, key)
    np.testing.assert_array_equal(cupy_on_cpu.dropout_(A, np.empty_like(A), 0.4, key), want)
    np.testing.assert_array_equal(cupy_on_cpu.dropout_backward_(A.copy(), 0.4, key), want)
