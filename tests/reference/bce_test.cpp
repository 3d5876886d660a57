// Checks of the reference BCE-with-logits: hand-worked values, extreme
// logits, reductions, finite differences, edge conventions. mpmath fixture
// comparisons live in fixtures_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
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

BceProblem single(double x, double y, double pos_weight = 1, double weight = 1) {
  BceProblem p;
  p.rows = p.cols = 1;
  p.logits = {x};
  p.targets = {y};
  p.pos_weight = {pos_weight};
  p.weight = {weight};
  p.reduction = Reduction::sum;
  return p;
}

TEST(ReferenceBce, HandWorked) {
  // x = log 3: sigmoid(x) = 3/4, sigmoid(-x) = 1/4.
  const double x = std::log(3.0);
  // y = 1: -log(3/4) = log(4/3); grad = -sigmoid(-x) = -1/4.
  auto r = bce_with_logits(single(x, 1));
  EXPECT_TRUE(Near(r.loss, std::log(4.0 / 3), 8 * kEps));
  EXPECT_TRUE(Near(r.grad[0], -0.25, 4 * kEps));
  // y = 0: -log(1/4) = log 4; grad = sigmoid(x) = 3/4.
  r = bce_with_logits(single(x, 0));
  EXPECT_TRUE(Near(r.loss, std::log(4.0), 8 * kEps));
  EXPECT_TRUE(Near(r.grad[0], 0.75, 4 * kEps));
  // pos_weight 2, y = 1: 2 log(4/3); grad = -2 * 1/4.
  r = bce_with_logits(single(x, 1, 2));
  EXPECT_TRUE(Near(r.loss, 2 * std::log(4.0 / 3), 16 * kEps));
  EXPECT_TRUE(Near(r.grad[0], -0.5, 4 * kEps));
  // y = 1/4: 1/4 log(4/3) + 3/4 log 4; grad = sigmoid(x) - y = 1/2.
  // weight 3 multiplies both.
  r = bce_with_logits(single(x, 0.25, 1, 3));
  EXPECT_TRUE(Near(r.loss, 3 * (0.25 * std::log(4.0 / 3) + 0.75 * std::log(4.0)), 16 * kEps));
  EXPECT_TRUE(Near(r.grad[0], 1.5, 8 * kEps));
  // x = 0: log 2 for either target, grad 1/2 - y.
  r = bce_with_logits(single(0, 1));
  EXPECT_TRUE(Near(r.loss, std::log(2.0), kEps));
  EXPECT_EQ(r.grad[0], -0.5);
}

TEST(ReferenceBce, ExtremeLogitsWithPosWeightAreFiniteAndRight) {
  // x = -120, pos_weight 3, y = 1: 3 * softplus(120) = 3 * (120 + e^-120) = 360;
  // grad = -3 sigmoid(120) = -3.
  auto r = bce_with_logits(single(-120, 1, 3));
  EXPECT_EQ(r.loss, 360.0);
  EXPECT_EQ(r.grad[0], -3.0);
  // y = 1/2: 1.5 * softplus(120) + 0.5 * softplus(-120) = 180 (+ 2e-53);
  // grad = 0.5 sigmoid(-120) - 1.5 sigmoid(120) = -1.5.
  r = bce_with_logits(single(-120, 0.5, 3));
  EXPECT_EQ(r.loss, 180.0);
  EXPECT_EQ(r.grad[0], -1.5);
  // y = 0: softplus(-120) = log1p(e^-120) = e^-120 (1 - e^-120 / 2): the
  // form (1 - y) x + l softplus(-x) would cancel to 0 here.
  r = bce_with_logits(single(-120, 0, 3));
  EXPECT_TRUE(Near(r.loss, std::exp(-120.0), 4 * kEps * std::exp(-120.0)));
  EXPECT_TRUE(Near(r.grad[0], std::exp(-120.0), 4 * kEps * std::exp(-120.0)));
  // x = +120, y = 0, pos_weight 3: softplus(120) = 120; grad = sigmoid(120) = 1.
  r = bce_with_logits(single(120, 0, 3));
  EXPECT_EQ(r.loss, 120.0);
  EXPECT_EQ(r.grad[0], 1.0);
  // x = +120, y = 1: 3 e^-120.
  r = bce_with_logits(single(120, 1, 3));
  EXPECT_TRUE(Near(r.loss, 3 * std::exp(-120.0), 8 * kEps * std::exp(-120.0)));
}

TEST(ReferenceBce, InfiniteLogitsFollowTheZeroTimesInfConvention) {
  EXPECT_EQ(bce_with_logits(single(kInf, 1)).loss, 0.0);
  EXPECT_EQ(bce_with_logits(single(-kInf, 0)).loss, 0.0);
  EXPECT_EQ(bce_with_logits(single(kInf, 0)).loss, kInf);
  EXPECT_EQ(bce_with_logits(single(-kInf, 1, 3)).loss, kInf);
  EXPECT_EQ(bce_with_logits(single(kInf, 0)).grad[0], 1.0);
  EXPECT_EQ(bce_with_logits(single(-kInf, 1, 3)).grad[0], -3.0);
  EXPECT_EQ(bce_with_logits(single(-kInf, 0)).grad[0], 0.0);
  // A zero element weight switches off even an infinite loss.
  EXPECT_EQ(bce_with_logits(single(kInf, 0, 1, 0)).loss, 0.0);
}

TEST(ReferenceBce, MeanDividesByElementCountAndPosWeightIsPerColumn) {
  BceProblem p;
  p.rows = 2;
  p.cols = 3;
  // All logits 0: every element costs (pw y + (1 - y)) log 2.
  p.logits.assign(6, 0.0);
  p.targets = {1, 0, 1, 1, 1, 0};
  p.pos_weight = {2, 5, 3};  // per column
  p.weight = {1, 1, 1, 0.5, 1, 1};
  p.reduction = Reduction::none;
  const auto none = bce_with_logits(p);
  // Element costs / log 2: {2, 1, 3, 0.5 * 2, 5, 1}.
  const double want[] = {2, 1, 3, 1, 5, 1};
  for (std::size_t e = 0; e < 6; ++e) EXPECT_TRUE(Near(none.elem_loss[e], want[e] * std::log(2.0), 4 * kEps * want[e]));
  p.reduction = Reduction::mean;
  const auto mean = bce_with_logits(p);
  EXPECT_TRUE(Near(mean.loss, 13 * std::log(2.0) / 6, 16 * kEps));
  // grad = w (sigmoid(0) (1 - y) - pw y sigmoid(0)) / 6.
  EXPECT_EQ(mean.grad[0], -1.0 / 6);
  EXPECT_EQ(mean.grad[1], 0.5 / 6);
  EXPECT_TRUE(Near(mean.grad[4], -2.5 / 6, kEps));
  // Scalar upstream and grad_scale multiply; per-element upstream under none.
  p.upstream = {4.0};
  p.grad_scale = 0.5;
  const auto scaled = bce_with_logits(p);
  EXPECT_EQ(scaled.loss, mean.loss);
  for (std::size_t e = 0; e < 6; ++e) EXPECT_TRUE(Near(scaled.grad[e], 2 * mean.grad[e], kEps));
  p.reduction = Reduction::none;
  p.upstream = {1, 2, 3, 4, 5, 6};
  p.grad_scale = 1;
  const auto per = bce_with_logits(p);
  for (std::size_t e = 0; e < 6; ++e) EXPECT_EQ(per.grad[e], static_cast<double>(e + 1) * none.grad[e]);
}

TEST(ReferenceBce, EmptyInputs) {
  // rows * cols == 0 under mean: 0 (documented; PyTorch gives NaN).
  for (int64_t rows : {0, 3}) {
    BceProblem p;
    p.rows = rows;
    p.cols = rows == 0 ? 4 : 0;
    for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean}) {
      p.reduction = red;
      const auto r = bce_with_logits(p);
      EXPECT_EQ(r.loss, 0.0);
      EXPECT_TRUE(r.elem_loss.empty());
      EXPECT_TRUE(r.grad.empty());
    }
  }
}

TEST(ReferenceBce, NanInGivesNanOut) {
  auto r = bce_with_logits(single(kNaN, 1));
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(std::isnan(r.grad[0]));
  r = bce_with_logits(single(kNaN, 0));
  EXPECT_TRUE(std::isnan(r.loss));
  // Even when both coefficients vanish (y = 1, pos_weight 0).
  r = bce_with_logits(single(kNaN, 1, 0));
  EXPECT_TRUE(std::isnan(r.loss));
  r = bce_with_logits(single(0.5, kNaN));
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(std::isnan(r.grad[0]));
  r = bce_with_logits(single(0.5, 1, kNaN));
  EXPECT_TRUE(std::isnan(r.loss));
  r = bce_with_logits(single(0.5, 1, 1, kNaN));
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(std::isnan(r.grad[0]));
}

TEST(ReferenceBce, GradientMatchesCentralDifferences) {
  // Same budget as for cross-entropy: objective O(10), rounding ~ eps |J| / h
  // ~ 1e-9, truncation ~ h^2 ~ 1e-12; tolerance 1e-6 (1 + |g|).
  BceProblem base;
  base.rows = 2;
  base.cols = 4;
  base.logits = {-3.5, 0.25, 1.5, 6.0, -0.75, 2.0, -8.0, 0.1};
  base.targets = {0.0, 1.0, 0.3, 1.0, 0.8, 0.0, 1.0, 0.5};
  base.pos_weight = {3.0, 0.5, 2.0, 1.0};
  base.weight = {1.0, 2.0, 0.5, 1.5, 0.25, 1.0, 3.0, 0.75};
  for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean}) {
    BceProblem p = base;
    p.reduction = red;
    p.grad_scale = 0.5;
    if (red == Reduction::none) {
      p.upstream = {1.0, -2.0, 0.5, 3.0, 1.0, 0.25, -1.0, 2.0};
    } else {
      p.upstream = {1.5};
    }
    SCOPED_TRACE(static_cast<int>(red));
    const auto r = bce_with_logits(p);
    auto objective = [&p](const std::vector<double>& x) {
      BceProblem q = p;
      q.logits = x;
      const auto s = bce_with_logits(q);
      if (p.reduction != Reduction::none) return p.upstream[0] * s.loss * p.grad_scale;
      double j = 0;
      for (std::size_t e = 0; e < x.size(); ++e) j += p.upstream[e] * s.elem_loss[e];
      return j * p.grad_scale;
    };
    for (std::size_t k = 0; k < p.logits.size(); ++k) {
      const double fd = central_difference(objective, p.logits, k);
      EXPECT_TRUE(Near(r.grad[k], fd, 1e-6 * (1 + std::fabs(fd)))) << "k = " << k;
    }
  }
}

}  // namespace
}  // namespace actloss::ref
