// What every kernel file shares: the simulator/launch header (first, before any CUDA header),
// element loads and stores in float, warp and block reductions, error plumbing, and the cached
// device properties. Device helpers here are the kernels' own; the CPU reference never uses them.
#pragma once

// Must precede every CUDA header: in the simulator build it defines the CUDA keywords that
// crt/host_defines.h would otherwise define away.
#include <simcuda/simcuda.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>
#include <string>

#include "host/backend.h"

namespace actloss::cuda {

// Turns a CUDA error into a Status that names the failing expression.
Status cuda_status(cudaError_t error, const char* expression);

#define ACTLOSS_CUDA_TRY(expr)                                                   \
  do {                                                                           \
    const cudaError_t actloss_cuda_try_error_ = (expr);                          \
    if (actloss_cuda_try_error_ != cudaSuccess)                                  \
      return ::actloss::cuda::cuda_status(actloss_cuda_try_error_, #expr);       \
  } while (0)

// Properties read once per device and cached: the launchers size grids and blocks from them on
// every call, and cudaGetDeviceProperties is far too slow for a hot path.
struct DeviceInfo {
  int device = 0;
  int sm_count = 0;
  int max_threads_per_sm = 0;
  int max_shared_per_block_optin = 0;  // bytes, with cudaFuncAttributeMaxDynamicSharedMemorySize
  int max_shared_per_sm = 0;
  int compute_capability = 0;  // major * 10 + minor
  bool cluster_launch = false;  // thread-block clusters, with kernels built for them (sm_90 on)
};

// The current device's cached properties; fails only if the runtime cannot be queried.
Status current_device_info(const DeviceInfo** info);

// Blocks of `kernel` that one SM of `device` (the current one) holds at `block` threads and
// `shared_bytes` of dynamic shared memory, by the occupancy API (registers, shared memory,
// threads), asked once per kernel and geometry by each host thread. Raises the kernel's dynamic
// shared memory limit to `shared_bytes` where that exceeds the default, as its launch would.
cudaError_t resident_blocks(const DeviceInfo& device, const void* kernel, int block,
                            std::size_t shared_bytes, int* blocks);

// The record that kernels write data errors into: the caller's, or one per device and stream
// owned by actloss (allocated on the stream's first use).
Status device_error_record(const Exec& exec, DeviceError** record);

// ---------------------------------------------------------------------------------------------
// Element access. Math is always float; f16/bf16 are converted at load and store.

template <class T>
__device__ __forceinline__ float to_float(T value);
template <>
__device__ __forceinline__ float to_float<float>(float value) { return value; }
template <>
__device__ __forceinline__ float to_float<__half>(__half value) { return __half2float(value); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 value) {
  return __bfloat162float(value);
}

template <class T>
__device__ __forceinline__ T from_float(float value);
template <>
__device__ __forceinline__ float from_float<float>(float value) { return value; }
template <>
__device__ __forceinline__ __half from_float<__half>(float value) { return __float2half_rn(value); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float value) {
  return __float2bfloat16_rn(value);
}

// Loads element `index` of a secondary input whose dtype is only known at run time (targets
// probabilities, weights): these are read once per element, so a uniform switch costs nothing
// next to the memory access.
__device__ __forceinline__ float load_dynamic(const void* base, DType dtype, std::int64_t index) {
  switch (dtype) {
    case DType::f16: return __half2float(static_cast<const __half*>(base)[index]);
    case DType::bf16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[index]);
    default: return static_cast<const float*>(base)[index];
  }
}

// ---------------------------------------------------------------------------------------------
// Reductions. Fixed shuffle order, so results are bitwise reproducible run to run.

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpSize = 32;

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(kFullMask, value, offset);
  return value;
}

__device__ __forceinline__ double warp_sum(double value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(kFullMask, value, offset);
  return value;
}

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value = fmaxf(value, __shfl_xor_sync(kFullMask, value, offset));
  return value;
}

// Records the first data error of a launch; later ones are dropped. The CAS decides which
// thread owns the record, so the plain writes after it do not race.
__device__ __forceinline__ void record_device_error(DeviceError* record, StatusCode code,
                                                    detail::DeviceErrorArgument argument,
                                                    std::int64_t index, std::int64_t value) {
  if (atomicCAS(&record->code, 0, static_cast<int>(code)) == 0) {
    record->argument = static_cast<std::int32_t>(argument);
    record->index = index;
    record->value = value;
  }
}

// CUDA caps gridDim.y/z at 65535 and gridDim.x at 2^31-1; grid-stride loops take the rest.
inline unsigned grid_size_for(std::int64_t work_items, int per_block, std::int64_t cap) {
  std::int64_t blocks = (work_items + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned>(blocks);
}

}  // namespace actloss::cuda
