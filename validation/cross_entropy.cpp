// Softmax cross-entropy cases: every pass, reduction, dtype pair and target kind, every option,
// strides, misaligned bases and in place, on every dispatch path at row lengths that cross its
// limits, over random and adversarial inputs.
//
// Error bounds (validation/tolerance.h), per row with x' the (softcapped) logits, m their max,
// t_c = x'_c - m, s = 1 + rest = sum_c exp(t_c), a_c the target coefficients and A their sum:
//  * rest: every term exp to 2 ulp, eight of them summed in float, the rest in double: 2^-21
//    rest; and a rounded t_c (x and m far apart in magnitude; softcapped logits carry 4 ulp of
//    the cap) moves its term by that rounding, relatively: sum_c exp(t_c) dt_c. A term below
//    float's normal range is flushed to 0: its whole value.
//  * log s = log1p(rest): err(rest) / s, plus 2 roundings of log s.
//  * lse = m + log s and the saved log_sum: err(log s) (the sum's rounding is the output's).
//  * row loss A log s + sum_c a_c (m - x'_c) + z lse^2: A err(log s), 2 roundings of A log s
//    and of each a_c (m - x'_c), whose difference is exact in double, the x' roundings with
//    softcap, and z (2 |lse| err(lse) + 2 roundings of lse^2).
//  * reduced loss: the rows' bounds summed (divided by the mean's denominator): the rows reach
//    the sum in double.
//  * gradient multiplier (A' p_c - a_c) slope_c, A' = A + 2 z lse: p_c = exp2f(t_c log2 e) / s
//    is good to 4 roundings, plus |t_c| for t_c log2 e, plus dt_c and err(log s) (backward:
//    exp(-log s) from the saved float, 2 ulp and |log s| roundings); a_c to 2 roundings; the
//    product and multiplier to 2. A p_c in float's subnormal range is absolute: 2^-147 |A'|.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "host/half.h"
#include "validation/paths.h"
#include "validation/tensors.h"
#include "validation/tolerance.h"

namespace actloss::validation {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// The "extreme" input's kinds of row, one per row in turn: a call holds every kind from this many
// rows on.
constexpr std::int64_t kExtremeRowKinds = 9;

struct Spec {
  Device device = Device::cpu;
  Pass pass = Pass::forward_backward;
  Reduction reduction = Reduction::mean;
  DType logits = DType::f32;
  DType grad = DType::f32;  // in place: the logits' dtype
  TargetKind target_kind = TargetKind::class_index_i64;
  DType target_dtype = DType::f32;
  std::int64_t rows = 1, classes = 1;
  std::int64_t logits_pad = 0, grad_pad = 0, target_pad = 0;  // row stride = classes + pad
  std::int64_t offset = 0;  // elements from a 256-byte boundary to every tensor's start
  bool in_place = false;
  bool weights = false, upstream = false;
  bool loss = true, lse = true, stats = true;  // which optional outputs are asked for
  float smoothing = 0, z_loss = 0, softcap = 0, grad_scale = 1;
  std::int64_t ignore_index = -100;
  std::string kind = "random";
  RowAlgorithm path = RowAlgorithm::automatic;
  std::int64_t grid_limit = 0;
};

std::string shape_text(const Spec& s) {
  std::string text = std::to_string(s.rows) + "x" + std::to_string(s.classes);
  if (s.logits_pad || s.grad_pad || s.target_pad)
    text += " stride+" + std::to_string(s.logits_pad) + "/" + std::to_string(s.grad_pad) + "/" +
            std::to_string(s.target_pad);
  if (s.offset) text += " offset " + std::to_string(s.offset);
  if (s.in_place) text += " in place";
  return text;
}

std::string inputs_text(const Spec& s) {
  std::string text = s.kind;
  // Appended piece by piece: g++ 12 -O3 reports a false -Wrestrict on " " + std::string(...)
  // inlined here.
  if (s.target_kind == TargetKind::probabilities) {
    text += " probabilities(";
    text += actloss::to_string(s.target_dtype);
    text += ")";
  }
  if (s.target_kind == TargetKind::class_index_i32) text += " i32";
  text += " ";
  text += actloss::to_string(s.reduction);
  if (s.weights) text += " weights";
  if (s.upstream) text += " upstream";
  if (s.smoothing != 0) text += " smoothing";
  if (s.z_loss != 0) text += " z";
  if (s.softcap != 0) text += " softcap";
  if (s.grad_scale != 1) text += " scaled";
  if (s.ignore_index != -100) text += " ignore" + std::to_string(s.ignore_index);
  if (!s.loss) text += " no-loss";
  if (!s.lse) text += " no-lse";
  if (!s.stats) text += " no-stats";
  return text;
}

struct Inputs {
  std::vector<double> logits;         // rows x classes, as the device holds them
  std::vector<std::int64_t> targets;  // class indices
  std::vector<double> probs;          // rows x classes, as the device holds them
  std::vector<double> weights;        // classes (f32 values)
  std::vector<double> upstream;       // rows (none) or 1 (f32 values)
};

// A magnitude the logits' dtype holds: f16 ends at 65504.
double big_for(DType dtype, double wanted) { return dtype == DType::f16 ? 6.0e4 : wanted; }

Inputs make_inputs(const Spec& s) {
  const std::int64_t rows = s.rows, classes = s.classes;
  const auto n = static_cast<std::size_t>(rows * classes);
  const std::uint64_t seed = seed_of("ce " + s.kind + shape_text(s) + actloss::to_string(s.logits));
  Inputs in;
  in.logits = uniform(n, -4.0, 4.0, seed);
  const std::vector<double> u = uniform(static_cast<std::size_t>(rows) * 4, 0.0, 1.0, seed + 1);
  in.targets.resize(static_cast<std::size_t>(rows));
  auto at = [&](std::int64_t r, std::int64_t c) -> double& {
    return in.logits[static_cast<std::size_t>(r * classes + c)];
  };
  // Random: a dominant class in every other row (probabilities near 1, where the target's
  // gradient p - 1 is small), outliers at -20, every third row aiming at its dominant class and
  // every seventh ignored.
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = (r * 5) % 13; c < classes; c += 13) at(r, c) = -20.0;
    const auto dominant = static_cast<std::int64_t>(u[std::size_t(r * 4)] * double(classes));
    if (r % 2 == 0) at(r, dominant) = 12.0;
    std::int64_t target = static_cast<std::int64_t>(u[std::size_t(r * 4 + 1)] * double(classes));
    if (r % 3 == 0) target = dominant;
    if (r % 7 == 6) target = s.ignore_index;
    in.targets[std::size_t(r)] = target;
  }
  const double huge = big_for(s.logits, s.logits == DType::f32 ? 3e38 : 1e38);
  if (s.kind == "outliers") {
    // One huge logit per row, positive or negative, sometimes on the target itself.
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t c = r % 4 == 0 && in.targets[std::size_t(r)] >= 0
                                 ? in.targets[std::size_t(r)]
                                 : static_cast<std::int64_t>(u[std::size_t(r * 4 + 2)] * double(classes));
      at(r, c) = r % 3 == 1 ? -big_for(s.logits, 1e30) : big_for(s.logits, 1e30);
    }
  } else if (s.kind == "masked") {
    // -inf masks (never on the target), and a fully masked row whose target is ignored.
    const std::vector<double> mask = uniform(n, 0.0, 1.0, seed + 5);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < classes; ++c)
        if (c != in.targets[std::size_t(r)] && mask[std::size_t(r * classes + c)] < 0.3)
          at(r, c) = -kInf;
    for (std::int64_t c = 0; c < classes; ++c) at(0, c) = -kInf;
    in.targets[0] = s.ignore_index;
  } else if (s.kind == "extreme") {
    // Rows that break naive formulas, each with a finite answer or a defined infinity.
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t C = classes;
      switch (r % kExtremeRowKinds) {
        case 0:  // huge logits of both signs, the target among the huge ones
          for (std::int64_t c = 0; c < C; c += 2) at(r, c) = c % 4 == 0 ? huge : -huge;
          in.targets[std::size_t(r)] = 0;
          break;
        case 1:  // +-1e30, target near the top
          for (std::int64_t c = 0; c < C; ++c)
            at(r, c) = s.logits == DType::f16 ? (c % 3 ? 6e4 : -6e4)
                                              : (c % 3 ? 1e30 : -1e30) + 1e24 * double(c % 5);
          in.targets[std::size_t(r)] = C > 1 ? 1 : 0;
          break;
        case 2:  // a -inf mask over half the classes, the target unmasked
          for (std::int64_t c = 1; c < C; c += 2) at(r, c) = -kInf;
          in.targets[std::size_t(r)] = 0;
          break;
        case 3:  // the target masked: loss +inf, gradient finite
          at(r, C / 2) = -kInf;
          in.targets[std::size_t(r)] = C / 2;
          break;
        case 4:  // every class -inf: lse -inf, loss +inf
          for (std::int64_t c = 0; c < C; ++c) at(r, c) = -kInf;
          break;
        case 5:  // a +inf logit: the row is NaN (as PyTorch), its neighbours are not
          at(r, C - 1) = kInf;
          break;
        case 6:  // a NaN logit
          at(r, 0) = kNaN;
          break;
        case 7:  // every class -inf and the row ignored: loss 0, gradient 0
          for (std::int64_t c = 0; c < C; ++c) at(r, c) = -kInf;
          in.targets[std::size_t(r)] = s.ignore_index;
          break;
        case 8:  // every class -inf but a NaN: the row is NaN, not a row without mass
          for (std::int64_t c = 0; c < C; ++c) at(r, c) = -kInf;
          at(r, C / 3) = kNaN;
          break;
      }
    }
  } else if (s.kind == "far below zero") {
    // Rows whose largest logit is far below 0, so that a max started at 0 instead of -inf, or
    // an all -inf test that looks at the sum alone, shows.
    const double low = -big_for(s.logits, 1e30);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < classes; ++c) {
        double& x = at(r, c);
        switch (r % 3) {
          case 0: x = -1e4 + 8.0 * u[std::size_t(r * 4 + 3)] * double(c % 7) / 7.0; break;
          case 1: x = c == (r % classes) ? low : -kInf; break;  // one class at -1e30
          case 2: x = low * (1.0 + 0.25 * double(c % 3)); break;
        }
      }
      in.targets[std::size_t(r)] = r % classes;
    }
  } else if (s.kind == "sweep") {
    // Logits from every float binade (quantised to the dtype), each row a different mix, with
    // the targets anywhere.
    const std::vector<double> values = sweep_values(n, seed + 6);
    for (std::size_t i = 0; i < n; ++i) in.logits[i] = values[i];
    for (std::int64_t r = 0; r < rows; ++r)
      in.targets[std::size_t(r)] = static_cast<std::int64_t>(u[std::size_t(r * 4 + 2)] * double(classes));
  } else if (s.kind == "all ignored") {
    for (std::int64_t& t : in.targets) t = s.ignore_index;
  } else if (s.kind == "zero weights") {
    // Every target has weight 0: the mean's denominator is 0 (loss 0, gradient 0).
    for (std::int64_t& t : in.targets) t = classes > 1 ? 1 : 0;
  }
  in.logits = quantize(in.logits, s.logits);

  in.probs = uniform(n, 0.0, 1.0, seed + 2);
  for (std::int64_t r = 0; r < rows; ++r) {
    double* q = in.probs.data() + r * classes;
    for (std::int64_t c = r % 5; c < classes; c += 5) q[c] = 0.0;
    double sum = 0.0;
    for (std::int64_t c = 0; c < classes; ++c) sum += q[c];
    for (std::int64_t c = 0; c < classes; ++c) q[c] = sum > 0 ? q[c] / sum : 1.0 / double(classes);
  }
  in.probs = quantize(in.probs, s.target_dtype);
  in.weights = quantize(uniform(static_cast<std::size_t>(classes), 0.25, 2.0, seed + 3), DType::f32);
  if (classes > 2 || s.kind == "zero weights") in.weights[classes > 1 ? 1 : 0] = 0.0;
  in.upstream = quantize(
      uniform(s.reduction == Reduction::none ? std::size_t(rows) : 1, -2.0, 2.0, seed + 4),
      DType::f32);
  return in;
}

ref::CrossEntropyProblem make_problem(const Spec& s, const Inputs& in) {
  ref::CrossEntropyProblem p;
  p.rows = s.rows;
  p.classes = s.classes;
  p.logits = in.logits;
  p.soft_targets = s.target_kind == TargetKind::probabilities;
  if (p.soft_targets)
    p.target_prob = in.probs;
  else
    p.target_index = in.targets;
  if (s.weights) p.class_weight = in.weights;
  p.ignore_index = s.ignore_index;
  p.label_smoothing = s.smoothing;
  p.z_loss = s.z_loss;
  p.softcap = s.softcap;
  p.reduction = to_ref(s.reduction);
  p.grad_scale = s.grad_scale;
  if (s.upstream) p.upstream = in.upstream;
  return p;
}

// What a forward call saves for backward: the reference's statistics rounded to float, log_sum
// taking up what the max's rounding lost (as the CPU path writes them).
std::vector<CrossEntropyRowStats> saved_stats(const ref::CrossEntropyResult& r) {
  std::vector<CrossEntropyRowStats> stats(r.max.size());
  for (std::size_t i = 0; i < stats.size(); ++i) {
    const float max = host::double_to_float(r.max[i]);
    const double log_sum =
        std::isfinite(r.max[i]) ? (r.max[i] - static_cast<double>(max)) + r.log_sum[i] : r.log_sum[i];
    stats[i] = CrossEntropyRowStats{max, host::double_to_float(log_sum)};
  }
  return stats;
}

// A coefficient times a term where the term may be infinite and the coefficient 0.
double times(double coefficient, double term) { return coefficient == 0 ? 0.0 : coefficient * term; }

}  // namespace

CrossEntropyBounds cross_entropy_error_bounds(const ref::CrossEntropyProblem& p,
                                              const ref::CrossEntropyResult& r,
                                              bool from_saved_stats) {
  const std::int64_t C = p.classes;
  const double cap = p.softcap;
  const double cap_error = cap > 0 ? 4 * kU * cap : 0.0;  // of every x' = cap tanh(x / cap)
  CrossEntropyBounds b;
  b.loss.resize(std::size_t(p.rows));
  b.lse.resize(b.loss.size());
  b.log_sum.resize(b.loss.size());
  b.max.assign(b.loss.size(), cap_error);
  b.grad.resize(std::size_t(p.rows * C));
  const bool mean = p.reduction == ref::Reduction::mean;
  for (std::int64_t row = 0; row < p.rows; ++row) {
    const auto i = std::size_t(row);
    const double m = r.max[i], log_s = r.log_sum[i];
    const double rest = std::expm1(log_s);
    // The target coefficients; zeros for an ignored or invalid row.
    std::vector<double> a(std::size_t(C), 0.0);
    auto w = [&](std::int64_t c) { return p.class_weight.empty() ? 1.0 : p.class_weight[std::size_t(c)]; };
    const double eps = p.label_smoothing;
    bool active = true;
    if (p.soft_targets) {
      for (std::int64_t c = 0; c < C; ++c)
        a[std::size_t(c)] = w(c) * ((1 - eps) * p.target_prob[std::size_t(row * C + c)] + eps / double(C));
    } else {
      const std::int64_t y = p.target_index[i];
      active = y != p.ignore_index && y >= 0 && y < C;
      if (active) {
        a[std::size_t(y)] = (1 - eps) * w(y);
        if (eps != 0)
          for (std::int64_t c = 0; c < C; ++c) a[std::size_t(c)] += eps / double(C) * w(c);
      }
    }
    double A = 0, a_terms = 0, x_terms = 0, rest_error = 2 * kU * 4 * std::max(rest, 0.0);
    std::vector<double> t(static_cast<std::size_t>(C)), dt(t.size());
    for (std::int64_t c = 0; c < C; ++c) {
      const double x = p.logits[std::size_t(row * C + c)];
      const double xc = cap > 0 ? cap * std::tanh(x / cap) : x;
      const auto k = std::size_t(c);
      t[k] = xc - m;
      dt[k] = std::isfinite(t[k]) ? kU * std::fabs(t[k]) + 2 * cap_error : 0.0;
      if (std::isfinite(t[k]) && t[k] < 0) {
        const double term = std::exp(t[k]);
        // Terms below float's normal range are flushed to 0 (cuda/row_common.cuh).
        rest_error += term < 0x1p-126 ? term : term * dt[k];
      }
      A += a[k];
      if (std::isfinite(t[k])) {
        a_terms += 2 * kU * times(std::fabs(a[k]), -t[k]);
        x_terms += times(std::fabs(a[k]), 2 * cap_error);
      }
    }
    const double s_value = 1 + rest;
    const double log_s_error = std::isfinite(log_s) ? rest_error / s_value + 2 * kU * std::fabs(log_s) : 0.0;
    const double lse = r.lse[i];
    b.log_sum[i] = log_s_error;
    b.lse[i] = log_s_error + cap_error;
    const double finite_lse = std::isfinite(lse) ? std::fabs(lse) : 0.0;
    b.loss[i] = std::fabs(A) * log_s_error + 2 * kU * std::fabs(A * log_s) + a_terms + x_terms +
                p.z_loss * (2 * finite_lse * b.lse[i] + 2 * kU * finite_lse * finite_lse);
    if (!std::isfinite(b.loss[i])) b.loss[i] = 0;  // the expected loss is infinite or NaN
    if (active) b.reduced += b.loss[i];

    // The gradient.
    double multiplier = p.grad_scale;
    if (!p.upstream.empty()) multiplier *= p.reduction == ref::Reduction::none ? p.upstream[i] : p.upstream[0];
    if (mean) multiplier = r.weight_sum != 0 ? multiplier / r.weight_sum : 0.0;
    multiplier = std::fabs(multiplier);
    if (!std::isfinite(multiplier)) multiplier = 0;
    const double a_prime = std::fabs(A + 2 * p.z_loss * (std::isfinite(lse) ? lse : 0.0));
    const double p_error_rows = from_saved_stats ? 6 * kU + kU * std::fabs(std::isfinite(log_s) ? log_s : 0.0)
                                                 : 6 * kU + log_s_error;
    for (std::int64_t c = 0; c < C; ++c) {
      const auto k = std::size_t(c);
      const double prob = std::isfinite(t[k]) ? std::exp(t[k]) / s_value : 0.0;
      const double slope = cap > 0 ? 1.0 / std::pow(std::cosh(p.logits[std::size_t(row * C + c)] / cap), 2) : 1.0;
      const double g = std::fabs(a_prime * prob - a[k]);
      // A masked class (t = -inf, p = 0) has no error from p: times() keeps its 0 from making
      // the whole bound NaN (then 0), which would leave its a_c's roundings no allowance.
      double e = multiplier * slope *
                 (times(a_prime * prob, p_error_rows + kU * std::fabs(t[k]) + dt[k]) +
                  2 * kU * std::fabs(a[k]) + 2 * kU * g + 0x1p-147 * a_prime);
      if (cap > 0) e += multiplier * slope * g * 4 * kU;
      b.grad[std::size_t(row * C + c)] = std::isfinite(e) ? e : 0.0;
    }
  }
  if (mean) b.reduced = r.weight_sum != 0 ? b.reduced / std::fabs(r.weight_sum) : 0.0;
  return b;
}

namespace {

std::vector<double> rows_of(const std::vector<double>& values, std::size_t index, std::size_t stride) {
  std::vector<double> out;
  for (std::size_t i = index; i < values.size(); i += stride) out.push_back(values[i]);
  return out;
}

Status call(Pass pass, const CrossEntropyArgs& args, const CrossEntropyOptions& options,
            const Exec& exec) {
  switch (pass) {
    case Pass::forward: return cross_entropy_forward(args, options, exec);
    case Pass::backward: return cross_entropy_backward(args, options, exec);
    case Pass::forward_backward: return cross_entropy_forward_backward(args, options, exec);
  }
  return Status(StatusCode::internal, "", "bad pass");
}

Outcome run(const Spec& s) {
  const Device device = s.device;
  const std::int64_t rows = s.rows, classes = s.classes;
  const bool soft = s.target_kind == TargetKind::probabilities;
  const bool writes_loss = s.pass != Pass::backward;
  const bool writes_grad = s.pass != Pass::forward;
  const bool per_row = s.reduction == Reduction::none;
  const DType grad_dtype = s.in_place ? s.logits : s.grad;

  const Inputs in = make_inputs(s);
  const ref::CrossEntropyProblem problem = make_problem(s, in);
  const ref::CrossEntropyResult expected = ref::cross_entropy(problem);
  const std::vector<CrossEntropyRowStats> saved = saved_stats(expected);

  const std::int64_t logits_stride = classes + s.logits_pad;
  Tensor logits = Tensor::upload(device, in.logits, rows, classes, s.logits, logits_stride, s.offset);
  bench::Buffer class_targets;
  if (!soft) {
    if (s.target_kind == TargetKind::class_index_i32)
      class_targets = upload_plain(device, std::vector<std::int32_t>(in.targets.begin(), in.targets.end()));
    else
      class_targets = upload_plain(device, in.targets);
  }
  const Tensor probs = soft ? Tensor::upload(device, in.probs, rows, classes, s.target_dtype,
                                             classes + s.target_pad, s.offset)
                            : Tensor();
  const Tensor weights =
      s.weights ? Tensor::upload(device, in.weights, 1, classes, DType::f32, 0, s.offset) : Tensor();
  const Tensor upstream =
      s.upstream ? Tensor::upload(device, in.upstream, 1, std::int64_t(in.upstream.size()),
                                  DType::f32, 0, s.offset)
                 : Tensor();
  const Tensor loss = Tensor::poisoned(device, 1, per_row ? rows : 1, DType::f32, 0, s.offset);
  const Tensor lse = Tensor::poisoned(device, 1, rows, DType::f32, 0, s.offset);
  const Tensor stats = Tensor::poisoned(device, rows, 2, DType::f32, 0, s.offset);
  const bench::Buffer saved_stats_buffer = upload_plain(device, saved);
  const std::int64_t grad_stride = s.in_place ? logits_stride : classes + s.grad_pad;
  const Tensor separate_grad =
      s.in_place ? Tensor() : Tensor::poisoned(device, rows, classes, s.grad, grad_stride, s.offset);
  const Tensor& grad = s.in_place ? logits : separate_grad;

  CrossEntropyArgs args;
  args.rows = rows;
  args.classes = classes;
  args.logits = logits.data();
  args.logits_dtype = s.logits;
  args.logits_row_stride = logits_stride;
  args.target_kind = s.target_kind;
  if (soft) {
    args.targets = probs.data();
    args.target_dtype = s.target_dtype;
    args.target_row_stride = classes + s.target_pad;
  } else {
    args.targets = class_targets.data();
  }
  if (s.weights) args.class_weight = weights.as<float>();
  if (s.loss) args.loss = loss.as<float>();
  if (s.lse) args.lse = lse.as<float>();
  if (s.stats) args.stats = stats.as<CrossEntropyRowStats>();
  args.saved_stats = saved_stats_buffer.as<CrossEntropyRowStats>();
  args.grad = grad.data();
  args.grad_dtype = grad_dtype;
  args.grad_row_stride = grad_stride;
  args.grad_scale = s.grad_scale;
  if (s.upstream) args.upstream_grad = upstream.as<float>();
  CrossEntropyOptions options;
  options.reduction = s.reduction;
  options.ignore_index = s.ignore_index;
  options.label_smoothing = s.smoothing;
  options.z_loss = s.z_loss;
  options.softcap = s.softcap;

  Outcome outcome;
  {
    const RowPathScope scope(s.path, s.grid_limit);
    const Exec exec = exec_for(device);
    outcome.error = finish(exec, call(s.pass, args, options, exec));
  }
  if (!outcome.error.empty()) return outcome;

  const CrossEntropyBounds bounds =
      cross_entropy_error_bounds(problem, expected, s.pass == Pass::backward);
  auto untouched = [&](const char* name, const Tensor& t) {
    outcome.checks.push_back(verdict(name, t.untouched(), "written although not asked for"));
  };
  if (writes_loss && s.loss) {
    if (per_row) {
      outcome.checks.push_back(compare("loss", loss.download(), expected.row_loss, DType::f32, bounds.loss));
    } else {
      outcome.checks.push_back(compare("loss", loss.download(), {expected.loss}, DType::f32, {bounds.reduced}));
    }
  } else {
    untouched("loss", loss);
  }
  if (writes_loss && s.lse) {
    outcome.checks.push_back(compare("lse", lse.download(), expected.lse, DType::f32, bounds.lse));
  } else {
    untouched("lse", lse);
  }
  if (writes_loss && s.stats) {
    const std::vector<double> got = stats.download();
    outcome.checks.push_back(compare("stats.max", rows_of(got, 0, 2), expected.max, DType::f32, bounds.max));
    outcome.checks.push_back(
        compare("stats.log_sum", rows_of(got, 1, 2), expected.log_sum, DType::f32, bounds.log_sum));
  } else {
    untouched("stats", stats);
  }
  if (writes_grad) {
    // Backward must give the fused pass's gradient: it starts from the forward's statistics.
    outcome.checks.push_back(compare("grad", grad.download(), expected.grad, grad_dtype, bounds.grad));
    outcome.checks.push_back(
        verdict("grad padding", grad.padding_intact(), "bytes between rows were written"));
  } else if (!s.in_place) {
    untouched("grad", separate_grad);
  }
  if (s.in_place && !writes_grad)
    outcome.checks.push_back(compare_exact("logits", logits.download(), in.logits, s.logits));
  return outcome;
}

// ---- the cases --------------------------------------------------------------------------------

bool holds(RowAlgorithm path, std::int64_t classes, DType dtype) {
  return classes <= detail::row_algorithm_max_classes(RowOp::cross_entropy, path, dtype);
}

class Builder {
 public:
  Builder(Device device, std::vector<Case>& cases) : device_(device), cases_(cases) {}

  void add(Spec s) {
    s.device = device_;
    if (device_ == Device::cpu) {
      s.path = RowAlgorithm::automatic;
      s.grid_limit = 0;
    }
    Case c;
    c.device = device_;
    c.op = "cross_entropy";
    c.pass = to_string(s.pass);
    c.dtypes = dtype_text(s.logits, s.in_place ? s.logits : s.grad);
    c.shape = shape_text(s);
    c.inputs = inputs_text(s);
    c.path = row_path_name(device_, RowOp::cross_entropy, s.classes, s.logits, s.path, s.grid_limit);
    c.run = [s] { return run(s); };
    cases_.push_back(std::move(c));
  }

 private:
  Device device_;
  std::vector<Case>& cases_;
};

// Option sets that every path meets: weights, smoothing (with and without weights), z-loss,
// softcap, probability targets, everything at once, and smoothing 1.
struct OptionSet {
  bool soft, weights;
  float smoothing, z_loss, softcap;
};
constexpr OptionSet kOptionSets[] = {
    {false, true, 0.0f, 0.0f, 0.0f},   {false, false, 0.1f, 0.0f, 0.0f},
    {false, true, 0.2f, 0.0f, 0.0f},   {false, false, 0.0f, 1e-3f, 0.0f},
    {false, false, 0.0f, 0.0f, 5.0f},  {true, false, 0.0f, 0.0f, 0.0f},
    {true, true, 0.15f, 0.0f, 0.0f},   {false, true, 0.1f, 1e-2f, 3.0f},
    {true, true, 0.05f, 1e-2f, 30.0f}, {false, false, 1.0f, 0.0f, 0.0f},
};

void apply(const OptionSet& o, Spec& s) {
  s.target_kind = o.soft ? TargetKind::probabilities : s.target_kind;
  s.weights = o.weights;
  s.smoothing = o.smoothing;
  s.z_loss = o.z_loss;
  s.softcap = o.softcap;
}

void cuda_full(Builder& b) {
  const Reduction kMeanFirst[] = {Reduction::mean, Reduction::sum, Reduction::none};
  int i = 0;
  // Every path with every class count it holds and several row counts: f32, forward_backward
  // with reductions and target kinds cycling; then backward at every class count.
  for (RowAlgorithm path : kRowPaths)
    for (std::int64_t classes : kRowLengths) {
      if (!holds(path, classes, DType::f32)) continue;
      std::int64_t previous_rows = 0;
      for (std::int64_t preferred : kRowCounts) {
        Spec s;
        s.path = path;
        s.classes = classes;
        s.rows = rows_for(preferred, classes);
        if (s.rows == previous_rows) continue;
        previous_rows = s.rows;
        s.reduction = kMeanFirst[i % 3];
        s.target_kind = i % 2 ? TargetKind::class_index_i32 : TargetKind::class_index_i64;
        b.add(s);
        ++i;
      }
      Spec s;
      s.path = path;
      s.pass = Pass::backward;
      s.classes = classes;
      s.rows = rows_for(33, classes);
      s.reduction = kMeanFirst[i++ % 3];
      s.upstream = true;
      b.add(s);
    }
  // f16 and bf16 logits with gradients of every dtype, on every path at every length it holds.
  for (RowAlgorithm path : kRowPaths)
    for (DType logits : {DType::f16, DType::bf16})
      for (std::int64_t classes : kRowLengths) {
        if (!holds(path, classes, logits)) continue;
        Spec s;
        s.path = path;
        s.logits = logits;
        s.grad = kDtypes[i % 3];
        s.classes = classes;
        s.rows = rows_for(kRowCounts[(i + 1) % 4], classes);
        s.reduction = i % 3 == 0 ? Reduction::sum : Reduction::mean;
        b.add(s);
        ++i;
      }
  for (DType grad : {DType::f16, DType::bf16}) {
    Spec s;
    s.grad = grad;
    s.classes = 1000;
    s.rows = 33;
    b.add(s);
  }
  // Every option set with every pass on every path, dtypes, target kinds, upstream gradients,
  // grad_scale, a real class as ignore_index and the optional outputs cycling.
  // One per path, in kRowPaths order.
  const std::int64_t kPathClasses[] = {15, 1000, 4096, 3000, 3000, 3000};
  static_assert(std::size(kPathClasses) == kRowPathCount);
  for (int p = 0; p < kRowPathCount; ++p)
    for (const OptionSet& o : kOptionSets)
      for (Pass pass : kPasses) {
        Spec s;
        s.path = kRowPaths[p];
        s.pass = pass;
        s.reduction = kReductions[i % 3];
        s.logits = kDtypes[(i / 3) % 3];
        s.grad = kDtypes[(i / 2) % 3];
        s.classes = kPathClasses[p];
        s.rows = p == 0 ? 33 : (p == 1 ? 9 : 3);
        s.target_kind = i % 2 ? TargetKind::class_index_i32 : TargetKind::class_index_i64;
        apply(o, s);
        s.target_dtype = kDtypes[(i / 5) % 3];
        s.upstream = i % 4 != 3;
        s.grad_scale = i % 5 == 0 ? 0.5f : 1.0f;
        s.ignore_index = i % 4 == 1 ? 2 : -100;
        s.loss = pass != Pass::forward_backward || i % 3 != 1;
        s.lse = i % 4 != 2;
        s.stats = i % 5 != 3;
        b.add(s);
        ++i;
      }
  // Odd strides and misaligned bases (scalar loads and stores), aligned strides with partial
  // last chunks, in place (also with every option that reads the logits twice), and grad_scale,
  // on every path.
  const std::int64_t kStrideClasses[] = {13, 700, 3001, 2500, 2500, 2500};
  static_assert(std::size(kStrideClasses) == kRowPathCount);
  for (int p = 0; p < kRowPathCount; ++p) {
    for (int variant = 0; variant < 6; ++variant) {
      Spec s;
      s.path = kRowPaths[p];
      s.classes = kStrideClasses[p];
      s.rows = p == 0 ? 33 : 5;
      s.logits = variant % 2 ? DType::bf16 : DType::f32;
      s.grad = variant == 3 ? DType::f32 : s.logits;
      s.reduction = variant == 1 ? Reduction::none : Reduction::sum;
      switch (variant) {
        case 0: s.logits_pad = 3; s.grad_pad = 5; break;  // odd strides
        case 1: s.offset = 1; break;                      // misaligned
        case 2:  // aligned strides, partial last chunks
          s.logits_pad = 8 - s.classes % 8;
          s.grad_pad = s.logits_pad;
          break;
        case 3: s.logits_pad = 16; s.grad_pad = 7; s.offset = 1; break;
        case 4: s.in_place = true; s.logits_pad = 3; break;
        case 5: s.in_place = true; s.grad_scale = -0.25f; s.upstream = true; break;
      }
      s.smoothing = variant == 2 ? 0.1f : 0.0f;
      s.target_kind = variant == 3 ? TargetKind::probabilities : TargetKind::class_index_i64;
      s.target_pad = variant == 3 ? 1 : 0;
      b.add(s);
      if (variant >= 4) {
        s.pass = Pass::backward;
        b.add(s);
      }
    }
    Spec s;
    s.path = kRowPaths[p];
    s.classes = kStrideClasses[p];
    s.rows = 5;
    s.in_place = true;
    s.target_kind = TargetKind::probabilities;
    s.smoothing = 0.1f;
    s.softcap = 10.0f;
    s.z_loss = 1e-3f;
    s.grad_scale = 2.0f;
    b.add(s);
  }
  // Adversarial values on every path and dtype: extreme rows, far below zero, every binade.
  const std::int64_t kExtremeClasses[] = {7, 300, 2100, 5000, 5000, 5000};
  static_assert(std::size(kExtremeClasses) == kRowPathCount);
  for (int p = 0; p < kRowPathCount; ++p)
    for (DType dtype : kDtypes)
      for (int variant = 0; variant < 6; ++variant)
        for (Pass pass : {Pass::forward_backward, Pass::backward, Pass::forward}) {
          if (pass == Pass::forward && variant != 0) continue;
          Spec s;
          s.path = kRowPaths[p];
          s.kind = "extreme";
          s.pass = pass;
          s.classes = kExtremeClasses[p];
          s.rows = kExtremeRowKinds;
          s.logits = dtype;
          s.reduction = Reduction::none;
          // Smoothing alone, and with class weights (class 1's is 0; the half-masked row masks
          // it: no weight on an infinite gap).
          s.smoothing = variant == 1 || variant == 4 ? 0.1f : 0.0f;
          s.weights = variant == 4;
          s.z_loss = variant == 2 ? 1e-4f : 0.0f;
          s.target_kind = variant == 3 ? TargetKind::probabilities : TargetKind::class_index_i64;
          s.softcap = variant == 5 ? 10.0f : 0.0f;
          b.add(s);
        }
  for (int p = 0; p < kRowPathCount; ++p)
    for (DType dtype : kDtypes)
      for (const char* kind : {"far below zero", "sweep", "outliers", "masked"})
        for (Pass pass : kPasses) {
          Spec s;
          s.path = kRowPaths[p];
          s.kind = kind;
          s.pass = pass;
          s.classes = kExtremeClasses[p];
          s.rows = p == 0 ? 33 : 6;
          s.logits = dtype;
          s.grad = dtype;
          s.reduction = pass == Pass::backward ? Reduction::mean : Reduction::none;
          s.smoothing = std::string(kind) == "sweep" && pass == Pass::forward ? 0.1f : 0.0f;
          b.add(s);
        }
  // Nothing to average: every row ignored, or every target weighted 0.
  for (RowAlgorithm path : kRowPaths)
    for (const char* kind : {"all ignored", "zero weights"}) {
      Spec s;
      s.path = path;
      s.kind = kind;
      s.rows = 33;
      s.classes = 40;
      s.smoothing = 0.1f;
      s.weights = std::string(kind) == "zero weights";
      b.add(s);
    }
  // Few blocks for many rows: every path walks its grid-stride loop over row tiles.
  const std::int64_t kGridClasses[] = {5, 100, 1500, 1500, 1500, 1500};
  static_assert(std::size(kGridClasses) == kRowPathCount);
  for (int p = 0; p < kRowPathCount; ++p)
    for (std::int64_t blocks : {1, 3}) {
      Spec s;
      s.path = kRowPaths[p];
      s.grid_limit = blocks;
      s.rows = p == 0 ? 257 : 17;
      s.classes = kGridClasses[p];
      s.reduction = blocks == 1 ? Reduction::mean : Reduction::none;
      s.weights = true;
      s.smoothing = 0.05f;
      b.add(s);
    }
  // Vocabulary-sized rows (Llama 3's 128256, Gemma's 262144), which only block_two_pass holds,
  // and rows just past the on-chip limit.
  int k = 0;
  for (std::int64_t classes : {128256, 262144})
    for (DType dtype : {DType::f32, DType::bf16}) {
      Spec s;
      s.classes = classes;
      s.logits = dtype;
      s.grad = dtype;
      s.reduction = Reduction::sum;
      s.smoothing = k++ % 2 ? 0.1f : 0.0f;
      s.z_loss = 1e-4f;
      b.add(s);
    }
  for (DType dtype : {DType::f32, DType::bf16}) {
    Spec s;
    s.rows = 2;
    s.logits = dtype;
    s.classes = detail::row_algorithm_max_classes(RowOp::cross_entropy, RowAlgorithm::block_on_chip,
                                                  dtype) + 1;
    b.add(s);
  }
}

// The CPU path (and the kernels' quick check): every pass, dtype pair, input kind and option set
// once, on one shape per path, with strides, a misaligned base and in place.
void every_kind(Builder& b, Device device, Depth depth) {
  const std::vector<RowShape> shapes = row_shape_per_path(device, depth);
  const std::vector<std::string> kinds = row_input_kinds(depth);
  int i = 0;
  for (Pass pass : kPasses)
    for (DType dtype : kDtypes)
      for (const std::string& kind : kinds) {
        // Quick and smoke rotate the paths; the CPU's full depth takes every shape.
        const std::size_t first = device == Device::cpu && depth == Depth::full ? 0 : i % shapes.size();
        const std::size_t last = device == Device::cpu && depth == Depth::full ? shapes.size() : first + 1;
        for (std::size_t k = first; k < last; ++k) {
          Spec s;
          s.path = shapes[k].path;
          s.rows = std::max<std::int64_t>(shapes[k].rows, kind == "extreme" ? kExtremeRowKinds : 1);
          s.classes = shapes[k].cols;
          s.kind = kind;
          s.pass = pass;
          s.logits = dtype;
          s.grad = kDtypes[(i + 1) % 3];
          s.reduction = kReductions[i % 3];
          s.upstream = i % 2 == 0;
          b.add(s);
        }
        ++i;
      }
  // Every option set (each reduces over the row more than once: a barrier missing between two
  // block reductions races), cycling passes, dtypes and target dtypes.
  for (const OptionSet& o : kOptionSets) {
    Spec s;
    s.path = shapes[std::size_t(i) % shapes.size()].path;
    s.rows = shapes[std::size_t(i) % shapes.size()].rows;
    s.classes = shapes[std::size_t(i) % shapes.size()].cols;
    s.pass = kPasses[i % 3];
    s.logits = kDtypes[(i / 3) % 3];
    s.grad = kDtypes[i % 3];
    // Class weights with smoothing under mean take both sums of the weights' pre-pass.
    s.reduction = o.weights && o.smoothing != 0 ? Reduction::mean : kReductions[(i / 2) % 3];
    s.target_kind = i % 2 ? TargetKind::class_index_i32 : TargetKind::class_index_i64;
    apply(o, s);
    s.target_dtype = kDtypes[(i / 5) % 3];
    s.upstream = true;
    s.grad_scale = i % 2 ? 0.5f : 1.0f;
    s.ignore_index = i % 3 == 0 ? 2 : -100;
    b.add(s);
    ++i;
  }
  if (depth == Depth::smoke) return;
  // Strides, a misaligned base and in place, with every option.
  for (int variant = 0; variant < 3; ++variant) {
    Spec s;
    s.path = shapes[std::size_t(variant) % shapes.size()].path;
    s.rows = 6;
    s.classes = 11;
    s.logits = kDtypes[variant];
    s.grad = kDtypes[(variant + 1) % 3];
    s.logits_pad = 3;
    s.grad_pad = 2;
    s.target_pad = 1;
    s.offset = variant == 1 ? 1 : 0;
    s.target_kind = variant == 2 ? TargetKind::probabilities : TargetKind::class_index_i32;
    s.in_place = variant == 0;
    s.smoothing = 0.1f;
    s.z_loss = 1e-3f;
    s.softcap = variant == 1 ? 4.0f : 0.0f;
    s.weights = true;
    s.upstream = true;
    s.grad_scale = 0.5f;
    s.ignore_index = -1;
    for (Pass pass : kPasses) {
      s.pass = pass;
      b.add(s);
    }
  }
  for (const char* kind : {"all ignored", "zero weights"}) {
    Spec s;
    s.rows = 9;
    s.classes = 40;
    s.kind = kind;
    s.weights = std::string(kind) == "zero weights";
    b.add(s);
  }
  if (device != Device::cpu || depth != Depth::full) return;
  // The CPU path's plumbing: every dtype pair, target kind and reduction through strides, with
  // every option at once, the passes in turn.
  int j = 0;
  for (DType logits : kDtypes)
    for (DType out : kDtypes)
      for (TargetKind kind : {TargetKind::class_index_i32, TargetKind::class_index_i64,
                              TargetKind::probabilities})
        for (Reduction reduction : kReductions) {
          Spec s;
          s.pass = kPasses[j++ % 3];
          s.rows = 7;
          s.classes = 11;
          s.logits = logits;
          s.grad = out;
          s.target_kind = kind;
          s.target_dtype = out;
          s.reduction = reduction;
          s.logits_pad = 3;
          s.grad_pad = 2;
          s.target_pad = 1;
          s.weights = true;
          s.upstream = true;
          s.smoothing = 0.1f;
          s.z_loss = 1e-3f;
          s.softcap = kind == TargetKind::class_index_i64 ? 4.0f : 0.0f;
          s.grad_scale = 0.5f;
          s.ignore_index = -1;
          b.add(s);
        }
  // The adversarial rows under each option that changes what a row sums, as the kernels' full
  // set has them: label smoothing, smoothing with class weights (class 1's weight is 0, and the
  // half-masked row masks it), z-loss, probability targets (zero mass on every fifth class,
  // some of them masked) and softcap; 300 classes, whole blocks of vectors and a partial one on
  // every SIMD target.
  for (DType dtype : kDtypes)
    for (int variant = 0; variant < 5; ++variant)
      for (Pass pass : kPasses) {
        Spec s;
        s.kind = "extreme";
        s.pass = pass;
        s.rows = kExtremeRowKinds;
        s.classes = 300;
        s.logits = dtype;
        s.grad = dtype;
        s.reduction = Reduction::none;
        s.smoothing = variant <= 1 ? 0.1f : 0.0f;
        s.weights = variant == 1;
        s.z_loss = variant == 2 ? 1e-4f : 0.0f;
        s.target_kind = variant == 3 ? TargetKind::probabilities : TargetKind::class_index_i64;
        s.softcap = variant == 4 ? 10.0f : 0.0f;
        b.add(s);
      }
}

}  // namespace

void add_cross_entropy_cases(Device device, Depth depth, std::vector<Case>& cases) {
  Builder builder(device, cases);
  if (device == Device::cuda && depth == Depth::full) {
    cuda_full(builder);
    return;
  }
  every_kind(builder, device, depth);
}

}  // namespace actloss::validation
