// Reference linear layer and its gradients; semantics in reference.h.
#include "reference.h"

#include <cstddef>

namespace actloss::ref {
namespace {

std::size_t at(int64_t i) { return static_cast<std::size_t>(i); }

}  // namespace

std::vector<double> linear_forward(int64_t rows, int64_t in, int64_t out,
                                   std::span<const double> x, std::span<const double> w,
                                   std::span<const double> b) {
  std::vector<double> y(at(rows * out));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double sum = b.empty() ? 0.0 : b[at(o)];
      for (int64_t i = 0; i < in; ++i) sum += x[at(r * in + i)] * w[at(o * in + i)];
      y[at(r * out + o)] = sum;
    }
  }
  return y;
}

LinearGradients linear_backward(int64_t rows, int64_t in, int64_t out,
                                std::span<const double> x, std::span<const double> w,
                                std::span<const double> dy) {
  LinearGradients g;
  g.d_input.assign(at(rows * in), 0.0);
  g.d_weight.assign(at(out * in), 0.0);
  g.d_bias.assign(at(out), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      const double d = dy[at(r * out + o)];
      g.d_bias[at(o)] += d;
      for (int64_t i = 0; i < in; ++i) {
        g.d_input[at(r * in + i)] += d * w[at(o * in + i)];
        g.d_weight[at(o * in + i)] += d * x[at(r * in + i)];
      }
    }
  }
  return g;
}

}  // namespace actloss::ref
