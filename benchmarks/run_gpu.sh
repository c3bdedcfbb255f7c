#!/usr/bin/env bash
# One call on a lent GPU machine (nothing installable there: the checkout runs in place).
# Runs the whole test suite, the CuPy tests first, then the GPU benchmark, each under a
# time limit. A run that reaches its limit is interrupted as by Ctrl-C, so its log still
# names the test it was in and its XML holds what finished; exit status 124 in the log or
# on the last line means it ran out, and gpu-bench.json then holds the groups that
# finished, marked "complete": false. Every log and result goes under the folder given as
# $1 (default: $OUT, else ./gpu-run; a relative folder is taken from where the script is
# called): nvidia-smi.txt, info.json, pytest-setup.txt, tests-cupy.log (+ .xml), tests.log
# (+ tests.xml: everything else), bench.log, gpu-bench.json (+ .png)
#
# Where CuPy has no GPU (a dry run on a CPU machine) the same steps run with generous time
# limits, the CuPy tests skip, and the benchmark times the CPU backends at one small size,
# so the script itself is checked to the end before device time is spent on it.
# With --collect-only as $2 it only collects the suite as the run would (seconds): a check
# that pytest starts on that machine at all.
# Usage: bash benchmarks/run_gpu.sh "$OUT" [--collect-only]
set -u
out="${1:-${OUT:-gpu-run}}"
mode="${2:-}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"  # absolute before the cd below
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# pyproject.toml's addopts carry --benchmark-disable, which pytest refuses ("unrecognized
# arguments": nothing runs) where pytest-benchmark is not loaded. Ask pytest itself whether
# the option exists (that also sees -p no:benchmark in PYTEST_ADDOPTS); without it, replace
# addopts and leave out benchmarks/, whose tests need the plugin's fixture. addopts are
# replaced either way, leaving out pytest-xdist's -n (which may not be installed here): this
# run is one process, the tests sharing the one GPU in turn.
if python3 -m pytest -p no:cacheprovider -o addopts= --help 2>/dev/null | grep -q -- '--benchmark-disable'; then
  pytest_opts=(-o "addopts=-ra --benchmark-disable")
  paths=(tests benchmarks)
  echo "pytest-benchmark loaded: the suite runs from tests/ and benchmarks/" > "$out/pytest-setup.txt"
else
  pytest_opts=(-o addopts=-ra)
  paths=(tests)
  echo "pytest-benchmark not loaded: addopts replaced by -ra, the suite runs from tests/ only" \
    "(benchmarks/ needs its fixture)" > "$out/pytest-setup.txt"
fi
cat "$out/pytest-setup.txt"

if python3 -c "import sys, nnx; sys.exit(0 if nnx.backends.available()['cupy'].available else 1)" 2>/dev/null; then
  gpu=1
  cupy_limit=200 rest_until=330 bench_until=560  # one device call may run 10 minutes
else
  gpu=0
  cupy_limit=1200 rest_until=5400 bench_until=6600
  echo "dry run: CuPy has no GPU here; its tests skip and the benchmark times the CPU backends"
fi

# Time limits keep one device call (10 minutes at most) from losing the benchmark to a hang.
# SIGINT lets pytest write its summary and XML; -k 20 kills it if that hangs too.
run_tests() {  # run_tests NAME SECONDS PYTEST-ARGS...
  local name=$1 limit=$2
  shift 2
  timeout -s INT -k 20 "$limit" python3 -m pytest "${pytest_opts[@]+"${pytest_opts[@]}"}" -rs \
    --junitxml "$out/$name.xml" "$@" "${paths[@]}" > "$out/$name.log" 2>&1
  local rc=$?
  echo "pytest exit status: $rc" >> "$out/$name.log"
  tail -n 3 "$out/$name.log"
  return "$rc"
}

if [ "$mode" = "--collect-only" ]; then
  run_tests tests-cupy 300 --collect-only -q -k cupy
  cupy_rc=$?
  run_tests tests 300 --collect-only -q -k "not cupy"
  rest_rc=$?
  echo "collect only: cupy $cupy_rc, rest $rest_rc"
  [ "$cupy_rc" -eq 0 ] && [ "$rest_rc" -eq 0 ]
  exit
fi

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 -m nnx info --json > "$out/info.json" 2> "$out/info.err"

run_tests tests-cupy "$cupy_limit" -v --durations=15 -k cupy
cupy_rc=$?
rest_s=$(( rest_until - SECONDS )); [ "$rest_s" -lt 60 ] && rest_s=60
run_tests tests "$rest_s" -q -k "not cupy"
rest_rc=$?

# CuPy rows against the device-to-device copy, cuBLAS products and PyTorch CUDA.
# The PNG only where matplotlib is installed.
plot=()
python3 -c "import matplotlib" 2>/dev/null && plot=(--plot "$out/gpu-bench.png")
if [ "$gpu" -eq 1 ]; then
  bench_args=(--backends cupy --m 2048,16384,65536 --dtype float32,uint8 --repeats 7)
else
  bench_args=(--backends numpy,numba --m 256 --dtype float32,uint8 --repeats 2)
fi
# The benchmark gets what is left of 9 1/3 minutes (one device call may run 10), at least 2.
bench_s=$(( bench_until - SECONDS )); [ "$bench_s" -lt 120 ] && bench_s=120
echo "bench time limit: ${bench_s} s" > "$out/bench.log"
timeout -s INT -k 20 "$bench_s" python3 -m nnx bench "${bench_args[@]}" \
  --json "$out/gpu-bench.json" ${plot[@]+"${plot[@]}"} >> "$out/bench.log" 2>&1
bench_rc=$?
tail -n 40 "$out/bench.log"
echo "tests: cupy $cupy_rc, rest $rest_rc, bench: $bench_rc"
[ "$cupy_rc" -eq 0 ] && [ "$rest_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
