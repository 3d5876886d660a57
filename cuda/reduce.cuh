// Deterministic reduction of per-block partial sums to one float, finished inside the launch.
//
// Sum and mean must be bitwise identical across runs and graph replays, so no float atomics touch
// a result: each block of an op's kernel writes its partial sums (in double, so that summing
// millions of rows does not lose the 2^-21 relative accuracy we promise) to the call's scratch,
// takes a ticket, and the block that takes the last ticket adds every partial in block order. No
// block waits for another, and no second kernel is launched; the grid depends only on the shape
// and the device, never on timing, so the partials and their order are the same every run.
//
// The finish last measured on a GPU, a second kernel over the partials (cuda/reduce.cu), stays
// selectable (detail::cuda_set_reduced_loss_in_kernel_for_testing, actloss_bench
// --actloss_reduce_in_kernel=0) until a card has compared the two in one run.
//
// block_sum and warp_sum (cuda/common.cuh) are our own rather than CUB's BlockReduce and
// WarpReduce because those compile to inline PTX, which the simulator cannot run
// (sim/README.md), and every kernel must run there as on the GPU.
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

// Where a kernel's blocks leave their partials, in the call's scratch. `numerators` is null when
// the launch reduces nothing.
struct ReducedLoss {
  double* numerators = nullptr;    // [gridDim.x]
  double* denominators = nullptr;  // [gridDim.x] when the blocks sum the denominator, else null
  unsigned* ticket = nullptr;      // 0 at launch (prepare_reduced_loss); null: a second kernel
                                   // finishes (finish_in_second_kernel)
  float* out = nullptr;
};

// The scratch of a ReducedLoss over `blocks` blocks, in doubles: the partials, then one slot for
// the ticket.
inline std::size_t reduced_loss_doubles(std::size_t blocks, bool summed_denominator) {
  return blocks * (summed_denominator ? 2 : 1) + 1;
}

// Whether reduced losses finish in their kernel's last block (the default) or in a second
// kernel. Defined in cuda/reduce.cu.
bool reduced_loss_in_kernel();

// Lays a ReducedLoss out in `scratch` (reduced_loss_doubles of them) and queues the clearing of
// its ticket on `stream`: a stream-ordered 4-byte memset, which a graph captures as a memset
// node. The memory may be the caller's workspace, with whatever a previous call left in it.
inline Status prepare_reduced_loss(double* scratch, std::size_t blocks, bool summed_denominator,
                                   float* out, cudaStream_t stream, ReducedLoss* reduced) {
  reduced->numerators = scratch;
  reduced->denominators = summed_denominator ? scratch + blocks : nullptr;
  reduced->ticket = nullptr;
  reduced->out = out;
  if (!reduced_loss_in_kernel()) return {};
  reduced->ticket = reinterpret_cast<unsigned*>(scratch + blocks * (summed_denominator ? 2 : 1));
  ACTLOSS_CUDA_TRY(cudaMemsetAsync(reduced->ticket, 0, sizeof(unsigned), stream));
  return {};
}

// After the kernel that called finish_reduced_loss: launches the second kernel that adds its
// `blocks` partials when the kernel did not finish them itself (no ticket). Defined in
// cuda/reduce.cu.
Status finish_in_second_kernel(const ReducedLoss& reduced, unsigned blocks, cudaStream_t stream);

// Every thread of every block calls this once, at the end of the kernel, with the block's sums
// (the same on every thread, as block_sum gives them). The last block to finish writes
//   *out = sum(numerators) / denominator,
// the denominator being sum(denominators) when the blocks sum it, else `block_denominator`
// (then a constant of the launch, the same in every block). A zero denominator (an empty or
// all-ignored batch under mean) gives 0, never NaN; a NaN numerator stays NaN. `warp_partials`
// as for block_sum.
__device__ __forceinline__ void finish_reduced_loss(const ReducedLoss& reduced,
                                                    double block_numerator,
                                                    double block_denominator,
                                                    double* warp_partials) {
  __shared__ unsigned last_block;
  if (threadIdx.x == 0) {
    // For the second kernel, a launch-constant denominator is applied here, block by block, as
    // that kernel knows none.
    const bool divide_here = reduced.ticket == nullptr && reduced.denominators == nullptr;
    reduced.numerators[blockIdx.x] =
        !divide_here ? block_numerator
                     : (block_denominator == 0.0 ? 0.0 : block_numerator / block_denominator);
    if (reduced.denominators != nullptr) reduced.denominators[blockIdx.x] = block_denominator;
    if (reduced.ticket == nullptr) {
      last_block = 0u;
    } else {
      // Our partials are visible to every block before the ticket says they are there.
      __threadfence();
      last_block = atomicAdd(reduced.ticket, 1u) == gridDim.x - 1 ? 1u : 0u;
    }
  }
  __syncthreads();
  if (last_block == 0u) return;
  // Every other block fenced before taking its ticket; this fence orders our reads after ours.
  __threadfence();
  double numerator = 0.0, denominator = 0.0;
  for (unsigned b = threadIdx.x; b < gridDim.x; b += blockDim.x) {
    // L2 loads (.cg): another SM wrote these, and this SM's L1 is not coherent with it.
    numerator += __ldcg(reduced.numerators + b);
    if (reduced.denominators != nullptr) denominator += __ldcg(reduced.denominators + b);
  }
  numerator = block_sum(numerator, warp_partials);
  denominator = reduced.denominators != nullptr ? block_sum(denominator, warp_partials)
                                                : block_denominator;
  if (threadIdx.x == 0) {
    const double value = denominator == 0.0 ? 0.0 : numerator / denominator;
    *reduced.out = static_cast<float>(numerator != numerator ? numerator : value);
  }
}

}  // namespace actloss::cuda
