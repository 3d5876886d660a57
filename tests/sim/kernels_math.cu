// Intrinsics and half/bfloat16 conversions. Valid CUDA: the same file
// builds with nvcc. Results are compared with tolerances: simulated numerics
// are not the GPU's.
#include <simcuda/simcuda.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include "sim_test_kernels.h"

namespace simtest {
namespace {

__device__ __forceinline__ float softplus(float x) {
  return fmaxf(x, 0.0f) + log1pf(__expf(-fabsf(x)));
}

__global__ void math_kernel(const float* __restrict__ in, float* __restrict__ out, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  const float x = in[i];
  float* o = out + static_cast<std::size_t>(i) * kMathColumns;
  o[0] = __expf(x);
  o[1] = __logf(fabsf(x) + 1.0f);
  o[2] = __fdividef(x, 3.0f);
  o[3] = rsqrtf(fabsf(x) + 1.0f);
  o[4] = __saturatef(x);
  o[5] = exp2f(x) * log2f(fabsf(x) + 2.0f);
  o[6] = tanhf(x) + erff(x) + erfcf(x);
  o[7] = fmaf(x, 2.0f, 1.0f);
  o[8] = fminf(x, 0.5f) + fmaxf(x, -0.5f);
  o[9] = softplus(x);
  o[10] = __half2float(__float2half_rn(x));
  o[11] = __bfloat162float(__float2bfloat16_rn(x));
  const __half h = __float2half_rn(x);
  o[12] = __half2float(__hfma(h, h, __float2half_rn(1.0f)));
  o[13] = __half2float(hexp(__float2half_rn(x * 0.25f)));
  const __nv_bfloat16 b = __float2bfloat16_rn(x);
  o[14] = __bfloat162float(__hfma(b, b, __float2bfloat16_rn(1.0f)));
  const __half2 h2 = __floats2half2_rn(x, -x);
  const float2 back = __half22float2(__hmul2(h2, h2));
  o[15] = back.x + back.y;
  o[16] = __int_as_float(__float_as_int(x)) + __uint_as_float(__float_as_uint(1.0f));
  o[17] = static_cast<float>(__popc(static_cast<unsigned>(i)) + __ffs(i) + __clz(i + 1));
  o[18] = static_cast<float>(__brev(static_cast<unsigned>(i)) >> 24);
  o[19] = isnan(x) ? 1.0f : (isinf(x) ? 2.0f : 0.0f);
  o[20] = x > 1e30f ? CUDART_INF_F : x;
  o[21] = static_cast<float>(min(i, 3) + max(i, 3));
  o[22] = log1pf(x * x) + expf(-x * x) + logf(2.0f);
  o[23] = static_cast<float>(__float2int_rn(x * 10.0f));
}

}  // namespace

cudaError_t math_table(const float* in, float* out, int n) {
  return simcuda::launch(math_kernel, dim3((n + 63) / 64), dim3(64), 0, nullptr, in, out, n);
}

}  // namespace simtest
