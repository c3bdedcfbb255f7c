#!/usr/bin/env bash
# One call on a lent GPU machine (nothing installable there: the checkout runs in place).
# Runs the whole test suite, the CuPy tests first, then the GPU benchmark, each under a
# time limit. A run that reaches its limit is interrupted as by Ctrl-C, so its log still
# names the test it was in and its XML holds what finished; exit status 124 in the log or
# on the last line means it ran out, and gpu-bench.json then holds the groups that
# finished, marked "complete": false. Every log and result goes under the folder given as
# $1 (default: $OUT, else ./gpu-run): nvidia-smi.txt, info.json, tests-cupy.log (+ .xml),
# tests.log (+ tests.xml: everything else), bench.log, gpu-bench.json (+ .png)
# Usage: bash benchmarks/run_gpu.sh "$OUT"
set -u
out="${1:-${OUT:-gpu-run}}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 -m nnx info --json > "$out/info.json" 2> "$out/info.err"

# Time limits keep one device call (10 minutes at most) from losing the benchmark to a hang.
# SIGINT lets pytest write its summary and XML; -k 20 kills it if that hangs too.
run_tests() {  # run_tests NAME SECONDS PYTEST-ARGS...
  local name=$1 limit=$2
  shift 2
  timeout -s INT -k 20 "$limit" python3 -m pytest -rs --junitxml "$out/$name.xml" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "pytest exit status: $rc" >> "$out/$name.log"
  tail -n 3 "$out/$name.log"
  return "$rc"
}
run_tests tests-cupy 200 -v --durations=15 -k cupy
cupy_rc=$?
rest_s=$(( 330 - SECONDS )); [ "$rest_s" -lt 60 ] && rest_s=60
run_tests tests "$rest_s" -q -k "not cupy"
rest_rc=$?

# CuPy rows against the device-to-device copy, cuBLAS products and PyTorch CUDA.
# The PNG only where matplotlib is installed.
plot=()
python3 -c "import matplotlib" 2>/dev/null && plot=(--plot "$out/gpu-bench.png")
# The benchmark gets what is left of 9 1/3 minutes (one device call may run 10), at least 2.
bench_s=$(( 560 - SECONDS )); [ "$bench_s" -lt 120 ] && bench_s=120
echo "bench time limit: ${bench_s} s" > "$out/bench.log"
timeout -s INT -k 20 "$bench_s" python3 -m nnx bench --backends cupy --m 2048,16384,65536 --dtype float32,uint8 --repeats 7 \
  --json "$out/gpu-bench.json" ${plot[@]+"${plot[@]}"} >> "$out/bench.log" 2>&1
bench_rc=$?
tail -n 40 "$out/bench.log"
echo "tests: cupy $cupy_rc, rest $rest_rc, bench: $bench_rc"
[ "$cupy_rc" -eq 0 ] && [ "$rest_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
