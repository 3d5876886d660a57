// Warp-collective self-test kernels. Valid CUDA: the same file builds with
// nvcc.
#include <simcuda/simcuda.h>

#include <cuda_fp16.h>

#include "sim_test_kernels.h"

namespace simtest {
namespace {

constexpr unsigned kFull = 0xffffffffu;

__global__ void shuffle_kernel(int kind, int arg, int width, int live, int* out) {
  const int tid = static_cast<int>(threadIdx.x);
  if (tid >= live) return;
  const int v = tid * 10 + 1;
  int r = 0;
  switch (kind) {
    case 0: r = __shfl_sync(kFull, v, arg, width); break;
    case 1: r = __shfl_up_sync(kFull, v, static_cast<unsigned>(arg), width); break;
    case 2: r = __shfl_down_sync(kFull, v, static_cast<unsigned>(arg), width); break;
    default: r = __shfl_xor_sync(kFull, v, arg, width); break;
  }
  out[tid] = r;
}

__global__ void shuffle_types_kernel(float* out_f, double* out_d, float2* out_h2,
                                     long long* out_ll) {
  const int tid = static_cast<int>(threadIdx.x);
  const float f = __shfl_xor_sync(kFull, static_cast<float>(tid) + 0.5f, 1);
  const double d = __shfl_sync(kFull, static_cast<double>(tid) * 1e300, (tid + 1) % 32);
  const __half2 h = __shfl_sync(kFull, __floats2half2_rn(static_cast<float>(tid), -static_cast<float>(tid)), 0);
  const long long ll = __shfl_xor_sync(kFull, static_cast<long long>(tid) << 40, 31);
  out_f[tid] = f;
  out_d[tid] = d;
  out_h2[tid] = __half22float2(h);
  out_ll[tid] = ll;
}

__global__ void votes_kernel(int4* out) {
  const int tid = static_cast<int>(threadIdx.x);
  const int pred = tid % 3 == 0;
  const unsigned b = __ballot_sync(kFull, pred);
  const int any = __any_sync(kFull, pred);
  const int all = __all_sync(kFull, pred);
  const int all_true = __all_sync(kFull, tid >= 0);
  out[tid] = make_int4(static_cast<int>(b), any, all, all_true);
}

__global__ void syncwarp_kernel(int* out) {
  __shared__ int s[1024];
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid % 32;
  const int base = tid - lane;
  const int width = min(32, static_cast<int>(blockDim.x) - base);
  s[tid] = tid * 3;
  __syncwarp();
  out[tid] = s[base + (lane + 1) % width];
}

}  // namespace

cudaError_t shuffle(Shfl kind, int arg, int width, int threads, int live, int* out) {
  return simcuda::launch(shuffle_kernel, dim3(1), dim3(threads), 0, nullptr,
                         static_cast<int>(kind), arg, width, live, out);
}

cudaError_t shuffle_types(float* out_f, double* out_d, float2* out_h2, long long* out_ll) {
  return simcuda::launch(shuffle_types_kernel, dim3(1), dim3(32), 0, nullptr, out_f, out_d,
                         out_h2, out_ll);
}

cudaError_t votes(int threads, int4* out) {
  return simcuda::launch(votes_kernel, dim3(1), dim3(threads), 0, nullptr, out);
}

cudaError_t syncwarp_exchange(int threads, int* out) {
  return simcuda::launch(syncwarp_kernel, dim3(1), dim3(threads), 0, nullptr, out);
}

}  // namespace simtest
