// Reference binary cross-entropy with logits; semantics in reference.h.
#include "reference.h"

#include <cmath>
#include <cstddef>

namespace actloss::ref {
namespace {

std::size_t at(int64_t i) { return static_cast<std::size_t>(i); }

// A zero coefficient on an infinite softplus costs nothing (the limit of
// y log y); NaN still comes through.
double times(double coefficient, double value) {
  if (coefficient == 0 && !std::isnan(value)) return 0.0;
  return coefficient * value;
}

}  // namespace

BceResult bce_with_logits(const BceProblem& p) {
  const int64_t n = p.rows * p.cols;
  BceResult r;
  r.elem_loss.assign(at(n), 0.0);
  r.grad.assign(at(n), 0.0);

  double scale = p.grad_scale;
  if (p.reduction == Reduction::mean) scale = n == 0 ? 0.0 : scale / static_cast<double>(n);

  double total = 0;
  for (int64_t e = 0; e < n; ++e) {
    const int64_t col = e % p.cols;
    const double x = p.logits[at(e)];
    const double y = p.targets[at(e)];
    const double pw = p.pos_weight.empty() ? 1.0 : p.pos_weight[at(col)];
    const double w = p.weight.empty() ? 1.0 : p.weight[at(e)];

    // -log sigmoid(x) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x):
    // both terms are non-negative, so nothing cancels.
    const double inner = times(pw * y, softplus(-x)) + times(1.0 - y, softplus(x));
    const double loss = times(w, inner);
    r.elem_loss[at(e)] = loss;
    total += loss;

    double up = 1.0;
    if (!p.upstream.empty()) up = p.reduction == Reduction::none ? p.upstream[at(e)] : p.upstream[0];
    const double slope = (1.0 - y) * sigmoid(x) - pw * y * sigmoid(-x);
    r.grad[at(e)] = w * slope * up * scale;
  }
  r.loss = total;
  if (p.reduction == Reduction::mean) r.loss = n == 0 ? 0.0 : total / static_cast<double>(n);
  return r;
}

}  // namespace actloss::ref
