// Activations through the public API: validation (both devices), hand values, the relu mask,
// in place, and the CPU path's plumbing against the float64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

#include <actloss/activation.h>

#include "host/reference/reference.h"
#include "tests/api/test_util.h"

namespace {

using namespace actloss;
using namespace api_test;

constexpr Pass F = Pass::forward;
constexpr Pass B = Pass::backward;

const Activation kActivations[] = {Activation::relu,     Activation::leaky_relu,
                                   Activation::tanh,     Activation::sigmoid,
                                   Activation::gelu_erf, Activation::gelu_tanh,
                                   Activation::silu};

// ---- validation ------------------------------------------------------------------------------
//
// One Setup serves both entry points: forward uses x, y and the mask; backward uses saved, dy
// and dx. Pass::forward / Pass::backward pick which one `call` runs.
struct ActSetup {
  static constexpr std::int64_t n = 40;  // two mask words
  Buffer x{DType::f32, n};
  Buffer y{DType::f32, n};
  Buffer mask = Buffer::bytes_of(4, relu_mask_words(n));
  Buffer saved{DType::f32, n};
  Buffer dy{DType::f32, n};
  Buffer dx{DType::f32, n};
  ActivationForwardArgs fwd;
  ActivationBackwardArgs bwd;
  ActivationOptions options;
  Exec exec;

  explicit ActSetup(Device device) {
    for (std::int64_t i = 0; i < n; ++i) {
      x.set(i, 0.25 * static_cast<double>(i) - 5.0);
      saved.set(i, 0.5 * static_cast<double>(i % 9) - 2.0);
      dy.set(i, 1.0 - 0.125 * static_cast<double>(i % 5));
    }
    options.activation = Activation::relu;
    fwd.n = n;
    fwd.x = x.data();
    fwd.y = y.data();
    fwd.relu_mask = static_cast<std::uint32_t*>(mask.data());
    bwd.n = n;
    bwd.saved = saved.data();
    bwd.dy = dy.data();
    bwd.dx = dx.data();
    exec.device = device;
  }

  Status call(Pass pass) const {
    return pass == Pass::forward ? activation_forward(fwd, options, exec)
                                 : activation_backward(bwd, options, exec);
  }

  std::vector<const Buffer*> buffers() const { return {&x, &y, &mask, &saved, &dy, &dx}; }
};

using ActCase = RejectCase<ActSetup>;

std::vector<ActCase> act_reject_cases() {
  const std::vector<Pass> both = {F, B};
  return {
      {"DeviceOutOfEnum", both, [](ActSetup& s) { s.exec.device = garbage<Device>(255); },
       "exec.device"},
      {"PointerChecksOutOfEnum", both,
       [](ActSetup& s) { s.exec.pointer_checks = garbage<PointerChecks>(5); },
       "exec.pointer_checks"},
      {"ActivationOutOfEnum", both,
       [](ActSetup& s) {
         s.options.activation = garbage<Activation>(7);
         s.fwd.relu_mask = nullptr;
       },
       "options.activation"},
      {"LeakyAlphaNaN", both,
       [](ActSetup& s) {
         s.options.activation = Activation::leaky_relu;
         s.options.alpha = NAN;
         s.fwd.relu_mask = nullptr;
       },
       "options.alpha"},
      {"LeakyAlphaInfinite", both,
       [](ActSetup& s) {
         s.options.activation = Activation::leaky_relu;
         s.options.alpha = -INFINITY;
         s.fwd.relu_mask = nullptr;
       },
       "options.alpha"},
      {"CountNegative", both,
       [](ActSetup& s) {
         s.fwd.n = -1;
         s.bwd.n = -1;
       },
       "n"},
      {"CountExtentOverflows", both,
       [](ActSetup& s) {
         s.fwd.n = 2 * kHuge;  // 2^62 f32 elements: 2^64 bytes
         s.bwd.n = 2 * kHuge;
       },
       "n"},
      {"XDtypeOutOfEnum", {F}, [](ActSetup& s) { s.fwd.x_dtype = garbage<DType>(3); },
       "x_dtype"},
      {"YDtypeOutOfEnum", {F}, [](ActSetup& s) { s.fwd.y_dtype = garbage<DType>(3); },
       "y_dtype"},
      {"ReluMaskWithTanh", {F},
       [](ActSetup& s) { s.options.activation = Activation::tanh; }, "relu_mask"},
      {"ReluMaskWithLeakyRelu", {F},
       [](ActSetup& s) { s.options.activation = Activation::leaky_relu; }, "relu_mask"},
      {"XNull", {F}, [](ActSetup& s) { s.fwd.x = nullptr; }, "x"},
      {"YNull", {F}, [](ActSetup& s) { s.fwd.y = nullptr; }, "y"},
      {"XRangeWrapsAddressSpace", {F}, [](ActSetup& s) { s.fwd.x = wrapping_pointer(); }, "x"},
      {"YPartiallyOverlapsX", {F}, [](ActSetup& s) { s.fwd.y = s.x.f32() + 1; }, "y"},
      {"YInPlaceWithOtherDtype", {F},
       [](ActSetup& s) {
         s.fwd.y = s.x.data();
         s.fwd.y_dtype = DType::f16;
       },
       "y"},
      // The same byte span: only the dtypes tell the in-place view apart.
      {"YInPlaceWithOtherDtypeOfTheSameSize", {F},
       [](ActSetup& s) {
         s.fwd.x_dtype = DType::bf16;
         s.fwd.y = s.x.data();
         s.fwd.y_dtype = DType::f16;
       },
       "y"},
      {"MaskOverlapsX", {F},
       [](ActSetup& s) { s.fwd.relu_mask = static_cast<std::uint32_t*>(s.x.data()) + 3; },
       "relu_mask"},
      {"MaskOverlapsY", {F},
       [](ActSetup& s) { s.fwd.relu_mask = static_cast<std::uint32_t*>(s.y.data()); },
       "relu_mask"},
      {"SavedKindOutOfEnum", {B}, [](ActSetup& s) { s.bwd.saved_kind = garbage<SavedTensor>(3); },
       "saved_kind"},
      {"SavedOutputWithGeluErf", {B},
       [](ActSetup& s) {
         s.options.activation = Activation::gelu_erf;
         s.bwd.saved_kind = SavedTensor::output;
       },
       "saved_kind"},
      {"SavedOutputWithGeluTanh", {B},
       [](ActSetup& s) {
         s.options.activation = Activation::gelu_tanh;
         s.bwd.saved_kind = SavedTensor::output;
       },
       "saved_kind"},
      {"SavedOutputWithSilu", {B},
       [](ActSetup& s) {
         s.options.activation = Activation::silu;
         s.bwd.saved_kind = SavedTensor::output;
       },
       "saved_kind"},
      {"SavedOutputWithLeakyAlphaZero", {B},
       [](ActSetup& s) {
         s.options.activation = Activation::leaky_relu;
         s.options.alpha = 0.0f;
         s.bwd.saved_kind = SavedTensor::output;
       },
       "saved_kind"},
      {"SavedOutputWithLeakyAlphaNegative", {B},
       [](ActSetup& s) {
         s.options.activation = Activation::leaky_relu;
         s.options.alpha = -0.5f;
         s.bwd.saved_kind = SavedTensor::output;
       },
       "saved_kind"},
      {"SavedMaskWithSigmoid", {B},
       [](ActSetup& s) {
         s.options.activation = Activation::sigmoid;
         s.bwd.saved_kind = SavedTensor::relu_mask;
       },
       "saved_kind"},
      {"SavedDtypeOutOfEnum", {B}, [](ActSetup& s) { s.bwd.saved_dtype = garbage<DType>(3); },
       "saved_dtype"},
      {"DyDtypeOutOfEnum", {B}, [](ActSetup& s) { s.bwd.dy_dtype = garbage<DType>(3); },
       "dy_dtype"},
      {"DxDtypeOutOfEnum", {B}, [](ActSetup& s) { s.bwd.dx_dtype = garbage<DType>(3); },
       "dx_dtype"},
      {"SavedNull", {B}, [](ActSetup& s) { s.bwd.saved = nullptr; }, "saved"},
      {"DyNull", {B}, [](ActSetup& s) { s.bwd.dy = nullptr; }, "dy"},
      {"DxNull", {B}, [](ActSetup& s) { s.bwd.dx = nullptr; }, "dx"},
      {"DxOverlapsSaved", {B}, [](ActSetup& s) { s.bwd.dx = s.saved.f32() + 5; }, "dx"},
      {"DxEqualsSaved", {B}, [](ActSetup& s) { s.bwd.dx = s.saved.data(); }, "dx"},
      {"DxOverlapsSavedMask", {B},
       [](ActSetup& s) {
         s.bwd.saved_kind = SavedTensor::relu_mask;
         s.bwd.saved = s.mask.data();
         s.bwd.dx = s.mask.data();
       },
       "dx"},
      {"DxPartiallyOverlapsDy", {B}, [](ActSetup& s) { s.bwd.dx = s.dy.f32() + 2; }, "dx"},
      {"DxInPlaceWithOtherDtype", {B},
       [](ActSetup& s) {
         s.bwd.dx = s.dy.data();
         s.bwd.dx_dtype = DType::bf16;
       },
       "dx"},
      {"DxInPlaceWithOtherDtypeOfTheSameSize", {B},
       [](ActSetup& s) {
         s.bwd.dy_dtype = DType::f16;
         s.bwd.dx = s.dy.data();
         s.bwd.dx_dtype = DType::bf16;
       },
       "dx"},
  };
}

class ActReject : public ::testing::TestWithParam<RejectParam<ActSetup>> {};
TEST_P(ActReject, NothingWritten) { run_reject(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Api, ActReject, ::testing::ValuesIn(expand(act_reject_cases())),
                         reject_param_name<ActSetup>);

TEST(ActValidation, BaselineIsValid) {
  run_baseline<ActSetup>(F);
  run_baseline<ActSetup>(B);
}

TEST(ActValidation, AlphaIsIgnoredBesidesLeakyRelu) {
  ActSetup s(Device::cpu);
  s.options.alpha = NAN;
  EXPECT_TRUE(s.call(F).ok());
  EXPECT_TRUE(s.call(B).ok());
}

TEST(ActValidation, SavedDtypeIsIgnoredForAMask) {
  ActSetup s(Device::cpu);
  s.bwd.saved_kind = SavedTensor::relu_mask;
  s.bwd.saved = s.mask.data();
  s.bwd.saved_dtype = garbage<DType>(42);
  for (std::int64_t w = 0; w < relu_mask_words(ActSetup::n); ++w) s.mask.set_raw<std::uint32_t>(w, 0);
  const Status status = s.call(B);
  EXPECT_TRUE(status.ok()) << status.message();
}

TEST(ActValidation, ZeroElementsAcceptsNullPointers) {
  ActivationForwardArgs fwd;
  ActivationBackwardArgs bwd;
  EXPECT_TRUE(activation_forward(fwd, {}, {}).ok());
  EXPECT_TRUE(activation_backward(bwd, {}, {}).ok());
}

// ---- CPU path --------------------------------------------------------------------------------

TEST(ActCpu, HandValues) {
  // Values with closed forms; outputs are f32 roundings of float64 results: rtol 2^-23.
  struct Row {
    Activation activation;
    float x;
    double y;
  };
  const double s2 = 1.0 / (1.0 + std::exp(-2.0));
  const Row rows[] = {
      {Activation::relu, -1.5f, 0.0},          {Activation::relu, 2.5f, 2.5},
      {Activation::leaky_relu, -2.0f, -0.25},  {Activation::leaky_relu, 3.0f, 3.0},
      {Activation::tanh, 0.0f, 0.0},           {Activation::tanh, 1.0f, std::tanh(1.0)},
      {Activation::sigmoid, 0.0f, 0.5},        {Activation::sigmoid, 2.0f, s2},
      {Activation::gelu_erf, 0.0f, 0.0},       {Activation::gelu_erf, 1.0f, 0.5 * (1 + std::erf(1 / std::sqrt(2.0)))},
      {Activation::gelu_tanh, 0.0f, 0.0},      {Activation::silu, 0.0f, 0.0},
      {Activation::silu, 2.0f, 2.0 * s2},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(testing::Message() << to_string(row.activation) << "(" << row.x << ")");
    float y = -7.0f;
    ActivationForwardArgs args;
    args.n = 1;
    args.x = &row.x;
    args.y = &y;
    ActivationOptions options;
    options.activation = row.activation;
    options.alpha = 0.125f;
    ASSERT_TRUE(activation_forward(args, options, {}).ok());
    EXPECT_TRUE(close(y, row.y, rounding_tolerance(DType::f32)));
  }
}

TEST(ActCpu, ReluMaskBitsAndBackwardFromMask) {
  // n = 70 spans three words; bits past n in the last word are 0, and the word after the mask
  // is never written. Backward from the mask must equal backward from the input exactly (relu's
  // derivative is 0 or 1, so dx is dy or 0 either way).
  constexpr std::int64_t n = 70;
  Buffer x(DType::bf16, n), y(DType::bf16, n), dy(DType::f16, n);
  Buffer mask = Buffer::bytes_of(4, relu_mask_words(n) + 1);
  for (std::int64_t i = 0; i < n; ++i) {
    x.set(i, (i % 3 == 0) ? 0.0 : std::sin(1.3 * static_cast<double>(i)));
    dy.set(i, 0.5 + 0.01 * static_cast<double>(i));
  }
  ActivationForwardArgs fwd;
  fwd.n = n;
  fwd.x = x.data();
  fwd.x_dtype = DType::bf16;
  fwd.y = y.data();
  fwd.y_dtype = DType::bf16;
  fwd.relu_mask = static_cast<std::uint32_t*>(mask.data());
  ASSERT_TRUE(activation_forward(fwd, {}, {}).ok());
  for (std::int64_t i = 0; i < n; ++i) {
    const bool bit = ((mask.get_raw<std::uint32_t>(i / 32) >> (i % 32)) & 1u) != 0;
    EXPECT_EQ(bit, x.get(i) > 0) << i;
    EXPECT_EQ(y.get(i), x.get(i) > 0 ? x.get(i) : 0.0) << i;
  }
  EXPECT_EQ(mask.get_raw<std::uint32_t>(2) >> (n - 64), 0u);
  EXPECT_TRUE(mask.untouched(3));

  Buffer from_mask(DType::f32, n), from_input(DType::f32, n);
  ActivationBackwardArgs bwd;
  bwd.n = n;
  bwd.dy = dy.data();
  bwd.dy_dtype = DType::f16;
  bwd.dx_dtype = DType::f32;
  bwd.saved_kind = SavedTensor::relu_mask;
  bwd.saved = mask.data();
  bwd.dx = from_mask.data();
  ASSERT_TRUE(activation_backward(bwd, {}, {}).ok());
  bwd.saved_kind = SavedTensor::input;
  bwd.saved = x.data();
  bwd.saved_dtype = DType::bf16;
  bwd.dx = from_input.data();
  ASSERT_TRUE(activation_backward(bwd, {}, {}).ok());
  EXPECT_TRUE(from_mask.snapshot() == from_input.snapshot());
}

TEST(ActCpu, BackwardFromOutputAgreesWithBackwardFromInput) {
  // For the invertible activations both saved forms give f' exactly in float64, but the y
  // passed in is an f32 rounding of f(x): |dy_rel| <= 2^-24 moves 1 - y^2 by at most 2^-23 and
  // y (1 - y) by at most 2^-24 in absolute terms, times |dy| <= 2; the two f32 output roundings
  // add 2^-23 relative. Hence atol 2^-21, rtol 2^-22.
  constexpr std::int64_t n = 16;
  std::vector<float> x(n), dy(n);
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = 0.375f * static_cast<float>(i) - 3.0f;
    dy[i] = 1.0f + 0.0625f * static_cast<float>(i);
  }
  for (Activation activation :
       {Activation::relu, Activation::leaky_relu, Activation::tanh, Activation::sigmoid}) {
    SCOPED_TRACE(to_string(activation));
    ActivationOptions options;
    options.activation = activation;
    options.alpha = 0.2f;
    std::vector<float> y(n), dx_in(n), dx_out(n);
    ActivationForwardArgs fwd;
    fwd.n = n;
    fwd.x = x.data();
    fwd.y = y.data();
    ASSERT_TRUE(activation_forward(fwd, options, {}).ok());
    ActivationBackwardArgs bwd;
    bwd.n = n;
    bwd.dy = dy.data();
    bwd.saved = x.data();
    bwd.dx = dx_in.data();
    ASSERT_TRUE(activation_backward(bwd, options, {}).ok());
    bwd.saved_kind = SavedTensor::output;
    bwd.saved = y.data();
    bwd.dx = dx_out.data();
    ASSERT_TRUE(activation_backward(bwd, options, {}).ok());
    for (std::int64_t i = 0; i < n; ++i) {
      EXPECT_TRUE(close(dx_out[i], dx_in[i], Tolerance{0x1p-21, 0x1p-22})) << i;
    }
  }
}

TEST(ActCpu, InPlaceEqualsOutOfPlace) {
  constexpr std::int64_t n = 33;
  for (Activation activation : kActivations) {
    SCOPED_TRACE(to_string(activation));
    ActivationOptions options;
    options.activation = activation;
    Buffer x(DType::f16, n), separate(DType::f16, n);
    for (std::int64_t i = 0; i < n; ++i) x.set(i, 0.3 * static_cast<double>(i) - 4.0);
    ActivationForwardArgs fwd;
    fwd.n = n;
    fwd.x = x.data();
    fwd.x_dtype = DType::f16;
    fwd.y_dtype = DType::f16;
    fwd.y = separate.data();
    ASSERT_TRUE(activation_forward(fwd, options, {}).ok());
    fwd.y = x.data();
    ASSERT_TRUE(activation_forward(fwd, options, {}).ok());
    EXPECT_TRUE(x.snapshot() == separate.snapshot());

    // Backward, dx over dy.
    Buffer saved(DType::f32, n), dy(DType::bf16, n), dx(DType::bf16, n);
    for (std::int64_t i = 0; i < n; ++i) {
      saved.set(i, 0.25 * static_cast<double>(i) - 4.0);
      dy.set(i, 1.0 + 0.5 * static_cast<double>(i % 4));
    }
    ActivationBackwardArgs bwd;
    bwd.n = n;
    bwd.saved = saved.data();
    bwd.dy = dy.data();
    bwd.dy_dtype = DType::bf16;
    bwd.dx_dtype = DType::bf16;
    bwd.dx = dx.data();
    ASSERT_TRUE(activation_backward(bwd, options, {}).ok());
    bwd.dx = dy.data();
    ASSERT_TRUE(activation_backward(bwd, options, {}).ok());
    EXPECT_TRUE(dy.snapshot() == dx.snapshot());
  }
}

}  // namespace
