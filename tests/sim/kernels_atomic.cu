// Atomics under contention. Valid CUDA: the same file builds with nvcc.
#include <simcuda/simcuda.h>

#include "sim_test_kernels.h"

namespace simtest {
namespace {

__global__ void atomics_kernel(AtomicResults* r) {
  const int g = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(&r->add_i, 1);
  atomicAdd(&r->add_u, 2u);
  atomicAdd(&r->add_ull, 3ull);
  atomicAdd(&r->add_f, 0.5f);
  atomicAdd(&r->add_d, 0.25);
  atomicMax(&r->max_i, g);
  atomicMin(&r->min_i, -g);
  // An increment built from compare-and-swap, the pattern behind most
  // custom atomics.
  // The first read is atomic too: a plain read racing with the CAS of
  // another thread is a data race (ThreadSanitizer reports it).
  int old = atomicAdd(&r->cas_count, 0);
  for (;;) {
    const int seen = atomicCAS(&r->cas_count, old, old + 1);
    if (seen == old) break;
    old = seen;
  }
  atomicOr(&r->or_bits, 1u << (g % 32));
  atomicAdd(&r->exch_sum, atomicExch(&r->exch_sum, 0u) + 1u);
}

// The last-block pattern: every block leaves a partial, fences, takes a
// ticket; the block with the last ticket adds all partials. No block waits.
__global__ void last_block_sum_kernel(double* partials, unsigned* ticket, double* out) {
  __shared__ unsigned last;
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = static_cast<double>(blockIdx.x + 1);
    __threadfence();
    last = atomicAdd(ticket, 1u) == gridDim.x - 1 ? 1u : 0u;
  }
  __syncthreads();
  if (last == 0u || threadIdx.x != 0) return;
  __threadfence();
  double sum = 0.0;
  for (unsigned b = 0; b < gridDim.x; ++b) sum += __ldcg(partials + b);
  *out = sum;
}

}  // namespace

cudaError_t last_block_sum(int blocks, double* partials, unsigned* ticket, double* out,
                           cudaStream_t stream) {
  return simcuda::launch(last_block_sum_kernel, dim3(blocks), dim3(64), 0, stream, partials,
                         ticket, out);
}

cudaError_t atomics(int blocks, AtomicResults* results_device) {
  return simcuda::launch(atomics_kernel, dim3(blocks), dim3(256), 0, nullptr, results_device);
}

}  // namespace simtest
