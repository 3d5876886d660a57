// Reference cross-entropy; the semantics are specified in reference.h.
#include "reference.h"

#include <cmath>
#include <cstddef>
#include <limits>

namespace actloss::ref {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::size_t at(int64_t i) { return static_cast<std::size_t>(i); }

// A zero coefficient on an infinite term contributes nothing (the limit of
// q log q), but NaN must still come through.
double times(double coefficient, double value) {
  if (coefficient == 0 && !std::isnan(value)) return 0.0;
  return coefficient * value;
}

double class_weight(const CrossEntropyProblem& p, int64_t c) {
  return p.class_weight.empty() ? 1.0 : p.class_weight[at(c)];
}

bool softcap_on(const CrossEntropyProblem& p) { return p.softcap > 0; }

double capped(const CrossEntropyProblem& p, double x) {
  return softcap_on(p) ? p.softcap * std::tanh(x / p.softcap) : x;
}

double capped_slope(const CrossEntropyProblem& p, double x) {
  return softcap_on(p) ? sech_squared(x / p.softcap) : 1.0;
}

enum class RowKind { active, ignored, invalid };

RowKind row_kind(const CrossEntropyProblem& p, int64_t i) {
  if (p.soft_targets) return RowKind::active;
  const int64_t y = p.target_index[at(i)];
  if (y == p.ignore_index) return RowKind::ignored;
  if (y < 0 || y >= p.classes) return RowKind::invalid;
  return RowKind::active;
}

// Coefficients a_c of (lse - x'_c) in an active row's loss.
std::vector<double> target_coefficients(const CrossEntropyProblem& p, int64_t i) {
  const int64_t C = p.classes;
  const double eps = p.label_smoothing;
  const double smooth = eps / static_cast<double>(C);
  std::vector<double> a(at(C), 0.0);
  if (p.soft_targets) {
    for (int64_t c = 0; c < C; ++c) {
      const double q = p.target_prob[at(i * C + c)];
      a[at(c)] = class_weight(p, c) * ((1.0 - eps) * q + smooth);
    }
    return a;
  }
  const int64_t y = p.target_index[at(i)];
  a[at(y)] = (1.0 - eps) * class_weight(p, y);
  // Skipped when eps == 0 so that unsmoothed rows have a_c exactly 0 off the
  // target (masked classes then cost nothing).
  if (eps != 0) {
    for (int64_t c = 0; c < C; ++c) a[at(c)] += smooth * class_weight(p, c);
  }
  return a;
}

double compute_weight_sum(const CrossEntropyProblem& p) {
  if (p.soft_targets) return static_cast<double>(p.rows);
  double sum = 0;
  for (int64_t i = 0; i < p.rows; ++i) {
    switch (row_kind(p, i)) {
      case RowKind::ignored: break;
      case RowKind::invalid: sum += kNaN; break;
      case RowKind::active: sum += class_weight(p, p.target_index[at(i)]); break;
    }
  }
  return sum;
}

// d(reduced, upstream-weighted loss) / d(row_loss_i), times grad_scale.
double row_multiplier(const CrossEntropyProblem& p, int64_t i, double weight_sum) {
  double up = 1.0;
  if (!p.upstream.empty()) up = p.reduction == Reduction::none ? p.upstream[at(i)] : p.upstream[0];
  double m = up * p.grad_scale;
  if (p.reduction == Reduction::mean) m /= weight_sum;
  return m;
}

bool zero_denominator(const CrossEntropyProblem& p, double weight_sum) {
  return p.reduction == Reduction::mean && weight_sum == 0;
}

// Writes the gradient of row i, given its log-probabilities (of the capped
// logits) and its lse.
void row_gradient(const CrossEntropyProblem& p, int64_t i, const std::vector<double>& log_prob,
                  double lse, const std::vector<double>& a, double multiplier,
                  std::vector<double>& grad) {
  const int64_t C = p.classes;
  double A = 0;
  for (int64_t c = 0; c < C; ++c) A += a[at(c)];
  for (int64_t c = 0; c < C; ++c) {
    const double prob = std::exp(log_prob[at(c)]);
    double g = -a[at(c)];
    // With prob == 0 these terms vanish exactly, also when lse is infinite.
    if (prob != 0) {
      g += A * prob;
      if (p.z_loss != 0) g += 2.0 * p.z_loss * lse * prob;
    }
    const double x = p.logits[at(i * C + c)];
    grad[at(i * C + c)] = g * multiplier * capped_slope(p, x);
  }
}

}  // namespace

CrossEntropyResult cross_entropy(const CrossEntropyProblem& p) {
  const int64_t R = p.rows, C = p.classes;
  CrossEntropyResult r;
  r.row_loss.assign(at(R), 0.0);
  r.lse.assign(at(R), 0.0);
  r.max.assign(at(R), 0.0);
  r.log_sum.assign(at(R), 0.0);
  r.grad.assign(at(R * C), 0.0);
  r.weight_sum = compute_weight_sum(p);

  std::vector<double> xc(at(C)), log_prob(at(C));
  for (int64_t i = 0; i < R; ++i) {
    // A plain "x > m" scan would skip NaN (and take an all-NaN row for an
    // all -inf one), so NaN is looked for explicitly.
    double m = -kInf;
    int64_t argmax = 0;
    bool has_nan = false;
    for (int64_t c = 0; c < C; ++c) {
      xc[at(c)] = capped(p, p.logits[at(i * C + c)]);
      if (std::isnan(xc[at(c)])) has_nan = true;
      if (xc[at(c)] > m) {
        m = xc[at(c)];
        argmax = c;
      }
    }
    double lse, log_s;
    if (has_nan || m == kInf) {
      // +inf: inf - inf has no value; NaN as in PyTorch.
      lse = log_s = kNaN;
      for (int64_t c = 0; c < C; ++c) log_prob[at(c)] = kNaN;
    } else if (m == -kInf) {
      // Nothing has positive mass: softmax's all -inf convention.
      lse = log_s = -kInf;
      for (int64_t c = 0; c < C; ++c) log_prob[at(c)] = -kInf;
    } else {
      // s = 1 + rest, where rest sums every term but the max's. log1p(rest)
      // keeps full relative accuracy when one logit dominates (rest tiny),
      // and with it the relative accuracy of small losses.
      double rest = 0;
      for (int64_t c = 0; c < C; ++c) {
        if (c != argmax) rest += std::exp(xc[at(c)] - m);
      }
      log_s = std::log1p(rest);
      lse = m + log_s;
      // Relative to m, not to lse: m + log_s may round away log_s entirely
      // for huge logits, while (x'_c - m) is exact enough.
      for (int64_t c = 0; c < C; ++c) log_prob[at(c)] = (xc[at(c)] - m) - log_s;
    }
    r.lse[at(i)] = lse;
    r.max[at(i)] = m;
    r.log_sum[at(i)] = log_s;

    const RowKind kind = row_kind(p, i);
    if (kind == RowKind::ignored) continue;
    if (kind == RowKind::invalid) {
      r.row_loss[at(i)] = kNaN;
      for (int64_t c = 0; c < C; ++c) r.grad[at(i * C + c)] = kNaN;
      continue;
    }
    const std::vector<double> a = target_coefficients(p, i);
    double loss = 0;
    for (int64_t c = 0; c < C; ++c) loss += times(a[at(c)], -log_prob[at(c)]);
    if (p.z_loss != 0) loss += p.z_loss * lse * lse;
    r.row_loss[at(i)] = loss;
    row_gradient(p, i, log_prob, lse, a, row_multiplier(p, i, r.weight_sum), r.grad);
  }

  double total = 0;
  for (int64_t i = 0; i < R; ++i) total += r.row_loss[at(i)];
  r.loss = total;
  if (p.reduction == Reduction::mean) r.loss = r.weight_sum == 0 ? 0.0 : total / r.weight_sum;
  if (zero_denominator(p, r.weight_sum)) r.grad.assign(at(R * C), 0.0);
  return r;
}

std::vector<double> cross_entropy_backward(const CrossEntropyProblem& p,
                                           std::span<const double> max,
                                           std::span<const double> log_sum) {
  const int64_t R = p.rows, C = p.classes;
  std::vector<double> grad(at(R * C), 0.0);
  const double weight_sum = compute_weight_sum(p);
  if (zero_denominator(p, weight_sum)) return grad;

  std::vector<double> log_prob(at(C));
  for (int64_t i = 0; i < R; ++i) {
    const RowKind kind = row_kind(p, i);
    if (kind == RowKind::ignored) continue;
    if (kind == RowKind::invalid) {
      for (int64_t c = 0; c < C; ++c) grad[at(i * C + c)] = kNaN;
      continue;
    }
    const double m = max[at(i)], log_s = log_sum[at(i)];
    // -inf - -inf would be NaN; an all -inf row has probability 0 by the
    // forward's convention. A NaN log s (a NaN among -inf logits) stays NaN.
    const bool no_mass = m == -kInf && !std::isnan(log_s);
    for (int64_t c = 0; c < C; ++c) {
      log_prob[at(c)] = no_mass ? -kInf : (capped(p, p.logits[at(i * C + c)]) - m) - log_s;
    }
    row_gradient(p, i, log_prob, m + log_s, target_coefficients(p, i),
                 row_multiplier(p, i, weight_sum), grad);
  }
  return grad;
}

std::vector<std::int64_t> predicted_classes(int64_t rows, int64_t cols,
                                            std::span<const double> values) {
  std::vector<std::int64_t> predicted(at(rows));
  for (int64_t i = 0; i < rows; ++i) {
    int64_t best = 0;
    for (int64_t c = 1; c < cols; ++c) {
      const double x = values[at(i * cols + c)], incumbent = values[at(i * cols + best)];
      if (std::isnan(incumbent)) break;  // the first NaN wins
      if (std::isnan(x) || x > incumbent) best = c;
    }
    predicted[at(i)] = best;
  }
  return predicted;
}

double token_accuracy(std::span<const std::int64_t> predicted,
                      std::span<const std::int64_t> targets, std::int64_t ignore_index,
                      std::int64_t classes) {
  double counted = 0.0, correct = 0.0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] == ignore_index) continue;
    if (targets[i] < 0 || targets[i] >= classes) return kNaN;
    counted += 1.0;
    if (predicted[i] == targets[i]) correct += 1.0;
  }
  return counted == 0.0 ? 0.0 : correct / counted;
}

}  // namespace actloss::ref
