// The implementations actloss is compared with, behind plain functions so that workload.cpp
// needs none of their headers. Each group exists only where CMake found what it needs:
//   ACTLOSS_BENCH_UNFUSED  unfused_cross_entropy.cu, nvcc builds
//   ACTLOSS_BENCH_THRUST   thrust_cross_entropy.cu, nvcc builds (Thrust and CUB come with the
//                          toolkit)
//   ACTLOSS_BENCH_CUDNN    cudnn_peer.cpp, nvcc builds where cudnn.h was found; libcudnn is
//                          opened at run time, so a machine without it still runs the rest
//   ACTLOSS_BENCH_ONEDNN   onednn_peer.cpp, when libdnnl (oneDNN) was found and compiles
// Every function enqueues its work on `stream` (CUDA) or runs it (CPU), and throws
// std::runtime_error with the peer's own message on failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <actloss/activation.h>
#include <actloss/types.h>

namespace actloss::bench::peers {

#if ACTLOSS_BENCH_UNFUSED
// Forward and backward of mean cross-entropy over int64 class targets, as three kernels:
// log_softmax (logits -> log-probabilities, materialised in the logits' dtype), nll (gathers
// each row's target log-probability and averages), and the gradient (softmax minus one-hot,
// from the stored log-probabilities). `logprobs` is [rows x classes] of `dtype` scratch.
void unfused_cross_entropy(const void* logits, DType dtype, const std::int64_t* targets,
                           std::int64_t rows, std::int64_t classes, void* logprobs, float* loss,
                           void* grad, Stream stream);
#endif

#if ACTLOSS_BENCH_THRUST
// Mean cross-entropy over int64 class targets written with Thrust and CUB alone: segmented
// reductions for each row's max and sum of exp(x - max), a transform-reduce for the loss, a
// transform for the gradient (of the logits' dtype). f32 and bf16 logits.
struct ThrustCrossEntropyArgs {
  const void* logits = nullptr;
  DType dtype = DType::f32;
  const std::int64_t* targets = nullptr;
  std::int64_t rows = 0;
  std::int64_t classes = 0;
  // [rows] each: written by forward and forward_backward, read by backward (the saved statistics).
  float* row_max = nullptr;
  float* row_sum = nullptr;
  void* grad = nullptr;  // [rows x classes]; backward and forward_backward
  // CUB's temporary storage, of thrust_cross_entropy_temp_bytes(): sized and allocated once by
  // the caller, as a program that calls this in a loop would, so that no run pays for cudaMalloc.
  void* temp = nullptr;
  std::size_t temp_bytes = 0;
};

enum class ThrustPass : std::uint8_t { forward, backward, forward_backward };

std::size_t thrust_cross_entropy_temp_bytes(const ThrustCrossEntropyArgs& args);
// The mean loss (forward and forward_backward; 0 for backward), on the host: Thrust's
// transform_reduce returns it, so the call waits for `stream` to reach it.
float thrust_cross_entropy(ThrustPass pass, const ThrustCrossEntropyArgs& args, Stream stream);
#endif

#if ACTLOSS_BENCH_CUDNN
// Opens libcudnn and creates a handle, once; false (with the reason) when that fails.
bool cudnn_available(std::string* why);
// Whether cuDNN accepts the call for `dtype` (probed once on a tiny tensor and remembered).
bool cudnn_supports_softmax(bool log, bool backward, DType dtype);
bool cudnn_has_activation(Activation activation);
bool cudnn_supports_activation(Activation activation, bool backward, DType dtype);

void cudnn_softmax_forward(bool log, DType dtype, std::int64_t rows, std::int64_t cols,
                           const void* x, void* y, Stream stream);
void cudnn_softmax_backward(bool log, DType dtype, std::int64_t rows, std::int64_t cols,
                            const void* y, const void* dy, void* dx, Stream stream);
void cudnn_activation_forward(Activation activation, DType dtype, std::int64_t n, const void* x,
                              void* y, Stream stream);
// cuDNN's backward reads the forward output y as well as x.
void cudnn_activation_backward(Activation activation, DType dtype, std::int64_t n, const void* x,
                               const void* y, const void* dy, void* dx, Stream stream);
#endif

#if ACTLOSS_BENCH_ONEDNN
std::string onednn_version();
bool onednn_supports(bool softmax, bool backward, DType dtype);
bool onednn_has_activation(Activation activation);
void onednn_softmax_forward(bool log, DType dtype, std::int64_t rows, std::int64_t cols,
                            const void* x, void* y);
void onednn_softmax_backward(bool log, DType dtype, std::int64_t rows, std::int64_t cols,
                             const void* y, const void* dy, void* dx);
void onednn_activation_forward(Activation activation, float alpha, DType dtype, std::int64_t n,
                               const void* x, void* y);
void onednn_activation_backward(Activation activation, float alpha, DType dtype, std::int64_t n,
                                const void* x, const void* dy, void* dx);
#endif

}  // namespace actloss::bench::peers
