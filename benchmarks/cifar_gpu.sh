#!/usr/bin/env bash
# CIFAR job throughput on one GPU (issue 12), within 8 minutes: images/s of ResNet-34 teacher training
# (batch 128, fp32 and bf16) and of full-size LRwA and DFAD iterations of the two ResNet presets (batch
# 512, 10 student steps), data loading and evaluation included, on synthetic CIFAR-format data with a
# random teacher; then a profile of one LRwA iteration. Results into $OUT (default cifar_gpu_results).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-cifar_gpu_results}"
mkdir -p "$OUT"
status=0
run() {  # run NAME LIMIT COMMAND...
  local name="$1" limit="$2"; shift 2
  echo "== $name (at most $limit s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1 || { echo "!! $name failed or timed out"; status=1; }
  tail -n 20 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
run throughput 360 python benchmarks/cifar_throughput.py --device cuda --json "$OUT/cifar_throughput.json"
run profile 100 python -m lrwa_fast profile --case resnet18 --batch 512 --memory-batch 64 --rounds 5 \
    --out "$OUT/profile"
exit $status
