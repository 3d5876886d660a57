// Binary cross-entropy with logits through the public API: validation (both devices), hand
// values, and the CPU path's plumbing against the float64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

#include <actloss/bce.h>

#include "host/reference/reference.h"
#include "tests/api/test_util.h"

namespace {

using namespace actloss;
using namespace api_test;

constexpr Pass F = Pass::forward;
constexpr Pass B = Pass::backward;
constexpr Pass FB = Pass::forward_backward;
const std::vector<Pass> kAllPasses = {F, B, FB};
const std::vector<Pass> kGradPasses = {B, FB};
const std::vector<Pass> kLossPasses = {F, FB};

Status call_bce(Pass pass, const BceArgs& args, const BceOptions& options, const Exec& exec) {
  switch (pass) {
    case Pass::forward: return bce_with_logits_forward(args, options, exec);
    case Pass::backward: return bce_with_logits_backward(args, options, exec);
    case Pass::forward_backward: return bce_with_logits_forward_backward(args, options, exec);
  }
  return Status(StatusCode::internal, "", "bad pass");
}

// ---- validation ------------------------------------------------------------------------------

// A valid call with every optional input and Reduction::none (loss and upstream dense).
struct BceSetup {
  static constexpr std::int64_t rows = 2;
  static constexpr std::int64_t cols = 4;
  Buffer logits{DType::f32, rows * cols};
  Buffer targets{DType::f32, rows * cols};
  Buffer pos_weight{DType::f32, cols};
  Buffer weight{DType::f32, rows * cols};
  Buffer loss{DType::f32, rows * cols};
  Buffer grad{DType::f32, rows * cols};
  Buffer upstream{DType::f32, rows * cols};
  BceArgs args;
  BceOptions options;
  Exec exec;

  explicit BceSetup(Device device) {
    for (std::int64_t i = 0; i < rows * cols; ++i) {
      logits.set(i, 0.5 * static_cast<double>(i) - 2.0);
      targets.set(i, (i % 3) / 2.0);
      weight.set(i, 1.0);
      upstream.set(i, 1.0);
    }
    for (std::int64_t c = 0; c < cols; ++c) pos_weight.set(c, 2.0);
    args.rows = rows;
    args.cols = cols;
    args.logits = logits.data();
    args.targets = targets.data();
    args.pos_weight = pos_weight.f32();
    args.weight = weight.data();
    args.loss = loss.f32();
    args.grad = grad.data();
    args.upstream_grad = upstream.f32();
    options.reduction = Reduction::none;
    exec.device = device;
  }

  Status call(Pass pass) const { return call_bce(pass, args, options, exec); }

  std::vector<const Buffer*> buffers() const {
    return {&logits, &targets, &pos_weight, &weight, &loss, &grad, &upstream};
  }
};

using BceCase = RejectCase<BceSetup>;

std::vector<BceCase> bce_reject_cases() {
  return {
      {"DeviceOutOfEnum", kAllPasses, [](BceSetup& s) { s.exec.device = garbage<Device>(9); },
       "exec.device"},
      {"PointerChecksOutOfEnum", kAllPasses,
       [](BceSetup& s) { s.exec.pointer_checks = garbage<PointerChecks>(5); },
       "exec.pointer_checks"},
      {"ReductionOutOfEnum", kAllPasses,
       [](BceSetup& s) { s.options.reduction = garbage<Reduction>(250); }, "options.reduction"},
      {"GradScaleNaN", kGradPasses, [](BceSetup& s) { s.args.grad_scale = NAN; }, "grad_scale"},
      {"GradScaleInfinite", kGradPasses, [](BceSetup& s) { s.args.grad_scale = INFINITY; },
       "grad_scale"},
      {"RowsNegative", kAllPasses, [](BceSetup& s) { s.args.rows = -2; }, "rows"},
      {"ColsNegative", kAllPasses, [](BceSetup& s) { s.args.cols = -1; }, "cols"},
      {"LogitsDtypeOutOfEnum", kAllPasses,
       [](BceSetup& s) { s.args.logits_dtype = garbage<DType>(3); }, "logits_dtype"},
      {"TargetDtypeOutOfEnum", kAllPasses,
       [](BceSetup& s) { s.args.target_dtype = garbage<DType>(3); }, "target_dtype"},
      {"WeightDtypeOutOfEnum", kAllPasses,
       [](BceSetup& s) { s.args.weight_dtype = garbage<DType>(3); }, "weight_dtype"},
      {"GradDtypeOutOfEnum", kGradPasses,
       [](BceSetup& s) { s.args.grad_dtype = garbage<DType>(3); }, "grad_dtype"},
      {"LogitsStrideBelowCols", kAllPasses, [](BceSetup& s) { s.args.logits_row_stride = 3; },
       "logits_row_stride"},
      {"TargetStrideNegative", kAllPasses, [](BceSetup& s) { s.args.target_row_stride = -4; },
       "target_row_stride"},
      {"WeightStrideBelowCols", kAllPasses, [](BceSetup& s) { s.args.weight_row_stride = 1; },
       "weight_row_stride"},
      {"GradStrideBelowCols", kGradPasses, [](BceSetup& s) { s.args.grad_row_stride = 2; },
       "grad_row_stride"},
      {"WeightExtentOverflowsThroughStride", kAllPasses,
       [](BceSetup& s) { s.args.weight_row_stride = 2 * kHuge; }, "weight_row_stride"},
      {"ExtentOverflowsThroughRows", kAllPasses, [](BceSetup& s) { s.args.rows = kHuge; },
       "rows"},
      {"TargetsRangeWrapsAddressSpace", kAllPasses,
       [](BceSetup& s) { s.args.targets = wrapping_pointer(); }, "targets"},
      {"LogitsNull", kAllPasses, [](BceSetup& s) { s.args.logits = nullptr; }, "logits"},
      {"TargetsNull", kAllPasses, [](BceSetup& s) { s.args.targets = nullptr; }, "targets"},
      {"LossNull", {F}, [](BceSetup& s) { s.args.loss = nullptr; }, "loss"},
      {"GradNull", kGradPasses, [](BceSetup& s) { s.args.grad = nullptr; }, "grad"},
      {"LossOverlapsLogits", kLossPasses, [](BceSetup& s) { s.args.loss = s.logits.f32(); },
       "loss"},
      {"LossOverlapsPosWeight", kLossPasses,
       [](BceSetup& s) { s.args.loss = s.pos_weight.f32() + 3; }, "loss"},
      {"LossOverlapsWeight", kLossPasses, [](BceSetup& s) { s.args.loss = s.weight.f32() + 7; },
       "loss"},
      {"GradEqualsLogits", kGradPasses, [](BceSetup& s) { s.args.grad = s.logits.data(); },
       "grad"},  // no in-place case for BCE
      {"GradOverlapsTargets", kGradPasses,
       [](BceSetup& s) { s.args.grad = s.targets.f32() + 1; }, "grad"},
      {"GradOverlapsUpstream", kGradPasses, [](BceSetup& s) { s.args.grad = s.upstream.data(); },
       "grad"},
      {"GradOverlapsLoss", {FB}, [](BceSetup& s) { s.args.grad = s.loss.data(); }, "grad"},
  };
}

class BceReject : public ::testing::TestWithParam<RejectParam<BceSetup>> {};
TEST_P(BceReject, NothingWritten) { run_reject(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Api, BceReject, ::testing::ValuesIn(expand(bce_reject_cases())),
                         reject_param_name<BceSetup>);

TEST(BceValidation, BaselineIsValid) {
  for (Pass pass : kAllPasses) {
    SCOPED_TRACE(pass_name(pass));
    run_baseline<BceSetup>(pass);
  }
}

TEST(BceValidation, WeightDtypeAndStrideAreIgnoredWithoutWeight) {
  BceSetup s(Device::cpu);
  s.args.weight = nullptr;
  s.args.weight_dtype = garbage<DType>(5);
  s.args.weight_row_stride = -3;
  const Status status = s.call(FB);
  EXPECT_TRUE(status.ok()) << status.message();
}

TEST(BceValidation, NoElementsAcceptsNullPointersAndReducesToZero) {
  // Zero rows, and rows without columns: both are empty, and valid.
  for (std::int64_t rows : {0, 3}) {
    for (Reduction reduction : {Reduction::none, Reduction::sum, Reduction::mean}) {
      SCOPED_TRACE(testing::Message() << rows << " rows, " << to_string(reduction));
      Buffer loss(DType::f32, 1);
      BceArgs args;
      args.rows = rows;
      args.cols = 0;
      args.loss = loss.f32();
      BceOptions options;
      options.reduction = reduction;
      for (Pass pass : kAllPasses) ASSERT_TRUE(call_bce(pass, args, options, {}).ok());
      if (reduction == Reduction::none) {
        EXPECT_TRUE(loss.untouched(0));
      } else {
        EXPECT_EQ(loss.get(0), 0.0);
      }
    }
  }
}

// ---- CPU path --------------------------------------------------------------------------------

TEST(BceCpu, ZeroLogitsByHand) {
  // At x = 0, softplus(+-x) = log 2 and sigmoid = 1/2, so with l = 1 + (pw - 1) y:
  //   loss = w ((1 - y) * 0 + l log 2) = w l log 2,  d/dx = w ((1 - y) - l / 2).
  // Everything but log 2 is exact in f32; the outputs are f32 roundings: rtol 2^-23.
  const float logits[4] = {0, 0, 0, 0};
  const float targets[4] = {0.0f, 1.0f, 0.5f, 0.25f};
  const float pos_weight[2] = {3.0f, 0.5f};
  const float weight[4] = {1.0f, 2.0f, 0.5f, 1.0f};
  float loss[4], grad[4];
  BceArgs args;
  args.rows = 2;
  args.cols = 2;
  args.logits = logits;
  args.targets = targets;
  args.pos_weight = pos_weight;
  args.weight = weight;
  args.loss = loss;
  args.grad = grad;
  BceOptions options;
  options.reduction = Reduction::none;
  ASSERT_TRUE(bce_with_logits_forward_backward(args, options, {}).ok());
  const Tolerance tol = rounding_tolerance(DType::f32);
  for (int i = 0; i < 4; ++i) {
    const double y = targets[i], w = weight[i], pw = pos_weight[i % 2];
    const double l = 1 + (pw - 1) * y;
    EXPECT_TRUE(close(loss[i], w * l * std::log(2.0), tol)) << i;
    EXPECT_TRUE(close(grad[i], w * ((1 - y) - l / 2), tol)) << i;
  }
}

// weight x pos_weight beyond float's range: the float product w * slope overflows on the way to
// a gradient the mean's 1/8 brings back into range, -w pw sigmoid(50) / 8 = -1.5e38 (sigmoid(50)
// is 1 in float). Checked to 1e-6 relative: a few float roundings of the inputs' product.
TEST(BceCpu, GradientPastFloatOnTheWayStaysFinite) {
  float logits[8], targets[8], weight[8], pos_weight[8], grad[8];
  for (int i = 0; i < 8; ++i) {
    logits[i] = -50.0f;
    targets[i] = 1.0f;
    weight[i] = 4.0f;
    pos_weight[i] = 3e38f;
  }
  BceArgs args;
  args.rows = 1;
  args.cols = 8;
  args.logits = logits;
  args.targets = targets;
  args.weight = weight;
  args.pos_weight = pos_weight;
  args.grad = grad;
  ASSERT_TRUE(bce_with_logits_backward(args, BceOptions{Reduction::mean}, {}).ok());
  const double want = -4.0 * static_cast<double>(3e38f) / 8.0;
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(grad[i], want, 1e-6 * -want) << i;
}

TEST(BceCpu, LargeNegativeLogitStaysFinite) {
  // The header's promise: finite for every finite logit, even with a pos_weight.
  const float logits[1] = {-200.0f};
  const float targets[1] = {1.0f};
  const float pos_weight[1] = {10.0f};
  float loss = 0, grad = 0;
  BceArgs args;
  args.rows = 1;
  args.cols = 1;
  args.logits = logits;
  args.targets = targets;
  args.pos_weight = pos_weight;
  args.loss = &loss;
  args.grad = &grad;
  ASSERT_TRUE(bce_with_logits_forward_backward(args, {}, {}).ok());
  // softplus(200) = 200 (+ e^-200, far below f32 resolution); d/dx = -pw sigmoid(200) = -10.
  EXPECT_TRUE(close(loss, 2000.0, rounding_tolerance(DType::f32)));
  EXPECT_TRUE(close(grad, -10.0, rounding_tolerance(DType::f32)));
}

}  // namespace
