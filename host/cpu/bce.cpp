// Binary cross-entropy with logits on the SIMD CPU backend, in the kernels' float math
// (cuda/bce.cu): loss = w (pw y softplus(-x) + (1 - y) softplus(x)), two non-negative terms that
// never cancel, both softplus values and both sigmoids from one e = exp(-|x|) in [0, 1]; a zero
// coefficient on an infinite softplus contributes 0, and NaN comes through. A loss beyond float's
// range on a finite logit is formed scaled by 2^-64 (rare), so that the sum and mean stay right.
//
// Inputs and the gradient pass through float blocks on the stack, converted from and to their
// dtypes one block at a time: the formulas are compiled once per target instead of once per
// combination of four dtypes. The elements are cut into fixed tasks (simd-inl.h); a reduced loss
// is summed per task in double, and the task sums are added in task order.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "host/cpu/bce.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include "host/cpu/backend.h"
#include "host/cpu/simd-inl.h"
#include "host/cpu/thread_pool.h"
#include "host/cpu_path.h"

#ifndef ACTLOSS_HOST_CPU_BCE_ONCE
#define ACTLOSS_HOST_CPU_BCE_ONCE
namespace actloss::cpu {
namespace {

// One call, as the per-target code needs it.
struct BceCall {
  const BceArgs* args;
  bool wants_loss;       // per element or reduced
  bool reduces;          // the loss is wanted as one sum
  float* loss_elements;  // dense [rows x cols] under none when the loss is wanted, else null
  void* grad;            // null when the gradient is not wanted
  // grad = w slope grad_coefficient upstream_i, grad_coefficient = grad_scale / (mean
  // denominator) rounded to float, times upstream[0] when that is one value (as the kernels).
  float grad_coefficient;
  double grad_coefficient_exact;  // the same unrounded, for elements done again in double
  const float* upstream_elements;  // dense [rows x cols], or null
};

}  // namespace
}  // namespace actloss::cpu
#endif

HWY_BEFORE_NAMESPACE();
namespace actloss::cpu::HWY_NAMESPACE {
namespace {

// Elements staged per block: a few KiB of float buffers per thread, all in L1.
constexpr std::int64_t kBlock = 512;
// How far ahead of its use the logits' and targets' memory is asked for, one line per vector:
// the loop is heavy on exponentials and logarithms, and the hardware prefetchers alone leave it
// waiting for memory between bursts of compute.
constexpr std::int64_t kPrefetchElements = 512;

// Where an input's memory lies kPrefetchElements past a block's first element.
struct Ahead {
  const char* at = nullptr;
  std::size_t element_bytes = 0;
  HWY_INLINE void prefetch(std::int64_t i) const {
    hwy::Prefetch(at + static_cast<std::size_t>(i) * element_bytes);
  }
};

Ahead ahead_of(DType dtype, const void* base, std::int64_t offset) {
  const auto bytes = static_cast<std::size_t>(dtype_size(dtype));
  return {static_cast<const char*>(base) +
              static_cast<std::size_t>(offset + kPrefetchElements) * bytes,
          bytes};
}

// `count` elements of `dtype` from element `offset` of `base`, as floats.
void load_block(FloatTag d, DType dtype, const void* base, std::int64_t offset, float* out,
                std::int64_t count) {
  with_storage(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* in = static_cast<const T*>(base) + offset;
    const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
    std::int64_t i = 0;
    for (; i + lanes <= count; i += lanes) hn::Store(load_floats(d, in + i), d, out + i);
    if (i < count) {
      hn::Store(load_floats_partial(d, in + i, static_cast<size_t>(count - i)), d, out + i);
    }
  });
}

// The block's floats: read in place from a float32 tensor when the block is whole (every vector
// of it lies within the caller's data), else converted or copied into `block`.
const float* staged(FloatTag d, DType dtype, const void* base, std::int64_t offset, float* block,
                    std::int64_t count) {
  if (dtype == DType::f32 && count == kBlock) return static_cast<const float*>(base) + offset;
  load_block(d, dtype, base, offset, block, count);
  return block;
}

// `count` floats into element `offset` of `base`, rounded once to `dtype`; `stream`: with
// non-temporal stores where aligned. The block is padded: a whole-vector load at any of its
// elements stays inside it.
void store_block(FloatTag d, DType dtype, const float* values, void* base, std::int64_t offset,
                 std::int64_t count, bool stream) {
  with_storage(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    store_row(d, static_cast<T*>(base) + offset, count, stream,
              [&](std::int64_t i, std::int64_t) { return hn::LoadU(d, values + i); });
  });
}

// log1p(e) for e in [0, 1] (e = exp(-|x|)): log1p(e) = e + e^2 Q(e), Q a degree-10 polynomial
// interpolating (log1p(e) / e - 1) / e at Chebyshev nodes of [0, 1]. About 1.2 ulp in float
// (checked against log1p in double over [0, 1] and every binade down to 2^-140), in 12
// operations: Highway's Log1p takes a division and a full Log.
HWY_INLINE FloatVec log1p_unit(FloatTag d, FloatVec e) {
  FloatVec q = hn::Set(d, -1.252585207e-03f);
  q = hn::MulAdd(q, e, hn::Set(d, 8.925603703e-03f));
  q = hn::MulAdd(q, e, hn::Set(d, -2.980014496e-02f));
  q = hn::MulAdd(q, e, hn::Set(d, 6.350289285e-02f));
  q = hn::MulAdd(q, e, hn::Set(d, -1.008180454e-01f));
  q = hn::MulAdd(q, e, hn::Set(d, 1.340345740e-01f));
  q = hn::MulAdd(q, e, hn::Set(d, -1.644481719e-01f));
  q = hn::MulAdd(q, e, hn::Set(d, 1.996354610e-01f));
  q = hn::MulAdd(q, e, hn::Set(d, -2.499638945e-01f));
  q = hn::MulAdd(q, e, hn::Set(d, 3.333314657e-01f));
  q = hn::MulAdd(q, e, hn::Set(d, -4.999999702e-01f));
  return hn::MulAdd(hn::Mul(e, e), q, e);
}

// coefficient * value, but 0 where the coefficient is 0 and the value is not NaN (an infinite
// softplus under a zero coefficient: the limit of y log y, as the reference defines it).
HWY_INLINE FloatVec times(FloatTag d, FloatVec coefficient, FloatVec value) {
  const auto zero_coefficient = hn::Eq(coefficient, hn::Zero(d));
  return hn::IfThenZeroElse(hn::AndNot(hn::IsNaN(value), zero_coefficient),
                            hn::Mul(coefficient, value));
}

// pw y softplus(-x), with the coefficient zero only where pw or y is (their float product may
// underflow to 0 for a subnormal y, and an infinite softplus then costs inf).
HWY_INLINE FloatVec positive_term(FloatTag d, FloatVec pos_weight, FloatVec y, FloatVec softplus) {
  const FloatVec zero = hn::Zero(d);
  const auto zero_coefficient = hn::Or(hn::Eq(pos_weight, zero), hn::Eq(y, zero));
  return hn::IfThenZeroElse(hn::AndNot(hn::IsNaN(softplus), zero_coefficient),
                            hn::Mul(pos_weight, hn::Mul(y, softplus)));
}

HWY_INLINE FloatVec loss_of(FloatTag d, FloatVec w, FloatVec pos_weight, FloatVec y,
                            FloatVec negative, FloatVec softplus_neg, FloatVec softplus_x) {
  return times(
      d, w, hn::Add(positive_term(d, pos_weight, y, softplus_neg), times(d, negative, softplus_x)));
}

// The lanes of `redo` (1.0f) done again in double, where a product of four floats cannot
// overflow: a weight times a pos_weight beyond float's range overflows w slope factor on the way
// to a gradient that the mean's 1/N (or a small upstream) brings back into range.
HWY_NOINLINE FloatVec redo_in_double(FloatTag d, FloatVec redo, FloatVec grad, FloatVec w,
                                     FloatVec slope, double coefficient, const float* upstream) {
  HWY_ALIGN float g[64], w_lanes[64], slope_lanes[64], redo_lanes[64];
  hn::Store(grad, d, g);
  hn::Store(w, d, w_lanes);
  hn::Store(slope, d, slope_lanes);
  hn::Store(redo, d, redo_lanes);
  for (std::size_t lane = 0; lane < hn::Lanes(d); ++lane) {
    if (redo_lanes[lane] == 0.0f) continue;
    g[lane] = static_cast<float>(static_cast<double>(w_lanes[lane]) * slope_lanes[lane] *
                                 coefficient * (upstream != nullptr ? upstream[lane] : 1.0f));
  }
  return hn::Load(d, g);
}

// The staged block's elements: x, y, w (null: 1, or the row's weight), pos_weight (null: 1),
// upstream (null: none) in; loss (when wanted) and grad (when wanted) out. Returns the block's
// loss sum in double (0 when the loss is not wanted).
double bce_block(FloatTag d, const BceCall& call, const float* x_in, const float* y_in,
                 const float* w_in, float row_weight, const float* pos_weight_in,
                 const float* upstream_in, float* loss_out, float* grad_out, std::int64_t count,
                 Ahead x_ahead, Ahead y_ahead) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  const FloatVec zero = hn::Zero(d), one = hn::Set(d, 1.0f);
  const FloatVec coefficient = hn::Set(d, call.grad_coefficient);
  DoubleVec sum0 = hn::Zero(DoubleTag()), sum1 = sum0;
  double rare_sum = 0.0;
  for (std::int64_t i = 0; i < count; i += lanes) {
    x_ahead.prefetch(i);
    y_ahead.prefetch(i);
    const auto valid = hn::FirstN(d, static_cast<size_t>(count - i));
    const FloatVec x = hn::LoadU(d, x_in + i);
    const FloatVec y = hn::LoadU(d, y_in + i);
    const FloatVec w = w_in != nullptr ? hn::LoadU(d, w_in + i) : hn::Set(d, row_weight);
    const FloatVec pw = pos_weight_in != nullptr ? hn::LoadU(d, pos_weight_in + i) : one;
    const FloatVec positive = hn::Mul(pw, y);
    const FloatVec negative = hn::Sub(one, y);
    const auto x_is_nan = hn::IsNaN(x);
    // NaN x is restored at the end: the clamps and compares below would drop it.
    const FloatVec e = exp_nonpositive(d, hn::Neg(hn::Abs(x)));
    if (call.wants_loss) {
      const FloatVec log_term = log1p_unit(d, e);
      const FloatVec softplus_x = hn::Add(hn::Max(x, zero), log_term);
      const FloatVec softplus_neg = hn::Add(hn::Max(hn::Neg(x), zero), log_term);
      // Plain products first: they differ from the rules of times() only where a coefficient
      // meets an infinite softplus or something is NaN, and then the loss is not finite (or x is
      // NaN). Such a vector, or one whose loss exceeds float's range, is done again by the rules
      // (rare).
      FloatVec loss =
          hn::Mul(w, hn::MulAdd(negative, softplus_x, hn::Mul(pw, hn::Mul(y, softplus_neg))));
      // A NaN x may leave the plain loss finite (the max of NaN and 0 is 0 on x86), so it is
      // looked for itself.
      const auto plain_ok = hn::AndNot(x_is_nan, hn::Le(loss, hn::Set(d, FLT_MAX)));
      if (HWY_UNLIKELY(!hn::AllTrue(d, hn::Or(plain_ok, hn::Not(valid))))) {
        loss = loss_of(d, w, pw, y, negative, softplus_neg, softplus_x);
        const auto overflowed = hn::AndNot(hn::Le(loss, hn::Set(d, FLT_MAX)),
                                           hn::And(valid, hn::Le(hn::Abs(x), hn::Set(d, FLT_MAX))));
        if (!hn::AllFalse(d, overflowed)) {
          // The loss exceeds float's range (or an intermediate did) on a finite logit: formed
          // scaled by 2^-64 (exact: every softplus is at least log 2), summed in double.
          const FloatVec down = hn::Set(d, 0x1p-64f);
          const FloatVec scaled = loss_of(d, w, pw, y, negative, hn::Mul(softplus_neg, down),
                                          hn::Mul(softplus_x, down));
          HWY_ALIGN float scaled_lanes[hn::MaxLanes(FloatTag())];
          HWY_ALIGN float is_scaled[hn::MaxLanes(FloatTag())];
          hn::Store(scaled, d, scaled_lanes);
          hn::Store(hn::IfThenElseZero(overflowed, one), d, is_scaled);
          for (std::int64_t j = 0; j < lanes; ++j) {
            if (is_scaled[j] != 0.0f) rare_sum += 0x1p64 * static_cast<double>(scaled_lanes[j]);
          }
          loss = hn::IfThenElse(overflowed, hn::Mul(scaled, hn::Set(d, 0x1p64f)), loss);
        }
        loss = hn::IfThenElse(x_is_nan, x, loss);
        const FloatVec summed = hn::IfThenElseZero(hn::AndNot(overflowed, valid), loss);
        sum0 = hn::Add(sum0, lower_as_double(d, summed));
        sum1 = hn::Add(sum1, upper_as_double(d, summed));
      } else {
        const FloatVec summed = hn::IfThenElseZero(valid, loss);
        sum0 = hn::Add(sum0, lower_as_double(d, summed));
        sum1 = hn::Add(sum1, upper_as_double(d, summed));
      }
      if (loss_out != nullptr) hn::StoreU(loss, d, loss_out + i);
    }
    if (grad_out != nullptr) {
      const FloatVec big = reciprocal(d, hn::Add(one, e));  // sigmoid(|x|)
      const FloatVec small = hn::Mul(e, big);               // sigmoid(-|x|)
      const auto x_nonnegative = hn::Ge(x, zero);
      const FloatVec sigmoid_x = hn::IfThenElse(x_nonnegative, big, small);
      const FloatVec sigmoid_neg = hn::IfThenElse(x_nonnegative, small, big);
      const FloatVec slope = hn::Sub(hn::Mul(negative, sigmoid_x), hn::Mul(positive, sigmoid_neg));
      const FloatVec factor = upstream_in != nullptr
                                  ? hn::Mul(coefficient, hn::LoadU(d, upstream_in + i))
                                  : coefficient;
      FloatVec grad = hn::Mul(hn::Mul(w, slope), factor);
      const auto overflowed = hn::Eq(hn::Abs(grad), hn::Inf(d));
      if (HWY_UNLIKELY(!hn::AllFalse(d, overflowed)))
        grad = redo_in_double(d, hn::IfThenElseZero(overflowed, one), grad, w, slope,
                              call.grad_coefficient_exact,
                              upstream_in != nullptr ? upstream_in + i : nullptr);
      hn::StoreU(hn::IfThenElse(x_is_nan, x, grad), d, grad_out + i);
    }
  }
  return sum_double_lanes(hn::Add(sum0, sum1)) + rare_sum;
}

}  // namespace

// Returns the sum of the losses (0 unless call.reduces).
double bce_run(const BceCall& call) {
  const BceArgs& args = *call.args;
  const std::int64_t rows = args.rows, cols = args.cols;
  const bool full_weight = args.weight != nullptr && args.weight_shape == BceWeightShape::full;
  const bool column_weight =
      args.weight != nullptr && args.weight_shape == BceWeightShape::per_column;
  const bool row_weight = args.weight != nullptr && args.weight_shape == BceWeightShape::per_row;
  std::vector<double> task_sums(call.reduces ? static_cast<std::size_t>(element_tasks(rows, cols))
                                             : 0);
  // Large outputs go out with non-temporal stores, except over an input (in place), whose lines
  // are in cache, just read.
  const auto streamed = [&](const void* out, DType dtype) {
    return out != nullptr && out != args.logits && out != args.targets &&
           rows * cols * dtype_size(dtype) >= streaming_output_bytes();
  };
  const bool stream_loss = streamed(call.loss_elements, DType::f32);
  const bool stream_grad = streamed(call.grad, args.grad_dtype);
  parallel_for(element_tasks(rows, cols), [&](std::int64_t task) {
    const FloatTag d;
    // Lanes past a block's count are read (whole vectors) but never stored or summed.
    HWY_ALIGN float x[kBlock], y[kBlock], w[kBlock];
    // Padded by a vector for store_block's loads.
    HWY_ALIGN float loss[kBlock + hn::MaxLanes(FloatTag())];
    HWY_ALIGN float grad[kBlock + hn::MaxLanes(FloatTag())];
    HWY_ALIGN float pos_weight_block[kBlock], upstream_block[kBlock];
    double task_sum = 0.0;
    for_each_piece_of_task(task, rows, cols, [&](std::int64_t r, std::int64_t c0, std::int64_t c1) {
      for (std::int64_t c = c0; c < c1; c += kBlock) {
        const std::int64_t count = c1 - c < kBlock ? c1 - c : kBlock;
        const float* logits =
            staged(d, args.logits_dtype, args.logits, r * args.logits_row_stride + c, x, count);
        const float* targets =
            staged(d, args.target_dtype, args.targets, r * args.target_row_stride + c, y, count);
        const float* weights = nullptr;
        float weight_of_row = 1.0f;
        if (full_weight) {
          weights =
              staged(d, args.weight_dtype, args.weight, r * args.weight_row_stride + c, w, count);
        } else if (column_weight) {
          weights = staged(d, args.weight_dtype, args.weight, c, w, count);
        } else if (row_weight) {
          with_storage(args.weight_dtype, [&](auto* tag) {
            using T = std::remove_pointer_t<decltype(tag)>;
            weight_of_row = load_float(static_cast<const T*>(args.weight) + r);
          });
        }
        const std::int64_t dense = r * cols + c;
        const float* pos_weight =
            args.pos_weight != nullptr
                ? staged(d, DType::f32, args.pos_weight, c, pos_weight_block, count)
                : nullptr;
        const float* upstream =
            call.upstream_elements != nullptr
                ? staged(d, DType::f32, call.upstream_elements, dense, upstream_block, count)
                : nullptr;
        // Outputs go straight to float32 destinations when the block is whole, else through the
        // stack.
        float* loss_target = nullptr;
        if (call.loss_elements != nullptr) {
          loss_target = count == kBlock && !stream_loss ? call.loss_elements + dense : loss;
        }
        const bool grad_in_place = args.grad_dtype == DType::f32 && count == kBlock && !stream_grad;
        float* grad_target = nullptr;
        if (call.grad != nullptr) {
          grad_target =
              grad_in_place ? static_cast<float*>(call.grad) + r * args.grad_row_stride + c : grad;
        }
        // Past a row's end the prefetches ask for lines that may go unused (a prefetch never
        // faults).
        task_sum += bce_block(
            d, call, logits, targets, weights, weight_of_row, pos_weight, upstream, loss_target,
            grad_target, count,
            ahead_of(args.logits_dtype, args.logits, r * args.logits_row_stride + c),
            ahead_of(args.target_dtype, args.targets, r * args.target_row_stride + c));
        if (loss_target == loss) {
          store_block(d, DType::f32, loss, call.loss_elements, dense, count, stream_loss);
        }
        if (call.grad != nullptr && !grad_in_place) {
          store_block(d, args.grad_dtype, grad, call.grad, r * args.grad_row_stride + c, count,
                      stream_grad);
        }
      }
    });
    if (stream_loss || stream_grad) hwy::FlushStream();  // before the pool reports the task done
    if (call.reduces) task_sums[static_cast<std::size_t>(task)] = task_sum;
  });
  double total = 0.0;
  for (const double task_sum : task_sums) total += task_sum;
  return total;
}

}  // namespace actloss::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace actloss::cpu {
HWY_EXPORT(bce_run);
}  // namespace actloss::cpu

namespace actloss::detail {

std::optional<Status> cpu_bce_with_logits(Pass pass, const BceArgs& args,
                                          const BceOptions& options) {
  return host::run_cpu("bce_with_logits", [&] {
    const bool per_element = options.reduction == Reduction::none;
    const bool wants_loss = pass != Pass::backward && args.loss != nullptr;
    const std::int64_t count = args.rows * args.cols;
    if (count == 0) {
      // Sum and mean of nothing are 0.
      if (wants_loss && !per_element) *args.loss = 0.0f;
      return;
    }
    const double denominator =
        options.reduction == Reduction::mean ? static_cast<double>(count) : 1.0;
    cpu::BceCall call{};
    call.args = &args;
    call.wants_loss = wants_loss;
    call.reduces = wants_loss && !per_element;
    call.loss_elements = wants_loss && per_element ? args.loss : nullptr;
    if (pass != Pass::forward) {
      call.grad = args.grad;
      call.grad_coefficient =
          static_cast<float>(static_cast<double>(args.grad_scale) / denominator);
      call.grad_coefficient_exact = call.grad_coefficient;
      if (args.upstream_grad != nullptr) {
        if (per_element) {
          call.upstream_elements = args.upstream_grad;
        } else {
          call.grad_coefficient *= args.upstream_grad[0];
          call.grad_coefficient_exact *= args.upstream_grad[0];
        }
      }
    }
    const double total = HWY_DYNAMIC_DISPATCH(cpu::bce_run)(call);
    if (call.reduces) *args.loss = host::double_to_float(total / denominator);
  });
}

}  // namespace actloss::detail
#endif
