// The baseline that a fused cross-entropy replaces: what an eager framework runs for
// `loss = nll_loss(log_softmax(logits), targets); loss.backward()`, written plainly. Three
// kernels and a materialised [rows x classes] tensor of log-probabilities in the logits' dtype:
//   1. log_softmax  reads the logits (three sweeps of the row: max, sum of exp, write)
//   2. nll          gathers each row's target log-probability and averages
//   3. backward     grad = (exp(logprob) - onehot) / rows, from the stored log-probabilities
// Step 3 already merges nll's and log_softmax's backward into one kernel, which is kinder than
// eager PyTorch (it also writes a dense gradient of the log-probabilities in between); the
// baseline is therefore, if anything, faster than what users actually replace.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "benchmarks/support/peers.h"

namespace actloss::bench::peers {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Block-wide reductions through shared memory; every thread gets the result.
template <class Combine>
__device__ float block_reduce(float value, Combine combine) {
  constexpr float kIdentity = Combine::kIdentity;
  __shared__ float partial[kThreads / 32];
  __shared__ float result;
  for (int offset = 16; offset > 0; offset /= 2)
    value = combine(value, __shfl_xor_sync(0xffffffffu, value, offset));
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) partial[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : kIdentity;
    for (int offset = 16; offset > 0; offset /= 2)
      value = combine(value, __shfl_xor_sync(0xffffffffu, value, offset));
    if (threadIdx.x == 0) result = value;
  }
  __syncthreads();
  return result;
}

struct Max {
  static constexpr float kIdentity = -INFINITY;
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Sum {
  static constexpr float kIdentity = 0.0f;
  __device__ float operator()(float a, float b) const { return a + b; }
};

template <class T>
__global__ void __launch_bounds__(kThreads)
    log_softmax_kernel(const T* __restrict__ logits, T* __restrict__ logprobs,
                       std::int64_t classes) {
  const T* x = logits + blockIdx.x * classes;
  T* out = logprobs + blockIdx.x * classes;
  float m = -INFINITY;
  for (std::int64_t c = threadIdx.x; c < classes; c += kThreads) m = fmaxf(m, to_float(x[c]));
  m = block_reduce(m, Max{});
  float s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < classes; c += kThreads) s += expf(to_float(x[c]) - m);
  const float lse = m + logf(block_reduce(s, Sum{}));
  for (std::int64_t c = threadIdx.x; c < classes; c += kThreads)
    out[c] = from_float<T>(to_float(x[c]) - lse);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    nll_kernel(const T* __restrict__ logprobs, const std::int64_t* __restrict__ targets,
               std::int64_t rows, std::int64_t classes, float* __restrict__ loss) {
  float s = 0.0f;
  for (std::int64_t r = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * kThreads) {
    s -= to_float(logprobs[r * classes + targets[r]]);
  }
  s = block_reduce(s, Sum{});
  if (threadIdx.x == 0) atomicAdd(loss, s / static_cast<float>(rows));
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ logprobs, const std::int64_t* __restrict__ targets,
                    std::int64_t classes, float inverse_rows, T* __restrict__ grad) {
  const T* lp = logprobs + blockIdx.x * classes;
  T* g = grad + blockIdx.x * classes;
  const std::int64_t target = targets[blockIdx.x];
  for (std::int64_t c = threadIdx.x; c < classes; c += kThreads) {
    const float p = expf(to_float(lp[c]));
    g[c] = from_float<T>((p - (c == target ? 1.0f : 0.0f)) * inverse_rows);
  }
}

void check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error(std::string("unfused cross-entropy: ") + what + ": " +
                             cudaGetErrorString(error));
  }
}

template <class T>
void run(const void* logits, const std::int64_t* targets, std::int64_t rows, std::int64_t classes,
         void* logprobs, float* loss, void* grad, cudaStream_t stream) {
  const auto* x = static_cast<const T*>(logits);
  auto* lp = static_cast<T*>(logprobs);
  const dim3 row_grid(static_cast<unsigned>(rows));
  log_softmax_kernel<T><<<row_grid, kThreads, 0, stream>>>(x, lp, classes);
  check(cudaGetLastError(), "log_softmax");
  check(cudaMemsetAsync(loss, 0, sizeof(float), stream), "zero the loss");
  // One thread per row, capped: the partial sums meet in one atomic per block.
  const auto nll_blocks =
      static_cast<unsigned>(std::min<std::int64_t>((rows + kThreads - 1) / kThreads, 1024));
  nll_kernel<T><<<nll_blocks, kThreads, 0, stream>>>(lp, targets, rows, classes, loss);
  check(cudaGetLastError(), "nll");
  backward_kernel<T><<<row_grid, kThreads, 0, stream>>>(
      lp, targets, classes, 1.0f / static_cast<float>(rows), static_cast<T*>(grad));
  check(cudaGetLastError(), "backward");
}

}  // namespace

void unfused_cross_entropy(const void* logits, DType dtype, const std::int64_t* targets,
                           std::int64_t rows, std::int64_t classes, void* logprobs, float* loss,
                           void* grad, Stream stream) {
  if (rows <= 0 || rows > 0x7fffffff)
    throw std::runtime_error("unfused cross-entropy: rows out of range");
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32: run<float>(logits, targets, rows, classes, logprobs, loss, grad, s); return;
    case DType::f16: run<__half>(logits, targets, rows, classes, logprobs, loss, grad, s); return;
    case DType::bf16:
      run<__nv_bfloat16>(logits, targets, rows, classes, logprobs, loss, grad, s);
      return;
  }
  throw std::runtime_error("unfused cross-entropy: unknown dtype");
}

}  // namespace actloss::bench::peers
