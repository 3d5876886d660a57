#!/usr/bin/env bash
# Usage: check_no_spill.sh OBJECT...   (an argument may be a CMake list: a;b)
# Reads ptxas's resource report that the nvcc build keeps beside each object
# (<object>.resource-usage.txt, see cmake/resource-usage-launcher.sh) and fails when any kernel or
# device function in it spills registers to local memory, naming each with its bytes. A spill is
# local-memory traffic in the loop that should stream at the copy ceiling. A missing report, or
# one that names no kernel, fails too: a build that stopped keeping them must not pass unseen.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
name=$(basename "$0" .sh)
demangle() { if command -v c++filt >/dev/null 2>&1; then c++filt; else cat; fi; }

objects=()
for argument in "$@"; do
  IFS=';' read -ra list <<<"$argument"
  for object in "${list[@]}"; do [[ -n $object ]] && objects+=("$object"); done
done
if ((${#objects[@]} == 0)); then
  echo "$name: no objects given (the nvcc build's row-kernel objects were not found)" >&2
  exit 1
fi
logs=()
missing=0
for object in "${objects[@]}"; do
  log=$object.resource-usage.txt
  if [[ ! -s $log ]]; then
    echo "$name: no ptxas report $log; rebuild the library with nvcc" >&2
    missing=1
  elif ! grep -q "^ptxas info *: Compiling entry function" "$log"; then
    echo "$name: $log names no kernel" >&2
    missing=1
  else
    logs+=("$log")
  fi
done
((missing == 0)) || exit 1

rows=$(awk -f "$root/scripts/ptxas-resources.awk" "${logs[@]}")
kernels=$(awk -F'\t' '$3 == "entry"' <<<"$rows" | wc -l)
spilling=$(awk -F'\t' '($8 != "-" && $8 > 0) || ($9 != "-" && $9 > 0)' <<<"$rows")
if [[ -z $spilling ]]; then
  echo "$name: $kernels kernels, no spills"
  exit 0
fi
names=$(cut -f4 <<<"$spilling" | demangle |
  awk -f "$root/scripts/kernel-names.awk" "$root"/cuda/*.cu "$root"/cuda/*.cuh "$root"/cuda/*.h -)
echo "$name: $(wc -l <<<"$spilling") of $kernels kernels spill:" >&2
paste <(cut -f1-3,8,9 <<<"$spilling") <(echo "$names") |
  awk -F'\t' '{ printf "  %s %s %s%s: %s B spill stores, %s B spill loads\n", $1, $2, $6,
                       ($3 == "entry" ? "" : " (device function)"), $4, $5 }' | sort -V >&2
echo "(registers and stack of every kernel: scripts/kernel-report.sh)" >&2
exit 1
