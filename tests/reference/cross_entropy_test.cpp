// Checks of the reference cross-entropy against hand-worked values, closed
// forms, finite differences and documented edge-case conventions. Values from
// the mpmath fixtures are checked in fixtures_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fixtures/test_support.h"
#include "host/reference/reference.h"

namespace actloss::ref {
namespace {

using testing::central_difference;
using testing::kEps;
using testing::kInf;
using testing::kNaN;
using testing::Near;

CrossEntropyProblem hard(int64_t rows, int64_t classes, std::vector<double> logits,
                         std::vector<int64_t> targets, Reduction reduction = Reduction::mean) {
  CrossEntropyProblem p;
  p.rows = rows;
  p.classes = classes;
  p.logits = std::move(logits);
  p.target_index = std::move(targets);
  p.reduction = reduction;
  return p;
}

CrossEntropyProblem soft(int64_t rows, int64_t classes, std::vector<double> logits,
                         std::vector<double> probs, Reduction reduction = Reduction::mean) {
  CrossEntropyProblem p;
  p.rows = rows;
  p.classes = classes;
  p.logits = std::move(logits);
  p.soft_targets = true;
  p.target_prob = std::move(probs);
  p.reduction = reduction;
  return p;
}

// The scalar whose gradient `grad` is: the upstream-weighted reduced loss,
// times grad_scale.
double objective(const CrossEntropyProblem& p, const std::vector<double>& logits) {
  CrossEntropyProblem q = p;
  q.logits = logits;
  const CrossEntropyResult r = cross_entropy(q);
  if (p.reduction == Reduction::none) {
    double j = 0;
    for (int64_t i = 0; i < p.rows; ++i) {
      const double up = p.upstream.empty() ? 1.0 : p.upstream[static_cast<std::size_t>(i)];
      j += up * r.row_loss[static_cast<std::size_t>(i)];
    }
    return j * p.grad_scale;
  }
  const double up = p.upstream.empty() ? 1.0 : p.upstream[0];
  return up * r.loss * p.grad_scale;
}

TEST(ReferenceCrossEntropy, HandWorkedThreeClasses) {
  // exp(logits) = {1, 2, 3}, sum 6: lse = log 6, p = {1/6, 1/3, 1/2}.
  // Target 2: loss = log 6 - log 3 = log 2; grad = p - onehot = {1/6, 1/3, -1/2}.
  const auto r = cross_entropy(hard(1, 3, {0.0, std::log(2.0), std::log(3.0)}, {2}));
  // Inputs log 2, log 3 carry one rounding each; a few ulp of slack.
  EXPECT_TRUE(Near(r.lse[0], std::log(6.0), 8 * kEps));
  EXPECT_TRUE(Near(r.loss, std::log(2.0), 8 * kEps));
  EXPECT_TRUE(Near(r.row_loss[0], std::log(2.0), 8 * kEps));
  EXPECT_EQ(r.weight_sum, 1.0);
  EXPECT_TRUE(Near(r.grad[0], 1.0 / 6, 8 * kEps));
  EXPECT_TRUE(Near(r.grad[1], 1.0 / 3, 8 * kEps));
  EXPECT_TRUE(Near(r.grad[2], -0.5, 8 * kEps));
}

TEST(ReferenceCrossEntropy, HandWorkedWeightedMean) {
  // Row 0: logits {0, 0}, target 0 (w = 2): nll = log 2, p = {1/2, 1/2}.
  // Row 1: logits {0, log 3}, target 1 (w = 5): p = {1/4, 3/4}, nll = log(4/3).
  // mean = (2 log 2 + 5 log(4/3)) / (2 + 5).
  // grad row 0 = (p - onehot) * 2/7 = {-1/7, 1/7};
  // grad row 1 = (p - onehot) * 5/7 = {5/28, -5/28}.
  auto p = hard(2, 2, {0.0, 0.0, 0.0, std::log(3.0)}, {0, 1});
  p.class_weight = {2.0, 5.0};
  const auto r = cross_entropy(p);
  EXPECT_EQ(r.weight_sum, 7.0);
  EXPECT_TRUE(Near(r.row_loss[0], 2 * std::log(2.0), 8 * kEps));
  EXPECT_TRUE(Near(r.row_loss[1], 5 * std::log(4.0 / 3), 16 * kEps));
  EXPECT_TRUE(Near(r.loss, (2 * std::log(2.0) + 5 * std::log(4.0 / 3)) / 7, 16 * kEps));
  EXPECT_TRUE(Near(r.grad[0], -1.0 / 7, 8 * kEps));
  EXPECT_TRUE(Near(r.grad[1], 1.0 / 7, 8 * kEps));
  EXPECT_TRUE(Near(r.grad[2], 5.0 / 28, 8 * kEps));
  EXPECT_TRUE(Near(r.grad[3], -5.0 / 28, 8 * kEps));
}

TEST(ReferenceCrossEntropy, UniformLogitsGiveLogC) {
  // All logits equal: p = 1/C, so loss = log C whatever the target, and
  // grad = 1/C - onehot. C = 1 gives exactly 0.
  for (int64_t C : {1, 2, 3, 7, 1000, 262144}) {
    SCOPED_TRACE("C = " + std::to_string(C));
    const int64_t target = C / 2;
    const auto r = cross_entropy(hard(1, C, std::vector<double>(static_cast<std::size_t>(C), 0.37),
                                      {target}));
    // sum of C ones is exact, so only log and the final subtractions round.
    EXPECT_TRUE(Near(r.loss, std::log(static_cast<double>(C)), 4 * kEps * (1 + std::log(C))));
    EXPECT_TRUE(Near(r.lse[0], 0.37 + std::log(static_cast<double>(C)), 4 * kEps * 14));
    const double invC = 1.0 / static_cast<double>(C);
    for (int64_t c : {int64_t{0}, target, C - 1}) {
      const double want = invC - (c == target ? 1.0 : 0.0);
      EXPECT_TRUE(Near(r.grad[static_cast<std::size_t>(c)], want, 4 * kEps));
    }
  }
}

TEST(ReferenceCrossEntropy, UniformLogitsWithSmoothingStillGiveLogC) {
  // Every (lse - x'_c) equals log C and the a_c sum to 1 (unit weights), so
  // the smoothed loss is still log C. a_y = 0.7 + 0.3/5 = 0.76, others 0.06;
  // grad = p - a = {0.2 - 0.06, ..., 0.2 - 0.76, ...}.
  auto p = hard(1, 5, std::vector<double>(5, -2.5), {3});
  p.label_smoothing = 0.3;
  const auto r = cross_entropy(p);
  EXPECT_TRUE(Near(r.loss, std::log(5.0), 8 * kEps));
  for (int c = 0; c < 5; ++c) {
    EXPECT_TRUE(Near(r.grad[static_cast<std::size_t>(c)], c == 3 ? 0.2 - 0.76 : 0.2 - 0.06, 8 * kEps));
  }
}

TEST(ReferenceCrossEntropy, DominantLogitGivesNearZeroLossAndPMinusOneHot) {
  // logits {40, 0, 0, 0}, target 0: loss = log(1 + 3 e^-40) = 3 e^-40 (1 - O(e^-40)),
  // p_0 - 1 = -3 e^-40 / (1 + 3 e^-40), p_c = e^-40 / (1 + 3 e^-40).
  const auto r = cross_entropy(hard(1, 4, {40.0, 0.0, 0.0, 0.0}, {0}));
  const double t = std::exp(-40.0);
  // The loss is formed as -(x_0 - m) + log1p(rest) = 0 + log1p(3t), so it
  // keeps full relative accuracy although it is ~1e-17 (log(1 + 3t) would
  // round 1 + 3t and keep no digits). The O(t^2) terms are below an ulp.
  EXPECT_TRUE(Near(r.loss, 3 * t, 4 * kEps * 3 * t));
  // p_0 - 1 = exp(-log1p(3t)) - 1 is formed by cancellation against 1, so
  // it is only good to an ulp of 1.
  EXPECT_TRUE(Near(r.grad[0], -3 * t, 2 * kEps));
  for (int c = 1; c < 4; ++c) EXPECT_TRUE(Near(r.grad[static_cast<std::size_t>(c)], t, 4 * kEps * t));
}

TEST(ReferenceCrossEntropy, IgnoredRowsCountNowhereEvenWithSmoothing) {
  // Rows 1 and 3 are ignored; the result must equal the problem without them.
  const std::vector<double> logits = {0.1, 2.0, -1.0,  50.0, -50.0, 3.0,
                                      1.5, 0.2, 0.3,   -7.0, 8.0,   9.0};
  auto full = hard(4, 3, logits, {1, -100, 2, -100});
  full.label_smoothing = 0.2;
  full.z_loss = 1e-3;
  full.class_weight = {0.5, 2.0, 1.25};
  auto kept = hard(2, 3, {0.1, 2.0, -1.0, 1.5, 0.2, 0.3}, {1, 2});
  kept.label_smoothing = full.label_smoothing;
  kept.z_loss = full.z_loss;
  kept.class_weight = full.class_weight;
  for (Reduction red : {Reduction::mean, Reduction::sum}) {
    full.reduction = kept.reduction = red;
    const auto a = cross_entropy(full);
    const auto b = cross_entropy(kept);
    // Same arithmetic plus exact zeros: bit-identical.
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_EQ(a.weight_sum, b.weight_sum);
    EXPECT_EQ(a.weight_sum, 2.0 + 1.25);
    EXPECT_EQ(a.row_loss[1], 0.0);
    EXPECT_EQ(a.row_loss[3], 0.0);
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(a.grad[static_cast<std::size_t>(0 + c)], b.grad[static_cast<std::size_t>(c)]);
      EXPECT_EQ(a.grad[static_cast<std::size_t>(6 + c)], b.grad[static_cast<std::size_t>(3 + c)]);
      EXPECT_EQ(a.grad[static_cast<std::size_t>(3 + c)], 0.0);
      EXPECT_EQ(a.grad[static_cast<std::size_t>(9 + c)], 0.0);
    }
  }
}

TEST(ReferenceCrossEntropy, WeightedMeanDividesBySummedWeightOfNonIgnoredRows) {
  // Uniform logits over C = 4: every (lse - x'_c) = log 4.
  // Without smoothing row_loss_i = w_{y_i} log 4, so mean = log 4 exactly
  // whatever the weights; weight_sum = w_1 + w_3 + w_0 = 2 + 0.25 + 0.5.
  const std::vector<double> w = {0.5, 2.0, 4.0, 0.25};
  auto p = hard(4, 4, std::vector<double>(16, 1.0), {1, 3, 7, 0});
  p.ignore_index = 7;
  p.class_weight = w;
  auto r = cross_entropy(p);
  EXPECT_EQ(r.weight_sum, 2.75);
  EXPECT_TRUE(Near(r.loss, std::log(4.0), 8 * kEps));
  // With smoothing eps: row_loss_i = [(1 - eps) w_y + eps * mean(w)] log 4,
  // mean(w) = 6.75 / 4, so the mean is log 4 * [(1 - eps) 2.75 + 3 eps 6.75/4] / 2.75.
  p.label_smoothing = 0.1;
  r = cross_entropy(p);
  EXPECT_EQ(r.weight_sum, 2.75);
  EXPECT_TRUE(Near(r.loss, std::log(4.0) * (0.9 * 2.75 + 3 * 0.1 * 6.75 / 4) / 2.75, 16 * kEps));
}

TEST(ReferenceCrossEntropy, SoftOneHotTargetsEqualHardTargets) {
  const std::vector<double> logits = {0.3, -1.0, 2.0, 0.5, 1.5, 1.5, -3.0, 0.0};
  const std::vector<int64_t> targets = {2, 0};
  const std::vector<double> onehot = {0, 0, 1, 0, 1, 0, 0, 0};
  // Weights and smoothing: identical coefficients a_c, so identical row
  // losses and gradients under none and sum. (Mean differs by design:
  // hard divides by sum w_y, soft by rows, as in PyTorch.)
  for (Reduction red : {Reduction::none, Reduction::sum}) {
    auto h = hard(2, 4, logits, targets, red);
    auto s = soft(2, 4, logits, onehot, red);
    h.class_weight = s.class_weight = {1.5, 0.5, 2.0, 1.0};
    h.label_smoothing = s.label_smoothing = 0.15;
    h.z_loss = s.z_loss = 1e-2;
    const auto a = cross_entropy(h);
    const auto b = cross_entropy(s);
    // a_c agree to an ulp ((1-eps) w + eps/C w vs w ((1-eps) + eps/C)).
    EXPECT_TRUE(Near(a.loss, b.loss, 16 * kEps * std::fabs(a.loss)));
    for (std::size_t k = 0; k < a.grad.size(); ++k) EXPECT_TRUE(Near(a.grad[k], b.grad[k], 16 * kEps));
  }
  // Unweighted mean: both denominators are rows.
  const auto a = cross_entropy(hard(2, 4, logits, targets));
  const auto b = cross_entropy(soft(2, 4, logits, onehot));
  EXPECT_EQ(a.weight_sum, b.weight_sum);
  EXPECT_TRUE(Near(a.loss, b.loss, 4 * kEps * std::fabs(a.loss)));
  for (std::size_t k = 0; k < a.grad.size(); ++k) EXPECT_TRUE(Near(a.grad[k], b.grad[k], 4 * kEps));
}

TEST(ReferenceCrossEntropy, SoftTargetMeanDividesByRowsNotWeights) {
  // PyTorch's rule for probability targets: the mean divides by the number
  // of rows even with class weights. Uniform logits over 4 classes, all mass
  // on class 1 (w = 2): row_loss = 2 log 4 each, so mean = 2 log 4 (the
  // weighted-hard rule would give log 4). grad = 2 (p - q) / rows.
  auto p = soft(3, 4, std::vector<double>(12, 0.5),
                {0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0});
  p.class_weight = {1.0, 2.0, 3.0, 4.0};
  const auto r = cross_entropy(p);
  EXPECT_EQ(r.weight_sum, 3.0);
  EXPECT_TRUE(Near(r.loss, 2 * std::log(4.0), 8 * kEps));
  EXPECT_TRUE(Near(r.grad[0], 2 * 0.25 / 3, 8 * kEps));
  EXPECT_TRUE(Near(r.grad[1], 2 * (0.25 - 1) / 3, 8 * kEps));
}

TEST(ReferenceCrossEntropy, AllRowsIgnoredMeanIsZeroWithZeroGradient) {
  // Documented choice: 0, not PyTorch's NaN (0 / 0). The ignored rows may
  // hold anything, including -inf and huge logits.
  auto p = hard(3, 2, {1.0, 2.0, 3.0, -4.0, 5e30, -kInf}, {-100, -100, -100});
  p.label_smoothing = 0.1;
  p.z_loss = 1e-3;
  auto r = cross_entropy(p);
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(r.weight_sum, 0.0);
  for (double g : r.grad) EXPECT_EQ(g, 0.0);
  for (double l : r.row_loss) EXPECT_EQ(l, 0.0);
  for (double g : cross_entropy_backward(p, r.max, r.log_sum)) EXPECT_EQ(g, 0.0);
  p.reduction = Reduction::sum;
  r = cross_entropy(p);
  EXPECT_EQ(r.loss, 0.0);
  for (double g : r.grad) EXPECT_EQ(g, 0.0);
}

TEST(ReferenceCrossEntropy, MeanWithZeroWeightSumIsZero) {
  // The same rule covers non-ignored rows whose class weights are all zero.
  auto p = hard(2, 3, {1.0, 2.0, 3.0, 0.0, 0.0, 0.0}, {0, 0});
  p.class_weight = {0.0, 1.0, 1.0};
  p.z_loss = 1e-2;  // would make the sum non-zero
  const auto r = cross_entropy(p);
  EXPECT_EQ(r.weight_sum, 0.0);
  EXPECT_EQ(r.loss, 0.0);
  for (double g : r.grad) EXPECT_EQ(g, 0.0);
}

TEST(ReferenceCrossEntropy, ZLossAddsZTimesLseSquared) {
  const std::vector<double> logits = {2.0, -1.0, 0.5, 3.5, 7.0, -2.0};
  auto p = hard(2, 3, logits, {0, 2}, Reduction::none);
  const auto base = cross_entropy(p);
  p.z_loss = 0.25;
  const auto with_z = cross_entropy(p);
  for (std::size_t i = 0; i < 2; ++i) {
    const double lse = base.lse[i];
    EXPECT_EQ(with_z.lse[i], lse);
    // One extra product and sum: a few ulp of the larger term.
    EXPECT_TRUE(Near(with_z.row_loss[i] - base.row_loss[i], 0.25 * lse * lse,
                     8 * kEps * (with_z.row_loss[i] + base.row_loss[i])));
    // d(z lse^2)/dx_c = 2 z lse p_c.
    for (std::size_t c = 0; c < 3; ++c) {
      const double prob = std::exp(logits[3 * i + c] - lse);
      EXPECT_TRUE(Near(with_z.grad[3 * i + c] - base.grad[3 * i + c], 2 * 0.25 * lse * prob,
                       16 * kEps * (1 + std::fabs(lse))));
    }
  }
}

TEST(ReferenceCrossEntropy, SoftcapWithHugeCapEqualsNoSoftcap) {
  // c tanh(x / c) = x - x^3 / (3 c^2) + ...: with c = 1e8 and |x| <= 4 the
  // change is below 2e-15 absolute, and the chain factor differs from 1 by
  // (x/c)^2 < 2e-15.
  const std::vector<double> logits = {1.0, -4.0, 3.0, 0.25, 2.0, -0.5};
  auto p = hard(2, 3, logits, {1, 0}, Reduction::sum);
  p.label_smoothing = 0.1;
  const auto off = cross_entropy(p);
  p.softcap = 1e8;
  const auto on = cross_entropy(p);
  EXPECT_TRUE(Near(on.loss, off.loss, 1e-14));
  for (std::size_t k = 0; k < 6; ++k) EXPECT_TRUE(Near(on.grad[k], off.grad[k], 1e-14));
}

TEST(ReferenceCrossEntropy, SoftcapBoundsLogits) {
  // With c = 10: x' = {10, -10, 10 tanh(0.5), -10, 10}: the +-1e30 and
  // +-3e38 logits saturate, lse = log(2 e^10 + 2 e^-10 + e^(10 tanh 0.5)),
  // and their gradients vanish exactly (sech^2 underflows to 0).
  auto p = hard(1, 5, {1e30, -1e30, 5.0, -3e38, 3e38}, {2});
  p.softcap = 10;
  const auto r = cross_entropy(p);
  const double mid = 10 * std::tanh(0.5);
  const double lse = std::log(2 * std::exp(10.0) + 2 * std::exp(-10.0) + std::exp(mid));
  EXPECT_LT(r.lse[0], 10 + std::log(5.0));
  EXPECT_TRUE(Near(r.lse[0], lse, 32 * kEps * lse));
  EXPECT_TRUE(Near(r.loss, lse - mid, 32 * kEps * lse));
  EXPECT_EQ(r.grad[0], 0.0);
  EXPECT_EQ(r.grad[1], 0.0);
  EXPECT_EQ(r.grad[3], 0.0);
  EXPECT_EQ(r.grad[4], 0.0);
  // Target class: (p - 1) * sech^2(0.5).
  const double sech2 = 1 / (std::cosh(0.5) * std::cosh(0.5));
  EXPECT_TRUE(Near(r.grad[2], (std::exp(mid - lse) - 1) * sech2, 32 * kEps));
}

TEST(ReferenceCrossEntropy, MaskedClassHasZeroProbabilityAndExactGradient) {
  // x = -inf: p = 0 exactly, so the gradient there is exactly -a_c.
  const std::vector<double> logits = {-kInf, 1.0, 2.0, -kInf};
  auto p = hard(1, 4, logits, {1}, Reduction::sum);
  auto r = cross_entropy(p);
  EXPECT_TRUE(std::isfinite(r.loss));
  // log(e + e^2) - 1 = log(1 + e)
  EXPECT_TRUE(Near(r.loss, std::log1p(std::exp(1.0)), 4 * kEps));
  EXPECT_EQ(r.grad[0], 0.0);
  EXPECT_EQ(r.grad[3], 0.0);
  // Smoothing puts a_c = eps / C > 0 on the masked classes: true loss +inf,
  // never NaN, and gradient exactly -eps / C there.
  p.label_smoothing = 0.1;
  r = cross_entropy(p);
  EXPECT_EQ(r.loss, kInf);
  EXPECT_EQ(r.grad[0], -(0.1 / 4));
  EXPECT_EQ(r.grad[3], -(0.1 / 4));
  EXPECT_TRUE(std::isfinite(r.grad[1]) && std::isfinite(r.grad[2]));
  // Target on a masked class: +inf, gradient -1 there.
  p = hard(1, 4, logits, {0}, Reduction::sum);
  r = cross_entropy(p);
  EXPECT_EQ(r.loss, kInf);
  EXPECT_EQ(r.grad[0], -1.0);
  // Soft target with zero probability on the masked class: finite.
  auto s = soft(1, 4, logits, {0.0, 0.5, 0.5, 0.0}, Reduction::sum);
  const auto rs = cross_entropy(s);
  EXPECT_TRUE(std::isfinite(rs.loss));
  EXPECT_EQ(rs.grad[0], 0.0);
}

TEST(ReferenceCrossEntropy, HugeLogitsGiveFiniteExactAnswers) {
  struct Case {
    std::vector<double> logits;
    int64_t target;
    double loss;
  };
  // Exact answers (the omitted terms are below e^-1e30):
  const std::vector<Case> cases = {
      {{3e38, -3e38}, 1, 6e38},          // lse = 3e38, loss = 3e38 - (-3e38)
      {{3e38, -3e38}, 0, 0.0},           // dominant target
      {{3e38, 3e38}, 1, std::log(2.0)},  // tie at the top: log 2 must survive
      {{-3e38, -3e38, -3e38}, 0, std::log(3.0)},
      {{1e30, -1e30, 0.0}, 2, 1e30},
      {{1e30, -1e30, 0.0}, 1, 2e30},
  };
  for (const auto& c : cases) {
    const int64_t C = static_cast<int64_t>(c.logits.size());
    const auto r = cross_entropy(hard(1, C, c.logits, {c.target}, Reduction::sum));
    EXPECT_TRUE(Near(r.loss, c.loss, 4 * kEps * c.loss)) << "target " << c.target;
    for (double g : r.grad) EXPECT_TRUE(std::isfinite(g));
  }
  // Tie at 3e38: p = {1/2, 1/2}.
  const auto r = cross_entropy(hard(1, 2, {3e38, 3e38}, {1}, Reduction::sum));
  EXPECT_EQ(r.grad[0], 0.5);
  EXPECT_EQ(r.grad[1], -0.5);
}

TEST(ReferenceCrossEntropy, AllMinusInfRowFollowsSoftmaxConvention) {
  // lse = -inf; every class has p = 0 and log p = -inf, so loss = +inf for
  // any a_c > 0 (never NaN) and the gradient is exactly -a.
  auto p = hard(2, 3, {-kInf, -kInf, -kInf, 0.0, 0.0, 0.0}, {1, 0}, Reduction::none);
  p.z_loss = 1e-3;  // must not turn into NaN via 0 * inf
  auto r = cross_entropy(p);
  EXPECT_EQ(r.lse[0], -kInf);
  EXPECT_EQ(r.row_loss[0], kInf);
  EXPECT_EQ(r.grad[0], 0.0);
  EXPECT_EQ(r.grad[1], -1.0);
  EXPECT_EQ(r.grad[2], 0.0);
  const auto g = cross_entropy_backward(p, r.max, r.log_sum);
  for (std::size_t k = 0; k < 3; ++k) EXPECT_EQ(g[k], r.grad[k]);
  // Without z-loss the z term is absent, not 0 * inf.
  p.z_loss = 0;
  r = cross_entropy(p);
  EXPECT_EQ(r.row_loss[0], kInf);
  EXPECT_EQ(r.grad[1], -1.0);
  // Ignored: nothing at all.
  p.target_index = {-100, 0};
  r = cross_entropy(p);
  EXPECT_EQ(r.row_loss[0], 0.0);
  EXPECT_TRUE(std::isfinite(r.loss));
}

TEST(ReferenceCrossEntropy, NanInGivesNanOut) {
  auto p = hard(2, 3, {0.0, kNaN, 1.0, 0.5, 1.5, -0.5}, {0, 2}, Reduction::none);
  auto r = cross_entropy(p);
  EXPECT_TRUE(std::isnan(r.lse[0]));
  EXPECT_TRUE(std::isnan(r.row_loss[0]));
  for (std::size_t c = 0; c < 3; ++c) EXPECT_TRUE(std::isnan(r.grad[c]));
  EXPECT_TRUE(std::isfinite(r.row_loss[1]));  // rows are independent
  for (std::size_t c = 3; c < 6; ++c) EXPECT_TRUE(std::isfinite(r.grad[c]));
  EXPECT_TRUE(std::isnan(cross_entropy_backward(p, r.max, r.log_sum)[0]));
  p.reduction = Reduction::mean;
  EXPECT_TRUE(std::isnan(cross_entropy(p).loss));
  // A NaN among -inf logits: no mass, and NaN all the same, backward too.
  p.logits = {-kInf, kNaN, -kInf, 0.0, 0.0, 0.0};
  r = cross_entropy(p);
  EXPECT_TRUE(std::isnan(r.lse[0]));
  const std::vector<double> back = cross_entropy_backward(p, r.max, r.log_sum);
  for (std::size_t c = 0; c < 3; ++c) EXPECT_TRUE(std::isnan(back[c])) << c;
  // An all-NaN row must not pass for an all -inf row.
  p.logits = {kNaN, kNaN, kNaN, 0.0, 0.0, 0.0};
  r = cross_entropy(p);
  EXPECT_TRUE(std::isnan(r.lse[0]));
  EXPECT_TRUE(std::isnan(r.loss));
  // NaN with softcap, and a NaN soft target.
  p.softcap = 5;
  EXPECT_TRUE(std::isnan(cross_entropy(p).loss));
  auto s = soft(1, 2, {0.0, 1.0}, {kNaN, 0.5});
  EXPECT_TRUE(std::isnan(cross_entropy(s).loss));
  // NaN class weight on the target.
  auto w = hard(1, 2, {0.0, 1.0}, {1});
  w.class_weight = {1.0, kNaN};
  EXPECT_TRUE(std::isnan(cross_entropy(w).loss));
}

TEST(ReferenceCrossEntropy, PlusInfLogitGivesNanAsPyTorch) {
  const auto r = cross_entropy(hard(1, 3, {kInf, 0.0, 1.0}, {0}, Reduction::sum));
  EXPECT_TRUE(std::isnan(r.lse[0]));
  EXPECT_TRUE(std::isnan(r.loss));
}

TEST(ReferenceCrossEntropy, ZeroRows) {
  for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean}) {
    const auto r = cross_entropy(hard(0, 5, {}, {}, red));
    EXPECT_TRUE(r.row_loss.empty());
    EXPECT_TRUE(r.lse.empty());
    EXPECT_TRUE(r.grad.empty());
    EXPECT_EQ(r.loss, 0.0);
    EXPECT_EQ(r.weight_sum, 0.0);
    const auto s = cross_entropy(soft(0, 5, {}, {}, red));
    EXPECT_EQ(s.loss, 0.0);
    EXPECT_TRUE(cross_entropy_backward(hard(0, 5, {}, {}, red), {}, {}).empty());
  }
}

TEST(ReferenceCrossEntropy, SingleClassHasZeroLossAndGradient) {
  // C = 1: p = 1, lse = x, every (lse - x') = 0.
  auto p = hard(3, 1, {-3.0, 0.0, 1e30}, {0, 0, 0});
  p.label_smoothing = 0.2;
  const auto r = cross_entropy(p);
  EXPECT_EQ(r.loss, 0.0);
  for (double g : r.grad) EXPECT_EQ(g, 0.0);
  EXPECT_EQ(r.lse[0], -3.0);
  EXPECT_EQ(r.lse[2], 1e30);
}

TEST(ReferenceCrossEntropy, OutOfRangeTargetGivesNanRowWithoutReading) {
  // Caller's bug, made loud; must not read class_weight[5] or [-7].
  auto p = hard(3, 3, {0, 1, 2, 0, 1, 2, 0, 1, 2}, {5, -7, 1}, Reduction::none);
  p.class_weight = {1.0, 2.0, 3.0};
  auto r = cross_entropy(p);
  EXPECT_TRUE(std::isnan(r.row_loss[0]));
  EXPECT_TRUE(std::isnan(r.row_loss[1]));
  EXPECT_TRUE(std::isfinite(r.row_loss[2]));
  EXPECT_TRUE(std::isnan(r.grad[0]));
  EXPECT_TRUE(std::isfinite(r.grad[6]));
  EXPECT_TRUE(std::isnan(r.weight_sum));
  p.reduction = Reduction::mean;
  r = cross_entropy(p);
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(std::isnan(cross_entropy_backward(p, r.max, r.log_sum)[0]));
}

TEST(ReferenceCrossEntropy, ReductionsUpstreamAndGradScale) {
  const std::vector<double> logits = {0.5, -1.0, 2.0, 1.0, 1.0, -3.0, 0.0, 4.0, 2.0};
  auto p = hard(3, 3, logits, {2, 0, -100}, Reduction::none);
  p.class_weight = {2.0, 1.0, 0.5};
  const auto none = cross_entropy(p);
  // none: loss is the informational sum; the gradient is per row.
  EXPECT_EQ(none.loss, none.row_loss[0] + none.row_loss[1] + none.row_loss[2]);
  EXPECT_EQ(none.weight_sum, 0.5 + 2.0);
  p.reduction = Reduction::sum;
  const auto sum = cross_entropy(p);
  EXPECT_EQ(sum.loss, none.loss);
  for (std::size_t k = 0; k < 9; ++k) EXPECT_EQ(sum.grad[k], none.grad[k]);
  p.reduction = Reduction::mean;
  const auto mean = cross_entropy(p);
  EXPECT_EQ(mean.loss, none.loss / 2.5);
  for (std::size_t k = 0; k < 9; ++k) EXPECT_TRUE(Near(mean.grad[k], none.grad[k] / 2.5, kEps));
  // Scalar upstream and grad_scale multiply the mean gradient; the loss is
  // unaffected.
  p.upstream = {3.0};
  p.grad_scale = 0.125;
  const auto scaled = cross_entropy(p);
  EXPECT_EQ(scaled.loss, mean.loss);
  for (std::size_t k = 0; k < 9; ++k) {
    EXPECT_TRUE(Near(scaled.grad[k], mean.grad[k] * 0.375, 2 * kEps * std::fabs(scaled.grad[k])));
  }
  // Per-row upstream under none.
  p.reduction = Reduction::none;
  p.upstream = {2.0, -1.0, 7.0};
  p.grad_scale = 1;
  const auto weighted = cross_entropy(p);
  for (std::size_t c = 0; c < 3; ++c) {
    EXPECT_EQ(weighted.grad[c], 2.0 * none.grad[c]);
    EXPECT_EQ(weighted.grad[3 + c], -1.0 * none.grad[3 + c]);
    EXPECT_EQ(weighted.grad[6 + c], 0.0);  // ignored row
  }
}

// Shared problem set for the gradient checks: every option, every reduction.
std::vector<std::pair<std::string, CrossEntropyProblem>> gradient_cases() {
  const std::vector<double> logits = {0.3,  -1.2, 2.1,  0.8,  -0.4,   // row 0
                                      1.7,  0.2,  -2.6, 2.9,  0.05,   // row 1
                                      -0.9, 1.1,  0.6,  -1.5, 2.4};   // row 2
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.25, 0.15,  //
                                     0.0, 0.5, 0.0, 0.5,  0.0,   //
                                     0.6, 0.1, 0.1, 0.1,  0.1};
  const std::vector<double> w = {0.5, 1.5, 1.0, 2.0, 0.75};
  std::vector<std::pair<std::string, CrossEntropyProblem>> out;
  out.emplace_back("hard_mean_plain", hard(3, 5, logits, {1, 4, 0}));
  {
    auto p = hard(3, 5, logits, {1, 4, 0}, Reduction::sum);
    p.label_smoothing = 0.1;
    p.class_weight = w;
    out.emplace_back("hard_sum_smoothing_weights", p);
  }
  {
    auto p = hard(3, 5, logits, {1, 4, 2}, Reduction::none);
    p.upstream = {0.5, -2.0, 1.5};
    p.z_loss = 1e-2;
    out.emplace_back("hard_none_zloss_upstream", p);
  }
  {
    auto p = hard(3, 5, logits, {3, -100, 2}, Reduction::mean);
    p.label_smoothing = 0.2;
    p.class_weight = w;
    p.z_loss = 1e-2;
    p.softcap = 2.5;  // |x| up to 2.9, so the cap bends the logits
    p.upstream = {3.0};
    p.grad_scale = 0.25;
    out.emplace_back("hard_mean_everything_ignore", p);
  }
  {
    auto p = soft(3, 5, logits, probs, Reduction::mean);
    p.label_smoothing = 0.1;
    p.class_weight = w;
    out.emplace_back("soft_mean_smoothing_weights", p);
  }
  {
    auto p = soft(3, 5, logits, probs, Reduction::none);
    p.z_loss = 5e-2;
    p.softcap = 4;
    p.upstream = {1.0, 0.25, -3.0};
    out.emplace_back("soft_none_zloss_softcap_upstream", p);
  }
  {
    auto p = soft(3, 5, logits, probs, Reduction::sum);
    p.grad_scale = 2;
    p.upstream = {-0.5};
    out.emplace_back("soft_sum_scale", p);
  }
  return out;
}

TEST(ReferenceCrossEntropy, GradientMatchesCentralDifferences) {
  // Tolerance 1e-6 * (1 + |g|): the objective is O(10) and built from O(C)
  // rounded terms, so rounding in the difference is ~ C eps |J| / h ~ 1e-8,
  // and truncation h^2 |J'''| / 6 ~ 1e-12; a wrong factor (a missing
  // 1 - eps, 1 / W, upstream or chain factor) is off by >= 1e-2.
  for (const auto& [name, p] : gradient_cases()) {
    SCOPED_TRACE(name);
    const auto r = cross_entropy(p);
    for (std::size_t k = 0; k < p.logits.size(); ++k) {
      const double fd = central_difference(
          [&p](const std::vector<double>& x) { return objective(p, x); }, p.logits, k);
      EXPECT_TRUE(Near(r.grad[k], fd, 1e-6 * (1 + std::fabs(fd)))) << "k = " << k;
    }
  }
}

TEST(ReferenceCrossEntropy, BackwardFromSavedStatsMatchesForward) {
  // exp((x' - m) - log s) from the saved statistics is the forward's own
  // log-probability, so the gradients agree to a few roundings.
  for (const auto& [name, p] : gradient_cases()) {
    SCOPED_TRACE(name);
    const auto r = cross_entropy(p);
    const auto g = cross_entropy_backward(p, r.max, r.log_sum);
    ASSERT_EQ(g.size(), r.grad.size());
    for (std::size_t k = 0; k < g.size(); ++k) {
      EXPECT_TRUE(Near(g[k], r.grad[k], 8 * kEps * (1 + std::fabs(r.grad[k]))));
    }
  }
}

TEST(ReferenceCrossEntropy, BackwardFromSavedStatsKeepsHugeLogitsExact) {
  // Logits all 1e4, 3e38 or 1e30: p is uniform whatever their size. From the
  // statistics (max, log C) backward gets it exactly; an lse would lose
  // log C below half an ulp of lse at 3e38.
  for (const double x : {1e4, 1e30, 3e38}) {
    for (const std::int64_t classes : {std::int64_t{2}, std::int64_t{1000}}) {
      auto p = hard(1, classes, std::vector<double>(static_cast<std::size_t>(classes), x), {0},
                    Reduction::mean);
      const auto r = cross_entropy(p);
      EXPECT_EQ(r.max[0], x);
      EXPECT_TRUE(Near(r.log_sum[0], std::log(static_cast<double>(classes)), 4 * kEps));
      const auto g = cross_entropy_backward(p, r.max, r.log_sum);
      const double uniform = 1.0 / static_cast<double>(classes);
      EXPECT_TRUE(Near(g[0], uniform - 1.0, 8 * kEps)) << x << " " << classes;
      EXPECT_TRUE(Near(g[1], uniform, 8 * kEps * uniform)) << x << " " << classes;
    }
  }
}

TEST(ReferenceCrossEntropy, BackwardUsesTheGivenStats) {
  // A saved log s larger by log 2 halves every probability: grad = p/2 - onehot,
  // with p = {1/6, 2/6, 3/6}; the max is that of the logits.
  auto p = hard(1, 3, {0.0, std::log(2.0), std::log(3.0)}, {0}, Reduction::sum);
  const double max = std::log(3.0);
  const double log_sum = std::log(6.0) - max + std::log(2.0);
  const auto g = cross_entropy_backward(p, std::vector<double>{max}, std::vector<double>{log_sum});
  EXPECT_TRUE(Near(g[0], 1.0 / 12 - 1, 8 * kEps));
  EXPECT_TRUE(Near(g[1], 2.0 / 12, 8 * kEps));
  EXPECT_TRUE(Near(g[2], 3.0 / 12, 8 * kEps));
}

}  // namespace
}  // namespace actloss::ref
