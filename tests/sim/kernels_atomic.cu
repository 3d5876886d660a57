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

}  // namespace

cudaError_t atomics(int blocks, AtomicResults* results_device) {
  return simcuda::launch(atomics_kernel, dim3(blocks), dim3(256), 0, nullptr, results_device);
}

}  // namespace simtest
