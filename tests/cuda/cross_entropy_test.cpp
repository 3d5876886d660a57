// Softmax cross-entropy on Device::cuda against the float64 reference (host/reference/reference.h),
// through the public API, so the same tests run in the simulator build (under ASan in CI) and on
// a GPU. The reference always gets the quantised inputs: what the kernel sees after rounding to
// the dtype. Every dispatch path (cuda/row_dispatch.h) is forced in turn and meets every class
// count it can hold; outputs start poisoned (0xFF bytes: NaN), so an element not written fails.
//
// Tolerances: |actual - expected| <= atol + rtol |expected|, per row.
//  * Row loss (f32): the kernel forms  A log s + sum_c a_c (m - x'_c) + z lse^2  (m the row max,
//    s = sum exp(x'_c - m), a_c the target coefficients, A their sum), the differences exactly in
//    double. s is a float sum of positive terms, accurate to a few ulp, so log s is good to
//    2^-21 absolute plus logf's ulp: atol = 2^-21 sum_c |a_c| |m - x'_c| + |A| (2^-21 +
//    2^-22 |log s|) + 2^-20 z lse^2, plus 2^-21 |A| cap with softcap (x' carries a few ulp of
//    cap); rtol 2^-21. That is the 2^-21 relative accuracy promised for ordinary inputs.
//  * lse: m + log s: atol 2^-21 (1 + cap), rtol 2^-21.
//  * Reduced loss: the rows' atol summed (divided by the mean's denominator), rtol 2^-21.
//  * Gradient multiplier (A' p_c - a_c) slope, A' = A + 2 z lse: p_c is exp of a rounded
//    difference times 1/s, so the error is relative to the terms, not to their difference (p - 1
//    near the optimum): atol = 2^-20 |multiplier| (|A'| + max_c |a_c|), rtol 2^-20 (the
//    simulator passes at 2^-21; the slack is for the GPU's 2-ulp exp2f). f16 / bf16 gradients
//    add one unit in their last place (rtol 2^-10 / 2^-7, atol 2^-24 for f16's subnormals),
//    since float is rounded once more to the output type.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <actloss/cross_entropy.h>

#include "cuda/row_dispatch.h"
#include "host/reference/reference.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using detail::RowAlgorithm;
using detail::RowOp;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool holds(RowAlgorithm path, std::int64_t classes, DType dtype) {
  return classes <= detail::row_algorithm_max_classes(RowOp::cross_entropy, path, dtype);
}

// The simulator runs every CUDA thread on the CPU (under ASan in CI): rows x classes is kept
// below 300K elements per case, taking fewer rows for long ones.
std::int64_t rows_for(std::int64_t preferred, std::int64_t classes) {
  std::int64_t rows = preferred;
  while (rows > 1 && rows * classes > 300000) rows = rows == 257 ? 33 : (rows == 33 ? 2 : 1);
  return rows;
}


struct Case {
  Pass pass = Pass::forward_backward;
  Reduction reduction = Reduction::mean;
  DType logits = DType::f32;
  DType grad = DType::f32;
  TargetKind target_kind = TargetKind::class_index_i64;
  DType target_dtype = DType::f32;
  std::int64_t rows = 1, classes = 1;
  std::int64_t logits_pad = 0, grad_pad = 0, target_pad = 0;  // row stride = classes + pad
  std::int64_t offset = 0;  // elements between a 256-byte boundary and every tensor's start
  bool in_place = false;
  bool weights = false, upstream = false, loss = true, lse = true;
  float smoothing = 0.0f, z_loss = 0.0f, softcap = 0.0f, grad_scale = 1.0f;
  std::int64_t ignore_index = -100;
};

std::string describe(const Case& s) {
  std::string text = std::string(to_string(s.pass)) + " " + to_string(s.reduction) + " " +
                     std::to_string(s.rows) + "x" + std::to_string(s.classes) + " " +
                     to_string(s.logits) + "->" + to_string(s.grad);
  if (s.target_kind == TargetKind::probabilities)
    text += std::string(" probabilities(") + to_string(s.target_dtype) + ")";
  if (s.target_kind == TargetKind::class_index_i32) text += " i32";
  if (s.logits_pad || s.grad_pad || s.target_pad)
    text += " pads " + std::to_string(s.logits_pad) + "/" + std::to_string(s.grad_pad) + "/" +
            std::to_string(s.target_pad);
  if (s.offset) text += " offset " + std::to_string(s.offset);
  if (s.in_place) text += " in-place";
  if (s.weights) text += " weights";
  if (s.upstream) text += " upstream";
  if (!s.loss) text += " no-loss";
  if (!s.lse) text += " no-lse";
  if (s.smoothing != 0) text += " smoothing " + std::to_string(s.smoothing);
  if (s.z_loss != 0) text += " z " + std::to_string(s.z_loss);
  if (s.softcap != 0) text += " softcap " + std::to_string(s.softcap);
  if (s.grad_scale != 1) text += " scale " + std::to_string(s.grad_scale);
  text += " path " + std::string(detail::to_string(detail::row_algorithm_override()));
  return text;
}

struct Inputs {
  std::vector<double> logits;         // rows x classes
  std::vector<std::int64_t> targets;  // class indices
  std::vector<double> probs;          // rows x classes
  std::vector<double> weights;        // classes
  std::vector<double> upstream;       // rows (none) or 1
};

// Logits in [-4, 4] with a dominant class in some rows (probabilities near 1, where the target's
// gradient p - 1 is small) and outliers at -20 and +12 (so that the test does not only see
// near-uniform softmaxes); class targets uniform with every 7th row ignored and every 3rd row
// aiming at its dominant class; probability targets with exact zeros; weights in [0.25, 2] with
// one zero.
Inputs make_inputs(const Case& s, std::uint64_t seed) {
  const std::int64_t rows = s.rows, classes = s.classes;
  Inputs in;
  in.logits = random_values(static_cast<std::size_t>(rows * classes), -4.0, 4.0, seed);
  const std::vector<double> u = random_values(static_cast<std::size_t>(rows) * 4, 0.0, 1.0, seed + 1);
  in.targets.resize(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    double* row = in.logits.data() + r * classes;
    for (std::int64_t c = (r * 5) % 13; c < classes; c += 13) row[c] = -20.0;
    const auto dominant = static_cast<std::int64_t>(u[std::size_t(r * 4)] * double(classes));
    if (r % 2 == 0) row[dominant] = 12.0;
    std::int64_t target = static_cast<std::int64_t>(u[std::size_t(r * 4 + 1)] * double(classes));
    if (r % 3 == 0) target = dominant;
    if (r % 7 == 6) target = s.ignore_index;
    in.targets[std::size_t(r)] = target;
  }
  in.probs = random_values(static_cast<std::size_t>(rows * classes), 0.0, 1.0, seed + 2);
  for (std::int64_t r = 0; r < rows; ++r) {
    double* q = in.probs.data() + r * classes;
    for (std::int64_t c = r % 5; c < classes; c += 5) q[c] = 0.0;
    double sum = 0.0;
    for (std::int64_t c = 0; c < classes; ++c) sum += q[c];
    for (std::int64_t c = 0; c < classes; ++c) q[c] = sum > 0 ? q[c] / sum : 1.0 / double(classes);
  }
  in.weights = random_values(static_cast<std::size_t>(classes), 0.25, 2.0, seed + 3);
  if (classes > 2) in.weights[1] = 0.0;
  in.upstream = random_values(s.reduction == Reduction::none ? std::size_t(rows) : 1, -2.0, 2.0,
                              seed + 4);
  return in;
}

double capped(const Case& s, double x) {
  return s.softcap > 0 ? double(s.softcap) * std::tanh(x / double(s.softcap)) : x;
}

// The target coefficients a_c of a row (include/actloss/cross_entropy.h); zeros for an ignored
// or invalid row.
std::vector<double> coefficients(const ref::CrossEntropyProblem& p, std::int64_t r) {
  const std::int64_t C = p.classes;
  std::vector<double> a(std::size_t(C), 0.0);
  auto w = [&](std::int64_t c) { return p.class_weight.empty() ? 1.0 : p.class_weight[std::size_t(c)]; };
  const double eps = p.label_smoothing;
  if (p.soft_targets) {
    for (std::int64_t c = 0; c < C; ++c)
      a[std::size_t(c)] = w(c) * ((1 - eps) * p.target_prob[std::size_t(r * C + c)] + eps / double(C));
    return a;
  }
  const std::int64_t y = p.target_index[std::size_t(r)];
  if (y == p.ignore_index || y < 0 || y >= C) return a;
  a[std::size_t(y)] = (1 - eps) * w(y);
  if (eps != 0)
    for (std::int64_t c = 0; c < C; ++c) a[std::size_t(c)] += eps / double(C) * w(c);
  return a;
}

struct RowTolerance {
  double loss_atol = 0, lse_atol = 0, grad_atol = 0;
};

constexpr double kRtolLoss = 0x1p-21;
constexpr double kRtolGrad = 0x1p-20;

std::vector<RowTolerance> row_tolerances(const Case& s, const ref::CrossEntropyProblem& p,
                                         const ref::CrossEntropyResult& expected,
                                         const std::vector<double>& upstream) {
  const std::int64_t C = p.classes;
  std::vector<RowTolerance> out(std::size_t(p.rows));
  const double cap = s.softcap;
  for (std::int64_t r = 0; r < p.rows; ++r) {
    RowTolerance& t = out[std::size_t(r)];
    double m = -kInf;
    for (std::int64_t c = 0; c < C; ++c) m = std::max(m, capped(s, p.logits[std::size_t(r * C + c)]));
    const double lse = expected.lse[std::size_t(r)];
    const double log_s = std::isfinite(lse) && std::isfinite(m) ? lse - m : 0.0;
    const std::vector<double> a = coefficients(p, r);
    double A = 0, a_max = 0, spread = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      const double ac = a[std::size_t(c)];
      A += ac;
      a_max = std::max(a_max, std::fabs(ac));
      const double gap = m - capped(s, p.logits[std::size_t(r * C + c)]);
      if (ac != 0 && std::isfinite(gap)) spread += std::fabs(ac) * gap;
    }
    const double lse2 = std::isfinite(lse) ? lse * lse : 0.0;
    t.loss_atol = 0x1p-21 * spread + std::fabs(A) * (0x1p-21 + 0x1p-22 * std::fabs(log_s)) +
                  0x1p-20 * p.z_loss * lse2 + 0x1p-21 * std::fabs(A) * cap;
    t.lse_atol = 0x1p-21 + 0x1p-21 * cap;
    double multiplier = s.grad_scale;
    if (!upstream.empty())
      multiplier *= s.reduction == Reduction::none ? upstream[std::size_t(r)] : upstream[0];
    if (s.reduction == Reduction::mean) multiplier /= expected.weight_sum;
    const double a_prime = std::fabs(A) + 2 * p.z_loss * (std::isfinite(lse) ? std::fabs(lse) : 0.0);
    t.grad_atol = std::isfinite(multiplier) ? 0x1p-20 * std::fabs(multiplier) * (a_prime + a_max) : 0.0;
  }
  return out;
}

Tolerance with_output_rounding(DType dtype, Tolerance t) {
  if (dtype == DType::f16) {
    t.rtol += 0x1p-10;
    t.atol = std::max(t.atol, 0x1p-24);
  } else if (dtype == DType::bf16) {
    t.rtol += 0x1p-7;
    t.atol = std::max(t.atol, 0x1p-133);
  }
  return t;
}

// Checks a rows x cols result row by row with per-row tolerances.
::testing::AssertionResult rows_close(const std::vector<double>& actual,
                                      const std::vector<double>& expected, std::int64_t rows,
                                      std::int64_t cols, const std::vector<double>& atol,
                                      double rtol, DType dtype, const std::string& what) {
  if (actual.size() != expected.size() || std::int64_t(actual.size()) != rows * cols)
    return ::testing::AssertionFailure() << what << ": size mismatch";
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto begin = std::size_t(r * cols), end = std::size_t((r + 1) * cols);
    const std::vector<double> a(actual.begin() + long(begin), actual.begin() + long(end));
    const std::vector<double> e(expected.begin() + long(begin), expected.begin() + long(end));
    ::testing::AssertionResult result = all_close(
        a, e, with_output_rounding(dtype, Tolerance{atol[std::size_t(r)], rtol}),
        what + " row " + std::to_string(r));
    if (!result) return result;
  }
  return ::testing::AssertionSuccess();
}

bool all_poison(const DeviceMatrix& m) {
  const std::vector<std::uint8_t> bytes = m.buffer.download_bytes();
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == kPoisonByte; });
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

ref::CrossEntropyProblem make_problem(const Case& s, const Inputs& in) {
  ref::CrossEntropyProblem p;
  p.rows = s.rows;
  p.classes = s.classes;
  p.logits = quantize(in.logits, s.logits);
  p.soft_targets = s.target_kind == TargetKind::probabilities;
  if (p.soft_targets)
    p.target_prob = quantize(in.probs, s.target_dtype);
  else
    p.target_index = in.targets;
  if (s.weights) p.class_weight = quantize(in.weights, DType::f32);
  p.ignore_index = s.ignore_index;
  p.label_smoothing = s.smoothing;
  p.z_loss = s.z_loss;
  p.softcap = s.softcap;
  p.reduction = to_ref(s.reduction);
  p.grad_scale = s.grad_scale;
  if (s.upstream) p.upstream = quantize(in.upstream, DType::f32);
  return p;
}

DeviceBuffer upload_targets(const Case& s, const Inputs& in) {
  if (s.target_kind == TargetKind::class_index_i32) {
    std::vector<std::int32_t> narrow(in.targets.begin(), in.targets.end());
    return upload_vector(narrow);
  }
  return upload_vector(in.targets);
}

struct RunResult {
  std::uint32_t loss_bits = 0;  // the reduced loss, for reproducibility checks
};

// Runs one call through the public API and checks everything it writes (and does not write).
RunResult run_case(const Case& s, const Inputs& in) {
  SCOPED_TRACE(describe(s));
  RunResult result;
  const std::int64_t rows = s.rows, classes = s.classes;
  const bool soft = s.target_kind == TargetKind::probabilities;
  const bool writes_loss = s.pass != Pass::backward;
  const bool writes_grad = s.pass != Pass::forward;
  const bool per_row = s.reduction == Reduction::none;
  const DType grad_dtype = s.in_place ? s.logits : s.grad;

  const ref::CrossEntropyProblem problem = make_problem(s, in);
  const ref::CrossEntropyResult expected = ref::cross_entropy(problem);

  const std::int64_t logits_stride = classes + s.logits_pad;
  DeviceMatrix logits = upload_matrix(problem.logits, rows, classes, s.logits, logits_stride, s.offset);
  const DeviceBuffer class_targets = soft ? DeviceBuffer() : upload_targets(s, in);
  const DeviceMatrix probs = soft ? upload_matrix(problem.target_prob, rows, classes,
                                                  s.target_dtype, classes + s.target_pad, s.offset)
                                  : DeviceMatrix();
  const DeviceMatrix weights = s.weights ? upload_matrix(problem.class_weight, 1, classes,
                                                         DType::f32, 0, s.offset)
                                         : DeviceMatrix();
  const DeviceMatrix upstream =
      s.upstream ? upload_matrix(problem.upstream, 1, std::int64_t(problem.upstream.size()),
                                 DType::f32, 0, s.offset)
                 : DeviceMatrix();
  const DeviceMatrix loss = poisoned_matrix(1, per_row ? rows : 1, DType::f32, 0, s.offset);
  const DeviceMatrix lse = poisoned_matrix(1, rows, DType::f32, 0, s.offset);
  const DeviceMatrix stats = poisoned_matrix(rows, 2, DType::f32, 0, s.offset);
  // Backward starts from the forward's row statistics as floats, as a caller would have saved
  // them, and must then give the fused pass's gradient.
  const std::vector<double> saved_stats_values = saved_row_stats(expected);
  const DeviceMatrix saved_stats =
      upload_matrix(saved_stats_values, rows, 2, DType::f32, 0, s.offset);
  const std::int64_t grad_stride = s.in_place ? logits_stride : classes + s.grad_pad;
  const DeviceMatrix separate_grad =
      s.in_place ? DeviceMatrix() : poisoned_matrix(rows, classes, s.grad, grad_stride, s.offset);
  const DeviceMatrix& grad = s.in_place ? logits : separate_grad;

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
    args.targets = class_targets.get();
  }
  if (s.weights) args.class_weight = static_cast<const float*>(weights.data());
  if (s.loss) args.loss = static_cast<float*>(loss.data());
  if (s.lse) args.lse = static_cast<float*>(lse.data());
  if (s.lse) args.stats = static_cast<CrossEntropyRowStats*>(stats.data());
  args.saved_stats = static_cast<const CrossEntropyRowStats*>(saved_stats.data());
  args.grad = grad.data();
  args.grad_dtype = grad_dtype;
  args.grad_row_stride = grad_stride;
  args.grad_scale = s.grad_scale;
  if (s.upstream) args.upstream_grad = static_cast<const float*>(upstream.data());
  CrossEntropyOptions options;
  options.reduction = s.reduction;
  options.ignore_index = s.ignore_index;
  options.label_smoothing = s.smoothing;
  options.z_loss = s.z_loss;
  options.softcap = s.softcap;

  const Status status = call(s.pass, args, options, cuda_exec());
  EXPECT_TRUE(status.ok()) << status.message();
  if (!status.ok()) return result;
  synchronize_or_fail();

  const std::vector<RowTolerance> tol = row_tolerances(s, problem, expected, problem.upstream);
  if (writes_loss && s.loss) {
    const std::vector<double> got = loss.download();
    if (per_row) {
      std::vector<double> atol(static_cast<std::size_t>(rows));
      for (std::int64_t r = 0; r < rows; ++r) atol[std::size_t(r)] = tol[std::size_t(r)].loss_atol;
      EXPECT_TRUE(rows_close(got, quantize(expected.row_loss, DType::f32), rows, 1, atol,
                             kRtolLoss, DType::f32, "loss"));
    } else {
      double atol = 0, magnitude = 0;
      for (std::int64_t r = 0; r < rows; ++r) {
        atol += tol[std::size_t(r)].loss_atol;
        if (std::isfinite(expected.row_loss[std::size_t(r)]))
          magnitude += std::fabs(expected.row_loss[std::size_t(r)]);
      }
      const double denominator =
          s.reduction == Reduction::mean && expected.weight_sum != 0 ? std::fabs(expected.weight_sum) : 1.0;
      EXPECT_TRUE(all_close(got, quantize({expected.loss}, DType::f32),
                            Tolerance{(atol + kRtolLoss * magnitude) / denominator, kRtolLoss},
                            "reduced loss"));
      const float value = static_cast<float>(got[0]);
      std::memcpy(&result.loss_bits, &value, sizeof value);
    }
  } else {
    EXPECT_TRUE(all_poison(loss)) << "loss written although not asked for";
  }
  if (writes_loss && s.lse) {
    std::vector<double> atol(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) atol[std::size_t(r)] = tol[std::size_t(r)].lse_atol;
    EXPECT_TRUE(rows_close(lse.download(), quantize(expected.lse, DType::f32), rows, 1, atol,
                           kRtolLoss, DType::f32, "lse"));
    // The max is one of the (capped) logits; log_sum is lse's log s.
    const std::vector<double> got = stats.download();
    std::vector<double> got_max(got.size() / 2), got_log_sum(got.size() / 2);
    for (std::size_t r = 0; r < got_max.size(); ++r) {
      got_max[r] = got[2 * r];
      got_log_sum[r] = got[2 * r + 1];
    }
    const std::vector<double> max_atol(got_max.size(), 0x1p-21 * s.softcap);
    EXPECT_TRUE(rows_close(got_max, expected.max, rows, 1, max_atol, 0x1p-23, DType::f32,
                           "stats.max"));
    EXPECT_TRUE(rows_close(got_log_sum, expected.log_sum, rows, 1, atol, kRtolLoss, DType::f32,
                           "stats.log_sum"));
  } else {
    EXPECT_TRUE(all_poison(lse)) << "lse written although not asked for";
    EXPECT_TRUE(all_poison(stats)) << "stats written although not asked for";
  }
  if (writes_grad) {
    const std::vector<double>& want = expected.grad;
    std::vector<double> atol(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) atol[std::size_t(r)] = tol[std::size_t(r)].grad_atol;
    EXPECT_TRUE(rows_close(grad.download(), quantize(want, grad_dtype), rows, classes, atol,
                           kRtolGrad, grad_dtype, "grad"));
    EXPECT_TRUE(grad.padding_intact()) << "grad: bytes between rows were written";
  } else if (!s.in_place) {
    EXPECT_TRUE(all_poison(separate_grad)) << "grad written although not asked for";
  }
  return result;
}

// ---------------------------------------------------------------------------------------------

// Every path with every class count it holds and every row count {1, 2, 33, 257} (fewer rows for
// the longest): f32, forward_backward with reductions and target kinds cycling, class targets
// with ignored rows; then the backward pass at every class count.
TEST(CudaCrossEntropy, EveryPathEveryClassCount) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const Reduction kMeanFirst[] = {Reduction::mean, Reduction::sum, Reduction::none};
  int i = 0;
  for (RowAlgorithm path : kPaths) {
    const ForcedRowPath forced(path);
    for (std::int64_t classes : kRowLengths) {
      if (!holds(path, classes, DType::f32)) continue;
      std::int64_t previous_rows = 0;
      for (std::int64_t preferred : kRowCountsAcrossWarps) {
        Case s;
        s.classes = classes;
        s.rows = rows_for(preferred, classes);
        if (s.rows == previous_rows) continue;
        previous_rows = s.rows;
        s.reduction = kMeanFirst[i % 3];
        s.target_kind = i % 2 ? TargetKind::class_index_i32 : TargetKind::class_index_i64;
        run_case(s, make_inputs(s, 100 + std::uint64_t(i)));
        ++i;
      }
      Case s;
      s.pass = Pass::backward;
      s.classes = classes;
      s.rows = rows_for(33, classes);
      s.reduction = kMeanFirst[i % 3];
      s.upstream = true;
      run_case(s, make_inputs(s, 100 + std::uint64_t(i++)));
    }
  }
}

// f16 and bf16 logits with gradients of every dtype, on every path at every class count it holds
// (rows cycling).
TEST(CudaCrossEntropy, HalfPrecisionLogits) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const DType grads[] = {DType::f32, DType::f16, DType::bf16};
  int i = 0;
  for (RowAlgorithm path : kPaths) {
    const ForcedRowPath forced(path);
    for (DType logits : {DType::f16, DType::bf16})
      for (std::int64_t classes : kRowLengths) {
        if (!holds(path, classes, logits)) continue;
        Case s;
        s.logits = logits;
        s.grad = grads[i % 3];
        s.classes = classes;
        s.rows = rows_for(kRowCountsAcrossWarps[(i + 1) % 4], classes);
        s.reduction = i % 3 == 0 ? Reduction::sum : Reduction::mean;
        run_case(s, make_inputs(s, 300 + std::uint64_t(i)));
        ++i;
      }
  }
  // f32 logits with a 16-bit gradient.
  for (DType grad : {DType::f16, DType::bf16}) {
    Case s;
    s.grad = grad;
    s.classes = 1000;
    s.rows = 33;
    run_case(s, make_inputs(s, 350));
  }
}

// Options and their combinations on every path, each pass and reduction, cycling dtypes and
// target kinds.
TEST(CudaCrossEntropy, OptionsOnEveryPath) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  struct Options {
    bool soft, weights;
    float smoothing, z_loss, softcap;
  };
  const Options kOptions[] = {
      {false, true, 0.0f, 0.0f, 0.0f},  {false, false, 0.1f, 0.0f, 0.0f},
      {false, true, 0.2f, 0.0f, 0.0f},  {false, false, 0.0f, 1e-3f, 0.0f},
      {false, false, 0.0f, 0.0f, 5.0f}, {true, false, 0.0f, 0.0f, 0.0f},
      {true, true, 0.15f, 0.0f, 0.0f},  {false, true, 0.1f, 1e-2f, 3.0f},
      {true, true, 0.05f, 1e-2f, 30.0f}, {false, false, 1.0f, 0.0f, 0.0f},
  };
  const DType kDtypes[] = {DType::f32, DType::bf16, DType::f16};
  const std::int64_t kClasses[] = {15, 1000, 4096, 3000};  // one per path, in kPaths order
  int i = 0;
  for (int p = 0; p < 4; ++p) {
    const ForcedRowPath forced(kPaths[p]);
    for (const Options& o : kOptions)
      for (Pass pass : kPasses) {
        Case s;
        s.pass = pass;
        s.reduction = kReductions[i % 3];
        s.logits = kDtypes[(i / 3) % 3];
        s.grad = kDtypes[(i / 2) % 3];
        s.classes = kClasses[p];
        s.rows = p == 0 ? 33 : (p == 1 ? 9 : 3);
        s.target_kind = o.soft ? TargetKind::probabilities
                               : (i % 2 ? TargetKind::class_index_i32 : TargetKind::class_index_i64);
        s.target_dtype = kDtypes[(i / 5) % 3];
        s.weights = o.weights;
        s.smoothing = o.smoothing;
        s.z_loss = o.z_loss;
        s.softcap = o.softcap;
        s.upstream = i % 4 != 3;
        s.grad_scale = i % 5 == 0 ? 0.5f : 1.0f;
        s.ignore_index = i % 4 == 1 ? 2 : -100;  // a real class as ignore_index
        s.loss = pass != Pass::forward_backward || i % 3 != 1;
        s.lse = i % 4 != 2;
        run_case(s, make_inputs(s, 400 + std::uint64_t(i)));
        ++i;
      }
  }
}

// Odd strides and misaligned bases (scalar loads and stores), aligned strides with partial last
// chunks, and the gradient written over the logits, on every path.
TEST(CudaCrossEntropy, StridesMisalignmentAndInPlace) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t kClasses[] = {13, 700, 3001, 2500};
  int i = 0;
  for (int p = 0; p < 4; ++p) {
    const ForcedRowPath forced(kPaths[p]);
    for (int variant = 0; variant < 5; ++variant) {
      Case s;
      s.classes = kClasses[p];
      s.rows = p == 0 ? 33 : 5;
      s.logits = variant % 2 ? DType::bf16 : DType::f32;
      s.grad = variant == 3 ? DType::f32 : s.logits;
      s.reduction = variant == 1 ? Reduction::none : Reduction::sum;
      switch (variant) {
        case 0: s.logits_pad = 3; s.grad_pad = 5; break;                       // odd strides
        case 1: s.offset = 1; break;                                           // misaligned
        case 2: s.logits_pad = 8 - s.classes % 8; s.grad_pad = s.logits_pad; break;  // aligned
        case 3: s.logits_pad = 16; s.grad_pad = 7; s.offset = 1; break;
        case 4: s.in_place = true; s.logits_pad = 3; break;
      }
      s.smoothing = variant == 2 ? 0.1f : 0.0f;
      s.target_kind = variant == 3 ? TargetKind::probabilities : TargetKind::class_index_i64;
      s.target_pad = variant == 3 ? 1 : 0;
      run_case(s, make_inputs(s, 500 + std::uint64_t(i++)));
    }
    // In place with every option that reads the logits twice (soft targets, smoothing, softcap).
    Case s;
    s.classes = kClasses[p];
    s.rows = 5;
    s.in_place = true;
    s.target_kind = TargetKind::probabilities;
    s.smoothing = 0.1f;
    s.softcap = 10.0f;
    s.z_loss = 1e-3f;
    run_case(s, make_inputs(s, 550 + std::uint64_t(i++)));
  }
}

// Values that break naive formulas: logits of +-1e30 and +-3e38 with finite true answers, -inf
// masks (the target masked gives +inf), all -inf rows, +inf and NaN rows.
TEST(CudaCrossEntropy, ExtremeLogits) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t kClasses[] = {7, 300, 2100, 5000};
  int i = 0;
  for (int p = 0; p < 4; ++p) {
    const ForcedRowPath forced(kPaths[p]);
    for (DType dtype : {DType::f32, DType::bf16})
      for (int variant = 0; variant < 4; ++variant) {
        Case s;
        s.classes = kClasses[p];
        s.rows = 8;
        s.logits = dtype;
        s.grad = DType::f32;
        s.reduction = Reduction::none;
        s.smoothing = variant == 1 ? 0.1f : 0.0f;
        s.z_loss = variant == 2 ? 1e-4f : 0.0f;
        s.target_kind = variant == 3 ? TargetKind::probabilities : TargetKind::class_index_i64;
        Inputs in = make_inputs(s, 600 + std::uint64_t(i++));
        const std::int64_t C = s.classes;
        auto row = [&](std::int64_t r) { return in.logits.data() + r * C; };
        const double huge = dtype == DType::f32 ? 3e38 : 1e38;
        // 0: huge positive and negative logits with the target among the huge ones.
        for (std::int64_t c = 0; c < C; c += 2) row(0)[c] = c % 4 == 0 ? huge : -huge;
        in.targets[0] = 0;
        // 1: +-1e30, target near the top.
        for (std::int64_t c = 0; c < C; ++c) row(1)[c] = (c % 3 ? 1e30 : -1e30) + 1e24 * double(c % 5);
        in.targets[1] = 1;
        // 2: a -inf mask over half the classes, the target unmasked.
        for (std::int64_t c = 1; c < C; c += 2) row(2)[c] = -kInf;
        in.targets[2] = 0;
        // 3: the target masked: loss +inf, gradient finite.
        row(3)[C / 2] = -kInf;
        in.targets[3] = C / 2;
        // 4: every class -inf: lse -inf, loss +inf.
        for (std::int64_t c = 0; c < C; ++c) row(4)[c] = -kInf;
        // 5: a +inf logit: the row is NaN (as PyTorch), its neighbours are not.
        row(5)[C - 1] = kInf;
        // 6: a NaN logit.
        row(6)[0] = kNaN;
        // 7: every class -inf and the row ignored: loss 0, gradient 0.
        for (std::int64_t c = 0; c < C; ++c) row(7)[c] = -kInf;
        in.targets[7] = s.ignore_index;
        for (Pass pass : {Pass::forward_backward, Pass::backward}) {
          s.pass = pass;
          run_case(s, in);
        }
      }
  }
}

// Mean over rows that are all ignored is 0 with a 0 gradient; class weights of zero make the
// denominator 0 too; sum over no rows is 0.
TEST(CudaCrossEntropy, NothingToAverage) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (RowAlgorithm path : kPaths) {
    const ForcedRowPath forced(path);
    Case s;
    s.rows = 33;
    s.classes = 40;
    s.smoothing = 0.1f;
    Inputs in = make_inputs(s, 700);
    for (std::int64_t& t : in.targets) t = s.ignore_index;
    run_case(s, in);
    s.weights = true;
    in = make_inputs(s, 701);
    for (std::int64_t& t : in.targets) t = 1;  // weight 0
    run_case(s, in);
  }
  for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
    const DeviceMatrix loss = poisoned_matrix(1, 1, DType::f32);
    CrossEntropyArgs args;
    args.rows = 0;
    args.classes = 10;
    args.loss = static_cast<float*>(loss.data());
    CrossEntropyOptions options;
    options.reduction = reduction;
    ASSERT_TRUE(cross_entropy_forward(args, options, cuda_exec()).ok());
    synchronize_or_fail();
    EXPECT_EQ(loss.download()[0], 0.0);
  }
}

// A target outside [0, classes) that is not ignore_index: that row's loss and gradient are NaN
// (under mean, everything: the denominator is NaN), nothing is read at the bad index (ASan in the
// simulator build), and take_device_error reports it once.
TEST(CudaCrossEntropy, OutOfRangeTargetsAreReported) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  ASSERT_TRUE(take_device_error(cuda_exec()).ok());
  for (RowAlgorithm path : kPaths) {
    const ForcedRowPath forced(path);
    for (Reduction reduction : {Reduction::none, Reduction::sum, Reduction::mean})
      for (std::int64_t bad : {std::int64_t{40}, std::int64_t{-1}, std::int64_t{1} << 40}) {
        Case s;
        s.rows = 9;
        s.classes = 40;
        s.reduction = reduction;
        s.weights = true;
        Inputs in = make_inputs(s, 800);
        in.targets[4] = bad;
        run_case(s, in);
        const Status error = take_device_error(cuda_exec());
        EXPECT_EQ(error.code(), StatusCode::out_of_range) << error.message();
        EXPECT_EQ(error.argument(), "targets");
        EXPECT_NE(error.message().find("row 4"), std::string::npos) << error.message();
        EXPECT_TRUE(take_device_error(cuda_exec()).ok()) << "the record was not cleared";
      }
    // Backward reports too.
    Case s;
    s.pass = Pass::backward;
    s.rows = 3;
    s.classes = 40;
    Inputs in = make_inputs(s, 801);
    in.targets[1] = 40;
    run_case(s, in);
    EXPECT_EQ(take_device_error(cuda_exec()).code(), StatusCode::out_of_range);
  }
  // A caller-provided record.
  DeviceBuffer record(sizeof(DeviceError));
  record.fill_bytes(0);
  Exec exec = cuda_exec();
  exec.device_error = record.as<DeviceError>();
  Case s;
  s.rows = 3;
  s.classes = 5;
  Inputs in = make_inputs(s, 802);
  in.targets[2] = 5;
  const DeviceBuffer targets = upload_vector(in.targets);
  const DeviceMatrix logits = upload_matrix(in.logits, 3, 5, DType::f32);
  const DeviceMatrix loss = poisoned_matrix(1, 1, DType::f32);
  CrossEntropyArgs args;
  args.rows = 3;
  args.classes = 5;
  args.logits = logits.data();
  args.targets = targets.get();
  args.loss = static_cast<float*>(loss.data());
  ASSERT_TRUE(cross_entropy_forward(args, CrossEntropyOptions{}, exec).ok());
  const Status error = take_device_error(exec);
  EXPECT_EQ(error.code(), StatusCode::out_of_range);
  EXPECT_NE(error.message().find("row 2"), std::string::npos) << error.message();
  EXPECT_TRUE(std::isnan(loss.download()[0]));
  EXPECT_TRUE(take_device_error(cuda_exec()).ok()) << "the library's own record was written";
}

// Sum and mean depend only on the shape and the device: repeated calls, misaligned and strided
// copies of the same data, and an in-place call give the same bits.
TEST(CudaCrossEntropy, ReducedLossIsBitwiseReproducible) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t kClasses[] = {20, 500, 3000, 3000};
  for (int p = 0; p < 4; ++p) {
    const ForcedRowPath forced(kPaths[p]);
    for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
      Case s;
      s.rows = p == 0 ? 257 : 33;
      s.classes = kClasses[p];
      s.reduction = reduction;
      s.smoothing = 0.1f;
      s.weights = true;
      const Inputs in = make_inputs(s, 900);
      const std::uint32_t first = run_case(s, in).loss_bits;
      EXPECT_EQ(run_case(s, in).loss_bits, first) << "repeated call";
      s.offset = 1;
      EXPECT_EQ(run_case(s, in).loss_bits, first) << "misaligned copy";
      s.offset = 0;
      s.logits_pad = 3;
      s.in_place = true;
      EXPECT_EQ(run_case(s, in).loss_bits, first) << "strided in-place copy";
      s.pass = Pass::forward;
      s.in_place = false;
      EXPECT_EQ(run_case(s, in).loss_bits, first) << "forward only";
    }
  }
}

// Few blocks for many rows: every path walks its grid-stride loop over row tiles.
TEST(CudaCrossEntropy, GridStrideLoops) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t kClasses[] = {5, 100, 1500, 1500};
  for (int p = 0; p < 4; ++p)
    for (std::int64_t blocks : {1, 3}) {
      const ForcedRowPath forced(kPaths[p], blocks);
      Case s;
      s.rows = p == 0 ? 257 : 17;
      s.classes = kClasses[p];
      s.reduction = blocks == 1 ? Reduction::mean : Reduction::none;
      s.weights = true;
      s.smoothing = 0.05f;
      run_case(s, make_inputs(s, 1000 + std::uint64_t(blocks)));
    }
}

// Vocabulary-sized single rows (Llama 3's 128256, Gemma's 262144), which only block_two_pass
// holds, and a few rows past the on-chip limits.
TEST(CudaCrossEntropy, LongRows) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  int i = 0;
  for (std::int64_t classes : {128256, 262144})
    for (DType dtype : {DType::f32, DType::bf16}) {
      Case s;
      s.rows = 1;
      s.classes = classes;
      s.logits = dtype;
      s.grad = dtype;
      s.reduction = Reduction::sum;
      s.smoothing = i % 2 ? 0.1f : 0.0f;
      s.z_loss = 1e-4f;
      Inputs in = make_inputs(s, 1100 + std::uint64_t(i++));
      in.targets[0] = classes - 1;
      run_case(s, in);
    }
  for (DType dtype : {DType::f32, DType::bf16}) {
    Case s;
    s.rows = 2;
    s.logits = dtype;
    s.classes = detail::row_algorithm_max_classes(RowOp::cross_entropy,
                                                  RowAlgorithm::block_on_chip, dtype) + 1;
    run_case(s, make_inputs(s, 1200 + std::uint64_t(i++)));
  }
}

// The automatic choice is the first path that holds the row, and a forced path that cannot hold
// it falls back to the automatic one instead of failing.
TEST(CudaCrossEntropy, DispatchChoice) {
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    const auto max = [&](RowAlgorithm a) {
      return detail::row_algorithm_max_classes(RowOp::cross_entropy, a, dtype);
    };
    EXPECT_LT(max(RowAlgorithm::rows_per_warp), max(RowAlgorithm::warp_per_row));
    EXPECT_LT(max(RowAlgorithm::warp_per_row), max(RowAlgorithm::block_on_chip));
    EXPECT_LT(max(RowAlgorithm::block_on_chip), max(RowAlgorithm::block_two_pass));
    EXPECT_EQ(max(RowAlgorithm::block_two_pass), 2147483647);
    for (RowAlgorithm path : {RowAlgorithm::rows_per_warp, RowAlgorithm::warp_per_row,
                              RowAlgorithm::block_on_chip}) {
      EXPECT_EQ(detail::automatic_row_algorithm(RowOp::cross_entropy, max(path), dtype), path);
      EXPECT_NE(detail::automatic_row_algorithm(RowOp::cross_entropy, max(path) + 1, dtype), path);
    }
  }
  EXPECT_EQ(detail::automatic_row_algorithm(RowOp::cross_entropy, 128256, DType::bf16),
            RowAlgorithm::block_two_pass);
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const ForcedRowPath forced(RowAlgorithm::rows_per_warp);
  Case s;
  s.rows = 3;
  s.classes = 1000;  // beyond rows_per_warp: runs warp_per_row
  run_case(s, make_inputs(s, 1300));
}

}  // namespace
}  // namespace actloss::test
