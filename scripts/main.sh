#!/usr/bin/env bash
# The main job: build actloss (Release; with the CUDA backend when nvcc is present), then prove it
# on this machine: every op against the float64 reference, then a quick speed table against the
# copy bandwidth measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$ACTLOSS_JOBS"
tool=./build/default/tools/actloss
"$tool" info
"$tool" validate --quick
"$tool" bench --quick
