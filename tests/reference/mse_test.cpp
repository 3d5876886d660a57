// Checks of the reference MSE.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "fixtures/test_support.h"
#include "host/reference/reference.h"

namespace actloss::ref {
namespace {

using testing::central_difference;
using testing::kNaN;
using testing::Near;

MseProblem problem(std::vector<double> input, std::vector<double> target, Reduction red) {
  MseProblem p;
  p.n = static_cast<int64_t>(input.size());
  p.input = std::move(input);
  p.target = std::move(target);
  p.reduction = red;
  return p;
}

TEST(ReferenceMse, HandWorkedAndReductions) {
  // Differences {1, -2, 0.5, 3}: squares {1, 4, 0.25, 9}, sum 14.25,
  // mean 14.25 / 4 = 3.5625; d/dx = 2 d = {2, -4, 1, 6} (all exact).
  auto p = problem({1.0, -1.0, 0.75, 3.0}, {0.0, 1.0, 0.25, 0.0}, Reduction::none);
  const auto none = mse(p);
  EXPECT_EQ(none.elem_loss, (std::vector<double>{1, 4, 0.25, 9}));
  EXPECT_EQ(none.grad, (std::vector<double>{2, -4, 1, 6}));
  EXPECT_EQ(none.loss, 14.25);
  p.reduction = Reduction::sum;
  EXPECT_EQ(mse(p).loss, 14.25);
  EXPECT_EQ(mse(p).grad, (std::vector<double>{2, -4, 1, 6}));
  p.reduction = Reduction::mean;
  const auto mean = mse(p);
  EXPECT_EQ(mean.loss, 3.5625);
  EXPECT_EQ(mean.grad, (std::vector<double>{0.5, -1, 0.25, 1.5}));
  // Scalar upstream and grad_scale; per-element upstream under none.
  p.upstream = {3.0};
  p.grad_scale = 0.5;
  EXPECT_EQ(mse(p).grad, (std::vector<double>{0.75, -1.5, 0.375, 2.25}));
  EXPECT_EQ(mse(p).loss, 3.5625);
  p.reduction = Reduction::none;
  p.upstream = {1, 0, -1, 2};
  p.grad_scale = 1;
  EXPECT_EQ(mse(p).grad, (std::vector<double>{2, 0, -1, 12}));
}

TEST(ReferenceMse, EmptyMeanIsZero) {
  // Documented: 0 where PyTorch gives NaN.
  for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean}) {
    const auto r = mse(problem({}, {}, red));
    EXPECT_EQ(r.loss, 0.0);
    EXPECT_TRUE(r.grad.empty());
    EXPECT_TRUE(r.elem_loss.empty());
  }
}

TEST(ReferenceMse, NanInGivesNanOut) {
  auto r = mse(problem({kNaN, 1.0}, {0.0, 1.0}, Reduction::mean));
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_TRUE(std::isnan(r.grad[0]));
  EXPECT_EQ(r.grad[1], 0.0);
  r = mse(problem({0.0}, {kNaN}, Reduction::none));
  EXPECT_TRUE(std::isnan(r.elem_loss[0]));
  EXPECT_TRUE(std::isnan(r.grad[0]));
}

TEST(ReferenceMse, GradientMatchesCentralDifferences) {
  // J is quadratic, so the central difference has no truncation error; only
  // rounding, ~ eps |J| / h ~ 1e-9. Tolerance 1e-7 (1 + |g|).
  for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean}) {
    auto p = problem({0.3, -1.7, 2.5, 10.0, -0.01}, {1.0, -1.0, -0.5, 9.0, 0.02}, red);
    p.grad_scale = 1.5;
    p.upstream = red == Reduction::none ? std::vector<double>{1, 2, -1, 0.5, 3} : std::vector<double>{-2};
    const auto r = mse(p);
    auto objective = [&p](const std::vector<double>& x) {
      MseProblem q = p;
      q.input = x;
      const auto s = mse(q);
      if (p.reduction != Reduction::none) return p.upstream[0] * s.loss * p.grad_scale;
      double j = 0;
      for (std::size_t e = 0; e < x.size(); ++e) j += p.upstream[e] * s.elem_loss[e];
      return j * p.grad_scale;
    };
    for (std::size_t k = 0; k < p.input.size(); ++k) {
      const double fd = central_difference(objective, p.input, k);
      EXPECT_TRUE(Near(r.grad[k], fd, 1e-7 * (1 + std::fabs(fd))));
    }
  }
}

}  // namespace
}  // namespace actloss::ref
