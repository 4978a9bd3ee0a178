#!/usr/bin/env bash
# One command for a lent GPU machine (see README, "GPU check"): build the CUDA extension, run `lrwa-fast doctor`
# (every fast path against its reference on this GPU: doctor.json), check that the CUDA kernels loaded, run the GPU
# tests, then the step benchmark (ResNet-34 → ResNet-18,
# the GPU targets; fp32, bf16, and the finite-difference table with the KL loss), the replay and
# kernel tables, the profile and the compiled-student benchmark.
# Steps run in that order of importance under one deadline (GPU_CHECK_SECONDS, default 570 s, so
# the whole run fits the device tool's 10-minute limit); a step that would pass the deadline is cut
# short and reported. Logs and JSON go to a scratch folder and are packed, after every step, into
# $OUT/gpu_results.tar.gz (few files, so the device tool returns them all).
# Offline machines: put wheels for missing pure-Python dependencies (tqdm, higher, pyyaml) in
# ./wheels and they are installed from there.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_results}"
mkdir -p "$OUT"
work="$(mktemp -d)"
deadline=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-570} ))
status=0
pack() { tar -czf "$OUT/gpu_results.tar.gz" -C "$work" . 2>/dev/null; }
step() {  # step NAME LIMIT COMMAND...: run with min(LIMIT, time left), log to NAME.log, pack
  local name="$1" limit="$2"; shift 2
  local left=$(( deadline - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then echo "!! $name skipped: the deadline has passed"; status=1; return; fi
  echo "== $name (at most $limit s)"
  timeout "$limit" "$@" > "$work/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$work/$name.log"
  [ "$rc" -eq 0 ] || { echo "!! $name failed (exit $rc)"; status=1; }
  pack
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$work/gpu.txt" 2>&1 || true
if [ -d wheels ]; then pip install --no-index --find-links wheels tqdm higher pyyaml > "$work/wheels.log" 2>&1; fi
step build 240 env MAX_JOBS="$(nproc)" pip install --no-build-isolation --no-deps -e .
step doctor 150 sh -c "python -m lrwa_fast doctor --json > '$work/doctor.json'; a=\$?; python -m lrwa_fast doctor --no-speed; b=\$?; exit \$((a | b))"
step extension 30 python -c "from lrwa_fast.replay.buffer import _ext; assert _ext.has_cuda(), _ext.reason() or 'built without CUDA'; print('CUDA replay kernels loaded')"
step gpu_tests 150 python -m pytest -q -m gpu tests
step step_bench 120 python -m lrwa_fast bench --cases resnet18 --repeats 10 --json "$work/bench.json"
step bf16_bench 90 python -m lrwa_fast bench --cases resnet18 --precision bf16 --repeats 10 --json "$work/bench_bf16.json"
step fd_table 60 python -m lrwa_fast bench --cases resnet18 --loss kl --batch 128 --memory-batch 32 --repeats 10 \
  --no-iterations --device cuda --json "$work/bench_fd_kl.json"
step two_rank_tests 90 python -m pytest -q -m distributed tests
step replay_table 45 python benchmarks/replay_table.py --json "$work/replay.json"
step kernel_table 120 python benchmarks/kernel_table.py --json "$work/kernels.json"
step profile 60 python -m lrwa_fast profile --case resnet18 --rounds 5 --out "$work/profile"
step compile_bench 120 python -m lrwa_fast bench --cases resnet18 --compile --no-iterations --repeats 10 \
  --json "$work/bench_compile.json"
pack
echo "results in $OUT/gpu_results.tar.gz (exit $status)"
exit $status
