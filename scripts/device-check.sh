#!/usr/bin/env bash
# The one prepared check for a machine with a GPU. Runs every test binary on the GPU,
# compute-sanitizer memcheck and racecheck over a representative subset, and the benchmarks when
# they exist; logs go under $OUT (the current directory when unset); a short table prints last.
# Every step runs under one overall deadline (ACTLOSS_CHECK_BUDGET_S, default 360 s) so the
# whole check ends well inside a lease and leaves room for one rerun; steps are ordered by what
# matters most when time runs short: correctness on the GPU, then speed, then the sanitizers.
# The summary and the packed logs are refreshed after every step, so a check cut short still
# brings back everything it finished.
#
# ACTLOSS_CHECK_BENCH_FILTER (default ^cuda/) narrows the benchmarks, whose fused linear
# cross-entropy rows run in a step of their own (ACTLOSS_CHECK_LINEAR_CE=0 skips it);
# ACTLOSS_CHECK_TORCH=0 skips torch_compare (when the PyTorch figures of the same card are recent
# and time is short); ACTLOSS_CHECK_ONE_PACK=0 skips the elementwise kernels' second run with their one-pack loop;
# ACTLOSS_CHECK_REDUCE_FILTER narrows the reduced losses' run with their second-kernel finish;
# ACTLOSS_CHECK_PROBABILITIES_FILTER the cross-entropy's run with probability targets.
#
#   scripts/device-check.sh [BUNDLE]   BUNDLE: the folder or .tar.gz made by
#                                      scripts/device-bundle.sh on a machine without a GPU
#                                      (default build/device-bundle.tar.gz); when absent, the
#                                      nvcc-sm90 preset is built here first.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-$PWD}
# Everything is written under $OUT/logs and packed into one archive at the end: the device tool
# brings back at most 8 files. The few files worth reading at once are copied beside it.
LOGS=$(mktemp -d)/logs
mkdir -p "$LOGS"
budget=${ACTLOSS_CHECK_BUDGET_S:-360}
bundle=${1:-build/device-bundle.tar.gz}
if [[ $bundle == *.tar.gz && -f $bundle ]]; then
  unpacked=$(mktemp -d)
  tar -C "$unpacked" -xzf "$bundle"
  bundle=$unpacked/device-bundle
fi
start=$(date +%s)
declare -a summary

elapsed() { echo "$(($(date +%s) - start))s"; }
checkpoint() {
  printf '%s\n' "${summary[@]}" >"$LOGS/summary.txt"
  for keep in summary.txt device.txt bench.json bench-one-pack.json bench-no-lane-shift.json torch.json results.md; do
    [[ -f $LOGS/$keep ]] && cp "$LOGS/$keep" "$OUT/"
  done
  tar -C "$(dirname "$LOGS")" -czf "$OUT/device-check-logs.tar.gz" logs
}
record() { summary+=("$(printf '%-34s %-8s %s' "$1" "$2" "$3")"); checkpoint; }
# Seconds a step may take: its own cap, cut to what is left of the overall budget. Zero means
# skip the step (recorded as such, so a short run says what it did not do).
allow() {
  local left=$((budget - ($(date +%s) - start)))
  ((left > $1)) && echo "$1" || echo $((left > 10 ? left : 0))
}

{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  echo "commit $(cat "$bundle/COMMIT" 2>/dev/null || git rev-parse HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
} >"$LOGS/device.txt" 2>&1
cat "$LOGS/device.txt"

if [[ ! -d $bundle ]]; then
  echo "no bundle at $bundle: building the nvcc-sm90 preset here"
  if cmake --preset nvcc-sm90 >"$LOGS/build.log" 2>&1 &&
     cmake --build --preset nvcc-sm90 -j "$(nproc)" >>"$LOGS/build.log" 2>&1; then
    bundle=build/nvcc-sm90
    record build ok "$(elapsed)"
  else
    record build FAIL "see build.log"
  fi
fi
export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# nccl_tests loads libnccl.so.2 (over 200 MB, not carried in the bundle): the toolkit's if it has
# one, else PyTorch's (the nvidia-nccl wheel).
nccl_lib=$(find /usr/local/cuda*/lib* /usr/lib/x86_64-linux-gnu \
             $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) \
             -name libnccl.so.2 2>/dev/null | head -n 1 || true)
[[ -n $nccl_lib ]] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$nccl_lib")"

find_exe() { find "$bundle" -type f -perm -u+x -name "$1" -not -path '*/CMakeFiles/*' | head -n 1; }

# run_step NAME CAP LOG CMD...: runs CMD under the smaller of CAP and the budget left.
run_step() {
  local name=$1 cap=$2 log=$3; shift 3
  local secs; secs=$(allow "$cap")
  if ((secs == 0)); then record "$name" skipped "overall budget spent"; return 200; fi
  timeout "$secs" "$@" >"$LOGS/$log" 2>&1
  local rc=$?
  ((rc == 124)) && echo "(stopped after ${secs}s)" >>"$LOGS/$log"
  return $rc
}

# report NAME RC LOG NOTE: records how a run_step ended; NOTE says what a success produced.
report() {
  local name=$1 rc=$2 log=$3 note=$4
  case $rc in
    0) record "$name" pass "$note, $(elapsed)" ;;
    77) record "$name" skipped "no CUDA device" ;;
    200) ;;  # run_step recorded the skip
    *) record "$name" FAIL "see $log: $(tail -n 1 "$LOGS/$log")" ;;
  esac
}

gtest_counts() {
  local passed skipped
  passed=$(grep -Eo '\[  PASSED  \] [0-9]+' "$1" | grep -Eo '[0-9]+$')
  skipped=$(grep -Eo '\[  SKIPPED \] [0-9]+ test' "$1" | grep -Eo '[0-9]+')
  echo "${passed:-0} passed, ${skipped:-0} skipped"
}

# peer_tests: the benchmarks' GPU peers against the reference; nccl_tests: the NCCL adapter with
# one rank (NCCL allows one rank per GPU; the cases of more ranks than GPUs report SKIPPED);
# large_tests: calls past 2^31 elements (about 9 GB of host and device memory). A bundle from
# before them lacks them.
for name in cuda_tests validation_tests api_tests reference_tests peer_tests nccl_tests large_tests; do
  exe=$(find_exe "$name")
  [[ -n $exe ]] || { record "$name" missing ""; continue; }
  run_step "$name" 150 "$name.log" "$exe" --gtest_brief=1 --gtest_output="xml:$LOGS/$name.xml"
  report "$name" $? "$name.log" "$(gtest_counts "$LOGS/$name.log")"
done

# Eight host threads, each on its own stream, calling every op at once (some with bad targets):
# each thread's results and data errors must be its own. Alone, then under compute-sanitizer.
concurrency=$(find_exe concurrency_tests)
if [[ -n $concurrency ]]; then
  run_step "concurrency_tests, 8 streams" 60 concurrency.log \
    env ACTLOSS_CONCURRENCY_THREADS=8 "$concurrency" --gtest_brief=1
  report "concurrency_tests, 8 streams" $? concurrency.log "$(gtest_counts "$LOGS/concurrency.log")"
  if command -v compute-sanitizer >/dev/null; then
    run_step "compute-sanitizer memcheck, 8 streams" 90 sanitizer-concurrency.log \
      env ACTLOSS_CONCURRENCY_THREADS=8 compute-sanitizer --tool memcheck --error-exitcode 99 \
      "$concurrency" --gtest_brief=1 --gtest_filter='*cuda*:*Cuda*'
    report "compute-sanitizer memcheck, 8 streams" $? sanitizer-concurrency.log \
      "$(tail -n 1 "$LOGS/sanitizer-concurrency.log")"
  fi
else
  record concurrency_tests missing ""
fi

tool=$(find_exe actloss)
if [[ -n $tool ]]; then
  "$tool" info >"$LOGS/info.txt" 2>&1
  run_step "actloss validate --device cuda" 90 validate.log \
    "$tool" validate --quick --device cuda --failures-only
  report "actloss validate --device cuda" $? validate.log "$(tail -n 1 "$LOGS/validate.log")"
fi

# The training example on the GPU: cuBLAS for the matrix products, actloss for the rest; it
# exits 0 only when it reaches its target accuracy.
train=$(find_exe train_mlp)
if [[ -n $train ]]; then
  run_step "train_mlp --device cuda" 60 train_mlp.log "$train" --device cuda
  report "train_mlp --device cuda" $? train_mlp.log "$(tail -n 1 "$LOGS/train_mlp.log")"
fi

# The GPU set only: the CPU set is measured on the machines without a GPU, and would spend
# minutes of the lease on a float64 reference.
bench=$(find_exe actloss_bench)
if [[ -n $bench ]]; then
  # A bundle built before the linear cross-entropy rows knows neither them nor the flag.
  linear_ce=()
  grep -qa -- --actloss_linear_ce "$bench" && linear_ce=(--actloss_linear_ce=0)
  run_step benchmarks 180 bench.log "$bench" --benchmark_filter="${ACTLOSS_CHECK_BENCH_FILTER:-^cuda/}" \
    ${linear_ce[@]+"${linear_ce[@]}"} \
    --benchmark_out="$LOGS/bench.json" --benchmark_out_format=json --benchmark_min_time=0.05s
  report benchmarks $? bench.log bench.json
  # The fused linear cross-entropy against its bare cuBLAS GEMMs and its unfused form at N = 8192,
  # D = 4096, V = 32000 and 128256 (bf16): five fixed iterations per row, since one GEMM of the
  # larger shape takes tens of milliseconds. Its JSON travels in the logs archive (the device
  # tool brings back eight files at most).
  if [[ ${ACTLOSS_CHECK_LINEAR_CE:-1} == 0 ]]; then
    record "benchmarks, linear cross-entropy" skipped "ACTLOSS_CHECK_LINEAR_CE=0"
  elif ((${#linear_ce[@]} == 0)); then
    record "benchmarks, linear cross-entropy" missing "(not in this bundle's actloss_bench)"
  else
    run_step "benchmarks, linear cross-entropy" 60 bench-linear-ce.log "$bench" \
      --benchmark_filter=/linear_cross_entropy/ --benchmark_out="$LOGS/bench-linear-ce.json" \
      --benchmark_out_format=json --benchmark_counters_tabular=true
    rc=$?
    # A row that threw exits 0 too: its first run on a card must not read as a pass.
    if ((rc == 0)) && grep -q "ERROR OCCURRED" "$LOGS/bench-linear-ce.log"; then
      record "benchmarks, linear cross-entropy" FAIL \
        "$(grep -m1 "ERROR OCCURRED" "$LOGS/bench-linear-ce.log" | cut -c1-200)"
    else
      report "benchmarks, linear cross-entropy" $rc bench-linear-ce.log bench-linear-ce.json
    fi
  fi
  # The cross-entropy with [rows x classes] probability targets (soft labels, distillation):
  # the same rows as bench.json's class targets, never yet measured on a card, so that the third
  # input row's cost shows beside them.
  if grep -qa -- --actloss_ce_targets "$bench"; then
    run_step "benchmarks, probability targets" 45 bench-probabilities.log "$bench" \
      --benchmark_filter="${ACTLOSS_CHECK_PROBABILITIES_FILTER:-^cuda/actloss/cross_entropy/.*/classes:(4096|32000|128256)/}" \
      --actloss_ce_targets=probabilities --benchmark_out="$LOGS/bench-probabilities.json" \
      --benchmark_out_format=json --benchmark_min_time=0.05s
    report "benchmarks, probability targets" $? bench-probabilities.log bench-probabilities.json
  else
    record "benchmarks, probability targets" missing "(not in this bundle's actloss_bench)"
  fi
  # The odd widths again with each misaligned chunk loaded in the widest words its own address
  # allows (pieces for 16-bit chunks 2 bytes off), as last measured on a card, instead of the
  # first read's aligned 16-byte words shifted across lanes (row::load_shifted,
  # cuda/row_common.cuh): the same-run comparison that a path written without a card waits for.
  run_step "benchmarks, no lane shift" 60 bench-no-lane-shift.log "$bench" \
    --benchmark_filter="${ACTLOSS_CHECK_LANE_SHIFT_FILTER:-^cuda/actloss/(cross_entropy|softmax)/.*/classes:50257/}" \
    --actloss_row_lane_shift=0 --benchmark_out="$LOGS/bench-no-lane-shift.json" \
    --benchmark_out_format=json --benchmark_min_time=0.05s
  report "benchmarks, no lane shift" $? bench-no-lane-shift.log bench-no-lane-shift.json
  # The rows on chip again with grids of as many blocks per SM as threads and shared memory
  # allow, as last measured on a card, instead of as many as the occupancy API allows their
  # kernels, registers included (row::count_resident_blocks, cuda/row_common.cuh): the same-run
  # comparison that a grid chosen without a card waits for. A bundle built before the flag skips.
  if grep -qa -- --actloss_row_occupancy "$bench"; then
    run_step "benchmarks, grid by threads" 60 bench-grid-by-threads.log "$bench" \
      --benchmark_filter="${ACTLOSS_CHECK_GRID_FILTER:-^cuda/actloss/(cross_entropy|softmax)/.*/classes:(256|1024|4096|32000)/}" \
      --actloss_row_occupancy=0 --benchmark_out="$LOGS/bench-grid-by-threads.json" \
      --benchmark_out_format=json --benchmark_min_time=0.05s
    report "benchmarks, grid by threads" $? bench-grid-by-threads.log bench-grid-by-threads.json
  else
    record "benchmarks, grid by threads" missing "(not in this bundle's actloss_bench)"
  fi
  # The rows past one block's shared memory again on the two-pass path, the one last measured
  # for them on a card, against bench.json's cluster_shared: the same-run comparison that a path
  # written without a card waits for (its JSON travels in the logs archive).
  run_step "benchmarks, long rows in two passes" 60 bench-two-pass.log "$bench" \
    --benchmark_filter="${ACTLOSS_CHECK_TWO_PASS_FILTER:-^cuda/actloss/(cross_entropy|softmax)/.*/classes:(128256|262144)/}" \
    --actloss_row_path=block_two_pass --benchmark_out="$LOGS/bench-two-pass.json" \
    --benchmark_out_format=json --benchmark_min_time=0.05s
  report "benchmarks, long rows in two passes" $? bench-two-pass.log bench-two-pass.json
  # The cross-entropy's rows on chip again with the unified kernel, the one last measured for
  # them on a card, against bench.json's exp-once kernels (cuda/cross_entropy_exp_once.cu): the
  # same-run comparison that kernels written without a card wait for.
  run_step "benchmarks, on-chip rows in the unified kernel" 60 bench-unified.log "$bench" \
    --benchmark_filter="${ACTLOSS_CHECK_UNIFIED_FILTER:-^cuda/actloss/cross_entropy/.*/classes:(256|1024|4096)/}" \
    --actloss_row_exp_once=0 --benchmark_out="$LOGS/bench-unified.json" \
    --benchmark_out_format=json --benchmark_min_time=0.05s
  report "benchmarks, on-chip rows in the unified kernel" $? bench-unified.log bench-unified.json
  # The reduced losses where a launch weighs most (short rows, 1M elements, the host cost) again
  # with the finish last measured on a card, a second kernel over the partials (cuda/reduce.cuh),
  # against bench.json's in-kernel finish (its JSON travels in the logs archive: the device tool
  # brings back eight files at most).
  run_step "benchmarks, reduced loss in a second kernel" 60 bench-second-kernel.log "$bench" \
    --benchmark_filter="${ACTLOSS_CHECK_REDUCE_FILTER:-^cuda/actloss/(cross_entropy/(forward|fused)/(f32|bf16)/classes:(256|4096)/|(bce_with_logits|mse)/(forward|fused)/f32/n:1048576/|host_cost/cross_entropy_fused/)}" \
    --actloss_reduce_in_kernel=0 --benchmark_out="$LOGS/bench-second-kernel.json" \
    --benchmark_out_format=json --benchmark_min_time=0.05s
  report "benchmarks, reduced loss in a second kernel" $? bench-second-kernel.log \
    bench-second-kernel.json
  # The elementwise kernels at 16M elements again with one pack per thread per step, the loop
  # measured before the several-pack one (cuda/elementwise.cuh): bench.json beside
  # bench-one-pack.json is the comparison that decides whether the old loop can go.
  if [[ ${ACTLOSS_CHECK_ONE_PACK:-1} != 0 ]]; then
    elementwise='relu|leaky_relu|tanh|sigmoid|gelu_erf|gelu_tanh|silu|swiglu|mse|bce_with_logits'
    run_step "benchmarks, one pack per step" 60 bench-one-pack.log "$bench" \
      --benchmark_filter="^cuda/actloss/($elementwise)/.*/n:16777216/" --elementwise-packs=1 \
      --benchmark_out="$LOGS/bench-one-pack.json" --benchmark_out_format=json \
      --benchmark_min_time=0.05s
    report "benchmarks, one pack per step" $? bench-one-pack.log bench-one-pack.json
  fi
  if [[ ${ACTLOSS_CHECK_TORCH:-1} == 0 ]]; then
    record torch_compare skipped "ACTLOSS_CHECK_TORCH=0"
  elif [[ -f benchmarks/torch_compare.py ]] && python3 -c 'import torch' 2>/dev/null; then
    # torch_compare stops itself at --budget and rewrites its JSON after every problem.
    torch_secs=$(allow 100)
    if ((torch_secs > 30)); then
      run_step torch_compare $((torch_secs + 20)) torch.log env PYTHONUNBUFFERED=1 \
        python3 benchmarks/torch_compare.py --budget "$((torch_secs - 10))" --out "$LOGS/torch.json" &&
        record torch_compare ok "torch.json, $(elapsed)" || record torch_compare FAIL "see torch.log"
    else
      record torch_compare skipped "overall budget spent"
    fi
  else
    record torch_compare missing "no PyTorch"
  fi
  [[ -f $LOGS/bench.json ]] &&
    { python3 benchmarks/plot.py "$LOGS/bench.json" $([[ -f $LOGS/torch.json ]] && echo "$LOGS/torch.json") \
        --out-dir "$LOGS/charts" --markdown "$LOGS/results.md" >"$LOGS/plot.log" 2>&1 ||
      record plot FAIL "see plot.log"; }
else
  record benchmarks missing "(no actloss_bench in the bundle)"
fi

# compute-sanitizer is slow: the validation table's smoke depth, which still runs every kernel
# family on every dispatch path, pass and dtype.
validation_tests=$(find_exe validation_tests)
if command -v compute-sanitizer >/dev/null && [[ -n $validation_tests ]]; then
  for check in memcheck racecheck synccheck; do
    run_step "compute-sanitizer $check" 100 "sanitizer-$check.log" \
      env ACTLOSS_VALIDATION_DEPTH=smoke compute-sanitizer --tool "$check" --error-exitcode 99 \
      "$validation_tests" --gtest_brief=1 --gtest_filter='Cuda/*'
    rc=$?
    # A sanitizer stopped by the budget found nothing in what it covered: partial, not failed.
    if ((rc == 124)); then
      record "compute-sanitizer $check" partial "stopped at the budget; see sanitizer-$check.log"
    else
      report "compute-sanitizer $check" $rc "sanitizer-$check.log" \
        "$(tail -n 1 "$LOGS/sanitizer-$check.log")"
    fi
  done
else
  record compute-sanitizer missing ""
fi

# Nsight Compute on a few row-op problems, one kernel launch each: occupancy, registers and
# achieved bandwidth, the figures that tuning starts from. Last, since nothing else depends on it.
if command -v ncu >/dev/null && [[ -n $bench ]]; then
  mkdir -p "$LOGS/ncu"
  for problem in cross_entropy/fused/f32/classes:4096/ cross_entropy/forward/f32/classes:4096/ \
                 softmax/forward/f32/classes:4096/ cross_entropy/fused/f32/classes:50257/ \
                 cross_entropy/fused/bf16/classes:256/; do
    name=$(echo "$problem" | tr '/:' '-_' | sed 's/-$//')
    run_step "ncu $problem" 40 "ncu/$name.txt" ncu --kernel-name 'regex:(cross_entropy|softmax_forward)_kernel' \
      --launch-count 1 --section SpeedOfLight --section Occupancy --section LaunchStats \
      --section MemoryWorkloadAnalysis "$bench" --benchmark_filter="^cuda/actloss/$problem" \
      --benchmark_min_time=0.001s
    report "ncu $problem" $? "ncu/$name.txt" "ncu/$name.txt"
  done
fi

echo
echo "=== device check ($(elapsed)) ==="
checkpoint
cat "$LOGS/summary.txt"
! grep -q FAIL "$LOGS/summary.txt"
