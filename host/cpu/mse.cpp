// Mean squared error on the SIMD CPU backend: one pass over input and target writes what the call
// asks for (per-element loss, reduced loss, gradient). Every lane's difference is taken in double,
// where x - t of two floats neither overflows nor loses anything that matters, so the squares,
// the sum and the gradient are each rounded once into float: no halved differences and no
// second summation for overflowing packs, as the kernels need (cuda/mse.cu).
//
// The elements are cut into fixed tasks (simd-inl.h); a reduced loss is summed per task in
// double and the task sums are added in task order.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "host/cpu/mse.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstdint>
#include <vector>

#include "host/cpu/backend.h"
#include "host/cpu/simd-inl.h"
#include "host/cpu/thread_pool.h"
#include "host/cpu_path.h"

#ifndef ACTLOSS_HOST_CPU_MSE_ONCE
#define ACTLOSS_HOST_CPU_MSE_ONCE
namespace actloss::cpu {
namespace {

// One call, as the per-target code needs it.
struct MseCall {
  const MseArgs* args;
  float* loss_elements;  // dense [rows x n] under none when the loss is wanted, else null
  void* grad;            // null when the gradient is not wanted
  // d loss / d input = (input - target) * grad_factor * upstream_i, grad_factor =
  // 2 grad_scale / (mean denominator) times upstream[0] when that is one value.
  double grad_factor;
  const float* upstream_elements;  // dense [rows x n], or null
  bool reduces;                    // the loss is wanted as one sum
};

}  // namespace
}  // namespace actloss::cpu
#endif

HWY_BEFORE_NAMESPACE();
namespace actloss::cpu::HWY_NAMESPACE {
namespace {

template <class TI, class TT, class TG>
void mse_piece(FloatTag d, const MseCall& call, const TI* input, const TT* target, TG* grad,
               float* loss, const float* upstream, std::int64_t count, DoubleVec& sum0,
               DoubleVec& sum1) {
  const auto lanes = static_cast<std::int64_t>(hn::Lanes(d));
  const DoubleTag dd;
  const DoubleVec factor = hn::Set(dd, call.grad_factor);
  for (std::int64_t i = 0; i < count; i += lanes) {
    const bool whole = count - i >= lanes;
    const auto n = static_cast<size_t>(whole ? lanes : count - i);
    // Lanes past the piece load 0 in both: a difference of 0 adds nothing to the sum.
    const FloatVec x = whole ? load_floats(d, input + i) : load_floats_partial(d, input + i, n);
    const FloatVec t = whole ? load_floats(d, target + i) : load_floats_partial(d, target + i, n);
    const DoubleVec diff_lower = hn::Sub(lower_as_double(d, x), lower_as_double(d, t));
    const DoubleVec diff_upper = hn::Sub(upper_as_double(d, x), upper_as_double(d, t));
    if (call.reduces || loss != nullptr) {
      const DoubleVec square_lower = hn::Mul(diff_lower, diff_lower);
      const DoubleVec square_upper = hn::Mul(diff_upper, diff_upper);
      sum0 = hn::Add(sum0, square_lower);
      sum1 = hn::Add(sum1, square_upper);
      if (loss != nullptr) {
        const FloatVec squares = demote_to_floats(d, square_lower, square_upper);
        if (whole)
          hn::StoreU(squares, d, loss + i);
        else
          store_floats_partial(d, squares, loss + i, n);
      }
    }
    if (grad != nullptr) {
      DoubleVec scale_lower = factor, scale_upper = factor;
      if (upstream != nullptr) {
        const FloatVec up =
            whole ? hn::LoadU(d, upstream + i) : load_floats_partial(d, upstream + i, n);
        scale_lower = hn::Mul(scale_lower, lower_as_double(d, up));
        scale_upper = hn::Mul(scale_upper, upper_as_double(d, up));
      }
      const FloatVec g =
          demote_to_floats(d, hn::Mul(diff_lower, scale_lower), hn::Mul(diff_upper, scale_upper));
      if (whole)
        store_floats(d, g, grad + i);
      else
        store_floats_partial(d, g, grad + i, n);
    }
  }
}

// A streamed gradient is computed this many elements at a time into a float block in L1, then
// stored from each vector-aligned element on; a multiple of every vector width, so that the loss
// sum takes the same vectors (the same bits) as when the gradient is stored directly.
constexpr std::int64_t kStagedElements = 1024;

}  // namespace

// Returns the sum of the losses (0 unless call.reduces).
double mse_run(const MseCall& call) {
  const MseArgs& args = *call.args;
  const std::int64_t rows = args.rows, n = args.n;
  std::vector<double> task_sums(call.reduces ? static_cast<std::size_t>(element_tasks(rows, n))
                                             : 0);
  // The gradient's dtype matters only when it is written; f32 otherwise keeps one instantiation.
  const DType grad_dtype = call.grad != nullptr ? args.grad_dtype : DType::f32;
  with_storage(args.input_dtype, [&](auto* input_tag) {
    with_storage(args.target_dtype, [&](auto* target_tag) {
      with_storage(grad_dtype, [&](auto* grad_tag) {
        using TI = std::remove_pointer_t<decltype(input_tag)>;
        using TT = std::remove_pointer_t<decltype(target_tag)>;
        using TG = std::remove_pointer_t<decltype(grad_tag)>;
        const TI* input = static_cast<const TI*>(args.input);
        const TT* target = static_cast<const TT*>(args.target);
        TG* grad = static_cast<TG*>(call.grad);
        // A large gradient not over an input goes out with non-temporal stores.
        const bool stream_grad = grad != nullptr && call.grad != args.input &&
                                 call.grad != args.target &&
                                 rows * n * static_cast<std::int64_t>(sizeof(TG)) >=
                                     streaming_output_bytes();
        parallel_for(element_tasks(rows, n), [&](std::int64_t task) {
          const FloatTag d;
          DoubleVec sum0 = hn::Zero(DoubleTag()), sum1 = sum0;
          HWY_ALIGN float staged[kStagedElements + hn::MaxLanes(FloatTag())];
          for_each_piece_of_task(
              task, rows, n, [&](std::int64_t r, std::int64_t c0, std::int64_t c1) {
                const auto piece = [&](std::int64_t c, std::int64_t count, auto* grad_out) {
                  const std::int64_t dense = r * n + c;
                  mse_piece(
                      d, call, input + r * args.input_row_stride + c,
                      target + r * args.target_row_stride + c, grad_out,
                      call.loss_elements != nullptr ? call.loss_elements + dense : nullptr,
                      call.upstream_elements != nullptr ? call.upstream_elements + dense
                                                        : nullptr,
                      count, sum0, sum1);
                };
                if (!stream_grad) {
                  return piece(c0, c1 - c0,
                               grad != nullptr ? grad + r * args.grad_row_stride + c0 : nullptr);
                }
                for (std::int64_t c = c0; c < c1; c += kStagedElements) {
                  const std::int64_t count = c1 - c < kStagedElements ? c1 - c : kStagedElements;
                  piece(c, count, staged);
                  store_row(d, grad + r * args.grad_row_stride + c, count, true,
                            [&](std::int64_t i, std::int64_t) { return hn::LoadU(d, staged + i); });
                }
              });
          if (stream_grad) hwy::FlushStream();  // ordered before the pool reports the task done
          if (call.reduces) {
            task_sums[static_cast<std::size_t>(task)] = sum_double_lanes(hn::Add(sum0, sum1));
          }
        });
      });
    });
  });
  double total = 0.0;
  for (const double task_sum : task_sums) total += task_sum;
  return total;
}

}  // namespace actloss::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace actloss::cpu {
HWY_EXPORT(mse_run);
}  // namespace actloss::cpu

namespace actloss::detail {

std::optional<Status> cpu_mse(Pass pass, const MseArgs& args, const MseOptions& options) {
  return host::run_cpu("mse", [&] {
    const bool per_element = options.reduction == Reduction::none;
    const bool wants_loss = pass != Pass::backward && args.loss != nullptr;
    const std::int64_t count = args.rows * args.n;
    if (count == 0) {
      // Sum and mean of nothing are 0.
      if (wants_loss && !per_element) *args.loss = 0.0f;
      return;
    }
    const double denominator =
        options.reduction == Reduction::mean ? static_cast<double>(count) : 1.0;
    cpu::MseCall call{};
    call.args = &args;
    call.loss_elements = wants_loss && per_element ? args.loss : nullptr;
    call.reduces = wants_loss && !per_element;
    if (pass != Pass::forward) {
      call.grad = args.grad;
      call.grad_factor = 2.0 * static_cast<double>(args.grad_scale) / denominator;
      if (args.upstream_grad != nullptr) {
        if (per_element)
          call.upstream_elements = args.upstream_grad;
        else
          call.grad_factor *= static_cast<double>(args.upstream_grad[0]);
      }
    }
    const double total = HWY_DYNAMIC_DISPATCH(cpu::mse_run)(call);
    if (call.reduces) *args.loss = host::double_to_float(total / denominator);
  });
}

}  // namespace actloss::detail
#endif
