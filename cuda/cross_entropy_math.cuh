// Device math that the cross-entropy kernels (cuda/cross_entropy.cu) and the vocabulary-parallel
// ones (cuda/cross_entropy_shard.cu) must share to the bit: a sharded row's loss and gradient
// agree with the unsharded call's only if both cap, weigh and index alike.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/common.cuh"

namespace actloss::cuda {

// coefficient * (m - x) in double: the difference of two floats is exact there, and does not
// overflow for logits beyond +-1.7e38 (the loss itself may well be finite). A zero coefficient
// on an infinite gap (a masked class that carries no target mass) costs nothing; NaN still comes
// through.
__device__ __forceinline__ double times_gap(float coefficient, float m, float x) {
  const double gap = static_cast<double>(m) - static_cast<double>(x);
  return coefficient == 0.0f && gap == gap ? 0.0 : static_cast<double>(coefficient) * gap;
}

// x' = cap tanh(x / cap) and its slope 1 - tanh^2 = sech^2: tanh|u| = -e / (2 + e) with
// e = expm1(-2|u|), and sech^2 u = 4 E / (1 + E)^2 with E = exp(-2|u|), each keep full relative
// accuracy at both ends (1 - tanh^2 would cancel to 0 where tanh rounds to 1). value() uses the
// same formula, so the statistics and the gradient see identical x'.
struct Softcap {
  float cap;  // 0: off

  __device__ __forceinline__ float value(float x) const {
    if (cap == 0.0f) return x;
    const float u = x / cap;
    const float e = expm1f(-2.0f * fabsf(u));
    return cap * copysignf(-e / (2.0f + e), u);
  }
  __device__ __forceinline__ float value(float x, float& slope) const {
    if (cap == 0.0f) {
      slope = 1.0f;
      return x;
    }
    const float u = x / cap;
    const float e = expm1f(-2.0f * fabsf(u));
    // sech^2 from E = exp(-2|u|) itself: 1 + e would cancel to a few correct bits where E is
    // small (a logit several caps out), and the slope is E's size there.
    const float decay = expf(-2.0f * fabsf(u));
    const float d = 1.0f + decay;
    slope = 4.0f * decay / (d * d);
    return cap * copysignf(-e / (2.0f + e), u);
  }
};

// Element `at` of int32 or int64 class indices.
__device__ __forceinline__ std::int64_t class_index_at(const void* targets, bool i32,
                                                       std::int64_t at) {
  return i32 ? std::int64_t{static_cast<const std::int32_t*>(targets)[at]}
             : static_cast<const std::int64_t*>(targets)[at];
}

}  // namespace actloss::cuda
