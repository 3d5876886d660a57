// Vector memory access self-test kernels (simcuda::load_vector & co., the
// cache-hint built-ins). Valid CUDA: the same file builds with nvcc.
#include <simcuda/simcuda.h>

#include "sim_test_kernels.h"

namespace simtest {
namespace {

constexpr int kMaxVectorThreads = 64;

__global__ void vector_round_trip_kernel(VectorBuffers b) {
  __shared__ uint4 tile4[kMaxVectorThreads];
  __shared__ float2 tile2[kMaxVectorThreads];
  const int i = static_cast<int>(threadIdx.x);
  const int j = (i + 1) % static_cast<int>(blockDim.x);

  const uint4 v4 = simcuda::load_vector(b.in4 + i);
  simcuda::store_vector(b.out4 + i, v4);
  simcuda::store_vector(tile4 + i, v4);
  const float2 v2 = simcuda::load_vector(b.in2 + i);
  simcuda::store_vector(b.out2 + i, v2);
  simcuda::store_vector(tile2 + i, v2);
  simcuda::store_vector_streaming(b.out1 + i, simcuda::load_vector(b.in1 + i));
  __syncthreads();
  simcuda::store_vector_streaming(b.out4_streaming + i, simcuda::load_vector(tile4 + j));
  simcuda::store_vector_streaming(b.out2_streaming + i, simcuda::load_vector(tile2 + j));
  __stcs(b.out4_hinted + i, __ldg(b.in4 + j));
}

}  // namespace

cudaError_t vector_round_trip(const VectorBuffers& buffers, int threads) {
  if (threads < 1 || threads > kMaxVectorThreads) return cudaErrorInvalidValue;
  return simcuda::launch(vector_round_trip_kernel, dim3(1), dim3(threads), 0, nullptr, buffers);
}

}  // namespace simtest
