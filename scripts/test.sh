#!/usr/bin/env bash
# Every test this machine can run, no GPU needed:
#   1. the nvcc build (sm_90): every .cu compiles and links; CPU tests run, GPU tests report SKIPPED;
#   2. the simulator build under ASan+UBSan: the same kernels run on CPU threads, every test for real;
#   3. the simulator's own self-tests, and its threads mode under ThreadSanitizer, with every
#      kernel on every dispatch path (the validation table's smoke depth);
#   4. the simulator's Release build (g++ -O3, as scripts/main.sh builds it on a machine without
#      a GPU) and the main job's validation of the kernels on it;
#   5. install, then a separate project finds the package with find_package(actloss) and runs;
#      the training example's GPU path too, which reports SKIPPED (exit 77) without a GPU.
# ACTLOSS_TEST_STAGES (e.g. "sim-asan consumer") runs a subset while iterating.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

stages=${ACTLOSS_TEST_STAGES:-"nvcc sim-asan sim-tsan sim-release consumer"}
run_stage() { [[ " $stages " == *" $1 "* ]]; }
banner() { printf '\n===== %s =====\n' "$*"; }

if run_stage nvcc; then
  if actloss_have_nvcc; then
    banner "nvcc build (sm_90) + tests"
    cmake --preset nvcc-sm90
    cmake --build --preset nvcc-sm90 -j "$ACTLOSS_JOBS"
    ctest --preset nvcc-sm90 -j "$ACTLOSS_JOBS"
  else
    banner "nvcc not found: CPU-only build + tests"
    cmake --preset default -DACTLOSS_CUDA=OFF
    cmake --build --preset default -j "$ACTLOSS_JOBS"
    ctest --preset default -j "$ACTLOSS_JOBS"
  fi
fi

if run_stage cpu; then
  banner "CPU-only build + tests"
  cmake --preset default -DACTLOSS_CUDA=OFF
  cmake --build --preset default -j "$ACTLOSS_JOBS"
  ctest --preset default -j "$ACTLOSS_JOBS"
fi

if run_stage asan; then
  banner "CPU backend under ASan + UBSan"
  cmake --preset asan
  cmake --build --preset asan -j "$ACTLOSS_JOBS"
  ctest --preset asan -j "$ACTLOSS_JOBS"
fi

if run_stage sim-asan; then
  banner "CUDA kernels on the simulator under ASan + UBSan"
  cmake --preset sim-asan
  cmake --build --preset sim-asan -j "$ACTLOSS_JOBS"
  ctest --preset sim-asan -j "$ACTLOSS_JOBS"
fi

# The simulator's self-tests alone (fibers under ASan+UBSan, threads mode under TSan); the
# sim-asan stage runs them too, with every kernel test.
sim_targets="sim_selftest sim_cublas_test sim_bench"
if run_stage sim-selftest; then
  banner "simulator self-tests under ASan + UBSan"
  cmake --preset sim-asan
  cmake --build --preset sim-asan -j "$ACTLOSS_JOBS" --target $sim_targets
  ctest --preset sim-asan -L sim -j "$ACTLOSS_JOBS"
fi

if run_stage sim-tsan; then
  banner "simulator threads mode under TSan (simulator self-tests, planted race, every kernel)"
  cmake --preset sim-tsan
  cmake --build --preset sim-tsan -j "$ACTLOSS_JOBS" --target $sim_targets sim_planted_race \
    validation_tests
  ctest --preset sim-tsan -L "sim|races" -j "$ACTLOSS_JOBS"
fi

if run_stage sim-release; then
  banner "the main job's no-GPU path: the kernels on the simulator, Release, against the reference"
  cmake --preset sim
  cmake --build --preset sim -j "$ACTLOSS_JOBS" --target actloss_cli
  ./build/sim/tools/actloss validate --quick --device cuda --failures-only
fi

if run_stage consumer; then
  banner "install + find_package(actloss) from a separate project"
  build=build/nvcc-sm90
  [[ -d $build ]] || build=build/default
  prefix=$(mktemp -d)
  trap 'rm -rf "$prefix"' EXIT
  cmake --install "$build" --prefix "$prefix"
  for project in tests/consumer examples/quickstart examples/train_mlp; do
    out="$prefix/build-$(basename "$project")"
    cmake -S "$project" -B "$out" -G Ninja -DCMAKE_PREFIX_PATH="$prefix"
    cmake --build "$out" -j "$ACTLOSS_JOBS"
  done
  "$prefix/build-consumer/consumer"
  "$prefix/build-quickstart/quickstart"
  "$prefix/build-train_mlp/train_mlp"
  # The example builds its GPU path against an install with the CUDA backend; without a GPU it
  # says so and exits 77, any other failure fails the stage.
  config=$(find "$prefix" -name actlossConfig.cmake -print -quit)
  if grep -q 'actloss_CUDA_BACKEND "NVCC"' "$config"; then
    rc=0
    "$prefix/build-train_mlp/train_mlp" --device cuda || rc=$?
    if ((rc == 77)); then
      echo "train_mlp --device cuda: SKIPPED (no CUDA device on this machine)"
    elif ((rc != 0)); then
      exit "$rc"
    fi
  else
    echo "train_mlp --device cuda: not built (this install has no CUDA backend)"
  fi
fi
banner "all stages passed: $stages"
