// What the cross-entropy kernels of cuda/cross_entropy.cu (every path and option) and
// cuda/cross_entropy_exp_once.cu (the common case, rows on chip) share: the launch's parameters,
// computed once by the host, and the per-row and per-batch quantities both derive from them.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cuda/cross_entropy_math.cuh"
#include "cuda/row_common.cuh"

namespace actloss::cuda {

// ---------------------------------------------------------------------------------------------
// Kernel parameters: one plain struct, everything precomputed on the host.

struct CrossEntropyParams {
  std::int64_t rows = 0;
  std::int64_t classes = 0;

  const void* logits = nullptr;
  row::RowStarts logits_rows;

  const void* targets = nullptr;
  bool soft_targets = false;
  bool targets_i32 = false;           // class indices: int32 (else int64)
  DType target_dtype = DType::f32;    // probabilities
  row::RowStarts target_rows;         // in elements: probabilities; class indices (row stride 1)
  const float* class_weight = nullptr;

  std::int64_t ignore_index = -100;
  float smoothing = 0.0f;
  float z_loss = 0.0f;
  float softcap = 0.0f;

  bool want_loss = false;             // row losses are needed (loss output given)
  float* row_loss = nullptr;          // reduction none: [rows]
  ReducedLoss reduced;                // sum / mean: the blocks' partials, finished in the launch
  float* lse = nullptr;
  CrossEntropyRowStats* stats = nullptr;
  std::int64_t* predicted = nullptr;  // forward: each row's argmax

  const CrossEntropyRowStats* saved_stats = nullptr;  // backward: statistics come from here

  void* grad = nullptr;
  row::RowStarts grad_rows;
  float grad_scale = 1.0f;
  const float* upstream = nullptr;
  bool upstream_per_row = false;

  // The pre-pass's partials: [weight_blocks] target weights, then [weight_blocks] class weights.
  const double* weight_partials = nullptr;
  int weight_blocks = 0;
  bool denominator_from_targets = false;  // mean with class targets: the summed target weights
  // Mean with class targets and no gradient: the blocks sum the target weights of their rows
  // into reduced.denominators themselves, and no pre-pass runs.
  bool sum_row_weights = false;
  bool sum_class_weights = false;         // label smoothing with class weights needs sum_c w_c
  double fixed_denominator = 1.0;         // otherwise: 1 (sum, none), rows (mean, probabilities)

  DeviceError* error = nullptr;
  int threads_per_row = 32;
  int staging_chunks = 0;  // block_shared, cluster_shared: the row is staged in shared memory
  int cluster_blocks = 1;  // cluster_shared: the blocks of a row's cluster
  bool prefetch = false;   // short rows: the next row's logits loaded before this one is reduced
  bool chunk_pieces = true;  // misaligned chunks: row::load_chunk, row::store_chunk
  bool lane_shift = true;    // a misaligned row's first read from memory: row::load_shifted
};

// A coefficient times a term, where a zero coefficient on an infinite term (a masked class that
// carries no target mass) costs nothing; NaN still comes through.
__device__ __forceinline__ float times(float coefficient, float value) {
  return coefficient == 0.0f && value == value ? 0.0f : coefficient * value;
}

__device__ __forceinline__ std::int64_t load_class_target(const CrossEntropyParams& p,
                                                          std::int64_t r) {
  return class_index_at(p.targets, p.targets_i32, p.target_rows.of(r));
}

enum class RowKind : std::uint8_t { none, active, ignored, invalid };

// What a class-index target makes of its row: ignored (ignore_index), invalid (outside
// [0, classes): the row's loss and gradient are NaN and the error record names it), else active.
__device__ __forceinline__ RowKind kind_of_target(const CrossEntropyParams& p,
                                                  std::int64_t target) {
  return target == p.ignore_index               ? RowKind::ignored
         : target < 0 || target >= p.classes ? RowKind::invalid
                                               : RowKind::active;
}

// Batch-wide constants every block derives the same way from the pre-pass partials.
struct BatchConstants {
  double denominator;       // of the mean (1 otherwise); 0 when nothing counts, NaN if invalid
  double grad_factor;       // grad_scale / denominator (0 for a zero denominator)
  float class_weight_sum;   // sum_c w_c (classes when unweighted)
};

__device__ __forceinline__ BatchConstants batch_constants(const CrossEntropyParams& p) {
  BatchConstants batch;
  batch.denominator = p.fixed_denominator;
  batch.class_weight_sum = static_cast<float>(p.classes);
  if (p.weight_partials != nullptr) {
    // Same order in every block, so every block sees the same value.
    double target_sum = 0.0, class_sum = 0.0;
    for (int b = 0; b < p.weight_blocks; ++b) {
      target_sum += p.weight_partials[b];
      class_sum += p.weight_partials[p.weight_blocks + b];
    }
    if (p.denominator_from_targets) batch.denominator = target_sum;
    if (p.sum_class_weights) batch.class_weight_sum = static_cast<float>(class_sum);
  }
  batch.grad_factor = batch.denominator == 0.0 ? 0.0 : p.grad_scale / batch.denominator;
  return batch;
}

__device__ __forceinline__ float class_weight_at(const CrossEntropyParams& p, int c) {
  return p.class_weight != nullptr ? p.class_weight[c] : 1.0f;
}

// Row r's share of a mean's denominator, once per row (on the group's rank 0): w_y for a row
// with a valid target, 0 for an ignored one. An invalid target adds 0 here because its row's
// loss is already NaN, and with it the mean.
__device__ __forceinline__ double row_weight_of(const CrossEntropyParams& p,
                                                const row::RowGroup& group, std::int64_t r) {
  if (r >= p.rows || group.rank != 0) return 0.0;
  const std::int64_t y = load_class_target(p, r);
  if (kind_of_target(p, y) != RowKind::active) return 0.0;
  return class_weight_at(p, static_cast<int>(y));
}

// The end of a kernel whose call reduces the loss (sum, mean): the block's loss partial, with the
// denominator the launch gives or, for a mean without a gradient (p.sum_row_weights), the block's
// share of the target weights, summed after the row loop, so that nothing more stays live across
// it (the same rows again, their targets now in cache); the last block to finish adds every
// block's in order (finish_reduced_loss, cuda/reduce.cuh).
__device__ __forceinline__ void finish_block_loss(const CrossEntropyParams& p,
                                                  const row::RowGroup& group,
                                                  const row::RowTiles& tiles,
                                                  const BatchConstants& batch, double loss,
                                                  double* warp_partials) {
  if (p.reduced.numerators == nullptr) return;
  const double total = block_sum(loss, warp_partials);
  double denominator = batch.denominator;
  if (p.sum_row_weights) {
    double weight_sum = 0.0;
    for (std::int64_t tile = group.first_tile(); tile < tiles.count(); tile += group.tile_stride())
      weight_sum += row_weight_of(p, group, tiles.row_of(tile));
    denominator = block_sum(weight_sum, warp_partials);
  }
  finish_reduced_loss(p.reduced, total, denominator, warp_partials);
}

// Row r of the logits into `row`, any of row_common.cuh's row sources (nothing for a row past
// the end).
template <class TX, class Row>
__device__ __forceinline__ void load_logits_row(const CrossEntropyParams& p,
                                                const row::RowGroup& group, Row& row,
                                                std::int64_t r) {
  const bool in_range = r < p.rows;
  const TX* logits_row = static_cast<const TX*>(p.logits) + (in_range ? p.logits_rows.of(r) : 0);
  row.load(logits_row, in_range ? static_cast<int>(p.classes) : 0, group.rank, group.size,
           p.chunk_pieces, p.lane_shift);
}

// The (logits, gradient) dtype pairs with register-tile kernels of their own: the gradient in
// the logits' dtype (a forward is this pair), or in float for 16-bit logits. The four others
// (f32 logits with a 16-bit gradient, one 16-bit dtype's logits with the other's gradient) take
// the general kernel, which also reads the row from memory once (staged in shared memory where
// the plan held it on chip): their tiles cost the build 22 of cross_entropy.cu's 77 kernels and
// 16 of the exp-once file's 42, for pairs that training code rarely asks for.
template <class TX, class TG>
constexpr bool kTilePair = std::is_same_v<TX, TG> || std::is_same_v<TG, float>;
inline bool is_tile_pair(DType logits, DType grad) {
  return logits == grad || grad == DType::f32;
}

// The kernels that keep each exponential (cuda/cross_entropy_exp_once.cu), for a plan that
// plan_float_tile made; they read the same parameters as cross_entropy_kernel. The one a call
// runs goes to `run`: launched, or counted while the plan is sized.
Status dispatch_cross_entropy_exp_once(const row::RowLaunch& launch,
                                       const CrossEntropyParams& params, DType logits_dtype,
                                       DType grad_dtype, const row::KernelLaunch& run);
Status dispatch_cross_entropy_exp_once(const row::RowLaunch& launch,
                                       const CrossEntropyParams& params, DType logits_dtype,
                                       DType grad_dtype, const row::KernelResidency& run);

}  // namespace actloss::cuda
