#!/usr/bin/env bash
# Builds the nvcc sm_90 configuration on this machine (no GPU needed) and gathers what the GPU
# machine needs into build/device-bundle: the test and benchmark executables (statically linked
# cudart and GoogleTest) and any shared library they need that a bare GPU machine may lack.
# The folder is also packed as build/device-bundle.tar.gz (the binaries carry device code, so
# they compress well) to travel to the GPU machine; there: scripts/device-check.sh that archive.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cmake --preset nvcc-sm90 >/dev/null
cmake --build --preset nvcc-sm90 -j "$ACTLOSS_JOBS"
cmake --build --preset nvcc-sm90 -j "$ACTLOSS_JOBS" --target large_tests  # not in `all`
bundle=build/device-bundle
rm -rf "$bundle" && mkdir -p "$bundle/lib"
find build/nvcc-sm90 -type f -perm -u+x \( -name '*_tests' -o -name '*_bench*' -o -name actloss -o -name train_mlp \) \
  -not -path '*/CMakeFiles/*' -exec cp {} "$bundle/" \;
for exe in "$bundle"/*; do
  [[ -f $exe ]] || continue
  ldd "$exe" | awk '/=> \// {print $3}' | grep -E 'libbenchmark|libgtest|libgmock|libhwy|libdnnl|libOpenCL' |
    xargs -r -I{} cp -L {} "$bundle/lib/" || true
done
git rev-parse HEAD >"$bundle/COMMIT" 2>/dev/null || echo unknown >"$bundle/COMMIT"
tar -C build -czf build/device-bundle.tar.gz device-bundle
ls -l "$bundle" build/device-bundle.tar.gz
