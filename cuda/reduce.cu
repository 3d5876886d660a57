// The reduced losses' other finish (see cuda/reduce.cuh): the partials added by a second kernel,
// the way last measured on a GPU, kept selectable until a card compares it with the in-kernel
// finish in one run. Library code never selects it.
#include "cuda/reduce.cuh"

#include <atomic>

namespace actloss::cuda {
namespace {

std::atomic<bool> finish_in_kernel{true};

constexpr int kFinishThreads = 256;

__global__ void __launch_bounds__(kFinishThreads)
    finish_partial_sums_kernel(const double* numerators, const double* denominators, int count,
                               float* out) {
  __shared__ double warp_partials[kFinishThreads / kWarpSize];
  double numerator = 0.0, denominator = 0.0;
  for (int i = static_cast<int>(threadIdx.x); i < count; i += kFinishThreads) {
    numerator += numerators[i];
    if (denominators != nullptr) denominator += denominators[i];
  }
  numerator = block_sum(numerator, warp_partials);
  // Without a denominator array the blocks divided their partials already.
  denominator = denominators != nullptr ? block_sum(denominator, warp_partials) : 1.0;
  if (threadIdx.x == 0) {
    const double value = denominator == 0.0 ? 0.0 : numerator / denominator;
    out[0] = static_cast<float>(numerator != numerator ? numerator : value);
  }
}

}  // namespace

bool reduced_loss_in_kernel() { return finish_in_kernel.load(std::memory_order_relaxed); }

Status finish_in_second_kernel(const ReducedLoss& reduced, unsigned blocks, cudaStream_t stream) {
  if (reduced.ticket != nullptr) return {};  // the kernel's last block finished it
  ACTLOSS_CUDA_TRY(simcuda::launch(finish_partial_sums_kernel, dim3(1), dim3(kFinishThreads), 0,
                                   stream, static_cast<const double*>(reduced.numerators),
                                   static_cast<const double*>(reduced.denominators),
                                   static_cast<int>(blocks), reduced.out));
  return {};
}

}  // namespace actloss::cuda

namespace actloss::detail {

void cuda_set_reduced_loss_in_kernel_for_testing(bool in_kernel) {
  cuda::finish_in_kernel.store(in_kernel, std::memory_order_relaxed);
}

}  // namespace actloss::detail
