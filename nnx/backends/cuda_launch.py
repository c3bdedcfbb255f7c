"""How nnx launches its CUDA kernels: names, tilings, grids and argument lists.

Pure Python on array metadata (shape, dtype, data): nothing here imports CuPy. The CuPy
backend launches exactly these plans on the GPU; the tests run the same plans through a
CPU emulation of the kernels (tests/cuda_on_cpu), so the launch arithmetic is checked on
machines without a GPU too. Arguments are NumPy scalars typed to match each kernel's C
parameters (np.int64 for ``long long``, np.int32 for ``int``, np.float64 for ``double``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .codes import ACTIVATION_CODES, LOSS_CODES, PIXEL_SCALE, cuda_defines

CTYPE = {"float32": "float", "float64": "double", "uint8": "unsigned char"}
NUMPY_TYPE = {c: n for n, c in CTYPE.items()}
BLOCK = 256  # threads per block of the elementwise kernels
PASS_BLOCK = 512  # threads per block in the single-pass logistic-regression kernels
# Register tiles (loads of VEC elements per thread) compiled for logreg_pass, by (compute
# type, X type, VEC): only tiles that keep everything in registers on sm_90 (NVRTC/nvcc 13,
# ptxas -v; tests/backends/test_kernels_nvcc.py fails on a spill in any instantiation a plan can
# choose). Dropped for spilling: float rows at 16 (4 bytes) and 32; 4-pixel words from 8
# (float: 132 B .. 6 KB; double: 196 B .. 6.2 KB); single pixels at 8, 16 (4 bytes), 12 (nvcc)
# and 32 for float, 32 for double; double rows at 32. A row too long for the largest tile takes
# logreg_staged, else the generic cuBLAS epoch.
PASS_TILES = {
    ("float", "float", 1): (1, 2, 4, 6, 8, 12, 24),
    ("float", "unsigned char", 4): (1, 2, 4, 6),
    ("float", "unsigned char", 1): (1, 2, 4, 6, 24),
    ("double", "double", 1): (1, 2, 4, 6, 8, 12, 16, 24),
    ("double", "unsigned char", 4): (1, 2, 4, 6),
    ("double", "unsigned char", 1): (1, 2, 4, 6, 8, 12, 16, 24),
}
# 16-byte words per thread compiled for logreg_staged, by (compute type, X type), without
# spills on sm_90 as above (dropped: float rows at 8 words, 12 B; double rows at 3, 16 B;
# pixels from 6 words, 128 B .. 2.9 KB). Double on uint8 pixels would hold 16 doubles of dw
# per word and spill, so it keeps logreg_pass.
STAGED_TILES = {
    ("float", "float"): (1, 2, 3, 4, 6, 12),
    ("double", "double"): (1, 2, 4, 6, 8, 12),
    ("float", "unsigned char"): (1, 2, 3, 4),
}
STAGED_TYPES = tuple(STAGED_TILES)  # (compute type, X type) pairs logreg_staged is built for
# Shared memory logreg_staged aims to fill with stages of rows: enough bytes in flight per
# SM to cover the memory latency several times, while leaving the L1 cache (which shares
# the SM's 256 KB with shared memory on Hopper) room for the rest of the kernel.
STAGE_TARGET_BYTES = 144 * 1024
MAX_STAGES = 8  # the kernel's wait takes 0..7 groups pending
# Each block of a single-pass kernel adds dz * x for its examples into dw registers one
# after another, so dw's rounding error grows with how many it takes: longer epochs get
# more blocks (whole waves of them), whose rows logreg_update adds in float64. dw then
# stays at float32 accuracy whatever m and however few SMs the GPU has.
MAX_EXAMPLES_PER_BLOCK = 1024
PASS_KINDS = ("staged", "registers")
# What the CuPy backend passes to cupy.RawModule (the C++ standard and the codes of
# codes.py as macros), and what CuPy (13.x, 14.x) appends to every compile: -ftz=true, so
# float arithmetic on the GPU flushes denormals to zero (double does not). The NVRTC test
# compiles with both, as the GPU run will.
COMPILE_OPTIONS = ("--std=c++14", *cuda_defines())
CUPY_APPENDED_OPTIONS = ("-ftz=true",)

# Kernels that promise NumPy's (and torch.optim's) rounding: each multiply and add rounded on
# its own, never contracted into an fma (nnx_mul / nnx_add in the .cu; a test reads their PTX).
NUMPY_ROUNDING_KERNELS = ("act_backward", "sgd_step", "rmsprop_step", "adam_step", "dropout_apply")


class Launch(NamedTuple):
    """One kernel launch: RawModule name expression, grid and block sizes, arguments,
    dynamic shared memory in bytes."""

    kernel: str
    grid: tuple[int]
    block: tuple[int]
    args: tuple
    shared_mem: int = 0


_ATTRIBUTE_LOCK = threading.Lock()


def launch(kernel: Any, plan: Launch) -> None:
    """Run ``plan`` on a ``cupy.RawKernel`` (or the CPU emulation's stand-in), first
    raising the kernel's dynamic shared-memory limit (``max_dynamic_shared_size_bytes``)
    when the plan needs more than it allows now; CUDA refuses the launch otherwise.

    That limit starts at 48 KB minus the kernel's static shared memory (its reduction
    scratch), not at 48 KB: a plan at exactly 48 KB of dynamic shared memory needs it
    raised too. Plans stay within the device's opt-in maximum counting the static share
    (``logreg_pass_plan``). The limit belongs to the function, shared by every thread:
    it is only ever raised, under a lock, so one thread's launch never lowers it below
    what another's needs.
    """
    if plan.shared_mem > 0 and plan.shared_mem > kernel.max_dynamic_shared_size_bytes:
        with _ATTRIBUTE_LOCK:
            if plan.shared_mem > kernel.max_dynamic_shared_size_bytes:
                kernel.max_dynamic_shared_size_bytes = plan.shared_mem
    kernel(plan.grid, plan.block, plan.args, shared_mem=plan.shared_mem)


def address(a: Any) -> int:
    """Where an array's memory starts: a CuPy array's device pointer, a NumPy array's
    host address (the CPU emulation keeps it modulo 64)."""
    data = a.data
    return int(data.ptr) if hasattr(data, "ptr") else int(a.ctypes.data)


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


def pass_tiling(n: int, w_dtype: Any, x_dtype: Any, x_address: int = 0) -> tuple[int, int | None]:
    """(elements per load, register tile) for logreg_pass with ``w_dtype`` parameters over
    n features of X starting at ``x_address``; tile None when n is too large for the
    largest tile of ``PASS_TILES`` that does not spill.

    4 pixels per load (one ``uchar4``, PTX ``ld.global.v4.u8``: a 4-byte access, which
    must be 4-byte aligned) only where every row starts on a 4-byte boundary: n a multiple
    of 4 and X's memory starting on one. A view at an odd offset takes 1 pixel per load.
    """
    vec = 4 if (np.dtype(x_dtype) == np.uint8 and n % 4 == 0 and x_address % 4 == 0) else 1
    tiles = PASS_TILES[(CTYPE[np.dtype(w_dtype).name], CTYPE[np.dtype(x_dtype).name], vec)]
    return vec, next((i for i in tiles if i * PASS_BLOCK * vec >= n), None)


def staged_examples_per_step(xt: str) -> int:
    """Examples a logreg_staged block reduces together: two of the short (1 byte per
    feature) uint8 rows share one block reduction and one read of w, else one."""
    return 2 if xt == "unsigned char" else 1


def staged_tiling(n: int, t: str, xt: str) -> int | None:
    """16-byte words per thread for logreg_staged over n features; None when it cannot
    run them: rows that are not whole 16-byte words (cp.async copies 16-byte aligned
    words), more features than its largest tile, or a type pair it is not built for."""
    row_bytes = n * np.dtype(NUMPY_TYPE[xt]).itemsize
    if (t, xt) not in STAGED_TYPES or row_bytes % 16:
        return None
    return next((k for k in STAGED_TILES[(t, xt)] if k * PASS_BLOCK * 16 >= row_bytes), None)


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
            f"softmax_columns<{t}>",
            f"softmax_xent<{t}>",
        ]
        for xt, vec in ((t, 1), ("unsigned char", 4), ("unsigned char", 1)):
            ex = examples_per_step(t, xt, vec)
            names += [f"logreg_pass<{t}, {xt}, {vec}, {items}, {ex}>" for items in PASS_TILES[(t, xt, vec)]]
    for (t, xt), tiles in STAGED_TILES.items():
        ex = staged_examples_per_step(xt)
        names += [f"logreg_staged<{t}, {xt}, {words}, {ex}>" for words in tiles]
    names += [f"logreg_grad<{t}>" for t in ("float", "double")]  # loss and gradient, no update
    return names + softmax_name_expressions() + optim_name_expressions()


class PassPlan(NamedTuple):
    """The single-pass kernel of one logistic-regression epoch: which kind, its name
    expression, its blocks (= rows of the partial sums), its dynamic shared memory in
    bytes and its shared-memory stages (0 for logreg_pass)."""

    kind: str
    kernel: str
    groups: int
    shared_mem: int
    stages: int


def logreg_pass_plan(
    n: int,
    m: int,
    w_dtype: Any,
    x_dtype: Any,
    sm_count: int,
    shared_limit: int,
    kind: str = "auto",
    x_address: int = 0,
    resident_blocks: Callable[[str], int] | None = None,
) -> PassPlan | None:
    """The single-pass kernel for an epoch over X (n, m) of ``x_dtype``, whose memory
    starts at ``x_address``, with parameters of ``w_dtype``: logreg_staged where its rows
    are whole 16-byte words and at least two stages fit in ``shared_limit`` bytes of shared
    memory per block (the device's opt-in maximum, static share included), else
    logreg_pass. Alignment decides too: X that does not start on a 16-byte boundary (a view
    at an odd offset) cannot be copied in 16-byte words, nor read 4 pixels a load unless it
    starts on a 4-byte one (see ``pass_tiling``); X whose elements are not aligned to their
    own size cannot be loaded by either (None). ``kind`` ("staged" or "registers") asks for
    one of the two.

    logreg_staged runs one block per SM (its stages fill the SM's shared memory).
    logreg_pass runs a wave of as many blocks as fit on the GPU at once:
    ``resident_blocks(kernel)`` of them per SM, the kernel's occupancy (the backend asks
    the driver; with 512 threads, a kernel over 64 registers per thread fits once per SM,
    which is the default when it is not given).
    None when the kernel asked for (or neither, for "auto") can take n features: the
    epoch then runs on the generic cuBLAS path.
    """
    if kind not in ("auto", *PASS_KINDS):
        raise ValueError(f"kind must be 'auto' or one of {PASS_KINDS}, got {kind!r}")
    t, xt = CTYPE[np.dtype(w_dtype).name], CTYPE[np.dtype(x_dtype).name]
    itemsize = np.dtype(x_dtype).itemsize
    if x_address % itemsize:
        return None
    words = staged_tiling(n, t, xt) if x_address % 16 == 0 else None
    if kind != "registers" and words is not None:
        ex = staged_examples_per_step(xt)
        stage_bytes = ex * n * itemsize
        static_bytes = 32 * ex * 8  # the kernel's reduction scratch
        fit = (shared_limit - static_bytes) // stage_bytes
        stages = min(MAX_STAGES, max(2, STAGE_TARGET_BYTES // stage_bytes), fit)
        if stages >= 2:
            groups = pass_groups(m, ex, sm_count)  # one block per SM: its stages fill the SM
            name = f"logreg_staged<{t}, {xt}, {words}, {ex}>"
            return PassPlan("staged", name, groups, stages * stage_bytes, stages)
    if kind == "staged":
        return None
    vec, items = pass_tiling(n, w_dtype, x_dtype, x_address)
    if items is None:
        return None
    ex = examples_per_step(t, xt, vec)
    name = f"logreg_pass<{t}, {xt}, {vec}, {items}, {ex}>"
    per_sm = max(1, int(resident_blocks(name))) if resident_blocks is not None else 1
    return PassPlan("registers", name, pass_groups(m, ex, per_sm * sm_count), 0, 0)


def elementwise_grid(size: int, sm_count: int) -> int:
    """Blocks for a grid-stride loop over size elements: enough to fill the GPU, no more."""
    return max(1, min((size + BLOCK - 1) // BLOCK, sm_count * 32))


def _elementwise_code(activation: str | None) -> int:
    """The kernels' code for an elementwise activation; softmax (over each column, not
    elementwise) has no CUDA kernel: the CuPy backend computes it through CuPy."""
    if activation == "softmax":
        raise ValueError("the CUDA kernels have no softmax: it is not elementwise")
    return ACTIVATION_CODES[activation]


def bias_act_launch(Z, b, activation: str | None, sm_count: int) -> Launch:
    """Z (n, m) <- act(Z + b) in place; Z and b (n, 1) C-contiguous float32/float64."""
    n, m = Z.shape
    return Launch(
        f"bias_act<{CTYPE[Z.dtype.name]}>",
        (elementwise_grid(Z.size, sm_count),),
        (BLOCK,),
        (Z, b, np.int64(n), np.int64(m), np.int32(_elementwise_code(activation))),
    )


def act_backward_launch(dA, A, activation: str, sm_count: int) -> Launch:
    """dA <- dA * act'(.) in place, from the activation's output A (same shape and dtype)."""
    return Launch(
        f"act_backward<{CTYPE[dA.dtype.name]}>",
        (elementwise_grid(dA.size, sm_count),),
        (BLOCK,),
        (dA, A, np.int64(dA.size), np.int32(_elementwise_code(activation))),
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


def softmax_launch(Z, sm_count: int) -> Launch:
    """Each column of Z (K, m), C-contiguous float32/float64, replaced by its softmax."""
    K, m = Z.shape
    return Launch(
        f"softmax_columns<{CTYPE[Z.dtype.name]}>",
        (elementwise_grid(m, sm_count),),
        (BLOCK,),
        (Z, np.int64(K), np.int64(m)),
    )


def softmax_xent_launch(Z, Y, dZ, partial, sm_count: int) -> Launch:
    """dZ (K, m) <- (softmax(Z) - onehot(Y)) / m from logits Z (K, m) and class numbers Y
    (1, m); partial (bce_groups(m), 2) <- per-block (loss, correct) sums."""
    K, m = Z.shape
    return Launch(
        f"softmax_xent<{CTYPE[Z.dtype.name]}>",
        (bce_groups(m, sm_count),),
        (BLOCK,),
        (Z, Y, dZ, np.int64(K), np.int64(m), partial),
    )


def pass_groups(m: int, examples_per_step: int, wave: int) -> int:
    """Blocks of a single-pass kernel over m examples, hence rows of its (groups, n) dw
    and (groups, 3) partials: one block per step up to a wave of ``wave`` blocks, then
    whole waves with at most MAX_EXAMPLES_PER_BLOCK examples per block."""
    steps = -(-m // examples_per_step)
    if steps <= wave:
        return max(1, steps)
    return wave * -(-m // (wave * MAX_EXAMPLES_PER_BLOCK))


def logreg_launches(
    plan: PassPlan, w, b, X, Y, dw_partial, stats, out, lr: float, loss: str, sm_count: int
) -> tuple[Launch, Launch]:
    """One fused logistic-regression epoch as two launches: ``plan``'s single pass over X
    (see ``logreg_pass_plan``), then the fixed-order reduction and update.

    w (1, n) and b (1, 1) float32/float64, updated in place; X (n, m) F-contiguous in w's
    dtype or uint8 (scaled by 1/255 in the kernel); Y (1, m) in w's dtype; dw_partial
    (plan.groups, n) in w's dtype; stats (plan.groups, 3) float64; out (2,) float64
    receives (mean loss before the step, correct count).
    """
    n, m = X.shape
    if dw_partial.shape != (plan.groups, n) or stats.shape != (plan.groups, 3):
        raise ValueError(
            f"partial sums of shapes {dw_partial.shape} and {stats.shape} for a pass of "
            f"{plan.groups} blocks over {n} features: expected {(plan.groups, n)} and {(plan.groups, 3)}"
        )
    t = CTYPE[w.dtype.name]
    scale = PIXEL_SCALE if X.dtype == np.uint8 else 1.0
    stages = (np.int32(plan.stages),) if plan.kind == "staged" else ()
    single_pass = Launch(
        plan.kernel,
        (plan.groups,),
        (PASS_BLOCK,),
        (
            X.T,  # (m, n) C-contiguous: example-contiguous rows
            w,
            b,
            Y,
            np.int64(m),
            np.int64(n),
            *stages,
            np.float64(scale),
            np.int32(LOSS_CODES[loss]),
            dw_partial,
            stats,
        ),
        plan.shared_mem,
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
            np.int32(plan.groups),
            np.int64(n),
            np.int64(m),
            np.float64(lr),
            np.float64(scale),
            out,
        ),
    )
    return single_pass, update


def read_words_launch(X, sink, sm_count: int) -> Launch:
    """A pure read of X's bytes as 16-byte words (``ld.global.v2.u64``, which must be
    16-byte aligned): from X's first 16-byte boundary, whole words only, so X at any
    address (a view at an odd offset) is read without a misaligned access. X is C- or
    F-contiguous; sink is a (1,) uint64 the kernel almost never writes (it keeps the
    loads from being optimised away)."""
    head = -address(X) % 16
    words = max(0, X.size * X.itemsize - head) // 16
    flat = X.T if (X.flags.f_contiguous and not X.flags.c_contiguous) else X
    return Launch("read_words", (sm_count * 8,), (BLOCK,), (flat, np.int64(head), np.int64(words), sink))


def read_words_bytes(X) -> int:
    """Bytes ``read_words_launch`` reads of X."""
    return max(0, X.size * X.itemsize - (-address(X) % 16)) // 16 * 16


# ------------------------------------------------- single-pass softmax-regression epoch
# Class counts softmax_pass is compiled for: K goes to the smallest that holds it, and a
# block takes 32 / KMAX examples per step (32 sums per thread whatever K). The largest is
# base.MAX_FUSED_CLASSES; more classes take the generic cuBLAS epoch. Every build keeps
# everything in registers on sm_90 (NVRTC/nvcc 13, ptxas -v): the block's logits wait in
# shared memory and are read one example at a time, so KMAX 16 (2 examples per step)
# uses 100-115 registers where it spilled 72-88 bytes at 128.
SOFTMAX_KMAX = (4, 8, 16, 32)
SOFTMAX_STATIC_BYTES = (32 * 32 + 32) * 8  # softmax_pass's reduction scratch and db sums (at most)
SM_THREADS = 2048  # threads one SM holds at once (every GPU since Volta)


def softmax_kmax(K: int) -> int | None:
    """The class count softmax_pass is compiled for that K classes take (the smallest of
    ``SOFTMAX_KMAX`` that holds K); None for more than the largest."""
    return next((k for k in SOFTMAX_KMAX if k >= K), None)


# softmax_tile (the tiled single pass: each load of W serves 32 examples) is compiled for
# up to 16 classes (one per warp of its 512 threads) and up to 32 (two per warp).
SOFTMAX_TILE_KMAX = (16, 32)
SOFTMAX_TILE_EXAMPLES = 32  # examples per tile: per load of W


def softmax_tile_static_bytes(t: str) -> int:
    """softmax_tile's static shared memory for compute type ``t`` (at most, KMAX 32): the
    staged chunk of 32 rows (2 KB of features each, one element of padding), the tile's
    logits in double and dz in T, and the lanes' loss and correct counts."""
    size = 4 if t == "float" else 8
    chunk = 512 // size
    return 32 * (chunk + 1) * size + 32 * 32 * 8 + 32 * 32 * size + 64 * 8


def softmax_tile_kmax(K: int) -> int | None:
    """The class count softmax_tile is compiled for that K classes take; None past 32."""
    return next((k for k in SOFTMAX_TILE_KMAX if k >= K), None)


def softmax_name_expressions() -> list[str]:
    """softmax_pass and softmax_tile for each (compute type, X type, KMAX) and their two
    finishing kernels."""
    names = []
    for t in ("float", "double"):
        for xt in (t, "unsigned char"):
            names += [f"softmax_pass<{t}, {xt}, {kmax}>" for kmax in SOFTMAX_KMAX]
            names += [f"softmax_tile<{t}, {xt}, {kmax}>" for kmax in SOFTMAX_TILE_KMAX]
        names += [f"softmax_update<{t}>", f"softmax_grad<{t}>"]
    return names


class SoftmaxPlan(NamedTuple):
    """The single-pass kernel of one softmax-regression epoch: its name expression, its
    groups of blocks (= rows of the partial sums), the class slices each group is split
    into (blocks = groups * slices), the classes per slice and the dynamic shared memory
    in bytes (a slice's rows of dW)."""

    kernel: str
    groups: int
    slices: int
    per: int
    shared_mem: int


SOFTMAX_PASS_KINDS = ("auto", "fused", "tiled")


class SoftmaxTraffic(NamedTuple):
    """Bytes one softmax-regression epoch moves through L2 (see kernels/README.md)."""

    fused: int  # softmax_pass + softmax_update
    cublas: int  # the generic epoch: Z = W X, softmax_xent, dW = dZ X^T, the update
    tiled: int  # softmax_tile + softmax_update


def _single_pass_bytes(n: int, m: int, K: int, ws: int, xs: int, slices: int, per_load: int) -> int:
    """Bytes of a single pass (and its update) whose slices each read every row twice and
    all K rows of W once per ``per_load`` examples."""
    steps = -(-m // per_load)
    groups = max(1, min(steps, 132 // max(1, slices)))
    total = 2 * slices * m * n * xs + slices * steps * K * n * ws + 2 * groups * K * n * ws + 2 * K * n * ws
    return total + m * ws  # labels


def softmax_traffic(
    n: int, m: int, K: int, w_dtype: Any, x_dtype: Any, slices: int, tile_slices: int | None = None
) -> SoftmaxTraffic:
    """The traffic model of kernels/README.md: bytes through L2 of one epoch over X (n, m)
    with K classes, by softmax_pass split into ``slices`` class slices, by softmax_tile
    split into ``tile_slices`` (default ``slices``), and by the generic epoch's two cuBLAS
    products (which hold X in the compute dtype: uint8 pixels are converted once, when the
    data go to the device).

    softmax_pass: every slice's blocks read each example row twice (the logits, then dW
    from the same rows: L1 cannot be counted on to keep them, dW fills shared memory) and
    all K rows of W once per step of 32 / KMAX examples; softmax_tile the same, with all K
    rows of W once per tile of 32 examples; the partial sums of dW are written and read
    back once per group (counted as one group per wave of 132 SMs: their count is small
    beside the rest). cuBLAS: X read once by each product, Z written and read, dZ written
    and read twice (dW and db), W read twice and written, dW written.
    """
    ws, xs = np.dtype(w_dtype).itemsize, np.dtype(x_dtype).itemsize
    kmax = softmax_kmax(K) or SOFTMAX_KMAX[-1]
    fused = _single_pass_bytes(n, m, K, ws, xs, slices, 32 // kmax)
    tile_slices = slices if tile_slices is None else tile_slices
    tiled = _single_pass_bytes(n, m, K, ws, xs, tile_slices, SOFTMAX_TILE_EXAMPLES)
    cublas = 2 * m * n * ws + 5 * K * m * ws + 4 * K * n * ws + m * ws
    return SoftmaxTraffic(int(fused), int(cublas), int(tiled))


def _class_slices(K: int, row_bytes: int, shared_limit: int, static_bytes: int) -> int | None:
    """Class slices for K rows of dW of ``row_bytes`` each beside ``static_bytes`` of
    static shared memory; None where one row does not fit."""
    rows_fit = (shared_limit - static_bytes) // row_bytes
    return -(-K // rows_fit) if rows_fit >= 1 else None


def softmax_pass_plan(
    n: int,
    m: int,
    K: int,
    w_dtype: Any,
    x_dtype: Any,
    sm_count: int,
    shared_limit: int,
    x_address: int = 0,
    resident_blocks: Callable[[str], int] | None = None,
    kind: str = "auto",
) -> SoftmaxPlan | None:
    """The single pass of a softmax-regression epoch over X (n, m) of ``x_dtype``
    (starting at ``x_address``) with K classes and parameters of ``w_dtype``, on a GPU of
    ``sm_count`` SMs allowing ``shared_limit`` bytes of shared memory per block (its
    opt-in maximum): softmax_pass or softmax_tile (the same arguments and partial sums).
    None where neither can run (more than ``SOFTMAX_KMAX[-1]`` classes, X in another float
    type, X not aligned to its element size, or one class's row of n features not fitting
    in shared memory): the epoch then takes the generic cuBLAS path.

    dW stays in shared memory: all K rows (one slice) where they fit, else the classes are
    split into slices of ``per`` rows, each slice a block of its own reading the same
    examples. A wave holds as many blocks per SM as both ``resident_blocks(kernel)`` (the
    driver's occupancy from registers; 1 when not given) and their shared memory allow;
    waves are whole, with at most ``MAX_EXAMPLES_PER_BLOCK`` examples per block.

    ``kind``: "fused" takes softmax_pass and "tiled" softmax_tile wherever it can run (the
    tests, the benchmark); "auto" (the default) takes the one the traffic model
    (``softmax_traffic``, kernels/README.md) says moves fewer bytes, and only where that is
    fewer than the two cuBLAS products move (else None): neither has been timed on a GPU
    yet, so they run only where they read less.
    """
    if kind not in SOFTMAX_PASS_KINDS:
        raise ValueError(f"kind must be one of {SOFTMAX_PASS_KINDS}, got {kind!r}")
    kmax = softmax_kmax(K) if K >= 1 else None
    if kmax is None or np.dtype(x_dtype).name not in ("uint8", np.dtype(w_dtype).name):
        return None
    if x_address % np.dtype(x_dtype).itemsize:
        return None
    t, xt = CTYPE[np.dtype(w_dtype).name], CTYPE[np.dtype(x_dtype).name]
    row_bytes = n * np.dtype(w_dtype).itemsize
    fused_slices = _class_slices(K, row_bytes, shared_limit, SOFTMAX_STATIC_BYTES)
    tile_static = softmax_tile_static_bytes(t)
    tile_slices = _class_slices(K, row_bytes, shared_limit, tile_static)
    if kind == "fused":
        tiled = False
    elif kind == "tiled":
        tiled = True
    else:
        if fused_slices is None:
            return None
        traffic = softmax_traffic(n, m, K, w_dtype, x_dtype, fused_slices, tile_slices or fused_slices)
        tiled = tile_slices is not None and traffic.tiled < traffic.fused
        if (traffic.tiled if tiled else traffic.fused) >= traffic.cublas:
            return None
    slices = tile_slices if tiled else fused_slices
    if slices is None:
        return None
    static = tile_static if tiled else SOFTMAX_STATIC_BYTES
    per = -(-K // slices)
    shared = per * row_bytes
    if tiled:
        name = f"softmax_tile<{t}, {xt}, {softmax_tile_kmax(K)}>"
        per_block = SOFTMAX_TILE_EXAMPLES
    else:
        name = f"softmax_pass<{t}, {xt}, {kmax}>"
        per_block = 32 // kmax
    by_registers = int(resident_blocks(name)) if resident_blocks is not None else 1
    # an SM has 1 KB more shared memory than one block may take, and CUDA reserves 1 KB a block
    by_shared = (shared_limit + 1024) // (shared + static + 1024)
    per_sm = max(1, min(SM_THREADS // PASS_BLOCK, by_registers, by_shared))
    wave = max(1, per_sm * sm_count // slices)
    return SoftmaxPlan(name, pass_groups(m, per_block, wave), slices, per, shared)


def _softmax_pass_launch(plan: SoftmaxPlan, W, b, X, Y, dw_partial, db_partial, stats) -> Launch:
    n, m = X.shape
    K = W.shape[0]
    expected = ((plan.groups, K, n), (plan.groups, K), (plan.groups, 2))
    if (dw_partial.shape, db_partial.shape, stats.shape) != expected:
        raise ValueError(
            f"partial sums of shapes {dw_partial.shape}, {db_partial.shape} and {stats.shape} for a "
            f"pass of {plan.groups} groups over {K} classes and {n} features: expected "
            f"{expected[0]}, {expected[1]} and {expected[2]}"
        )
    return Launch(
        plan.kernel,
        (plan.groups * plan.slices,),
        (PASS_BLOCK,),
        (
            X.T,  # (m, n) C-contiguous: example-contiguous rows
            W,
            b,
            Y,
            np.int64(m),
            np.int64(n),
            np.int32(K),
            np.int32(plan.slices),
            np.int32(plan.per),
            np.float64(PIXEL_SCALE if X.dtype == np.uint8 else 1.0),
            dw_partial,
            db_partial,
            stats,
        ),
        plan.shared_mem,
    )


def softmax_launches(
    plan: SoftmaxPlan, W, b, X, Y, dw_partial, db_partial, stats, out, lr: float, sm_count: int
) -> tuple[Launch, Launch]:
    """One fused softmax-regression epoch as two launches: ``plan``'s single pass over X,
    then the fixed-order reduction and update.

    W (K, n) and b (K, 1) float32/float64, updated in place; X (n, m) F-contiguous in W's
    dtype or uint8 (scaled by 1/255 in the kernel); Y (1, m) class numbers in W's dtype;
    dw_partial (plan.groups, K, n) in W's dtype; db_partial (plan.groups, K) and stats
    (plan.groups, 2) float64; out (2,) float64 receives (mean loss before the step,
    correct count).
    """
    n, m = X.shape
    K = W.shape[0]
    single_pass = _softmax_pass_launch(plan, W, b, X, Y, dw_partial, db_partial, stats)
    update = Launch(
        f"softmax_update<{CTYPE[W.dtype.name]}>",
        (elementwise_grid(K * n, sm_count),),
        (BLOCK,),
        (
            W,
            b,
            dw_partial,
            db_partial,
            stats,
            np.int32(plan.groups),
            np.int64(K),
            np.int64(n),
            np.float64(lr),
            np.float64(PIXEL_SCALE if X.dtype == np.uint8 else 1.0),
            out,
        ),
    )
    return single_pass, update


def softmax_grad_launches(
    plan: SoftmaxPlan, W, b, X, Y, dw_partial, db_partial, stats, dW, db, out, sm_count: int
) -> tuple[Launch, Launch]:
    """Softmax regression's loss and gradient at (W, b) without the update (L-BFGS): the
    single pass of ``softmax_launches``, then ``softmax_grad``'s fixed-order reduction.
    dW (K, n) and db (K, 1) float64 receive the gradient of the mean loss (the 1/255 of
    pixels included); out (2,) float64 (mean loss, correct count). W and b are only read."""
    n, m = X.shape
    K = W.shape[0]
    single_pass = _softmax_pass_launch(plan, W, b, X, Y, dw_partial, db_partial, stats)
    finish = Launch(
        f"softmax_grad<{CTYPE[W.dtype.name]}>",
        (elementwise_grid(K * n, sm_count),),
        (BLOCK,),
        (
            dw_partial,
            db_partial,
            stats,
            np.int32(plan.groups),
            np.int64(K),
            np.int64(n),
            np.float64(PIXEL_SCALE if X.dtype == np.uint8 else 1.0),
            dW,
            db,
            out,
        ),
    )
    return single_pass, finish


# ------------------------------------------------------------- optimizer steps, dropout
def optim_name_expressions() -> list[str]:
    """The optimizer-step and dropout kernels, for float and double (see name_expressions)."""
    kernels = ("sgd_step", "rmsprop_step", "adam_step", "dropout_apply")
    return [f"{k}<{t}>" for t in ("float", "double") for k in kernels]


def sgd_step_launch(
    p, g, buf, sm_count: int, *, neg_lr, decay, momentum, damp1, momentum_on, nesterov, first
) -> Launch:
    """torch.optim.SGD on one parameter p (in place) from g; buf its momentum buffer (any
    array of p's dtype when momentum_on is False: it is not read)."""
    return Launch(
        f"sgd_step<{CTYPE[p.dtype.name]}>",
        (elementwise_grid(p.size, sm_count),),
        (BLOCK,),
        (
            p,
            g,
            buf,
            np.int64(p.size),
            np.float64(neg_lr),
            np.float64(decay),
            np.float64(momentum),
            np.float64(damp1),
            np.int32(momentum_on),
            np.int32(nesterov),
            np.int32(first),
        ),
    )


def rmsprop_step_launch(
    p, g, sq, ga, buf, sm_count: int, *, neg_lr, decay, alpha, eps, momentum, centered, momentum_on
) -> Launch:
    """torch.optim.RMSprop on one parameter; ga read when centered, buf with momentum."""
    weight = 1 - alpha
    return Launch(
        f"rmsprop_step<{CTYPE[p.dtype.name]}>",
        (elementwise_grid(p.size, sm_count),),
        (BLOCK,),
        (
            p,
            g,
            sq,
            ga,
            buf,
            np.int64(p.size),
            np.float64(neg_lr),
            np.float64(decay),
            np.float64(alpha),
            np.float64(1 - alpha),
            np.float64(eps),
            np.float64(momentum),
            np.float64(weight),
            np.float64(1 - weight),
            np.int32(centered),
            np.int32(momentum_on),
        ),
    )


def adam_step_launch(
    p, g, m, v, sm_count: int, *, beta1, beta2, eps, step_size, bc2_sqrt, decay, shrink
) -> Launch:
    """torch.optim.Adam / AdamW on one parameter (see nnx.optim.Adam.update for the scalars)."""
    weight = 1 - beta1
    return Launch(
        f"adam_step<{CTYPE[p.dtype.name]}>",
        (elementwise_grid(p.size, sm_count),),
        (BLOCK,),
        (
            p,
            g,
            m,
            v,
            np.int64(p.size),
            np.float64(decay),
            np.float64(shrink),
            np.float64(weight),
            np.float64(1 - weight),
            np.float64(beta2),
            np.float64(1 - beta2),
            np.float64(bc2_sqrt),
            np.float64(eps),
            np.float64(-step_size),
            np.int32(shrink != 1.0),
        ),
    )


DROPOUT_TILE = 32  # C-ordered dropout: tiles of 32 units x 32 examples, one per block at a time


def dropout_grid(n: int, m: int, c_order: bool, sm_count: int) -> int:
    """Blocks of dropout_apply over an (n, m) activation: C-ordered, one per 32 x 32 tile
    (a warp reads and writes rows of 32 neighbouring elements), up to the elementwise
    kernels' cap; example-contiguous, one thread per 4 consecutive elements (one Philox
    call)."""
    if c_order:
        tiles = -(-n // DROPOUT_TILE) * -(-m // DROPOUT_TILE)
        return max(1, min(tiles, sm_count * 32))
    return elementwise_grid((n * m + 3) // 4, sm_count)


def dropout_launch(
    src, dst, c_order: bool, words: tuple[int, ...], threshold: int, scale: float, sm_count: int
) -> Launch:
    """dst (n, m) <- src * dropout mask; words = DropoutKey.words() (key0, key1, batch,
    epoch, layer word); dst may be src."""
    n, m = src.shape
    k0, k1, batch, epoch, layer_word = words
    return Launch(
        f"dropout_apply<{CTYPE[src.dtype.name]}>",
        (dropout_grid(n, m, c_order, sm_count),),
        (BLOCK,),
        (
            src,
            dst,
            np.int64(n),
            np.int64(m),
            np.int32(c_order),
            np.uint32(k0),
            np.uint32(k1),
            np.uint32(batch),
            np.uint32(epoch),
            np.uint32(layer_word),
            np.uint32(threshold),
            np.float64(scale),
        ),
    )


def logreg_grad_launches(
    plan: PassPlan, w, b, X, Y, dw_partial, stats, dw, out, loss: str, sm_count: int
) -> tuple[Launch, Launch]:
    """Logistic regression's loss and gradient at (w, b) without the update (L-BFGS): the
    single pass of ``logreg_launches`` (the same launch), then ``logreg_grad``'s
    fixed-order reduction in place of the update.

    dw (1, n) float64 receives the gradient of the mean loss with respect to w (the 1/255
    of pixels included); out (3,) float64 receives (mean loss, correct count, gradient
    with respect to b). w and b are only read.
    """
    n, m = X.shape
    single_pass, _ = logreg_launches(plan, w, b, X, Y, dw_partial, stats, out, 0.0, loss, sm_count)
    scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    finish = Launch(
        f"logreg_grad<{CTYPE[w.dtype.name]}>",
        (elementwise_grid(n, sm_count),),
        (BLOCK,),
        (dw_partial, stats, np.int32(plan.groups), np.int64(n), np.int64(m), np.float64(scale), dw, out),
    )
    return single_pass, finish
