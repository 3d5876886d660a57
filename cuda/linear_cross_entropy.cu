// Fused linear + cross-entropy on CUDA (include/actloss/linear_cross_entropy.h): cuBLAS GEMMs
// around the cross-entropy kernels of cuda/cross_entropy.cu, chunk by chunk over the tokens.
//
// One call queues, on exec.stream and without waiting:
//   prologue   (mean only) one block sums the target weights of every token: the mean's
//              denominator, and the gradient's multiplier upstream / denominator, on the device;
//   per chunk  [bias rows into the buffer] GEMM logits = hidden_chunk weight^T (+ bias), float32;
//              cross-entropy forward+backward on the buffer, as a sum, its gradient multiplied
//              by that multiplier (in place for float32, else into a buffer of `dtype`, which
//              the GEMMs below need for both operands); [bias gradient's column sums];
//              GEMM d_hidden_chunk = grad weight; GEMM d_weight (+)= grad^T hidden_chunk;
//   finish     the chunks' losses added in chunk order (over the denominator for mean), and
//              d_bias from its double column sums.
// Everything is in a fixed order and the GEMMs are cuBLAS's reproducible ones, so the same call
// gives the same bits. The workspace holds the chunk buffers, the cross-entropy's own scratch,
// one loss per chunk and the bias sums.
#include "cuda/row_common.cuh"

#include "cuda/blas.h"

#include <algorithm>

namespace actloss::cuda {
namespace {

constexpr int kSideThreads = 256;
constexpr const char* kOp = "linear_cross_entropy";

// ---------------------------------------------------------------------------------------------
// Kernels: the small steps between the GEMMs.

struct PrologueParams {
  const void* targets = nullptr;
  bool targets_i32 = false;
  std::int64_t tokens = 0;
  std::int64_t classes = 0;
  std::int64_t ignore_index = -100;
  const float* class_weight = nullptr;
  const float* upstream = nullptr;  // [1] or null (1)
  double* denominator = nullptr;
  float* grad_multiplier = nullptr;
};

// The mean's denominator: the summed class weights of the tokens not ignored (NaN when a target
// is out of range, as the reference; the chunks' cross-entropy records that error). One block in
// a fixed order, so the sum is reproducible.
__global__ void __launch_bounds__(kSideThreads) linear_ce_prologue_kernel(PrologueParams p) {
  __shared__ double warp_partials[kSideThreads / kWarpSize];
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < p.tokens; i += blockDim.x) {
    const std::int64_t y = p.targets_i32 ? static_cast<const std::int32_t*>(p.targets)[i]
                                         : static_cast<const std::int64_t*>(p.targets)[i];
    if (y == p.ignore_index) continue;
    if (y < 0 || y >= p.classes)
      sum += NAN;
    else
      sum += p.class_weight != nullptr ? p.class_weight[y] : 1.0f;
  }
  sum = block_sum(sum, warp_partials);
  if (threadIdx.x == 0) {
    const double upstream = p.upstream != nullptr ? p.upstream[0] : 1.0;
    *p.denominator = sum;
    // A zero denominator (every token ignored) gives a zero gradient, as the reference.
    *p.grad_multiplier = static_cast<float>(sum == 0.0 ? 0.0 : upstream / sum);
  }
}

struct FinishParams {
  const float* chunk_losses = nullptr;
  std::int64_t chunks = 0;
  const double* denominator = nullptr;  // mean; null for sum
  float* loss = nullptr;
};

__global__ void __launch_bounds__(kSideThreads) linear_ce_finish_kernel(FinishParams p) {
  __shared__ double warp_partials[kSideThreads / kWarpSize];
  double sum = 0.0;
  for (std::int64_t j = threadIdx.x; j < p.chunks; j += blockDim.x) sum += p.chunk_losses[j];
  sum = block_sum(sum, warp_partials);
  if (threadIdx.x == 0) {
    double value = sum;
    if (p.denominator != nullptr) {
      const double denominator = *p.denominator;
      value = denominator == 0.0 && sum == sum ? 0.0 : sum / denominator;
    }
    *p.loss = static_cast<float>(value);
  }
}

// Every logits row of the chunk starts as the bias; the GEMM adds the product (beta = 1).
template <class T>
__global__ void __launch_bounds__(kSideThreads)
    broadcast_bias_kernel(const T* bias, std::int64_t rows, std::int64_t classes,
                          std::int64_t row_stride, float* logits) {
  const std::int64_t first = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const std::int64_t step = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (std::int64_t c = first; c < classes; c += step)
      logits[r * row_stride + c] = to_float(bias[c]);
}

// The bias gradient's share of a chunk: column sums of the logits' gradient, in double, one
// thread per class walking the rows in order (adjacent threads read adjacent classes).
template <class TG>
__global__ void __launch_bounds__(kSideThreads)
    bias_gradient_sums_kernel(const TG* grad, std::int64_t rows, std::int64_t classes,
                              std::int64_t row_stride, double* sums) {
  const std::int64_t step = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t c = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; c < classes;
       c += step) {
    double sum = 0.0;
    for (std::int64_t r = 0; r < rows; ++r) sum += to_float(grad[r * row_stride + c]);
    sums[c] += sum;
  }
}

template <class TW>
__global__ void __launch_bounds__(kSideThreads)
    write_bias_gradient_kernel(const double* sums, std::int64_t classes, bool accumulate,
                               TW* d_bias) {
  const std::int64_t step = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t c = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; c < classes;
       c += step) {
    double value = sums != nullptr ? sums[c] : 0.0;
    if (accumulate) value += to_float(d_bias[c]);
    d_bias[c] = from_float<TW>(static_cast<float>(value));
  }
}

// d_weight of a call without tokens (and without accumulate): zero.
template <class T>
__global__ void __launch_bounds__(kSideThreads)
    zero_matrix_kernel(T* data, std::int64_t rows, std::int64_t cols, std::int64_t row_stride) {
  const std::int64_t first = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const std::int64_t step = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (std::int64_t c = first; c < cols; c += step)
      data[r * row_stride + c] = from_float<T>(0.0f);
}

// ---------------------------------------------------------------------------------------------
// Launchers.

// A 2D grid over rows x cols: columns across blocks.x, rows across blocks.y.
dim3 matrix_grid(std::int64_t rows, std::int64_t cols) {
  return dim3(grid_size_for(cols, kSideThreads, 64), grid_size_for(rows, 1, 65535));
}

cudaDataType blas_type(DType dtype) {
  switch (dtype) {
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

// A matrix operand of a GEMM: its element type and leading dimension (the row stride of a
// row-major matrix, which cuBLAS sees as its transpose in column-major order).
struct Operand {
  const void* data;
  cudaDataType type;
  std::int64_t ld;
};

class Gemms {
 public:
  Gemms(const BlasApi& api, cublasHandle_t handle) : api_(api), handle_(handle) {}

  // C = op(A) op(B) + beta C, column-major, m x n, inner dimension k.
  Status run(cublasOperation_t transa, cublasOperation_t transb, std::int64_t m, std::int64_t n,
             std::int64_t k, Operand a, Operand b, float beta, void* c, cudaDataType c_type,
             std::int64_t ldc, const char* what) const {
    const float alpha = 1.0f;
    const cublasStatus_t status = api_.gemm_ex(
        handle_, transa, transb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
        &alpha, a.data, a.type, static_cast<int>(a.ld), b.data, b.type, static_cast<int>(b.ld),
        &beta, c, c_type, static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (status != CUBLAS_STATUS_SUCCESS) return blas_status(api_, status, what);
    return {};
  }

 private:
  const BlasApi& api_;
  cublasHandle_t handle_;
};

// The caller's handle gets its own stream back however the call ends.
class StreamOnHandle {
 public:
  StreamOnHandle() = default;
  StreamOnHandle(const StreamOnHandle&) = delete;
  StreamOnHandle& operator=(const StreamOnHandle&) = delete;
  ~StreamOnHandle() {
    if (api_ != nullptr) (void)api_->set_stream(handle_, previous_);
  }
  Status set(const BlasApi& api, cublasHandle_t handle, cudaStream_t stream, bool restore) {
    if (restore) {
      if (const cublasStatus_t status = api.get_stream(handle, &previous_);
          status != CUBLAS_STATUS_SUCCESS)
        return blas_status(api, status, "cublasGetStream (exec.blas_handle)");
    }
    if (const cublasStatus_t status = api.set_stream(handle, stream);
        status != CUBLAS_STATUS_SUCCESS)
      return blas_status(api, status, "cublasSetStream");
    if (restore) {
      api_ = &api;
      handle_ = handle;
    }
    return {};
  }

 private:
  const BlasApi* api_ = nullptr;
  cublasHandle_t handle_ = nullptr;
  cudaStream_t previous_ = nullptr;
};

std::int64_t round_up(std::int64_t value, std::int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Where each part of the call's scratch lies, in bytes from its start (256-byte aligned parts).
struct Layout {
  std::int64_t chunk_tokens = 0;
  std::int64_t chunks = 0;
  std::int64_t buffer_stride = 0;   // elements per buffered row (kLinearBufferRowMultiple)
  bool gradients = false;
  bool separate_grad = false;       // 16-bit inputs: the gradient goes to a buffer of `dtype`
  bool per_token = false;          // Reduction::none: row losses and upstream go to their tokens
  bool reduced = false;             // a sum or mean is written: one loss per chunk, then added
  bool mean = false;
  bool bias_sums = false;
  std::size_t logits = 0, grad = 0, cross_entropy = 0, chunk_losses = 0, denominator = 0,
              multiplier = 0, sums = 0, total = 0;
  std::size_t cross_entropy_bytes = 0;
};

CrossEntropyOptions chunk_options(const CrossEntropyOptions& options) {
  CrossEntropyOptions chunk = options;
  // Each chunk's sum; the mean's denominator spans every token and comes from the prologue.
  if (chunk.reduction == Reduction::mean) chunk.reduction = Reduction::sum;
  return chunk;
}

// The cross-entropy call of one chunk of `rows` tokens from token `start`, on the buffers.
CrossEntropyArgs chunk_args(const LinearCrossEntropyArgs& args, const Layout& layout,
                            std::int64_t start, std::int64_t rows, float* logits, void* grad,
                            float* chunk_loss, const float* multiplier) {
  CrossEntropyArgs ce;
  ce.rows = rows;
  ce.classes = args.classes;
  ce.rows_per_batch = rows > 0 ? rows : 1;
  ce.logits = logits;
  ce.logits_dtype = DType::f32;
  ce.logits_row_stride = layout.buffer_stride;
  ce.logits_batch_stride = rows * layout.buffer_stride;
  const std::int64_t index_size = args.target_kind == TargetKind::class_index_i32 ? 4 : 8;
  ce.targets = args.targets != nullptr
                   ? static_cast<const char*>(args.targets) + start * index_size
                   : nullptr;
  ce.target_kind = args.target_kind;
  ce.target_row_stride = args.classes;
  ce.target_batch_stride = ce.rows_per_batch;
  ce.class_weight = args.class_weight;
  if (layout.reduced) {
    ce.loss = chunk_loss;
  } else if (layout.per_token && args.loss != nullptr) {
    ce.loss = args.loss + start;
  }
  if (args.lse != nullptr) ce.lse = args.lse + start;
  ce.grad_row_stride = layout.buffer_stride;
  ce.grad_batch_stride = rows * layout.buffer_stride;
  if (layout.gradients) {
    ce.grad = grad;
    ce.grad_dtype = layout.separate_grad ? args.dtype : DType::f32;
    ce.grad_scale = args.grad_scale;
    if (layout.mean) {
      ce.upstream_grad = multiplier;
    } else if (!layout.per_token) {
      ce.upstream_grad = args.upstream_grad;
    } else if (args.upstream_grad != nullptr) {
      ce.upstream_grad = args.upstream_grad + start;
    }
  }
  return ce;
}

Status plan_layout(const LinearCrossEntropyArgs& args, const LinearCrossEntropyOptions& options,
                   std::int64_t chunk_tokens, bool gradients, Layout* out) {
  Layout layout;
  layout.chunk_tokens = chunk_tokens;
  layout.chunks = chunk_tokens > 0 ? (args.tokens + chunk_tokens - 1) / chunk_tokens : 0;
  layout.buffer_stride = round_up(args.classes, detail::kLinearBufferRowMultiple);
  layout.gradients = gradients;
  layout.separate_grad = gradients && args.dtype != DType::f32;
  layout.per_token = options.loss.reduction == Reduction::none;
  layout.reduced = !layout.per_token && args.loss != nullptr;
  layout.mean = options.loss.reduction == Reduction::mean;
  layout.bias_sums = gradients && args.d_bias != nullptr;

  // The cross-entropy's scratch for the largest chunk and for the last, shorter one.
  const CrossEntropyOptions ce_options = chunk_options(options.loss);
  for (const std::int64_t rows : {chunk_tokens, args.tokens - (layout.chunks - 1) * chunk_tokens}) {
    if (rows <= 0) continue;
    const CrossEntropyArgs ce =
        chunk_args(args, layout, 0, rows, nullptr, nullptr, nullptr, nullptr);
    std::size_t bytes = 0;
    if (Status status = detail::cuda_cross_entropy_workspace_size(ce, ce_options, &bytes);
        !status.ok())
      return status;
    layout.cross_entropy_bytes = std::max(layout.cross_entropy_bytes, bytes);
  }

  std::size_t at = 0;
  const auto place = [&at](std::size_t bytes) {
    const std::size_t offset = at;
    at += (bytes + 255) / 256 * 256;
    return offset;
  };
  const auto buffer_bytes = static_cast<std::size_t>(chunk_tokens * layout.buffer_stride);
  layout.logits = place(buffer_bytes * sizeof(float));
  layout.grad = place(layout.separate_grad ? buffer_bytes * 2 : 0);
  layout.cross_entropy = place(layout.cross_entropy_bytes);
  // Sized whatever the loss and d_bias pointers are, so that linear_cross_entropy_workspace_size
  // need not know them.
  layout.chunk_losses =
      place(!layout.per_token ? static_cast<std::size_t>(layout.chunks) * sizeof(float) : 0);
  layout.denominator = place(layout.mean ? sizeof(double) : 0);
  layout.multiplier = place(layout.mean ? sizeof(float) : 0);
  layout.sums = place(gradients ? static_cast<std::size_t>(args.classes) * sizeof(double) : 0);
  layout.total = at;
  *out = layout;
  return {};
}

Status zero_weight_gradients(const LinearCrossEntropyArgs& args, cudaStream_t stream) {
  return row::with_dtype(kOp, args.d_weight_dtype, [&](auto tag) -> Status {
    using TW = typename decltype(tag)::type;
    if (args.d_weight != nullptr && args.classes > 0 && args.hidden_size > 0) {
      ACTLOSS_CUDA_TRY(simcuda::launch(zero_matrix_kernel<TW>,
                                       matrix_grid(args.classes, args.hidden_size),
                                       dim3(kSideThreads), 0, stream,
                                       static_cast<TW*>(args.d_weight), args.classes,
                                       args.hidden_size, args.d_weight_row_stride));
    }
    if (args.d_bias != nullptr && args.classes > 0) {
      ACTLOSS_CUDA_TRY(simcuda::launch(zero_matrix_kernel<TW>, matrix_grid(1, args.classes),
                                       dim3(kSideThreads), 0, stream,
                                       static_cast<TW*>(args.d_bias), std::int64_t{1},
                                       args.classes, args.classes));
    }
    return {};
  });
}

Status run_chunks(detail::Pass pass, const LinearCrossEntropyArgs& args,
                  const LinearCrossEntropyOptions& options, const Layout& layout,
                  char* scratch, const Gemms& gemms, const Exec& exec) {
  const cudaStream_t stream = exec.stream;
  auto* const logits = reinterpret_cast<float*>(scratch + layout.logits);
  void* const grad = layout.separate_grad ? static_cast<void*>(scratch + layout.grad) : logits;
  auto* const chunk_losses = reinterpret_cast<float*>(scratch + layout.chunk_losses);
  auto* const denominator = reinterpret_cast<double*>(scratch + layout.denominator);
  auto* const multiplier = reinterpret_cast<float*>(scratch + layout.multiplier);
  auto* const sums = reinterpret_cast<double*>(scratch + layout.sums);
  const std::int64_t dtype_bytes = dtype_size(args.dtype);
  const cudaDataType input_type = blas_type(args.dtype);
  const cudaDataType weight_grad_type = blas_type(args.d_weight_dtype);
  const std::int64_t ld = layout.buffer_stride;

  if (layout.mean) {
    PrologueParams p;
    p.targets = args.targets;
    p.targets_i32 = args.target_kind == TargetKind::class_index_i32;
    p.tokens = args.tokens;
    p.classes = args.classes;
    p.ignore_index = options.loss.ignore_index;
    p.class_weight = args.class_weight;
    p.upstream = args.upstream_grad;
    p.denominator = denominator;
    p.grad_multiplier = multiplier;
    ACTLOSS_CUDA_TRY(simcuda::launch(linear_ce_prologue_kernel, dim3(1), dim3(kSideThreads), 0,
                                     stream, p));
  }
  if (layout.bias_sums) {
    ACTLOSS_CUDA_TRY(cudaMemsetAsync(sums, 0, static_cast<std::size_t>(args.classes) * 8, stream));
  }

  const CrossEntropyOptions ce_options = chunk_options(options.loss);
  Exec ce_exec = exec;
  ce_exec.workspace = Workspace{scratch + layout.cross_entropy, layout.cross_entropy_bytes};
  if (layout.cross_entropy_bytes == 0) ce_exec.workspace = Workspace{};

  for (std::int64_t j = 0; j < layout.chunks; ++j) {
    const std::int64_t start = j * layout.chunk_tokens;
    const std::int64_t rows = std::min(layout.chunk_tokens, args.tokens - start);
    const void* hidden =
        static_cast<const char*>(args.hidden) + start * args.hidden_row_stride * dtype_bytes;

    // logits (V x rows, column-major) = weight (as D x V, transposed) . hidden chunk (D x rows)
    float bias_beta = 0.0f;
    if (args.bias != nullptr) {
      Status status = row::with_dtype(kOp, args.dtype, [&](auto tag) -> Status {
        using T = typename decltype(tag)::type;
        ACTLOSS_CUDA_TRY(simcuda::launch(broadcast_bias_kernel<T>, matrix_grid(rows, args.classes),
                                         dim3(kSideThreads), 0, stream,
                                         static_cast<const T*>(args.bias), rows, args.classes,
                                         ld, logits));
        return {};
      });
      if (!status.ok()) return status;
      bias_beta = 1.0f;
    }
    if (Status status = gemms.run(CUBLAS_OP_T, CUBLAS_OP_N, args.classes, rows, args.hidden_size,
                                  {args.weight, input_type, args.weight_row_stride},
                                  {hidden, input_type, args.hidden_row_stride}, bias_beta, logits,
                                  CUDA_R_32F, ld, "cublasGemmEx (logits)");
        !status.ok())
      return status;

    const CrossEntropyArgs ce =
        chunk_args(args, layout, start, rows, logits, grad, chunk_losses + j, multiplier);
    if (Status status = detail::cuda_cross_entropy(pass, ce, ce_options, ce_exec); !status.ok())
      return status;
    if (pass == detail::Pass::forward) continue;

    if (layout.bias_sums) {
      Status status = row::with_dtype(kOp, args.dtype, [&](auto tag) -> Status {
        // Float inputs: the float buffer holds the gradient in place.
        using TG = typename decltype(tag)::type;
        ACTLOSS_CUDA_TRY(simcuda::launch(
            bias_gradient_sums_kernel<TG>,
            dim3(grid_size_for(args.classes, kSideThreads, 65535)), dim3(kSideThreads), 0, stream,
            static_cast<const TG*>(grad), rows, args.classes, ld, sums));
        return {};
      });
      if (!status.ok()) return status;
    }
    // d_hidden chunk (D x rows) = weight (D x V) . grad (V x rows)
    void* d_hidden =
        static_cast<char*>(args.d_hidden) + start * args.d_hidden_row_stride * dtype_bytes;
    if (Status status = gemms.run(CUBLAS_OP_N, CUBLAS_OP_N, args.hidden_size, rows, args.classes,
                                  {args.weight, input_type, args.weight_row_stride},
                                  {grad, input_type, ld}, 0.0f, d_hidden, input_type,
                                  args.d_hidden_row_stride, "cublasGemmEx (d_hidden)");
        !status.ok())
      return status;
    // d_weight (D x V) (+)= hidden chunk (D x rows) . grad^T (rows x V)
    const float beta = j == 0 && !args.accumulate ? 0.0f : 1.0f;
    if (Status status = gemms.run(CUBLAS_OP_N, CUBLAS_OP_T, args.hidden_size, args.classes, rows,
                                  {hidden, input_type, args.hidden_row_stride},
                                  {grad, input_type, ld}, beta, args.d_weight, weight_grad_type,
                                  args.d_weight_row_stride, "cublasGemmEx (d_weight)");
        !status.ok())
      return status;
  }

  if (layout.reduced && args.loss != nullptr) {
    FinishParams f;
    f.chunk_losses = chunk_losses;
    f.chunks = layout.chunks;
    f.denominator = layout.mean ? denominator : nullptr;
    f.loss = args.loss;
    ACTLOSS_CUDA_TRY(simcuda::launch(linear_ce_finish_kernel, dim3(1), dim3(kSideThreads), 0,
                                     stream, f));
  }
  if (layout.bias_sums) {
    return row::with_dtype(kOp, args.d_weight_dtype, [&](auto tag) -> Status {
      using TW = typename decltype(tag)::type;
      ACTLOSS_CUDA_TRY(simcuda::launch(write_bias_gradient_kernel<TW>,
                                       dim3(grid_size_for(args.classes, kSideThreads, 65535)),
                                       dim3(kSideThreads), 0, stream,
                                       static_cast<const double*>(sums), args.classes,
                                       args.accumulate, static_cast<TW*>(args.d_bias)));
      return {};
    });
  }
  return {};
}

}  // namespace
}  // namespace actloss::cuda

namespace actloss::detail {

Status cuda_linear_cross_entropy_workspace_size(const LinearCrossEntropyArgs& args,
                                                const LinearCrossEntropyOptions& options,
                                                std::int64_t chunk_tokens, bool gradients,
                                                std::size_t* bytes) {
  *bytes = 0;
  if (args.tokens == 0) return {};
  cuda::Layout layout;
  if (Status status = cuda::plan_layout(args, options, chunk_tokens, gradients, &layout);
      !status.ok())
    return status;
  *bytes = layout.total;
  return {};
}

Status cuda_linear_cross_entropy(Pass pass, const LinearCrossEntropyArgs& args,
                                 const LinearCrossEntropyOptions& options,
                                 std::int64_t chunk_tokens, const Exec& exec) {
  using namespace actloss::cuda;
  const cudaStream_t stream = exec.stream;
  const bool gradients = pass != Pass::forward;
  if (args.tokens == 0) {
    // A reduced loss over no tokens is 0, and so are gradients summed over none.
    if (args.loss != nullptr && options.loss.reduction != Reduction::none)
      ACTLOSS_CUDA_TRY(cudaMemsetAsync(args.loss, 0, sizeof(float), stream));
    if (gradients && !args.accumulate) return zero_weight_gradients(args, stream);
    return {};
  }

  const BlasApi* api = nullptr;
  if (Status status = blas_api(&api); !status.ok()) return status;
  cublasHandle_t handle = args.blas_handle;
  if (handle == nullptr) {
    if (Status status = thread_blas_handle(*api, &handle); !status.ok()) return status;
  }
  StreamOnHandle stream_on_handle;
  if (Status status = stream_on_handle.set(*api, handle, stream, args.blas_handle != nullptr);
      !status.ok())
    return status;

  Layout layout;
  if (Status status = plan_layout(args, options, chunk_tokens, gradients, &layout); !status.ok())
    return status;
  CallScratch scratch;
  if (Status status = scratch.acquire(layout.total, exec.workspace, stream,
                                      "linear_cross_entropy_workspace_size");
      !status.ok())
    return status;
  return run_chunks(pass, args, options, layout, scratch.as<char>(), Gemms(*api, handle), exec);
}

}  // namespace actloss::detail
