#!/usr/bin/env bash
# Builds the GPU decision-mode harness and runs it: ./benches/gpu/run.sh SRC [TEMPLATES...]
# SRC holds the crate sources tfhe 1.8.2's `gpu` feature compiles, as cargo unpacks them
# (tfhe-cuda-backend-0.16.0/ and tfhe-cuda-common-0.1.1/; `scripts/gpu-sources SRC` copies them
# from cargo's registry). Needs nvcc, CMake and a CUDA GPU; see benches/gpu/README.md.
set -euo pipefail
src=$(cd "${1:?usage: run.sh SRC [TEMPLATES...]}" && pwd)
shift
here=$(cd "$(dirname "$0")" && pwd)
build=${GPU_BUILD_DIR:-/tmp/passage-gpu-build}
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S "$here" -B "$build" "${generator[@]}" \
  -DTFHE_CUDA_BACKEND_DIR="$src/tfhe-cuda-backend-0.16.0/cuda" \
  -DTFHE_CUDA_COMMON_DIR="$src/tfhe-cuda-common-0.1.1/cuda" >/dev/null
started=$(date +%s)
cmake --build "$build" -j "$(nproc)"
echo "built in $(( $(date +%s) - started )) s" >&2
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader >&2 || true
for templates in "${@:-1000}"; do
  "$build/decision_pbs" "$templates" 5
done
