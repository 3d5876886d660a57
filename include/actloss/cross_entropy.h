// Softmax cross-entropy over logits [rows x classes].
//
// Semantics follow torch.nn.functional.cross_entropy (class-index or class-probability targets,
// weight, ignore_index, reduction, label_smoothing) with these additions and differences:
//  * z_loss (PaLM's auxiliary loss): adds z_loss * lse_i^2 to every non-ignored row's loss. It is
//    not multiplied by the class weight; under `mean` it is divided by the same denominator as
//    the rest of the row's loss.
//  * softcap > 0 replaces every logit x by softcap * tanh(x / softcap) before anything else
//    (Gemma-style); the gradient flows through that map. 0 turns it off.
//  * `mean` with class-index targets divides by the summed weight of the non-ignored rows (as
//    PyTorch). If every row is ignored the loss is 0 and the gradient is 0, not NaN.
//    With probability targets `mean` divides by `rows` (as PyTorch).
//  * The loss, the per-row loss and lse are always float32, whatever the logits' dtype: they are
//    few values and their precision matters. The gradient's dtype is chosen freely.
//  * The gradient can be written in the same call as the loss (forward_backward), optionally over
//    the logits themselves (in place).
//  * Out-of-range class targets (not in [0, classes) and not ignore_index): on CPU the call
//    returns StatusCode::out_of_range and writes nothing. On CUDA nothing is read or written out
//    of bounds, that row's loss (and every reduced loss) is NaN, its gradient row is NaN, and the
//    error is recorded for take_device_error(); the call itself does not wait for the GPU.
//  * NaN logits give NaN loss and gradient for their row (NaN in, NaN out). A target class whose
//    logit is -inf gives an infinite loss (the true value).
//
// Row loss, with x' the (softcapped) logits, lse_i = log sum_c exp(x'_ic), eps = label_smoothing,
// w = class_weight (all ones when null), C = classes:
//   class index y:   (1-eps) w_y (lse_i - x'_iy) + eps/C sum_c w_c (lse_i - x'_ic) + z_loss lse_i^2
//   probabilities q: sum_c w_c ((1-eps) q_ic + eps/C) (lse_i - x'_ic)          + z_loss lse_i^2
#pragma once

#include <actloss/types.h>

namespace actloss {

enum class TargetKind : std::uint8_t {
  class_index_i32,  // int32 [rows]
  class_index_i64,  // int64 [rows]
  probabilities,    // [rows x classes] of target_dtype, with target_row_stride
};

// What backward needs of each row, written by forward (and forward_backward) when `stats` is
// given, and read back by backward: the row max m (the largest non-NaN x'_c) and
// log_sum = log sum_c exp(x'_c - m), so that lse = m + log_sum. Kept apart, the two give
// backward the probabilities p_c = exp(x'_c - m) / exp(log_sum) exactly as the fused pass forms
// them, at any size of the logits; an lse alone carries an absolute error of |lse| 2^-24 in
// float, which p would inherit (at logits of 1e4 the gradient would be off by 1e-4, at 1e30
// entirely). 8 bytes per row, with the alignment of a float. A row whose logits are all -inf has
// {-inf, -inf}; a row with a NaN or +inf logit has a NaN log_sum.
struct CrossEntropyRowStats {
  float max;
  float log_sum;
};
static_assert(sizeof(CrossEntropyRowStats) == 8);

struct CrossEntropyOptions {
  Reduction reduction = Reduction::mean;
  std::int64_t ignore_index = -100;  // class-index targets only
  float label_smoothing = 0.0f;      // in [0, 1]
  float z_loss = 0.0f;               // >= 0, finite
  float softcap = 0.0f;              // >= 0, finite; 0 = off
};

// Pointers are host memory for Device::cpu and device-accessible memory for Device::cuda.
// Row strides are in elements; 0 means dense (= classes). Any stride >= classes is accepted.
struct CrossEntropyArgs {
  std::int64_t rows = 0;
  std::int64_t classes = 0;

  // Batched views without copies: [batches x rows_per_batch x classes] logits such as PyTorch's
  // logits[:, :-1, :] with the matching targets[:, 1:]. Row r is row t = r % rows_per_batch of
  // batch b = r / rows_per_batch and starts b * <operand>_batch_stride + t * <operand>_row_stride
  // elements after the operand's start. rows_per_batch 0 (the default) is one batch of all rows;
  // otherwise it must divide rows. Batch strides are in elements, 0 meaning dense
  // (rows_per_batch times the row stride; for class-index targets, which are contiguous within a
  // batch, rows_per_batch). Batches may also lie inside rows (a [T, B, classes] tensor viewed as
  // [B, T, classes]: batch stride classes, row stride B classes); no two rows may share an
  // element. The per-row buffers (loss under Reduction::none, lse, stats, saved_stats, a per-row
  // upstream_grad) stay dense [rows], batch-major.
  std::int64_t rows_per_batch = 0;
  std::int64_t logits_batch_stride = 0;
  std::int64_t target_batch_stride = 0;
  std::int64_t grad_batch_stride = 0;

  const void* logits = nullptr;
  DType logits_dtype = DType::f32;
  std::int64_t logits_row_stride = 0;

  const void* targets = nullptr;
  TargetKind target_kind = TargetKind::class_index_i64;
  DType target_dtype = DType::f32;      // probabilities only
  std::int64_t target_row_stride = 0;   // probabilities only

  const float* class_weight = nullptr;  // optional [classes]

  // Outputs of the forward pass. `loss`: [rows] for Reduction::none, [1] otherwise; required by
  // forward, optional for forward_backward. `lse`: optional [rows], the logsumexp of the
  // (softcapped) logits. `stats`: optional [rows], what backward needs (CrossEntropyRowStats).
  float* loss = nullptr;
  float* lse = nullptr;
  CrossEntropyRowStats* stats = nullptr;

  // Optional outputs of the forward pass for token accuracy, from the same read of the logits.
  // `predicted`: [rows], each row's predicted class, the first index of its largest logit, a NaN
  // counting as larger than any number (torch.argmax; softcap, being increasing, changes
  // nothing). `accuracy`: [1], class-index targets only, and `predicted` given: the fraction of
  // the rows not ignored whose predicted class is their target, 0 when every row is ignored, NaN
  // when a target is out of range (as the loss). Under `none` too. On rows too long for the
  // on-chip paths, `predicted` costs one more read of each row.
  std::int64_t* predicted = nullptr;
  float* accuracy = nullptr;

  // Input of backward only: the stats written by a forward call with the same logits and options.
  const CrossEntropyRowStats* saved_stats = nullptr;

  // Gradient output of backward and forward_backward: d(loss)/d(logits), same shape as the logits.
  // May be the logits pointer itself (in place) when grad_dtype and the row and batch strides
  // match.
  void* grad = nullptr;
  DType grad_dtype = DType::f32;
  std::int64_t grad_row_stride = 0;

  // The gradient is multiplied by grad_scale and, when given, by the upstream gradient of the
  // loss: [1] for sum/mean, [rows] for none (what autograd would pass as grad_output).
  float grad_scale = 1.0f;
  const float* upstream_grad = nullptr;
};

// Writes loss (and lse and stats when given).
Status cross_entropy_forward(const CrossEntropyArgs& args, const CrossEntropyOptions& options,
                             const Exec& exec);

// Writes grad from logits, targets and saved_stats.
Status cross_entropy_backward(const CrossEntropyArgs& args, const CrossEntropyOptions& options,
                              const Exec& exec);

// One pass: writes grad and, when given, loss, lse and stats.
Status cross_entropy_forward_backward(const CrossEntropyArgs& args,
                                      const CrossEntropyOptions& options, const Exec& exec);

// The bytes of Exec::workspace (see Workspace) that cross_entropy_forward, _backward and
// _forward_backward need with these arguments and options on exec's device (the most of the
// three: a forward under mean sums its denominator beside the loss): 0 when none (the CPU,
// Reduction::none without class weights and label smoothing, no rows). Reads rows,
// classes, logits_dtype, target_kind, whether class_weight is null, and the options; the other
// pointers need not be set yet.
Status cross_entropy_workspace_size(const CrossEntropyArgs& args,
                                    const CrossEntropyOptions& options, const Exec& exec,
                                    std::size_t* bytes);

// ---- Vocabulary-parallel cross-entropy -------------------------------------------------------
//
// Tensor-parallel training shards the classes over ranks: each rank holds, for every row, the
// logits of its own classes [first_class, first_class + classes) of total_classes, and no rank
// sees a whole row. The loss and each shard's gradient then come from two calls around one
// collective that the caller runs with its own communication engine:
//   1. cross_entropy_shard_stats, on every rank: per row, this shard's CrossEntropyShardStats.
//   2. An all-gather of those [rows] structs from every rank into [shards x rows] (any rank
//      order, the same on every rank: NCCL's all-gather gives rank order). 20 bytes per row and
//      rank; nothing else crosses ranks.
//   3. cross_entropy_shard_finish, on every rank: from the gathered statistics and its own
//      shard, the loss (the same bits on every rank) and this shard's gradient.
// Phase 2 reads the shard's logits once, for the gradient; phase 1 reads each row for its max and
// again for the sums relative to it (on CUDA the second read mostly hits L2). The result is the
// unsharded call's within the project's tolerances, for every option of CrossEntropyOptions.
//
// How CrossEntropyArgs is read by the two calls: `classes` is this shard's width (>= 1); the
// logits, probability targets, class_weight and grad are this shard's slices ([rows x classes],
// [classes]); class-index targets are the rows' classes in the whole vocabulary, the same array
// on every rank. label_smoothing spreads over total_classes; mean divides by the summed weight
// of all the rows not ignored (the same denominator on every rank); an out-of-range class target
// (outside [0, total_classes), not ignore_index) is treated as in the unsharded call, by both
// calls. Not supported here: predicted and accuracy, stats and saved_stats (the statistics of a
// sharded row are CrossEntropyShardStats), and a separate backward pass (finish writes the
// gradient; call it without grad for the loss alone, and again with grad).
struct CrossEntropyShard {
  std::int64_t first_class = 0;    // this shard's first class in the vocabulary
  std::int64_t total_classes = 0;  // classes in the vocabulary, over all shards
};

// One row's statistics of one shard, all in float, with x' the shard's (softcapped) logits,
// a_c = w_c ((1 - eps) t_c + eps / total_classes) the weight of class c in the row's loss (t_c:
// 1 for the target class and 0 for the others, or the probability target; a_c = 0 on an ignored
// row), so that the row's loss is sum_c a_c (lse - x'_c) + z_loss lse^2:
//   max            the shard's largest x'_c (-inf when all are -inf; NaN or +inf logits make
//                  `rest` NaN)
//   rest           sum_c exp(x'_c - max) - 1: the shard's exponentials but the max's own 1, which
//                  keeps a confident row's tiny loss accurate (the rest of the row's mass)
//   weight         sum_c a_c over the shard
//   gap            sum_c a_c (max - x'_c) >= 0 (no term cancels, so it keeps its relative
//                  accuracy when it is rounded to float)
//   target_weight  w_y when this shard holds the row's target class y, else 0 (class-index
//                  targets: the rows' weights that mean divides by)
struct CrossEntropyShardStats {
  float max;
  float rest;
  float weight;
  float gap;
  float target_weight;
};
static_assert(sizeof(CrossEntropyShardStats) == 20);

// Phase 1: writes stats[rows] of this shard. Reads rows, classes, the logits, targets and
// class_weight with their layouts; ignores the outputs of CrossEntropyArgs.
Status cross_entropy_shard_stats(const CrossEntropyArgs& args, const CrossEntropyShard& shard,
                                 const CrossEntropyOptions& options,
                                 CrossEntropyShardStats* stats, const Exec& exec);

// Phase 2: from gathered[shards x rows] (every shard's stats, shard after shard), writes loss
// ([rows] for Reduction::none, [1] otherwise) and lse ([rows]) when given, and this shard's
// gradient when grad is given (scaled by grad_scale and upstream_grad as in
// cross_entropy_forward_backward; in place over the logits allowed). loss or grad is required.
Status cross_entropy_shard_finish(const CrossEntropyArgs& args, const CrossEntropyShard& shard,
                                  const CrossEntropyOptions& options,
                                  const CrossEntropyShardStats* gathered, std::int64_t shards,
                                  const Exec& exec);

// The bytes of Exec::workspace that cross_entropy_shard_finish needs on exec's device (0 on the
// CPU). Reads rows and the options' reduction.
Status cross_entropy_shard_workspace_size(const CrossEntropyArgs& args,
                                          const CrossEntropyOptions& options, const Exec& exec,
                                          std::size_t* bytes);

}  // namespace actloss
