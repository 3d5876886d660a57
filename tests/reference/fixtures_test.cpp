// Compares the reference with values computed independently by
// fixtures/make_fixtures.py (mpmath, naive definitions at >= 60 digits,
// rounded to double). Tolerances are derived per check from the rounding
// budget of the float64 formulas, stated next to each.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fixtures/reference_fixtures.h"
#include "fixtures/test_support.h"
#include "host/reference/reference.h"

namespace actloss::ref {
namespace {

using testing::kEps;
using testing::Near;

// Results below the normal range are rounded on an absolute grid of
// 4.9e-324; allow a few of those steps on top of every relative tolerance.
constexpr double kSubnormalSlack = 1e-322;

Activation parse(const std::string& op) {
  if (op == "relu") return Activation::relu;
  if (op == "leaky_relu") return Activation::leaky_relu;
  if (op == "tanh") return Activation::tanh;
  if (op == "sigmoid") return Activation::sigmoid;
  if (op == "gelu_erf") return Activation::gelu_erf;
  if (op == "gelu_tanh") return Activation::gelu_tanh;
  return Activation::silu;
}

TEST(ReferenceActivation, MatchesMpmathFixtures) {
  // Each value is a handful of correctly rounded libm calls (exp, erfc, tanh,
  // cosh: <= 1 ulp each in glibc) combined without cancellation, on an
  // argument that is itself rounded (x / sqrt 2, x^2 / 2, the GELU cubic).
  // The tails amplify that argument rounding by the function's condition
  // number, which for erfc(-x/sqrt2), exp(-x^2/2) and sigmoid(2u(x)) grows
  // like x^2 (|x| <= 20 before underflow): an argument error of eps |arg|
  // times a condition number of about |arg| ~ x^2 / 2 (observed: <= 0.6 x^2
  // eps at x = -19.5). Hence rtol = 8 eps (1 + x^2).
  ASSERT_FALSE(fixtures::kActivation.empty());
  for (const auto& c : fixtures::kActivation) {
    const Activation a = parse(c.op);
    const double rtol = 8 * kEps * (1 + c.x * c.x);
    const double y = activation_forward(a, std::vector<double>{c.x}, c.alpha)[0];
    const double d = activation_backward_from_input(a, std::vector<double>{c.x},
                                                    std::vector<double>{1.0}, c.alpha)[0];
    EXPECT_TRUE(Near(y, c.y, rtol * std::fabs(c.y) + kSubnormalSlack)) << c.op << "(" << c.x << ")";
    EXPECT_TRUE(Near(d, c.dydx, rtol * std::fabs(c.dydx) + kSubnormalSlack))
        << c.op << "'(" << c.x << ")";
  }
}

TEST(ReferenceActivation, FromOutputMatchesMpmathFixtures) {
  // Input is the correctly rounded y (relative error eps/2). 1 - y^2 and
  // y (1 - y) then have absolute error <= 4 eps (|y| <= 1): absolute, not
  // relative, because the tails of these forms cancel by nature.
  for (const auto& c : fixtures::kActivation) {
    const Activation a = parse(c.op);
    if (a != Activation::relu && a != Activation::leaky_relu && a != Activation::tanh &&
        a != Activation::sigmoid) {
      continue;
    }
    const double d = activation_backward_from_output(a, std::vector<double>{c.y},
                                                     std::vector<double>{1.0}, c.alpha)[0];
    EXPECT_TRUE(Near(d, c.dydx, 4 * kEps)) << c.op << "'(y(" << c.x << "))";
  }
}

TEST(ReferenceCrossEntropy, MatchesMpmathFixtures) {
  // Rounding budget per row (C classes, m = max x' at index k, k = (C + 8) eps):
  // * log p_c = (x'_c - m) - log1p(rest), rest = sum_{j != k} exp(x'_j - m).
  //   rest sums C terms with <= 1 ulp each, and with softcap each x'_j carries
  //   ~2 eps |x'_j| (cap_term), so log1p(rest) is off by <= k (1 + 2 cap) rest.
  //   x'_c - m rounds relative to |x'_c - m| and, with softcap, inherits
  //   eps (|x'_c| + |m|) except at c = k where it is exactly 0. So
  //   |err log p_c| <= e_c = k (|x'_c - m| + [c != k] cap_term_c + (1 + 2 cap) rest).
  // * p_c = exp(log p_c) then has relative error ~ e_c.
  // * row_loss = sum a_c (-log p_c) + z lse^2 is a sum of non-negative terms:
  //   error <= sum a_c e_c + (C + 8) eps (|row_loss| + z lse^2).
  // * grad_c = A p_c - a_c + 2 z lse p_c, times the softcap chain factor:
  //   error <= (C + 8) eps (A + 2 z |lse|) p_c (1 + e_c / eps) + (C + 8) eps (a_c + |grad_c|).
  // * lse = m + log s: error <= (C + 8) eps (1 + |lse|).
  ASSERT_FALSE(fixtures::kCrossEntropy.empty());
  for (const auto& f : fixtures::kCrossEntropy) {
    SCOPED_TRACE(f.name);
    const int64_t C = static_cast<int64_t>(f.logits.size());
    CrossEntropyProblem p;
    p.rows = 1;
    p.classes = C;
    p.logits = f.logits;
    p.soft_targets = f.soft;
    if (f.soft) {
      p.target_prob = f.target_prob;
    } else {
      p.target_index = {f.target};
    }
    p.class_weight = f.class_weight;
    p.label_smoothing = f.label_smoothing;
    p.z_loss = f.z_loss;
    p.softcap = f.softcap;
    p.reduction = Reduction::none;
    const auto r = cross_entropy(p);
    const auto g_saved = cross_entropy_backward(p, r.max, r.log_sum);

    const double k = static_cast<double>(C + 8) * kEps;
    std::vector<double> xc(f.logits.size());
    double m = -testing::kInf;
    std::size_t argmax = 0;
    for (std::size_t c = 0; c < xc.size(); ++c) {
      xc[c] = f.softcap > 0 ? f.softcap * std::tanh(f.logits[c] / f.softcap) : f.logits[c];
      if (xc[c] > m) {
        m = xc[c];
        argmax = c;
      }
    }
    double rest = 0;  // magnitude only, for the tolerance
    for (std::size_t c = 0; c < xc.size(); ++c) {
      if (c != argmax) rest += std::exp(xc[c] - m);
    }
    // Coefficients a_c, from the definition in reference.h.
    std::vector<double> a(xc.size());
    double A = 0;
    for (std::size_t c = 0; c < xc.size(); ++c) {
      const double w = f.class_weight.empty() ? 1.0 : f.class_weight[c];
      const double eps = f.label_smoothing;
      a[c] = f.soft ? w * ((1 - eps) * f.target_prob[c] + eps / static_cast<double>(C))
                    : (1 - eps) * w * (static_cast<int64_t>(c) == f.target ? 1 : 0) +
                          eps / static_cast<double>(C) * w;
      A += a[c];
    }
    double loss_tol = k * (std::fabs(f.row_loss) + f.z_loss * f.lse * f.lse);
    for (std::size_t c = 0; c < xc.size(); ++c) {
      const double cap_term = f.softcap > 0 && c != argmax ? std::fabs(xc[c]) + std::fabs(m) : 0.0;
      const double e_c = k * (std::fabs(xc[c] - m) + cap_term + (1 + 2 * f.softcap) * rest);
      if (a[c] != 0 && std::isfinite(e_c)) loss_tol += a[c] * e_c;
      const double prob = std::exp(xc[c] - f.lse);
      double grad_tol = k * (a[c] + std::fabs(f.grad[c]));
      if (prob > 0) grad_tol += (A + 2 * f.z_loss * std::fabs(f.lse)) * prob * (k + e_c);
      EXPECT_TRUE(Near(r.grad[c], f.grad[c], grad_tol)) << "grad c = " << c;
    }
    EXPECT_TRUE(Near(r.lse[0], f.lse, k * (1 + std::fabs(f.lse))));
    EXPECT_TRUE(Near(r.row_loss[0], f.row_loss, loss_tol));
    EXPECT_TRUE(Near(r.loss, f.row_loss, loss_tol));

    // Backward from the saved lse: where |lse| < 1e15 the saved value still
    // resolves log s, and p = exp(x' - lse) picks up an extra eps |lse|.
    if (std::fabs(r.lse[0]) < 1e15) {
      for (std::size_t c = 0; c < xc.size(); ++c) {
        const double prob = std::exp(xc[c] - f.lse);
        double tol = k * (a[c] + std::fabs(f.grad[c]));
        if (prob > 0) {
          tol += (A + 2 * f.z_loss * std::fabs(f.lse)) * prob * k *
                 (2 + std::fabs(xc[c] - m) + std::fabs(f.lse) +
                  (f.softcap > 0 ? std::fabs(xc[c]) + std::fabs(m) : 0.0));
        }
        EXPECT_TRUE(Near(g_saved[c], f.grad[c], tol)) << "saved-lse grad c = " << c;
      }
    }
  }
}

TEST(ReferenceBce, MatchesMpmathFixtures) {
  // loss = w [pw y softplus(-x) + (1 - y) softplus(x)]: non-negative terms,
  // each a few correctly rounded operations (1 - y, products, log1p, exp,
  // the max-part sum): relative error <= 16 eps.
  // grad = w [(1 - y) s(x) - pw y s(-x)] can cancel, so its error is
  // relative to the sum of magnitudes: 16 eps w ((1 - y) s(x) + pw y s(-x)).
  ASSERT_FALSE(fixtures::kBce.empty());
  BceProblem p;
  p.rows = 1;
  p.cols = static_cast<int64_t>(fixtures::kBce.size());
  for (const auto& c : fixtures::kBce) {
    p.logits.push_back(c.x);
    p.targets.push_back(c.y);
    p.pos_weight.push_back(c.pos_weight);
    p.weight.push_back(c.weight);
  }
  p.reduction = Reduction::none;
  const auto r = bce_with_logits(p);
  for (std::size_t e = 0; e < fixtures::kBce.size(); ++e) {
    const auto& c = fixtures::kBce[e];
    const double s_pos = 1 / (1 + std::exp(-c.x)), s_neg = 1 / (1 + std::exp(c.x));
    const double magnitude = c.weight * ((1 - c.y) * s_pos + c.pos_weight * c.y * s_neg);
    EXPECT_TRUE(Near(r.elem_loss[e], c.loss, 16 * kEps * std::fabs(c.loss) + kSubnormalSlack))
        << "x " << c.x << " y " << c.y << " pw " << c.pos_weight;
    EXPECT_TRUE(Near(r.grad[e], c.grad, 16 * kEps * magnitude + kSubnormalSlack))
        << "x " << c.x << " y " << c.y << " pw " << c.pos_weight;
  }
}

TEST(ReferenceSoftmax, MatchesMpmathFixtures) {
  // Forward (C entries, m = row max): exp(x - m) is exact-argument exp
  // (x - m rounds relative to |x - m|, which exp turns into a relative error
  // eps |x - m|), the sum adds C eps: softmax_c relative error
  // k (1 + |x_c - m|) with k = (C + 8) eps; log_softmax_c = (x_c - m) -
  // log1p(rest) has absolute error k (|x_c - m| + rest), rest = s - 1.
  // Backward from the fixture's (correctly rounded) y:
  //   softmax: y_c (dy_c - <dy, y>) -> k (|y_c| |dy_c| + |y_c| sum |dy_j y_j|);
  //   log:     dy_c - exp(y_c) sum dy -> k (|dy_c| + exp(y_c) (1 + |y_c|) sum |dy_j|).
  ASSERT_FALSE(fixtures::kSoftmax.empty());
  for (const auto& f : fixtures::kSoftmax) {
    const int64_t C = static_cast<int64_t>(f.x.size());
    SCOPED_TRACE("row with " + std::to_string(C) + " entries, x0 = " + std::to_string(f.x[0]));
    const double k = static_cast<double>(C + 8) * kEps;
    const auto y = softmax_forward(1, C, f.x, false);
    const auto ly = softmax_forward(1, C, f.x, true);
    const auto dx = softmax_backward(1, C, f.softmax, f.dy, false);
    const auto dlx = softmax_backward(1, C, f.log_softmax, f.dy, true);
    double m = -testing::kInf, dot_abs = 0, sum_abs = 0;
    for (std::size_t c = 0; c < f.x.size(); ++c) {
      m = std::max(m, f.x[c]);
      dot_abs += std::fabs(f.dy[c] * f.softmax[c]);
      sum_abs += std::fabs(f.dy[c]);
    }
    double s = 0;  // magnitude only, for the tolerance
    for (double v : f.x) s += std::exp(v - m);
    const double rest = s - 1;
    for (std::size_t c = 0; c < f.x.size(); ++c) {
      const double spread = std::isfinite(f.x[c]) ? std::fabs(f.x[c] - m) : 0.0;
      EXPECT_TRUE(Near(y[c], f.softmax[c], k * (1 + spread) * f.softmax[c] + kSubnormalSlack))
          << "softmax c = " << c;
      EXPECT_TRUE(Near(ly[c], f.log_softmax[c], k * (spread + rest)))
          << "log_softmax c = " << c;
      EXPECT_TRUE(Near(dx[c], f.softmax_dx[c],
                       k * f.softmax[c] * (std::fabs(f.dy[c]) + dot_abs) + kSubnormalSlack))
          << "softmax dx c = " << c;
      const double ey = std::exp(f.log_softmax[c]);
      const double ly_mag = std::isfinite(f.log_softmax[c]) ? std::fabs(f.log_softmax[c]) : 0.0;
      EXPECT_TRUE(Near(dlx[c], f.log_softmax_dx[c], k * (std::fabs(f.dy[c]) + ey * (1 + ly_mag) * sum_abs)))
          << "log_softmax dx c = " << c;
    }
  }
}

}  // namespace
}  // namespace actloss::ref
