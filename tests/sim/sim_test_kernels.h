// Host-side entry points of the simulator self-test kernels. The kernels
// live in .cu files that compile with nvcc as well as through the simulator;
// the test drivers (.cpp) only see these plain functions and the CUDA
// runtime API, exactly as the library's own tests do.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace simtest {

// ------------------------------------------------------------ blocks --
// Threads with tid >= live_threads return at once; the others pass three
// barriers exchanging values through shared memory. out[tid] for live
// threads = (tid + 1) % live + (tid + 2) % live.
cudaError_t early_exit_barriers(int* out, int block_threads, int live_threads);

// `blocks` blocks of `threads` in clusters of `cluster`: out[3 i .. 3 i + 2] for global thread i
// = { the sum over `rounds` rounds and the cluster's blocks b of b * 1000 + tid + round (live
// threads only), its cluster block rank, its cluster's blocks }.
cudaError_t cluster_exchange(int blocks, int cluster, int threads, int live, int rounds,
                             int* out);

// Sum of `in` (n floats) per block of 256 threads into out[blockIdx.x].
// With `planted_missing_sync` the barrier inside the reduction loop is left
// out, the classic race.
cudaError_t tree_reduce(const float* in, float* out, int n, bool planted_missing_sync,
                        cudaStream_t stream = nullptr);

// One block: before writing, each thread reads dynamic shared memory word
// tid and stores 1 in poisoned[tid] if it was NaN; then writes tid, syncs
// and reads a neighbour: out[tid] = (tid + 1) % threads, plus a static
// shared round trip: out_static[tid] = 2 * ((tid + 3) % threads).
cudaError_t shared_memory(int threads, int* poisoned, int* out, int* out_static);

// Writes, for every thread of the grid, a record of its built-in variables:
// rec[global linear id] = { thread linear id in block, block linear id,
// blockDim.x*y*z, gridDim.x*y*z }.
cudaError_t grid_indexing(dim3 grid, dim3 block, int4* rec);

// Full-block pattern: `rounds` barrier rounds in one block of `threads`.
// out[0] = the sum seen by thread 0, which must equal rounds*threads.
cudaError_t barrier_rounds(int threads, int rounds, int* out);

// One block of `threads` passing `barriers` __syncthreads and nothing else.
cudaError_t barrier_loop(int threads, int barriers);

// An empty kernel, for launch-cost measurements.
cudaError_t empty_kernel(dim3 grid, dim3 block);

// Records the order in which the threads of one block first run:
// order[tid] = ticket drawn from an atomic counter.
cudaError_t first_run_order(int threads, int* order);

// Launch with an arbitrary configuration; the kernel does nothing.
cudaError_t launch_config(dim3 grid, dim3 block, std::size_t dynamic_smem);
const void* launch_config_kernel();
// Sets cudaFuncAttributeMaxDynamicSharedMemorySize on that kernel.
cudaError_t allow_dynamic_smem(int bytes);

// ------------------------------------------------------------- warps --
enum class Shfl { kIdx = 0, kUp = 1, kDown = 2, kXor = 3 };
// One block of `threads` threads, of which those with tid >= live exit
// first. Lane value = tid * 10 + 1; out[tid] = result of the shuffle.
cudaError_t shuffle(Shfl kind, int arg, int width, int threads, int live, int* out);
// Shuffle of other types: out_f[tid] = float from lane tid^1, out_d from
// lane (tid+1)%32 (double), out_h2 from lane 0 (__half2 (tid, -tid) read
// back as floats), out_ll from lane tid^31 (long long).
cudaError_t shuffle_types(float* out_f, double* out_d, float2* out_h2, long long* out_ll);
// Votes with predicate (tid % 3 == 0), one block of `threads` threads:
// out[tid] = { ballot, any, all, all-of-(tid >= 0) }.
cudaError_t votes(int threads, int4* out);
// Lanes write shared memory, __syncwarp, read the lane to their right.
cudaError_t syncwarp_exchange(int threads, int* out);

// ----------------------------------------------------------- atomics --
struct AtomicResults {
  int add_i;
  unsigned add_u;
  unsigned long long add_ull;
  float add_f;
  double add_d;
  int max_i;
  int min_i;
  int cas_count;
  unsigned or_bits;
  unsigned exch_sum;
};
// blocks x 256 threads hammer the same words.
cudaError_t atomics(int blocks, AtomicResults* results_device);
// Block b leaves b + 1 in partials[b]; the block that takes the last ticket
// (*ticket must be 0) writes their sum to *out.
cudaError_t last_block_sum(int blocks, double* partials, unsigned* ticket, double* out,
                           cudaStream_t stream);

// ------------------------------------------------------------- math --
// out[i] for x = in[i]: a table of intrinsics, see kernels_math.cu.
constexpr int kMathColumns = 24;
cudaError_t math_table(const float* in, float* out, int n);

// ----------------------------------------------------- vector access --
struct VectorBuffers {
  const uint4* in4;
  uint4* out4;            // out4[i] = in4[i]            (load_vector, store_vector)
  uint4* out4_streaming;  // in4[(i + 1) % threads]      (via __shared__, store_vector_streaming)
  uint4* out4_hinted;     // in4[(i + 1) % threads]      (__ldg, __stcs)
  const float2* in2;
  float2* out2;            // out2[i] = in2[i]
  float2* out2_streaming;  // in2[(i + 1) % threads]     (via __shared__)
  const float* in1;
  float* out1;             // out1[i] = in1[i]           (4-byte load_vector, streaming store)
};
// One block of `threads` (at most 64) threads; thread i fills element i of
// every output as described above.
cudaError_t vector_round_trip(const VectorBuffers& buffers, int threads);

// ------------------------------------------------- planted failures --
// Lanes 0-15 enter a shuffle while lanes 16-31 wait at __syncthreads.
cudaError_t divergent_deadlock(int* out);
// Lanes >= 16 exit, then lanes < 16 read lane tid ^ 16.
cudaError_t shuffle_reads_exited_lane(int* out);
// A 48-thread block: lanes of the partial second warp read lane + 16.
cudaError_t shuffle_reads_missing_lane(int* out);
// Two halves of a warp use complementary sub-warp masks.
cudaError_t subwarp_masks(int* out);
// A lane passes a mask without its own bit.
cudaError_t mask_without_self(int* out);
// Thread 0 spins on a flag that thread 1 sets only after a barrier.
cudaError_t spin_on_flag(int* out);
// Reads in[n], one past the end.
cudaError_t out_of_bounds_read(const float* in, float* out, int n);
// One block of two threads on a device buffer of at least 128 bytes:
// thread t accesses buffer + 16 * t, thread 1 four bytes further on, which
// misaligns its 16- or 8-byte access (thread 0's stays aligned).
enum class VectorFault {
  kLoad16,            // simcuda::load_vector of a uint4
  kStore16,           // simcuda::store_vector of a uint4
  kStreamingStore16,  // simcuda::store_vector_streaming of a uint4
  kLdg8,              // __ldg of a uint2
};
cudaError_t misaligned_vector_access(VectorFault kind, unsigned char* buffer);

}  // namespace simtest
