// Reference mean squared error; semantics in reference.h.
#include "reference.h"

#include <cstddef>

namespace actloss::ref {
namespace {

std::size_t at(int64_t i) { return static_cast<std::size_t>(i); }

}  // namespace

MseResult mse(const MseProblem& p) {
  MseResult r;
  r.elem_loss.assign(at(p.n), 0.0);
  r.grad.assign(at(p.n), 0.0);

  double scale = p.grad_scale;
  if (p.reduction == Reduction::mean) scale = p.n == 0 ? 0.0 : scale / static_cast<double>(p.n);

  double total = 0;
  for (int64_t e = 0; e < p.n; ++e) {
    const double d = p.input[at(e)] - p.target[at(e)];
    r.elem_loss[at(e)] = d * d;
    total += d * d;
    double up = 1.0;
    if (!p.upstream.empty()) up = p.reduction == Reduction::none ? p.upstream[at(e)] : p.upstream[0];
    r.grad[at(e)] = 2.0 * d * up * scale;
  }
  r.loss = total;
  if (p.reduction == Reduction::mean) r.loss = p.n == 0 ? 0.0 : total / static_cast<double>(p.n);
  return r;
}

}  // namespace actloss::ref
