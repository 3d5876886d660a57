// Checks of the reference softmax / log-softmax and their backward passes.
// mpmath fixture comparisons live in fixtures_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "fixtures/test_support.h"
#include "host/reference/reference.h"

namespace actloss::ref {
namespace {

using testing::all_nan;
using testing::central_difference;
using testing::kEps;
using testing::kInf;
using testing::kNaN;
using testing::Near;

TEST(ReferenceSoftmax, HandWorked) {
  // exp(x) = {1, 2, 3}, sum 6.
  const std::vector<double> x = {0.0, std::log(2.0), std::log(3.0)};
  const auto y = softmax_forward(1, 3, x, false);
  EXPECT_TRUE(Near(y[0], 1.0 / 6, 4 * kEps));
  EXPECT_TRUE(Near(y[1], 2.0 / 6, 4 * kEps));
  EXPECT_TRUE(Near(y[2], 3.0 / 6, 4 * kEps));
  const auto ly = softmax_forward(1, 3, x, true);
  EXPECT_TRUE(Near(ly[0], -std::log(6.0), 8 * kEps));
  EXPECT_TRUE(Near(ly[1], -std::log(3.0), 8 * kEps));
  EXPECT_TRUE(Near(ly[2], -std::log(2.0), 8 * kEps));
  // Backward with dy = {1, 0, 0}: softmax dx = y (e_0 - y_0) =
  // {1/6 * 5/6, -1/3 * 1/6, -1/2 * 1/6}; log-softmax dx = e_0 - y = {5/6, -1/3, -1/2}.
  const std::vector<double> dy = {1.0, 0.0, 0.0};
  const auto dx = softmax_backward(1, 3, y, dy, false);
  EXPECT_TRUE(Near(dx[0], 5.0 / 36, 8 * kEps));
  EXPECT_TRUE(Near(dx[1], -1.0 / 18, 8 * kEps));
  EXPECT_TRUE(Near(dx[2], -1.0 / 12, 8 * kEps));
  const auto dlx = softmax_backward(1, 3, ly, dy, true);
  EXPECT_TRUE(Near(dlx[0], 5.0 / 6, 8 * kEps));
  EXPECT_TRUE(Near(dlx[1], -1.0 / 3, 8 * kEps));
  EXPECT_TRUE(Near(dlx[2], -1.0 / 2, 8 * kEps));
}

TEST(ReferenceSoftmax, HugeLogitsGiveFiniteExactAnswers) {
  // Row 0: tie at 3e38 -> {1/2, 1/2}; row 1: {1e30, 0} -> {1, 0};
  // row 2: {-3e38, 3e38} -> {0, 1}, log {-6e38, 0}.
  const std::vector<double> x = {3e38, 3e38, 1e30, 0.0, -3e38, 3e38};
  const auto y = softmax_forward(3, 2, x, false);
  EXPECT_EQ(y, (std::vector<double>{0.5, 0.5, 1.0, 0.0, 0.0, 1.0}));
  const auto ly = softmax_forward(3, 2, x, true);
  EXPECT_TRUE(Near(ly[0], -std::log(2.0), kEps));
  EXPECT_TRUE(Near(ly[1], -std::log(2.0), kEps));
  EXPECT_EQ(ly[2], 0.0);
  EXPECT_EQ(ly[3], -1e30);
  EXPECT_EQ(ly[4], -6e38);
  EXPECT_EQ(ly[5], 0.0);
}

TEST(ReferenceSoftmax, AllMinusInfRowGivesZerosNotNan) {
  // Documented convention (PyTorch gives NaN).
  const std::vector<double> x = {-kInf, -kInf, -kInf, 1.0, 2.0, 3.0};
  const auto y = softmax_forward(2, 3, x, false);
  const auto ly = softmax_forward(2, 3, x, true);
  for (std::size_t c = 0; c < 3; ++c) {
    EXPECT_EQ(y[c], 0.0);
    EXPECT_EQ(ly[c], -kInf);
  }
  EXPECT_TRUE(std::isfinite(y[4]) && std::isfinite(ly[4]));
  // Backward: softmax dx = 0 * (...) = 0; log-softmax dx = dy - 0 * sum = dy.
  const std::vector<double> dy = {0.5, -1.0, 2.0, 1.0, 1.0, 1.0};
  const auto dx = softmax_backward(2, 3, y, dy, false);
  const auto dlx = softmax_backward(2, 3, ly, dy, true);
  for (std::size_t c = 0; c < 3; ++c) {
    EXPECT_EQ(dx[c], 0.0);
    EXPECT_EQ(dlx[c], dy[c]);
  }
}

TEST(ReferenceSoftmax, MaskedEntriesHaveExactlyZeroProbability) {
  const std::vector<double> x = {-kInf, 0.0, -kInf, std::log(3.0)};
  const auto y = softmax_forward(1, 4, x, false);
  const auto ly = softmax_forward(1, 4, x, true);
  EXPECT_EQ(y[0], 0.0);
  EXPECT_EQ(y[2], 0.0);
  EXPECT_EQ(ly[0], -kInf);
  EXPECT_TRUE(Near(y[1], 0.25, 2 * kEps));
  EXPECT_TRUE(Near(y[3], 0.75, 2 * kEps));
  // Their gradients: softmax exactly 0, log-softmax exactly dy.
  const std::vector<double> dy = {3.0, 1.0, -2.0, 0.5};
  EXPECT_EQ(softmax_backward(1, 4, y, dy, false)[0], 0.0);
  EXPECT_EQ(softmax_backward(1, 4, ly, dy, true)[2], -2.0);
}

TEST(ReferenceSoftmax, PlusInfAndNanMakeTheirRowNan) {
  // Documented (PyTorch too for +inf). Other rows are untouched.
  const std::vector<double> x = {kInf, 0.0, 1.0, 2.0, kNaN, 0.5, kNaN, kNaN};
  for (bool log : {false, true}) {
    const auto y = softmax_forward(4, 2, x, log);
    EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1]));
    EXPECT_TRUE(std::isfinite(y[2]) && std::isfinite(y[3]));
    EXPECT_TRUE(std::isnan(y[4]) && std::isnan(y[5]));
    // All-NaN must not be mistaken for all -inf.
    EXPECT_TRUE(std::isnan(y[6]) && std::isnan(y[7]));
  }
  // Backward: NaN in y or dy spreads over the row (through the row sum).
  const std::vector<double> y = {0.25, 0.75, 0.5, 0.5};
  const std::vector<double> dy = {kNaN, 1.0, 1.0, 1.0};
  for (bool log : {false, true}) {
    const auto dx = softmax_backward(2, 2, y, dy, log);
    EXPECT_TRUE(std::isnan(dx[0]) && std::isnan(dx[1]));
    EXPECT_TRUE(std::isfinite(dx[2]) && std::isfinite(dx[3]));
  }
  const std::vector<double> ynan = {kNaN, 0.5};
  EXPECT_TRUE(std::isnan(softmax_backward(1, 2, ynan, std::vector<double>{1.0, 2.0}, false)[1]));
}

TEST(ReferenceSoftmax, ZeroRowsAndSingleColumn) {
  EXPECT_TRUE(softmax_forward(0, 5, {}, false).empty());
  EXPECT_TRUE(softmax_backward(0, 5, {}, {}, true).empty());
  const std::vector<double> x = {-3.0, 1e30, 7.0};
  EXPECT_EQ(softmax_forward(3, 1, x, false), (std::vector<double>{1, 1, 1}));
  EXPECT_EQ(softmax_forward(3, 1, x, true), (std::vector<double>{0, 0, 0}));
}

TEST(ReferenceSoftmax, BackwardMatchesCentralDifferences) {
  // J(x) = sum dy * f(x) with f = softmax or log_softmax; |J| <~ 10,
  // rounding ~ C eps |J| / h ~ 1e-8, truncation ~ h^2 ~ 1e-12.
  // Tolerance 1e-6 (1 + |g|).
  const int64_t rows = 3, cols = 6;
  const std::vector<double> x = {0.3, -1.2, 2.1, 0.8, -0.4, 1.0,  //
                                 5.0, 4.5,  -3.0, 0.0, 1.0, 2.0,  //
                                 -0.7, 0.7, 0.1, -2.2, 3.3, 0.05};
  std::vector<double> dy(x.size());
  for (std::size_t k = 0; k < dy.size(); ++k) dy[k] = std::sin(1.7 * static_cast<double>(k) + 0.3);
  for (bool log : {false, true}) {
    SCOPED_TRACE(log ? "log_softmax" : "softmax");
    const auto y = softmax_forward(rows, cols, x, log);
    const auto dx = softmax_backward(rows, cols, y, dy, log);
    auto objective = [&](const std::vector<double>& v) {
      const auto out = softmax_forward(rows, cols, v, log);
      double j = 0;
      for (std::size_t k = 0; k < out.size(); ++k) j += dy[k] * out[k];
      return j;
    };
    for (std::size_t k = 0; k < x.size(); ++k) {
      const double fd = central_difference(objective, x, k);
      EXPECT_TRUE(Near(dx[k], fd, 1e-6 * (1 + std::fabs(fd)))) << "k = " << k;
    }
  }
}

}  // namespace
}  // namespace actloss::ref
