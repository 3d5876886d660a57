// Deterministic reduction of per-block partial sums to one float.
//
// Sum and mean must be bitwise identical across runs and graph replays, so no float atomics touch
// a result: each block of an op's main kernel writes its partial sums (in double, so that summing
// millions of rows does not lose the 2^-21 relative accuracy we promise) to stream-ordered
// scratch memory, and one finishing block adds them in a fixed order. The grid of the main kernel
// depends only on the problem shape and the device, never on timing, so the partials are the same
// every run.
#pragma once

#include "cuda/common.cuh"

namespace actloss::cuda {

// The scratch memory of one call: the caller's workspace when one is given (Workspace, types.h),
// else stream-ordered memory, allocated and freed on the op's stream (no host synchronisation;
// under graph capture the allocation becomes a memory node). Acquired before the call launches
// anything, so a workspace that is too small fails with nothing written.
class CallScratch {
 public:
  CallScratch() = default;
  CallScratch(const CallScratch&) = delete;
  CallScratch& operator=(const CallScratch&) = delete;
  ~CallScratch() {
    if (owned_ != nullptr) (void)cudaFreeAsync(owned_, stream_);
  }

  Status acquire(std::size_t bytes, const Workspace& workspace, cudaStream_t stream,
                 const char* size_function) {
    if (workspace.data != nullptr) {
      if (workspace.bytes < bytes) {
        return Status(StatusCode::invalid_argument, "exec.workspace",
                      "exec.workspace: " + std::to_string(workspace.bytes) +
                          " bytes, this call needs " + std::to_string(bytes) + " (" +
                          size_function + ")");
      }
      data_ = workspace.data;
      return {};
    }
    stream_ = stream;
    ACTLOSS_CUDA_TRY(cudaMallocAsync(&owned_, bytes == 0 ? 1 : bytes, stream));
    data_ = owned_;
    return {};
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  void* owned_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

// Sum over the whole block in a fixed order; every thread gets the result. `warp_partials` is
// shared memory of at least blockDim.x / 32 doubles; the caller may reuse it after this returns
// only behind another __syncthreads.
__device__ __forceinline__ double block_sum(double value, double* warp_partials) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int warps = static_cast<int>(blockDim.x) / kWarpSize;
  value = warp_sum(value);
  if (lane == 0) warp_partials[warp] = value;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < warps; ++w) total += warp_partials[w];
  __syncthreads();
  return total;
}

// out[0] = sum(numerators) / denominator, where the denominator is sum(denominators) when
// given, else constant_denominator; the sums run over `count` partials in a fixed order. A zero
// denominator (an empty or all-ignored batch under mean) gives 0, never NaN; a NaN numerator
// stays NaN. Defined in cuda/reduce.cu.
Status finish_partial_sums(const double* numerators, const double* denominators, int count,
                           double constant_denominator, float* out, cudaStream_t stream);

}  // namespace actloss::cuda
