// Reference softmax / log-softmax; semantics in reference.h.
#include "reference.h"

#include <cmath>
#include <cstddef>
#include <limits>

namespace actloss::ref {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::size_t at(int64_t i) { return static_cast<std::size_t>(i); }

}  // namespace

std::vector<double> softmax_forward(int64_t rows, int64_t cols, std::span<const double> x,
                                    bool log) {
  std::vector<double> y(at(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    const double* row = x.data() + i * cols;
    double* out = y.data() + i * cols;
    // A plain "x > m" max would skip NaN (and report an all-NaN row as all
    // -inf), so NaN is looked for explicitly.
    double m = -kInf;
    int64_t argmax = 0;
    bool has_nan = false;
    for (int64_t c = 0; c < cols; ++c) {
      if (std::isnan(row[c])) has_nan = true;
      if (row[c] > m) {
        m = row[c];
        argmax = c;
      }
    }
    if (has_nan || m == kInf) {
      // +inf: inf - inf has no value; NaN as in PyTorch.
      for (int64_t c = 0; c < cols; ++c) out[c] = kNaN;
      continue;
    }
    if (m == -kInf) {
      // No entry has positive mass; choose the limit-free convention
      // "probability 0" over NaN (-inf - -inf).
      for (int64_t c = 0; c < cols; ++c) out[c] = log ? -kInf : 0.0;
      continue;
    }
    // s = 1 + rest with the max's own term split off, so that log1p keeps
    // the dominant entry's log-probability -log1p(rest) accurate when rest
    // is tiny.
    double rest = 0;
    for (int64_t c = 0; c < cols; ++c) {
      if (c != argmax) rest += std::exp(row[c] - m);
    }
    const double s = 1.0 + rest;
    const double log_s = std::log1p(rest);
    for (int64_t c = 0; c < cols; ++c) {
      out[c] = log ? (row[c] - m) - log_s : std::exp(row[c] - m) / s;
    }
  }
  return y;
}

std::vector<double> softmax_backward(int64_t rows, int64_t cols, std::span<const double> y,
                                     std::span<const double> dy, bool log) {
  std::vector<double> dx(at(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    const double* yr = y.data() + i * cols;
    const double* dyr = dy.data() + i * cols;
    double* out = dx.data() + i * cols;
    if (log) {
      double sum_dy = 0;
      for (int64_t c = 0; c < cols; ++c) sum_dy += dyr[c];
      for (int64_t c = 0; c < cols; ++c) out[c] = dyr[c] - std::exp(yr[c]) * sum_dy;
    } else {
      double dot = 0;
      for (int64_t c = 0; c < cols; ++c) dot += dyr[c] * yr[c];
      for (int64_t c = 0; c < cols; ++c) out[c] = yr[c] * (dyr[c] - dot);
    }
  }
  return dx;
}

}  // namespace actloss::ref
