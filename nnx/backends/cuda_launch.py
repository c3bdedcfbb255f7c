"""How nnx launches its CUDA kernels: names, tilings, grids and argument lists.

Pure Python on array metadata (shape, dtype, data): nothing here imports CuPy. The CuPy
backend launches exactly these plans on the GPU; the tests run the same plans through a
CPU emulation of the kernels (tests/cuda_on_cpu), so the launch arithmetic is checked on
machines without a GPU too. Arguments are NumPy scalars typed to match each kernel's C
parameters (np.int64 for ``long long``, np.int32 for ``int``, np.float64 for ``double``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ACT_CODES = {None: 0, "sigmoid": 1, "relu": 2, "tanh": 3}
LOSS_CODES = {"bce": 0, "mse": 1}
CTYPE = {"float32": "float", "float64": "double", "uint8": "unsigned char"}
BLOCK = 256  # threads per block of the elementwise kernels
PASS_BLOCK = 512  # threads per block in the single-pass logistic-regression kernel
ITEMS = (1, 2, 4, 6, 8, 12, 16, 24, 32)  # register tile sizes compiled for logreg_pass


class Launch(NamedTuple):
    """One kernel launch: RawModule name expression, grid and block sizes, arguments."""

    kernel: str
    grid: tuple[int]
    block: tuple[int]
    args: tuple


def kernel_source_path() -> Path:
    """The .cu file: inside the installed package (wheel) or in the source tree's kernels/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "kernels" / "nnx_kernels.cu", here.parent / "kernels" / "nnx_kernels.cu"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "nnx_kernels.cu not found in the package (nnx/kernels) or the source tree (kernels/)"
    )


def examples_per_step(t: str, xt: str, vec: int) -> int:
    """Examples a logreg_pass block reads per step: two for float on 4-pixel uint8 words,
    whose rows are 4x shorter in bytes (more bytes in flight per block), else one; more
    would spill registers (checked with nvcc -Xptxas -v for sm_90)."""
    return 2 if (t == "float" and xt == "unsigned char" and vec == 4) else 1


def pass_tiling(n: int, x_dtype: Any) -> tuple[int, int | None]:
    """(elements per load, register tile) for logreg_pass over n features; tile None
    when n is too large for one block's registers (the generic cuBLAS path is used)."""
    vec = 4 if (np.dtype(x_dtype) == np.uint8 and n % 4 == 0) else 1
    return vec, next((i for i in ITEMS if i * PASS_BLOCK * vec >= n), None)


def name_expressions() -> list[str]:
    """Every template instantiation nnx uses, as RawModule name expressions."""
    names = []
    for t in ("float", "double"):
        names += [
            f"bias_act<{t}>",
            f"act_backward<{t}>",
            f"sigmoid_inplace<{t}>",
            f"bce_logits<{t}>",
            f"logreg_update<{t}>",
        ]
        for xt, vec in ((t, 1), ("unsigned char", 4), ("unsigned char", 1)):
            ex = examples_per_step(t, xt, vec)
            names += [f"logreg_pass<{t}, {xt}, {vec}, {items}, {ex}>" for items in ITEMS]
    return names


def elementwise_grid(size: int, sm_count: int) -> int:
    """Blocks for a grid-stride loop over size elements: enough to fill the GPU, no more."""
    return max(1, min((size + BLOCK - 1) // BLOCK, sm_count * 32))


def bias_act_launch(Z, b, activation: str | None, sm_count: int) -> Launch:
    """Z (n, m) <- act(Z + b) in place; Z and b (n, 1) C-contiguous float32/float64."""
    n, m = Z.shape
    return Launch(
        f"bias_act<{CTYPE[Z.dtype.name]}>",
        (elementwise_grid(Z.size, sm_count),),
        (BLOCK,),
        (Z, b, np.int64(n), np.int64(m), np.int32(ACT_CODES[activation])),
    )


def act_backward_launch(dA, A, activation: str, sm_count: int) -> Launch:
    """dA <- dA * act'(.) in place, from the activation's output A (same shape and dtype)."""
    return Launch(
        f"act_backward<{CTYPE[dA.dtype.name]}>",
        (elementwise_grid(dA.size, sm_count),),
        (BLOCK,),
        (dA, A, np.int64(dA.size), np.int32(ACT_CODES[activation])),
    )


def sigmoid_launch(Z, sm_count: int) -> Launch:
    """Z <- sigmoid(Z) in place."""
    return Launch(
        f"sigmoid_inplace<{CTYPE[Z.dtype.name]}>",
        (elementwise_grid(Z.size, sm_count),),
        (BLOCK,),
        (Z, np.int64(Z.size)),
    )


def bce_groups(m: int, sm_count: int) -> int:
    """Blocks of bce_logits, hence rows of its (groups, 2) float64 partial sums."""
    return elementwise_grid(m, sm_count)


def bce_logits_launch(Z, Y, dZ, partial, sm_count: int) -> Launch:
    """dZ (1, m) <- (sigmoid(Z) - Y) / m; partial (bce_groups, 2) <- per-block (loss, correct)."""
    m = Z.shape[1]
    return Launch(
        f"bce_logits<{CTYPE[Z.dtype.name]}>",
        (bce_groups(m, sm_count),),
        (BLOCK,),
        (Z, Y, dZ, np.int64(m), partial),
    )


def logreg_groups(m: int, sm_count: int) -> int:
    """Blocks of logreg_pass, hence rows of its (groups, n) dw and (groups, 3) partials."""
    return max(1, min(m, sm_count * 2))


def logreg_launches(
    w, b, X, Y, dw_partial, stats, out, lr: float, loss: str, sm_count: int
) -> tuple[Launch, Launch]:
    """One fused logistic-regression epoch as two launches: the single pass over X, then
    the fixed-order reduction and update.

    w (1, n) and b (1, 1) float32/float64, updated in place; X (n, m) F-contiguous in w's
    dtype or uint8 (scaled by 1/255 in the kernel); Y (1, m) in w's dtype; dw_partial
    (logreg_groups, n) in w's dtype; stats (logreg_groups, 3) float64; out (2,) float64
    receives (mean loss before the step, correct count). Requires pass_tiling(n)[1].
    """
    n, m = X.shape
    vec, items = pass_tiling(n, X.dtype)
    if items is None:
        raise ValueError(f"logreg_pass cannot hold n={n} features in one block's registers")
    groups = dw_partial.shape[0]
    t, xt = CTYPE[w.dtype.name], CTYPE[X.dtype.name]
    scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    ex = examples_per_step(t, xt, vec)
    single_pass = Launch(
        f"logreg_pass<{t}, {xt}, {vec}, {items}, {ex}>",
        (groups,),
        (PASS_BLOCK,),
        (
            X.T,  # (m, n) C-contiguous: example-contiguous rows
            w,
            b,
            Y,
            np.int64(m),
            np.int64(n),
            np.float64(scale),
            np.int32(LOSS_CODES[loss]),
            dw_partial,
            stats,
        ),
    )
    update = Launch(
        f"logreg_update<{t}>",
        (elementwise_grid(n, sm_count),),
        (BLOCK,),
        (
            w,
            b,
            dw_partial,
            stats,
            np.int32(groups),
            np.int64(n),
            np.int64(m),
            np.float64(lr),
            np.float64(scale),
            out,
        ),
    )
    return single_pass, update


def read_words_launch(X, sink, sm_count: int) -> Launch:
    """A pure read of X's bytes as 16-byte words; sink is a (1,) uint64 the kernel almost
    never writes (it keeps the loads from being optimised away)."""
    words = X.size * X.itemsize // 16
    return Launch("read_words", (sm_count * 8,), (BLOCK,), (X, np.int64(words), sink))
