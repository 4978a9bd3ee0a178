#!/usr/bin/env bash
# One command for a lent GPU machine (see README, "GPU check"): build the CUDA extension, run the
# GPU tests, then the kernel, replay and step benchmarks and the profile. Results go to $OUT (or
# ./gpu_results); the whole run is meant to fit in 10 minutes on one H100/H200.
# Offline machines: put wheels for missing pure-Python dependencies (tqdm, higher, pyyaml) in
# ./wheels and they are installed from there.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_results}"
mkdir -p "$OUT"
status=0
step() {  # step NAME TIMEOUT COMMAND...: run, log to $OUT/NAME.log, remember failures
  local name="$1" limit="$2"; shift 2
  echo "== $name"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  [ "$rc" -eq 0 ] || { echo "!! $name failed (exit $rc)"; status=1; }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true
if [ -d wheels ]; then pip install --no-index --find-links wheels tqdm higher pyyaml > "$OUT/wheels.log" 2>&1; fi
step build 300 env MAX_JOBS="$(nproc)" pip install --no-build-isolation --no-deps -e .
step gpu_tests 240 python -m pytest -q -m gpu tests
step kernel_table 180 python benchmarks/kernel_table.py --json "$OUT/kernels.json"
step replay_table 120 python benchmarks/replay_table.py --json "$OUT/replay.json"
step step_bench 300 python -m lrwa_fast bench --cases cnn,wrn16_1,resnet18 --repeats 20 --json "$OUT/bench.json"
step compile_bench 180 python -m lrwa_fast bench --cases resnet18 --compile --no-iterations --repeats 10 \
  --json "$OUT/bench_compile.json"
step profile 120 python -m lrwa_fast profile --case resnet18 --steps 10 --out "$OUT/profile"
echo "results in $OUT (exit $status)"
exit $status
