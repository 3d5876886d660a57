// simcuda: one header for every .cu file of the library.
//
// Under nvcc it only adds the launch helper and the dynamic-shared-memory
// macro. Without __CUDACC__ (the simulator build, ACTLOSS_SIM=1) it turns g++
// into a CUDA front end good enough for the kernels described in
// sim/README.md, which is the contract for kernel authors.
//
// Include it first in every .cu file: crt/host_defines.h (pulled in by any
// CUDA header) defines __shared__, __device__ & co. to nothing unless they
// already exist, so the simulator has to define them before that happens.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#if defined(__CUDACC__)
// ------------------------------------------------------------------- nvcc --
#include <cooperative_groups.h>
#include <cuda_runtime.h>

namespace simcuda {

namespace detail {
template <class Params, std::size_t... I>
inline cudaError_t launch_with(const void* kernel, dim3 grid, dim3 block,
                               std::size_t dynamic_smem_bytes, cudaStream_t stream,
                               Params& params, std::index_sequence<I...>) {
  void* pointers[sizeof...(I) + 1] = {static_cast<void*>(&std::get<I>(params))...};
  return cudaLaunchKernel(kernel, grid, block, pointers, dynamic_smem_bytes, stream);
}
}  // namespace detail

// Every launch of the library goes through here, so the simulator can replace
// it. The launch's own status comes back at the call site in both builds:
// cudaLaunchKernel returns it, where <<<>>> would need cudaGetLastError, which
// also takes (and clears) an error the caller had left pending.
template <class... KArgs, class... Args>
inline cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block,
                          std::size_t dynamic_smem_bytes, cudaStream_t stream,
                          Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args),
                "simcuda::launch: argument count does not match the kernel");
  // Converted to the parameter types first, as <<<>>> does.
  std::tuple<std::remove_cv_t<KArgs>...> params(std::forward<Args>(args)...);
  return detail::launch_with(reinterpret_cast<const void*>(kernel), grid, block,
                             dynamic_smem_bytes, stream, params,
                             std::index_sequence_for<KArgs...>{});
}

// A launch in thread-block clusters of `cluster` blocks along x (grid.x a multiple of it), whose
// blocks share their shared memory through cluster_map_shared. Needs sm_90.
template <class... KArgs, class... Args>
inline cudaError_t launch_in_clusters(void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                      unsigned cluster, std::size_t dynamic_smem_bytes,
                                      cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args),
                "simcuda::launch: argument count does not match the kernel");
  std::tuple<std::remove_cv_t<KArgs>...> params(std::forward<Args>(args)...);
  return std::apply(
      [&](auto&... param) {
        void* pointers[sizeof...(KArgs) + 1] = {static_cast<void*>(&param)...};
        cudaLaunchAttribute attribute{};
        attribute.id = cudaLaunchAttributeClusterDimension;
        attribute.val.clusterDim.x = cluster;
        attribute.val.clusterDim.y = 1;
        attribute.val.clusterDim.z = 1;
        cudaLaunchConfig_t config{};
        config.gridDim = grid;
        config.blockDim = block;
        config.dynamicSmemBytes = dynamic_smem_bytes;
        config.stream = stream;
        config.attrs = &attribute;
        config.numAttrs = 1;
        return cudaLaunchKernelExC(&config, reinterpret_cast<const void*>(kernel), pointers);
      },
      params);
}

// Cluster built-ins for kernels. Below sm_90 there are no clusters: every block is a cluster of
// one, and the library never launches a cluster there.
__device__ __forceinline__ unsigned cluster_blocks() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().num_blocks();
#else
  return 1;
#endif
}
__device__ __forceinline__ unsigned cluster_block_rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().block_rank();
#else
  return 0;
#endif
}
// A barrier of every thread of the cluster, which also orders their shared-memory accesses.
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cooperative_groups::this_cluster().sync();
#else
  __syncthreads();
#endif
}
// The address of `p`'s shared variable in the block of cluster rank `rank`.
template <class T>
__device__ __forceinline__ T* cluster_map_shared(T* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().map_shared_rank(p, rank);
#else
  return p;
#endif
}

// Vector memory access for kernels: V is a 4-, 8- or 16-byte type (uint4,
// uint2, float4, float2, unsigned, ...). On a GPU a misaligned vector access
// faults; the simulator aborts on one (its versions are in
// detail/device_api.h).
template <class V>
__device__ __forceinline__ V load_vector(const V* p) {
  static_assert(sizeof(V) == 4 || sizeof(V) == 8 || sizeof(V) == 16,
                "simcuda vector accesses move 4, 8 or 16 bytes");
  return *p;
}
template <class V>
__device__ __forceinline__ void store_vector(V* p, const V& v) {
  static_assert(sizeof(V) == 4 || sizeof(V) == 8 || sizeof(V) == 16,
                "simcuda vector accesses move 4, 8 or 16 bytes");
  *p = v;
}
// Evict-first store: __stcs, which exists in device code only.
template <class V>
__device__ __forceinline__ void store_vector_streaming(V* p, const V& v) {
  static_assert(sizeof(V) == 4 || sizeof(V) == 8 || sizeof(V) == 16,
                "simcuda vector accesses move 4, 8 or 16 bytes");
#ifdef __CUDA_ARCH__
  __stcs(p, v);
#else
  *p = v;
#endif
}

}  // namespace simcuda

// One byte array shared by all kernels of a translation unit: declaring it
// with different element types in two kernels is an nvcc error.
#define SIMCUDA_DYNAMIC_SHARED(T, name)                                   \
  extern __shared__ __align__(16) unsigned char simcuda_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(simcuda_dynamic_smem_)

#else
// -------------------------------------------------------------- simulator --
#if !defined(ACTLOSS_SIM)
#error "simcuda/simcuda.h without __CUDACC__ needs ACTLOSS_SIM (link actloss_sim); in an nvcc build include it only from .cu files"
#endif
#if defined(__HOST_DEFINES_H__)
#error "include <simcuda/simcuda.h> before any CUDA header: crt/host_defines.h has already defined __shared__ & co. to nothing"
#endif

// Standard headers first: the macros below must not leak into them.
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <math.h>
#include <limits>
#include <tuple>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#if defined(SIMCUDA_THREADS) && SIMCUDA_THREADS
// Threads mode runs one block at a time with one OS thread per CUDA thread,
// so plain statics are exactly one block's shared memory.
#define __shared__ static
#else
// Fiber mode runs one block per OS worker at a time.
#define __shared__ static thread_local
#endif
// __noinline__ is deliberately left alone: libstdc++ spells
// __attribute__((__noinline__)), which a macro would break.

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <math_constants.h>

#include "detail/device_api.h"
#include "detail/half_fallbacks.h"
#include "detail/launch.h"

#define SIMCUDA_DYNAMIC_SHARED(T, name) \
  T* name = static_cast<T*>(::simcuda::detail::dynamic_smem())

#endif  // __CUDACC__
