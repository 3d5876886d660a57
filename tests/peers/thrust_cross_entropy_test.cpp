// The Thrust/CUB cross-entropy peer of the benchmarks (benchmarks/support/thrust_cross_entropy.cu)
// against the float64 reference, reached through the public API as Device::reference: a peer
// that computed something else would make its rows in the benchmark tables meaningless. Forward,
// backward from the forward's saved row statistics, and both in one call; f32 and bf16 logits;
// widths from 1 to GPT-2's odd 50257, a few rows each. nvcc builds only (the peer is compiled
// with nvcc); without a GPU every test reports SKIPPED.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include <actloss/cross_entropy.h>

#include "benchmarks/support/peers.h"
#include "tests/cuda/support.h"

namespace actloss {
// gtest prints a DType parameter by name, not as its byte.
inline void PrintTo(DType dtype, std::ostream* os) { *os << to_string(dtype); }
}  // namespace actloss

namespace actloss::test {
namespace {

namespace peers = actloss::bench::peers;

struct Shape {
  std::int64_t rows, classes;
};

void PrintTo(const Shape& s, std::ostream* os) { *os << s.rows << " x " << s.classes; }

// Logits in [-kSpread / 2, kSpread / 2], row 0 shifted by kShift: exp(x) of those would overflow
// float (past 88.7), so that row is finite only if the peer subtracts the row max.
constexpr double kSpread = 16.0;
constexpr double kShift = 100.0;
// Unit roundoff of float, in which the peer computes everything.
constexpr double kU = 0x1p-24;

double unit_roundoff(DType dtype) { return dtype == DType::bf16 ? 0x1p-8 : kU; }

// Error bounds, first order in kU, of the peer's float arithmetic; whatever the order in which
// CUB adds (a tree, a sequence, or a mix), a float sum of n terms of one sign is good to (n - 1) kU
// relatively [Higham, Accuracy and Stability of Numerical Algorithms, 4.2].
//  - A row's sum of C exponentials: (C - 1) kU from the additions; each term exp(x - max) carries
//    the rounding of x - max (kSpread kU relatively, through the exponential) and expf's 2 ulp
//    (4 kU). Each probability p = exp(x - max) / sum adds the division's kU.
//  - A row's loss, max + log(sum) - x[target]: the sum's relative error becomes an absolute one
//    through the log; logf's ulp and the two additions add about 4 kU (|max| + log C + |x|),
//    as an absolute error.
//  - The mean: R row losses, none negative, summed and divided: (R + 1) kU relatively.
//  - The gradient, (p - onehot) / R: p's error over R, plus 3 kU relatively (the subtraction,
//    1 / R and the product); then rounded to the logits' dtype, whose unit roundoff u applies
//    to the value computed, at most the bound above away from the reference.
// The reference rounds its float outputs once more: kU relatively.
double probability_error(std::int64_t classes) {
  return (static_cast<double>(classes) + kSpread + 6.0) * kU;
}

double loss_tolerance(const Shape& s, double reference) {
  const double magnitude = 2.0 * (kShift + kSpread) + std::log(static_cast<double>(s.classes));
  return probability_error(s.classes) + 4.0 * kU * magnitude +
         (static_cast<double>(s.rows) + 2.0) * kU * std::abs(reference);
}

double gradient_tolerance(const Shape& s, DType dtype, double reference, bool is_target) {
  const double rows = static_cast<double>(s.rows);
  const double p = reference * rows + (is_target ? 1.0 : 0.0);
  const double computed = probability_error(s.classes) * std::abs(p) / rows +
                          4.0 * kU * std::abs(reference);
  return computed + unit_roundoff(dtype) * (std::abs(reference) + computed);
}

class ThrustCrossEntropy : public ::testing::TestWithParam<std::tuple<DType, Shape>> {};

TEST_P(ThrustCrossEntropy, MatchesTheFloat64Reference) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const DType dtype = std::get<0>(GetParam());
  const Shape s = std::get<1>(GetParam());
  const auto elements = static_cast<std::size_t>(s.rows * s.classes);

  std::vector<double> values = random_values(elements, -kSpread / 2, kSpread / 2, 17);
  for (std::int64_t c = 0; c < s.classes; ++c) values[static_cast<std::size_t>(c)] += kShift;
  const std::vector<double> labels_as_values =
      random_values(static_cast<std::size_t>(s.rows), 0.0, static_cast<double>(s.classes), 29);
  std::vector<std::int64_t> labels;
  for (double v : labels_as_values)
    labels.push_back(std::min(static_cast<std::int64_t>(v), s.classes - 1));

  const DeviceMatrix logits = upload_matrix(values, s.rows, s.classes, dtype);
  const DeviceBuffer targets = upload_vector(labels);
  // What the device holds, exact in float: the reference sees the same logits.
  const std::vector<double> held = logits.download();
  std::vector<float> reference_logits(held.begin(), held.end());
  float reference_loss = 0.0f;
  std::vector<float> reference_grad(elements);
  CrossEntropyArgs ref;
  ref.rows = s.rows;
  ref.classes = s.classes;
  ref.logits = reference_logits.data();
  ref.targets = labels.data();
  ref.loss = &reference_loss;
  ref.grad = reference_grad.data();
  Exec on_reference;
  on_reference.device = Device::reference;
  ASSERT_TRUE(cross_entropy_forward_backward(ref, CrossEntropyOptions{}, on_reference).ok());

  DeviceBuffer stats(static_cast<std::size_t>(2 * s.rows) * sizeof(float));
  peers::ThrustCrossEntropyArgs args;
  args.logits = logits.data();
  args.dtype = dtype;
  args.targets = targets.as<std::int64_t>();
  args.rows = s.rows;
  args.classes = s.classes;
  args.row_max = stats.as<float>();
  args.row_sum = stats.as<float>() + s.rows;
  const DeviceBuffer temp(peers::thrust_cross_entropy_temp_bytes(args));
  args.temp = temp.get();
  args.temp_bytes = temp.bytes();

  auto expect_loss = [&](float loss, const char* pass) {
    EXPECT_TRUE(std::isfinite(loss)) << pass;
    EXPECT_NEAR(loss, reference_loss, loss_tolerance(s, reference_loss)) << pass;
  };
  auto expect_gradient = [&](const DeviceMatrix& grad, const char* pass) {
    const std::vector<double> got = grad.download();
    int reported = 0;
    for (std::size_t i = 0; i < elements; ++i) {
      const auto row = static_cast<std::int64_t>(i) / s.classes;
      const bool is_target =
          static_cast<std::int64_t>(i) - row * s.classes == labels[static_cast<std::size_t>(row)];
      const double want = reference_grad[i];
      const double tolerance = gradient_tolerance(s, dtype, want, is_target);
      if (std::isfinite(got[i]) && std::abs(got[i] - want) <= tolerance) continue;
      ADD_FAILURE() << pass << ": grad[" << row << ", " << i - row * s.classes << "] = " << got[i]
                    << ", reference " << want << ", tolerance " << tolerance;
      if (++reported == 5) return;
    }
  };

  const float forward = peers::thrust_cross_entropy(peers::ThrustPass::forward, args, nullptr);
  expect_loss(forward, "forward");

  const DeviceMatrix from_saved = poisoned_matrix(s.rows, s.classes, dtype);
  args.grad = from_saved.data();
  (void)peers::thrust_cross_entropy(peers::ThrustPass::backward, args, nullptr);
  synchronize_or_fail();
  expect_gradient(from_saved, "backward");

  const DeviceMatrix fused = poisoned_matrix(s.rows, s.classes, dtype);
  args.grad = fused.data();
  stats.fill_bytes(kPoisonByte);
  const float loss =
      peers::thrust_cross_entropy(peers::ThrustPass::forward_backward, args, nullptr);
  synchronize_or_fail();
  expect_loss(loss, "forward_backward");
  expect_gradient(fused, "forward_backward");
}

std::string name_of(const ::testing::TestParamInfo<std::tuple<DType, Shape>>& info) {
  const Shape s = std::get<1>(info.param);
  return std::string(to_string(std::get<0>(info.param))) + "_rows" + std::to_string(s.rows) +
         "_classes" + std::to_string(s.classes);
}

INSTANTIATE_TEST_SUITE_P(
    Peers, ThrustCrossEntropy,
    ::testing::Combine(::testing::Values(DType::f32, DType::bf16),
                       ::testing::Values(Shape{1, 1}, Shape{3, 7}, Shape{5, 256}, Shape{4, 1000},
                                         Shape{3, 4097}, Shape{4, 50257})),
    name_of);

}  // namespace
}  // namespace actloss::test
