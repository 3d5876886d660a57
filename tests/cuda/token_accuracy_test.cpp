// Cross-entropy's predicted classes and token accuracy, on the CPU path and on Device::cuda (every
// row dispatch path): torch.argmax's order (first of equal maxima, a NaN above everything), the
// raw logits' order under softcap, and the fraction of rows not ignored that were predicted
// right. The expected values are counted here, by a loop of this test's own.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <vector>

#include <actloss/actloss.h>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr std::int64_t kRows = 24, kClasses = 300;
constexpr double kInf = std::numeric_limits<double>::infinity();

// The first index of the largest value, a NaN winning at once.
std::int64_t first_argmax(const std::vector<double>& values, std::int64_t row) {
  std::int64_t best = 0;
  for (std::int64_t c = 0; c < kClasses; ++c) {
    const double x = values[static_cast<std::size_t>(row * kClasses + c)];
    if (std::isnan(x)) return c;
    if (x > values[static_cast<std::size_t>(row * kClasses + best)]) best = c;
  }
  return best;
}

class TokenAccuracy : public testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  }
  Exec exec() const {
    Exec e;
    e.device = GetParam();
    return e;
  }
  std::vector<detail::RowAlgorithm> row_paths() const {
    if (GetParam() == Device::cpu) return {detail::RowAlgorithm::automatic};
    return {std::begin(kPaths), std::end(kPaths)};
  }
};

TEST_P(TokenAccuracy, PredictedClassesAndAccuracy) {
  std::vector<double> values = random_values(kRows * kClasses, -4, 4, 81);
  for (double& value : values) value = static_cast<float>(value);  // what the device holds
  const auto set = [&](std::int64_t row, std::int64_t col, double value) {
    values[static_cast<std::size_t>(row * kClasses + col)] = value;
  };
  set(3, 10, 9.0);  // a tie: the first wins
  set(3, 200, 9.0);
  set(5, 50, std::nan(""));  // a NaN wins, wherever the maximum is
  set(5, 250, 20.0);
  for (std::int64_t c = 0; c < kClasses; ++c) set(7, c, -kInf);  // all -inf: class 0
  set(9, 120, kInf);
  set(11, 40, 50.0);  // equal after softcap 1 in float (tanh saturates), not before
  set(11, 41, 60.0);

  std::vector<std::int64_t> targets(kRows);
  std::int64_t counted = 0, correct = 0;
  for (std::int64_t r = 0; r < kRows; ++r) {
    const std::int64_t best = first_argmax(values, r);
    std::int64_t target = r % 3 == 0 ? best : (best + 1 + r) % kClasses;
    if (r % 5 == 4) target = -100;  // ignored: not counted
    targets[static_cast<std::size_t>(r)] = target;
    if (target == -100) continue;
    ++counted;
    correct += target == best ? 1 : 0;
  }
  const float want_accuracy =
      static_cast<float>(static_cast<double>(correct) / static_cast<double>(counted));

  std::vector<std::uint8_t> logit_bytes(values.size() * 4), target_bytes(targets.size() * 8);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto f = static_cast<float>(values[i]);
    std::memcpy(logit_bytes.data() + 4 * i, &f, 4);
  }
  std::memcpy(target_bytes.data(), targets.data(), target_bytes.size());
  Memory logits(GetParam(), logit_bytes.size()), labels(GetParam(), target_bytes.size());
  logits.upload(logit_bytes);
  labels.upload(target_bytes);

  for (detail::RowAlgorithm path : row_paths()) {
    const ForcedRowPath forced(path);
    for (float softcap : {0.0f, 1.0f}) {
      for (bool with_grad : {false, true}) {
        SCOPED_TRACE(testing::Message() << detail::to_string(path) << " softcap " << softcap
                                        << (with_grad ? " forward_backward" : " forward"));
        CrossEntropyOptions options;
        options.softcap = softcap;
        Memory predicted(GetParam(), kRows * 8), accuracy(GetParam(), 4), loss(GetParam(), 4),
            grad(GetParam(), logit_bytes.size());
        CrossEntropyArgs args;
        args.rows = kRows;
        args.classes = kClasses;
        args.logits = logits.get();
        args.targets = labels.get();
        args.loss = static_cast<float*>(loss.get());
        args.predicted = static_cast<std::int64_t*>(predicted.get());
        args.accuracy = static_cast<float*>(accuracy.get());
        if (with_grad) args.grad = grad.get();
        const Status status = with_grad ? cross_entropy_forward_backward(args, options, exec())
                                        : cross_entropy_forward(args, options, exec());
        ASSERT_TRUE(status.ok()) << status.message();
        if (GetParam() == Device::cuda) synchronize_or_fail();

        const std::vector<std::uint8_t> predicted_bytes = predicted.download();
        for (std::int64_t r = 0; r < kRows; ++r) {
          std::int64_t got;
          std::memcpy(&got, predicted_bytes.data() + 8 * r, 8);
          EXPECT_EQ(got, first_argmax(values, r)) << "row " << r;
        }
        float got_accuracy;
        std::memcpy(&got_accuracy, accuracy.download().data(), 4);
        // Both are the same integer ratio rounded once to float.
        EXPECT_EQ(got_accuracy, want_accuracy);
      }
    }
  }
}

TEST_P(TokenAccuracy, EveryRowIgnoredIsZeroAndMisuseIsRefused) {
  std::vector<std::uint8_t> logit_bytes(4 * 2 * kClasses, 0), target_bytes(16);
  const std::int64_t ignored[2] = {-100, -100};
  std::memcpy(target_bytes.data(), ignored, 16);
  Memory logits(GetParam(), logit_bytes.size()), labels(GetParam(), 16),
      predicted(GetParam(), 16), accuracy(GetParam(), 4), loss(GetParam(), 4);
  logits.upload(logit_bytes);
  labels.upload(target_bytes);
  CrossEntropyArgs args;
  args.rows = 2;
  args.classes = kClasses;
  args.logits = logits.get();
  args.targets = labels.get();
  args.loss = static_cast<float*>(loss.get());
  args.predicted = static_cast<std::int64_t*>(predicted.get());
  args.accuracy = static_cast<float*>(accuracy.get());
  ASSERT_TRUE(cross_entropy_forward(args, {}, exec()).ok());
  if (GetParam() == Device::cuda) synchronize_or_fail();
  float got;
  std::memcpy(&got, accuracy.download().data(), 4);
  EXPECT_EQ(got, 0.0f);

  CrossEntropyArgs bad = args;
  bad.predicted = nullptr;
  Status status = cross_entropy_forward(bad, {}, exec());
  EXPECT_EQ(status.argument(), "accuracy") << status.message();
  bad = args;
  bad.target_kind = TargetKind::probabilities;
  bad.targets = logits.get();
  status = cross_entropy_forward(bad, {}, exec());
  EXPECT_EQ(status.argument(), "accuracy") << status.message();
  bad = args;
  bad.predicted = reinterpret_cast<std::int64_t*>(args.loss);  // overlaps loss
  status = cross_entropy_forward(bad, {}, exec());
  EXPECT_EQ(status.code(), StatusCode::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Devices, TokenAccuracy, testing::Values(Device::cpu, Device::cuda),
                         testing::PrintToStringParamName());

}  // namespace
}  // namespace actloss::test
