// Softmax cross-entropy on CUDA: forward, backward, and both in one pass.
//
// One kernel does a row at a time (per thread group; see cuda/row_common.cuh for the layout):
//   1. statistics: the row max m and s = sum exp(x'_c - m) = 1 + rest in one read (online), or
//      nothing in the backward pass, which takes m and log s from the forward's row statistics;
//   2. the gradient (A p_c - a_c + 2 z lse p_c) times the row's multiplier, written once, and the
//      loss terms sum_c a_c (m - x'_c) that label smoothing and soft targets need;
//   3. the row loss  A log1p(rest) + sum_c a_c (m - x'_c) + z lse^2  (a_c the target
//      coefficients of include/actloss/cross_entropy.h, A their sum), lse = m + log1p(rest).
// Writing the loss relative to m, never as lse - x'_c, keeps logits up to +-3e38 finite.
// On-chip paths hold the row in registers, and block_shared keeps the copy it read in shared
// memory, so the logits are read once; so does cluster_shared, for rows longer than a block's
// shared memory holds, over the shared memory of a cluster's blocks, whose partial statistics
// meet in distributed shared memory; block_two_pass reads them a second time for step 2
// (mostly from L2).
//
// Reductions are deterministic and end inside the main kernel: the last block to finish adds
// the per-block double partials in block order (finish_reduced_loss, cuda/reduce.cuh). Mean with
// class targets divides by the summed weight of the non-ignored rows: without a gradient the
// blocks sum it beside the loss, so a reduced forward is one kernel; the gradient needs it before
// the first row is written, so a small pre-pass over the targets computes it first. Out-of-range
// targets make their row NaN (and, under mean, the denominator, hence
// everything) and are recorded for take_device_error; nothing is read at such an index.
#include "cuda/cross_entropy_common.cuh"

namespace actloss::cuda {
namespace {

using row::kChunk;
using row::RowGroup;
using row::RowLaunch;
using row::RowTiles;

// ---------------------------------------------------------------------------------------------
// Device helpers.

// The class-index targets as the side kernels (the targets' pre-pass, token accuracy) read them.
struct ClassTargets {
  std::int64_t rows = 0;
  std::int64_t classes = 0;
  const void* data = nullptr;
  row::RowStarts starts;  // row stride 1
  bool i32 = false;
  std::int64_t ignore_index = -100;

  __device__ __forceinline__ std::int64_t at(std::int64_t r) const {
    return class_index_at(data, i32, starts.of(r));
  }
};

ClassTargets class_targets_of(const CrossEntropyParams& p) {
  return ClassTargets{p.rows, p.classes, p.targets, p.target_rows, p.targets_i32,
                      p.ignore_index};
}

// ---------------------------------------------------------------------------------------------
// The passes over one row's elements.

// What the gradient pass needs of a row, the same on every thread of its group. The row's
// multiplier (upstream * grad_scale / denominator) and 1/s are folded in, so that the gradient
// of class c is  prob_scale * exp(x'_c - shift) - multiplier * a_c.
struct RowConstants {
  int y = -1;                // the target class; -1 for probability targets and ignored rows
  float shift = 0.0f;        // the row max (0 for an all -inf row) or, in backward, the saved lse
  float prob_scale = 0.0f;   // (A + 2 z lse) * multiplier / s
  float target_step = 0.0f;  // multiplier * (1 - eps) w_y: subtracted at c == y
  float smooth_step = 0.0f;  // multiplier * eps / C: subtracted at every class (times w_c)
  float multiplier = 0.0f;   // NaN for an invalid target, which makes its whole row NaN
  bool zero_grad = false;    // ignored row, or a mean over nothing: the gradient is 0
  // Loss terms only.
  float m = -INFINITY;       // max of x'
  float smooth = 0.0f;       // eps / C
  const char* target_row = nullptr;  // probability targets
};

// Adds the row's elements to (m, rest), and picks x'_y out of the chunk that holds the target class
// y (-1: none) on the one thread that owns that chunk, which sets `found`. Taking it from the
// chunk already loaded, rather than reading logits[y] once the target is known, keeps a second
// dependent trip to memory off every row's critical path. The uncapped variant needs no work per
// element: past-the-row elements are already -inf.
template <bool kCapped, class Row>
__device__ __forceinline__ void accumulate_max_rest(Row& row, const Softcap& cap, int y,
                                                    float& m, double& rest, float& target_x,
                                                    bool& found) {
  // For y = -1 nothing is found; callers read `found` only for rows that have a target class.
  row.for_each([&](int col0, const float (&x)[kChunk], row::Span span) {
    float capped[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      if constexpr (kCapped)
        capped[j] = span.has(j) ? cap.value(x[j]) : -INFINITY;
      else
        capped[j] = x[j];
    }
    row::pick_column(capped, col0, y, target_x, found);
    row::add_chunk_max_rest(m, rest, capped);
  });
}

// The per-class inputs of a chunk of classes: the class weights w_c (1 when unweighted) and, for
// probability targets, a_c = w_c ((1 - eps) q_c + eps / C). Outside the row both are garbage:
// callers look at the chunk's span.
__device__ __forceinline__ void load_class_inputs(const CrossEntropyParams& p,
                                                  const char* target_row, int col0, float smooth,
                                                  float (&weight)[kChunk],
                                                  float (&coefficient)[kChunk]) {
  const int classes = static_cast<int>(p.classes);
  if (p.class_weight != nullptr) {
    row::Chunk<float> w;
    row::load_chunk(w, p.class_weight, col0, classes, p.chunk_pieces);
#pragma unroll
    for (int j = 0; j < kChunk; ++j) weight[j] = w.v[j];
  } else {
#pragma unroll
    for (int j = 0; j < kChunk; ++j) weight[j] = 1.0f;
  }
  if (p.soft_targets) {
    float q[kChunk];
    row::load_chunk_as_float(q, target_row, p.target_dtype, col0, classes,
                              p.chunk_pieces);
#pragma unroll
    for (int j = 0; j < kChunk; ++j)
      coefficient[j] = weight[j] * ((1.0f - p.smoothing) * q[j] + smooth);
  }
}

// Writes the row's gradient (when grad_row is given) and returns its loss terms (when `terms`
// is set): sum_c a_c (m - x'_c) for probability targets, sum_c w_c (m - x'_c) for class indices
// (label smoothing's share, before the factor eps / C).
// kGeneral covers probability targets, softcap and class-weighted smoothing, which read per-class
// inputs; without it a_c = (1 - eps) w_y [c == y] + eps / C and far fewer values are live per
// element. The split is a uniform branch per row, not another instantiation.
template <bool kGeneral, class TG, class Row>
__device__ __forceinline__ double gradient_and_terms(const CrossEntropyParams& p,
                                                     const RowConstants& rc, Row& row,
                                                     TG* grad_row, bool terms) {
  double total = 0.0;
  const int classes = static_cast<int>(p.classes);
  row.for_each([&](int col0, const float (&x)[kChunk], row::Span span) {
    float g[kChunk];
    double chunk_terms = 0.0;
    float weight[kChunk], coefficient[kChunk] = {};
    if constexpr (kGeneral) {
      if (p.soft_targets || p.smoothing != 0.0f)
        load_class_inputs(p, rc.target_row, col0, rc.smooth, weight, coefficient);
    }
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      const int c = col0 + j;
      float xc = x[j], slope = 1.0f, step;
      if constexpr (kGeneral) {
        xc = Softcap{p.softcap}.value(x[j], slope);
        float a = 0.0f, term_weight = 1.0f;
        if (span.has(j)) {
          if (p.soft_targets) {
            a = coefficient[j];
            term_weight = a;
          } else if (p.smoothing != 0.0f) {
            term_weight = weight[j];
          }
        }
        step = p.soft_targets
                   ? rc.multiplier * a
                   : (c == rc.y ? rc.target_step : 0.0f) + rc.smooth_step * term_weight;
        if (terms && span.has(j)) chunk_terms += times_gap(term_weight, rc.m, xc);
      } else {
        step = (c == rc.y ? rc.target_step : 0.0f) + rc.smooth_step;
        if (terms && span.has(j))
          chunk_terms += static_cast<double>(rc.m) - static_cast<double>(xc);
      }
      const float e = row::exp_shifted(xc, rc.shift);
      // The p_c terms are exactly 0 where p_c is: A may be infinite (z-loss of an all -inf row).
      const float value = (e != 0.0f ? rc.prob_scale * e : 0.0f) - step;
      g[j] = rc.zero_grad ? 0.0f : value * slope;
    }
    if (grad_row != nullptr) row::store_chunk(grad_row, col0, classes, g, p.chunk_pieces);
    total += chunk_terms;
  });
  return total;
}

// ---------------------------------------------------------------------------------------------
// One row, by the threads of `group`, its logits loaded by load_logits_row. Returns the row's
// loss on one thread of the group (0 elsewhere) for the block's partial sum, in double: a row's
// loss may exceed float's range while the mean of the batch does not.
template <class TX, class TG, class Row>
__device__ __forceinline__ double cross_entropy_row(const CrossEntropyParams& p,
                                                   const BatchConstants& batch,
                                                   const RowGroup& group, Row& row,
                                                   std::int64_t r) {
  const bool in_range = r < p.rows;
  const bool soft = p.soft_targets;
  const bool backward = p.saved_stats != nullptr;
  const float eps = p.smoothing;
  const int classes = static_cast<int>(p.classes);

  RowKind kind = in_range ? RowKind::active : RowKind::none;
  std::int64_t target = -1;
  if (in_range && !soft) {
    target = load_class_target(p, r);
    kind = kind_of_target(p, target);
  }
  const bool hard_active = !soft && kind == RowKind::active;
  const int y = hard_active ? static_cast<int>(target) : -1;


  // 1. Statistics: (m, rest), s = 1 + rest (row_common.cuh), and A = sum_c a_c, a row sum for
  // probability targets and known in closed form for class indices. The row's loss is finished
  // by the thread holding x'_y (its `loss_thread`), or by rank 0 when the row has no target
  // class.
  float m = -INFINITY;
  double rest = -1.0;
  float target_logit = 0.0f;
  bool holds_target = false;
  if (!backward) {
    if (p.softcap != 0.0f)
      accumulate_max_rest<true>(row, Softcap{p.softcap}, y, m, rest, target_logit, holds_target);
    else
      accumulate_max_rest<false>(row, Softcap{p.softcap}, y, m, rest, target_logit, holds_target);
    group.reduce_max_rest(m, rest);
    if (p.predicted != nullptr) {
      // A pass of its own, taken only when asked: over registers for on-chip rows.
      if (p.softcap == 0.0f) {
        // m is the largest raw logit: the first column equal to it wins, unless a NaN comes
        // first in the order. One register: the key is a NaN's column, or the top bit set on
        // the column of a maximum (columns are below 2^31).
        constexpr unsigned kMaxFlag = 0x80000000u;
        unsigned key = UINT_MAX;
        row.for_each([&](int col0, const float (&x)[kChunk], row::Span span) {
#pragma unroll
          for (int j = 0; j < kChunk; ++j) {
            const auto column = static_cast<unsigned>(col0 + j);
            const unsigned candidate = x[j] != x[j] ? column
                                       : x[j] == m  ? (column | kMaxFlag)
                                                    : UINT_MAX;
            if (span.has(j) && candidate < key) key = candidate;
          }
        });
        key = group.reduce_min(key);
        if (in_range && group.rank == 0) p.predicted[r] = key & ~kMaxFlag;
      } else {
        // m is a capped logit, and distinct logits may cap to one float: the raw logits'
        // order, from their own (value, column) pairs.
        float best = -INFINITY;
        int best_index = INT_MAX;
        row.for_each([&](int col0, const float (&x)[kChunk], row::Span span) {
#pragma unroll
          for (int j = 0; j < kChunk; ++j)
            if (span.has(j)) row::take_larger(best, best_index, x[j], col0 + j);
        });
        group.reduce_argmax(best, best_index);
        if (in_range && group.rank == 0) p.predicted[r] = best_index;
      }
    }
  }
  const bool loss_thread = hard_active ? holds_target : group.rank == 0;
  RowConstants rc;
  rc.y = y;
  rc.m = m;
  rc.smooth = eps / static_cast<float>(p.classes);
  rc.target_row = soft && in_range ? static_cast<const char*>(p.targets) +
                                         p.target_rows.of(r) * dtype_size(p.target_dtype)
                                   : nullptr;
  const float hard_coefficient = hard_active ? (1.0f - eps) * class_weight_at(p, y) : 0.0f;
  float coefficient_sum;
  if (soft) {
    double sum = 0.0;
    if (kind == RowKind::active) {
      row::for_each_owned_chunk(classes, group.rank, group.size,
                                [&](int col0, row::Span span) {
        float weight[kChunk], coefficient[kChunk] = {};  // {}: for g++ -O3, see RawPack
        load_class_inputs(p, rc.target_row, col0, rc.smooth, weight, coefficient);
        float chunk_sum = 0.0f;
#pragma unroll
        for (int j = 0; j < kChunk; ++j)
          if (span.has(j)) chunk_sum += coefficient[j];
        sum += chunk_sum;
      });
    }
    coefficient_sum = static_cast<float>(group.reduce_sum(sum));
  } else {
    coefficient_sum = hard_coefficient + (eps != 0.0f ? rc.smooth * batch.class_weight_sum : 0.0f);
  }
  group.order_reads_before_writes();

  // p_c = exp(x'_c - m) / s: backward takes m and log s from the forward's statistics, so that
  // its probabilities are the fused pass's, whatever the size of the logits.
  float lse, log_s, inv_sum;
  bool no_mass;  // s = 0: every x'_c is -inf
  if (backward) {
    const CrossEntropyRowStats saved = in_range ? p.saved_stats[r] : CrossEntropyRowStats{0, 0};
    m = saved.max;
    log_s = saved.log_sum;
    no_mass = m == -INFINITY;
    lse = m + log_s;
    // An all -inf row saved m = -inf: x' - m is then -inf - -inf, so shift to +inf instead,
    // which makes every exp(x' - shift) 0.
    rc.shift = no_mass ? INFINITY : m;
    inv_sum = expf(-log_s);
  } else {
    log_s = log1pf(static_cast<float>(rest));
    no_mass = rest == -1.0;
    lse = m + log_s;
    rc.shift = m == -INFINITY ? 0.0f : m;
    inv_sum = no_mass ? 0.0f : 1.0f / (1.0f + static_cast<float>(rest));
  }

  // The loss, except for the terms the gradient pass sums (so that fewer values stay live).
  // Combined in double, so that nothing overflows on the way to a finite loss; the row's loss is
  // rounded to float once, at the end.
  double loss = 0.0;
  if (kind == RowKind::invalid) {
    loss = NAN;
  } else if (kind == RowKind::active && p.want_loss) {
    if (no_mass) {
      // No class has mass (all -inf): every lse - x'_c is +inf.
      loss = coefficient_sum > 0.0f ? INFINITY : (coefficient_sum < 0.0f ? -INFINITY : 0.0f);
      if (p.z_loss != 0.0f) loss += INFINITY;
    } else {
      // log1p: a confident row's loss is about rest, far below float's 2^-24 (row_common.cuh).
      loss = static_cast<double>(times(coefficient_sum, log_s)) +
             times_gap(hard_coefficient, m, target_logit);
      if (p.z_loss != 0.0f) loss += static_cast<double>(p.z_loss) * lse * lse;
    }
  }

  const bool write_grad = p.grad != nullptr && in_range;
  if (write_grad) {
    const float upstream = p.upstream != nullptr ? p.upstream[p.upstream_per_row ? r : 0] : 1.0f;
    // NaN statistics (a NaN or +inf logit; a NaN saved lse) make the whole row NaN, also where
    // exp(x'_c - shift) is 0; so does an invalid target.
    const bool nan_row = kind == RowKind::invalid || m != m || log_s != log_s;
    rc.multiplier = nan_row ? NAN
                            : static_cast<float>(static_cast<double>(upstream) * batch.grad_factor);
    const float prob_factor =
        coefficient_sum + (p.z_loss != 0.0f ? 2.0f * p.z_loss * lse : 0.0f);
    rc.prob_scale = prob_factor * inv_sum * rc.multiplier;
    rc.target_step = rc.multiplier * hard_coefficient;
    rc.smooth_step = rc.multiplier * rc.smooth;
    // Ignored rows (and a mean over nothing) get 0 whatever their logits.
    rc.zero_grad = kind == RowKind::ignored || batch.denominator == 0.0;
  }

  // 2. Gradient and loss terms.
  const bool need_terms = p.want_loss && (soft || eps != 0.0f);  // uniform over the launch
  const bool terms_here = need_terms && kind == RowKind::active;
  double terms = 0.0;
  if (write_grad || terms_here) {
    TG* grad_row = write_grad ? static_cast<TG*>(p.grad) + p.grad_rows.of(r) : nullptr;
    const bool general = soft || p.softcap != 0.0f || (eps != 0.0f && p.class_weight != nullptr);
    terms = general ? gradient_and_terms<true>(p, rc, row, grad_row, terms_here)
                    : gradient_and_terms<false>(p, rc, row, grad_row, terms_here);
  }
  if (need_terms) {
    terms = group.reduce_sum(terms);
    if (terms_here && !no_mass) loss += (soft ? 1.0 : static_cast<double>(rc.smooth)) * terms;
  }

  // 3. The row's outputs.
  if (!in_range) return 0.0;
  if (group.rank == 0) {
    if (p.lse != nullptr) p.lse[r] = lse;
    if (p.stats != nullptr) p.stats[r] = CrossEntropyRowStats{m, log_s};
    if (kind == RowKind::invalid && p.error != nullptr)
      record_device_error(p.error, StatusCode::out_of_range, detail::DeviceErrorArgument::targets,
                          r, target);
  }
  if (!loss_thread || !p.want_loss) return 0.0;
  if (p.row_loss != nullptr) p.row_loss[r] = static_cast<float>(loss);
  return loss;
}

// Launch bounds (row::RowBounds): eight chunks are the largest tile, which only 16-bit logits
// reach (row_dispatch.h); f32 logits never launch it.
template <int kChunks>
using Bounds = row::RowBounds<kChunks, 8>;

// kChunks > 0: the row in registers (rows_per_warp, warp_per_row, block_on_chip); 0: the row in
// global memory (block_two_pass), staged in shared memory on its first read when the plan gives
// a staging area (block_shared); row::kClusterChunks: the row over a cluster's blocks, staged in
// their shared memory (cluster_shared), the plain variants only.
//
// The variants fix options at compile time, so that their state is not live in registers: the
// general kernel carries every option and uses about 128 registers (spilling where capped at 80),
// a quarter of an SM's threads, too few rows in flight to keep memory busy (Nsight Compute,
// H100: 25% occupancy, 59% of DRAM bandwidth, for the f32 forward at 4K classes).
enum class Variant : std::uint8_t {
  general,        // every option; the row in global memory (kChunks = 0) only
  plain,          // class-index targets without softcap or class weights: 79-123 registers
  plain_forward,  // the same, loss and lse only (no gradient): 79-95 registers for on-chip rows
};

// Whether a tile of kChunks chunks computes `predicted` itself. The one- and two-chunk tiles
// (the shortest rows) hold the next row's logits beside the current ones (prefetch), and the
// predicted class's pass over the row spilled them (ptxas -v, sm_90): a call that asks for
// predicted classes on such rows takes the general kernel instead.
constexpr bool predicts_in_registers(int chunks) { return chunks != 1 && chunks != 2; }

template <class TX, class TG, int kChunks, Variant kVariant>
__global__ void __launch_bounds__(Bounds<kChunks>::kMaxThreads, Bounds<kChunks>::kMinBlocks)
    cross_entropy_kernel(CrossEntropyParams params) {
  static_assert(kVariant != Variant::general || kChunks == 0);
  static_assert(kChunks >= row::kClusterChunks);
  CrossEntropyParams p = params;
  if constexpr (kVariant != Variant::general) {
    p.soft_targets = false;
    p.softcap = 0.0f;
    p.class_weight = nullptr;
  }
  if constexpr (kVariant == Variant::plain) {
    p.sum_row_weights = false;  // the gradient takes its denominator from the pre-pass
  }
  if constexpr (kVariant == Variant::plain_forward) {
    p.grad = nullptr;
    p.saved_stats = nullptr;
    p.upstream = nullptr;
  }
  if constexpr (!predicts_in_registers(kChunks)) {
    p.predicted = nullptr;  // such calls take the general kernel (dispatch_cross_entropy)
  }
  __shared__ double2 exchange[row::kMaxWarps];
  __shared__ double warp_partials[row::kMaxWarps];
  SIMCUDA_DYNAMIC_SHARED(uint4, staging_area);
  // In a cluster, the cluster's exchange slot comes first (RowGroup).
  constexpr bool kInCluster = kChunks == row::kClusterChunks;
  uint4* const staging = p.staging_chunks > 0 ? staging_area + (kInCluster ? 1 : 0) : nullptr;
  const RowGroup group = kInCluster ? RowGroup::make_cluster(exchange)
                                    : RowGroup::make(p.threads_per_row, exchange);
  const RowTiles tiles{p.rows, group.rows_per_block(), group.row_in_block()};
  const BatchConstants batch = batch_constants(p);

  double loss_sum = 0.0;
  if constexpr (kChunks > 0) {
    using Row = row::RegisterRow<TX, kChunks>;
    // A second register tile costs registers: it fits (no spill, ptxas -v, sm_90) beside the
    // forward-only tiles, and beside the gradient's one-chunk tile of 16-bit logits.
    constexpr bool kMayPrefetch =
        kChunks <= 2 && (kVariant == Variant::plain_forward ||
                         (kVariant == Variant::plain && kChunks == 1 && sizeof(TX) == 2));
    row::for_each_row_tile<Row>(
        tiles, kMayPrefetch && p.prefetch,
        [&](Row& source, std::int64_t r) { load_logits_row<TX>(p, group, source, r); },
        [&](Row& source, std::int64_t r) {
          loss_sum += cross_entropy_row<TX, TG>(p, batch, group, source, r);
        });
  } else {
    for (std::int64_t tile = group.first_tile(); tile < tiles.count();
         tile += group.tile_stride()) {
      row::GlobalRow<TX, kInCluster> source;
      source.staging = staging;
      source.staging_chunks = p.staging_chunks;
      load_logits_row<TX>(p, group, source, tiles.row_of(tile));
      loss_sum += cross_entropy_row<TX, TG>(p, batch, group, source, tiles.row_of(tile));
    }
  }
  finish_block_loss(p, group, tiles, batch, loss_sum, warp_partials);
}

// The pre-pass: per-block partial sums of the target weights of the non-ignored rows (NaN for an
// invalid target, as the reference) and of the class weights. Grid-stride with a grid that
// depends only on the shape, so the sums are reproducible.
constexpr int kWeightSumThreads = 256;
constexpr int kMaxWeightSumBlocks = 32;

struct WeightSumParams {
  ClassTargets targets;
  const float* class_weight = nullptr;
  bool target_weights = false;
  bool class_weights = false;
  double* partials = nullptr;  // [2 gridDim.x]
};

__global__ void __launch_bounds__(kWeightSumThreads)
    cross_entropy_weight_sums_kernel(WeightSumParams p) {
  __shared__ double warp_partials[kWeightSumThreads / kWarpSize];
  const std::int64_t first = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const std::int64_t step = std::int64_t{gridDim.x} * blockDim.x;
  double target_sum = 0.0, class_sum = 0.0;
  if (p.target_weights) {
    for (std::int64_t i = first; i < p.targets.rows; i += step) {
      const std::int64_t y = p.targets.at(i);
      if (y == p.targets.ignore_index) continue;
      if (y < 0 || y >= p.targets.classes)
        target_sum += NAN;
      else
        target_sum += p.class_weight != nullptr ? p.class_weight[y] : 1.0f;
    }
  }
  if (p.class_weights) {
    for (std::int64_t c = first; c < p.targets.classes; c += step)
      class_sum += p.class_weight[c];
  }
  target_sum = block_sum(target_sum, warp_partials);
  class_sum = block_sum(class_sum, warp_partials);
  if (threadIdx.x == 0) {
    p.partials[blockIdx.x] = target_sum;
    p.partials[gridDim.x + blockIdx.x] = class_sum;
  }
}

// Token accuracy from the classes the main kernel predicted, after it on the stream: one block
// in a fixed grid-stride order over the rows (their targets and predictions, 16 bytes a row
// against the row's logits). The counts are integers, exact in double, so any order of adding
// them gives the same result.
constexpr int kAccuracyThreads = 256;

struct AccuracyParams {
  ClassTargets targets;
  const std::int64_t* predicted = nullptr;
  float* accuracy = nullptr;
};

__global__ void __launch_bounds__(kAccuracyThreads)
    cross_entropy_accuracy_kernel(AccuracyParams p) {
  __shared__ double warp_partials[kAccuracyThreads / kWarpSize];
  double counted = 0.0, correct = 0.0, invalid = 0.0;
  for (std::int64_t i = threadIdx.x; i < p.targets.rows; i += blockDim.x) {
    const std::int64_t y = p.targets.at(i);
    if (y == p.targets.ignore_index) continue;
    if (y < 0 || y >= p.targets.classes) {
      invalid += 1.0;
      continue;
    }
    counted += 1.0;
    if (p.predicted[i] == y) correct += 1.0;
  }
  counted = block_sum(counted, warp_partials);
  correct = block_sum(correct, warp_partials);
  invalid = block_sum(invalid, warp_partials);
  if (threadIdx.x == 0) {
    *p.accuracy = invalid > 0.0    ? NAN
                  : counted == 0.0 ? 0.0f
                                   : static_cast<float>(correct / counted);
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers.

// The options that only the general variant carries; it has no cluster instantiation, so a call
// with them plans block_two_pass where cluster_shared would hold its rows.
bool needs_general_variant(bool soft_targets, float softcap, const float* class_weight) {
  return soft_targets || softcap != 0.0f || class_weight != nullptr;
}

// Whether a call on this plan runs the exp-once kernels: a plan for them, no predicted classes,
// and a dtype pair with register tiles (`grad_dtype`: the logits' own for a call without a
// gradient).
bool runs_exp_once(const row::RowLaunch& launch, const void* predicted, DType logits_dtype,
                   DType grad_dtype) {
  return launch.float_tile && predicted == nullptr && is_tile_pair(logits_dtype, grad_dtype);
}

// Selects the unified kernel of a call and hands it to `run` (row::KernelLaunch or
// row::KernelResidency) with its geometry.
template <class TX, class TG, class Run>
Status dispatch_cross_entropy(const RowLaunch& launch, const CrossEntropyParams& params,
                              const Run& run) {
  const bool plain =
      kTilePair<TX, TG> &&
      !needs_general_variant(params.soft_targets, params.softcap, params.class_weight) &&
      (params.predicted == nullptr || predicts_in_registers(launch.chunks));
  const Variant variant = !plain ? Variant::general
                          : params.grad == nullptr && params.saved_stats == nullptr
                              ? Variant::plain_forward
                              : Variant::plain;
  // The general kernel takes blocks of up to 512 threads on every path (a plan for the exp-once
  // kernels with predicted classes comes here, kept by plan_float_tile's blocks of two-chunk
  // tiles); the register tiles are bounded as Bounds.
  const bool small_tile = launch.chunks == 1 || launch.chunks == 2;
  if (launch.block > (small_tile && variant != Variant::general ? row::kSmallRowBlock
                                                                : row::kMaxBlock))
    return Status(StatusCode::internal, "",
                  "cross_entropy: a block of " + std::to_string(launch.block) +
                      " threads exceeds the launch bound of its kernel");
  if (variant == Variant::general) {
    // The rare options keep more values live per element than a register tile leaves room
    // for (the tiles spilled, ptxas -v, sm_90), so they take the kernel that reads the row from
    // global memory on every path, with the planned geometry. Where the plan held one row per
    // block on chip, the row is staged in shared memory instead (at most 64 KiB: the tile's
    // capacity), so it is still read from memory once. One instantiation per dtype pair; the
    // pairs without register tiles (kTilePair) come here whatever their options.
    RowLaunch general = launch;
    CrossEntropyParams general_params = params;
    if (launch.chunks > 0) {
      general.chunks = 0;
      if (launch.threads_per_row == launch.block) {
        general.staging_chunks = launch.chunks * launch.threads_per_row;
        general.shared_bytes =
            static_cast<std::size_t>(general.staging_chunks) * kChunk * sizeof(TX);
        general_params.staging_chunks = general.staging_chunks;
      }
    }
    ACTLOSS_CUDA_TRY(
        run(cross_entropy_kernel<TX, TG, 0, Variant::general>, general, general_params));
    return {};
  }
  // Eight chunks fit the register budget only for 16-bit logits (row_dispatch.h).
  const cudaError_t error =
      row::launch_for_chunks<sizeof(TX) == 2 ? 8 : 4, true>(launch.chunks, [&](auto chunks) {
        // Unused where the dtype pair has no register tiles (kTilePair).
        [[maybe_unused]] constexpr int kChunks = decltype(chunks)::value;
        if (variant == Variant::plain_forward) {
          // A call without a gradient dispatches on the logits' dtype alone (TG = TX), so the
          // forward kernels exist once per logits dtype, not once per dtype pair.
          if constexpr (std::is_same_v<TX, TG>) {
            return run(cross_entropy_kernel<TX, TG, kChunks, Variant::plain_forward>, launch,
                       params);
          } else {
            return cudaErrorInvalidValue;  // unreachable: see cuda_cross_entropy
          }
        }
        if constexpr (kTilePair<TX, TG>) {
          return run(cross_entropy_kernel<TX, TG, kChunks, Variant::plain>, launch, params);
        } else {
          return cudaErrorInvalidValue;  // unreachable: such a pair is never plain
        }
      });
  ACTLOSS_CUDA_TRY(error);
  return {};
}

// Hands the kernel that a call with these parameters runs to `run` (row::KernelLaunch or
// row::KernelResidency): an exp-once kernel where the plan has one for the call, else the
// unified kernel of the dtype pair.
template <class Run>
Status dispatch_call(const RowLaunch& launch, const CrossEntropyParams& params,
                     DType logits_dtype, DType grad_dtype, const Run& run) {
  if (runs_exp_once(launch, params.predicted, logits_dtype, grad_dtype))
    return dispatch_cross_entropy_exp_once(launch, params, logits_dtype, grad_dtype, run);
  return row::with_dtype("cross_entropy", logits_dtype, [&](auto x_tag) {
    return row::with_dtype("cross_entropy", grad_dtype, [&](auto g_tag) {
      using TX = typename decltype(x_tag)::type;
      using TG = typename decltype(g_tag)::type;
      return dispatch_cross_entropy<TX, TG>(launch, params, run);
    });
  });
}

Status plan_cross_entropy(const CrossEntropyArgs& args, const CrossEntropyOptions& options,
                          const DeviceInfo& device, row::RowLaunch* plan) {
  const bool general = needs_general_variant(args.target_kind == TargetKind::probabilities,
                                             options.softcap, args.class_weight);
  // A dtype pair without register tiles runs the general kernel whenever it writes a gradient;
  // the plan follows the args' gradient dtype even for a call that writes none, so that one
  // workspace fits every pass of the same args.
  const bool clusters = !general && is_tile_pair(args.logits_dtype, args.grad_dtype);
  row::RowLaunch launch = row::plan_row_launch(detail::RowOp::cross_entropy, args.rows,
                                               args.classes, args.logits_dtype, device, clusters);
  // The common case on chip takes the kernels that keep each exponential
  // (cuda/cross_entropy_exp_once.cu), in tiles of up to two chunks (their 64 registers): rows up
  // to 8192 classes, except those of one warp with a larger tile (513-1024 f32 and 513-2048
  // 16-bit classes: plan_float_tile). The plan depends on the shape, the dtypes and the options
  // alone, never on which outputs a call asks for, so that a workspace sized for one call fits
  // every pass and output of it (cross_entropy_workspace_size). A call that asks for predicted
  // classes runs the unified kernel on the same plan (dispatch_cross_entropy).
  if (detail::row_exp_once() && !general && options.label_smoothing == 0.0f)
    row::plan_float_tile(launch, args.rows, device, 2);
  // The grid counts the registers of every kernel that a call of these args can run (each pass,
  // with and without predicted classes), so that it, and with it the per-block partials of a
  // reduced loss and the workspace, is the same for all of them.
  if (Status status = row::count_resident_blocks(
          launch, args.rows, device,
          [&](const row::KernelResidency& residency) {
            CrossEntropyParams call;
            call.soft_targets = args.target_kind == TargetKind::probabilities;
            call.softcap = options.softcap;
            call.class_weight = args.class_weight;
            // Never dereferenced: whether they are set is what selects a kernel.
            std::int64_t predicted_stand_in = 0;
            CrossEntropyRowStats stats_stand_in{};
            // A call without a gradient leaves grad_dtype unchecked, whatever it holds: such
            // args count the gradient's kernels in the logits' dtype.
            const DType args_grad_dtype =
                dtype_size(args.grad_dtype) != 0 ? args.grad_dtype : args.logits_dtype;
            const auto count = [&](std::int64_t* predicted, void* grad,
                                   const CrossEntropyRowStats* saved_stats) {
              call.predicted = predicted;
              call.grad = grad;
              call.saved_stats = saved_stats;
              // A call without a gradient dispatches on the logits' dtype alone.
              return dispatch_call(launch, call, args.logits_dtype,
                                   grad != nullptr ? args_grad_dtype : args.logits_dtype,
                                   residency);
            };
            for (std::int64_t* predicted : {static_cast<std::int64_t*>(nullptr),
                                            &predicted_stand_in}) {
              if (Status counted = count(predicted, nullptr, nullptr); !counted.ok())
                return counted;
              if (Status counted = count(predicted, &stats_stand_in, nullptr); !counted.ok())
                return counted;
            }
            return count(nullptr, &stats_stand_in, &stats_stand_in);
          });
      !status.ok())
    return status;
  *plan = launch;
  return {};
}

// The scratch of a call, in doubles: the main kernel's reduced loss (a sum or mean that is
// written), then the pre-pass's two partial arrays. The pre-pass runs only where the gradient
// needs a batch-wide sum before the main kernel writes it (the target weights of a mean over
// class targets), or where every row needs one (the class weights, under label smoothing with
// class weights); a mean without a gradient sums its target weights in the main kernel.
struct ScratchLayout {
  std::size_t reduced_doubles = 0;
  bool sum_row_weights = false;
  int weight_blocks = 0;
  bool target_weights = false;
  bool class_weights = false;
  std::size_t doubles() const {
    return reduced_doubles + 2 * static_cast<std::size_t>(weight_blocks);
  }
};

ScratchLayout scratch_layout(const CrossEntropyArgs& args, const CrossEntropyOptions& options,
                             bool want_loss, bool writes_grad, const row::RowLaunch& launch) {
  const bool soft = args.target_kind == TargetKind::probabilities;
  const bool reduced = options.reduction != Reduction::none;
  const bool mean_over_targets = !soft && options.reduction == Reduction::mean;
  ScratchLayout layout;
  // The second-kernel finish (cuda/reduce.cuh) takes the denominator from the pre-pass, as when
  // it was last measured.
  const bool sum_row_weights =
      mean_over_targets && want_loss && !writes_grad && reduced_loss_in_kernel();
  layout.target_weights = mean_over_targets && (writes_grad || (want_loss && !sum_row_weights));
  layout.class_weights =
      !soft && args.class_weight != nullptr && options.label_smoothing != 0;
  if (layout.target_weights || layout.class_weights) {
    const std::int64_t items = args.rows > args.classes ? args.rows : args.classes;
    layout.weight_blocks =
        static_cast<int>(grid_size_for(items, kWeightSumThreads * 16, kMaxWeightSumBlocks));
  }
  if (want_loss && reduced) {
    layout.sum_row_weights = sum_row_weights;
    layout.reduced_doubles = reduced_loss_doubles(launch.grid, layout.sum_row_weights);
  }
  return layout;
}

}  // namespace
}  // namespace actloss::cuda

namespace actloss::detail {

Status cuda_cross_entropy_workspace_size(const CrossEntropyArgs& args,
                                         const CrossEntropyOptions& options,
                                         std::size_t* bytes) {
  using namespace actloss::cuda;
  *bytes = 0;
  if (args.rows == 0) return {};
  if (Status status = row::check_row_length(args.classes, "classes"); !status.ok()) return status;
  const DeviceInfo* device = nullptr;
  if (Status status = current_device_info(&device); !status.ok()) return status;
  row::RowLaunch launch;
  if (Status status = plan_cross_entropy(args, options, *device, &launch); !status.ok())
    return status;
  // With the loss wanted: the most any of the three passes needs.
  const std::size_t forward = scratch_layout(args, options, true, false, launch).doubles();
  const std::size_t with_grad = scratch_layout(args, options, true, true, launch).doubles();
  *bytes = (forward > with_grad ? forward : with_grad) * sizeof(double);
  return {};
}

Status cuda_cross_entropy_plan_for_testing(const CrossEntropyArgs& args,
                                           const CrossEntropyOptions& options, bool* exp_once,
                                           int* chunks_per_thread) {
  using namespace actloss::cuda;
  const DeviceInfo* device = nullptr;
  if (Status status = current_device_info(&device); !status.ok()) return status;
  row::RowLaunch launch;
  if (Status status = plan_cross_entropy(args, options, *device, &launch); !status.ok())
    return status;
  // For a call that writes the gradient.
  *exp_once = runs_exp_once(launch, args.predicted, args.logits_dtype, args.grad_dtype);
  *chunks_per_thread = launch.chunks;
  return {};
}

Status cuda_cross_entropy(Pass pass, const CrossEntropyArgs& args,
                          const CrossEntropyOptions& options, const Exec& exec) {
  using namespace actloss::cuda;
  const cudaStream_t stream = exec.stream;
  const bool reduced = options.reduction != Reduction::none;
  if (args.rows == 0) {
    // A reduced loss over no rows is 0; there is nothing else to write.
    if (args.loss != nullptr && reduced)
      ACTLOSS_CUDA_TRY(cudaMemsetAsync(args.loss, 0, sizeof(float), stream));
    if (args.accuracy != nullptr)
      ACTLOSS_CUDA_TRY(cudaMemsetAsync(args.accuracy, 0, sizeof(float), stream));
    return {};
  }
  if (Status status = row::check_row_length(args.classes, "classes"); !status.ok()) return status;
  const DeviceInfo* device = nullptr;
  if (Status status = current_device_info(&device); !status.ok()) return status;

  const bool soft = args.target_kind == TargetKind::probabilities;
  const bool mean = options.reduction == Reduction::mean;
  const bool writes_grad = pass != Pass::forward && args.grad != nullptr;

  CrossEntropyParams p;
  p.rows = args.rows;
  p.classes = args.classes;
  p.logits = args.logits;
  p.logits_rows = row::row_starts(args.rows, args.rows_per_batch, args.logits_row_stride,
                                  args.logits_batch_stride);
  p.targets = args.targets;
  p.soft_targets = soft;
  p.targets_i32 = args.target_kind == TargetKind::class_index_i32;
  if (soft) {
    p.target_dtype = args.target_dtype;
    p.target_rows = row::row_starts(args.rows, args.rows_per_batch, args.target_row_stride,
                                    args.target_batch_stride);
  } else {
    p.target_rows = row::row_starts(args.rows, args.rows_per_batch, 1, args.target_batch_stride);
  }
  p.class_weight = args.class_weight;
  p.ignore_index = options.ignore_index;
  p.smoothing = options.label_smoothing;
  p.z_loss = options.z_loss;
  p.softcap = options.softcap;
  p.want_loss = pass != Pass::backward && args.loss != nullptr;
  p.row_loss = p.want_loss && !reduced ? args.loss : nullptr;
  p.lse = pass != Pass::backward ? args.lse : nullptr;
  p.stats = pass != Pass::backward ? args.stats : nullptr;
  p.predicted = pass != Pass::backward ? args.predicted : nullptr;
  p.saved_stats = pass == Pass::backward ? args.saved_stats : nullptr;
  if (writes_grad) {
    p.grad = args.grad;
    p.grad_rows = row::row_starts(args.rows, args.rows_per_batch, args.grad_row_stride,
                                  args.grad_batch_stride);
    p.grad_scale = args.grad_scale;
    p.upstream = args.upstream_grad;
    p.upstream_per_row = !reduced;
  }
  if (!soft) {
    if (Status status = device_error_record(exec, &p.error); !status.ok()) return status;
  }

  row::RowLaunch launch;
  if (Status status = plan_cross_entropy(args, options, *device, &launch); !status.ok())
    return status;
  p.threads_per_row = launch.threads_per_row;
  p.staging_chunks = launch.staging_chunks;
  p.cluster_blocks = launch.cluster_blocks;
  p.prefetch = launch.prefetch;
  p.chunk_pieces = launch.chunk_pieces;
  // The lane shift reads the next lane's bytes, which a pass that writes its gradient over the
  // logits in the same visit (the backward from saved statistics, in place) may already have
  // overwritten in another warp.
  p.lane_shift = launch.lane_shift && !(pass == Pass::backward && args.grad == args.logits);

  const ScratchLayout layout = scratch_layout(args, options, p.want_loss, writes_grad, launch);
  const bool prepass = layout.target_weights || layout.class_weights;
  CallScratch scratch;
  if (layout.doubles() > 0) {
    if (Status status = scratch.acquire(layout.doubles() * sizeof(double), exec.workspace,
                                        stream, "cross_entropy_workspace_size");
        !status.ok())
      return status;
  }
  if (layout.reduced_doubles > 0) {
    if (Status status =
            prepare_reduced_loss(scratch.as<double>(), launch.grid, layout.sum_row_weights,
                                 args.loss, stream, &p.reduced);
        !status.ok())
      return status;
    p.sum_row_weights = layout.sum_row_weights;
  }
  p.fixed_denominator = mean && soft ? static_cast<double>(args.rows) : 1.0;
  if (prepass) {
    WeightSumParams w;
    w.targets = class_targets_of(p);
    w.class_weight = args.class_weight;
    w.target_weights = layout.target_weights;
    w.class_weights = layout.class_weights;
    w.partials = scratch.as<double>() + layout.reduced_doubles;
    ACTLOSS_CUDA_TRY(simcuda::launch(cross_entropy_weight_sums_kernel,
                                     dim3(layout.weight_blocks), dim3(kWeightSumThreads), 0,
                                     stream, w));
    p.weight_partials = w.partials;
    p.weight_blocks = layout.weight_blocks;
    p.denominator_from_targets = layout.target_weights;
    p.sum_class_weights = layout.class_weights;
  }

  // The gradient's dtype only matters when a gradient is written; forward reuses the logits'
  // instantiation.
  const DType grad_dtype = writes_grad ? args.grad_dtype : args.logits_dtype;
  if (Status status =
          dispatch_call(launch, p, args.logits_dtype, grad_dtype, row::KernelLaunch{stream});
      !status.ok())
    return status;
  if (layout.reduced_doubles > 0) {
    if (Status finished =
            finish_in_second_kernel(p.reduced, static_cast<unsigned>(launch.grid), stream);
        !finished.ok())
      return finished;
  }
  if (pass == Pass::backward || args.accuracy == nullptr) return {};
  AccuracyParams a;
  a.targets = class_targets_of(p);
  a.predicted = args.predicted;
  a.accuracy = args.accuracy;
  ACTLOSS_CUDA_TRY(simcuda::launch(cross_entropy_accuracy_kernel, dim3(1),
                                   dim3(kAccuracyThreads), 0, stream, a));
  return {};
}

}  // namespace actloss::detail
