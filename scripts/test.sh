#!/usr/bin/env bash
# Every test this machine can run, no GPU needed:
#   1. the nvcc build (sm_90): every .cu compiles and links; CPU tests run, GPU tests report SKIPPED;
#   2. the simulator build under ASan+UBSan: the same kernels run on CPU threads, every test for real;
#      at -O1 with line tables only (-g1) and the SIMD loops' lambdas not forced inline: at -O2 -g
#      the SIMD CPU backend's cross-entropy alone took 16 minutes to compile on a 2-core machine;
#   3. the simulator's own self-tests, and its threads mode under ThreadSanitizer, with every
#      kernel on every dispatch path (the validation table's smoke depth), many host threads
#      calling the ops at once, and the NCCL adapter with its ranks as threads;
#   4. the simulator build scripts/main.sh makes on a machine without a GPU (sim-check: g++ -O1,
#      no SIMD CPU backend) and the main job's validation of the kernels on it;
#   5. the libFuzzer targets (clang, ASan + UBSan): every committed corpus input and past finding
#      replayed, then a few seconds of fuzzing per target (scripts/fuzz.sh runs them for longer);
#   6. install, then a separate project finds the package with find_package(actloss) and runs;
#      the training example's GPU path too, which reports SKIPPED (exit 77) without a GPU; a
#      CPU-only project that cannot find the CUDA toolkit links actloss::shared, and plain
#      compiler commands link the shared and the static library by hand.
#   7. calls past 2^31 elements (tests/large: tanh, softmax, cross-entropy over 2^31 + elements,
#      bf16) on the CPU backend and on the simulator's Release build (sim, g++ -O3): about 9 GB of
#      memory and 8 minutes, one stage after the other tests so that nothing else holds memory then.
# ACTLOSS_TEST_STAGES (e.g. "sim-asan consumer") runs a subset while iterating.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

stages=${ACTLOSS_TEST_STAGES:-"nvcc sim-asan sim-tsan sim-release fuzz consumer large"}
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
sim_targets="sim_selftest sim_cublas_test sim_nccl_test sim_bench"
if run_stage sim-selftest; then
  banner "simulator self-tests under ASan + UBSan"
  cmake --preset sim-asan
  cmake --build --preset sim-asan -j "$ACTLOSS_JOBS" --target $sim_targets
  ctest --preset sim-asan -L sim -j "$ACTLOSS_JOBS"
fi

if run_stage sim-tsan; then
  banner "simulator threads mode under TSan (self-tests, planted race, every kernel, many host threads, NCCL ranks as threads)"
  cmake --preset sim-tsan
  cmake --build --preset sim-tsan -j "$ACTLOSS_JOBS" --target $sim_targets sim_planted_race \
    validation_tests concurrency_tests nccl_tests
  ctest --preset sim-tsan -L "sim|races" -j "$ACTLOSS_JOBS"
fi

if run_stage sim-release; then
  banner "the main job's no-GPU path: the kernels on the simulator (sim-check, -O1), against the reference"
  cmake --preset sim-check
  cmake --build --preset sim-check -j "$ACTLOSS_JOBS" --target actloss_cli
  ./build/sim-check/tools/actloss validate --quick --device cuda --failures-only
fi

if run_stage fuzz; then
  banner "fuzz targets: the corpus and past findings replayed, then 5 s of fuzzing each"
  cmake --preset fuzz
  cmake --build --preset fuzz -j "$ACTLOSS_JOBS"
  for target in cross_entropy softmax activation bce mse linear_cross_entropy; do
    fuzzer=build/fuzz/tests/fuzz/${target}_fuzz
    inputs=()
    for dir in tests/fuzz/corpus/$target tests/fuzz/regressions/$target; do
      [[ -d $dir ]] && inputs+=("$dir")
    done
    ((${#inputs[@]})) && "$fuzzer" -runs=0 "${inputs[@]}" 2>&1 | tail -1
    scratch=$(mktemp -d)
    "$fuzzer" -max_total_time=5 -artifact_prefix="$scratch/" "$scratch" 2>&1 | tail -1
    rm -rf "$scratch"
  done
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

  # CPU-only consumers without the CUDA toolkit: a CMake project that cannot find it links
  # actloss::shared, and a plain compiler command links -lactloss (the shared library, which
  # carries its CUDA runtime). The static library by hand needs the runtime named (README).
  cmake -S tests/consumer -B "$prefix/build-consumer-shared" -G Ninja \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON \
    -DACTLOSS_CONSUMER_TARGET=actloss::shared
  cmake --build "$prefix/build-consumer-shared"
  "$prefix/build-consumer-shared/consumer"
  libdir=$(dirname "$(find "$prefix" -name 'libactloss.a' -print -quit)")
  c++ -std=c++20 tests/consumer/consumer.cpp -I"$prefix/include" -L"$libdir" -lactloss \
    -Wl,-rpath,"$libdir" -o "$prefix/consumer-by-hand"
  if ldd "$prefix/consumer-by-hand" | grep -q cudart; then
    echo "consumer-by-hand: depends on a CUDA runtime library" >&2
    exit 1
  fi
  "$prefix/consumer-by-hand"
  static_runtime=()
  if grep -q 'actloss_WITH_HIGHWAY ON' "$(find "$prefix" -name actlossConfig.cmake -print -quit)"; then
    static_runtime+=(-lhwy)
  fi
  if grep -q 'actloss_CUDA_BACKEND "NVCC"' "$(find "$prefix" -name actlossConfig.cmake -print -quit)"; then
    static_runtime+=(-L"$(dirname "$(command -v nvcc)")/../lib64" -lcudart_static -ldl -lrt)
  fi
  c++ -std=c++20 tests/consumer/consumer.cpp -I"$prefix/include" "$libdir/libactloss.a" \
    "${static_runtime[@]}" -pthread -o "$prefix/consumer-static-by-hand"
  "$prefix/consumer-static-by-hand"
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

if run_stage large; then
  banner "past 2^31 elements: the CPU backend and the kernels (simulator, Release)"
  cmake --preset sim
  cmake --build --preset sim -j "$ACTLOSS_JOBS" --target large_tests
  ./build/sim/tests/large/large_tests
fi

banner "all stages passed: $stages"
