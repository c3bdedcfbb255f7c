#!/usr/bin/env bash
# One call on a lent GPU machine (nothing installable there: the checkout runs in place).
# Runs the whole test suite, then the GPU benchmark (each under a time limit; exit status
# 124 in tests.log or the last line means it ran out; gpu-bench.json then holds the groups
# that finished, marked "complete": false), and writes every log and result under
# the folder given as $1 (default: $OUT, else ./gpu-run):
#   nvidia-smi.txt, info.json, tests.log (+ tests.xml), bench.log, gpu-bench.json (+ .png)
# Usage: bash benchmarks/run_gpu.sh "$OUT"
set -u
out="${1:-${OUT:-gpu-run}}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 -m nnx info --json > "$out/info.json" 2> "$out/info.err"

# Time limits keep one device call (10 minutes at most) from losing the benchmark to a hang.
timeout 330 python3 -m pytest -q -rs --junitxml "$out/tests.xml" > "$out/tests.log" 2>&1
tests_rc=$?
echo "pytest exit status: $tests_rc" >> "$out/tests.log"
tail -n 3 "$out/tests.log"

# CuPy rows against the device-to-device copy, cuBLAS products and PyTorch CUDA.
# The PNG only where matplotlib is installed.
plot=()
python3 -c "import matplotlib" 2>/dev/null && plot=(--plot "$out/gpu-bench.png")
# The benchmark gets what is left of 9.5 minutes (one device call may run 10), at least 2.
bench_s=$(( 570 - SECONDS )); [ "$bench_s" -lt 120 ] && bench_s=120
echo "bench time limit: ${bench_s} s" > "$out/bench.log"
timeout "$bench_s" python3 -m nnx bench --backends cupy --m 2048,16384,65536 --dtype float32,uint8 --repeats 7 \
  --json "$out/gpu-bench.json" ${plot[@]+"${plot[@]}"} >> "$out/bench.log" 2>&1
bench_rc=$?
tail -n 40 "$out/bench.log"
echo "tests: $tests_rc, bench: $bench_rc"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
