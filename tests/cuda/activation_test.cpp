// Activations on Device::cuda against the float64 reference (host/reference/reference.h), through
// the public API: every activation x dtype pair x sizes across the 8-element pack and 32-element
// mask-word boundaries, aligned and misaligned (base + 1 element forces the scalar path),
// forward, backward from the input and from the output, in place, the relu mask, and the
// multi-step grid-stride path. Outputs start poisoned (NaN), so an element not written fails.
//
// Tolerances are |actual - expected| <= atol + rtol |expected|, expected being the reference
// rounded once to the output dtype:
//  * f32 arithmetic (math_error below): a few ulp for products and exp/tanh with exact
//    arguments; 2^-14 for the GELUs, whose tails exp(-z^2) / exp(2u) multiply the argument's
//    rounding error by up to ~2z^2 ~ 200 before the result underflows; an absolute 2^-21 (times
//    |dy| <= 2) for the derivatives that cross zero by cancellation (silu near x = -1.28, the
//    GELUs near -0.75); 1e-40 for results in float's subnormal range.
//  * f16 / bf16 outputs add one unit in the last place (2^-10, 2^-7 relative; 2^-24, 2^-133
//    absolute at the subnormals): the kernel rounds float to the output dtype, the reference
//    rounds double, and the two roundings can land on neighbours.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <actloss/activation.h>

#include "host/reference/reference.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr float kAlpha = 0.01f;

const Activation kActivations[] = {Activation::relu,     Activation::leaky_relu,
                                   Activation::tanh,     Activation::sigmoid,
                                   Activation::gelu_erf, Activation::gelu_tanh,
                                   Activation::silu};

bool has_output_slope(Activation a) {
  return a == Activation::relu || a == Activation::leaky_relu || a == Activation::tanh ||
         a == Activation::sigmoid;
}

ref::Activation to_ref(Activation a) {
  switch (a) {
    case Activation::relu: return ref::Activation::relu;
    case Activation::leaky_relu: return ref::Activation::leaky_relu;
    case Activation::tanh: return ref::Activation::tanh;
    case Activation::sigmoid: return ref::Activation::sigmoid;
    case Activation::gelu_erf: return ref::Activation::gelu_erf;
    case Activation::gelu_tanh: return ref::Activation::gelu_tanh;
    case Activation::silu: return ref::Activation::silu;
  }
  return ref::Activation::relu;
}

struct Dtypes {
  DType in, out;
};
// Same-dtype pairs, and two mixed ones (16-bit in / f32 out, f32 in / 16-bit out).
const Dtypes kDtypePairs[] = {{DType::f32, DType::f32},
                              {DType::f16, DType::f16},
                              {DType::bf16, DType::bf16},
                              {DType::f16, DType::f32},
                              {DType::f32, DType::bf16}};

// Across the pack (8) and mask word (32) boundaries, and several blocks of 256 threads.
const std::int64_t kAllSizes[] = {0, 1, 3, 4, 5, 31, 32, 33, 1000, 4099, 65537};
const std::int64_t kSomeSizes[] = {5, 33, 4099};

struct MathError {
  double rtol, atol_forward, atol_backward;
};

MathError math_error(Activation a) {
  constexpr double kSubnormal = 1e-40;
  const double cancellation = std::ldexp(1.0, -21);
  switch (a) {
    case Activation::relu:
    case Activation::leaky_relu: return {std::ldexp(1.0, -23), kSubnormal, kSubnormal};
    case Activation::tanh:
    case Activation::sigmoid: return {std::ldexp(1.0, -19), kSubnormal, kSubnormal};
    case Activation::silu: return {std::ldexp(1.0, -19), kSubnormal, cancellation};
    case Activation::gelu_erf:
    case Activation::gelu_tanh: return {std::ldexp(1.0, -14), kSubnormal, cancellation};
  }
  return {0, 0, 0};
}

Tolerance tolerance(Activation a, DType out, bool backward) {
  const MathError m = math_error(a);
  Tolerance t{backward ? m.atol_backward : m.atol_forward, m.rtol};
  if (out == DType::f16) {
    t.rtol += std::ldexp(1.0, -10);
    t.atol = std::max(t.atol, std::ldexp(1.0, -24));
  } else if (out == DType::bf16) {
    t.rtol += std::ldexp(1.0, -7);
    t.atol = std::max(t.atol, std::ldexp(1.0, -133));
  }
  return t;
}

std::string describe(Activation a, Dtypes d, std::int64_t n, std::int64_t offset) {
  return std::string(to_string(a)) + " " + to_string(d.in) + "->" + to_string(d.out) +
         " n=" + std::to_string(n) + " offset=" + std::to_string(offset);
}

// Uniform in [-6, 6], with adversarial values planted every 11th element from index 2 on, so
// they land in vector packs and in scalar tails alike: signed zeros, f32 and f16 subnormals,
// |x| >= 20 where tanh/sigmoid saturate, GELU's far left tail (-40), +-120, values that overflow
// f16 or x^3, infinities, NaN, and the zero crossings of the silu/GELU derivatives.
std::vector<double> inputs(std::int64_t n, std::uint64_t seed) {
  static const double kSpecials[] = {0.0,   -0.0, 1e-40, -1e-40, 3e-6,  -3e-6, 20.0,  -20.0,
                                     25.0,  -25.0, 40.0, -40.0,  120.0, -120.0, 1e20, -1e20,
                                     kInf,  -kInf, kNaN, 0.5,    -1.28, -0.75,  -13.0, 9.0};
  std::vector<double> v = random_values(static_cast<std::size_t>(n), -6.0, 6.0, seed);
  std::size_t k = 0;
  for (std::int64_t i = 2; i < n; i += 11, ++k)
    v[static_cast<std::size_t>(i)] = kSpecials[k % std::size(kSpecials)];
  return v;
}

// Upstream gradients: uniform in [-2, 2], with exact zeros and one NaN.
std::vector<double> upstream(std::int64_t n, std::uint64_t seed) {
  std::vector<double> v = random_values(static_cast<std::size_t>(n), -2.0, 2.0, seed);
  for (std::int64_t i = 6; i < n; i += 17) v[static_cast<std::size_t>(i)] = 0.0;
  if (n > 9) v[9] = kNaN;
  return v;
}

std::string message(const Status& status) { return status.message(); }

// ---- forward ---------------------------------------------------------------------------------

void check_forward(Activation a, Dtypes d, std::int64_t n, std::int64_t offset) {
  SCOPED_TRACE(describe(a, d, n, offset));
  const std::vector<double> x = quantize(inputs(n, 1000 + static_cast<std::uint64_t>(n)), d.in);
  const DeviceMatrix x_dev = upload_matrix(x, 1, n, d.in, 0, offset);
  const DeviceMatrix y_dev = poisoned_matrix(1, n, d.out, 0, offset);
  ActivationForwardArgs args;
  args.n = n;
  args.x = x_dev.data();
  args.x_dtype = d.in;
  args.y = y_dev.data();
  args.y_dtype = d.out;
  const Status status = activation_forward(args, {a, kAlpha}, cuda_exec());
  ASSERT_TRUE(status.ok()) << message(status);
  synchronize_or_fail();
  const std::vector<double> expected =
      quantize(ref::activation_forward(to_ref(a), x, kAlpha), d.out);
  EXPECT_TRUE(all_close(y_dev.download(), expected, tolerance(a, d.out, false), "y"));
  EXPECT_TRUE(y_dev.padding_intact());
}

TEST(CudaActivation, ForwardEveryActivationAndSizeInF32AndF16) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Activation a : kActivations)
    for (Dtypes d : {kDtypePairs[0], kDtypePairs[1]})
      for (std::int64_t n : kAllSizes)
        for (std::int64_t offset : {0, 1}) check_forward(a, d, n, offset);
}

TEST(CudaActivation, ForwardEveryDtypePair) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Activation a : kActivations)
    for (Dtypes d : kDtypePairs)
      for (std::int64_t n : kSomeSizes)
        for (std::int64_t offset : {0, 1}) check_forward(a, d, n, offset);
}

// ---- backward --------------------------------------------------------------------------------

// dtypes: saved = d.in, dy = d.out, dx = d.out.
void check_backward(Activation a, SavedTensor kind, Dtypes d, std::int64_t n,
                    std::int64_t offset) {
  SCOPED_TRACE(describe(a, d, n, offset) +
               (kind == SavedTensor::input ? " from input" : " from output"));
  const std::vector<double> x = quantize(inputs(n, 2000 + static_cast<std::uint64_t>(n)), d.in);
  // From the output, the saved tensor is what a forward pass would have stored in d.in.
  const std::vector<double> saved =
      kind == SavedTensor::input ? x
                                 : quantize(ref::activation_forward(to_ref(a), x, kAlpha), d.in);
  const std::vector<double> dy = quantize(upstream(n, 3000 + static_cast<std::uint64_t>(n)), d.out);
  const DeviceMatrix saved_dev = upload_matrix(saved, 1, n, d.in, 0, offset);
  const DeviceMatrix dy_dev = upload_matrix(dy, 1, n, d.out, 0, offset);
  const DeviceMatrix dx_dev = poisoned_matrix(1, n, d.out, 0, offset);
  ActivationBackwardArgs args;
  args.n = n;
  args.saved_kind = kind;
  args.saved = saved_dev.data();
  args.saved_dtype = d.in;
  args.dy = dy_dev.data();
  args.dy_dtype = d.out;
  args.dx = dx_dev.data();
  args.dx_dtype = d.out;
  const Status status = activation_backward(args, {a, kAlpha}, cuda_exec());
  ASSERT_TRUE(status.ok()) << message(status);
  synchronize_or_fail();
  const std::vector<double> expected = quantize(
      kind == SavedTensor::input
          ? ref::activation_backward_from_input(to_ref(a), saved, dy, kAlpha)
          : ref::activation_backward_from_output(to_ref(a), saved, dy, kAlpha),
      d.out);
  EXPECT_TRUE(all_close(dx_dev.download(), expected, tolerance(a, d.out, true), "dx"));
  EXPECT_TRUE(dx_dev.padding_intact());
}

TEST(CudaActivation, BackwardEveryActivationAndSizeInF32AndF16) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Activation a : kActivations)
    for (Dtypes d : {kDtypePairs[0], kDtypePairs[1]})
      for (std::int64_t n : kAllSizes)
        for (std::int64_t offset : {0, 1}) {
          check_backward(a, SavedTensor::input, d, n, offset);
          if (has_output_slope(a)) check_backward(a, SavedTensor::output, d, n, offset);
        }
}

TEST(CudaActivation, BackwardEveryDtypePair) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Activation a : kActivations)
    for (Dtypes d : kDtypePairs)
      for (std::int64_t n : kSomeSizes)
        for (std::int64_t offset : {0, 1}) {
          check_backward(a, SavedTensor::input, d, n, offset);
          if (has_output_slope(a)) check_backward(a, SavedTensor::output, d, n, offset);
        }
}

// ---- in place ----------------------------------------------------------------------------------

TEST(CudaActivation, InPlaceForwardAndBackward) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Activation a : kActivations)
    for (DType dtype : {DType::f32, DType::bf16})
      for (std::int64_t n : {std::int64_t{33}, std::int64_t{4099}})
        for (std::int64_t offset : {0, 1}) {
          SCOPED_TRACE(describe(a, {dtype, dtype}, n, offset) + " in place");
          const std::vector<double> x = quantize(inputs(n, 4000), dtype);
          const DeviceMatrix xy = upload_matrix(x, 1, n, dtype, 0, offset);
          ActivationForwardArgs forward;
          forward.n = n;
          forward.x = xy.data();
          forward.x_dtype = dtype;
          forward.y = xy.data();
          forward.y_dtype = dtype;
          Status status = activation_forward(forward, {a, kAlpha}, cuda_exec());
          ASSERT_TRUE(status.ok()) << message(status);
          synchronize_or_fail();
          EXPECT_TRUE(all_close(xy.download(),
                                quantize(ref::activation_forward(to_ref(a), x, kAlpha), dtype),
                                tolerance(a, dtype, false), "y over x"));

          const std::vector<double> dy = quantize(upstream(n, 4001), dtype);
          const DeviceMatrix saved = upload_matrix(x, 1, n, dtype, 0, offset);
          const DeviceMatrix g = upload_matrix(dy, 1, n, dtype, 0, offset);
          ActivationBackwardArgs backward;
          backward.n = n;
          backward.saved = saved.data();
          backward.saved_dtype = dtype;
          backward.dy = g.data();
          backward.dy_dtype = dtype;
          backward.dx = g.data();
          backward.dx_dtype = dtype;
          status = activation_backward(backward, {a, kAlpha}, cuda_exec());
          ASSERT_TRUE(status.ok()) << message(status);
          synchronize_or_fail();
          EXPECT_TRUE(all_close(
              g.download(),
              quantize(ref::activation_backward_from_input(to_ref(a), x, dy, kAlpha), dtype),
              tolerance(a, dtype, true), "dx over dy"));
        }
}

// ---- relu mask -------------------------------------------------------------------------------

// Forward with the mask, then backward from the mask. Bit i % 32 of word i / 32 is x_i > 0
// (false for NaN); the bits past n in the last word are defined as 0. The mask buffer holds one
// extra poisoned word that must stay untouched.
void check_mask_round_trip(DType dtype, std::int64_t n, std::int64_t offset) {
  SCOPED_TRACE(describe(Activation::relu, {dtype, dtype}, n, offset) + " mask");
  const std::int64_t words = relu_mask_words(n);
  const std::vector<double> x = quantize(inputs(n, 5000 + static_cast<std::uint64_t>(n)), dtype);
  const DeviceMatrix x_dev = upload_matrix(x, 1, n, dtype, 0, offset);
  const DeviceMatrix y_dev = poisoned_matrix(1, n, dtype, 0, offset);
  DeviceBuffer mask_dev(static_cast<std::size_t>(words + 1) * 4);
  mask_dev.fill_bytes(kPoisonByte);

  ActivationForwardArgs forward;
  forward.n = n;
  forward.x = x_dev.data();
  forward.x_dtype = dtype;
  forward.y = y_dev.data();
  forward.y_dtype = dtype;
  forward.relu_mask = mask_dev.as<std::uint32_t>();
  Status status = activation_forward(forward, {Activation::relu, kAlpha}, cuda_exec());
  ASSERT_TRUE(status.ok()) << message(status);
  synchronize_or_fail();
  EXPECT_TRUE(all_close(y_dev.download(),
                        quantize(ref::activation_forward(ref::Activation::relu, x, 0.0), dtype),
                        {0, 0}, "y"));
  EXPECT_TRUE(y_dev.padding_intact());

  const std::vector<std::uint32_t> mask = download_vector<std::uint32_t>(mask_dev);
  for (std::int64_t w = 0; w < words; ++w) {
    std::uint32_t expected = 0;
    for (std::int64_t b = 0; b < 32 && w * 32 + b < n; ++b)
      if (x[static_cast<std::size_t>(w * 32 + b)] > 0.0) expected |= std::uint32_t{1} << b;
    EXPECT_EQ(mask[static_cast<std::size_t>(w)], expected) << "mask word " << w;
  }
  EXPECT_EQ(mask[static_cast<std::size_t>(words)], 0xffffffffu) << "word past the mask written";

  // relu' depends only on x > 0, so x replaced by its mask bit (1 or 0) is what the reference
  // needs (NaN inputs have bit 0: the mask cannot carry NaN).
  std::vector<double> x_from_mask(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    x_from_mask[static_cast<std::size_t>(i)] =
        ((mask[static_cast<std::size_t>(i / 32)] >> (i % 32)) & 1u) != 0 ? 1.0 : 0.0;
  const std::vector<double> dy = quantize(upstream(n, 6000), dtype);
  const DeviceMatrix dy_dev = upload_matrix(dy, 1, n, dtype, 0, offset);
  const DeviceMatrix dx_dev = poisoned_matrix(1, n, dtype, 0, offset);
  ActivationBackwardArgs backward;
  backward.n = n;
  backward.saved_kind = SavedTensor::relu_mask;
  backward.saved = mask_dev.get();
  backward.dy = dy_dev.data();
  backward.dy_dtype = dtype;
  backward.dx = dx_dev.data();
  backward.dx_dtype = dtype;
  status = activation_backward(backward, {Activation::relu, kAlpha}, cuda_exec());
  ASSERT_TRUE(status.ok()) << message(status);
  synchronize_or_fail();
  // dy * 1 and dy * 0 are exact in every dtype.
  EXPECT_TRUE(all_close(
      dx_dev.download(),
      quantize(ref::activation_backward_from_input(ref::Activation::relu, x_from_mask, dy, 0.0),
               dtype),
      {0, 0}, "dx from mask"));
  EXPECT_TRUE(dx_dev.padding_intact());
}

TEST(CudaActivation, ReluMaskRoundTrip) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (DType dtype : {DType::f32, DType::f16, DType::bf16})
    for (std::int64_t n : kAllSizes)
      for (std::int64_t offset : {0, 1}) check_mask_round_trip(dtype, n, offset);
  // Sizes around the 256-element warp tiles of the vector part and the word-by-word rest.
  for (std::int64_t n : {255, 256, 257, 511, 512, 520, 769})
    for (std::int64_t offset : {0, 1}) check_mask_round_trip(DType::f32, n, offset);
}

// ---- grid-stride loops -----------------------------------------------------------------------

// Caps the grid for the duration of a test, so that every thread walks many packs (mask words)
// and the loops' position updates are exercised.
TEST(CudaActivation, GridStrideLoops) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (std::int64_t blocks : {1, 3}) {
    SCOPED_TRACE("block limit " + std::to_string(blocks));
    const ElementwiseGridLimit limit(blocks);
    for (std::int64_t n : {std::int64_t{4099}, std::int64_t{65537}})
      for (std::int64_t offset : {0, 1}) {
        check_forward(Activation::silu, {DType::f16, DType::f32}, n, offset);
        check_backward(Activation::tanh, SavedTensor::output, {DType::f32, DType::bf16}, n,
                       offset);
        check_mask_round_trip(DType::f32, n, offset);
      }
  }
}

// ---- edge cases ------------------------------------------------------------------------------

TEST(CudaActivation, ZeroElementsWithNullPointers) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  ActivationForwardArgs forward;
  EXPECT_TRUE(activation_forward(forward, {Activation::gelu_erf, kAlpha}, cuda_exec()).ok());
  ActivationBackwardArgs backward;
  EXPECT_TRUE(activation_backward(backward, {Activation::gelu_erf, kAlpha}, cuda_exec()).ok());
  synchronize_or_fail();
}

// Hand-checked values where float formulas commonly fail, in f32.
TEST(CudaActivation, StableAtTheExtremes) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::vector<double> x = {-120.0, -40.0, -20.0, 20.0, 1e-40, kNaN};
  const auto run = [&](Activation a) {
    const DeviceMatrix x_dev = upload_matrix(x, 1, 6, DType::f32);
    const DeviceMatrix y_dev = poisoned_matrix(1, 6, DType::f32);
    ActivationForwardArgs args;
    args.n = 6;
    args.x = x_dev.data();
    args.y = y_dev.data();
    EXPECT_TRUE(activation_forward(args, {a, kAlpha}, cuda_exec()).ok());
    synchronize_or_fail();
    return y_dev.download();
  };
  // relu keeps NaN (fmaxf would drop it).
  const std::vector<double> relu = run(Activation::relu);
  EXPECT_EQ(relu[0], 0.0);
  EXPECT_TRUE(std::isnan(relu[5]));
  // sigmoid(-20) = 2.06e-9 with full relative accuracy, not 0 or 1 - 1; sigmoid(-120) underflows
  // to 0 in float without NaN; subnormal x gives 1/2.
  const std::vector<double> sigmoid = run(Activation::sigmoid);
  EXPECT_EQ(sigmoid[0], 0.0);
  EXPECT_NEAR(sigmoid[2], 2.0611536181902037e-09, 2.0611536181902037e-09 * 1e-6);
  EXPECT_EQ(sigmoid[3], 1.0);
  EXPECT_EQ(sigmoid[4], 0.5);
  EXPECT_TRUE(std::isnan(sigmoid[5]));
  // GELU far left: a signed zero, not NaN or noise from 1 + erf.
  for (Activation a : {Activation::gelu_erf, Activation::gelu_tanh}) {
    const std::vector<double> gelu = run(a);
    EXPECT_EQ(gelu[0], 0.0) << to_string(a);
    EXPECT_EQ(gelu[1], 0.0) << to_string(a);
    EXPECT_EQ(gelu[3], 20.0) << to_string(a);
    EXPECT_TRUE(std::isnan(gelu[5])) << to_string(a);
  }
}

}  // namespace
}  // namespace actloss::test
