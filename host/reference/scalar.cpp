// Scalar building blocks shared by the reference ops.
#include "reference.h"

#include <cmath>

namespace actloss::ref {

double sigmoid(double x) {
  // Only ever exponentiate a non-positive number, so exp cannot overflow and
  // the small tail keeps full relative accuracy. NaN takes the second branch
  // and stays NaN.
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

double softplus(double x) {
  // Written out instead of std::max so that a NaN x cannot be dropped by the
  // argument order of a comparison.
  const double positive_part = x > 0 ? x : 0.0;
  return positive_part + std::log1p(std::exp(-std::fabs(x)));
}

double sech_squared(double x) {
  // cosh overflows to inf for |x| > ~710, where the true value is below the
  // smallest double anyway, so 1 / inf = 0 is the right answer.
  const double c = std::cosh(x);
  return 1.0 / (c * c);
}

}  // namespace actloss::ref
