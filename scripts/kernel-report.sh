#!/usr/bin/env bash
# Usage: scripts/kernel-report.sh [build-dir]   (default build/nvcc-sm90)
# Prints a Markdown table of every sm_90 kernel of an nvcc build: registers, spills, stack,
# shared memory (ptxas's report, which the build keeps beside each object), and, from the SASS,
# the global loads by width and the bytes a thread has in flight before it first uses a load.
# Nothing is compiled: build first (cmake --build --preset nvcc-sm90).
# benchmarks/results/kernels-sm90.md is this script's output.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
build=${1:-build/nvcc-sm90}
arch=sm_90
objects=$build/CMakeFiles/actloss.dir

mapfile -t logs < <(find "$objects" -name '*.o.resource-usage.txt' 2>/dev/null | sort)
if ((${#logs[@]} == 0)); then
  echo "kernel-report: no ptxas reports (*.o.resource-usage.txt) under $objects;" \
    "build the library with nvcc first (cmake --preset nvcc-sm90 && cmake --build --preset nvcc-sm90)" >&2
  exit 1
fi

# cuobjdump: on PATH, beside the build's nvcc, or from the pip wheel of the CUDA binary utilities.
find_cuobjdump() {
  local nvcc candidate purelib
  if [[ -n ${CUOBJDUMP:-} ]]; then echo "$CUOBJDUMP"; return; fi
  if command -v cuobjdump >/dev/null 2>&1; then command -v cuobjdump; return; fi
  nvcc=$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
  if [[ -n $nvcc && -x $(dirname "$nvcc")/cuobjdump ]]; then echo "$(dirname "$nvcc")/cuobjdump"; return; fi
  purelib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
  for candidate in "$purelib"/nvidia/cu*/bin/cuobjdump "$purelib"/nvidia/cuda_cuobjdump/bin/cuobjdump; do
    if [[ -x $candidate ]]; then echo "$candidate"; return; fi
  done
}
cuobjdump=$(find_cuobjdump || true)
# A source file and the cuda/ headers it includes, directly or not.
cuda_includes() {
  local -A seen=()
  local queue=("$1") file
  while ((${#queue[@]})); do
    file=${queue[0]}
    queue=("${queue[@]:1}")
    [[ -f $file && -z ${seen[$file]:-} ]] || continue
    seen[$file]=1
    echo "$file"
    mapfile -t -O "${#queue[@]}" queue < <(sed -n 's/^#include "\(cuda\/[^"]*\)".*/\1/p' "$file")
  done
}
demangle() { if command -v c++filt >/dev/null 2>&1; then c++filt; else cat; fi; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

shorten() { awk -f scripts/kernel-names.awk cuda/*.cu cuda/*.cuh cuda/*.h -; }

ptx_tsv=$work/ptxas.tsv
awk -f scripts/ptxas-resources.awk "${logs[@]}" | awk -F'\t' -v arch="$arch" '$2 == arch' >"$ptx_tsv"
sass_tsv=$work/sass.tsv
: >"$sass_tsv"
if [[ -n $cuobjdump ]]; then
  for log in "${logs[@]}"; do
    object=${log%.resource-usage.txt}
    [[ -f $object ]] || continue
    "$cuobjdump" -sass "$object" 2>/dev/null | awk -f scripts/sass-loads.awk |
      awk -F'\t' -v arch="$arch" '$1 == arch' >>"$sass_tsv"
  done
fi

# --- header ---------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
kernels_commit=$(git log -1 --format=%h -- cuda sim/include 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- cuda sim/include 2>/dev/null; then
  kernels_commit="$kernels_commit, with uncommitted changes"
fi
nvcc_version=$(sed -n 's/^set(CMAKE_CUDA_COMPILER_VERSION "\(.*\)")$/\1/p' \
  "$build"/CMakeFiles/*/CMakeCUDACompiler.cmake 2>/dev/null | head -1)
echo "# Kernels of the $arch build"
echo
echo "- Commit: $commit (kernel sources as of $kernels_commit); generated $(date -u +%Y-%m-%d);"
echo "  nvcc ${nvcc_version:-unknown}."
if [[ -n $cuobjdump ]]; then
  echo "- SASS: $("$cuobjdump" --version | sed -n 's/^Cuda compilation tools, //p')."
fi
echo "- Regenerate: \`cmake --preset nvcc-sm90 && cmake --build --preset nvcc-sm90 &&"
echo "  scripts/kernel-report.sh > benchmarks/results/kernels-sm90.md\`."
echo "- Registers, spill stores/loads, stack frame and static shared memory are ptxas's figures"
echo "  (\`--resource-usage\`, kept by the build in \`<object>.resource-usage.txt\`). Dynamic shared"
echo "  memory is a launch argument: \"0\" where neither the source file nor the cuda/ headers it"
echo "  includes declare any, \"at launch\" otherwise."
if [[ -n $cuobjdump ]]; then
  echo "- Hot loop: the longest loop of the kernel's SASS that holds a global load, one with a"
  echo "  128-bit load first (a vector loop before the scalar loop for misaligned buffers and"
  echo "  tails); for these grid-stride kernels, the loop over rows or elements. Hot-loop LDG: its"
  echo "  global loads by width over every path, dtype and alignment fallbacks included, \"of\" the"
  echo "  kernel's. A kernel without a 128-bit load in any loop shows 0 in the first place."
  echo "- Burst: the most bytes of global loads a thread can issue in the hot loop before an"
  echo "  instruction reads a register one of them writes (loads = bytes, and their widths): the"
  echo "  bytes in flight per thread that Little's law asks of a memory-bound kernel. Both arms of"
  echo "  each branch are followed, a backward branch ends a burst, and registers are matched by"
  echo "  number; a proxy, not a schedule (scripts/sass-loads.awk)."
else
  echo "- SASS columns unavailable: no cuobjdump on PATH, beside nvcc, or in a pip wheel."
fi

# --- one table per source file ----------------------------------------------------------------
: >"$work/all.tsv"
for log in "${logs[@]}"; do
  relative=${log#"$objects"/}
  source_file=${relative%.o.resource-usage.txt}
  file=$(basename "$source_file")
  awk -F'\t' -v file="$file" '$1 == file' "$ptx_tsv" >"$work/file.tsv"
  [[ -s $work/file.tsv ]] || continue
  dynamic=0
  mapfile -t sources < <(cuda_includes "$source_file")
  if grep -qE 'SIMCUDA_DYNAMIC_SHARED|extern +__shared__' "${sources[@]}"; then
    dynamic="at launch"
  fi
  cut -f4 "$work/file.tsv" | demangle | shorten >"$work/short.txt"
  paste "$work/file.tsv" "$work/short.txt" |
    awk -F'\t' -v OFS='\t' -v sass="$sass_tsv" -v have_sass="${cuobjdump:+1}" -v dynamic="$dynamic" '
      BEGIN {
        while ((getline line < sass) > 0) {
          split(line, f, "\t")
          counts[f[2]] = f[4] " / " f[5] " / " f[6] " of " f[7] (f[3] ? "" : ", no loop")
          burst[f[2]] = (f[8] > 0) ? f[8] " = " f[9] " B (" f[10] ")" : "none"
        }
      }
      {
        label = ($3 == "entry") ? $11 : $11 " (device function)"
        regs = $5; spills = $8 " / " $9; stack = $7; smem = $10
        dyn = ($3 == "entry") ? dynamic : "-"
        if (!have_sass) { c = "n/a"; b = "n/a" }
        else if ($4 in counts) { c = counts[$4]; b = burst[$4] }
        else { c = "-"; b = "-" }
        print label, regs, spills, stack, smem, dyn, c, b
      }' | sort -t$'\t' -k1,1V >"$work/rows.tsv"
  cat "$work/rows.tsv" >>"$work/all.tsv"
  echo
  echo "## $source_file"
  templates=$(cut -f1 "$work/rows.tsv" | sed -n 's/^\([A-Za-z_0-9]*\)<.*/\1/p' | sort -u)
  for kernel in $templates; do
    signature=$(grep -B4 -E "\b$kernel\(" "$source_file" | sed -n 's/^template <\(.*\)>$/\1/p' | tail -1)
    if [[ -n $signature ]]; then echo "- \`$kernel<$signature>\`"; fi
  done
  echo
  echo "| Kernel | Regs | Spill st / ld (B) | Stack (B) | Static smem (B) | Dynamic smem | Hot-loop LDG 128 / 64 / ≤32 | Burst: loads = bytes (widths) |"
  echo "|---|--:|--:|--:|--:|--:|--:|---|"
  awk -F'\t' '{
    spill = ($3 == "0 / 0") ? $3 : "**" $3 "**"
    printf "| `%s` | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, spill, $4, $5, $6, $7, $8
  }' "$work/rows.tsv"
done >"$work/tables.md"

# --- summary, then the tables -------------------------------------------------------------------
echo
echo "## Summary"
echo
awk -F'\t' '
  {
    base = $1; sub(/[<( ].*/, "", base)
    if (!(base in lo)) { order[++n] = base; lo[base] = hi[base] = $2 + 0 }
    if ($2 + 0 < lo[base]) lo[base] = $2 + 0
    if ($2 + 0 > hi[base]) hi[base] = $2 + 0
    kernels[base]++
    if ($3 != "0 / 0" && $3 != "- / -") spills[base] = spills[base] "\n  - `" $1 "`: " $3 " B"
    split($7, w, " / ")
    if ($7 != "n/a" && $7 != "-" && w[1] + 0 == 0) plain[base] = plain[base] ", `" $1 "`"
  }
  END {
    print "| Kernel | Instances | Registers | Instances that spill | No 128-bit load in the hot loop |"
    print "|---|--:|--:|--:|---|"
    for (i = 1; i <= n; i++) {
      b = order[i]
      count = gsub(/\n/, "&", spills[b])
      no128 = plain[b]; sub(/^, /, "", no128)
      printf "| `%s` | %d | %s | %s | %s |\n", b, kernels[b], (lo[b] == hi[b] ? lo[b] : lo[b] "-" hi[b]),
             count, (no128 == "" ? "-" : no128)
    }
    for (i = 1; i <= n; i++) {
      b = order[i]
      if (spills[b] == "") continue
      if (!header++) print "\nSpilling kernels:"
      printf "- `%s`:%s\n", b, spills[b]
    }
  }' "$work/all.tsv"
cat "$work/tables.md"
