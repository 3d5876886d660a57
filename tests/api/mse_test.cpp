// Mean squared error through the public API: validation (both devices), hand values, and the
// CPU path's plumbing against the float64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

#include <actloss/mse.h>

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

Status call_mse(Pass pass, const MseArgs& args, const MseOptions& options, const Exec& exec) {
  switch (pass) {
    case Pass::forward: return mse_forward(args, options, exec);
    case Pass::backward: return mse_backward(args, options, exec);
    case Pass::forward_backward: return mse_forward_backward(args, options, exec);
  }
  return Status(StatusCode::internal, "", "bad pass");
}

// ---- validation ------------------------------------------------------------------------------

struct MseSetup {
  static constexpr std::int64_t n = 6;
  Buffer input{DType::f32, n};
  Buffer target{DType::f32, n};
  Buffer loss{DType::f32, n};
  Buffer grad{DType::f32, n};
  Buffer upstream{DType::f32, n};
  MseArgs args;
  MseOptions options;
  Exec exec;

  explicit MseSetup(Device device) {
    for (std::int64_t i = 0; i < n; ++i) {
      input.set(i, 0.5 * static_cast<double>(i));
      target.set(i, 1.0);
      upstream.set(i, 1.0);
    }
    args.n = n;
    args.input = input.data();
    args.target = target.data();
    args.loss = loss.f32();
    args.grad = grad.data();
    args.upstream_grad = upstream.f32();
    options.reduction = Reduction::none;
    exec.device = device;
  }

  Status call(Pass pass) const { return call_mse(pass, args, options, exec); }

  std::vector<const Buffer*> buffers() const { return {&input, &target, &loss, &grad, &upstream}; }
};

using MseCase = RejectCase<MseSetup>;

std::vector<MseCase> mse_reject_cases() {
  return {
      {"DeviceOutOfEnum", kAllPasses, [](MseSetup& s) { s.exec.device = garbage<Device>(9); },
       "exec.device"},
      {"PointerChecksOutOfEnum", kAllPasses,
       [](MseSetup& s) { s.exec.pointer_checks = garbage<PointerChecks>(5); },
       "exec.pointer_checks"},
      {"ReductionOutOfEnum", kAllPasses,
       [](MseSetup& s) { s.options.reduction = garbage<Reduction>(4); }, "options.reduction"},
      {"GradScaleNaN", kGradPasses, [](MseSetup& s) { s.args.grad_scale = NAN; }, "grad_scale"},
      {"GradScaleInfinite", kGradPasses, [](MseSetup& s) { s.args.grad_scale = INFINITY; },
       "grad_scale"},
      {"CountNegative", kAllPasses, [](MseSetup& s) { s.args.n = -6; }, "n"},
      {"CountExtentOverflows", kAllPasses, [](MseSetup& s) { s.args.n = 2 * kHuge; }, "n"},
      {"InputDtypeOutOfEnum", kAllPasses,
       [](MseSetup& s) { s.args.input_dtype = garbage<DType>(3); }, "input_dtype"},
      {"TargetDtypeOutOfEnum", kAllPasses,
       [](MseSetup& s) { s.args.target_dtype = garbage<DType>(3); }, "target_dtype"},
      {"GradDtypeOutOfEnum", kGradPasses,
       [](MseSetup& s) { s.args.grad_dtype = garbage<DType>(3); }, "grad_dtype"},
      {"InputNull", kAllPasses, [](MseSetup& s) { s.args.input = nullptr; }, "input"},
      {"TargetNull", kAllPasses, [](MseSetup& s) { s.args.target = nullptr; }, "target"},
      {"TargetRangeWrapsAddressSpace", kAllPasses,
       [](MseSetup& s) { s.args.target = wrapping_pointer(); }, "target"},
      {"LossNull", {F}, [](MseSetup& s) { s.args.loss = nullptr; }, "loss"},
      {"GradNull", kGradPasses, [](MseSetup& s) { s.args.grad = nullptr; }, "grad"},
      {"LossOverlapsInput", kLossPasses, [](MseSetup& s) { s.args.loss = s.input.f32() + 5; },
       "loss"},
      {"LossOverlapsUpstream", {FB}, [](MseSetup& s) { s.args.loss = s.upstream.f32(); },
       "loss"},
      {"GradEqualsInput", kGradPasses, [](MseSetup& s) { s.args.grad = s.input.data(); },
       "grad"},  // no in-place case for MSE
      {"GradOverlapsTarget", kGradPasses, [](MseSetup& s) { s.args.grad = s.target.f32() + 2; },
       "grad"},
      {"GradOverlapsLoss", {FB}, [](MseSetup& s) { s.args.grad = s.loss.data(); }, "grad"},
  };
}

class MseReject : public ::testing::TestWithParam<RejectParam<MseSetup>> {};
TEST_P(MseReject, NothingWritten) { run_reject(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Api, MseReject, ::testing::ValuesIn(expand(mse_reject_cases())),
                         reject_param_name<MseSetup>);

TEST(MseValidation, BaselineIsValid) {
  for (Pass pass : kAllPasses) {
    SCOPED_TRACE(pass_name(pass));
    run_baseline<MseSetup>(pass);
  }
}

TEST(MseValidation, ForwardIgnoresGradientFields) {
  MseSetup s(Device::cpu);
  s.args.grad = s.input.data();
  s.args.grad_dtype = garbage<DType>(3);
  s.args.grad_scale = NAN;
  const auto input_before = s.input.snapshot();
  EXPECT_TRUE(s.call(F).ok());
  EXPECT_TRUE(s.input.snapshot() == input_before);
}

TEST(MseValidation, ZeroElementsAcceptsNullPointersAndReducesToZero) {
  for (Reduction reduction : {Reduction::none, Reduction::sum, Reduction::mean}) {
    for (Pass pass : kAllPasses) {
      SCOPED_TRACE(std::string(to_string(reduction)) + " " + pass_name(pass));
      Buffer loss(DType::f32, 1);
      MseArgs args;
      args.loss = loss.f32();
      MseOptions options;
      options.reduction = reduction;
      ASSERT_TRUE(call_mse(pass, args, options, {}).ok());
      if (reduction != Reduction::none && pass != B) {
        EXPECT_EQ(loss.get(0), 0.0);
      } else {
        EXPECT_TRUE(loss.untouched(0));
      }
    }
  }
}

// ---- CPU path --------------------------------------------------------------------------------

TEST(MseCpu, HandValues) {
  // input (3, -1, 0.5), target (1, 1, 0.5): squared errors (4, 4, 0), gradients 2 (x - t) =
  // (4, -4, 0). Every value is exact in f32, so the check is exact.
  const float input[3] = {3.0f, -1.0f, 0.5f};
  const float target[3] = {1.0f, 1.0f, 0.5f};
  struct Case {
    Reduction reduction;
    float loss0;
    float grad_factor;
  };
  for (const Case& c : {Case{Reduction::none, 4.0f, 1.0f}, Case{Reduction::sum, 8.0f, 1.0f},
                        Case{Reduction::mean, 8.0f / 3, 1.0f / 3}}) {
    SCOPED_TRACE(to_string(c.reduction));
    float loss[3] = {-1, -1, -1}, grad[3] = {};
    MseArgs args;
    args.n = 3;
    args.input = input;
    args.target = target;
    args.loss = loss;
    args.grad = grad;
    MseOptions options;
    options.reduction = c.reduction;
    ASSERT_TRUE(mse_forward_backward(args, options, {}).ok());
    EXPECT_EQ(loss[0], c.loss0);
    if (c.reduction == Reduction::none) {
      EXPECT_EQ(loss[1], 4.0f);
      EXPECT_EQ(loss[2], 0.0f);
    } else {
      EXPECT_EQ(loss[1], -1.0f);  // a reduced loss is one value
    }
    EXPECT_EQ(grad[0], 4.0f * c.grad_factor);
    EXPECT_EQ(grad[1], -4.0f * c.grad_factor);
    EXPECT_EQ(grad[2], 0.0f);
  }
}

}  // namespace
