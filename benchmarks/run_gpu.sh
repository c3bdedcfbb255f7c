#!/usr/bin/env bash
# The first GPU run: one call, at most 8 minutes on a fresh GPU machine, that always leaves
# its results. Nothing is installed there: the checkout runs in place.
#
# Steps, each under its own time budget (seconds, also capped by what is left of the
# whole), in this order:
#   env     nvidia-smi and `nnx info --json`                                  (20 s)
#   kernels benchmarks/gpu_check.py: compile the kernels once, record compile time,
#           registers, local (spilled) memory, static shared memory and blocks per SM of
#           every kernel, check every kernel family against NumPy on small sizes   (150 s)
#   bench   `nnx bench` at m = 65536, CuPy beside PyTorch CUDA where installed   (150 s)
#   tests   only the tests that run on the CuPy backend (benchmarks/cupy_only.py
#           selects them: tests/backends/test_cupy.py and every test parametrized with "cupy"; the
#           NVRTC/nvcc and CPU-emulation tests run in CI)                        (130 s)
# Every step shares one kernel compile through CuPy's disk cache (CUPY_CACHE_DIR), where
# CuPy and the driver keep one (CuPy 14.1+, driver 12.4+; `kernels.json` says which);
# elsewhere each step's process compiles again, which its budget allows for.
# A step that runs out of time is interrupted (SIGINT, then killed 10 s later); the next
# one still runs. Whatever happens, OUTDIR gets summary.txt and summary.json (each step:
# status, exit code, seconds, budget, command, log) on exit.
#
# Without a GPU (CuPy missing or finding none) it is a dry run, under 2 minutes: each
# step says what it would run, the kernels step lists the kernels and checks, the tests
# step lists the tests it would select (pytest --collect-only), and summary.txt says so.
#
# Usage: bash benchmarks/run_gpu.sh OUTDIR      (default: $OUT, else ./gpu-run)
# NNX_GPU_RUN_TOTAL_S overrides the 480-second total (for testing the budgets).
set -u
out="${1:-${OUT:-gpu-run}}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"  # absolute before the cd below
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
total="${NNX_GPU_RUN_TOTAL_S:-480}"
reserve=10  # kept for the summary at the end
start=$SECONDS
mode="starting"
gpu_plan=()
steps="$out/steps.tsv"
: > "$steps"

python=python3
command -v "$python" > /dev/null || python=python

finish() {
  local elapsed=$(( SECONDS - start ))
  {
    echo "nnx GPU run: $mode, $elapsed s of $total s"
    echo "device: ${device:-unknown}"
    printf '%-8s %-10s %4s %6s %6s  %s\n' step status rc secs budget command
    while IFS=$'\t' read -r name status rc secs budget log cmd; do
      printf '%-8s %-10s %4s %6s %6s  %s\n' "$name" "$status" "$rc" "$secs" "$budget" "$cmd"
    done < "$steps"
    if [ "$mode" = "dry run" ]; then
      echo
      echo "on a GPU it would run:"
      printf '  %s\n' "${gpu_plan[@]}"
    fi
    [ -f "$out/kernels.txt" ] && { echo; echo "kernels:"; tail -n 5 "$out/kernels.txt"; }
    [ -f "$out/tests.log" ] && { echo; echo "tests:"; tail -n 3 "$out/tests.log"; }
    [ -f "$out/bench.log" ] && { echo; echo "bench:"; tail -n 25 "$out/bench.log"; }
  } > "$out/summary.txt" 2>&1
  "$python" - "$steps" "$out/summary.json" "$mode" "$elapsed" "$total" "${device:-unknown}" <<'PY' 2>> "$out/summary.txt" || \
    printf '{"mode": "%s", "elapsed_s": %s, "error": "summary.json written without python"}\n' "$mode" "$elapsed" > "$out/summary.json"
import json, sys
steps, path, mode, elapsed, total, device = sys.argv[1:]
keys = ("step", "status", "rc", "seconds", "budget_s", "log", "command")
rows = [dict(zip(keys, line.rstrip("\n").split("\t"))) for line in open(steps) if line.strip()]
for row in rows:
    for key in ("rc", "seconds", "budget_s"):
        row[key] = int(row[key]) if row.get(key, "").lstrip("-").isdigit() else None
ok = all(r["status"] in ("ok", "dry run") for r in rows)
json.dump({"mode": mode, "device": device, "elapsed_s": int(elapsed), "total_s": int(total), "ok": ok,
           "steps": rows}, open(path, "w"), indent=1)
PY
  cat "$out/summary.txt"
}
trap finish EXIT

# step NAME BUDGET LOG COMMAND...: run COMMAND with its output in OUTDIR/LOG, under the
# smaller of BUDGET and what is left of the total; record the outcome in steps.tsv.
step() {
  local name=$1 budget=$2 log=$3
  shift 3
  local left=$(( total - reserve - (SECONDS - start) ))
  local limit=$(( budget < left ? budget : left ))
  local cmd="$*"
  if [ "$limit" -lt 5 ]; then
    printf '%s\tskipped\t-\t0\t%s\t%s\t%s\n' "$name" "$budget" "$log" "$cmd" >> "$steps"
    echo "$name: skipped (no time left)"
    return 0
  fi
  local t0=$SECONDS
  timeout -s INT -k 10 "$limit" "$@" > "$out/$log" 2>&1
  local rc=$?
  local secs=$(( SECONDS - t0 )) status=ok
  [ "$rc" -ne 0 ] && status=failed
  { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && status="timed out"
  [ "$mode" = "dry run" ] && [ "$rc" -eq 0 ] && status="dry run"
  echo "exit status $rc after $secs s (limit $limit s)" >> "$out/$log"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$secs" "$budget" "$log" "$cmd" >> "$steps"
  echo "$name: $status ($secs s)"
}

if "$python" -c "import sys, nnx; sys.exit(0 if nnx.backends.available()['cupy'].available else 1)" 2> /dev/null; then
  mode="gpu"
  device=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2> /dev/null | head -n 1)
else
  mode="dry run"
  device="none (CuPy finds no GPU here)"
fi
echo "nnx GPU run ($mode) into $out"

# One kernel compile for every step, where CuPy keeps name-expression modules on disk.
CUPY_CACHE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/nnx-cupy-cache.XXXXXX")"
export CUPY_CACHE_DIR

# pyproject.toml's addopts carry --benchmark-disable, which pytest refuses where
# pytest-benchmark is not loaded: then leave out benchmarks/. addopts are replaced either
# way, leaving out pytest-xdist's -n (which may not be installed there): the tests share
# the one GPU in turn, in one process.
if "$python" -m pytest -p no:cacheprovider -o addopts= --help 2> /dev/null | grep -q -- '--benchmark-disable'; then
  pytest_opts=(-p no:cacheprovider -o "addopts=-ra --benchmark-disable")
  paths=(tests benchmarks)
  echo "pytest-benchmark loaded: the tests run from tests/ and benchmarks/" > "$out/pytest-setup.txt"
else
  pytest_opts=(-p no:cacheprovider -o addopts=-ra)
  paths=(tests)
  echo "pytest-benchmark not loaded: addopts replaced by -ra, the tests run from tests/ only" \
    "(benchmarks/ needs its fixture)" > "$out/pytest-setup.txt"
fi
cat "$out/pytest-setup.txt"
select=(-p benchmarks.cupy_only)
bench=("$python" -m nnx bench --backends cupy --m 65536 --dtype float32,uint8 --repeats 5
  --json "$out/gpu-bench.json")

tests=("$python" -m pytest "${pytest_opts[@]}" "${select[@]}" -q -rs --durations=15 --junitxml "$out/tests.xml"
  "${paths[@]}")
gpu_plan=(
  "env (20 s): nvidia-smi; $python -m nnx info --json"
  "kernels (150 s): $python benchmarks/gpu_check.py --json $out/kernels.json"
  "bench (150 s): ${bench[*]}"
  "tests (130 s): ${tests[*]}"
)
if [ "$mode" = "gpu" ]; then
  step env 20 env.log bash -c "nvidia-smi; $python -m nnx info --json > '$out/info.json'"
  step kernels 150 kernels.txt "$python" benchmarks/gpu_check.py --json "$out/kernels.json"
  step bench 150 bench.log "${bench[@]}"
  step tests 130 tests.log "${tests[@]}"
else
  step env 20 env.log "$python" -m nnx info --json
  step kernels 30 kernels.txt "$python" benchmarks/gpu_check.py --dry-run --json "$out/kernels.json"
  step bench 5 bench.log echo "would run: ${bench[*]}"
  step tests 60 tests.log "$python" -m pytest "${pytest_opts[@]}" "${select[@]}" --collect-only -q "${paths[@]}"
fi
rm -rf "$CUPY_CACHE_DIR"
ok=1
while IFS=$'\t' read -r name status _; do
  case "$status" in ok | "dry run") ;; *) ok=0 ;; esac
done < "$steps"
[ "$ok" -eq 1 ]
