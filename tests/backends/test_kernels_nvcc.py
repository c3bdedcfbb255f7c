"""Every CUDA kernel instantiation nnx uses compiles for Hopper (sm_90), with NVRTC as
cupy.RawModule does (the backend's options plus the -ftz=true CuPy appends to every
compile) and with nvcc, without spilling the headline epoch kernels.

This needs no GPU, only a CUDA compiler (the nvidia-cuda-nvrtc wheel from the dev extra
is enough), so kernel source errors surface on CPU-only machines too. Launching the
kernels is tested in test_cupy.py on a GPU and in test_kernels_on_cpu.py on the CPU.
"""

import shutil
import subprocess

import pytest

from nnx.backends.cuda_launch import (
    COMPILE_OPTIONS,
    CUPY_APPENDED_OPTIONS,
    PASS_KINDS,
    kernel_source_path,
    logreg_pass_plan,
    name_expressions,
)

NVCC = shutil.which("nvcc")

SIGNATURES = {
    "bias_act": "({T}*, const {T}*, long long, long long, int)",
    "act_backward": "({T}*, const {T}*, long long, int)",
    "sigmoid_inplace": "({T}*, long long)",
    "bce_logits": "(const {T}*, const {T}*, {T}*, long long, double*)",
    "logreg_update": "({T}*, {T}*, const {T}*, const double*, int, long long, long long, "
    "double, double, double*)",
    "softmax_columns": "({T}*, long long, long long)",
    "softmax_xent": "(const {T}*, const {T}*, {T}*, long long, long long, double*)",
    "logreg_pass": "(const {XT}*, const {T}*, const {T}*, const {T}*, long long, long long, "
    "double, int, {T}*, double*)",
    "logreg_staged": "(const {XT}*, const {T}*, const {T}*, const {T}*, long long, long long, "
    "int, double, int, {T}*, double*)",
    "sgd_step": "({T}*, const {T}*, {T}*, long long, double, double, double, double, int, int, int)",
    "rmsprop_step": "({T}*, const {T}*, {T}*, {T}*, {T}*, long long, double, double, double, double, double, "
    "double, double, double, int, int)",
    "adam_step": "({T}*, const {T}*, {T}*, {T}*, long long, double, double, double, double, double, double, "
    "double, double, double, int)",
    "dropout_apply": "(const {T}*, {T}*, long long, long long, int, unsigned, unsigned, unsigned, unsigned, "
    "unsigned, unsigned, double)",
    "logreg_grad": "(const {T}*, const double*, int, long long, long long, double, double*, double*)",
    "softmax_pass": "(const {XT}*, const {T}*, const {T}*, const {T}*, long long, long long, int, int, int, "
    "double, {T}*, double*, double*)",
    "softmax_tile": "(const {XT}*, const {T}*, const {T}*, const {T}*, long long, long long, int, int, int, "
    "double, {T}*, double*, double*)",
    "softmax_update": "({T}*, {T}*, const {T}*, const double*, const double*, int, long long, long long, "
    "double, double, double*)",
    "softmax_grad": "(const {T}*, const double*, const double*, int, long long, long long, double, double*, "
    "double*, double*)",
}


def _instantiations() -> str:
    lines = []
    for expr in name_expressions():
        name, args = expr.split("<", 1)
        args = args[:-1]
        parts = [p.strip() for p in args.split(",")]
        T = parts[0]
        XT = parts[1] if len(parts) > 1 else T
        lines.append(f"template __global__ void {name}<{args}>{SIGNATURES[name].format(T=T, XT=XT)};")
    return "\n".join(lines)


@pytest.mark.skipif(NVCC is None, reason="nvcc (CUDA toolkit) not installed")
def test_all_kernels_compile_without_spills(tmp_path):
    src = tmp_path / "all.cu"
    src.write_text(kernel_source_path().read_text() + "\n" + _instantiations() + "\n")
    r = subprocess.run(
        [
            NVCC,
            "-arch=sm_90",
            *COMPILE_OPTIONS,  # the backend's: C++14 and the kernel codes as macros
            "-ftz=true",  # as CuPy compiles
            "-cubin",
            "-Xptxas",
            "-v",
            "-o",
            str(tmp_path / "all.cubin"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    entries = r.stderr.count("Compiling entry function")
    assert entries == len(name_expressions()) + 1  # + read_words
    # every instantiation a launch plan can choose keeps everything in registers
    spilled = [
        line.split("Compiling entry function", 1)[1].split("'")[1]
        for line in _entry_reports(r.stderr)
        if " 0 bytes spill stores" not in line
    ]
    assert not spilled, f"{len(spilled)} kernels spill registers on sm_90: {spilled}"


def _entry_reports(log: str) -> list[str]:
    """A `ptxas -v` log cut into one report per compiled entry function."""
    return ["Compiling entry function" + part for part in log.split("Compiling entry function")[1:]]


def _ptxas_report(log: str, entry: str) -> str:
    """The part of a `ptxas -v` log about the entry function whose name contains `entry`."""
    return log.split(entry, 1)[1].split("Compiling entry", 1)[0]


def _find_nvrtc():
    """libnvrtc from the system, NNX_NVRTC_DIR, or an nvidia-cuda-nvrtc wheel (CUDA 12:
    nvidia/cuda_nvrtc/lib, CUDA 13: nvidia/cu13/lib)."""
    import ctypes.util
    import glob
    import os

    candidates = [ctypes.util.find_library("nvrtc")]
    candidates += glob.glob(os.path.join(os.environ.get("NNX_NVRTC_DIR", "/nonexistent"), "libnvrtc.so*"))
    try:
        import nvidia  # namespace package of the nvidia-* wheels

        for root in nvidia.__path__:
            candidates += sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*")), reverse=True)
    except ImportError:
        pass
    return next((c for c in candidates if c and "builtins" not in c and "alt" not in c), None)


def _headline_passes() -> list[str]:
    """The single-pass instantiations (either kind) a 12288-feature (64x64x3) epoch
    launches on an H100."""
    names = []
    for w_dtype, x_dtype in (
        ("float32", "float32"),
        ("float64", "float64"),
        ("float32", "uint8"),
        ("float64", "uint8"),
    ):
        for kind in PASS_KINDS:
            plan = logreg_pass_plan(12288, 65536, w_dtype, x_dtype, 132, 227 * 1024, kind)
            if plan is not None:
                names.append(plan.kernel)
    return names


def _nvrtc_compile(names: list[str], extra: list[bytes]) -> tuple[str, dict[str, str], bytes]:
    """Compile the module with NVRTC for sm_90 with CuPy's options (the backend's, then the
    -ftz=true CuPy appends) plus ``extra``; returns (log, lowered names, PTX)."""
    import ctypes

    path = _find_nvrtc()
    if path is None:
        pytest.skip("no libnvrtc found (pip install nvidia-cuda-nvrtc, or set NNX_NVRTC_DIR)")
    lib = ctypes.CDLL(path)
    prog = ctypes.c_void_p()
    source = kernel_source_path().read_bytes()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source, b"nnx.cu", 0, None, None) == 0
    for name in names:
        assert lib.nvrtcAddNameExpression(prog, name.encode()) == 0
    cupy_options = [o.encode() for o in (*COMPILE_OPTIONS, *CUPY_APPENDED_OPTIONS)]
    opts = [*cupy_options, b"--gpu-architecture=sm_90", *extra]
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log_buffer = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log_buffer)
    log = log_buffer.value.decode()
    assert rc == 0, log[-3000:]
    lowered = {}
    for name in names:
        out = ctypes.c_char_p()
        assert lib.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(out)) == 0, name
        lowered[name] = out.value.decode()
    ptx = b""
    if b"--gpu-architecture=compute_90" not in extra:
        assert lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)) == 0 and size.value > 0
    else:
        assert lib.nvrtcGetPTXSize(prog, ctypes.byref(size)) == 0
        buffer = ctypes.create_string_buffer(size.value)
        assert lib.nvrtcGetPTX(prog, buffer) == 0
        ptx = buffer.value
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return log, lowered, ptx


@pytest.fixture(scope="module")
def sm90_build() -> tuple[list[str], str, dict[str, str]]:
    """(every name expression, the ptxas -v log, lowered names) of one NVRTC compile of the
    module for sm_90 with CuPy's options."""
    names = name_expressions()
    log, lowered, _ = _nvrtc_compile(names, [b"--ptxas-options=-v"])
    return names, log, lowered


def _registers(report: str) -> int:
    """Registers per thread from one entry's ptxas -v report."""
    return int(report.split("Used ", 1)[1].split(" registers", 1)[0])


def nvrtc_registers(names: list[str]) -> dict[str, int]:
    """Registers per thread of each kernel in ``names`` (name expressions, or the
    extern "C" read_words) built by NVRTC for sm_90 with CuPy's options."""
    templates = [name for name in names if "<" in name]
    log, lowered, _ = _nvrtc_compile(templates, [b"--ptxas-options=-v"])
    return {name: _registers(_ptxas_report(log, f"'{lowered.get(name, name)}'")) for name in names}


def test_module_compiles_for_hopper_with_nvrtc_like_cupy(sm90_build):
    """NVRTC (what cupy.RawModule uses) gives kernels no CUDA headers: compile the module
    with every name expression and CuPy's options, as CuPy does, straight to an sm_90
    binary; look up each lowered name, and check that every instantiation a launch plan
    can choose (every name expression: each tile serves some n) keeps everything in
    registers, the 12288-feature single-pass tiles among them."""
    names, log, lowered = sm90_build
    assert set(_headline_passes()) <= set(names)
    assert log.count("Compiling entry function") == len(names) + 1  # + read_words
    spilled = {}
    for name in names:
        block = _ptxas_report(log, f"'{lowered[name]}'")
        assert "bytes spill stores" in block, (name, block)
        if " 0 bytes spill stores" not in block:
            spilled[name] = block.split("bytes stack frame,", 1)[1].split("\n", 1)[0].strip()
    assert not spilled, f"{len(spilled)} instantiations spill registers on sm_90: {spilled}"


def test_the_emulations_register_table_is_the_sm90_builds(sm90_build):
    """The CPU emulation plans the single-pass kernels with their sm_90 occupancy, modelled
    from a table of their registers (tests/cuda_on_cpu/sm90_registers.json): it must be
    this build's, for every kernel and nothing else (rewrite it with
    ``python tests/cuda_emulation.py --registers`` after changing a kernel)."""
    from cuda_emulation import sm90_registers

    names, log, lowered = sm90_build
    built = {n: _registers(_ptxas_report(log, f"'{lowered[n]}'")) for n in names}
    built["read_words"] = _registers(_ptxas_report(log, "'read_words'"))
    assert sm90_registers() == built


def test_cupy_compiles_float_kernels_flushing_denormals():
    """The -ftz=true CuPy appends makes float arithmetic flush denormals (PTX .ftz.f32) and
    leaves double alone: why float32 sigmoid(-89) is 0 on the GPU and the CPU emulation
    flushes float kernels' denormals (tests/cuda_emulation.py)."""
    names = ["sigmoid_inplace<float>", "sigmoid_inplace<double>"]
    _, lowered, ptx = _nvrtc_compile(names, [b"--gpu-architecture=compute_90"])
    text = ptx.decode()
    float_body = text.split(f".entry {lowered[names[0]]}", 1)[1].split(".entry", 1)[0]
    double_body = text.split(f".entry {lowered[names[1]]}", 1)[1].split(".entry", 1)[0]
    assert ".ftz.f32" in float_body
    assert ".f64" in double_body and ".ftz.f64" not in double_body  # double keeps its denormals
