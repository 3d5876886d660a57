#!/usr/bin/env bash
# CUDA compiler launcher for the library's nvcc builds: runs the compile command it is given and
# keeps ptxas's resource report (registers, spills, stack, shared memory per kernel) in
# <object>.resource-usage.txt beside the object, so the kernel report and the spill test read
# what the real build produced instead of compiling the heavy sources a second time.
# The build log gets everything except that report; a failed compile passes its whole output
# through and fails with the compiler's exit status.
set -uo pipefail

object=
args=("$@")
for ((i = 0; i < ${#args[@]} - 1; i++)); do
  [[ ${args[i]} == -o ]] && object=${args[i + 1]}
done
[[ -n $object ]] || exec "$@"

log=$object.resource-usage.txt
mkdir -p "$(dirname "$log")"
captured=$(mktemp "$log.XXXXXX") || exit 1
trap 'rm -f "$captured"' EXIT

rc=0
"$@" >"$captured" 2>&1 || rc=$?
if ((rc != 0)); then
  # A stale report of an earlier successful compile must not stand in for this one.
  rm -f "$log"
  cat "$captured" >&2
  exit "$rc"
fi
# ptxas's report: "ptxas info    : ..." lines and the indented stack/spill line under each
# "Function properties for"; warnings and anything else still reach the log.
grep -v -E '^ptxas info +: |^ +[0-9]+ bytes stack frame, ' "$captured" >&2
chmod 644 "$captured"
mv -f "$captured" "$log"
exit 0
