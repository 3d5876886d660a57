// Numerical defects once found against a 50-digit oracle, each kept as a test on the CPU path
// and on the kernels (Device::cuda: the simulator in CI, a GPU when one is present). The
// expected values are exact to double precision (computed here in long double from closed
// forms), and each check states the accuracy the library promises for it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr double kLossRtol = 0x1p-21;  // the accuracy goal for every float32 loss
constexpr float kHuge = 3e38f;

// Float storage on either device: host memory for the CPU path, device memory for CUDA.
class Floats {
 public:
  Floats(Device device, std::vector<float> values) : device_(device), host_(std::move(values)) {
    if (device_ == Device::cuda) {
      device_copy_ = upload_vector(host_);
    }
  }
  Floats(Device device, std::size_t count) : Floats(device, std::vector<float>(count, NAN)) {}

  float* data() { return device_ == Device::cuda ? device_copy_.as<float>() : host_.data(); }
  std::vector<float> values() const {
    return device_ == Device::cuda ? download_vector<float>(device_copy_) : host_;
  }

 private:
  Device device_;
  std::vector<float> host_;
  DeviceBuffer device_copy_;
};

class Targets {
 public:
  Targets(Device device, std::vector<std::int64_t> values)
      : device_(device), host_(std::move(values)) {
    if (device_ == Device::cuda) device_copy_ = upload_vector(host_);
  }
  const std::int64_t* data() const {
    return device_ == Device::cuda ? device_copy_.as<std::int64_t>() : host_.data();
  }

 private:
  Device device_;
  std::vector<std::int64_t> host_;
  DeviceBuffer device_copy_;
};

class Numerics : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  }
  Exec exec() const {
    Exec e;
    e.device = GetParam();
    return e;
  }
  void finish() const {
    if (GetParam() == Device::cuda) synchronize_or_fail();
  }
};

::testing::AssertionResult relatively_close(double actual, long double expected, double rtol) {
  const long double error = std::fabs(static_cast<long double>(actual) - expected);
  if (error <= rtol * std::fabs(expected)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "got " << actual << ", want " << static_cast<double>(expected) << ": relative error "
         << static_cast<double>(error / std::fabs(expected)) << " > " << rtol;
}

// log(1 + exp(-d)): the loss of a two-class row whose target leads by d.
long double confident_loss(long double d) { return std::log1p(std::exp(-d)); }

// Item 1: a loss below float's 2^-24 must not be lost in log(1 + rest).
TEST_P(Numerics, SmallCrossEntropyLossesKeepTheirRelativeAccuracy) {
  for (float gap : {10.0f, 20.0f, 40.0f}) {
    for (TargetKind kind : {TargetKind::class_index_i64, TargetKind::probabilities}) {
      SCOPED_TRACE(testing::Message() << "logits [0, -" << gap << "], target kind "
                                      << static_cast<int>(kind));
      Floats logits(GetParam(), {0.0f, -gap});
      Floats probabilities(GetParam(), {1.0f, 0.0f});
      Targets classes(GetParam(), {0});
      Floats loss(GetParam(), 1), lse(GetParam(), 1);
      CrossEntropyArgs args;
      args.rows = 1;
      args.classes = 2;
      args.logits = logits.data();
      args.target_kind = kind;
      args.targets = kind == TargetKind::probabilities ? static_cast<const void*>(probabilities.data())
                                                       : classes.data();
      args.loss = loss.data();
      args.lse = lse.data();
      CrossEntropyOptions options;
      options.reduction = Reduction::none;
      ASSERT_TRUE(cross_entropy_forward(args, options, exec()).ok());
      finish();
      EXPECT_TRUE(relatively_close(loss.values()[0], confident_loss(gap), kLossRtol));
      EXPECT_TRUE(relatively_close(lse.values()[0], confident_loss(gap), kLossRtol));
    }
  }
}

TEST_P(Numerics, DominantLogSoftmaxKeepsItsRelativeAccuracy) {
  for (float gap : {10.0f, 20.0f}) {
    Floats x(GetParam(), {0.0f, -gap}), y(GetParam(), 2);
    SoftmaxForwardArgs args;
    args.rows = 1;
    args.cols = 2;
    args.x = x.data();
    args.y = y.data();
    SoftmaxOptions options;
    options.log = true;
    ASSERT_TRUE(softmax_forward(args, options, exec()).ok());
    finish();
    EXPECT_TRUE(relatively_close(y.values()[0], -confident_loss(gap), kLossRtol)) << gap;
  }
}

// The softmax gradient of a confident row is a small difference dy - sum(dy y): with
// y = (1, 2^-29) and dy = (1, 1), dx_0 = y_0 (1 - (1 + 2^-29)) = -2^-29, which a float sum
// rounds to 0.
TEST_P(Numerics, SoftmaxBackwardOfADominantRowKeepsItsRelativeAccuracy) {
  const float tail = 0x1p-29f;
  Floats y(GetParam(), {1.0f, tail}), dy(GetParam(), {1.0f, 1.0f}), dx(GetParam(), 2);
  SoftmaxBackwardArgs args;
  args.rows = 1;
  args.cols = 2;
  args.y = y.data();
  args.dy = dy.data();
  args.dx = dx.data();
  ASSERT_TRUE(softmax_backward(args, SoftmaxOptions{}, exec()).ok());
  finish();
  const long double t = tail;
  // dx_c = y_c (dy_c - (1 + t)).
  EXPECT_TRUE(relatively_close(dx.values()[0], -t, 0x1p-22));
  EXPECT_TRUE(relatively_close(dx.values()[1], t * -t, 0x1p-22));
}

// Item 2: backward from the forward's saved statistics is as accurate as the fused pass, at any
// size of the logits: all-equal logits give p = 1/C exactly.
TEST_P(Numerics, BackwardFromSavedStatsIsExactForHugeLogits) {
  struct Row {
    std::int64_t classes;
    float value;
  };
  for (const Row row : {Row{2, 1e4f}, Row{2, kHuge}, Row{1000, 1e30f}, Row{2, -1e30f}}) {
    SCOPED_TRACE(testing::Message() << row.classes << " classes of " << row.value);
    const auto classes = static_cast<std::size_t>(row.classes);
    Floats logits(GetParam(), std::vector<float>(classes, row.value));
    Targets targets(GetParam(), {0});
    Floats loss(GetParam(), 1), grad(GetParam(), classes), fused_grad(GetParam(), classes);
    Floats stats(GetParam(), 2);
    CrossEntropyArgs args;
    args.rows = 1;
    args.classes = row.classes;
    args.logits = logits.data();
    args.targets = targets.data();
    args.loss = loss.data();
    args.stats = reinterpret_cast<CrossEntropyRowStats*>(stats.data());
    ASSERT_TRUE(cross_entropy_forward(args, CrossEntropyOptions{}, exec()).ok());
    args.saved_stats = args.stats;
    args.grad = grad.data();
    ASSERT_TRUE(cross_entropy_backward(args, CrossEntropyOptions{}, exec()).ok());
    args.stats = nullptr;
    args.grad = fused_grad.data();
    ASSERT_TRUE(cross_entropy_forward_backward(args, CrossEntropyOptions{}, exec()).ok());
    finish();
    const long double p = 1.0L / static_cast<long double>(row.classes);
    // Loss log C; gradient p - 1 at the target, p elsewhere: a few roundings.
    EXPECT_TRUE(relatively_close(loss.values()[0], std::log(static_cast<long double>(row.classes)),
                                 kLossRtol));
    for (const std::vector<float>& g : {grad.values(), fused_grad.values()}) {
      EXPECT_TRUE(relatively_close(g[0], p - 1, 0x1p-21));
      EXPECT_TRUE(relatively_close(g[1], p, 0x1p-21));
    }
  }
}

// Item 3: gelu_tanh's slope at |x| >= 2^127 formed 2x = inf times 0. Item 3's neighbours: every
// activation at +-inf gives its limit.
TEST_P(Numerics, ActivationsAtTheEndsOfTheFloatRange) {
  const float inf = std::numeric_limits<float>::infinity();
  struct Expected {
    Activation activation;
    float x, y, slope;
  };
  const Expected cases[] = {
      {Activation::gelu_tanh, kHuge, kHuge, 1}, {Activation::gelu_tanh, -kHuge, 0, 0},
      {Activation::gelu_tanh, inf, inf, 1},     {Activation::gelu_tanh, -inf, 0, 0},
      {Activation::gelu_erf, kHuge, kHuge, 1},  {Activation::gelu_erf, -kHuge, 0, 0},
      {Activation::gelu_erf, inf, inf, 1},      {Activation::gelu_erf, -inf, 0, 0},
      {Activation::silu, kHuge, kHuge, 1},      {Activation::silu, -kHuge, 0, 0},
      {Activation::silu, inf, inf, 1},          {Activation::silu, -inf, 0, 0},
      {Activation::sigmoid, -inf, 0, 0},        {Activation::tanh, inf, 1, 0},
  };
  for (const Expected& c : cases) {
    SCOPED_TRACE(testing::Message() << to_string(c.activation) << " at " << c.x);
    Floats x(GetParam(), std::vector<float>{c.x}), y(GetParam(), 1);
    Floats dy(GetParam(), std::vector<float>{1.0f}), dx(GetParam(), 1);
    ActivationForwardArgs forward;
    forward.n = 1;
    forward.x = x.data();
    forward.y = y.data();
    ActivationBackwardArgs backward;
    backward.n = 1;
    backward.saved = x.data();
    backward.dy = dy.data();
    backward.dx = dx.data();
    const ActivationOptions options{c.activation, 0.01f};
    ASSERT_TRUE(activation_forward(forward, options, exec()).ok());
    ASSERT_TRUE(activation_backward(backward, options, exec()).ok());
    finish();
    // Exactly the limit (x itself at +3e38: every formula multiplies x by a factor that
    // rounds to exactly 1 there).
    EXPECT_EQ(y.values()[0], c.y);
    EXPECT_EQ(dx.values()[0], c.slope);
  }
}

// Item 4: intermediates that overflow where the answer is finite.
TEST_P(Numerics, MseGradientOfInputsFarApartIsFinite) {
  std::vector<float> input(12, 0.0f), target(12, 0.0f);
  input[0] = kHuge;
  target[0] = -kHuge;
  Floats in(GetParam(), input), tg(GetParam(), target), grad(GetParam(), 12), loss(GetParam(), 1);
  MseArgs args;
  args.n = 12;
  args.input = in.data();
  args.target = tg.data();
  args.loss = loss.data();
  args.grad = grad.data();
  ASSERT_TRUE(mse_forward_backward(args, MseOptions{}, exec()).ok());
  finish();
  // 2 (3e38 + 3e38) / 12 = 1e38; the loss, (6e38)^2 / 12, is beyond float: +inf.
  EXPECT_TRUE(relatively_close(grad.values()[0], 2.0L * (2.0L * kHuge) / 12, 0x1p-22));
  EXPECT_EQ(loss.values()[0], std::numeric_limits<float>::infinity());
  // The mean of squares beyond float's range per element, but not as a mean: (2^64)^2 / 12.
  in = Floats(GetParam(), std::vector<float>{0x1p64f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  tg = Floats(GetParam(), std::vector<float>(12, 0.0f));
  args.input = in.data();
  args.target = tg.data();
  ASSERT_TRUE(mse_forward(args, MseOptions{}, exec()).ok());
  finish();
  EXPECT_TRUE(relatively_close(loss.values()[0], 0x1p128L / 12, kLossRtol));
}

TEST_P(Numerics, CrossEntropyMeanOfAHugeRowLossIsFinite) {
  Floats logits(GetParam(), {kHuge, -kHuge, 0.0f, 0.0f});
  Targets targets(GetParam(), {1, 0});
  Floats loss(GetParam(), 1), grad(GetParam(), 4);
  CrossEntropyArgs args;
  args.rows = 2;
  args.classes = 2;
  args.logits = logits.data();
  args.targets = targets.data();
  args.loss = loss.data();
  args.grad = grad.data();
  ASSERT_TRUE(cross_entropy_forward_backward(args, CrossEntropyOptions{}, exec()).ok());
  finish();
  // Row 0 loses 6e38, row 1 log 2: the mean is 3e38 + log(2) / 2.
  EXPECT_TRUE(relatively_close(loss.values()[0], (2.0L * kHuge + std::log(2.0L)) / 2, kLossRtol));
  const std::vector<float> g = grad.values();
  EXPECT_EQ(g[0], 0.5f);
  EXPECT_EQ(g[1], -0.5f);
}

// NaN in gives NaN out, also where every other logit of the row is -inf: a max that skips the
// NaN finds -inf, and a row of -infs has no mass (its own convention), but this row's answer is
// NaN: its loss, lse, fused gradient, and the gradient from its saved statistics
// {max -inf, log s NaN}. The rows beside it stay finite. On every row path of the kernels.
TEST_P(Numerics, CrossEntropyNanAmongMaskedLogitsIsNaN) {
  constexpr std::int64_t kRows = 3, kClasses = 37, kNanColumn = 20;
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<double> values = random_values(kRows * kClasses, -4.0, 4.0, 41);
  std::vector<float> host_logits(values.begin(), values.end());
  for (std::int64_t c = 0; c < kClasses; ++c) host_logits[kClasses + c] = -inf;
  host_logits[kClasses + kNanColumn] = std::numeric_limits<float>::quiet_NaN();
  const bool cuda = GetParam() == Device::cuda;
  for (const detail::RowAlgorithm path : kPaths) {
    const ForcedRowPath forced(cuda ? path : detail::RowAlgorithm::automatic);
    SCOPED_TRACE(cuda ? detail::to_string(path) : "cpu");
    Floats logits(GetParam(), host_logits);
    Targets targets(GetParam(), {3, 0, 36});
    Floats loss(GetParam(), kRows), lse(GetParam(), kRows), stats(GetParam(), 2 * kRows);
    Floats grad(GetParam(), kRows * kClasses), fused_grad(GetParam(), kRows * kClasses);
    CrossEntropyArgs args;
    args.rows = kRows;
    args.classes = kClasses;
    args.logits = logits.data();
    args.targets = targets.data();
    args.loss = loss.data();
    args.lse = lse.data();
    args.stats = reinterpret_cast<CrossEntropyRowStats*>(stats.data());
    CrossEntropyOptions options;
    options.reduction = Reduction::none;
    ASSERT_TRUE(cross_entropy_forward(args, options, exec()).ok());
    args.saved_stats = args.stats;
    args.grad = grad.data();
    ASSERT_TRUE(cross_entropy_backward(args, options, exec()).ok());
    args.stats = nullptr;
    args.saved_stats = nullptr;
    args.lse = nullptr;
    args.grad = fused_grad.data();
    ASSERT_TRUE(cross_entropy_forward_backward(args, options, exec()).ok());
    finish();
    const std::vector<float> l = loss.values(), s = lse.values();
    EXPECT_TRUE(std::isnan(l[1]));
    EXPECT_TRUE(std::isnan(s[1]));
    for (const std::int64_t row : {std::int64_t{0}, std::int64_t{2}}) {
      EXPECT_TRUE(std::isfinite(l[static_cast<std::size_t>(row)])) << "row " << row;
      EXPECT_TRUE(std::isfinite(s[static_cast<std::size_t>(row)])) << "row " << row;
    }
    const std::vector<float> split = grad.values(), fused = fused_grad.values();
    for (std::int64_t i = 0; i < kRows * kClasses; ++i) {
      const bool in_nan_row = i / kClasses == 1;
      const auto at = static_cast<std::size_t>(i);
      EXPECT_EQ(std::isnan(split[at]), in_nan_row) << "split grad[" << i << "] = " << split[at];
      EXPECT_EQ(std::isnan(fused[at]), in_nan_row) << "fused grad[" << i << "] = " << fused[at];
    }
    if (!cuda) break;  // the CPU path has one way through
  }
}

// A class with no weight in a row's loss costs nothing even where it is masked: its gap to
// the max is infinite, and 0 times that must not make a finite loss NaN. Rows whose every third
// class is -inf and the rest 0, so lse = log k over the k unmasked classes: soft targets with
// no mass on the masked classes lose log k; a class target under smoothing eps, with weight 0
// on the masked classes and 1 elsewhere, loses ((1 - eps) + eps k / C) log k. Rows of 37 and
// 1000 classes (a partial vector; whole blocks of vectors), on every row path of the kernels.
TEST_P(Numerics, CrossEntropyMaskedClassWithoutWeightCostsNothing) {
  const bool cuda = GetParam() == Device::cuda;
  for (const std::int64_t classes : {37, 1000}) {
    std::vector<float> host_logits(static_cast<std::size_t>(classes), 0.0f);
    std::vector<float> probabilities(host_logits.size()), weights(host_logits.size(), 1.0f);
    std::int64_t unmasked = 0;
    for (std::int64_t c = 0; c < classes; ++c) {
      if (c % 3 == 1) {
        host_logits[static_cast<std::size_t>(c)] = -std::numeric_limits<float>::infinity();
        weights[static_cast<std::size_t>(c)] = 0.0f;
      } else {
        ++unmasked;
      }
    }
    const float share = 1.0f / static_cast<float>(unmasked);
    for (std::int64_t c = 0; c < classes; ++c) {
      if (c % 3 != 1) probabilities[static_cast<std::size_t>(c)] = share;
    }
    const long double log_k = std::log(static_cast<long double>(unmasked));
    const float eps = 0.25f;
    for (const detail::RowAlgorithm path : kPaths) {
      const ForcedRowPath forced(cuda ? path : detail::RowAlgorithm::automatic);
      for (const bool soft : {false, true}) {
        SCOPED_TRACE(std::string(cuda ? detail::to_string(path) : "cpu") + ", " +
                     std::to_string(classes) + (soft ? " classes, soft" : " classes, smoothing"));
        Floats logits(GetParam(), host_logits), targets_q(GetParam(), probabilities);
        Floats class_weight(GetParam(), weights);
        Targets targets(GetParam(), {0});
        Floats loss(GetParam(), 1), grad(GetParam(), static_cast<std::size_t>(classes));
        CrossEntropyArgs args;
        args.rows = 1;
        args.classes = classes;
        args.logits = logits.data();
        if (soft) {
          args.target_kind = TargetKind::probabilities;
          args.targets = targets_q.data();
        } else {
          args.targets = targets.data();
          args.class_weight = class_weight.data();
        }
        args.loss = loss.data();
        args.grad = grad.data();
        CrossEntropyOptions options;
        options.reduction = Reduction::sum;
        options.label_smoothing = soft ? 0.0f : eps;
        ASSERT_TRUE(cross_entropy_forward_backward(args, options, exec()).ok());
        finish();
        // The mass of the row's coefficients: 1 for the soft row (k copies of 1/k rounded to
        // float once, within 2^-24 of 1).
        const long double mass =
            soft ? 1.0L
                 : (1.0L - eps) + static_cast<long double>(eps) * unmasked / classes;
        EXPECT_TRUE(relatively_close(loss.values()[0], mass * log_k, kLossRtol));
        const std::vector<float> g = grad.values();
        for (std::int64_t c = 0; c < classes; ++c) {
          EXPECT_FALSE(std::isnan(g[static_cast<std::size_t>(c)])) << "grad[" << c << "]";
        }
      }
      if (!cuda) break;  // the CPU path has one way through
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, Numerics, ::testing::Values(Device::cpu, Device::cuda),
                         [](const ::testing::TestParamInfo<Device>& device) {
                           return std::string(to_string(device.param));
                         });

// Item 5: every thread of a row must end with the same statistics bit for bit, or lse and loss
// of one row disagree. The loss (class targets, no options) is log s + (m - x_y) summed in
// double from the thread holding x_y, stats are written by another: recomputing the loss from
// the written stats must give the loss written, bit for bit, on every dispatch path.
TEST(NumericsCuda, RowStatisticsAreTheSameOnEveryThreadOfTheRow) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t rows = 64;
  for (detail::RowAlgorithm path : kPaths) {
    for (std::int64_t classes : {std::int64_t{100}, std::int64_t{1000}, std::int64_t{5000}}) {
      const ForcedRowPath forced(path);
      SCOPED_TRACE(testing::Message() << detail::to_string(path) << ", " << classes << " classes");
      const std::vector<double> values = random_values(
          static_cast<std::size_t>(rows * classes), -8.0, 8.0, 7 + static_cast<std::uint64_t>(classes));
      std::vector<float> logits(values.begin(), values.end());
      std::vector<std::int64_t> targets(static_cast<std::size_t>(rows));
      for (std::int64_t r = 0; r < rows; ++r) targets[static_cast<std::size_t>(r)] = (r * 37) % classes;
      Floats d_logits(Device::cuda, logits), loss(Device::cuda, static_cast<std::size_t>(rows));
      Floats stats(Device::cuda, static_cast<std::size_t>(2 * rows));
      Targets d_targets(Device::cuda, targets);
      CrossEntropyArgs args;
      args.rows = rows;
      args.classes = classes;
      args.logits = d_logits.data();
      args.targets = d_targets.data();
      args.loss = loss.data();
      args.stats = reinterpret_cast<CrossEntropyRowStats*>(stats.data());
      CrossEntropyOptions options;
      options.reduction = Reduction::none;
      ASSERT_TRUE(cross_entropy_forward(args, options, cuda_exec()).ok());
      synchronize_or_fail();
      const std::vector<float> got_loss = loss.values(), got_stats = stats.values();
      for (std::int64_t r = 0; r < rows; ++r) {
        const auto i = static_cast<std::size_t>(r);
        const float max = got_stats[2 * i], log_sum = got_stats[2 * i + 1];
        const float x_y = logits[i * static_cast<std::size_t>(classes) + static_cast<std::size_t>(targets[i])];
        const float want = static_cast<float>(static_cast<double>(log_sum) +
                                              (static_cast<double>(max) - static_cast<double>(x_y)));
        EXPECT_EQ(got_loss[i], want) << "row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace actloss::test
