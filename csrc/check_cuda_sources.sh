#!/usr/bin/env bash
# Compile-check every csrc/*.cu with nvcc for sm_90, once plainly and once with the half/bfloat16
# restrictions torch's CUDAExtension builds use; then syntax-check the binding's CUDA branch
# (LRWA_WITH_CUDA) against torch's headers, which a CPU-only machine cannot otherwise build.
# Exits non-zero on any failure; skips without nvcc.
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
compile_variant() {  # nvcc $1 (a .cu file) as variant $2; prints ok or FAIL, returns non-zero on failure
  local name flags=(-std=c++17)
  name="$(basename "$1" .cu)"
  [[ "$2" == torch_like ]] && flags=("${torch_like[@]}")
  if nvcc -arch=sm_90 -O3 "${flags[@]}" -I"$here" -c "$1" -o "$out/$name.$2.o"; then
    echo "check_cuda_sources: ok   $name.cu ($2)"
  else
    echo "check_cuda_sources: FAIL $name.cu ($2)"
    return 1
  fi
}
pids=()
shopt -s nullglob
for src in "$here"/*.cu; do  # the variants compile side by side (two cores halve the check's time)
  for variant in plain torch_like; do
    compile_variant "$src" "$variant" &
    pids+=("$!")
  done
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done

# The CPU wheel ships c10/cuda headers but not the one CMake generates; an empty stand-in suffices.
cuda_include=""
for dir in "${CUDA_HOME:-}" "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")" /usr/local/cuda; do
  if [[ -n "$dir" && -f "$dir/include/cuda_runtime.h" ]]; then cuda_include="$dir/include"; break; fi
done
if [[ -n "$cuda_include" ]] && command -v g++ >/dev/null 2>&1; then
  mkdir -p "$out/stub/c10/cuda/impl"
  echo "#pragma once" >"$out/stub/c10/cuda/impl/cuda_cmake_macros.h"
  mapfile -t includes < <(python -c "
import sysconfig
from torch.utils.cpp_extension import include_paths
print('\n'.join([*include_paths(), sysconfig.get_paths()['include']]))")
  if g++ -fsyntax-only -std=c++20 -DLRWA_WITH_CUDA -DTORCH_EXTENSION_NAME=_replay_ext -I"$out/stub" \
      "${includes[@]/#/-I}" -I"$cuda_include" -I"$here" "$here/replay_binding.cpp"; then
    echo "check_cuda_sources: ok   replay_binding.cpp (LRWA_WITH_CUDA, syntax)"
  else
    echo "check_cuda_sources: FAIL replay_binding.cpp (LRWA_WITH_CUDA, syntax)"
    status=1
  fi
else
  echo "check_cuda_sources: no CUDA headers (CUDA_HOME, beside nvcc, /usr/local/cuda) or no g++; skipping" \
       "the binding's CUDA branch"
fi
exit "$status"
