#!/usr/bin/env bash
# Compile-check every csrc/*.cu with nvcc for sm_90, once plainly and once with the half/bfloat16
# restrictions torch's CUDAExtension builds use. Exits non-zero on any failure; skips without nvcc.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v nvcc >/dev/null 2>&1; then
  echo "check_cuda_sources: nvcc not on PATH; skipping the CUDA compile check"
  exit 0
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
torch_like=(-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
            -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr -std=c++20)
status=0
shopt -s nullglob
for src in "$here"/*.cu; do
  name="$(basename "$src" .cu)"
  for variant in plain torch_like; do
    flags=(-std=c++17)
    [[ "$variant" == torch_like ]] && flags=("${torch_like[@]}")
    if nvcc -arch=sm_90 -O3 "${flags[@]}" -I"$here" -c "$src" -o "$out/$name.$variant.o"; then
      echo "check_cuda_sources: ok   $name.cu ($variant)"
    else
      echo "check_cuda_sources: FAIL $name.cu ($variant)"
      status=1
    fi
  done
done
exit "$status"
