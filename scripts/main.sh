#!/usr/bin/env bash
# The main job: build actloss (Release; with the CUDA backend when nvcc is present) and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$ACTLOSS_JOBS"
./build/default/examples/quickstart/quickstart
