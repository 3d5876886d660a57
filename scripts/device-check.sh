#!/usr/bin/env bash
# The one prepared check for a machine with a GPU. Runs every test binary on the GPU,
# compute-sanitizer memcheck and racecheck over a representative subset, and the benchmarks when
# they exist; logs go under $OUT (the current directory when unset); a short table prints last.
# Designed to finish within about 8 minutes so a rerun fits a 15-minute window.
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
LOGS="$OUT/logs"
mkdir -p "$LOGS"
bundle=${1:-build/device-bundle.tar.gz}
if [[ $bundle == *.tar.gz && -f $bundle ]]; then
  unpacked=$(mktemp -d)
  tar -C "$unpacked" -xzf "$bundle"
  bundle=$unpacked/device-bundle
fi
start=$(date +%s)
declare -a summary

record() { summary+=("$(printf '%-34s %-8s %s' "$1" "$2" "$3")"); }
elapsed() { echo "$(($(date +%s) - start))s"; }

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

find_exe() { find "$bundle" -type f -perm -u+x -name "$1" -not -path '*/CMakeFiles/*' | head -n 1; }

for name in cuda_tests api_tests reference_tests; do
  exe=$(find_exe "$name")
  [[ -n $exe ]] || { record "$name" missing ""; continue; }
  if timeout 240 "$exe" --gtest_brief=1 --gtest_output="xml:$LOGS/$name.xml" >"$LOGS/$name.log" 2>&1; then
    passed=$(grep -Eo '\[  PASSED  \] [0-9]+' "$LOGS/$name.log" | grep -Eo '[0-9]+$')
    skipped=$(grep -Eo '\[  SKIPPED \] [0-9]+ test' "$LOGS/$name.log" | grep -Eo '[0-9]+')
    record "$name" pass "${passed:-0} passed, ${skipped:-0} skipped, $(elapsed)"
  else
    record "$name" FAIL "see $name.log ($(grep -c FAILED "$LOGS/$name.log") FAILED lines)"
  fi
done

tool=$(find_exe actloss)
if [[ -n $tool ]]; then
  "$tool" info >"$LOGS/info.txt" 2>&1
  if timeout 120 "$tool" validate --quick --device cuda --failures-only >"$LOGS/validate.log" 2>&1; then
    record "actloss validate --device cuda" pass "$(tail -n 1 "$LOGS/validate.log"), $(elapsed)"
  else
    record "actloss validate --device cuda" FAIL "see validate.log"
  fi
fi

# compute-sanitizer is slow: a subset that still crosses every kernel family and dispatch path.
cuda_tests=$(find_exe cuda_tests)
subset='*Path*:*Strid*:*Unaligned*:*InPlace*:*OutOfRange*:*Mask*:*Reduction*'
if command -v compute-sanitizer >/dev/null && [[ -n $cuda_tests ]]; then
  for tool in memcheck racecheck; do
    if timeout 180 compute-sanitizer --tool "$tool" --error-exitcode 99 \
         "$cuda_tests" --gtest_brief=1 --gtest_filter="$subset" >"$LOGS/sanitizer-$tool.log" 2>&1; then
      record "compute-sanitizer $tool" pass "$(tail -n 1 "$LOGS/sanitizer-$tool.log"), $(elapsed)"
    else
      record "compute-sanitizer $tool" FAIL "see sanitizer-$tool.log"
    fi
  done
else
  record compute-sanitizer missing ""
fi

bench=$(find_exe actloss_bench)
if [[ -n $bench ]]; then
  if timeout 240 "$bench" --benchmark_out="$LOGS/bench.json" --benchmark_out_format=json \
       --benchmark_min_time=0.05s >"$LOGS/bench.log" 2>&1; then
    record benchmarks ok "bench.json, $(elapsed)"
  else
    record benchmarks FAIL "see bench.log"
  fi
  if [[ -f benchmarks/torch_compare.py ]] && python3 -c 'import torch' 2>/dev/null; then
    timeout 120 python3 benchmarks/torch_compare.py --out "$LOGS/torch.json" >"$LOGS/torch.log" 2>&1 &&
      record torch_compare ok "torch.json" || record torch_compare FAIL "see torch.log"
  fi
  python3 benchmarks/plot.py "$LOGS/bench.json" $([[ -f $LOGS/torch.json ]] && echo "$LOGS/torch.json") \
    --out-dir "$LOGS/charts" --markdown "$LOGS/results.md" >"$LOGS/plot.log" 2>&1 ||
    record plot FAIL "see plot.log"
else
  record benchmarks missing "(no actloss_bench in the bundle)"
fi

echo
echo "=== device check ($(elapsed)) ==="
printf '%s\n' "${summary[@]}" | tee "$LOGS/summary.txt"
for keep in summary.txt device.txt bench.json torch.json results.md; do
  [[ -f $LOGS/$keep ]] && cp "$LOGS/$keep" "$OUT/"
done
tar -C "$OUT" -czf "$OUT/device-check-logs.tar.gz" logs && rm -rf "$LOGS"
! grep -q FAIL "$OUT/summary.txt"
