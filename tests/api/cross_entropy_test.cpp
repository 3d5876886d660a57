// Cross-entropy through the public API: argument validation (every rule, on both devices), the
// CPU path's data check of class targets, and its plumbing (dtypes, strides, reductions,
// upstream gradient, in place), checked against hand values and against the float64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include <actloss/cross_entropy.h>

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

Status call_ce(Pass pass, const CrossEntropyArgs& args, const CrossEntropyOptions& options,
               const Exec& exec) {
  switch (pass) {
    case Pass::forward: return cross_entropy_forward(args, options, exec);
    case Pass::backward: return cross_entropy_backward(args, options, exec);
    case Pass::forward_backward: return cross_entropy_forward_backward(args, options, exec);
  }
  return Status(StatusCode::internal, "", "bad pass");
}

// ---- validation ------------------------------------------------------------------------------

// A valid call with every optional input given and Reduction::none, so that loss, lse and
// upstream_grad span `rows` floats, and stats and saved_stats `rows` pairs of floats.
struct CeSetup {
  static constexpr std::int64_t rows = 3;
  static constexpr std::int64_t classes = 5;
  Buffer logits{DType::f32, rows * classes};
  Buffer targets = Buffer::bytes_of(8, rows);
  Buffer probs{DType::f32, rows * classes};
  Buffer class_weight{DType::f32, classes};
  Buffer loss{DType::f32, rows};
  Buffer lse{DType::f32, rows};
  Buffer stats{DType::f32, 2 * rows};
  Buffer saved_stats{DType::f32, 2 * rows};
  Buffer grad{DType::f32, rows * classes};
  Buffer upstream{DType::f32, rows};
  CrossEntropyArgs args;
  CrossEntropyOptions options;
  Exec exec;

  explicit CeSetup(Device device) {
    for (std::int64_t i = 0; i < rows * classes; ++i) {
      logits.set(i, 0.25 * static_cast<double>(i % 7) - 0.5);
      probs.set(i, 1.0 / classes);
    }
    const std::int64_t labels[rows] = {0, 4, 2};
    for (std::int64_t r = 0; r < rows; ++r) {
      targets.set_raw<std::int64_t>(r, labels[r]);
      saved_stats.set(2 * r, 1.0);
      saved_stats.set(2 * r + 1, 1.0);
      upstream.set(r, 1.0);
    }
    for (std::int64_t c = 0; c < classes; ++c) class_weight.set(c, 1.0 + 0.1 * c);
    args.rows = rows;
    args.classes = classes;
    args.logits = logits.data();
    args.targets = targets.data();
    args.class_weight = class_weight.f32();
    args.loss = loss.f32();
    args.lse = lse.f32();
    args.stats = reinterpret_cast<CrossEntropyRowStats*>(stats.f32());
    args.saved_stats = reinterpret_cast<const CrossEntropyRowStats*>(saved_stats.f32());
    args.grad = grad.data();
    args.upstream_grad = upstream.f32();
    options.reduction = Reduction::none;
    exec.device = device;
  }

  void use_probabilities() {
    args.target_kind = TargetKind::probabilities;
    args.targets = probs.data();
  }

  Status call(Pass pass) const { return call_ce(pass, args, options, exec); }

  std::vector<const Buffer*> buffers() const {
    return {&logits,      &targets, &probs, &class_weight, &loss, &lse, &stats,
            &saved_stats, &grad,    &upstream};
  }
};

using CeCase = RejectCase<CeSetup>;

std::vector<CeCase> ce_reject_cases() {
  return {
      {"DeviceOutOfEnum", kAllPasses, [](CeSetup& s) { s.exec.device = garbage<Device>(7); },
       "exec.device"},
      {"PointerChecksOutOfEnum", kAllPasses,
       [](CeSetup& s) { s.exec.pointer_checks = garbage<PointerChecks>(5); },
       "exec.pointer_checks"},
      {"ReductionOutOfEnum", kAllPasses,
       [](CeSetup& s) { s.options.reduction = garbage<Reduction>(3); }, "options.reduction"},
      {"LabelSmoothingNegative", kAllPasses,
       [](CeSetup& s) { s.options.label_smoothing = -0.01f; }, "options.label_smoothing"},
      {"LabelSmoothingAboveOne", kAllPasses,
       [](CeSetup& s) { s.options.label_smoothing = 1.01f; }, "options.label_smoothing"},
      {"LabelSmoothingNaN", kAllPasses, [](CeSetup& s) { s.options.label_smoothing = NAN; },
       "options.label_smoothing"},
      {"ZLossNegative", kAllPasses, [](CeSetup& s) { s.options.z_loss = -1e-4f; }, "options.z_loss"},
      {"ZLossInfinite", kAllPasses, [](CeSetup& s) { s.options.z_loss = INFINITY; }, "options.z_loss"},
      {"ZLossNaN", kAllPasses, [](CeSetup& s) { s.options.z_loss = NAN; }, "options.z_loss"},
      {"SoftcapNegative", kAllPasses, [](CeSetup& s) { s.options.softcap = -30.0f; },
       "options.softcap"},
      {"SoftcapInfinite", kAllPasses, [](CeSetup& s) { s.options.softcap = INFINITY; },
       "options.softcap"},
      {"SoftcapNaN", kAllPasses, [](CeSetup& s) { s.options.softcap = NAN; }, "options.softcap"},
      {"GradScaleInfinite", kGradPasses, [](CeSetup& s) { s.args.grad_scale = -INFINITY; },
       "grad_scale"},
      {"GradScaleNaN", kGradPasses, [](CeSetup& s) { s.args.grad_scale = NAN; }, "grad_scale"},
      {"RowsNegative", kAllPasses, [](CeSetup& s) { s.args.rows = -1; }, "rows"},
      {"ClassesNegative", kAllPasses, [](CeSetup& s) { s.args.classes = -5; }, "classes"},
      {"ClassesZeroWithRows", kAllPasses, [](CeSetup& s) { s.args.classes = 0; }, "classes"},
      {"TargetKindOutOfEnum", kAllPasses,
       [](CeSetup& s) { s.args.target_kind = garbage<TargetKind>(3); }, "target_kind"},
      {"LogitsDtypeOutOfEnum", kAllPasses,
       [](CeSetup& s) { s.args.logits_dtype = garbage<DType>(3); }, "logits_dtype"},
      {"TargetDtypeOutOfEnum", kAllPasses,
       [](CeSetup& s) {
         s.use_probabilities();
         s.args.target_dtype = garbage<DType>(200);
       },
       "target_dtype"},
      {"GradDtypeOutOfEnum", kGradPasses,
       [](CeSetup& s) { s.args.grad_dtype = garbage<DType>(4); }, "grad_dtype"},
      {"LogitsStrideBelowClasses", kAllPasses, [](CeSetup& s) { s.args.logits_row_stride = 4; },
       "logits_row_stride"},
      {"LogitsStrideNegative", kAllPasses, [](CeSetup& s) { s.args.logits_row_stride = -5; },
       "logits_row_stride"},
      {"TargetStrideBelowClasses", kAllPasses,
       [](CeSetup& s) {
         s.use_probabilities();
         s.args.target_row_stride = 2;
       },
       "target_row_stride"},
      {"GradStrideBelowClasses", kGradPasses, [](CeSetup& s) { s.args.grad_row_stride = 1; },
       "grad_row_stride"},
      {"LogitsExtentOverflowsThroughStride", kAllPasses,
       [](CeSetup& s) { s.args.logits_row_stride = kHuge; }, "logits_row_stride"},
      {"GradExtentOverflowsThroughStride", kGradPasses,
       [](CeSetup& s) { s.args.grad_row_stride = kHuge; }, "grad_row_stride"},
      {"ExtentOverflowsThroughRows", kAllPasses, [](CeSetup& s) { s.args.rows = kHuge; },
       "rows"},
      {"ExtentOverflowsThroughClasses", kAllPasses,
       [](CeSetup& s) {
         s.args.rows = 1;
         s.args.classes = 2 * kHuge;
       },
       "classes"},
      {"LogitsRangeWrapsAddressSpace", kAllPasses,
       [](CeSetup& s) { s.args.logits = wrapping_pointer(); }, "logits"},
      {"LogitsNull", kAllPasses, [](CeSetup& s) { s.args.logits = nullptr; }, "logits"},
      {"TargetsNull", kAllPasses, [](CeSetup& s) { s.args.targets = nullptr; }, "targets"},
      {"LossNull", {F}, [](CeSetup& s) { s.args.loss = nullptr; }, "loss"},
      {"SavedStatsNull", {B}, [](CeSetup& s) { s.args.saved_stats = nullptr; }, "saved_stats"},
      {"GradNull", kGradPasses, [](CeSetup& s) { s.args.grad = nullptr; }, "grad"},
      {"LossOverlapsLogits", kLossPasses, [](CeSetup& s) { s.args.loss = s.logits.f32() + 2; },
       "loss"},
      {"LossOverlapsTargets", kLossPasses,
       [](CeSetup& s) { s.args.loss = static_cast<float*>(s.targets.data()); }, "loss"},
      {"LossOverlapsClassWeight", kLossPasses,
       [](CeSetup& s) { s.args.loss = s.class_weight.f32() + 1; }, "loss"},
      {"LseOverlapsLoss", kLossPasses, [](CeSetup& s) { s.args.lse = s.loss.f32() + 1; },
       "lse"},
      {"LseOverlapsLogits", kLossPasses, [](CeSetup& s) { s.args.lse = s.logits.f32(); }, "lse"},
      {"GradOverlapsSavedStats", {B}, [](CeSetup& s) { s.args.grad = s.saved_stats.data(); },
       "grad"},
      {"GradOverlapsUpstream", kGradPasses, [](CeSetup& s) { s.args.grad = s.upstream.data(); },
       "grad"},
      {"GradOverlapsClassWeight", kGradPasses,
       [](CeSetup& s) { s.args.grad = s.class_weight.data(); }, "grad"},
      {"GradOverlapsTargets", kGradPasses, [](CeSetup& s) { s.args.grad = s.targets.data(); },
       "grad"},
      {"GradOverlapsLoss", {FB}, [](CeSetup& s) { s.args.grad = s.loss.data(); }, "grad"},
      {"GradOverlapsLse", {FB}, [](CeSetup& s) { s.args.grad = s.lse.data(); }, "grad"},
      {"GradPartiallyOverlapsLogits", kGradPasses,
       [](CeSetup& s) { s.args.grad = s.logits.f32() + 1; }, "grad"},
      {"GradInPlaceWithOtherDtype", kGradPasses,
       [](CeSetup& s) {
         s.args.grad = s.logits.data();
         s.args.grad_dtype = DType::bf16;
       },
       "grad"},
      // The same byte span: only the dtypes tell the in-place view apart.
      {"GradInPlaceWithOtherDtypeOfTheSameSize", kGradPasses,
       [](CeSetup& s) {
         s.args.logits_dtype = DType::f16;
         s.args.grad = s.logits.data();
         s.args.grad_dtype = DType::bf16;
       },
       "grad"},
      {"GradInPlaceWithOtherStride", kGradPasses,
       [](CeSetup& s) {
         s.args.grad = s.logits.data();
         s.args.grad_row_stride = 6;
       },
       "grad"},
  };
}

class CeReject : public ::testing::TestWithParam<RejectParam<CeSetup>> {};
TEST_P(CeReject, NothingWritten) { run_reject(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Api, CeReject, ::testing::ValuesIn(expand(ce_reject_cases())),
                         reject_param_name<CeSetup>);

TEST(CeValidation, BaselineIsValid) {
  for (Pass pass : kAllPasses) {
    SCOPED_TRACE(pass_name(pass));
    run_baseline<CeSetup>(pass);
  }
}

TEST(CeValidation, OutOfRangeTargetOnCpuWritesNothing) {
  for (Pass pass : kAllPasses) {
    SCOPED_TRACE(pass_name(pass));
    CeSetup s(Device::cpu);
    s.targets.set_raw<std::int64_t>(1, CeSetup::classes);  // one past the last class
    const auto before = snapshot_all(s);
    const Status status = s.call(pass);
    expect_status(status, StatusCode::out_of_range, "targets");
    EXPECT_NE(status.message().find("row 1"), std::string::npos) << status.message();
    EXPECT_NE(status.message().find("class 5"), std::string::npos) << status.message();
    EXPECT_TRUE(snapshot_all(s) == before);
  }
}

TEST(CeValidation, NegativeInt32TargetThatIsNotIgnoreIndexIsOutOfRange) {
  CeSetup s(Device::cpu);
  Buffer targets32 = Buffer::bytes_of(4, CeSetup::rows);
  targets32.set_raw<std::int32_t>(0, 1);
  targets32.set_raw<std::int32_t>(1, 2);
  targets32.set_raw<std::int32_t>(2, -3);
  s.args.targets = targets32.data();
  s.args.target_kind = TargetKind::class_index_i32;
  const auto before = snapshot_all(s);
  const Status status = s.call(FB);
  expect_status(status, StatusCode::out_of_range, "targets");
  EXPECT_NE(status.message().find("row 2"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("-3"), std::string::npos) << status.message();
  EXPECT_TRUE(snapshot_all(s) == before);
}

TEST(CeValidation, IgnoreIndexMayBeAnyValueAndOutsideTheClasses) {
  for (std::int64_t ignore : {std::numeric_limits<std::int64_t>::min(), std::int64_t{-1},
                              std::int64_t{7}, std::numeric_limits<std::int64_t>::max()}) {
    CeSetup s(Device::cpu);
    s.options.ignore_index = ignore;
    s.targets.set_raw<std::int64_t>(1, ignore);  // that row is ignored, not out of range
    const Status status = s.call(FB);
    EXPECT_TRUE(status.ok()) << ignore << ": " << status.message();
    EXPECT_EQ(s.loss.get(1), 0.0);
  }
}

TEST(CeValidation, OptionBoundsAreInclusive) {
  CeSetup s(Device::cpu);
  s.options.label_smoothing = 1.0f;
  s.options.z_loss = 0.0f;
  s.options.softcap = 0.0f;
  EXPECT_TRUE(s.call(FB).ok());
  s.options.label_smoothing = 0.0f;
  s.options.softcap = 1e30f;
  EXPECT_TRUE(s.call(FB).ok());
}

TEST(CeValidation, ForwardIgnoresGradientFields) {
  CeSetup s(Device::cpu);
  s.args.grad = s.logits.f32() + 1;  // would overlap the logits if it were used
  s.args.grad_dtype = garbage<DType>(9);
  s.args.grad_row_stride = -1;
  s.args.grad_scale = NAN;
  s.args.saved_stats = reinterpret_cast<const CrossEntropyRowStats*>(s.loss.f32());
  const auto logits_before = s.logits.snapshot();
  const Status status = s.call(F);
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_TRUE(s.logits.snapshot() == logits_before);
}

TEST(CeValidation, BackwardIgnoresForwardOutputs) {
  CeSetup s(Device::cpu);
  s.args.loss = s.logits.f32();  // would overlap the logits if it were written
  s.args.lse = s.logits.f32() + 3;
  s.args.stats = reinterpret_cast<CrossEntropyRowStats*>(s.logits.f32() + 5);
  const auto logits_before = s.logits.snapshot();
  const Status status = s.call(B);
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_TRUE(s.logits.snapshot() == logits_before);
}

TEST(CeValidation, ForwardBackwardLossAndLseAreOptional) {
  CeSetup s(Device::cpu);
  s.args.loss = nullptr;
  s.args.lse = nullptr;
  EXPECT_TRUE(s.call(FB).ok());
  EXPECT_FALSE(s.grad.untouched(0));
}

TEST(CeValidation, ZeroRowsAcceptsNullPointersAndReducesToZero) {
  for (Reduction reduction : {Reduction::none, Reduction::sum, Reduction::mean}) {
    for (Pass pass : kAllPasses) {
      SCOPED_TRACE(std::string(to_string(reduction)) + " " + pass_name(pass));
      Buffer loss(DType::f32, 1);
      CrossEntropyArgs args;
      args.rows = 0;
      args.classes = 0;  // no rows: no class is needed either
      args.loss = loss.f32();
      CrossEntropyOptions options;
      options.reduction = reduction;
      const Status status = call_ce(pass, args, options, Exec{});
      ASSERT_TRUE(status.ok()) << status.message();
      if (reduction != Reduction::none && pass != B) {
        EXPECT_EQ(loss.get(0), 0.0);
      } else {
        EXPECT_TRUE(loss.untouched(0));
      }
    }
  }
}

// ---- CPU path: hand values ------------------------------------------------------------------

TEST(CeCpu, UniformLogitsGiveLogClasses) {
  // With equal logits every class has probability 1/C: loss log C, lse x + log C, and
  // d loss / d x_c = (1/C - [c == y]) / rows under mean. Checked for each input/output dtype;
  // 0.375 is exact in all of them.
  constexpr std::int64_t rows = 4, classes = 7;
  const std::int64_t labels[rows] = {0, 3, 6, 2};
  for (DType logits_dtype : {DType::f32, DType::f16, DType::bf16}) {
    for (DType grad_dtype : {DType::f32, DType::f16, DType::bf16}) {
      SCOPED_TRACE(std::string(to_string(logits_dtype)) + " -> " + to_string(grad_dtype));
      Buffer logits(logits_dtype, rows * classes);
      for (std::int64_t i = 0; i < rows * classes; ++i) logits.set(i, 0.375);
      Buffer targets = Buffer::bytes_of(8, rows);
      for (std::int64_t r = 0; r < rows; ++r) targets.set_raw<std::int64_t>(r, labels[r]);
      Buffer loss(DType::f32, 1), lse(DType::f32, rows), grad(grad_dtype, rows * classes);
      CrossEntropyArgs args;
      args.rows = rows;
      args.classes = classes;
      args.logits = logits.data();
      args.logits_dtype = logits_dtype;
      args.targets = targets.data();
      args.loss = loss.f32();
      args.lse = lse.f32();
      args.grad = grad.data();
      args.grad_dtype = grad_dtype;
      ASSERT_TRUE(cross_entropy_forward_backward(args, {}, {}).ok());
      const Tolerance f32 = rounding_tolerance(DType::f32);
      EXPECT_TRUE(close(loss.get(0), std::log(7.0), f32));
      for (std::int64_t r = 0; r < rows; ++r) {
        EXPECT_TRUE(close(lse.get(r), 0.375 + std::log(7.0), f32));
        for (std::int64_t c = 0; c < classes; ++c) {
          const double want = (1.0 / 7 - (c == labels[r] ? 1.0 : 0.0)) / rows;
          EXPECT_TRUE(close(grad.get(r * classes + c), want, rounding_tolerance(grad_dtype)))
              << r << "," << c;
        }
      }
    }
  }
}

TEST(CeCpu, TwoClassesWithSmoothingAndZLossByHand) {
  // Logits (0, log 3): p = (1/4, 3/4), lse = log 4. With target 0 and smoothing eps = 0.5:
  //   loss = (1 - eps)(lse - 0) + eps/2 ((lse - 0) + (lse - log 3)) = log 4 - log(3) / 4,
  // plus z_loss * lse^2. The f32 logit log 3 is off by up to 2^-24 * log 3 ~ 6.6e-8, which moves
  // the loss by less than that; atol 1e-7 covers it on top of the f32 output rounding.
  const float logits[2] = {0.0f, static_cast<float>(std::log(3.0))};
  const std::int64_t target = 0;
  float loss = 0, lse = 0;
  float grad[2] = {};
  CrossEntropyArgs args;
  args.rows = 1;
  args.classes = 2;
  args.logits = logits;
  args.targets = &target;
  args.loss = &loss;
  args.lse = &lse;
  args.grad = grad;
  CrossEntropyOptions options;
  options.reduction = Reduction::sum;
  options.label_smoothing = 0.5f;
  options.z_loss = 0.25f;
  ASSERT_TRUE(cross_entropy_forward_backward(args, options, {}).ok());
  const double l4 = std::log(4.0);
  const Tolerance tol{1e-7, 0x1p-23};
  EXPECT_TRUE(close(loss, l4 - std::log(3.0) / 4 + 0.25 * l4 * l4, tol));
  EXPECT_TRUE(close(lse, l4, tol));
  // d/dx_c = A p_c - a_c + 2 z lse p_c with a = (0.75, 0.25), A = 1.
  EXPECT_TRUE(close(grad[0], 0.25 - 0.75 + 0.5 * l4 * 0.25, tol));
  EXPECT_TRUE(close(grad[1], 0.75 - 0.25 + 0.5 * l4 * 0.75, tol));
}

// ---- CPU path: consistency checks through the API alone --------------------------------------

// Runs forward_backward on a dense f32 problem and returns (loss values, grad).
struct CeRun {
  std::vector<float> loss, grad;
};

CeRun run_dense(const std::vector<float>& logits, const std::vector<std::int64_t>& targets,
                std::int64_t classes, const CrossEntropyOptions& options, float grad_scale = 1,
                const float* upstream = nullptr) {
  const auto rows = static_cast<std::int64_t>(targets.size());
  CeRun out;
  out.loss.assign(options.reduction == Reduction::none ? targets.size() : 1, -1.0f);
  out.grad.assign(logits.size(), -1.0f);
  CrossEntropyArgs args;
  args.rows = rows;
  args.classes = classes;
  args.logits = logits.data();
  args.targets = targets.data();
  args.loss = out.loss.data();
  args.grad = out.grad.data();
  args.grad_scale = grad_scale;
  args.upstream_grad = upstream;
  const Status status = cross_entropy_forward_backward(args, options, {});
  EXPECT_TRUE(status.ok()) << status.message();
  return out;
}

TEST(CeCpu, IgnoredRowWithSmoothingCountsNowhere) {
  // Rows 0 and 2 alone must give the same sum and mean as all three rows with row 1 ignored:
  // the ignored row contributes no loss, no smoothing term, no weight to the mean, and a zero
  // gradient. Both sides are f32 roundings of float64 results: rtol 2^-23.
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f, 1.0f, -2.0f, 0.25f, 4.0f,
                                     1.5f, -0.5f, 0.0f};
  const std::vector<float> kept = {0.5f, -1.0f, 2.0f, 0.0f, 4.0f, 1.5f, -0.5f, 0.0f};
  for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
    SCOPED_TRACE(to_string(reduction));
    CrossEntropyOptions options;
    options.reduction = reduction;
    options.label_smoothing = 0.2f;
    options.z_loss = 0.01f;
    options.ignore_index = 3;
    const CeRun all = run_dense(logits, {1, 3, 2}, 4, options);
    const CeRun some = run_dense(kept, {1, 2}, 4, options);
    const Tolerance tol{0, 0x1p-23};
    EXPECT_TRUE(close(all.loss[0], some.loss[0], tol));
    for (int c = 0; c < 4; ++c) {
      EXPECT_TRUE(close(all.grad[c], some.grad[c], tol));
      EXPECT_EQ(all.grad[4 + c], 0.0f);
      EXPECT_TRUE(close(all.grad[8 + c], some.grad[4 + c], tol));
    }
  }
}

TEST(CeCpu, MeanOverOnlyIgnoredRowsIsZero) {
  CrossEntropyOptions options;
  options.label_smoothing = 0.1f;
  const CeRun run = run_dense({1.0f, 2.0f, 3.0f, 4.0f}, {-100, -100}, 2, options);
  EXPECT_EQ(run.loss[0], 0.0f);
  for (float g : run.grad) EXPECT_EQ(g, 0.0f);
}

TEST(CeCpu, UpstreamAndGradScaleMultiplyTheGradientOnly) {
  // grad(upstream u, scale s) = u * s * grad(1, 1), and the loss is unchanged; both sides are
  // f32 roundings of float64 values that differ by an exact power of two: rtol 2^-23.
  const std::vector<float> logits = {0.1f, 0.7f, -0.3f, 2.0f, -1.0f, 0.0f};
  const std::vector<std::int64_t> targets = {2, 0};
  const Tolerance tol{0x1p-149, 0x1p-23};
  for (Reduction reduction : {Reduction::none, Reduction::sum, Reduction::mean}) {
    SCOPED_TRACE(to_string(reduction));
    CrossEntropyOptions options;
    options.reduction = reduction;
    const float upstream[2] = {0.25f, 4.0f};  // sum/mean read only the first
    const CeRun plain = run_dense(logits, targets, 3, options);
    const CeRun scaled = run_dense(logits, targets, 3, options, 2.0f, upstream);
    for (std::size_t i = 0; i < plain.loss.size(); ++i) {
      EXPECT_EQ(plain.loss[i], scaled.loss[i]);
    }
    for (std::size_t i = 0; i < logits.size(); ++i) {
      const double u = reduction == Reduction::none ? upstream[i / 3] : upstream[0];
      EXPECT_TRUE(close(scaled.grad[i], 2.0 * u * plain.grad[i], tol)) << i;
    }
  }
}

TEST(CeCpu, InPlaceGradientEqualsOutOfPlace) {
  // Same computation, same rounding: the in-place result must be bit-identical, and the row
  // padding of the shared buffer must survive.
  constexpr std::int64_t rows = 4, classes = 5, stride = 8;
  for (Pass pass : kGradPasses) {
    SCOPED_TRACE(pass_name(pass));
    Buffer logits(DType::bf16, rows * stride);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < classes; ++c) logits.set(r * stride + c, 0.3 * r - 0.7 * c);
    }
    Buffer separate(DType::bf16, rows * stride);
    Buffer targets = Buffer::bytes_of(4, rows);
    for (std::int64_t r = 0; r < rows; ++r) targets.set_raw<std::int32_t>(r, (r * 3) % 5);
    std::vector<CrossEntropyRowStats> saved_stats(rows);
    CrossEntropyArgs args;
    args.rows = rows;
    args.classes = classes;
    args.logits = logits.data();
    args.logits_dtype = DType::bf16;
    args.logits_row_stride = stride;
    args.targets = targets.data();
    args.target_kind = TargetKind::class_index_i32;
    args.stats = saved_stats.data();
    std::vector<float> loss(1);
    args.loss = loss.data();
    ASSERT_TRUE(cross_entropy_forward(args, {}, {}).ok());
    args.saved_stats = saved_stats.data();
    args.stats = nullptr;
    args.grad_dtype = DType::bf16;
    args.grad_row_stride = stride;
    args.grad = separate.data();
    ASSERT_TRUE(call_ce(pass, args, {}, {}).ok());
    args.grad = logits.data();
    const Status status = call_ce(pass, args, {}, {});
    ASSERT_TRUE(status.ok()) << status.message();
    EXPECT_TRUE(logits.snapshot() == separate.snapshot());
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = classes; c < stride; ++c) EXPECT_TRUE(logits.untouched(r * stride + c));
    }
  }
}

}  // namespace
