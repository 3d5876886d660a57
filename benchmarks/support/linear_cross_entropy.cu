// See linear_cross_entropy.h. A .cu file for its headers, not for kernels: cuda/blas.h starts with
// simcuda.h, which must see nvcc (or, in the simulator build, be the CUDA front end itself).
#include "cuda/blas.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include <actloss/cross_entropy.h>
#include <actloss/linear_cross_entropy.h>

#include "benchmarks/support/linear_cross_entropy.h"
#include "benchmarks/support/memory.h"

namespace actloss::bench {
namespace {

void check_cuda(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(error));
  }
}

void check_status(const Status& status, const char* what) {
  if (!status.ok()) throw std::runtime_error(std::string(what) + ": " + status.message());
}

cudaStream_t stream() { return reinterpret_cast<cudaStream_t>(bench_stream()); }

cudaDataType blas_type(DType dtype) {
  switch (dtype) {
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

std::size_t free_device_bytes() {
  std::size_t free_bytes = 0, total_bytes = 0;
  check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  return free_bytes;
}

// Operands are tiled from a pattern of this many values: enough that no GEMM tile sees a
// repeating block, small enough to build on the host in milliseconds.
constexpr std::size_t kPatternValues = std::size_t{1} << 20;

Buffer filled(std::int64_t count, DType dtype, double low, double high, std::uint64_t seed) {
  Buffer buffer(Device::cuda, static_cast<std::size_t>(count * dtype_size(dtype)));
  fill_tiled(buffer, uniform_pattern(std::min<std::size_t>(kPatternValues,
                                                           static_cast<std::size_t>(count)),
                                     dtype, low, high, seed));
  return buffer;
}

CrossEntropyArgs full_logits_args(const LinearCrossEntropyShape& s) {
  CrossEntropyArgs ce;
  ce.rows = s.tokens;
  ce.classes = s.classes;
  ce.logits_dtype = DType::f32;
  ce.target_kind = TargetKind::class_index_i64;
  ce.grad_dtype = s.dtype;
  return ce;
}

Exec cuda_exec() {
  Exec exec;
  exec.device = Device::cuda;
  exec.stream = bench_stream();
  return exec;
}

std::size_t cross_entropy_scratch(const LinearCrossEntropyShape& s) {
  std::size_t bytes = 0;
  check_status(cross_entropy_workspace_size(full_logits_args(s), CrossEntropyOptions{},
                                            cuda_exec(), &bytes),
               "cross_entropy_workspace_size");
  return bytes;
}

}  // namespace

const char* to_string(LinearCePath path) {
  switch (path) {
    case LinearCePath::fused: return "actloss";
    case LinearCePath::gemms: return "gemms";
    case LinearCePath::unfused: return "unfused";
    case LinearCePath::sharded: return "actloss_sharded";
  }
  return "?";
}

std::string linear_ce_name(const LinearCeCase& c) {
  const char* dtype = c.shape.dtype == DType::f32 ? "f32" : c.shape.dtype == DType::f16 ? "f16"
                                                                                         : "bf16";
  std::string name = std::string("cuda/") + to_string(c.path) + "/linear_cross_entropy/fused/" +
                     dtype + "/tokens:" + std::to_string(c.shape.tokens) +
                     "/hidden:" + std::to_string(c.shape.hidden) +
                     "/classes:" + std::to_string(c.shape.classes);
  if (c.path != LinearCePath::gemms && c.path != LinearCePath::unfused && c.chunk_tokens > 0)
    name += "/chunk_tokens:" + std::to_string(c.chunk_tokens);
  return name;
}

std::size_t unfused_linear_ce_extra_bytes(const LinearCrossEntropyShape& shape) {
  return static_cast<std::size_t>(linear_cross_entropy_full_logits_bytes(shape)) +
         cross_entropy_scratch(shape);
}

struct LinearCeWorkload::State {
  LinearCeCase c;
  const cuda::BlasApi* api = nullptr;
  cublasHandle_t handle = nullptr;

  // Operands.
  Buffer hidden, weight, targets, loss, d_hidden, d_weight;
  // The path's own.
  Buffer workspace, logits, grad, stats;
  std::size_t extra = 0;
  std::size_t free_before_extra = 0;

  LinearCrossEntropyArgs fused_args;
  LinearCrossEntropyOptions fused_options;
  CrossEntropyArgs ce_args;
  Exec exec;

  std::vector<cudaEvent_t> events;
  std::vector<const char*> stage_names;

  ~State() {
    for (cudaEvent_t event : events) (void)cudaEventDestroy(event);
  }

  // C (m x n, column-major) = op(A) op(B), as cuda/linear_cross_entropy.cu calls it.
  void gemm(cublasOperation_t transa, cublasOperation_t transb, std::int64_t m, std::int64_t n,
            std::int64_t k, const void* a, cudaDataType a_type, std::int64_t lda, const void* b,
            cudaDataType b_type, std::int64_t ldb, void* out, cudaDataType c_type,
            std::int64_t ldc, const char* what) const {
    const float alpha = 1.0f, beta = 0.0f;
    const cublasStatus_t status =
        api->gemm_ex(handle, transa, transb, static_cast<int>(m), static_cast<int>(n),
                     static_cast<int>(k), &alpha, a, a_type, static_cast<int>(lda), b, b_type,
                     static_cast<int>(ldb), &beta, out, c_type, static_cast<int>(ldc),
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (status != CUBLAS_STATUS_SUCCESS)
      check_status(cuda::blas_status(*api, status, what), "linear cross-entropy benchmark");
  }

  // The row-major products of the header, in cuBLAS's column-major terms (a row-major [R x C]
  // matrix is its column-major transpose): the fused call's own three GEMMs at full size.
  void logits_gemm() const {
    const auto& s = c.shape;
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, s.classes, s.tokens, s.hidden, weight.data(),
         blas_type(s.dtype), s.hidden, hidden.data(), blas_type(s.dtype), s.hidden, logits.data(),
         CUDA_R_32F, s.classes, "cublasGemmEx (logits)");
  }
  void d_hidden_gemm() const {
    const auto& s = c.shape;
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, s.hidden, s.tokens, s.classes, weight.data(),
         blas_type(s.dtype), s.hidden, grad.data(), blas_type(s.dtype), s.classes,
         d_hidden.data(), blas_type(s.dtype), s.hidden, "cublasGemmEx (d_hidden)");
  }
  void d_weight_gemm() const {
    const auto& s = c.shape;
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, s.hidden, s.classes, s.tokens, hidden.data(),
         blas_type(s.dtype), s.hidden, grad.data(), blas_type(s.dtype), s.classes,
         d_weight.data(), CUDA_R_32F, s.hidden, "cublasGemmEx (d_weight)");
  }

  void mark(std::size_t index) const {
    check_cuda(cudaEventRecord(events[index], stream()), "cudaEventRecord");
  }
};

LinearCeWorkload::LinearCeWorkload(const LinearCeCase& c) : state_(std::make_unique<State>()) {
  State& st = *state_;
  st.c = c;
  const LinearCrossEntropyShape& s = c.shape;
  if (s.tokens < 8 || s.hidden < 8 || s.classes < 8)
    throw std::runtime_error("linear cross-entropy benchmark: every dimension must be >= 8");
  check_status(cuda::blas_api(&st.api), "cuBLAS");
  check_status(cuda::thread_blas_handle(*st.api, &st.handle), "cuBLAS handle");

  st.hidden = filled(s.tokens * s.hidden, s.dtype, -1.0, 1.0, 11);
  st.weight = filled(s.classes * s.hidden, s.dtype, -0.05, 0.05, 12);
  st.targets = Buffer(Device::cuda, static_cast<std::size_t>(s.tokens) * 8);
  const std::vector<std::uint8_t> classes =
      class_pattern(static_cast<std::size_t>(s.tokens), s.classes, 13);
  st.targets.upload(classes.data(), classes.size());
  st.loss = Buffer(Device::cuda, sizeof(float));
  st.d_hidden = Buffer(Device::cuda, static_cast<std::size_t>(s.tokens * s.hidden *
                                                              dtype_size(s.dtype)));
  st.d_weight = Buffer(Device::cuda, static_cast<std::size_t>(s.classes * s.hidden) * 4);
  st.d_hidden.fill_bytes(0);
  st.d_weight.fill_bytes(0);

  // cuBLAS sets up its own workspace on a handle's first GEMM; done here, before the baseline
  // of the measured extra memory, it is charged to no path.
  check_cuda(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");
  if (st.api->set_stream(st.handle, stream()) != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("linear cross-entropy benchmark: cublasSetStream failed");
  st.gemm(CUBLAS_OP_N, CUBLAS_OP_T, 8, 8, 8, st.hidden.data(), blas_type(s.dtype), s.hidden,
          st.weight.data(), blas_type(s.dtype), s.hidden, st.d_weight.data(), CUDA_R_32F,
          s.hidden, "cublasGemmEx (warm-up)");
  synchronize(Device::cuda);
  st.free_before_extra = free_device_bytes();

  st.exec = cuda_exec();
  const std::size_t full_logits =
      static_cast<std::size_t>(linear_cross_entropy_full_logits_bytes(s));
  switch (c.path) {
    case LinearCePath::fused:
    case LinearCePath::sharded: {
      LinearCrossEntropyArgs& a = st.fused_args;
      a.tokens = s.tokens;
      a.hidden_size = s.hidden;
      a.classes = s.classes;
      a.dtype = s.dtype;
      a.hidden = st.hidden.data();
      a.weight = st.weight.data();
      a.targets = st.targets.data();
      a.target_kind = TargetKind::class_index_i64;
      a.loss = st.loss.as<float>();
      a.d_hidden = st.d_hidden.data();
      a.d_weight = st.d_weight.data();
      a.d_weight_dtype = DType::f32;
      if (c.chunk_tokens > 0) {
        st.fused_options.chunk_bytes =
            static_cast<std::size_t>(c.chunk_tokens) *
            static_cast<std::size_t>(linear_cross_entropy_bytes_per_token(s.classes, s.dtype, true));
      }
      std::size_t bytes = 0;
      if (c.path == LinearCePath::fused) {
        check_status(linear_cross_entropy_workspace_size(a, st.fused_options, st.exec, &bytes),
                     "linear_cross_entropy_workspace_size");
      } else {
        check_status(
            linear_cross_entropy_shard_workspace_size(a, st.fused_options, st.exec, &bytes),
            "linear_cross_entropy_shard_workspace_size");
        // One rank: its statistics are the whole gather.
        st.stats = Buffer(Device::cuda, static_cast<std::size_t>(s.tokens) *
                                            sizeof(CrossEntropyShardStats));
        st.extra += st.stats.bytes();
      }
      st.workspace = Buffer(Device::cuda, bytes);
      st.exec.workspace = Workspace{st.workspace.data(), st.workspace.bytes()};
      st.extra += bytes;
      break;
    }
    case LinearCePath::gemms:
      st.logits = Buffer(Device::cuda, static_cast<std::size_t>(s.tokens * s.classes) * 4);
      // The gradient's values do not matter to a GEMM's speed, only that they are finite.
      st.grad = filled(s.tokens * s.classes, s.dtype, -1e-4, 1e-4, 14);
      st.extra = full_logits;
      st.stage_names = {"logits", "d_hidden", "d_weight"};
      break;
    case LinearCePath::unfused: {
      st.logits = Buffer(Device::cuda, static_cast<std::size_t>(s.tokens * s.classes) * 4);
      st.grad = Buffer(Device::cuda, static_cast<std::size_t>(s.tokens * s.classes *
                                                              dtype_size(s.dtype)));
      CrossEntropyArgs& ce = st.ce_args;
      ce = full_logits_args(s);
      ce.logits = st.logits.data();
      ce.targets = st.targets.data();
      ce.loss = st.loss.as<float>();
      ce.grad = st.grad.data();
      const std::size_t scratch = cross_entropy_scratch(s);
      st.workspace = Buffer(Device::cuda, scratch);
      if (scratch > 0) st.exec.workspace = Workspace{st.workspace.data(), st.workspace.bytes()};
      st.extra = full_logits + scratch;
      st.stage_names = {"logits", "cross_entropy", "d_hidden", "d_weight"};
      break;
    }
  }
  if (!st.stage_names.empty()) {
    st.events.resize(st.stage_names.size() + 1);
    for (cudaEvent_t& event : st.events) check_cuda(cudaEventCreate(&event), "cudaEventCreate");
  }
}

LinearCeWorkload::~LinearCeWorkload() = default;

void LinearCeWorkload::run() {
  State& st = *state_;
  if (st.c.path == LinearCePath::fused) {
    check_status(linear_cross_entropy_forward_backward(st.fused_args, st.fused_options, st.exec),
                 "linear_cross_entropy_forward_backward");
    return;
  }
  if (st.c.path == LinearCePath::sharded) {
    const CrossEntropyShard whole{0, st.c.shape.classes};
    auto* stats = static_cast<CrossEntropyShardStats*>(st.stats.data());
    check_status(linear_cross_entropy_shard_stats(st.fused_args, whole, st.fused_options, stats,
                                                  st.exec),
                 "linear_cross_entropy_shard_stats");
    check_status(linear_cross_entropy_shard_finish(st.fused_args, whole, st.fused_options, stats,
                                                   1, st.exec),
                 "linear_cross_entropy_shard_finish");
    return;
  }
  // The fused call moves the thread's handle to its own stream; every run puts it back.
  if (st.api->set_stream(st.handle, stream()) != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("linear cross-entropy benchmark: cublasSetStream failed");
  std::size_t event = 0;
  st.mark(event++);
  st.logits_gemm();
  st.mark(event++);
  if (st.c.path == LinearCePath::unfused) {
    check_status(cross_entropy_forward_backward(st.ce_args, CrossEntropyOptions{}, st.exec),
                 "cross_entropy_forward_backward");
    st.mark(event++);
  }
  st.d_hidden_gemm();
  st.mark(event++);
  st.d_weight_gemm();
  st.mark(event++);
}

std::vector<LinearCeStage> LinearCeWorkload::last_stages() {
  State& st = *state_;
  std::vector<LinearCeStage> stages;
  if (st.events.empty()) return stages;
  check_cuda(cudaEventSynchronize(st.events.back()), "cudaEventSynchronize");
  for (std::size_t i = 0; i < st.stage_names.size(); ++i) {
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, st.events[i], st.events[i + 1]), "cudaEventElapsedTime");
    stages.push_back({st.stage_names[i], static_cast<double>(ms) * 1e-3});
  }
  return stages;
}

std::size_t LinearCeWorkload::extra_bytes() const { return state_->extra; }

std::size_t LinearCeWorkload::measured_extra_bytes() const {
  const std::size_t now = free_device_bytes();
  return now < state_->free_before_extra ? state_->free_before_extra - now : 0;
}

std::int64_t LinearCeWorkload::chunk_tokens() const {
  const State& st = *state_;
  if (st.c.path != LinearCePath::fused && st.c.path != LinearCePath::sharded) return 0;
  const LinearCrossEntropyShape& s = st.c.shape;
  if (st.c.chunk_tokens > 0) return std::min(st.c.chunk_tokens, s.tokens);
  // The default, restated from host/linear_cross_entropy.cpp (choose_chunk): a buffer of about
  // tokens x hidden elements, rounded up to 64 tokens, at most the batch.
  const double wanted = std::ceil(static_cast<double>(s.tokens) * static_cast<double>(s.hidden) /
                                  static_cast<double>(s.classes) / 64.0) *
                        64.0;
  return wanted >= static_cast<double>(s.tokens) ? s.tokens : static_cast<std::int64_t>(wanted);
}

std::int64_t LinearCeWorkload::chunks() const {
  const std::int64_t tokens = chunk_tokens();
  return tokens > 0 ? (state_->c.shape.tokens + tokens - 1) / tokens : 0;
}

}  // namespace actloss::bench
