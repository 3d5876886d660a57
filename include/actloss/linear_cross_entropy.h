// Fused linear + softmax cross-entropy: the loss of a language model's output layer
// (logits = hidden weight^T + bias) and its gradients, without the [tokens x classes] logits
// ever existing in memory at once.
//
// The tokens are taken in chunks. For each chunk one GEMM writes its logits (float32, whatever
// the inputs' dtype) into a buffer reused by every chunk; the cross-entropy kernels of
// include/actloss/cross_entropy.h turn them into the loss and, in the same pass, into the
// gradient of the logits, already scaled by the mean's denominator (computed on the device from
// the targets before the first chunk: no host synchronisation); two more GEMMs then give the
// chunk's d_hidden and add its share to d_weight. Memory beyond the inputs and outputs is that
// buffer, independent of the token count.
//
// Every option of CrossEntropyOptions applies with the meaning it has there, as if
// cross_entropy_forward_backward ran on the full logits hidden * weight^T + bias: ignore_index,
// label_smoothing, class_weight, z_loss, softcap, each reduction, grad_scale and upstream_grad.
// Targets are class indices (int32 or int64).
//
// Results are deterministic: the same inputs give the same bits on the same device (fixed chunk
// order, fixed-order sums, cuBLAS GEMMs, which are reproducible for a given handle
// configuration, card and cuBLAS version). Accuracy: the logits come out of the GEMM as float32
// accumulations of exact products, and the loss is then as accurate as cross_entropy's; the
// gradients d_hidden and d_weight are GEMMs of the logits' gradient rounded to the inputs' dtype
// (the dtype the GEMM's operands must share), so with 16-bit inputs they carry that rounding.
//
// CUDA: the GEMMs run on cuBLAS, which libactloss loads when this op is first called on a GPU
// (libcublas.so of the toolkit's major version): the other ops, and every op on the CPU, never
// need it. Without it the call returns StatusCode::unsupported naming "exec.device".
// CPU: the float64 reference, unfused (the full logits in double), as every CPU op.
#pragma once

#include <actloss/cross_entropy.h>

// cublasHandle_t is `struct cublasContext*`; as with the stream, the incomplete struct lets a
// caller pass its handle without this header including cuBLAS.
struct cublasContext;

namespace actloss {

struct LinearCrossEntropyOptions {
  CrossEntropyOptions loss = {};
  // Bytes of the chunk buffer (the part of the workspace that grows with the chunk): the chunk
  // takes as many tokens as fit, at linear_cross_entropy_bytes_per_token each, and at least one
  // token must fit (otherwise invalid_argument). 0: a buffer of about tokens x hidden_size
  // elements, the size of `hidden` itself, at most the whole batch.
  std::size_t chunk_bytes = 0;
  // At most this many tokens per chunk; 0 for no limit beyond chunk_bytes.
  std::int64_t max_chunk_tokens = 0;
};

// Pointers are host memory for Device::cpu and device memory for Device::cuda. Row strides are in
// elements, 0 meaning dense.
struct LinearCrossEntropyArgs {
  std::int64_t tokens = 0;       // N
  std::int64_t hidden_size = 0;  // D
  std::int64_t classes = 0;      // V

  // hidden [N x D], weight [V x D], bias [V] (optional), all of `dtype`. d_hidden has `dtype` too.
  DType dtype = DType::f32;
  const void* hidden = nullptr;
  std::int64_t hidden_row_stride = 0;
  const void* weight = nullptr;
  std::int64_t weight_row_stride = 0;
  const void* bias = nullptr;

  // Class indices [N], contiguous.
  const void* targets = nullptr;
  TargetKind target_kind = TargetKind::class_index_i64;  // class_index_i32 or class_index_i64
  const float* class_weight = nullptr;                   // optional [V]

  // Forward outputs. `loss`: [N] under Reduction::none, [1] otherwise; required by the forward,
  // optional with the gradients. `lse`: optional [N], each token's logsumexp of its (softcapped)
  // logits.
  float* loss = nullptr;
  float* lse = nullptr;

  // Gradients (forward_backward only). d_hidden [N x D] of `dtype` is required, overwritten.
  // d_weight [V x D] is required; d_bias [V] is required when bias is given, and given without
  // one it receives the gradient of a zero bias (the column sums of the logits' gradient). Both
  // are of d_weight_dtype: float32 (the default) or `dtype`; a 16-bit d_weight takes each
  // chunk's sum rounded to its dtype (one rounding per chunk). With accumulate they are added to
  // (gradients summed over micro-batches); otherwise overwritten (zeroed when tokens is 0).
  void* d_hidden = nullptr;
  std::int64_t d_hidden_row_stride = 0;
  void* d_weight = nullptr;
  std::int64_t d_weight_row_stride = 0;
  void* d_bias = nullptr;
  DType d_weight_dtype = DType::f32;
  bool accumulate = false;

  // As CrossEntropyArgs: the gradients are multiplied by grad_scale and, when given, by the
  // upstream gradient of the loss ([1] for sum/mean, [N] for none).
  float grad_scale = 1.0f;
  const float* upstream_grad = nullptr;

  // CUDA only, optional: the cuBLAS handle the GEMMs run on (its math mode, for example TF32,
  // applies). The call sets its stream to exec.stream and restores the previous stream after
  // queueing its work; the caller must not use the handle from another thread meanwhile. Null:
  // actloss's own handle for the calling thread and current device, created by the first call
  // (so a first call while capturing a CUDA graph may fail: make one before capturing).
  cublasContext* blas_handle = nullptr;
};

// Loss (and lse): the forward only, for evaluation. The chunk buffer holds float32 logits only.
Status linear_cross_entropy_forward(const LinearCrossEntropyArgs& args,
                                    const LinearCrossEntropyOptions& options, const Exec& exec);

// Loss (optional), lse (optional), d_hidden, d_weight and d_bias in one call.
Status linear_cross_entropy_forward_backward(const LinearCrossEntropyArgs& args,
                                             const LinearCrossEntropyOptions& options,
                                             const Exec& exec);

// The chunk buffer's bytes per token: 4 bytes per class for the float32 logits, plus the
// gradient's size per class when `dtype` is not float32 (the backward GEMMs take it in `dtype`;
// float32 gradients overwrite the logits), classes rounded up to a multiple of 8.
// `with_gradients` false: the forward's. 0 for classes <= 0 or beyond any buffer.
std::int64_t linear_cross_entropy_bytes_per_token(std::int64_t classes, DType dtype,
                                                  bool with_gradients);

// Bytes of Exec::workspace (see Workspace) that either call needs with these arguments and
// options on exec's device (the more of the two): the chunk buffer, the cross-entropy's scratch,
// one float per chunk and a double per class for d_bias; 0 on the CPU or without tokens. Reads
// tokens, hidden_size, classes, dtype, target_kind, whether class_weight is null, and the
// options; the other pointers need not be set yet.
Status linear_cross_entropy_workspace_size(const LinearCrossEntropyArgs& args,
                                           const LinearCrossEntropyOptions& options,
                                           const Exec& exec, std::size_t* bytes);

// ---- Vocabulary-parallel -----------------------------------------------------------------------
//
// Tensor-parallel training shards the output layer's classes over ranks: each rank holds the rows
// [first_class, first_class + classes) of the weight (and those entries of bias and
// class_weight), every rank holds the same hidden states and targets, and no rank ever holds a
// whole row of logits. The loss and the gradients then come from two calls around one collective
// of the caller's communication engine, as the sharded cross_entropy_shard_stats/_finish of
// include/actloss/cross_entropy.h (whose statistics these are):
//   1. linear_cross_entropy_shard_stats, on every rank: each token's CrossEntropyShardStats of
//      this shard's logits, computed chunk by chunk as the unsharded call computes them.
//   2. An all-gather of those [tokens] structs from every rank into [shards x tokens] (20 bytes
//      per token and rank).
//   3. linear_cross_entropy_shard_finish, on every rank: the loss and lse (the same bits on every
//      rank) and, when d_hidden is given, this shard's gradients: d_weight and d_bias of its rows
//      of the weight, and its share of d_hidden. The input gradient of the whole vocabulary is the
//      sum of every rank's share: an all-reduce (sum) of d_hidden over the ranks, by the caller.
//   include/actloss/nccl.h runs all three over NCCL in one call.
//
// How LinearCrossEntropyArgs is read: `classes` is this shard's width (>= 1); weight, bias,
// class_weight, d_weight and d_bias are this shard's slices; targets are classes of the whole
// vocabulary. Every option means what it means in the unsharded call over the whole vocabulary:
// label_smoothing spreads over total_classes, mean divides by the summed weight of every token
// not ignored (from the gathered statistics: the same denominator on every rank), and a target
// outside [0, total_classes) that is not ignore_index is refused on the CPU and recorded (NaN) on
// CUDA, as there. d_hidden is overwritten by this shard's share, even with accumulate (which, as
// in the unsharded call, applies to d_weight and d_bias).
//
// Cost: phase 2 computes the logits again for the gradients, so forward_backward runs the logits'
// GEMM twice (four GEMMs of tokens x classes x hidden_size where the unsharded call runs three),
// the price of one collective for the whole batch with memory independent of the token count.
// Phase 2 without d_hidden (the loss only) runs no GEMM: it reads the gathered statistics alone.
// Accuracy: as cross_entropy_shard_*'s (float statistics of float logits) for the loss, and as
// the unsharded call's for the gradients, plus, for 16-bit d_hidden, one rounding of each
// rank's share before the sum. CPU: the float64 composition of the unsharded call, its logits
// rounded to float once before the sharded cross-entropy (as on CUDA, whose chunk buffer holds
// float logits).

// Phase 1: writes stats[tokens] of this shard. Reads tokens, hidden_size, classes, dtype,
// hidden, weight, bias, targets and class_weight with their layouts; ignores the outputs.
// Its workspace is the chunk buffer of linear_cross_entropy_forward.
Status linear_cross_entropy_shard_stats(const LinearCrossEntropyArgs& args,
                                        const CrossEntropyShard& shard,
                                        const LinearCrossEntropyOptions& options,
                                        CrossEntropyShardStats* stats, const Exec& exec);

// Phase 2: from gathered[shards x tokens] (every shard's stats, shard after shard), writes loss
// and lse when given and, when d_hidden or d_weight is given, the gradients as
// linear_cross_entropy_forward_backward does (d_hidden being this shard's share; both then
// required, with d_bias for a given bias; grad_scale, upstream_grad, accumulate and
// d_weight_dtype apply). Without them it is the forward: loss is required, and no GEMM runs.
Status linear_cross_entropy_shard_finish(const LinearCrossEntropyArgs& args,
                                         const CrossEntropyShard& shard,
                                         const LinearCrossEntropyOptions& options,
                                         const CrossEntropyShardStats* gathered,
                                         std::int64_t shards, const Exec& exec);

// Bytes of Exec::workspace that either phase needs with these arguments and options on exec's
// device (the more of the two); 0 on the CPU or without tokens. Reads what
// linear_cross_entropy_workspace_size reads.
Status linear_cross_entropy_shard_workspace_size(const LinearCrossEntropyArgs& args,
                                                 const LinearCrossEntropyOptions& options,
                                                 const Exec& exec, std::size_t* bytes);

}  // namespace actloss
