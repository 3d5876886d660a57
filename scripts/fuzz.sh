#!/usr/bin/env bash
# Runs every fuzz target (tests/fuzz) for SECONDS seconds each (default 60), starting from the
# committed corpus; new inputs go to build/fuzz/corpus/<target>, crashes to
# tests/fuzz/regressions/<target>/ (commit them with the fix: scripts/test.sh replays them).
# Prints each target's executions and coverage.
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 3600 cross_entropy
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(cross_entropy softmax activation bce mse linear_cross_entropy)

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$ACTLOSS_JOBS"
for target in "${targets[@]}"; do
  corpus=build/fuzz/corpus/$target
  regressions=tests/fuzz/regressions/$target
  mkdir -p "$corpus" "$regressions"
  cp -n tests/fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  log=build/fuzz/$target.log
  rc=0
  "build/fuzz/tests/fuzz/${target}_fuzz" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$regressions/" "$corpus" >"$log" 2>&1 || rc=$?
  summary=$(grep -E '^#[0-9]+.*DONE' "$log" | tail -1 || true)
  printf '%-22s %s\n' "$target" "${summary:-(no summary; see $log)}"
  if ((rc != 0)); then
    grep -E 'ERROR|runtime error|fuzz check failed' "$log" | head -5 >&2 || true
    echo "$target: finding written to $regressions/ (log: $log)" >&2
    exit "$rc"
  fi
done
