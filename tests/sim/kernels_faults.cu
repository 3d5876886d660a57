// Planted bugs the simulator must report. Valid CUDA (the same file builds
// with nvcc), but never run these on a GPU: most of them hang or read
// garbage there, which is the point of catching them here.
#include <simcuda/simcuda.h>

#include "sim_test_kernels.h"

namespace simtest {
namespace {

constexpr unsigned kFull = 0xffffffffu;

__global__ void divergent_deadlock_kernel(int* out) {
  const unsigned lane = threadIdx.x % 32;
  int v = static_cast<int>(threadIdx.x);
  if (lane < 16) v = __shfl_xor_sync(kFull, v, 1);
  __syncthreads();
  out[threadIdx.x] = v;
}

__global__ void exited_lane_kernel(int* out) {
  const int tid = static_cast<int>(threadIdx.x);
  if (tid >= 16) return;
  out[tid] = __shfl_xor_sync(kFull, tid, 16);
}

__global__ void missing_lane_kernel(int* out) {
  const int tid = static_cast<int>(threadIdx.x);
  out[tid] = __shfl_down_sync(kFull, tid, 16);
}

__global__ void subwarp_mask_kernel(int* out) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  out[threadIdx.x] = __shfl_xor_sync(mask, static_cast<int>(lane), 1);
}

__global__ void mask_without_self_kernel(int* out) {
  out[threadIdx.x] = static_cast<int>(__ballot_sync(0xfffffffeu, 1));
}

__global__ void spin_on_flag_kernel(int* out) {
  __shared__ int flag;
  if (threadIdx.x == 0) {
    flag = 0;
    // Waits for a write that thread 1 only makes after a barrier that
    // thread 0 never reaches: a hang on any hardware.
    while (atomicAdd(&flag, 0) == 0) {
    }
    out[0] = 1;
  } else {
    __syncthreads();
    atomicExch(&flag, 1);
  }
}

__global__ void out_of_bounds_kernel(const float* in, float* out, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  // Planted off-by-one: i == n reads one element past the allocation.
  if (i <= n) out[i % n] = in[i];
}

__global__ void misaligned_vector_kernel(int kind, unsigned char* buffer) {
  const unsigned t = threadIdx.x;
  // Planted misalignment: thread 1's address is 4 bytes past a 16-byte boundary.
  unsigned char* p = buffer + 16 * t + (t == 1 ? 4 : 0);
  uint4* sink = reinterpret_cast<uint4*>(buffer + 64) + t;
  const uint4 value = make_uint4(t, t + 1, t + 2, t + 3);
  switch (kind) {
    case 0:
      simcuda::store_vector(sink, simcuda::load_vector(reinterpret_cast<const uint4*>(p)));
      break;
    case 1:
      simcuda::store_vector(reinterpret_cast<uint4*>(p), value);
      break;
    case 2:
      simcuda::store_vector_streaming(reinterpret_cast<uint4*>(p), value);
      break;
    default: {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
      simcuda::store_vector(sink, make_uint4(v.x, v.y, 0, 0));
      break;
    }
  }
}

}  // namespace

cudaError_t divergent_deadlock(int* out) {
  return simcuda::launch(divergent_deadlock_kernel, dim3(1), dim3(64), 0, nullptr, out);
}

cudaError_t shuffle_reads_exited_lane(int* out) {
  return simcuda::launch(exited_lane_kernel, dim3(1), dim3(32), 0, nullptr, out);
}

cudaError_t shuffle_reads_missing_lane(int* out) {
  return simcuda::launch(missing_lane_kernel, dim3(1), dim3(48), 0, nullptr, out);
}

cudaError_t subwarp_masks(int* out) {
  return simcuda::launch(subwarp_mask_kernel, dim3(1), dim3(32), 0, nullptr, out);
}

cudaError_t mask_without_self(int* out) {
  return simcuda::launch(mask_without_self_kernel, dim3(1), dim3(32), 0, nullptr, out);
}

cudaError_t spin_on_flag(int* out) {
  return simcuda::launch(spin_on_flag_kernel, dim3(1), dim3(2), 0, nullptr, out);
}

cudaError_t out_of_bounds_read(const float* in, float* out, int n) {
  return simcuda::launch(out_of_bounds_kernel, dim3((n + 1 + 63) / 64), dim3(64), 0, nullptr, in,
                         out, n);
}

cudaError_t misaligned_vector_access(VectorFault kind, unsigned char* buffer) {
  return simcuda::launch(misaligned_vector_kernel, dim3(1), dim3(2), 0, nullptr,
                         static_cast<int>(kind), buffer);
}

}  // namespace simtest
