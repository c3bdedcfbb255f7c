"""Numbers the fused kernels share with the Python that launches them: one place for all.

Kernels take the activation and the loss as small integers, and read uint8 pixels raw
with their 1/255 folded in. The Numba kernels (``numba_kernels``) compare against the
names below; the CUDA kernels (``kernels/nnx_kernels.cu``) against macros of the same
names, which ``cuda_defines()`` passes to every compile (``cuda_launch.COMPILE_OPTIONS``,
the NVRTC/nvcc tests, the CPU emulation). Change a value here and both follow; Numba's
on-disk cache is keyed on ``numba_kernels.py`` itself, so touch that file too.
"""

from __future__ import annotations

# Activations, by the name a layer's ``kind`` gives them (None: no activation). Softmax is
# only fused on example-contiguous rows (Numba); the CUDA kernels never receive it.
ACT_NONE = 0
ACT_SIGMOID = 1
ACT_RELU = 2
ACT_TANH = 3
ACT_SOFTMAX = 4
ACTIVATION_CODES: dict[str | None, int] = {
    None: ACT_NONE,
    "sigmoid": ACT_SIGMOID,
    "relu": ACT_RELU,
    "tanh": ACT_TANH,
    "softmax": ACT_SOFTMAX,
}

# Losses of the single-pass logistic-regression epoch (cross-entropy has its own kernels).
LOSS_BCE = 0
LOSS_MSE = 1
LOSS_CODES: dict[str, int] = {"bce": LOSS_BCE, "mse": LOSS_MSE}

# uint8 X holds raw pixels 0..255: every backend multiplies them by this, once per fit or
# inside a fused kernel, so no float copy of the pixels is ever made per epoch.
PIXEL_SCALE = 1.0 / 255.0


def cuda_defines() -> tuple[str, ...]:
    """The codes as ``-DNNX_ACT_SIGMOID=1``-style options for NVRTC, nvcc or a C++ compiler."""
    named = {
        "ACT_NONE": ACT_NONE,
        "ACT_SIGMOID": ACT_SIGMOID,
        "ACT_RELU": ACT_RELU,
        "ACT_TANH": ACT_TANH,
        "LOSS_BCE": LOSS_BCE,
        "LOSS_MSE": LOSS_MSE,
    }
    return tuple(f"-DNNX_{name}={value}" for name, value in named.items())
