# Sourced by the scripts: the CUDA toolkit's usual home on PATH, and the job count.
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
actloss_have_nvcc() { command -v nvcc >/dev/null 2>&1; }
export ACTLOSS_JOBS=${ACTLOSS_JOBS:-$(nproc)}
