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
//
// The vocabulary-parallel phases run the same chunks over this shard's rows of the weight, with
// the sharded cross-entropy of cuda/cross_entropy_shard.cu in the middle:
//   stats      per chunk: GEMM, then each token's statistics of the shard;
//   finish     the loss and lse of every token from the gathered statistics alone (no GEMM),
//              then, for the gradients, a prologue (mean: the multiplier upstream / the summed
//              target weights of the gather) and per chunk: GEMM, the shard's gradient of the
//              chunk from its gathered statistics (read in place: one shard's tokens after
//              another's), the bias sums and the two GEMMs, as above.
#include "cuda/row_common.cuh"

#include "cuda/blas.h"

#include <algorithm>
#include <optional>

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

// The sharded mean's gradient multiplier: upstream over the summed target weights of every
// shard's statistics (each token's target weight is in the one shard that holds its class; 0 for
// an ignored token, NaN for an out-of-range one). One block in a fixed order.
__global__ void __launch_bounds__(kSideThreads)
    linear_ce_shard_prologue_kernel(const CrossEntropyShardStats* gathered, std::int64_t count,
                                    const float* upstream, float* grad_multiplier) {
  __shared__ double warp_partials[kSideThreads / kWarpSize];
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += gathered[i].target_weight;
  sum = block_sum(sum, warp_partials);
  if (threadIdx.x == 0) {
    const double scale = upstream != nullptr ? upstream[0] : 1.0;
    *grad_multiplier = static_cast<float>(sum == 0.0 ? 0.0 : scale / sum);
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

// Which call a layout is for: the unsharded op, or one phase of the vocabulary-parallel one.
enum class Stage : std::uint8_t { unsharded, shard_stats, shard_finish };

// Where each part of the call's scratch lies, in bytes from its start (256-byte aligned parts).
struct Layout {
  Stage stage = Stage::unsharded;
  std::int64_t chunk_tokens = 0;
  std::int64_t chunks = 0;
  std::int64_t buffer_stride = 0;   // elements per buffered row (kLinearBufferRowMultiple)
  bool gradients = false;
  bool separate_grad = false;       // 16-bit inputs: the gradient goes to a buffer of `dtype`
  bool per_token = false;          // Reduction::none: row losses and upstream go to their tokens
  bool reduced = false;             // unsharded sum or mean: one loss per chunk, then added
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

// The cross-entropy call of one chunk of `rows` tokens from token `start`, on the buffers. The
// unsharded chunks write their losses and lse; the sharded ones, the statistics or the gradient.
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
  if (layout.stage == Stage::unsharded) {
    if (layout.reduced) {
      ce.loss = chunk_loss;
    } else if (layout.per_token && args.loss != nullptr) {
      ce.loss = args.loss + start;
    }
    if (args.lse != nullptr) ce.lse = args.lse + start;
  }
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

// The sharded finish's loss and lse: one call over every token, from the statistics alone.
CrossEntropyArgs shard_loss_args(const LinearCrossEntropyArgs& args, const Layout& layout) {
  CrossEntropyArgs ce = chunk_args(args, layout, 0, args.tokens, nullptr, nullptr, nullptr, nullptr);
  ce.grad = nullptr;
  ce.upstream_grad = nullptr;
  ce.loss = args.loss;
  ce.lse = args.lse;
  return ce;
}

Status plan_layout(Stage stage, const LinearCrossEntropyArgs& args,
                   const LinearCrossEntropyOptions& options, std::int64_t chunk_tokens,
                   bool gradients, Layout* out) {
  Layout layout;
  layout.stage = stage;
  layout.chunk_tokens = chunk_tokens;
  layout.chunks = chunk_tokens > 0 ? (args.tokens + chunk_tokens - 1) / chunk_tokens : 0;
  layout.buffer_stride = round_up(args.classes, detail::kLinearBufferRowMultiple);
  layout.gradients = gradients;
  layout.separate_grad = gradients && args.dtype != DType::f32;
  layout.per_token = options.loss.reduction == Reduction::none;
  layout.reduced = stage == Stage::unsharded && !layout.per_token && args.loss != nullptr;
  layout.mean = options.loss.reduction == Reduction::mean;
  layout.bias_sums = gradients && args.d_bias != nullptr;

  if (stage == Stage::unsharded) {
    // The cross-entropy's scratch for the largest chunk and for the last, shorter one.
    const CrossEntropyOptions ce_options = chunk_options(options.loss);
    for (const std::int64_t rows :
         {chunk_tokens, args.tokens - (layout.chunks - 1) * chunk_tokens}) {
      if (rows <= 0) continue;
      const CrossEntropyArgs ce =
          chunk_args(args, layout, 0, rows, nullptr, nullptr, nullptr, nullptr);
      std::size_t bytes = 0;
      if (Status status = detail::cuda_cross_entropy_workspace_size(ce, ce_options, &bytes);
          !status.ok())
        return status;
      layout.cross_entropy_bytes = std::max(layout.cross_entropy_bytes, bytes);
    }
  } else if (stage == Stage::shard_finish) {
    // Only the loss over every token needs scratch: the chunks' sums write no loss.
    if (Status status = detail::cuda_cross_entropy_shard_workspace_size(
            shard_loss_args(args, layout), options.loss, &layout.cross_entropy_bytes);
        !status.ok())
      return status;
  }

  const bool chunk_buffers = stage != Stage::shard_finish || gradients;
  std::size_t at = 0;
  const auto place = [&at](std::size_t bytes) {
    const std::size_t offset = at;
    at += (bytes + 255) / 256 * 256;
    return offset;
  };
  const auto buffer_bytes =
      chunk_buffers ? static_cast<std::size_t>(chunk_tokens * layout.buffer_stride) : 0;
  layout.logits = place(buffer_bytes * sizeof(float));
  layout.grad = place(layout.separate_grad ? buffer_bytes * 2 : 0);
  layout.cross_entropy = place(layout.cross_entropy_bytes);
  // Sized whatever the loss and d_bias pointers are, so that linear_cross_entropy_workspace_size
  // need not know them.
  const bool unsharded = stage == Stage::unsharded;
  layout.chunk_losses = place(unsharded && !layout.per_token
                                  ? static_cast<std::size_t>(layout.chunks) * sizeof(float)
                                  : 0);
  layout.denominator = place(unsharded && layout.mean ? sizeof(double) : 0);
  layout.multiplier = place(layout.mean && (unsharded || gradients) ? sizeof(float) : 0);
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

// The chunks of one call: each chunk's logits GEMM, a cross-entropy step of the caller's on the
// buffer, then (with gradients) the bias sums and the two gradient GEMMs.
class Chunks {
 public:
  Chunks(const LinearCrossEntropyArgs& args, const Layout& layout, char* scratch,
         const Gemms& gemms, cudaStream_t stream)
      : args_(args), layout_(layout), gemms_(gemms), stream_(stream),
        logits_(reinterpret_cast<float*>(scratch + layout.logits)),
        grad_(layout.separate_grad ? static_cast<void*>(scratch + layout.grad) : logits_),
        sums_(reinterpret_cast<double*>(scratch + layout.sums)) {}

  float* logits() const { return logits_; }
  void* grad() const { return grad_; }

  // step(chunk index, first token, tokens) queues the chunk's cross-entropy on the buffers.
  template <class Step>
  Status run(const Step& step) const {
    if (layout_.bias_sums) {
      ACTLOSS_CUDA_TRY(
          cudaMemsetAsync(sums_, 0, static_cast<std::size_t>(args_.classes) * 8, stream_));
    }
    for (std::int64_t j = 0; j < layout_.chunks; ++j) {
      const std::int64_t start = j * layout_.chunk_tokens;
      const std::int64_t rows = std::min(layout_.chunk_tokens, args_.tokens - start);
      if (Status status = queue_logits(start, rows); !status.ok()) return status;
      if (Status status = step(j, start, rows); !status.ok()) return status;
      if (!layout_.gradients) continue;
      if (Status status = queue_gradient_products(j, start, rows); !status.ok()) return status;
    }
    if (!layout_.bias_sums) return {};
    return row::with_dtype(kOp, args_.d_weight_dtype, [&](auto tag) -> Status {
      using TW = typename decltype(tag)::type;
      ACTLOSS_CUDA_TRY(simcuda::launch(write_bias_gradient_kernel<TW>,
                                       dim3(grid_size_for(args_.classes, kSideThreads, 65535)),
                                       dim3(kSideThreads), 0, stream_,
                                       static_cast<const double*>(sums_), args_.classes,
                                       args_.accumulate, static_cast<TW*>(args_.d_bias)));
      return {};
    });
  }

 private:
  const void* hidden_rows(std::int64_t start) const {
    return static_cast<const char*>(args_.hidden) +
           start * args_.hidden_row_stride * dtype_size(args_.dtype);
  }

  // logits (V x rows, column-major) = weight (as D x V, transposed) . hidden chunk (D x rows)
  Status queue_logits(std::int64_t start, std::int64_t rows) const {
    float bias_beta = 0.0f;
    if (args_.bias != nullptr) {
      Status status = row::with_dtype(kOp, args_.dtype, [&](auto tag) -> Status {
        using T = typename decltype(tag)::type;
        ACTLOSS_CUDA_TRY(simcuda::launch(broadcast_bias_kernel<T>,
                                         matrix_grid(rows, args_.classes), dim3(kSideThreads), 0,
                                         stream_, static_cast<const T*>(args_.bias), rows,
                                         args_.classes, layout_.buffer_stride, logits_));
        return {};
      });
      if (!status.ok()) return status;
      bias_beta = 1.0f;
    }
    const cudaDataType input_type = blas_type(args_.dtype);
    return gemms_.run(CUBLAS_OP_T, CUBLAS_OP_N, args_.classes, rows, args_.hidden_size,
                      {args_.weight, input_type, args_.weight_row_stride},
                      {hidden_rows(start), input_type, args_.hidden_row_stride}, bias_beta,
                      logits_, CUDA_R_32F, layout_.buffer_stride, "cublasGemmEx (logits)");
  }

  Status queue_gradient_products(std::int64_t j, std::int64_t start, std::int64_t rows) const {
    const std::int64_t ld = layout_.buffer_stride;
    const cudaDataType input_type = blas_type(args_.dtype);
    if (layout_.bias_sums) {
      Status status = row::with_dtype(kOp, args_.dtype, [&](auto tag) -> Status {
        // Float inputs: the float buffer holds the gradient in place.
        using TG = typename decltype(tag)::type;
        ACTLOSS_CUDA_TRY(simcuda::launch(
            bias_gradient_sums_kernel<TG>,
            dim3(grid_size_for(args_.classes, kSideThreads, 65535)), dim3(kSideThreads), 0,
            stream_, static_cast<const TG*>(grad_), rows, args_.classes, ld, sums_));
        return {};
      });
      if (!status.ok()) return status;
    }
    // d_hidden chunk (D x rows) = weight (D x V) . grad (V x rows)
    void* d_hidden = static_cast<char*>(args_.d_hidden) +
                     start * args_.d_hidden_row_stride * dtype_size(args_.dtype);
    if (Status status = gemms_.run(CUBLAS_OP_N, CUBLAS_OP_N, args_.hidden_size, rows,
                                   args_.classes,
                                   {args_.weight, input_type, args_.weight_row_stride},
                                   {grad_, input_type, ld}, 0.0f, d_hidden, input_type,
                                   args_.d_hidden_row_stride, "cublasGemmEx (d_hidden)");
        !status.ok())
      return status;
    // d_weight (D x V) (+)= hidden chunk (D x rows) . grad^T (rows x V)
    const float beta = j == 0 && !args_.accumulate ? 0.0f : 1.0f;
    return gemms_.run(CUBLAS_OP_N, CUBLAS_OP_T, args_.hidden_size, args_.classes, rows,
                      {hidden_rows(start), input_type, args_.hidden_row_stride},
                      {grad_, input_type, ld}, beta, args_.d_weight,
                      blas_type(args_.d_weight_dtype), args_.d_weight_row_stride,
                      "cublasGemmEx (d_weight)");
  }

  const LinearCrossEntropyArgs& args_;
  const Layout& layout_;
  const Gemms& gemms_;
  cudaStream_t stream_;
  float* logits_;
  void* grad_;
  double* sums_;
};

// The cross-entropy calls' exec: the call's own, with the layout's part of the workspace.
Exec cross_entropy_exec(const Exec& exec, const Layout& layout, char* scratch) {
  Exec ce_exec = exec;
  ce_exec.workspace = Workspace{};
  if (layout.cross_entropy_bytes > 0)
    ce_exec.workspace = Workspace{scratch + layout.cross_entropy, layout.cross_entropy_bytes};
  return ce_exec;
}

Status run_unsharded(detail::Pass pass, const LinearCrossEntropyArgs& args,
                     const LinearCrossEntropyOptions& options, const Layout& layout,
                     char* scratch, const Gemms& gemms, const Exec& exec) {
  const cudaStream_t stream = exec.stream;
  auto* const chunk_losses = reinterpret_cast<float*>(scratch + layout.chunk_losses);
  auto* const denominator = reinterpret_cast<double*>(scratch + layout.denominator);
  auto* const multiplier = reinterpret_cast<float*>(scratch + layout.multiplier);

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

  const CrossEntropyOptions ce_options = chunk_options(options.loss);
  const Exec ce_exec = cross_entropy_exec(exec, layout, scratch);
  const Chunks chunks(args, layout, scratch, gemms, stream);
  if (Status status = chunks.run([&](std::int64_t j, std::int64_t start, std::int64_t rows) {
        const CrossEntropyArgs ce = chunk_args(args, layout, start, rows, chunks.logits(),
                                               chunks.grad(), chunk_losses + j, multiplier);
        return detail::cuda_cross_entropy(pass, ce, ce_options, ce_exec);
      });
      !status.ok())
    return status;

  if (layout.reduced && args.loss != nullptr) {
    FinishParams f;
    f.chunk_losses = chunk_losses;
    f.chunks = layout.chunks;
    f.denominator = layout.mean ? denominator : nullptr;
    f.loss = args.loss;
    ACTLOSS_CUDA_TRY(simcuda::launch(linear_ce_finish_kernel, dim3(1), dim3(kSideThreads), 0,
                                     stream, f));
  }
  return {};
}

Status run_shard_stats(const LinearCrossEntropyArgs& args,
                       const LinearCrossEntropyOptions& options, const CrossEntropyShard& shard,
                       CrossEntropyShardStats* stats, const Layout& layout, char* scratch,
                       const Gemms& gemms, const Exec& exec) {
  const Exec ce_exec = cross_entropy_exec(exec, layout, scratch);
  const Chunks chunks(args, layout, scratch, gemms, exec.stream);
  return chunks.run([&](std::int64_t, std::int64_t start, std::int64_t rows) {
    const CrossEntropyArgs ce =
        chunk_args(args, layout, start, rows, chunks.logits(), nullptr, nullptr, nullptr);
    return detail::cuda_cross_entropy_shard_stats(ce, shard, options.loss, stats + start,
                                                  ce_exec);
  });
}

Status run_shard_finish(const LinearCrossEntropyArgs& args,
                        const LinearCrossEntropyOptions& options, const CrossEntropyShard& shard,
                        const CrossEntropyShardStats* gathered, std::int64_t shards,
                        const Layout& layout, char* scratch, const Gemms* gemms,
                        const Exec& exec) {
  const Exec ce_exec = cross_entropy_exec(exec, layout, scratch);
  if (args.loss != nullptr || args.lse != nullptr) {
    if (Status status = detail::cuda_cross_entropy_shard_finish(
            shard_loss_args(args, layout), shard, options.loss, gathered, shards, args.tokens,
            ce_exec);
        !status.ok())
      return status;
  }
  if (!layout.gradients) return {};

  auto* const multiplier = reinterpret_cast<float*>(scratch + layout.multiplier);
  if (layout.mean) {
    ACTLOSS_CUDA_TRY(simcuda::launch(linear_ce_shard_prologue_kernel, dim3(1),
                                     dim3(kSideThreads), 0, exec.stream, gathered,
                                     shards * args.tokens, args.upstream_grad, multiplier));
  }
  const CrossEntropyOptions ce_options = chunk_options(options.loss);
  const Chunks chunks(args, layout, scratch, *gemms, exec.stream);
  return chunks.run([&](std::int64_t, std::int64_t start, std::int64_t rows) {
    const CrossEntropyArgs ce = chunk_args(args, layout, start, rows, chunks.logits(),
                                           chunks.grad(), nullptr, multiplier);
    return detail::cuda_cross_entropy_shard_finish(ce, shard, ce_options, gathered + start,
                                                   shards, args.tokens, ce_exec);
  });
}

// cuBLAS, its handle on the call's stream (the caller's handle gets its own stream back).
struct BlasOnStream {
  const BlasApi* api = nullptr;
  cublasHandle_t handle = nullptr;
  StreamOnHandle stream_on_handle;

  Status set(const LinearCrossEntropyArgs& args, cudaStream_t stream) {
    if (Status status = blas_api(&api); !status.ok()) return status;
    handle = args.blas_handle;
    if (handle == nullptr) {
      if (Status status = thread_blas_handle(*api, &handle); !status.ok()) return status;
    }
    return stream_on_handle.set(*api, handle, stream, args.blas_handle != nullptr);
  }
};

// What one call holds while it queues its work: cuBLAS on its stream (when it runs a GEMM), its
// layout, and its scratch (the caller's workspace, or stream-ordered memory).
struct Call {
  BlasOnStream blas;
  Layout layout;
  CallScratch scratch;

  Status prepare(Stage stage, bool gradients, bool runs_gemms, const LinearCrossEntropyArgs& args,
                 const LinearCrossEntropyOptions& options, std::int64_t chunk_tokens,
                 const Exec& exec, const char* size_query) {
    if (runs_gemms) {
      if (Status status = blas.set(args, exec.stream); !status.ok()) return status;
    }
    if (Status status = plan_layout(stage, args, options, chunk_tokens, gradients, &layout);
        !status.ok())
      return status;
    return scratch.acquire(layout.total, exec.workspace, exec.stream, size_query);
  }

  Gemms gemms() const { return Gemms(*blas.api, blas.handle); }
};

// A reduced loss over no tokens is 0, and so are gradients summed over none.
Status write_outputs_of_no_tokens(const LinearCrossEntropyArgs& args,
                                  const LinearCrossEntropyOptions& options, bool gradients,
                                  cudaStream_t stream) {
  if (args.loss != nullptr && options.loss.reduction != Reduction::none)
    ACTLOSS_CUDA_TRY(cudaMemsetAsync(args.loss, 0, sizeof(float), stream));
  if (gradients && !args.accumulate) return zero_weight_gradients(args, stream);
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
  if (Status status = cuda::plan_layout(cuda::Stage::unsharded, args, options, chunk_tokens,
                                        gradients, &layout);
      !status.ok())
    return status;
  *bytes = layout.total;
  return {};
}

Status cuda_linear_cross_entropy_shard_workspace_size(const LinearCrossEntropyArgs& args,
                                                      const LinearCrossEntropyOptions& options,
                                                      std::int64_t stats_chunk_tokens,
                                                      std::int64_t finish_chunk_tokens,
                                                      std::size_t* bytes) {
  *bytes = 0;
  if (args.tokens == 0) return {};
  cuda::Layout stats, finish;
  if (Status status = cuda::plan_layout(cuda::Stage::shard_stats, args, options,
                                        stats_chunk_tokens, false, &stats);
      !status.ok())
    return status;
  if (Status status = cuda::plan_layout(cuda::Stage::shard_finish, args, options,
                                        finish_chunk_tokens, true, &finish);
      !status.ok())
    return status;
  *bytes = std::max(stats.total, finish.total);
  return {};
}

Status cuda_linear_cross_entropy(Pass pass, const LinearCrossEntropyArgs& args,
                                 const LinearCrossEntropyOptions& options,
                                 std::int64_t chunk_tokens, const Exec& exec) {
  using namespace actloss::cuda;
  const bool gradients = pass != Pass::forward;
  if (args.tokens == 0) return write_outputs_of_no_tokens(args, options, gradients, exec.stream);
  Call call;
  if (Status status = call.prepare(Stage::unsharded, gradients, true, args, options, chunk_tokens,
                                   exec, "linear_cross_entropy_workspace_size");
      !status.ok())
    return status;
  return run_unsharded(pass, args, options, call.layout, call.scratch.as<char>(), call.gemms(),
                       exec);
}

Status cuda_linear_cross_entropy_shard_stats(const LinearCrossEntropyArgs& args,
                                             const CrossEntropyShard& shard,
                                             const LinearCrossEntropyOptions& options,
                                             std::int64_t chunk_tokens,
                                             CrossEntropyShardStats* stats, const Exec& exec) {
  using namespace actloss::cuda;
  if (args.tokens == 0) return {};
  Call call;
  if (Status status = call.prepare(Stage::shard_stats, false, true, args, options, chunk_tokens,
                                   exec, "linear_cross_entropy_shard_workspace_size");
      !status.ok())
    return status;
  return run_shard_stats(args, options, shard, stats, call.layout, call.scratch.as<char>(),
                         call.gemms(), exec);
}

Status cuda_linear_cross_entropy_shard_finish(Pass pass, const LinearCrossEntropyArgs& args,
                                              const CrossEntropyShard& shard,
                                              const LinearCrossEntropyOptions& options,
                                              std::int64_t chunk_tokens,
                                              const CrossEntropyShardStats* gathered,
                                              std::int64_t shards, const Exec& exec) {
  using namespace actloss::cuda;
  const bool gradients = pass != Pass::forward;
  if (args.tokens == 0) return write_outputs_of_no_tokens(args, options, gradients, exec.stream);
  // The loss alone needs no GEMM, and so no cuBLAS.
  Call call;
  if (Status status = call.prepare(Stage::shard_finish, gradients, gradients, args, options,
                                   chunk_tokens, exec, "linear_cross_entropy_shard_workspace_size");
      !status.ok())
    return status;
  std::optional<Gemms> gemms;
  if (gradients) gemms.emplace(call.gemms());
  return run_shard_finish(args, options, shard, gathered, shards, call.layout,
                          call.scratch.as<char>(), gemms ? &*gemms : nullptr, exec);
}

}  // namespace actloss::detail
