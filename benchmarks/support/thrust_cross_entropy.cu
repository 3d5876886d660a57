// The baseline a C++ CUDA developer writes before reaching for a fused kernel: mean softmax
// cross-entropy with the toolkit's own libraries, Thrust and CUB, and no kernel of one's own.
//   1. cub::DeviceSegmentedReduce::Max  each row's max, over the logits widened to float
//   2. cub::DeviceSegmentedReduce::Sum  each row's sum of exp(x - max), over a transform iterator
//   3. thrust::transform_reduce         the mean over rows of max + log(sum) - x[target]
//   4. thrust::transform                the gradient (exp(x - max) / sum - onehot) / rows
// Row r is the segment [r C, (r + 1) C) of the flat logits, its offsets a counting iterator times
// C, so nothing is materialised but the two floats per row, which are also what backward starts
// from (as actloss's CrossEntropyRowStats). Each step reads the logits anew: the forward twice
// (max, sum) and forward and backward three times, besides one target logit per row, where a
// fused kernel reads them once.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cub/device/device_segmented_reduce.cuh>
#include <cuda/std/functional>
#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "benchmarks/support/peers.h"

namespace actloss::bench::peers {
namespace {

__host__ __device__ inline float to_float(float v) { return v; }
__host__ __device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__host__ __device__ inline T from_float(float v);
template <>
__host__ __device__ inline float from_float<float>(float v) {
  return v;
}
template <>
__host__ __device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

struct ToFloat {
  template <class T>
  __host__ __device__ float operator()(T v) const {
    return to_float(v);
  }
};

// Where row r starts in the flat logits. Indices are 64-bit, as rows x classes may pass 2^31.
struct RowStart {
  std::int64_t cols;
  __host__ __device__ std::int64_t operator()(std::int64_t row) const { return row * cols; }
};

template <class T>
struct ShiftedExp {
  const T* x;
  const float* row_max;
  std::int64_t cols;
  __host__ __device__ float operator()(std::int64_t i) const {
    return expf(to_float(x[i]) - row_max[i / cols]);
  }
};

// What the loss and the gradient read: the logits, the targets and each row's statistics.
template <class T>
struct Operands {
  const T* x;
  const std::int64_t* targets;
  const float* row_max;
  const float* row_sum;
  std::int64_t cols;
};

template <class T>
Operands<T> operands(const ThrustCrossEntropyArgs& a) {
  return {static_cast<const T*>(a.logits), a.targets, a.row_max, a.row_sum, a.classes};
}

// max + log(sum of exp(x - max)) is the row's logsumexp, never overflowing.
template <class T>
struct RowLoss {
  Operands<T> in;
  __host__ __device__ float operator()(std::int64_t row) const {
    return in.row_max[row] + logf(in.row_sum[row]) -
           to_float(in.x[row * in.cols + in.targets[row]]);
  }
};

template <class T>
struct Gradient {
  Operands<T> in;
  float inverse_rows;
  __host__ __device__ T operator()(std::int64_t i) const {
    const std::int64_t row = i / in.cols;
    const float p = expf(to_float(in.x[i]) - in.row_max[row]) / in.row_sum[row];
    const float onehot = i - row * in.cols == in.targets[row] ? 1.0f : 0.0f;
    return from_float<T>((p - onehot) * inverse_rows);
  }
};

auto row_starts(std::int64_t cols) {
  return thrust::make_transform_iterator(thrust::make_counting_iterator<std::int64_t>(0),
                                         RowStart{cols});
}

void check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error(std::string("thrust/cub cross-entropy: ") + what + ": " +
                             cudaGetErrorString(error));
  }
}

// Both reductions with `temp` null ask CUB for their storage, and do nothing else.
template <class T>
cudaError_t row_max(void* temp, std::size_t& temp_bytes, const ThrustCrossEntropyArgs& a,
                    cudaStream_t stream) {
  const auto starts = row_starts(a.classes);
  const auto x = thrust::make_transform_iterator(static_cast<const T*>(a.logits), ToFloat{});
  return cub::DeviceSegmentedReduce::Max(temp, temp_bytes, x, a.row_max, a.rows, starts, starts + 1,
                                         stream);
}

template <class T>
cudaError_t row_sum(void* temp, std::size_t& temp_bytes, const ThrustCrossEntropyArgs& a,
                    cudaStream_t stream) {
  const auto starts = row_starts(a.classes);
  const auto terms = thrust::make_transform_iterator(
      thrust::make_counting_iterator<std::int64_t>(0),
      ShiftedExp<T>{static_cast<const T*>(a.logits), a.row_max, a.classes});
  return cub::DeviceSegmentedReduce::Sum(temp, temp_bytes, terms, a.row_sum, a.rows, starts,
                                         starts + 1, stream);
}

template <class T>
std::size_t temp_bytes(const ThrustCrossEntropyArgs& a) {
  std::size_t max_bytes = 0, sum_bytes = 0;
  check(row_max<T>(nullptr, max_bytes, a, nullptr), "DeviceSegmentedReduce::Max (size)");
  check(row_sum<T>(nullptr, sum_bytes, a, nullptr), "DeviceSegmentedReduce::Sum (size)");
  // At least a byte: CUB reads a null storage pointer as a size query, and an empty allocation
  // is a null pointer.
  return std::max({max_bytes, sum_bytes, std::size_t{1}});
}

template <class T>
void statistics(const ThrustCrossEntropyArgs& a, cudaStream_t stream) {
  std::size_t bytes = a.temp_bytes;
  check(row_max<T>(a.temp, bytes, a, stream), "DeviceSegmentedReduce::Max");
  bytes = a.temp_bytes;
  check(row_sum<T>(a.temp, bytes, a, stream), "DeviceSegmentedReduce::Sum");
}

// transform_reduce hands its sum back to the host, so it waits for the stream, and it allocates
// its own temporary storage on each call (Thrust's default allocator: cudaMalloc, cudaFree). Both
// are part of this way of writing it, and the benchmark times them.
template <class T>
float mean_loss(const ThrustCrossEntropyArgs& a, cudaStream_t stream) {
  const auto rows = thrust::make_counting_iterator<std::int64_t>(0);
  const RowLoss<T> loss{operands<T>(a)};
  const float total =
      thrust::transform_reduce(thrust::cuda::par_nosync.on(stream), rows, rows + a.rows, loss, 0.0f,
                               ::cuda::std::plus<float>());
  return total / static_cast<float>(a.rows);
}

template <class T>
void gradient(const ThrustCrossEntropyArgs& a, cudaStream_t stream) {
  const auto elements = thrust::make_counting_iterator<std::int64_t>(0);
  const Gradient<T> grad{operands<T>(a), 1.0f / static_cast<float>(a.rows)};
  // par_nosync: nothing waits for the gradient here; the caller's stream orders what reads it.
  thrust::transform(thrust::cuda::par_nosync.on(stream), elements, elements + a.rows * a.classes,
                    static_cast<T*>(a.grad), grad);
}

template <class T>
float run(ThrustPass pass, const ThrustCrossEntropyArgs& a, cudaStream_t stream) {
  if (pass != ThrustPass::backward) {
    if (a.temp == nullptr)
      throw std::runtime_error("thrust/cub cross-entropy: no temporary storage for CUB");
    statistics<T>(a, stream);
  }
  // The gradient is queued before the loss, whose wait then covers both.
  if (pass != ThrustPass::forward) gradient<T>(a, stream);
  return pass == ThrustPass::backward ? 0.0f : mean_loss<T>(a, stream);
}

void check_args(const ThrustCrossEntropyArgs& a) {
  if (a.rows <= 0 || a.classes <= 0)
    throw std::runtime_error("thrust/cub cross-entropy: rows and classes must be positive");
  if (a.dtype != DType::f32 && a.dtype != DType::bf16)
    throw std::runtime_error("thrust/cub cross-entropy: f32 and bf16 logits only");
}

}  // namespace

std::size_t thrust_cross_entropy_temp_bytes(const ThrustCrossEntropyArgs& args) {
  check_args(args);
  return args.dtype == DType::f32 ? temp_bytes<float>(args) : temp_bytes<__nv_bfloat16>(args);
}

float thrust_cross_entropy(ThrustPass pass, const ThrustCrossEntropyArgs& args, Stream stream) {
  check_args(args);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  return args.dtype == DType::f32 ? run<float>(pass, args, s) : run<__nv_bfloat16>(pass, args, s);
}

}  // namespace actloss::bench::peers
