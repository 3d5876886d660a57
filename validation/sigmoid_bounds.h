// The error bounds of the kernels' sigmoid pair (ew::sigmoid_pair, cuda/elementwise.cuh), which
// the sigmoid, silu and gelu_tanh activations and SwiGLU share, stated once for their cases
// (validation/activation.cpp derives them).
#pragma once

#include <cmath>

namespace actloss::validation {

// sigmoid's small side below float's normal range: expf's 2^-148 and a product's 2^-150.
inline constexpr double kSmallAbs = 0x1p-147;

// The relative (in float's roundoff) and absolute errors of sigmoid(x) and sigmoid(-x) from
// e = expf(-|x|): the larger of the two is 1 / (1 + e), 7 roundings; the smaller e times it, 12
// and kSmallAbs.
struct PairError {
  double pos_rel, pos_abs, neg_rel, neg_abs;
};

inline PairError pair_error(double x) {
  if (x >= 0) return {7, 0, 12, kSmallAbs};
  return {12, kSmallAbs, 7, 0};
}

// An error bound that overflowed (an infinite term of an infinite result) counts as none: the
// comparison then asks for the infinity itself.
inline double finite_or_zero(double err) { return std::isfinite(err) ? err : 0.0; }

}  // namespace actloss::validation
