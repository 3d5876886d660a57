// SwiGLU on the CPU path and on Device::cuda, against the float64 reference, in the layout LLM
// training uses: gate and up the two halves of one [rows x 2n] projection, the gradient the two
// halves of one [rows x 2n] buffer (or of the projection itself, in place).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <vector>

#include <actloss/actloss.h>

#include "host/half.h"
#include "host/reference/reference.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr double kInf = std::numeric_limits<double>::infinity();

class Swiglu : public testing::TestWithParam<Device> {
 protected:
  static constexpr std::int64_t kRows = 23, kN = 45, kStride = 2 * kN;
  void SetUp() override {
    if (GetParam() == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  }
  Exec exec() const {
    Exec e;
    e.device = GetParam();
    return e;
  }
  void sync() const {
    if (GetParam() == Device::cuda) synchronize_or_fail();
  }
  // A [kRows x 2 kN] projection: gate in columns [0, kN), up in [kN, 2 kN); the first gates are
  // the special values, the rest random, some near silu's minimum (-1.278), where silu' is 0.
  static Bytes projection(DType dtype, std::uint64_t seed) {
    std::vector<double> values = random_values(kRows * kStride, -6, 6, seed);
    const double special[] = {-kInf, kInf, std::nan(""), 0.0, -1.2784645, -90.0, 90.0, -1e30};
    for (std::size_t i = 0; i < std::size(special); ++i) values[i] = special[i];
    Bytes image(static_cast<std::size_t>(kRows * kStride * dtype_size(dtype)));
    for (std::int64_t i = 0; i < kRows * kStride; ++i)
      host::store_from_double(image.data(), dtype, i, values[static_cast<std::size_t>(i)]);
    return image;
  }
  static double at(const Bytes& image, DType dtype, std::int64_t row, std::int64_t col) {
    return host::load_as_double(image.data(), dtype, row * kStride + col);
  }
};

// |got - want| <= atol + rtol |want|, NaN where and only where the reference is NaN. rtol: the
// float kernel's silu is within a few ulp (expf and a fast division of 2 ulp each, then a
// product: 2^-20 covers them), plus the output dtype's rounding (2^-8 relative for bf16); atol is
// given per output.
void expect_close(double got, double want, double rtol, double atol, const char* what,
                  std::int64_t row, std::int64_t col) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << " (" << row << ", " << col << "): " << got;
    return;
  }
  if (std::isinf(want)) {
    EXPECT_EQ(got, want) << what << " (" << row << ", " << col << ")";
    return;
  }
  EXPECT_LE(std::fabs(got - want), atol + rtol * std::fabs(want))
      << what << " (" << row << ", " << col << "): got " << got << ", want " << want;
}

TEST_P(Swiglu, HalvesOfOneProjectionMatchTheReference) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(to_string(dtype));
    const double rtol = 0x1p-20 + (dtype == DType::f32 ? 0.0 : 0x1p-8);
    const Bytes x_image = projection(dtype, 61), dy_image = projection(dtype, 62);
    Memory x(GetParam(), x_image.size()), dy(GetParam(), x_image.size() / 2);
    x.upload(x_image);
    // dy is [kRows x kN], dense: the first half of each row of dy_image.
    Bytes dy_dense(static_cast<std::size_t>(kRows * kN * dtype_size(dtype)));
    for (std::int64_t r = 0; r < kRows; ++r)
      for (std::int64_t c = 0; c < kN; ++c)
        host::store_from_double(dy_dense.data(), dtype, r * kN + c, at(dy_image, dtype, r, c));
    dy.upload(dy_dense);
    const char* gate = static_cast<const char*>(x.get());
    const char* up = gate + kN * dtype_size(dtype);

    Memory y(GetParam(), x_image.size() / 2), grad(GetParam(), x_image.size());
    SwigluForwardArgs forward;
    forward.rows = kRows;
    forward.n = kN;
    forward.gate = gate;
    forward.gate_dtype = dtype;
    forward.gate_row_stride = kStride;
    forward.up = up;
    forward.up_dtype = dtype;
    forward.up_row_stride = kStride;
    forward.y = y.get();
    forward.y_dtype = dtype;
    ASSERT_TRUE(swiglu_forward(forward, exec()).ok());

    SwigluBackwardArgs backward;
    backward.rows = kRows;
    backward.n = kN;
    backward.gate = gate;
    backward.gate_dtype = dtype;
    backward.gate_row_stride = kStride;
    backward.up = up;
    backward.up_dtype = dtype;
    backward.up_row_stride = kStride;
    backward.dy = dy.get();
    backward.dy_dtype = dtype;
    backward.d_gate = grad.get();
    backward.d_gate_dtype = dtype;
    backward.d_gate_row_stride = kStride;
    backward.d_up = static_cast<char*>(grad.get()) + kN * dtype_size(dtype);
    backward.d_up_dtype = dtype;
    backward.d_up_row_stride = kStride;
    ASSERT_TRUE(swiglu_backward(backward, exec()).ok());
    sync();

    const Bytes ys = y.download(), grads = grad.download();
    for (std::int64_t r = 0; r < kRows; ++r) {
      for (std::int64_t c = 0; c < kN; ++c) {
        const double g = at(x_image, dtype, r, c), u = at(x_image, dtype, r, kN + c);
        const double d = host::load_as_double(dy_dense.data(), dtype, r * kN + c);
        const std::vector<double> want_y = ref::swiglu_forward(std::vector<double>{g},
                                                               std::vector<double>{u});
        std::vector<double> want_dg, want_du;
        ref::swiglu_backward(std::vector<double>{g}, std::vector<double>{u},
                             std::vector<double>{d}, want_dg, want_du);
        // silu'(g) = s (1 + g s(-g)) cancels near g = -1.278: its float error is a few ulp of
        // the terms, |g| s s(-g) <= 1 + |g|, times |dy up|.
        const double slope_atol = 0x1p-20 * std::fabs(d * u) * (1.0 + std::fabs(g));
        expect_close(host::load_as_double(ys.data(), dtype, r * kN + c), want_y[0], rtol,
                     1e-37, "y", r, c);
        expect_close(host::load_as_double(grads.data(), dtype, r * kStride + c), want_dg[0],
                     rtol, slope_atol, "d_gate", r, c);
        expect_close(host::load_as_double(grads.data(), dtype, r * kStride + kN + c),
                     want_du[0], rtol, 1e-37, "d_up", r, c);
      }
    }
  }
}

// d_gate over gate and d_up over up (the projection's own memory) gives the out-of-place bits.
TEST_P(Swiglu, InPlaceOverTheProjectionEqualsOutOfPlace) {
  const DType dtype = DType::bf16;
  const Bytes x_image = projection(dtype, 71), dy_image = projection(dtype, 72);
  Memory x(GetParam(), x_image.size()), dy(GetParam(), dy_image.size()),
      grad(GetParam(), x_image.size());
  x.upload(x_image);
  dy.upload(dy_image);
  const std::int64_t half = kN * dtype_size(dtype);
  SwigluBackwardArgs args;
  args.rows = kRows;
  args.n = kN;
  args.gate = x.get();
  args.gate_dtype = args.up_dtype = args.dy_dtype = args.d_gate_dtype = args.d_up_dtype = dtype;
  args.gate_row_stride = args.up_row_stride = args.dy_row_stride = kStride;
  args.d_gate_row_stride = args.d_up_row_stride = kStride;
  args.up = static_cast<char*>(x.get()) + half;
  args.dy = dy.get();
  args.d_gate = grad.get();
  args.d_up = static_cast<char*>(grad.get()) + half;
  ASSERT_TRUE(swiglu_backward(args, exec()).ok());
  SwigluBackwardArgs in_place = args;
  in_place.d_gate = x.get();
  in_place.d_up = static_cast<char*>(x.get()) + half;
  ASSERT_TRUE(swiglu_backward(in_place, exec()).ok());
  sync();
  EXPECT_EQ(x.download(), grad.download());
}

TEST_P(Swiglu, OverlapsAndMissingBuffersAreRefusedByName) {
  const DType dtype = DType::f32;
  Memory x(GetParam(), kRows * kStride * 4), dy(GetParam(), kRows * kStride * 4),
      grad(GetParam(), kRows * kStride * 4);
  const Bytes before = grad.download();
  SwigluBackwardArgs args;
  args.rows = kRows;
  args.n = kN;
  args.gate = x.get();
  args.gate_dtype = args.up_dtype = args.dy_dtype = args.d_gate_dtype = args.d_up_dtype = dtype;
  args.gate_row_stride = args.up_row_stride = args.dy_row_stride = kStride;
  args.d_gate_row_stride = args.d_up_row_stride = kStride;
  args.up = static_cast<float*>(x.get()) + kN;
  args.dy = dy.get();
  args.d_gate = grad.get();
  args.d_up = static_cast<float*>(grad.get()) + kN;
  const auto refused = [&](const SwigluBackwardArgs& bad, const char* argument) {
    const Status status = swiglu_backward(bad, exec());
    EXPECT_EQ(status.code(), StatusCode::invalid_argument) << argument;
    EXPECT_EQ(status.argument(), argument) << status.message();
  };
  SwigluBackwardArgs bad = args;
  bad.d_up = static_cast<float*>(grad.get()) + kN - 1;  // shares a column with d_gate
  refused(bad, "d_gate");
  bad = args;
  bad.d_gate = static_cast<float*>(x.get()) + 1;  // over gate, but not the same view
  refused(bad, "d_gate");
  bad = args;
  bad.d_up = nullptr;
  refused(bad, "d_up");
  bad = args;
  bad.gate_row_stride = kN - 1;
  refused(bad, "gate_row_stride");
  sync();
  EXPECT_EQ(grad.download(), before);
}

INSTANTIATE_TEST_SUITE_P(Devices, Swiglu, testing::Values(Device::cpu, Device::cuda),
                         testing::PrintToStringParamName());

}  // namespace
}  // namespace actloss::test
