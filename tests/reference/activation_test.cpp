// Checks of the reference activations: conventions, hand-worked values,
// tails, subnormals, NaN, from-output vs from-input, finite differences.
// mpmath fixture comparisons live in fixtures_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
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

const Activation kAll[] = {Activation::relu,     Activation::leaky_relu, Activation::tanh,
                           Activation::sigmoid,  Activation::gelu_erf,   Activation::gelu_tanh,
                           Activation::silu};
const Activation kInvertible[] = {Activation::relu, Activation::leaky_relu, Activation::tanh,
                                  Activation::sigmoid};

std::string name(Activation a) {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::leaky_relu: return "leaky_relu";
    case Activation::tanh: return "tanh";
    case Activation::sigmoid: return "sigmoid";
    case Activation::gelu_erf: return "gelu_erf";
    case Activation::gelu_tanh: return "gelu_tanh";
    case Activation::silu: return "silu";
  }
  return "?";
}

double f(Activation a, double x, double alpha = 0.1) {
  return activation_forward(a, std::vector<double>{x}, alpha)[0];
}
double df(Activation a, double x, double alpha = 0.1) {
  return activation_backward_from_input(a, std::vector<double>{x}, std::vector<double>{1.0}, alpha)[0];
}
double df_out(Activation a, double y, double alpha = 0.1) {
  return activation_backward_from_output(a, std::vector<double>{y}, std::vector<double>{1.0}, alpha)[0];
}

TEST(ReferenceActivation, ReluAndLeakyReluConventionsAtZero) {
  // PyTorch: gradient where x > 0, so relu'(0) = 0 and leaky_relu'(0) = alpha.
  EXPECT_EQ(df(Activation::relu, 0.0), 0.0);
  EXPECT_EQ(df(Activation::relu, -0.0), 0.0);
  EXPECT_EQ(df(Activation::leaky_relu, 0.0, 0.2), 0.2);
  EXPECT_EQ(df_out(Activation::relu, 0.0), 0.0);
  EXPECT_EQ(df_out(Activation::leaky_relu, 0.0, 0.2), 0.2);
  EXPECT_EQ(f(Activation::relu, -3.0), 0.0);
  EXPECT_EQ(f(Activation::relu, 2.5), 2.5);
  EXPECT_EQ(f(Activation::leaky_relu, -3.0, 0.2), -3.0 * 0.2);
  EXPECT_EQ(f(Activation::leaky_relu, 2.5, 0.2), 2.5);
  EXPECT_EQ(df(Activation::leaky_relu, -3.0, 0.2), 0.2);
  EXPECT_EQ(df(Activation::leaky_relu, 2.5, 0.2), 1.0);
}

TEST(ReferenceActivation, HandWorkedValues) {
  const double l3 = std::log(3.0), l2 = std::log(2.0);
  // sigmoid(log 3) = 3 / (3 + 1) = 3/4; sigmoid' = 3/4 * 1/4 = 3/16.
  EXPECT_TRUE(Near(f(Activation::sigmoid, l3), 0.75, 2 * kEps));
  EXPECT_TRUE(Near(df(Activation::sigmoid, l3), 3.0 / 16, 4 * kEps));
  EXPECT_EQ(f(Activation::sigmoid, 0.0), 0.5);
  EXPECT_EQ(df(Activation::sigmoid, 0.0), 0.25);
  // tanh(log 2) = (2 - 1/2) / (2 + 1/2) = 3/5; tanh' = 1 - 9/25 = 16/25.
  EXPECT_TRUE(Near(f(Activation::tanh, l2), 0.6, 2 * kEps));
  EXPECT_TRUE(Near(df(Activation::tanh, l2), 0.64, 4 * kEps));
  EXPECT_EQ(f(Activation::tanh, 0.0), 0.0);
  EXPECT_EQ(df(Activation::tanh, 0.0), 1.0);
  // silu(log 3) = log 3 * 3/4; silu' = 3/4 (1 + log 3 / 4).
  EXPECT_TRUE(Near(f(Activation::silu, l3), 0.75 * l3, 4 * kEps));
  EXPECT_TRUE(Near(df(Activation::silu, l3), 0.75 * (1 + l3 / 4), 4 * kEps));
  // Both GELUs: f(0) = 0, f'(0) = Phi(0) = 1/2; odd part x/2 + even part:
  // f(x) - f(-x) = x for gelu_erf (Phi(x) + Phi(-x) = 1) and for gelu_tanh.
  for (Activation a : {Activation::gelu_erf, Activation::gelu_tanh, Activation::silu}) {
    SCOPED_TRACE(name(a));
    EXPECT_EQ(f(a, 0.0), 0.0);
    EXPECT_EQ(df(a, 0.0), 0.5);
    for (double x : {0.5, 1.0, 2.0, 3.0}) EXPECT_TRUE(Near(f(a, x) - f(a, -x), x, 4 * kEps * x));
  }
  // gelu_erf(1) = Phi(1) = (1 + erf(1/sqrt 2)) / 2 with erf(1/sqrt2) =
  // 0.682689492137085897... (the one-sigma probability, a tabulated constant).
  EXPECT_TRUE(Near(f(Activation::gelu_erf, 1.0), (1 + 0.68268949213708589717) / 2, 4 * kEps));
}

TEST(ReferenceActivation, TailsAreFiniteAndRight) {
  for (Activation a : kAll) {
    SCOPED_TRACE(name(a));
    for (double x : {-800.0, -40.0, -20.0, 20.0, 40.0, 800.0}) {
      EXPECT_TRUE(std::isfinite(f(a, x))) << x;
      EXPECT_TRUE(std::isfinite(df(a, x))) << x;
    }
  }
  EXPECT_EQ(f(Activation::sigmoid, 800), 1.0);
  EXPECT_EQ(f(Activation::sigmoid, -800), 0.0);
  EXPECT_EQ(df(Activation::sigmoid, 800), 0.0);
  EXPECT_EQ(df(Activation::tanh, -800), 0.0);
  EXPECT_EQ(f(Activation::tanh, 20), std::tanh(20.0));
  // sigmoid(-40) = e^-40 / (1 + e^-40) keeps full relative accuracy, and so
  // does its derivative where s (1 - s) would have lost it at +40:
  // sigmoid'(40) = e^-40 / (1 + e^-40)^2.
  const double t = std::exp(-40.0);
  EXPECT_TRUE(Near(f(Activation::sigmoid, -40), t, 4 * kEps * t));
  EXPECT_TRUE(Near(df(Activation::sigmoid, 40), t, 4 * kEps * t));
  // tanh'(20) = 4 e^-40 / (1 + e^-40)^2, where 1 - tanh^2 would give 0.
  EXPECT_TRUE(Near(df(Activation::tanh, 20), 4 * t, 8 * kEps * 4 * t));
  // GELU at -40: x Phi(x) ~ e^-800: underflows to (signed) zero, not NaN.
  for (Activation a : {Activation::gelu_erf, Activation::gelu_tanh}) {
    EXPECT_EQ(f(a, -40), 0.0);
    EXPECT_EQ(df(a, -40), 0.0);
    EXPECT_EQ(f(a, 40), 40.0);
    EXPECT_EQ(df(a, 40), 1.0);
  }
  // GELU at -10: Phi(-10) = 7.6198530241605260e-24 (tabulated normal tail);
  // 1 + erf would have lost every digit.
  EXPECT_TRUE(Near(f(Activation::gelu_erf, -10), -10 * 7.6198530241605260e-24, 1e-13 * 7.62e-23));
  // silu(-800) = -800 * 0 = -0.
  EXPECT_EQ(f(Activation::silu, -800), 0.0);
}

TEST(ReferenceActivation, SubnormalInputs) {
  const double x = 1e-310;
  EXPECT_EQ(f(Activation::relu, x), x);
  EXPECT_EQ(f(Activation::leaky_relu, -x, 0.5), -x * 0.5);
  EXPECT_EQ(f(Activation::tanh, x), x);
  EXPECT_EQ(f(Activation::sigmoid, x), 0.5);
  EXPECT_EQ(df(Activation::sigmoid, x), 0.25);
  EXPECT_EQ(df(Activation::tanh, x), 1.0);
  // x Phi(x) = x / 2 (1 + O(x)) with O(x) far below an ulp, so the answer is
  // x / 2 rounded once, as the expression x / 2 is.
  for (Activation a : {Activation::gelu_erf, Activation::gelu_tanh, Activation::silu}) {
    SCOPED_TRACE(name(a));
    EXPECT_EQ(f(a, x), x / 2);
    EXPECT_EQ(f(a, -x), -x / 2);
    EXPECT_EQ(df(a, x), 0.5);
  }
}

TEST(ReferenceActivation, NanInGivesNanOut) {
  for (Activation a : kAll) {
    SCOPED_TRACE(name(a));
    EXPECT_TRUE(std::isnan(f(a, kNaN)));
    EXPECT_TRUE(std::isnan(df(a, kNaN)));
    // NaN upstream gradient, at points where the derivative is 0 and 1.
    for (double x : {-5.0, 5.0}) {
      const auto dx = activation_backward_from_input(a, std::vector<double>{x},
                                                     std::vector<double>{kNaN}, 0.1);
      EXPECT_TRUE(std::isnan(dx[0]));
    }
  }
  for (Activation a : kInvertible) {
    SCOPED_TRACE(name(a));
    EXPECT_TRUE(std::isnan(df_out(a, kNaN)));
    const auto dx = activation_backward_from_output(a, std::vector<double>{0.0},
                                                    std::vector<double>{kNaN}, 0.1);
    EXPECT_TRUE(std::isnan(dx[0]));
  }
}

TEST(ReferenceActivation, InfiniteInputsOfBoundedActivations) {
  EXPECT_EQ(f(Activation::relu, kInf), kInf);
  EXPECT_EQ(f(Activation::relu, -kInf), 0.0);
  EXPECT_EQ(f(Activation::tanh, -kInf), -1.0);
  EXPECT_EQ(df(Activation::tanh, kInf), 0.0);
  EXPECT_EQ(f(Activation::sigmoid, kInf), 1.0);
  EXPECT_EQ(f(Activation::sigmoid, -kInf), 0.0);
  EXPECT_EQ(df(Activation::sigmoid, -kInf), 0.0);
}

TEST(ReferenceActivation, BackwardFromOutputMatchesBackwardFromInput) {
  // tanh: 1 - y^2 vs sech^2 x; sigmoid: y (1 - y) vs s(x) s(-x). y carries
  // one rounding, so the from-output form is good to ~4 eps absolute (it
  // loses relative accuracy in the tails; that is inherent to saving y).
  const std::vector<double> xs = {-19.0, -3.0, -1.0, -0.25, 0.0, 0.3, 1.0, 2.5, 7.0, 19.0};
  std::vector<double> dy(xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) dy[i] = 0.5 + static_cast<double>(i);
  for (Activation a : kInvertible) {
    for (double alpha : {0.1, 0.0}) {
      SCOPED_TRACE(name(a) + " alpha " + std::to_string(alpha));
      const auto y = activation_forward(a, xs, alpha);
      const auto from_x = activation_backward_from_input(a, xs, dy, alpha);
      const auto from_y = activation_backward_from_output(a, y, dy, alpha);
      for (std::size_t i = 0; i < xs.size(); ++i) {
        EXPECT_TRUE(Near(from_y[i], from_x[i], 8 * kEps * dy[i])) << "x = " << xs[i];
      }
    }
  }
}

TEST(ReferenceActivation, BackwardFromOutputOfNonInvertibleIsNan) {
  for (Activation a : {Activation::gelu_erf, Activation::gelu_tanh, Activation::silu}) {
    EXPECT_TRUE(all_nan(activation_backward_from_output(a, std::vector<double>{0.0, 1.0, -0.1},
                                                        std::vector<double>{1.0, 1.0, 1.0}, 0)))
        << name(a);
  }
}

TEST(ReferenceActivation, LeakyReluFromOutputWithNegativeAlphaUsesSignOfY) {
  // Documented: alpha < 0 cannot be inverted; y > 0 is taken as x > 0.
  // x = -2, alpha = -0.5: y = 1 > 0, so from-output says 1 where the true
  // derivative is -0.5. This pins the documented behaviour.
  EXPECT_EQ(df_out(Activation::leaky_relu, f(Activation::leaky_relu, -2.0, -0.5), -0.5), 1.0);
  EXPECT_EQ(df(Activation::leaky_relu, -2.0, -0.5), -0.5);
}

TEST(ReferenceActivation, EmptyInput) {
  for (Activation a : kAll) {
    EXPECT_TRUE(activation_forward(a, {}, 0.1).empty());
    EXPECT_TRUE(activation_backward_from_input(a, {}, {}, 0.1).empty());
    EXPECT_TRUE(activation_backward_from_output(a, {}, {}, 0.1).empty());
  }
}

TEST(ReferenceActivation, BackwardMatchesCentralDifferences) {
  // f is evaluated to a few eps and |f| <~ |x| <= 6, so rounding in the
  // difference is ~ 4 eps |f| / h ~ 1e-8; truncation h^2 |f'''| / 6 ~ 1e-12.
  // Tolerance 1e-6 (1 + |g|). Kinks of relu / leaky_relu at 0 are avoided.
  const std::vector<double> xs = {-6.0, -2.7, -1.3, -0.6, -0.05, 0.07, 0.4, 1.1, 2.2, 5.5};
  std::vector<double> dy(xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) dy[i] = 1.0 - 0.3 * static_cast<double>(i);
  const double alpha = 0.15;
  for (Activation a : kAll) {
    SCOPED_TRACE(name(a));
    const auto from_x = activation_backward_from_input(a, xs, dy, alpha);
    const bool invertible = a == Activation::relu || a == Activation::leaky_relu ||
                            a == Activation::tanh || a == Activation::sigmoid;
    const auto from_y = activation_backward_from_output(a, activation_forward(a, xs, alpha), dy, alpha);
    for (std::size_t i = 0; i < xs.size(); ++i) {
      const double slope = central_difference(
          [&](const std::vector<double>& v) { return f(a, v[0], alpha); }, {xs[i]}, 0);
      const double want = dy[i] * slope;
      EXPECT_TRUE(Near(from_x[i], want, 1e-6 * (1 + std::fabs(want)))) << "x = " << xs[i];
      if (invertible) {
        EXPECT_TRUE(Near(from_y[i], want, 1e-6 * (1 + std::fabs(want)))) << "from y, x = " << xs[i];
      }
    }
  }
}

}  // namespace
}  // namespace actloss::ref
