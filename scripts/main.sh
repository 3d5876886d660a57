#!/usr/bin/env bash
# The main job: build actloss (Release; with the CUDA backend when nvcc is present), then prove it
# on this machine: the CUDA kernels against the float64 reference (on the GPU; without one, on
# the CPU simulator, built for that), the SIMD CPU backend against the same oracle, and a quick
# speed table against the copy bandwidth measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cmake --preset default >/dev/null
# The library and the tool it runs; scripts/test.sh builds the tests.
cmake --build --preset default -j "$ACTLOSS_JOBS" --target actloss_cli
tool=./build/default/tools/actloss
"$tool" info
if "$tool" info --cuda-device; then
  "$tool" validate --quick
elif ! actloss_have_nvcc; then
  printf '\nNo CUDA toolkit: the CUDA kernels cannot be built here; only the CPU backend is checked.\n'
  "$tool" validate --quick --device cpu
else
  # No GPU here (or no CUDA backend): the kernels still run, on the simulator, which compiles the
  # same .cu sources for the CPU (sim/README.md). The sim-check preset builds them at -O1 and
  # without the SIMD CPU backend, which the build above already checks: a third of the -O3
  # build's time, for a check that runs in seconds either way.
  printf '\nNo usable CUDA device: building the CUDA kernels for the CPU simulator (build/sim-check)\n'
  printf 'to validate them against the float64 reference.\n\n'
  cmake --preset sim-check >/dev/null
  cmake --build --preset sim-check -j "$ACTLOSS_JOBS" --target actloss_cli
  ./build/sim-check/tools/actloss validate --quick --device cuda
  "$tool" validate --quick --device cpu
fi
"$tool" bench --quick
