// Atomics under contention and the math / half-precision surface.
#include <cmath>
#include <limits>

#include "sim_test_kernels.h"
#include "test_util.h"

namespace simtest {
namespace {

TEST(Atomics, ContendedUpdatesAreNotLost) {
  const int blocks = 64, n = blocks * 256;
  AtomicResults init{};
  init.max_i = std::numeric_limits<int>::min();
  init.min_i = std::numeric_limits<int>::max();
  DeviceBuffer<AtomicResults> d(std::vector<AtomicResults>{init});
  CUDA_OK(atomics(blocks, d.get()));
  const AtomicResults r = d.to_host()[0];
  EXPECT_EQ(r.add_i, n);
  EXPECT_EQ(r.add_u, 2u * n);
  EXPECT_EQ(r.add_ull, 3ull * n);
  EXPECT_EQ(r.add_f, 0.5f * n);  // exact: every partial sum is representable
  EXPECT_EQ(r.add_d, 0.25 * n);
  EXPECT_EQ(r.max_i, n - 1);
  EXPECT_EQ(r.min_i, -(n - 1));
  EXPECT_EQ(r.cas_count, n);
  EXPECT_EQ(r.or_bits, 0xffffffffu);
  EXPECT_EQ(r.exch_sum, static_cast<unsigned>(n));
}

TEST(Math, IntrinsicsAndHalfPrecision) {
  const std::vector<float> xs = {-3.5f, -1.0f, -0.25f, 0.0f, 0.3f, 1.0f, 2.5f, 7.0f, 1e31f};
  const int n = static_cast<int>(xs.size());
  DeviceBuffer<float> in(xs);
  DeviceBuffer<float> out(xs.size() * kMathColumns);
  CUDA_OK(math_table(in.get(), out.get(), n));
  const auto h = out.to_host();
  for (int i = 0; i < n; ++i) {
    const float x = xs[i];
    const float* o = &h[static_cast<std::size_t>(i) * kMathColumns];
    const float tol = 1e-5f;
    if (x < 80.0f) {
      EXPECT_NEAR(o[0] / std::exp(x), 1.0f, tol) << x;
    }
    EXPECT_NEAR(o[1], std::log(std::fabs(x) + 1.0f), tol * (1 + std::fabs(o[1])));
    EXPECT_NEAR(o[2], x / 3.0f, tol * (1 + std::fabs(x)));
    EXPECT_NEAR(o[3], 1.0f / std::sqrt(std::fabs(x) + 1.0f), tol);
    EXPECT_EQ(o[4], std::min(std::max(x, 0.0f), 1.0f));
    if (x < 80.0f) {
      EXPECT_NEAR(o[5] / (std::exp2(x) * std::log2(std::fabs(x) + 2.0f)), 1.0f, tol);
    }
    EXPECT_NEAR(o[6], std::tanh(x) + std::erf(x) + std::erfc(x), tol * 4);
    EXPECT_NEAR(o[7], 2.0f * x + 1.0f, tol * (1 + std::fabs(x)));
    EXPECT_EQ(o[8], std::fmin(x, 0.5f) + std::fmax(x, -0.5f));
    if (x < 80.0f) {
      EXPECT_NEAR(o[9], std::log1p(std::exp(x)), tol * (1 + std::fabs(x)));
    }
    if (std::fabs(x) < 60000.0f) {
      EXPECT_NEAR(o[10], x, std::fabs(x) * 1e-3f + 1e-7f);   // half: 11-bit significand
      EXPECT_NEAR(o[11], x, std::fabs(x) * 8e-3f + 1e-30f);  // bfloat16: 8-bit significand
    }
    if (std::fabs(x) < 200.0f) {
      const float hx = o[10];
      EXPECT_NEAR(o[12], hx * hx + 1.0f, (hx * hx + 1.0f) * 1e-3f);
      EXPECT_NEAR(o[13], std::exp(x * 0.25f), std::exp(x * 0.25f) * 2e-3f);
      const float bx = o[11];
      EXPECT_NEAR(o[14], bx * bx + 1.0f, (bx * bx + 1.0f) * 8e-3f);
      EXPECT_NEAR(o[15], 2 * hx * hx, 2 * hx * hx * 2e-3f + 1e-7f);
    }
    EXPECT_EQ(o[16], x + 1.0f);
    const unsigned ui = static_cast<unsigned>(i);
    EXPECT_EQ(o[17], static_cast<float>(__builtin_popcount(ui) + __builtin_ffs(i) +
                                        __builtin_clz(ui + 1)));
    unsigned rev = 0;
    for (int bit = 0; bit < 32; ++bit) rev |= ((ui >> bit) & 1u) << (31 - bit);
    EXPECT_EQ(o[18], static_cast<float>(rev >> 24));
    EXPECT_EQ(o[19], 0.0f);
    if (x > 1e30f) {
      EXPECT_TRUE(std::isinf(o[20]));
    } else {
      EXPECT_EQ(o[20], x);
    }
    EXPECT_EQ(o[21], static_cast<float>(std::min(i, 3) + std::max(i, 3)));
    if (std::fabs(x) < 1e15f) {
      EXPECT_NEAR(o[22], std::log1p(x * x) + std::exp(-x * x) + std::log(2.0f),
                  tol * (1 + std::fabs(o[22])));
    } else {
      EXPECT_TRUE(std::isinf(o[22]));
    }
    if (std::fabs(x) < 1e8f) {
      EXPECT_EQ(o[23], std::nearbyint(x * 10.0f));
    } else {
      EXPECT_EQ(o[23], static_cast<float>(std::numeric_limits<int>::max()));  // saturates
    }
  }
}

}  // namespace
}  // namespace simtest
