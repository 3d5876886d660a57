// Block-level self-test kernels: barriers, shared memory, grid indexing.
// Valid CUDA: the same file builds with nvcc.
#include <simcuda/simcuda.h>

#include "sim_test_kernels.h"

namespace simtest {
namespace {

constexpr int kMaxThreads = 1024;

__global__ void early_exit_kernel(int* out, int live) {
  __shared__ int s[kMaxThreads];
  const int tid = static_cast<int>(threadIdx.x);
  if (tid >= live) return;  // counts as arrived at the barriers below
  s[tid] = tid;
  __syncthreads();
  const int a = s[(tid + 1) % live];
  __syncthreads();
  s[tid] = a + 1;
  __syncthreads();
  out[tid] = a + s[(tid + 1) % live] - 1;
}

template <bool kPlantedMissingSync>
__global__ void __launch_bounds__(256, 2) tree_reduce_kernel(const float* __restrict__ in,
                                                         float* __restrict__ out, int n) {
  __shared__ float s[256];
  const unsigned tid = threadIdx.x;
  const unsigned i = blockIdx.x * blockDim.x + tid;
  s[tid] = i < static_cast<unsigned>(n) ? __ldg(&in[i]) : 0.0f;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (tid < stride) s[tid] += s[tid + stride];
    if (!kPlantedMissingSync) __syncthreads();
  }
  if (tid == 0) out[blockIdx.x] = s[0];
}

__global__ void shared_memory_kernel(int* poisoned, int* out, int* out_static) {
  SIMCUDA_DYNAMIC_SHARED(float, dyn);
  __shared__ int stat[kMaxThreads];
  const int tid = static_cast<int>(threadIdx.x);
  const int n = static_cast<int>(blockDim.x);
  poisoned[tid] = isnan(dyn[tid]) ? 1 : 0;
  __syncthreads();
  dyn[tid] = static_cast<float>(tid);
  stat[tid] = 2 * tid;
  __syncthreads();
  out[tid] = static_cast<int>(dyn[(tid + 1) % n]);
  out_static[tid] = stat[(tid + 3) % n];
}

__global__ void grid_indexing_kernel(int4* rec) {
  const int t = static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
  const int b = static_cast<int>(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
  const int bs = static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
  const int gs = static_cast<int>(gridDim.x * gridDim.y * gridDim.z);
  rec[b * bs + t] = make_int4(t, b, bs, gs);
}

// Every round each thread adds its value into one shared accumulator slot
// per thread, then thread 0 sums them: the full-block barrier pattern.
__global__ void __launch_bounds__(1024) barrier_rounds_kernel(int rounds, int* out) {
  __shared__ int slot[kMaxThreads];
  __shared__ int total;
  const int tid = static_cast<int>(threadIdx.x);
  if (tid == 0) total = 0;
  for (int r = 0; r < rounds; ++r) {
    slot[tid] = 1;
    __syncthreads();
    if (tid == 0) {
      int sum = 0;
#pragma unroll 4
      for (int i = 0; i < static_cast<int>(blockDim.x); ++i) sum += slot[i];
      total += sum;
    }
    __syncthreads();
  }
  if (tid == 0) out[0] = total;
}

__global__ void empty_kernel_body() {}

__global__ void barrier_loop_kernel(int barriers) {
  for (int i = 0; i < barriers; ++i) __syncthreads();
}

__global__ void first_run_order_kernel(int* order, int* counter) {
  order[threadIdx.x] = atomicAdd(counter, 1);
}

__global__ void launch_config_body() {}

// Each block of a cluster publishes blockIdx.x * 1000 + tid in its dynamic shared memory; every
// thread then adds up its column over the cluster's blocks, `rounds` times (the barriers are
// reused), and threads past `live` leave at once (they count as arrived at cluster barriers).
__global__ void cluster_exchange_kernel(int* out, int live, int rounds) {
  SIMCUDA_DYNAMIC_SHARED(int, slots);
  const unsigned tid = threadIdx.x;
  const unsigned blocks = simcuda::cluster_blocks();
  int* record = out + 3 * (std::int64_t{blockIdx.x} * blockDim.x + tid);
  record[1] = static_cast<int>(simcuda::cluster_block_rank());
  record[2] = static_cast<int>(blocks);
  if (static_cast<int>(tid) >= live) return;
  int total = 0;
  for (int round = 0; round < rounds; ++round) {
    slots[tid] = static_cast<int>(blockIdx.x) * 1000 + static_cast<int>(tid) + round;
    simcuda::cluster_sync();
    for (unsigned rank = 0; rank < blocks; ++rank)
      total += *simcuda::cluster_map_shared(slots + tid, rank);
    simcuda::cluster_sync();
  }
  record[0] = total;
}

}  // namespace

cudaError_t early_exit_barriers(int* out, int block_threads, int live_threads) {
  return simcuda::launch(early_exit_kernel, dim3(1), dim3(block_threads), 0, nullptr, out,
                         live_threads);
}

cudaError_t tree_reduce(const float* in, float* out, int n, bool planted_missing_sync,
                        cudaStream_t stream) {
  const dim3 grid((n + 255) / 256);
  return planted_missing_sync
             ? simcuda::launch(tree_reduce_kernel<true>, grid, dim3(256), 0, stream, in, out, n)
             : simcuda::launch(tree_reduce_kernel<false>, grid, dim3(256), 0, stream, in, out, n);
}

cudaError_t shared_memory(int threads, int* poisoned, int* out, int* out_static) {
  return simcuda::launch(shared_memory_kernel, dim3(1), dim3(threads),
                         sizeof(float) * static_cast<std::size_t>(threads), nullptr, poisoned,
                         out, out_static);
}

cudaError_t grid_indexing(dim3 grid, dim3 block, int4* rec) {
  return simcuda::launch(grid_indexing_kernel, grid, block, 0, nullptr, rec);
}

cudaError_t barrier_rounds(int threads, int rounds, int* out) {
  return simcuda::launch(barrier_rounds_kernel, dim3(1), dim3(threads), 0, nullptr, rounds, out);
}

cudaError_t empty_kernel(dim3 grid, dim3 block) {
  return simcuda::launch(empty_kernel_body, grid, block, 0, nullptr);
}

cudaError_t barrier_loop(int threads, int barriers) {
  return simcuda::launch(barrier_loop_kernel, dim3(1), dim3(threads), 0, nullptr, barriers);
}

cudaError_t first_run_order(int threads, int* order) {
  int* counter = nullptr;
  cudaError_t e = cudaMalloc(&counter, sizeof(int));
  if (e != cudaSuccess) return e;
  e = cudaMemset(counter, 0, sizeof(int));
  if (e == cudaSuccess) {
    e = simcuda::launch(first_run_order_kernel, dim3(1), dim3(threads), 0, nullptr, order, counter);
  }
  cudaFree(counter);
  return e;
}

cudaError_t launch_config(dim3 grid, dim3 block, std::size_t dynamic_smem) {
  return simcuda::launch(launch_config_body, grid, block, dynamic_smem, nullptr);
}

const void* launch_config_kernel() { return reinterpret_cast<const void*>(&launch_config_body); }

cudaError_t allow_dynamic_smem(int bytes) {
  return cudaFuncSetAttribute(launch_config_body, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              bytes);
}

cudaError_t cluster_exchange(int blocks, int cluster, int threads, int live, int rounds,
                             int* out) {
  return simcuda::launch_in_clusters(cluster_exchange_kernel, dim3(static_cast<unsigned>(blocks)),
                                     dim3(static_cast<unsigned>(threads)),
                                     static_cast<unsigned>(cluster),
                                     static_cast<std::size_t>(threads) * sizeof(int), nullptr,
                                     out, live, rounds);
}

}  // namespace simtest
