// The finishing step of every deterministic sum/mean (see cuda/reduce.cuh).
#include "cuda/reduce.cuh"

namespace actloss::cuda {
namespace {

constexpr int kFinishThreads = 256;

__global__ void __launch_bounds__(kFinishThreads)
    finish_partial_sums_kernel(const double* numerators, const double* denominators, int count,
                               double constant_denominator, float* out) {
  __shared__ double warp_partials[kFinishThreads / kWarpSize];
  double numerator = 0.0, denominator = 0.0;
  for (int i = static_cast<int>(threadIdx.x); i < count; i += kFinishThreads) {
    numerator += numerators[i];
    if (denominators != nullptr) denominator += denominators[i];
  }
  numerator = block_sum(numerator, warp_partials);
  if (denominators != nullptr)
    denominator = block_sum(denominator, warp_partials);
  else
    denominator = constant_denominator;
  if (threadIdx.x == 0) {
    const double value = denominator == 0.0 ? 0.0 : numerator / denominator;
    out[0] = static_cast<float>(numerator != numerator ? numerator : value);
  }
}

}  // namespace

Status finish_partial_sums(const double* numerators, const double* denominators, int count,
                           double constant_denominator, float* out, cudaStream_t stream) {
  ACTLOSS_CUDA_TRY(simcuda::launch(finish_partial_sums_kernel, dim3(1), dim3(kFinishThreads), 0,
                                   stream, numerators, denominators, count, constant_denominator,
                                   out));
  return {};
}

}  // namespace actloss::cuda
