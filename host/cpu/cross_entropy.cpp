// Softmax cross-entropy on the CPU backend: forward, backward, and both in one pass, with every
// option of include/actloss/cross_entropy.h.
//
// The math is the CUDA kernel's (cuda/cross_entropy.cu), row by row:
//   1. the (softcapped) row x' and its max m, in one read of the logits; x' is kept in a
//      per-thread float buffer when it differs from what memory holds (softcap, 16-bit logits);
//      the softcap's tanh is the tanh activation's here, not the kernel's expm1 (softcapped);
//   2. s = sum_c exp(x'_c - m) = 1 + rest, the first maximum's exact 1 kept out of `rest`, which
//      is summed in double, so log s = log1p(rest) keeps the relative accuracy of a confident
//      row's tiny loss; the exponentials stay in the buffer (or a long f32 row's gradient) for
//      the gradient;
//   3. the loss  A log1p(rest) + a_y (m - x'_y) + sum_c a'_c (m - x'_c) + z lse^2, written relative
//      to m in double (logits up to +-3e38 stay finite), and the gradient
//      ((A + 2 z lse) p_c - a_c) * multiplier * softcap slope, written once per element.
// Backward takes m and log s from the forward's row statistics, as the kernel does.
//
// Rows are cut into tasks of a fixed number of rows (by size, never by thread count); each task
// sums its rows' losses in double in row order, and the tasks' sums are added in task order: the
// same bits on any number of threads.
#ifndef ACTLOSS_HOST_CPU_CROSS_ENTROPY_ONCE
#define ACTLOSS_HOST_CPU_CROSS_ENTROPY_ONCE

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "host/cpu/backend.h"
#include "host/cpu/thread_pool.h"
#include "host/cpu_path.h"
#include "host/half.h"

namespace actloss::cpu {

using detail::Pass;

// Everything a row needs that is the same for the whole call, worked out once on the host.
struct CrossEntropyCall {
  Pass pass = Pass::forward;
  std::int64_t rows = 0, classes = 0, rows_per_batch = 1;

  const void* logits = nullptr;
  DType logits_dtype = DType::f32;
  std::int64_t logits_row_stride = 0, logits_batch_stride = 0;

  const void* targets = nullptr;
  TargetKind target_kind = TargetKind::class_index_i64;
  DType target_dtype = DType::f32;
  std::int64_t target_row_stride = 0, target_batch_stride = 0;

  const float* class_weight = nullptr;
  double class_weight_sum = 0.0;  // sum_c w_c (classes when unweighted)

  std::int64_t ignore_index = -100;
  float smoothing = 0.0f, z_loss = 0.0f, softcap = 0.0f;

  bool want_loss = false;      // row losses are needed
  float* row_loss = nullptr;   // Reduction::none
  float* lse = nullptr;
  CrossEntropyRowStats* stats = nullptr;
  std::int64_t* predicted = nullptr;
  const CrossEntropyRowStats* saved_stats = nullptr;

  void* grad = nullptr;
  DType grad_dtype = DType::f32;
  std::int64_t grad_row_stride = 0, grad_batch_stride = 0;
  const float* upstream = nullptr;
  bool upstream_per_row = false;
  double denominator = 1.0;  // of the mean (1 otherwise); 0 when every row is ignored
  double grad_factor = 1.0;  // grad_scale / denominator, 0 for a zero denominator

  std::int64_t start_of(std::int64_t row, std::int64_t row_stride,
                        std::int64_t batch_stride) const {
    return (row / rows_per_batch) * batch_stride + (row % rows_per_batch) * row_stride;
  }
  bool soft() const { return target_kind == TargetKind::probabilities; }
  std::int64_t class_target(std::int64_t row) const {
    return host::load_class_target(targets, target_kind, start_of(row, 1, target_batch_stride));
  }
};

// What a task of rows hands back.
struct CrossEntropyTaskResult {
  double loss_sum = 0.0;
  std::int64_t counted = 0, correct = 0;  // token accuracy: rows not ignored, and hits
};

}  // namespace actloss::cpu

#endif  // ACTLOSS_HOST_CPU_CROSS_ENTROPY_ONCE

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "host/cpu/cross_entropy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/cache_control.h>
#include <hwy/contrib/math/math-inl.h>

#include "host/cpu/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace actloss::cpu::HWY_NAMESPACE {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Adds the lanes of v to `sum` in double, without a float rounding on the way.
HWY_INLINE DoubleVec add_promoted(DoubleVec sum, FloatVec v) {
  const FloatTag d;
  return hn::Add(hn::Add(sum, lower_as_double(d, v)), upper_as_double(d, v));
}

// sum_lanes(coefficient * (m - x)) in double: m - x is exact there and cannot overflow. A class
// with no weight in the loss adds nothing even where it is masked (x = -inf, whose infinite gap
// times 0 would make the loss NaN where the true loss is finite): a soft target's zero mass on a
// masked class, or a zero class weight under smoothing.
HWY_INLINE DoubleVec add_gaps(DoubleVec sum, FloatVec coefficient, float m, FloatVec x) {
  const FloatTag d;
  x = hn::IfThenElse(hn::Eq(coefficient, hn::Zero(d)), hn::Set(d, m), x);
  const DoubleVec vm = hn::Set(DoubleTag(), static_cast<double>(m));
  sum = hn::MulAdd(lower_as_double(d, coefficient), hn::Sub(vm, lower_as_double(d, x)), sum);
  return hn::MulAdd(upper_as_double(d, coefficient), hn::Sub(vm, upper_as_double(d, x)), sum);
}

// x' = cap tanh(x / cap) and its slope sech^2(x / cap) = 4 E / (1 + E)^2 with E = exp(-2|u|),
// u = x / cap: tanh from simd-inl.h's tanh_and_decay, as the tanh activation's, and the slope
// from its E, so that a logit several caps out keeps a slope of E's size (1 - tanh^2 would
// round to 0). The kernel takes expm1 for tanh; Highway's Expm1 and Exp here made a capped
// row 3-5x the plain row's time.
HWY_INLINE FloatVec slope_from_decay(FloatTag d, FloatVec u, FloatVec decay) {
  const FloatVec one_plus = hn::Add(hn::Set(d, 1.0f), decay);
  const FloatVec slope = hn::Div(hn::Mul(hn::Set(d, 4.0f), decay), hn::Mul(one_plus, one_plus));
  return hn::IfThenElse(hn::IsNaN(u), u, slope);
}
// u = x / cap as x (1 / cap): a division less per element, the dearest operation here. The
// reciprocal is within half an ulp, so u gains at most an ulp, which tanh (whose relative
// condition number is at most 1) passes on no larger. A subnormal cap, whose reciprocal
// overflows, divides.
HWY_INLINE FloatVec over_cap(FloatTag d, FloatVec x, float cap) {
  const float inverse = 1.0f / cap;
  return std::isfinite(inverse) ? hn::Mul(x, hn::Set(d, inverse)) : hn::Div(x, hn::Set(d, cap));
}
// NaN stays NaN (tanh_and_decay keeps it), +-inf gives +-cap.
HWY_INLINE FloatVec softcapped(FloatTag d, FloatVec x, float cap) {
  return hn::Mul(hn::Set(d, cap), tanh_and_decay(d, over_cap(d, x, cap)).tanh);
}
HWY_INLINE FloatVec softcap_slope(FloatTag d, FloatVec x, float cap) {
  const FloatVec u = over_cap(d, x, cap);
  return slope_from_decay(d, u, exp_nonpositive(d, hn::Mul(hn::Set(d, -2.0f), hn::Abs(u))));
}
// Both from one exponential.
HWY_INLINE FloatVec softcapped_with_slope(FloatTag d, FloatVec x, float cap, FloatVec& slope) {
  const FloatVec u = over_cap(d, x, cap);
  const TanhAndDecay t = tanh_and_decay(d, u);
  slope = slope_from_decay(d, u, t.decay);
  return hn::Mul(hn::Set(d, cap), t.tanh);
}

// a_c of probability targets at columns [c, c + count), w_c ((1 - eps) q_c + eps / C); lanes
// past the row are 0.
template <class TQ>
HWY_INLINE FloatVec target_coefficients(FloatTag d, const TQ* q, const float* class_weight,
                                        float one_minus_eps, float smooth, std::int64_t c,
                                        std::int64_t count) {
  FloatVec a =
      hn::MulAdd(hn::Set(d, one_minus_eps), load_part(d, q + c, count), hn::Set(d, smooth));
  if (class_weight != nullptr) a = hn::Mul(a, load_part(d, class_weight + c, count));
  return hn::IfThenElseZero(hn::FirstN(d, static_cast<size_t>(count)), a);
}

// out[c] = scale exps[c] over the whole vectors of [from, to): the gradient of a row whose
// columns differ only by p_c.
template <class TG>
HWY_INLINE void store_scaled(FloatTag d, FloatVec scale, const float* exps, TG* out,
                             std::int64_t from, std::int64_t to, bool stream) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  if (stream) {
    for (std::int64_t c = from; c < to; c += lanes)
      stream_floats(d, hn::Mul(scale, hn::LoadU(d, exps + c)), out + c);
  } else {
    for (std::int64_t c = from; c < to; c += lanes)
      store_floats(d, hn::Mul(scale, hn::LoadU(d, exps + c)), out + c);
  }
}

// Per-thread scratch of at least `floats` floats (rows of x', then of the exponentials), starting
// on a cache line: a row's passes over the buffer are most of what a bf16 row reads. The buffer
// is used from column 0 wherever the logits lie, so no result's bits depend on it.
float* row_buffer(std::size_t floats) {
  thread_local std::vector<float> buffer;
  return cache_line_floats(buffer, floats);
}

template <class TX, class TG>
class RowKernel {
 public:
  explicit RowKernel(const CrossEntropyCall& call) : c_(call), d_() {
    lanes_ = static_cast<std::int64_t>(hn::Lanes(d_));
    // A gradient over the logits (in place) has its lines in cache already, just read.
    stream_ = c_.grad != nullptr && c_.grad != c_.logits &&
              c_.rows * c_.classes * static_cast<std::int64_t>(sizeof(TG)) >=
                  streaming_output_bytes();
    // Only options that leave a class-target row's gradient p_c times one factor (but at the
    // target) can defer it; and only a streamed gradient is worth it (see Deferred).
    defers_ = c_.pass == Pass::forward_backward && stream_ && !c_.soft() &&
              c_.smoothing == 0.0f && c_.softcap == 0.0f;
    // A long f32 row's exponentials go to its f32 gradient row, not streamed, instead of the
    // buffer (kOutputAsBufferRowBytes): 1.07x at 128256 classes, 1.24x at 262144 (Xeon VM, two
    // threads, alternating processes, medians of three); at 4096 classes 0.90x, at 32000-50257
    // no different. Only where the logits are x' themselves: 16-bit or softcapped rows fill the
    // buffer with x' anyway, and the softcap's slope reads the logits the row would overwrite
    // in place.
    if constexpr (std::is_same_v<TX, float> && std::is_same_v<TG, float>) {
      gradient_keeps_exponentials_ =
          c_.pass == Pass::forward_backward && !stream_ && c_.softcap == 0.0f &&
          c_.classes * static_cast<std::int64_t>(3 * sizeof(float)) > kOutputAsBufferRowBytes;
    }
    // The backward of a probability row reads its targets twice, for their sum A and then for
    // the gradient: the next row's come into L2 during this row's gradient, so that the sum's
    // pass finds them there. On Intel (prefetch_next_row_into_l2), where a row's logits,
    // targets and gradient take at most 1 MiB. On the Xeon VM (two threads, alternating
    // processes, medians of three to five, flushed cache): f32 1.04-1.12x from 256 to 50257
    // classes, 0.94x at 128256 (1.5 MiB a row) and 0.91x at 262144; bf16 1.13-1.21x from 1024
    // to 128256 classes, 0.99x at 256 (and 1.11-1.15x at 262144, 1.5 MiB, left out with f32).
    if (c_.soft() && c_.pass == Pass::backward && prefetch_next_row_into_l2) {
      constexpr std::int64_t kNextTargetsRowBytes = std::int64_t{1} << 20;
      prefetches_next_targets_ =
          c_.classes * (static_cast<std::int64_t>(sizeof(TX) + sizeof(TG)) +
                        dtype_size(c_.target_dtype)) <=
          kNextTargetsRowBytes;
    }
    const bool needs_buffer =
        c_.softcap != 0.0f || !std::is_same_v<TX, float> ||
        (c_.pass == Pass::forward_backward && !gradient_keeps_exponentials_);
    if (needs_buffer) {
      // Padded to whole vectors, so that loops over it need no tail, and to whole cache lines,
      // so that the second row starts on one too; two rows' worth when a row's exponentials must
      // outlive the next row's.
      constexpr std::int64_t kLineFloats = 64 / sizeof(float);
      buffer_stride_ = (c_.classes + lanes_ + kLineFloats - 1) / kLineFloats * kLineFloats;
      buffer_base_ = row_buffer(static_cast<std::size_t>(buffer_stride_ * (defers_ ? 2 : 1)));
      buffer_ = buffer_base_;
    }
  }

  // Writes what is left of a deferred gradient: at the end of a task, before hwy::FlushStream().
  void finish() { deferred_.write(d_, std::numeric_limits<std::int64_t>::max()); }

  // The task must end with hwy::FlushStream() when true.
  bool streams() const { return stream_; }

  void run(std::int64_t row, CrossEntropyTaskResult& result) {
    const TX* logits = static_cast<const TX*>(c_.logits) +
                       c_.start_of(row, c_.logits_row_stride, c_.logits_batch_stride);
    const std::int64_t classes = c_.classes;
    // The next row's logits are fetched while this row's exponentials are computed: one core
    // otherwise waits for memory in the first pass over a row and leaves it idle in the next.
    next_row_ = row + 1 < c_.rows
                    ? static_cast<const TX*>(c_.logits) +
                          c_.start_of(row + 1, c_.logits_row_stride, c_.logits_batch_stride)
                    : nullptr;
    next_targets_ = prefetches_next_targets_ && row + 1 < c_.rows
                        ? static_cast<const char*>(c_.targets) +
                              c_.start_of(row + 1, c_.target_row_stride, c_.target_batch_stride) *
                                  dtype_size(c_.target_dtype)
                        : nullptr;

    // Which row this is: a class target (ignored or active) or a probability row.
    std::int64_t y = -1;
    bool ignored = false;
    if (!c_.soft()) {
      y = c_.class_target(row);
      ignored = y == c_.ignore_index;
      if (ignored) y = -1;
    }
    const float smooth = c_.smoothing / static_cast<float>(classes);
    const float eps = c_.smoothing;
    const float hard_coefficient =
        y >= 0 ? (1.0f - eps) * (c_.class_weight != nullptr ? c_.class_weight[y] : 1.0f) : 0.0f;
    if (c_.pass == Pass::backward) {
      backward_row(row, logits, y, ignored, hard_coefficient, smooth,
                   row_coefficient_sum(row, ignored, hard_coefficient, smooth));
      return;
    }

    // 1. x' and its max; a NaN counts as +inf there, so m = +inf flags both (rare) cases.
    float m = -kInf, raw_max = -kInf;
    bool non_finite = false;
    const float* xs = row_and_max(logits, m, raw_max, non_finite);
    bool nan_row = false;
    if (non_finite) {
      // Rare: find out which, and the max of the non-NaN values (what the stats keep).
      m = -kInf;
      for (std::int64_t c = 0; c < classes; ++c) {
        const float x = xs[c];
        if (std::isnan(x)) {
          nan_row = true;
        } else if (x > m) {
          m = x;
        }
      }
      if (m == kInf) nan_row = true;
    }
    if (c_.predicted != nullptr) {
      const std::int64_t best = predicted_class(logits, raw_max, nan_row && has_nan(logits));
      c_.predicted[row] = best;
      if (!c_.soft() && !ignored) {
        ++result.counted;
        if (best == y) ++result.correct;
      }
    }

    // 2. rest = s - 1 and the loss terms.
    const bool no_mass = !nan_row && m == -kInf;
    const bool fused = c_.pass == Pass::forward_backward;
    const bool need_terms = c_.want_loss && !ignored && (c_.soft() || eps != 0.0f);
    // Taken before the exponentials may overwrite x' in the buffer.
    const float target_x = y >= 0 ? xs[y] : 0.0f;
    // A probability row's A comes from the exponentials' pass, which reads its targets for the
    // loss terms anyway, in the separate pass's order and so to the same bits: one pass over
    // the targets less, the dearer half of such a row.
    const bool mass_in_exponentials = c_.soft() && need_terms && !nan_row && !no_mass;
    float coefficient_sum =
        mass_in_exponentials ? 0.0f : row_coefficient_sum(row, ignored, hard_coefficient, smooth);
    double rest = -1.0, terms = 0.0, mass = 0.0;
    if (nan_row) {
      rest = std::numeric_limits<double>::quiet_NaN();
    } else if (!no_mass) {
      // The fused pass's gradient row is fetched meanwhile for its stores
      // (fetch_output_before_writing), where the row's logits, exponentials and gradient fit in
      // L2 together.
      const auto row_bytes =
          classes * static_cast<std::int64_t>(sizeof(TX) + sizeof(float) + sizeof(TG));
      fetched_gradient_ =
          fused && !gradient_keeps_exponentials_ && fetches_output_row(stream_, row_bytes)
              ? gradient_row(row)
              : nullptr;
      rest = exponentials(xs, m, row, exponentials_row(row), need_terms, terms, mass);
      if (mass_in_exponentials) coefficient_sum = static_cast<float>(mass);
    }
    const double log_s = nan_row ? rest : (no_mass ? -INFINITY : log1p_double(rest));
    const float log_s_f = static_cast<float>(log_s);
    const float lse = m + log_s_f;

    double loss = 0.0;
    if (c_.want_loss && !ignored) {
      if (no_mass) {
        loss = coefficient_sum > 0.0f ? INFINITY : (coefficient_sum < 0.0f ? -INFINITY : 0.0);
        if (c_.z_loss != 0.0f) loss += INFINITY;
      } else {
        loss = times(coefficient_sum, log_s_f) + times_gap(hard_coefficient, m, target_x);
        if (c_.z_loss != 0.0f) {
          loss += static_cast<double>(c_.z_loss) * static_cast<double>(lse) * lse;
        }
        if (need_terms) loss += (c_.soft() ? 1.0 : static_cast<double>(smooth)) * terms;
      }
    }
    if (c_.lse != nullptr) c_.lse[row] = lse;
    if (c_.stats != nullptr) c_.stats[row] = CrossEntropyRowStats{m, log_s_f};
    if (c_.row_loss != nullptr) c_.row_loss[row] = host::double_to_float(loss);
    result.loss_sum += loss;

    // The previous row's gradient is complete before this row's is begun (its buffer is the
    // one the next row takes).
    finish();
    if (fused) {
      const float inv_sum = no_mass ? 0.0f : 1.0f / (1.0f + static_cast<float>(rest));
      gradient(row, logits, exponentials_row(row), /*shift=*/0.0f, y, ignored,
               nan_row || log_s_f != log_s_f, no_mass, lse, inv_sum, hard_coefficient, smooth,
               coefficient_sum);
    }
  }

 private:
  TG* gradient_row(std::int64_t row) const {
    return static_cast<TG*>(c_.grad) + c_.start_of(row, c_.grad_row_stride, c_.grad_batch_stride);
  }
  // Where the fused pass keeps a row's exponentials: the per-thread buffer, or the gradient row
  // itself (gradient_keeps_exponentials_).
  float* exponentials_row(std::int64_t row) const {
    if (c_.pass != Pass::forward_backward) return nullptr;
    if constexpr (std::is_same_v<TG, float>) {
      if (gradient_keeps_exponentials_) return gradient_row(row);
    }
    return buffer_;
  }

  static double times(float coefficient, float value) {
    return coefficient == 0.0f && value == value ? 0.0
                                                 : static_cast<double>(coefficient) * value;
  }
  static double times_gap(float coefficient, float m, float x) {
    const double gap = static_cast<double>(m) - static_cast<double>(x);
    return coefficient == 0.0f && gap == gap ? 0.0 : static_cast<double>(coefficient) * gap;
  }

  // A = sum_c a_c: closed form for class targets, a pass over the targets for probabilities.
  float row_coefficient_sum(std::int64_t row, bool ignored, float hard_coefficient,
                            float smooth) const {
    if (!c_.soft()) {
      if (ignored) return 0.0f;
      return hard_coefficient +
             (c_.smoothing != 0.0f ? smooth * static_cast<float>(c_.class_weight_sum) : 0.0f);
    }
    return with_storage(c_.target_dtype, [&](auto* tag) {
      using TQ = std::remove_pointer_t<decltype(tag)>;
      const TQ* q = static_cast<const TQ*>(c_.targets) +
                    c_.start_of(row, c_.target_row_stride, c_.target_batch_stride);
      DoubleVec sum = hn::Zero(DoubleTag());
      for_each_vector([&](std::int64_t c, std::int64_t count) ACTLOSS_VECTOR_BODY {
        const FloatVec a = coefficients(q, c, count, smooth);
        sum = add_promoted(sum, a);
      });
      return static_cast<float>(sum_double_lanes(sum));
    });
  }

  // a_c of probability targets, w_c ((1 - eps) q_c + eps / C), at columns [c, c + count); lanes
  // past the row are 0.
  template <class TQ>
  FloatVec coefficients(const TQ* q, std::int64_t c, std::int64_t count, float smooth) const {
    return target_coefficients(d_, q, c_.class_weight, 1.0f - c_.smoothing, smooth, c, count);
  }

  // Calls body(c, count) for the row's vectors from column `first` on: count = Lanes except for
  // the last.
  template <class Body>
  void for_each_vector(std::int64_t first, Body&& body) const {
    const std::int64_t classes = c_.classes;
    std::int64_t c = first;
    for (; c + lanes_ <= classes; c += lanes_) body(c, lanes_);
    if (c < classes) body(c, classes - c);
  }
  template <class Body>
  void for_each_vector(Body&& body) const {
    for_each_vector(0, std::forward<Body>(body));
  }
  // The same over a gradient row whose first `lead` elements come as one partial vector.
  template <class Body>
  void for_each_output_vector(std::int64_t lead, Body&& body) const {
    if (lead > 0) body(0, lead);
    for_each_vector(lead, body);
  }

  // count elements at p as floats; lanes past count get `fill`.
  template <class T>
  FloatVec load(const T* p, std::int64_t count, float fill) const {
    if (count == lanes_) return load_floats(d_, p);
    const FloatVec v = load_floats_partial(d_, p, static_cast<size_t>(count));
    return hn::IfThenElse(hn::FirstN(d_, static_cast<size_t>(count)), v, hn::Set(d_, fill));
  }

  // x' of the row (the logits themselves for f32 without softcap, else the buffer filled with
  // the (capped) values in float) and its max.
  const float* row_and_max(const TX* logits, float& m, float& raw_max, bool& non_finite) {
    if (c_.softcap != 0.0f) return capped_row_and_max(logits, m, raw_max, non_finite);
    // Without softcap, one pass: widened 16-bit logits go to the buffer as the max takes them.
    // Four maxima, so that the loop waits on no max's latency, and only local copies: as two
    // loops through `this`, the widening reloaded the buffer pointer and softcap per vector and
    // the max waited on its one chain, together 30% of a bf16 fused row at 32000 classes.
    const FloatTag d = d_;
    const std::int64_t lanes = lanes_, classes = c_.classes;
    float* const widened = std::is_same_v<TX, float> ? nullptr : buffer_;
    const FloatVec inf = hn::Set(d, kInf);
    const auto flagged = [inf](FloatVec x) ACTLOSS_VECTOR_BODY {
      return hn::IfThenElse(hn::IsNaN(x), inf, x);
    };
    FloatVec top0 = hn::Set(d, -kInf), top1 = top0, top2 = top0, top3 = top0;
    std::int64_t c = 0;
    for (; c + 4 * lanes <= classes; c += 4 * lanes) {
      const FloatVec x0 = load_floats(d, logits + c), x1 = load_floats(d, logits + c + lanes);
      const FloatVec x2 = load_floats(d, logits + c + 2 * lanes);
      const FloatVec x3 = load_floats(d, logits + c + 3 * lanes);
      if (widened != nullptr) {
        hn::StoreU(x0, d, widened + c);
        hn::StoreU(x1, d, widened + c + lanes);
        hn::StoreU(x2, d, widened + c + 2 * lanes);
        hn::StoreU(x3, d, widened + c + 3 * lanes);
      }
      top0 = hn::Max(top0, flagged(x0));
      top1 = hn::Max(top1, flagged(x1));
      top2 = hn::Max(top2, flagged(x2));
      top3 = hn::Max(top3, flagged(x3));
    }
    for (; c < classes; c += lanes) {
      const FloatVec x = load(logits + c, std::min(lanes, classes - c), -kInf);
      if (widened != nullptr) hn::StoreU(x, d, widened + c);
      top0 = hn::Max(top0, flagged(x));
    }
    m = hn::GetLane(hn::MaxOfLanes(d, hn::Max(hn::Max(top0, top1), hn::Max(top2, top3))));
    raw_max = m;
    non_finite = m == kInf;
    if constexpr (std::is_same_v<TX, float>) {
      return logits;
    } else {
      return widened;
    }
  }

  // The buffer filled with the capped row in float, its max, and the raw logits' max (which
  // torch.argmax takes) when the predicted class is asked for, in one pass over the logits.
  // Local copies only, for the reason row_and_max gives: as two loops through `this`, a capped
  // row's forward took 1.15x as long.
  const float* capped_row_and_max(const TX* logits, float& m, float& raw_max, bool& non_finite) {
    const FloatTag d = d_;
    const std::int64_t lanes = lanes_, classes = c_.classes;
    const float cap = c_.softcap;
    float* const capped = buffer_;
    const bool want_raw = c_.predicted != nullptr;
    const FloatVec inf = hn::Set(d, kInf), minus_inf = hn::Set(d, -kInf);
    const auto flagged = [inf](FloatVec x) ACTLOSS_VECTOR_BODY {
      return hn::IfThenElse(hn::IsNaN(x), inf, x);
    };
    FloatVec top = minus_inf, raw_top = minus_inf;
    std::int64_t c = 0;
    for (; c + lanes <= classes; c += lanes) {
      const FloatVec raw = load_floats(d, logits + c);
      const FloatVec x = softcapped(d, raw, cap);
      hn::StoreU(x, d, capped + c);
      top = hn::Max(top, flagged(x));
      if (want_raw) raw_top = hn::Max(raw_top, flagged(raw));
    }
    if (c < classes) {
      // The buffer's padding gets the capped -inf, -cap; the maxima leave those lanes out.
      const auto in_row = hn::FirstN(d, static_cast<size_t>(classes - c));
      const FloatVec raw = hn::IfThenElse(
          in_row, load_floats_partial(d, logits + c, static_cast<size_t>(classes - c)),
          minus_inf);
      const FloatVec x = softcapped(d, raw, cap);
      hn::StoreU(x, d, capped + c);
      top = hn::Max(top, flagged(hn::IfThenElse(in_row, x, minus_inf)));
      if (want_raw) raw_top = hn::Max(raw_top, flagged(raw));
    }
    m = hn::GetLane(hn::MaxOfLanes(d, top));
    raw_max = want_raw ? hn::GetLane(hn::MaxOfLanes(d, raw_top)) : m;
    non_finite = m == kInf;
    return capped;
  }

  bool has_nan(const TX* logits) const {
    for (std::int64_t c = 0; c < c_.classes; ++c) {
      if (std::isnan(load_float(logits + c))) return true;
    }
    return false;
  }

  // torch.argmax of the raw logits: the first NaN, else the first maximum.
  std::int64_t predicted_class(const TX* logits, float raw_max, bool any_nan) const {
    for (std::int64_t c = 0; c < c_.classes; ++c) {
      const float x = load_float(logits + c);
      if (any_nan ? std::isnan(x) : x == raw_max) return c;
    }
    return 0;
  }

  // The first column holding m (which exists: m is finite here and one of the values).
  std::int64_t first_maximum(const float* xs, float m) const {
    const FloatTag d = d_;
    const FloatVec vm = hn::Set(d, m);
    const std::int64_t lanes = lanes_, classes = c_.classes;
    // Stops at the first hit: half a row on average, from L1.
    std::int64_t c = 0;
    for (; c + lanes <= classes; c += lanes) {
      const intptr_t lane = hn::FindFirstTrue(d, hn::Eq(hn::LoadU(d, xs + c), vm));
      if (lane >= 0) return c + lane;
    }
    if (c < classes) {
      const intptr_t lane = hn::FindFirstTrue(d, hn::Eq(load(xs + c, classes - c, -kInf), vm));
      if (lane >= 0) return c + lane;
    }
    return -1;
  }

  // What a row's exponential pass also sums, sum_c a'_c (m - x'_c): nothing (no loss wanted, no
  // smoothing, or an ignored row); the gaps alone (smoothing, no class weights); the gaps times
  // the class weights (smoothing); times the probability targets' coefficients.
  enum class Terms { none, unit, weighted, soft };

  // The exponentials' pass over the row's whole blocks of four vectors from column 0, adding to
  // `rest` (the first maximum, at column `excluded`, left out) and, as kTerms says, to
  // `term_sum`; returns the first column after them. Everything it uses is a local copy: with a
  // store in the loop, GCC would reload what it reaches through `this` or a reference once per
  // vector.
  template <Terms kTerms, class TQ>
  std::int64_t exponential_blocks(const float* xs, float m, std::int64_t excluded, float* keep,
                                  const TQ* q, DoubleVec& rest, DoubleVec& term_sum,
                                  DoubleVec& mass_sum) {
    const FloatTag d = d_;
    const hn::RebindToSigned<FloatTag> di;
    const auto lane_index = hn::Iota(di, 0);
    const std::int64_t lanes = lanes_, classes = c_.classes, block = 4 * lanes;
    const TX* const next_row = next_row_;
    const TG* const fetched = fetched_gradient_;
    const float* const values = xs;
    float* const kept = keep;
    const float* const class_weight = c_.class_weight;
    const float one_minus_eps = 1.0f - c_.smoothing;
    const float smooth = c_.smoothing / static_cast<float>(classes);
    const FloatVec shift = hn::Set(d, m);
    const DoubleVec vm_double = hn::Set(DoubleTag(), static_cast<double>(m));
    // Each block's exponentials are added in float (four roundings of 2^-24 relative to a
    // partial sum, which the double sum then keeps) before one conversion to double, which is
    // what the loop would otherwise spend most on. The gaps of kTerms are summed in double (m - x
    // exact there) on two chains taken in turn, so that no vector waits on the last one's two
    // additions.
    DoubleVec sum = rest;
    DoubleVec terms = term_sum, other_terms = hn::Zero(DoubleTag());
    // Terms::soft's sum of the coefficients, A: one chain, vector by vector as
    // row_coefficient_sum adds them, so that a row's A has the same bits in every pass.
    DoubleVec mass = mass_sum;
    // The previous row's deferred gradient, a block per block of this row's exponentials.
    Deferred deferred = deferred_;
    if constexpr (kTerms == Terms::none) {
      // A forward pass's rows: nothing to keep, fetch or write beside the sum. With AVX2's
      // sixteen vector registers, the general loop below spills the exponential's constants
      // and reloads them every block; this one keeps them. The same sums, so the same bits.
      if (kept == nullptr && fetched == nullptr && deferred.idle()) {
        std::int64_t first = 0;
        for (; first + block <= classes; first += block) {
          if (next_row != nullptr) {
            for (std::int64_t k = first; k < first + block; k += 64 / sizeof(TX)) {
              prefetch_next_row_line(next_row + k);
            }
          }
          FloatVec part = hn::Zero(d);
          for (std::int64_t k = first; k < first + block; k += lanes) {
            FloatVec e = exp_nonpositive(d, hn::Sub(hn::LoadU(d, values + k), shift));
            if (static_cast<std::uint64_t>(excluded - k) < static_cast<std::uint64_t>(lanes)) {
              const auto at_maximum =
                  hn::Eq(lane_index, hn::Set(di, static_cast<int>(excluded - k)));
              e = hn::IfThenZeroElse(hn::RebindMask(d, at_maximum), e);
            }
            part = hn::Add(part, e);
          }
          sum = add_promoted(sum, part);
        }
        rest = sum;
        return first;
      }
    }
    std::int64_t first = 0;
    for (; first + block <= classes; first += block) {
      deferred.write(d, block);
      FloatVec part = hn::Zero(d);
      if (next_row != nullptr) {
        // A cache line per 64 bytes of the next row over this block's columns.
        for (std::int64_t k = first; k < first + block; k += 64 / sizeof(TX)) {
          prefetch_next_row_line(next_row + k);
        }
      }
      if (fetched != nullptr) fetch_output_lines(fetched + first, block * sizeof(TG));
      // One vector; the test for the first maximum only in the block that holds it.
      const auto vector_at = [&](std::int64_t k, auto may_hold_maximum) ACTLOSS_VECTOR_BODY {
        const FloatVec x = hn::LoadU(d, values + k);
        FloatVec e = exp_nonpositive(d, hn::Sub(x, shift));
        if (kept != nullptr) hn::StoreU(e, d, kept + k);
        if constexpr (decltype(may_hold_maximum)::value) {
          if (excluded >= k && excluded < k + lanes) {
            const auto at_maximum =
                hn::Eq(lane_index, hn::Set(di, static_cast<int>(excluded - k)));
            e = hn::IfThenZeroElse(hn::RebindMask(d, at_maximum), e);
          }
        }
        part = hn::Add(part, e);
        if constexpr (kTerms == Terms::unit) {
          terms = hn::Add(hn::Add(terms, hn::Sub(vm_double, lower_as_double(d, x))),
                          hn::Sub(vm_double, upper_as_double(d, x)));
        } else if constexpr (kTerms == Terms::weighted) {
          terms = add_gaps(terms, hn::LoadU(d, class_weight + k), m, x);
        } else if constexpr (kTerms == Terms::soft) {
          const FloatVec a =
              target_coefficients(d, q, class_weight, one_minus_eps, smooth, k, lanes);
          terms = add_gaps(terms, a, m, x);
          mass = add_promoted(mass, a);
        }
        if constexpr (kTerms != Terms::none) std::swap(terms, other_terms);
      };
      if (excluded >= first && excluded < first + block) {
        for (std::int64_t k = first; k < first + block; k += lanes) vector_at(k, std::true_type{});
      } else {
        for (std::int64_t k = first; k < first + block; k += lanes) vector_at(k, std::false_type{});
      }
      sum = add_promoted(sum, part);
    }
    deferred_ = deferred;
    rest = sum;
    if constexpr (kTerms != Terms::none) term_sum = hn::Add(terms, other_terms);
    if constexpr (kTerms == Terms::soft) mass_sum = mass;
    return first;
  }

  // rest = sum of exp(x'_c - m) over every column but the first maximum's (whose term is the
  // exact 1 of s = 1 + rest), in double; another maximum adds its exact 1. The exponentials go
  // to `keep` when given; `terms` gets sum_c a'_c (m - x'_c) when asked (a' = w for class
  // targets with smoothing, a for probabilities), and then for probabilities `mass` gets A.
  double exponentials(const float* xs, float m, std::int64_t row, float* keep, bool need_terms,
                      double& terms, double& mass) {
    const FloatVec vm = hn::Set(d_, m);
    const std::int64_t excluded = first_maximum(xs, m);
    const hn::RebindToSigned<FloatTag> di;
    const auto lane_index = hn::Iota(di, 0);
    // The vector at column c without the first maximum's term.
    const auto without_maximum = [&](std::int64_t c, FloatVec e) {
      if (excluded < c || excluded >= c + lanes_) return e;
      const auto at_maximum = hn::Eq(lane_index, hn::Set(di, static_cast<int>(excluded - c)));
      return hn::IfThenZeroElse(hn::RebindMask(d_, at_maximum), e);
    };
    DoubleVec rest = hn::Zero(DoubleTag());
    DoubleVec term_sum = hn::Zero(DoubleTag());
    DoubleVec mass_sum = hn::Zero(DoubleTag());
    const float smooth = c_.smoothing / static_cast<float>(c_.classes);
    auto body = [&](auto* q_tag) {
      using TQ = std::remove_pointer_t<decltype(q_tag)>;
      const TQ* q = c_.soft() ? static_cast<const TQ*>(c_.targets) +
                                    c_.start_of(row, c_.target_row_stride, c_.target_batch_stride)
                              : nullptr;
      // Whole blocks of four vectors first; what is left of the row, vector by vector.
      std::int64_t first = 0;
      if (!need_terms) {
        first = exponential_blocks<Terms::none>(xs, m, excluded, keep, q, rest, term_sum, mass_sum);
      } else if (c_.soft()) {
        first = exponential_blocks<Terms::soft>(xs, m, excluded, keep, q, rest, term_sum, mass_sum);
      } else if constexpr (std::is_same_v<TQ, float>) {
        first = c_.class_weight != nullptr
                    ? exponential_blocks<Terms::weighted>(xs, m, excluded, keep, q, rest,
                                                          term_sum, mass_sum)
                    : exponential_blocks<Terms::unit>(xs, m, excluded, keep, q, rest, term_sum,
                                                      mass_sum);
      }
      for_each_vector(first, [&](std::int64_t c, std::int64_t count) ACTLOSS_VECTOR_BODY {
        const FloatVec x = load(xs + c, count, -kInf);
        const FloatVec e = exp_nonpositive(d_, hn::Sub(x, vm));
        rest = add_promoted(rest, without_maximum(c, e));
        // A gradient row that keeps them has no padding past its end.
        if (keep != nullptr) {
          if (count == lanes_) {
            hn::StoreU(e, d_, keep + c);
          } else {
            store_floats_partial(d_, e, keep + c, static_cast<size_t>(count));
          }
        }
        if (need_terms) {
          FloatVec weight;
          if (c_.soft()) {
            weight = coefficients(q, c, count, smooth);
            mass_sum = add_promoted(mass_sum, weight);
          } else {
            weight = c_.class_weight != nullptr ? load(c_.class_weight + c, count, 0.0f)
                                                : hn::Set(d_, 1.0f);
            weight = hn::IfThenElseZero(hn::FirstN(d_, static_cast<size_t>(count)), weight);
          }
          // Lanes past the row hold x = -inf with weight 0: add_gaps adds nothing for them.
          term_sum = add_gaps(term_sum, weight, m, x);
        }
      });
    };
    if (c_.soft()) {
      with_storage(c_.target_dtype, body);
    } else {
      body(static_cast<float*>(nullptr));
    }
    terms = sum_double_lanes(term_sum);
    mass = sum_double_lanes(mass_sum);
    return sum_double_lanes(rest);
  }

  void backward_row(std::int64_t row, const TX* logits, std::int64_t y, bool ignored,
                    float hard_coefficient, float smooth, float coefficient_sum) {
    const CrossEntropyRowStats saved = c_.saved_stats[row];
    const float m = saved.max;
    const float log_s = saved.log_sum;
    const bool no_mass = m == -kInf;
    const float lse = m + log_s;
    // An all -inf row saved m = -inf: shifting by +inf instead makes every exp(x' - shift) 0.
    const float shift = no_mass ? kInf : m;
    gradient(row, logits, nullptr, shift, y, ignored, m != m || log_s != log_s, no_mass, lse,
             std::exp(-log_s), hard_coefficient, smooth, coefficient_sum);
  }

  // Writes the row's gradient: ((A + 2 z lse) / s * p'_c - a_c) * multiplier * slope_c, with the
  // exponentials from `exps` (fused) or computed as exp(x'_c - shift) (backward).
  void gradient(std::int64_t row, const TX* logits, const float* exps, float shift,
                std::int64_t y, bool ignored, bool nan_row, bool no_mass, float lse,
                float inv_sum, float hard_coefficient, float smooth, float coefficient_sum) {
    TG* out = gradient_row(row);
    // Streamed, the row's vectors start at its first vector-aligned element, after a partial
    // one of the `lead` elements before it.
    const std::int64_t lead = stream_ ? std::min(streamed_lead(out), c_.classes) : 0;
    // The per-vector bodies below capture copies, never references or `this`: a streamed or
    // partial store may write any memory as far as GCC knows, and it would reload every value
    // reached through a pointer once per vector (a third of the loop's time).
    const bool stream = stream_;
    const std::int64_t lanes = lanes_;
    const FloatTag d = d_;
    const auto store_vector = [=](TG* p, std::int64_t count, FloatVec v) ACTLOSS_VECTOR_BODY {
      if (count == lanes) {
        if (stream) {
          stream_floats(d, v, p);
        } else {
          store_floats(d, v, p);
        }
      } else {
        store_floats_partial(d, v, p, static_cast<size_t>(count));
      }
    };
    const bool zero_grad = ignored || c_.denominator == 0.0;
    if (zero_grad) {
      for_each_output_vector(lead, [=](std::int64_t c, std::int64_t count) ACTLOSS_VECTOR_BODY {
        store_vector(out + c, count, hn::Zero(d));
      });
      return;
    }
    const float upstream =
        c_.upstream != nullptr ? c_.upstream[c_.upstream_per_row ? row : 0] : 1.0f;
    const float multiplier =
        nan_row ? NAN : static_cast<float>(static_cast<double>(upstream) * c_.grad_factor);
    const float prob_factor =
        coefficient_sum + (c_.z_loss != 0.0f ? 2.0f * c_.z_loss * lse : 0.0f);
    const float prob_scale_value = prob_factor * inv_sum * multiplier;
    const bool finite_scale = std::isfinite(prob_scale_value);
    // The class terms' factors as scalars: vector_at broadcasts them itself (see there), from
    // the same scalar as regular_vectors' smooth_step, so that both writers give the same bits.
    const float smooth_value = multiplier * smooth;
    const float target_value = multiplier * hard_coefficient;
    const FloatVec prob_scale = hn::Set(d, prob_scale_value);
    const FloatVec smooth_step = hn::Set(d, smooth_value);
    const FloatVec vmultiplier = hn::Set(d, multiplier);
    const FloatVec vshift = hn::Set(d, shift);
    const float softcap = c_.softcap;
    const bool capped = softcap != 0.0f;
    const bool smoothing = c_.smoothing != 0.0f;
    const bool soft = c_.soft();
    const float* class_weight = c_.class_weight;
    const TX* next_row = next_row_;
    const bool exps_zero = no_mass || nan_row;
    // The backward pass, one pass over the row, fetches its gradient ahead of the stores
    // (fetches_output_ahead). On the Xeon VM (two threads, alternating processes, medians of
    // three) against no fetch: 1.18x at 256 classes, 1.16x at 1024, 1.09x at 4096, 1.06x at
    // 32000 and 50257, 1.03x at 128256, 0.98x at 262144.
    const bool fetch_ahead =
        exps == nullptr && fetches_output_ahead(stream, std::is_same_v<TG, float>);
    const float one_minus_eps = 1.0f - c_.smoothing;
    // No NaN or empty row: every vector but a class target's is p_c times the scale less a term
    // of its class's alone (none in the usual LLM row, the same one under smoothing without
    // class weights, the class weight's share of it with them, the probability targets'
    // coefficients), times the softcap's slope where capped.
    const bool regular = !nan_row && !exps_zero && finite_scale && (soft || y >= 0);
    // The fused pass's exponentials stay in their half of the buffer until the next row is done.
    const bool defer = defers_ && regular && !soft && !smoothing && exps != nullptr;

    auto body = [&](auto* q_tag) {
      using TQ = std::remove_pointer_t<decltype(q_tag)>;
      const TQ* q = soft ? static_cast<const TQ*>(c_.targets) +
                               c_.start_of(row, c_.target_row_stride, c_.target_batch_stride)
                         : nullptr;
      const TQ* next_q = static_cast<const TQ*>(next_targets_);
      // Its vectors are broadcast and its tags made here rather than captured: GCC zero-filled
      // a closure holding the (empty) tags with a string store once per row before copying
      // into it, and that rep stos among a streamed 16-bit gradient's half-line stores cost
      // bf16 rows of 256 classes a third of their backward and fused pass (EPYC VM). Captured
      // by reference instead, the f32 rows lost 3%.
      const auto vector_at = [=](std::int64_t c, std::int64_t count) ACTLOSS_VECTOR_BODY {
        const FloatTag dv;
        const hn::RebindToSigned<FloatTag> dlane;
        const FloatVec scale = hn::Set(dv, prob_scale_value);
        FloatVec e;
        FloatVec slope = hn::Set(dv, 1.0f);
        if (exps != nullptr) {
          e = exps_zero ? hn::Zero(dv) : load_part(dv, exps + c, count);
          if (capped) slope = softcap_slope(dv, load_part(dv, logits + c, count), softcap);
        } else {
          if (next_row != nullptr) prefetch_next_row_line(next_row + c);
          if (fetch_ahead) fetch_output_ahead(out + c);
          const FloatVec raw = load_part(dv, logits + c, count);
          FloatVec x = raw;
          if (capped) {
            x = softcapped_with_slope(dv, raw, softcap, slope);
          }
          // x' - shift may be NaN (a NaN logit) or, with logits that differ from the forward's,
          // positive: the general exponential.
          e = exp_any(dv, hn::Sub(x, hn::Set(dv, shift)));
        }
        FloatVec step;
        if (soft) {
          step = hn::Mul(hn::Set(dv, multiplier), target_coefficients(dv, q, class_weight,
                                                                    one_minus_eps, smooth, c,
                                                                    count));
        } else {
          step = hn::Zero(dv);
          if (smoothing) {
            step = class_weight != nullptr
                       ? hn::Mul(hn::Set(dv, smooth_value), load_part(dv, class_weight + c, count))
                       : hn::Set(dv, smooth_value);
          }
          if (y >= c && y < c + count) {
            const auto lane_is_target =
                hn::Eq(hn::Iota(dlane, 0), hn::Set(dlane, static_cast<int>(y - c)));
            const auto at_target = hn::RebindMask(dv, lane_is_target);
            step = hn::Add(step, hn::IfThenElseZero(at_target, hn::Set(dv, target_value)));
          }
          if (nan_row) step = hn::Set(dv, NAN);
        }
        // One rounding, as the whole vectors have (regular_vectors), so that an element's bits
        // do not depend on which of the two wrote it. The p_c terms are exactly 0 where p_c is:
        // the factor may be infinite (z-loss of an all -inf row, never a regular one), and
        // infinity times 0 must not make them NaN.
        const FloatVec g =
            finite_scale
                ? hn::MulSub(scale, e, step)
                : hn::Sub(hn::IfThenZeroElse(hn::Eq(e, hn::Zero(dv)), hn::Mul(scale, e)),
                          step);
        store_vector(out + c, count, capped ? hn::Mul(g, slope) : g);
      };
      if (!regular) {
        for_each_output_vector(lead, vector_at);
        return;
      }
      // The whole vectors but the target's: a loop of nothing else, which GCC cannot make of
      // vector_at (it keeps that body's tests in the loop and spills its constants: a third of
      // the fused pass's time went there, and under label smoothing two fifths).
      const auto regular_vectors = [=](std::int64_t from, std::int64_t to, auto terms,
                                       auto with_softcap) ACTLOSS_VECTOR_BODY {
        constexpr Terms kTerms = decltype(terms)::value;
        constexpr bool kCapped = decltype(with_softcap)::value;
        if constexpr (kTerms == Terms::none && !kCapped) {
          if (exps != nullptr) return store_scaled(d, prob_scale, exps, out, from, to, stream);
        }
        for (std::int64_t c = from; c < to; c += lanes) {
          FloatVec e;
          FloatVec slope;
          if (exps != nullptr) {
            e = hn::LoadU(d, exps + c);
            if constexpr (kCapped) slope = softcap_slope(d, load_floats(d, logits + c), softcap);
          } else {
            if (next_row != nullptr) prefetch_next_row_line(next_row + c);
            if constexpr (kTerms == Terms::soft) {
              if (next_q != nullptr) prefetch_next_row_line(next_q + c);
            }
            if (fetch_ahead) fetch_output_ahead(out + c);
            FloatVec x = load_floats(d, logits + c);
            if constexpr (kCapped) x = softcapped_with_slope(d, x, softcap, slope);
            e = exp_any(d, hn::Sub(x, vshift));
          }
          FloatVec g;
          if constexpr (kTerms == Terms::unit) {
            g = hn::MulSub(prob_scale, e, smooth_step);
          } else if constexpr (kTerms == Terms::weighted) {
            g = hn::MulSub(prob_scale, e, hn::Mul(smooth_step, hn::LoadU(d, class_weight + c)));
          } else if constexpr (kTerms == Terms::soft) {
            g = hn::MulSub(prob_scale, e,
                           hn::Mul(vmultiplier, target_coefficients(d, q, class_weight,
                                                                    one_minus_eps, smooth, c,
                                                                    lanes)));
          } else {
            g = hn::Mul(prob_scale, e);
          }
          if constexpr (kCapped) g = hn::Mul(g, slope);
          if (stream) {
            stream_floats(d, g, out + c);
          } else {
            store_floats(d, g, out + c);
          }
        }
      };
      const auto with_terms = [=](std::int64_t from, std::int64_t to,
                                  auto with_softcap) ACTLOSS_VECTOR_BODY {
        if (soft) {
          regular_vectors(from, to, std::integral_constant<Terms, Terms::soft>{}, with_softcap);
        } else if constexpr (std::is_same_v<TQ, float>) {
          if (!smoothing) {
            regular_vectors(from, to, std::integral_constant<Terms, Terms::none>{}, with_softcap);
          } else if (class_weight != nullptr) {
            regular_vectors(from, to, std::integral_constant<Terms, Terms::weighted>{},
                            with_softcap);
          } else {
            regular_vectors(from, to, std::integral_constant<Terms, Terms::unit>{}, with_softcap);
          }
        }
      };
      const auto scaled_vectors = [=](std::int64_t from, std::int64_t to) ACTLOSS_VECTOR_BODY {
        if (capped) {
          with_terms(from, to, std::true_type{});
        } else {
          with_terms(from, to, std::false_type{});
        }
      };
      // The row as for_each_output_vector cuts it: `lead` elements, whole vectors, a tail; a
      // probability row has no target vector.
      const std::int64_t classes = c_.classes;
      const std::int64_t whole_end = lead + (classes - lead) / lanes * lanes;
      const std::int64_t target_vector =
          soft || y < lead ? whole_end : std::min(lead + (y - lead) / lanes * lanes, whole_end);
      if (lead > 0) vector_at(0, lead);
      if (target_vector < whole_end) vector_at(target_vector, lanes);
      if (whole_end < classes) vector_at(whole_end, classes - whole_end);
      const std::int64_t after_target = std::min(target_vector + lanes, whole_end);
      if (defer) {
        // The second range moves up when the first is empty: the writers stop at an empty one.
        deferred_ = lead < target_vector
                        ? Deferred{out,          exps,     prob_scale_value, lead, target_vector,
                                   after_target, whole_end}
                        : Deferred{out,       exps,      prob_scale_value, after_target,
                                   whole_end, whole_end, whole_end};
        return;
      }
      scaled_vectors(lead, target_vector);
      scaled_vectors(after_target, whole_end);
    };
    if (soft) {
      with_storage(c_.target_dtype, body);
    } else {
      body(static_cast<float*>(nullptr));
    }
    if (defer) buffer_ = buffer_ == buffer_base_ ? buffer_ + buffer_stride_ : buffer_base_;
  }

  // A row's gradient but for its lead, target and tail vectors, left to be streamed while the
  // next row's exponentials are computed: written right after its own row, it kept the core's
  // arithmetic idle while the stores drained, and the next row's memory idle before that
  // (the fused pass took about the sum of its compute and its store time). Its columns
  // [begin, end) and then [then_begin, then_end) are whole vectors from a vector-aligned one.
  struct Deferred {
    TG* out = nullptr;
    const float* exps = nullptr;
    float scale = 0.0f;
    std::int64_t begin = 0, end = 0, then_begin = 0, then_end = 0;

    bool idle() const { return begin >= end && then_begin >= then_end; }

    // Streams up to `count` more of its elements, in order.
    HWY_INLINE void write(FloatTag d, std::int64_t count) {
      while (count > 0 && begin < end) {
        const std::int64_t stop = end - begin > count ? begin + count : end;
        store_scaled(d, hn::Set(d, scale), exps, out, begin, stop, /*stream=*/true);
        count -= stop - begin;
        begin = stop;
        if (begin == end) {
          begin = then_begin;
          end = then_end;
          then_begin = then_end;
        }
      }
    }
  };

  const CrossEntropyCall& c_;
  FloatTag d_;
  std::int64_t lanes_ = 1;
  float* buffer_base_ = nullptr;  // the per-thread buffer's first row
  float* buffer_ = nullptr;       // the row in use
  std::int64_t buffer_stride_ = 0;
  Deferred deferred_;
  bool defers_ = false;
  const TX* next_row_ = nullptr;
  const void* next_targets_ = nullptr;  // set by run() where prefetches_next_targets_
  bool prefetches_next_targets_ = false;  // see the constructor
  const TG* fetched_gradient_ = nullptr;  // this row's gradient, fetched by exponentials()
  bool stream_ = false;  // the gradient is stored with non-temporal stores
  bool gradient_keeps_exponentials_ = false;
};

}  // namespace

// Rows [first, end) of the call.
CrossEntropyTaskResult CrossEntropyRows(const CrossEntropyCall& call, std::int64_t first,
                                        std::int64_t end) {
  CrossEntropyTaskResult result;
  with_storage(call.logits_dtype, [&](auto* x_tag) {
    using TX = std::remove_pointer_t<decltype(x_tag)>;
    with_storage(call.grad_dtype, [&](auto* g_tag) {
      using TG = std::remove_pointer_t<decltype(g_tag)>;
      RowKernel<TX, TG> kernel(call);
      for (std::int64_t row = first; row < end; ++row) kernel.run(row, result);
      kernel.finish();
      // The streamed stores, ordered before the pool reports the task done.
      if (kernel.streams()) hwy::FlushStream();
    });
  });
  return result;
}

}  // namespace actloss::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace actloss::cpu {

HWY_EXPORT(CrossEntropyRows);

namespace {

// About this many elements per task (rows_per_task's rule).
constexpr std::int64_t kCrossEntropyTaskElements = std::int64_t{1} << 16;

CrossEntropyCall make_call(Pass pass, const CrossEntropyArgs& args,
                           const CrossEntropyOptions& options) {
  CrossEntropyCall call;
  call.pass = pass;
  call.rows = args.rows;
  call.classes = args.classes;
  call.rows_per_batch =
      args.rows_per_batch > 0 ? args.rows_per_batch : std::max<std::int64_t>(args.rows, 1);
  call.logits = args.logits;
  call.logits_dtype = args.logits_dtype;
  call.logits_row_stride = args.logits_row_stride;
  call.logits_batch_stride = args.logits_batch_stride;
  call.targets = args.targets;
  call.target_kind = args.target_kind;
  call.target_dtype = args.target_dtype;
  call.target_row_stride = args.target_row_stride;
  call.target_batch_stride = args.target_batch_stride;
  call.class_weight = args.class_weight;
  call.ignore_index = options.ignore_index;
  call.smoothing = options.label_smoothing;
  call.z_loss = options.z_loss;
  call.softcap = options.softcap;
  const bool writes_forward = pass != Pass::backward;
  call.want_loss = writes_forward && args.loss != nullptr;
  call.row_loss = call.want_loss && options.reduction == Reduction::none ? args.loss : nullptr;
  call.lse = writes_forward ? args.lse : nullptr;
  call.stats = writes_forward ? args.stats : nullptr;
  call.predicted = writes_forward ? args.predicted : nullptr;
  call.saved_stats = pass == Pass::backward ? args.saved_stats : nullptr;
  call.grad = pass != Pass::forward ? args.grad : nullptr;
  call.grad_dtype = args.grad_dtype;
  call.grad_row_stride = args.grad_row_stride;
  call.grad_batch_stride = args.grad_batch_stride;
  call.upstream = args.upstream_grad;
  call.upstream_per_row = options.reduction == Reduction::none;

  double class_weight_sum = static_cast<double>(args.classes);
  if (args.class_weight != nullptr) {
    class_weight_sum = 0.0;
    for (std::int64_t c = 0; c < args.classes; ++c) class_weight_sum += args.class_weight[c];
  }
  call.class_weight_sum = class_weight_sum;

  if (options.reduction == Reduction::mean) {
    if (call.soft()) {
      call.denominator = static_cast<double>(args.rows);
    } else {
      double weight_sum = 0.0;
      for (std::int64_t row = 0; row < args.rows; ++row) {
        const std::int64_t y = call.class_target(row);
        if (y == options.ignore_index) continue;
        weight_sum += args.class_weight != nullptr ? args.class_weight[y] : 1.0;
      }
      call.denominator = weight_sum;
    }
  }
  call.grad_factor = call.denominator == 0.0 ? 0.0 : args.grad_scale / call.denominator;
  return call;
}

}  // namespace
}  // namespace actloss::cpu

namespace actloss::detail {

std::optional<Status> cpu_cross_entropy(Pass pass, const CrossEntropyArgs& args,
                                        const CrossEntropyOptions& options) {
  if (args.rows == 0) return std::nullopt;  // the reference writes the empty call's outputs
  try {
    const cpu::CrossEntropyCall call = cpu::make_call(pass, args, options);
    const std::int64_t per_task =
        cpu::rows_per_task(args.rows, args.classes, cpu::kCrossEntropyTaskElements);
    const std::int64_t tasks = (args.rows + per_task - 1) / per_task;
    std::vector<cpu::CrossEntropyTaskResult> results(static_cast<std::size_t>(tasks));
    cpu::parallel_for(tasks, [&](std::int64_t task) {
      const std::int64_t first = task * per_task;
      const std::int64_t end = std::min(args.rows, first + per_task);
      results[static_cast<std::size_t>(task)] =
          HWY_DYNAMIC_DISPATCH(cpu::CrossEntropyRows)(call, first, end);
    });
    double loss_sum = 0.0;
    std::int64_t counted = 0, correct = 0;
    for (const cpu::CrossEntropyTaskResult& result : results) {
      loss_sum += result.loss_sum;
      counted += result.counted;
      correct += result.correct;
    }
    if (call.want_loss && options.reduction != Reduction::none) {
      double loss = loss_sum;
      if (options.reduction == Reduction::mean) {
        loss = call.denominator == 0.0 ? 0.0 : loss_sum / call.denominator;
      }
      *args.loss = host::double_to_float(loss);
    }
    if (pass != Pass::backward && args.accuracy != nullptr && args.predicted != nullptr) {
      *args.accuracy = counted == 0 ? 0.0f
                                    : static_cast<float>(static_cast<double>(correct) /
                                                         static_cast<double>(counted));
    }
    return Status{};
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::unsupported, "",
                  "cross_entropy: out of host memory for the CPU backend's row buffers");
  }
}

}  // namespace actloss::detail
#endif  // HWY_ONCE
