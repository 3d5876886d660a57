// Reference pointwise activations; semantics in reference.h.
#include "reference.h"

#include <cmath>
#include <cstddef>
#include <limits>

namespace actloss::ref {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Spelled out rather than taken from M_* macros, which are not standard C++.
constexpr double kSqrtHalf = 0.70710678118654752440;      // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;    // 1 / sqrt(2 pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;   // sqrt(2 / pi)
constexpr double kGeluCubic = 0.044715;

double gelu_tanh_u(double x) { return kSqrt2OverPi * (x + kGeluCubic * x * x * x); }

// gelu and silu are x g(x) with g(-inf) = 0 and g(+inf) = 1: the formulas below form inf * 0 at
// the infinities, where the limits are exact.
bool x_times_cdf(Activation act) {
  return act == Activation::gelu_erf || act == Activation::gelu_tanh || act == Activation::silu;
}

double forward(Activation act, double x, double alpha) {
  if (x_times_cdf(act) && std::isinf(x)) return x > 0 ? x : 0.0;
  switch (act) {
    case Activation::relu:
      // "x > 0 ? x : 0" alone would turn NaN into 0.
      if (std::isnan(x)) return x;
      return x > 0 ? x : 0.0;
    case Activation::leaky_relu:
      return x > 0 ? x : alpha * x;
    case Activation::tanh:
      return std::tanh(x);
    case Activation::sigmoid:
      return sigmoid(x);
    case Activation::gelu_erf:
      // 1 + erf(x / sqrt 2) cancels to rounding noise for x << 0; erfc of the
      // negated argument is the same number without cancellation.
      return 0.5 * x * std::erfc(-x * kSqrtHalf);
    case Activation::gelu_tanh:
      // 0.5 * (1 + tanh(u)) == sigmoid(2u), again avoiding 1 + (-1 + tiny).
      return x * sigmoid(2.0 * gelu_tanh_u(x));
    case Activation::silu:
      return x * sigmoid(x);
  }
  return kNaN;
}

double derivative_from_input(Activation act, double x, double alpha) {
  if (x_times_cdf(act) && std::isinf(x)) return x > 0 ? 1.0 : 0.0;
  switch (act) {
    case Activation::relu:
      if (std::isnan(x)) return x;
      return x > 0 ? 1.0 : 0.0;
    case Activation::leaky_relu:
      if (std::isnan(x)) return x;
      return x > 0 ? 1.0 : alpha;
    case Activation::tanh:
      return sech_squared(x);
    case Activation::sigmoid:
      // sigmoid(x) * (1 - sigmoid(x)) loses the small factor once sigmoid(x)
      // rounds to 1; sigmoid(-x) is that factor computed directly.
      return sigmoid(x) * sigmoid(-x);
    case Activation::gelu_erf: {
      const double cdf = 0.5 * std::erfc(-x * kSqrtHalf);
      const double pdf = kInvSqrt2Pi * std::exp(-0.5 * x * x);
      return cdf + x * pdf;
    }
    case Activation::gelu_tanh: {
      const double two_u = 2.0 * gelu_tanh_u(x);
      const double du = kSqrt2OverPi * (1.0 + 3.0 * kGeluCubic * x * x);
      const double s = sigmoid(two_u);
      return s + 2.0 * x * s * sigmoid(-two_u) * du;
    }
    case Activation::silu:
      return sigmoid(x) * (1.0 + x * sigmoid(-x));
  }
  return kNaN;
}

double derivative_from_output(Activation act, double y, double alpha) {
  switch (act) {
    case Activation::relu:
      if (std::isnan(y)) return y;
      return y > 0 ? 1.0 : 0.0;
    case Activation::leaky_relu:
      // For alpha > 0, y > 0 iff x > 0. For alpha <= 0 this is the documented
      // best effort (exact for alpha == 0).
      if (std::isnan(y)) return y;
      return y > 0 ? 1.0 : alpha;
    case Activation::tanh:
      return 1.0 - y * y;
    case Activation::sigmoid:
      return y * (1.0 - y);
    case Activation::gelu_erf:
    case Activation::gelu_tanh:
    case Activation::silu:
      // Not invertible: there is no right answer from y alone.
      return kNaN;
  }
  return kNaN;
}

}  // namespace

std::vector<double> activation_forward(Activation act, std::span<const double> x, double alpha) {
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = forward(act, x[i], alpha);
  return y;
}

std::vector<double> activation_backward_from_input(Activation act, std::span<const double> x,
                                                   std::span<const double> dy, double alpha) {
  std::vector<double> dx(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) dx[i] = dy[i] * derivative_from_input(act, x[i], alpha);
  return dx;
}

std::vector<double> activation_backward_from_output(Activation act, std::span<const double> y,
                                                    std::span<const double> dy, double alpha) {
  std::vector<double> dx(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) dx[i] = dy[i] * derivative_from_output(act, y[i], alpha);
  return dx;
}

std::vector<double> swiglu_forward(std::span<const double> gate, std::span<const double> up) {
  std::vector<double> y(gate.size());
  for (std::size_t i = 0; i < gate.size(); ++i) y[i] = forward(Activation::silu, gate[i], 0.0) * up[i];
  return y;
}

void swiglu_backward(std::span<const double> gate, std::span<const double> up,
                     std::span<const double> dy, std::vector<double>& d_gate,
                     std::vector<double>& d_up) {
  d_gate.resize(gate.size());
  d_up.resize(gate.size());
  for (std::size_t i = 0; i < gate.size(); ++i) {
    d_gate[i] = dy[i] * up[i] * derivative_from_input(Activation::silu, gate[i], 0.0);
    d_up[i] = dy[i] * forward(Activation::silu, gate[i], 0.0);
  }
}

}  // namespace actloss::ref
