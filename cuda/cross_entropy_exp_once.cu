// Softmax cross-entropy for rows held on chip in the common case: class-index targets without
// label smoothing, softcap, class weights or predicted classes. cuda/cross_entropy.cu takes
// every other call, every longer row, and these too when detail::set_row_exp_once(false) asks
// for the kernel last measured on a card (tests and actloss_bench --actloss_row_exp_once=0).
//
// The row is loaded once into registers as float (row::FloatRow) and taken in the order of the
// fastest softmax kernels: its max m (one reduction of floats), then each exponential
// exp(x - m) once, stored in place of its logit, then their sum (one reduction), then the
// gradient from the stored exponentials. The unified kernel merges (max, rest) pairs per chunk
// and per thread instead, and computes each exponential a second time for the gradient.
// The loss, lse and statistics are those of cuda/cross_entropy.cu: s = 1 + rest with the max's
// own term kept apart, so that log1p(rest) keeps a confident row's small loss accurate; rest is
// summed in float within a thread (at most seven roundings a term) and in double across threads.
// The row's outputs are written before the gradient loop, so no double is live across it.
//
// Three kernels, one job each: the forward (loss, lse, statistics), the fused forward and
// backward, and the backward from the forward's saved statistics (no reduction at all).
#include "cuda/cross_entropy_common.cuh"

namespace actloss::cuda {
namespace {

using row::kChunk;
using row::RowGroup;
using row::RowLaunch;
using row::RowTiles;

enum class Mode : std::uint8_t { forward, fused, backward };

// Launch bounds: at most 64 registers, two blocks of 512 threads per SM (issue 11's target for the
// fused kernel), for tiles of one or two chunks in blocks of up to 512 threads
// (plan_float_tile). Four-chunk tiles spilled at 64 registers with a gradient to write (4 to 36
// bytes; with an f32 gradient also at 128), and the plan may not depend on whether a call writes
// one (its workspace is sized before), so no call takes them: rows up to 8192 classes.
constexpr int kMaxThreads = row::kMaxBlock;
constexpr int kMinBlocks = 2;

// The kernels that exist: a forward once per logits dtype (TG = TX), the others per dtype pair,
// for tiles of one and two chunks.
template <class TX, class TG, int kChunks, Mode kMode>
constexpr bool instantiated() {
  if (kChunks < 1 || kChunks > 2) return false;
  return kTilePair<TX, TG> && (kMode != Mode::forward || std::is_same_v<TX, TG>);
}

// Row r's target class and what kind of row it makes. The index itself is read again for the
// error record of an invalid one, rather than kept in two registers through the row.
struct RowTarget {
  RowKind kind = RowKind::none;
  int y = -1;  // the class of an active row, else -1
};

__device__ __forceinline__ RowTarget row_target(const CrossEntropyParams& p, std::int64_t r) {
  RowTarget t;
  if (r >= p.rows) return t;
  const std::int64_t index = load_class_target(p, r);
  t.kind = kind_of_target(p, index);
  if (t.kind == RowKind::active) t.y = static_cast<int>(index);
  return t;
}

// The gradient of row r from the exponentials e_c = exp(x_c - m) held in `row`, or with
// kFromLogits from the logits it holds, each exponentiated as its chunk is written (the backward,
// which needs them nowhere else):
//   grad_c = multiplier ((1 + 2 z lse) e_c / s - [c == y]),
// the multiplier being upstream * grad_scale / denominator (cross_entropy.h). An ignored row, and
// a mean over nothing, get 0; an invalid target or NaN statistics make the whole row NaN.
template <bool kFromLogits, class TG, int kChunks>
__device__ __forceinline__ void write_gradient(const CrossEntropyParams& p,
                                               const BatchConstants& batch,
                                               const row::FloatRow<kChunks>& row,
                                               std::int64_t r, const RowTarget& target, float m,
                                               float log_s, float inv_s, float shift = 0.0f) {
  const float upstream = p.upstream != nullptr ? p.upstream[p.upstream_per_row ? r : 0] : 1.0f;
  const bool nan_row = target.kind == RowKind::invalid || m != m || log_s != log_s;
  const float multiplier =
      nan_row ? NAN : static_cast<float>(static_cast<double>(upstream) * batch.grad_factor);
  const float target_coefficient = target.kind == RowKind::active ? 1.0f : 0.0f;
  const float lse = m + log_s;
  const float prob_factor = target_coefficient + (p.z_loss != 0.0f ? 2.0f * p.z_loss * lse : 0.0f);
  const float prob_scale = prob_factor * inv_s * multiplier;
  const float target_step = multiplier * target_coefficient;
  // 0, or NaN with the multiplier: every class of a NaN row is NaN, also where p_c is 0.
  const float other_step = multiplier * 0.0f;
  const bool zero_grad = target.kind == RowKind::ignored || batch.denominator == 0.0;
  TG* grad_row = static_cast<TG*>(p.grad) + p.grad_rows.of(r);
  const int classes = static_cast<int>(p.classes);
#pragma unroll
  for (int k = 0; k < kChunks; ++k) {
    const int col0 = row.column(k);
    if (col0 >= classes) continue;
    float g[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      const float e = kFromLogits ? row::exp_shifted(row.v[k][j], shift) : row.v[k][j];
      // The p_c terms are exactly 0 where p_c is: prob_scale may be infinite (z-loss of an all
      // -inf row).
      const float value =
          (e != 0.0f ? prob_scale * e : 0.0f) - (col0 + j == target.y ? target_step : other_step);
      g[j] = zero_grad ? 0.0f : value;
    }
    row::store_chunk(grad_row, col0, classes, g, p.chunk_pieces);
  }
}

// One row, by the threads of `group`, its logits loaded by load_logits_row. Returns the row's loss on
// one thread of the group (0 elsewhere) for the block's partial sum (in double: a row's loss may
// exceed float's range while the batch's mean does not).
template <class TG, int kChunks, Mode kMode>
__device__ __forceinline__ double exp_once_row(const CrossEntropyParams& p,
                                               const BatchConstants& batch, const RowGroup& group,
                                               row::FloatRow<kChunks>& row, std::int64_t r) {
  const bool in_range = r < p.rows;
  const RowTarget target = row_target(p, r);

  if constexpr (kMode == Mode::backward) {
    // m and log s from the forward, so that the probabilities are the fused pass's. An all -inf
    // row saved m = -inf: shifting by +inf instead makes every exp(x - shift) 0, never NaN.
    const CrossEntropyRowStats saved = in_range ? p.saved_stats[r] : CrossEntropyRowStats{0, 0};
    const float shift = saved.max == -INFINITY ? INFINITY : saved.max;
    if (in_range && group.rank == 0 && target.kind == RowKind::invalid && p.error != nullptr)
      record_device_error(p.error, StatusCode::out_of_range,
                          detail::DeviceErrorArgument::targets, r, load_class_target(p, r));
    // Each thread writes only the chunks it read itself: no barrier is needed for in-place.
    if (in_range && p.grad != nullptr)
      write_gradient<true, TG>(p, batch, row, r, target, saved.max, saved.log_sum,
                               expf(-saved.log_sum), shift);
    return 0.0;
  } else {
    // 1. The max, and x_y on the thread that holds it.
    float target_x = 0.0f;
    bool holds_target = false;
    const float m = group.reduce_max(row.max_picking(target.y, target_x, holds_target));
    // 2. The exponentials, once, in place, and s = 1 + rest. An all -inf row (or one past the
    // end) has no mass: rest = -1, unless a NaN came with it; a +inf makes the row NaN, as
    // inf - inf would.
    double ones, others;
    row.exponentiate(m == -INFINITY ? NAN : m, m == -INFINITY ? 0.0f : m, ones, others);
    group.reduce_sum_pair(ones, others);
    const double rest = m == INFINITY ? NAN : (ones - 1.0) + others;
    const bool no_mass = rest == -1.0;
    const float log_s = log1pf(static_cast<float>(rest));
    const float lse = m + log_s;
    const float inv_s = no_mass ? 0.0f : 1.0f / (1.0f + static_cast<float>(rest));

    // 3. The row's outputs, before the gradient loop.
    double loss = 0.0;
    const bool loss_thread = target.kind == RowKind::active ? holds_target : group.rank == 0;
    if (in_range && p.want_loss && loss_thread) {
      if (target.kind == RowKind::invalid) {
        loss = NAN;
      } else if (target.kind == RowKind::active) {
        // No class has mass (all -inf): lse - x_y is +inf. Else, relative to m (never as
        // lse - x_y, which overflows for logits near +-3e38), with log1p's accuracy.
        loss = no_mass ? INFINITY
                       : static_cast<double>(log_s) + times_gap(1.0f, m, target_x);
        if (p.z_loss != 0.0f)
          loss += no_mass ? INFINITY : static_cast<double>(p.z_loss) * lse * lse;
      }
      if (p.row_loss != nullptr) p.row_loss[r] = static_cast<float>(loss);
    }
    if (in_range && group.rank == 0) {
      if (p.lse != nullptr) p.lse[r] = lse;
      if (p.stats != nullptr) p.stats[r] = CrossEntropyRowStats{m, log_s};
      if (target.kind == RowKind::invalid && p.error != nullptr)
        record_device_error(p.error, StatusCode::out_of_range,
                            detail::DeviceErrorArgument::targets, r, load_class_target(p, r));
    }

    // 4. The gradient, from the stored exponentials. The reductions above ordered every read of
    // the row before these writes (in place, grad may be the logits).
    if constexpr (kMode == Mode::fused) {
      group.order_reads_before_writes();
      if (in_range && p.grad != nullptr)
        write_gradient<false, TG>(p, batch, row, r, target, m, log_s, inv_s);
    }
    return loss;
  }
}

template <class TX, class TG, int kChunks, Mode kMode>
__global__ void __launch_bounds__(kMaxThreads, kMinBlocks)
    cross_entropy_exp_once_kernel(CrossEntropyParams p) {
  static_assert(instantiated<TX, TG, kChunks, kMode>());
  __shared__ double2 exchange[row::kMaxWarps];
  __shared__ double warp_partials[row::kMaxWarps];
  const RowGroup group = RowGroup::make(p.threads_per_row, exchange);
  const RowTiles tiles{p.rows, group.rows_per_block(), group.row_in_block()};
  // The batch's constants and each thread's running loss live in shared memory, not in four
  // registers through every row (the 64-register tiles spilled with them there).
  __shared__ BatchConstants batch_shared;
  __shared__ double loss_sums[row::kMaxBlock];
  if (threadIdx.x == 0) batch_shared = batch_constants(p);
  loss_sums[threadIdx.x] = 0.0;
  __syncthreads();
  const BatchConstants& batch = batch_shared;
  using Row = row::FloatRow<kChunks>;
  // The next row's logits beside this one's fit the forward's one- and two-chunk tiles only.
  row::for_each_row_tile<Row>(
      tiles, kMode == Mode::forward && kChunks <= 2 && p.prefetch,
      [&](Row& source, std::int64_t r) { load_logits_row<TX>(p, group, source, r); },
      [&](Row& source, std::int64_t r) {
        const double loss = exp_once_row<TG, kChunks, kMode>(p, batch, group, source, r);
        if (loss != 0.0) loss_sums[threadIdx.x] += loss;
      });
  // The backward writes no loss; the forward and the fused pass finish theirs as the unified
  // kernel does (p.sum_row_weights is set for a mean without a gradient only).
  if constexpr (kMode != Mode::backward)
    finish_block_loss(p, group, tiles, batch, loss_sums[threadIdx.x], warp_partials);
}

template <class TX, class TG, int kChunks, Mode kMode, class Run>
cudaError_t run_kernel(const RowLaunch& launch, const CrossEntropyParams& params,
                       const Run& run) {
  if constexpr (instantiated<TX, TG, kChunks, kMode>())
    return run(cross_entropy_exp_once_kernel<TX, TG, kChunks, kMode>, launch, params);
  else
    return cudaErrorInvalidConfiguration;  // plan_cross_entropy plans no such tile
}

template <class Run>
Status dispatch(const RowLaunch& launch, const CrossEntropyParams& params, DType logits_dtype,
                DType grad_dtype, const Run& run) {
  const Mode mode = params.saved_stats != nullptr ? Mode::backward
                    : params.grad != nullptr      ? Mode::fused
                                                  : Mode::forward;
  if (!launch.float_tile || launch.block > kMaxThreads)
    return Status(StatusCode::internal, "",
                  "cross_entropy: a plan of " + std::to_string(launch.block) +
                      " threads does not fit the exp-once kernels");
  // A forward dispatches on the logits' dtype alone.
  return row::with_dtype("cross_entropy", logits_dtype, [&](auto x_tag) {
    return row::with_dtype(
        "cross_entropy", mode == Mode::forward ? logits_dtype : grad_dtype, [&](auto g_tag) {
          using TX = typename decltype(x_tag)::type;
          using TG = typename decltype(g_tag)::type;
          const cudaError_t error =
              row::launch_for_chunks<2, false>(launch.chunks, [&](auto chunks) {
            constexpr int kChunks = decltype(chunks)::value;
            switch (mode) {
              case Mode::forward:
                return run_kernel<TX, TG, kChunks, Mode::forward>(launch, params, run);
              case Mode::fused:
                return run_kernel<TX, TG, kChunks, Mode::fused>(launch, params, run);
              case Mode::backward:
                return run_kernel<TX, TG, kChunks, Mode::backward>(launch, params, run);
            }
            return cudaErrorInvalidValue;
          });
          ACTLOSS_CUDA_TRY(error);
          return Status{};
        });
  });
}

}  // namespace

Status dispatch_cross_entropy_exp_once(const RowLaunch& launch, const CrossEntropyParams& params,
                                       DType logits_dtype, DType grad_dtype,
                                       const row::KernelLaunch& run) {
  return dispatch(launch, params, logits_dtype, grad_dtype, run);
}

Status dispatch_cross_entropy_exp_once(const RowLaunch& launch, const CrossEntropyParams& params,
                                       DType logits_dtype, DType grad_dtype,
                                       const row::KernelResidency& run) {
  return dispatch(launch, params, logits_dtype, grad_dtype, run);
}

}  // namespace actloss::cuda
