// The two finishes of a reduced loss (cuda/reduce.cuh): the default, in the kernel's last block,
// and the second kernel last measured on a GPU, kept selectable for a card to compare. Both must
// give the same loss and the same gradient, with and without a workspace.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr std::int64_t kRows = 300, kClasses = 700, kElements = 100000;

struct Outputs {
  float loss = 0.0f;
  std::vector<std::uint8_t> grad;
};

// Runs `call` on a poisoned loss and gradient and returns what it wrote.
Outputs run(const std::function<Status(const Exec&)>& call, const Exec& exec, DeviceBuffer& loss,
            DeviceBuffer& grad) {
  loss.fill_bytes(kPoisonByte);
  grad.fill_bytes(kPoisonByte);
  const Status status = call(exec);
  EXPECT_TRUE(status.ok()) << status.message();
  synchronize_or_fail();
  Outputs out;
  const std::vector<std::uint8_t> bytes = loss.download_bytes();
  std::memcpy(&out.loss, bytes.data(), sizeof out.loss);
  out.grad = grad.download_bytes();
  return out;
}

// Both finishes add the same double partials; one divides by a launch-constant denominator per
// block, the other once, so the double results differ by a few units in their last place and the
// float loss by at most one rounding step: atol 0, rtol 2^-23. The gradient does not depend on
// the finish at all: same bits.
void expect_same_results(const std::function<Status(const Exec&)>& call,
                         const std::function<Status(const Exec&, std::size_t*)>& size,
                         DeviceBuffer& loss, DeviceBuffer& grad) {
  for (bool with_workspace : {false, true}) {
    SCOPED_TRACE(with_workspace ? "workspace given" : "allocating");
    Exec exec = cuda_exec();
    const Outputs in_kernel = run(call, exec, loss, grad);
    ASSERT_TRUE(std::isfinite(in_kernel.loss));
    const SecondKernelFinish second;
    std::size_t bytes = 0;
    ASSERT_TRUE(size(exec, &bytes).ok());
    DeviceBuffer workspace(bytes);
    if (with_workspace) exec.workspace = Workspace{workspace.get(), bytes};
    const Outputs separate = run(call, exec, loss, grad);
    EXPECT_NEAR(separate.loss, in_kernel.loss, std::ldexp(std::fabs(in_kernel.loss), -23));
    EXPECT_EQ(separate.grad, in_kernel.grad);
  }
}

TEST(CudaReducedLoss, SecondKernelFinishMatchesTheInKernelOne) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const DeviceBuffer logits = upload_vector([] {
    std::vector<float> v;
    for (double x : random_values(std::size_t(kRows * kClasses), -5, 5, 21))
      v.push_back(static_cast<float>(x));
    return v;
  }());
  std::vector<std::int64_t> labels(kRows);
  for (std::int64_t r = 0; r < kRows; ++r) labels[std::size_t(r)] = (r * 13) % kClasses;
  labels[7] = -100;  // ignored: outside the mean's denominator
  const DeviceBuffer targets = upload_vector(labels);
  const DeviceBuffer class_weight = upload_vector(std::vector<float>(kClasses, 0.75f));
  DeviceBuffer loss(sizeof(float)), grad(sizeof(float) * kRows * kClasses);
  CrossEntropyArgs ce;
  ce.rows = kRows;
  ce.classes = kClasses;
  ce.logits = logits.get();
  ce.targets = targets.get();
  ce.class_weight = class_weight.as<float>();
  ce.loss = loss.as<float>();
  ce.grad = grad.get();
  for (Reduction reduction : {Reduction::mean, Reduction::sum}) {
    SCOPED_TRACE(to_string(reduction));
    CrossEntropyOptions options;
    options.reduction = reduction;
    const auto size = [&](const Exec& exec, std::size_t* bytes) {
      return cross_entropy_workspace_size(ce, options, exec, bytes);
    };
    // The forward under mean takes its denominator from the pre-pass in the second-kernel
    // finish, from its own blocks in the default one.
    expect_same_results(
        [&](const Exec& exec) { return cross_entropy_forward(ce, options, exec); }, size, loss,
        grad);
    expect_same_results(
        [&](const Exec& exec) { return cross_entropy_forward_backward(ce, options, exec); },
        size, loss, grad);
  }

  const DeviceBuffer input = upload_vector(std::vector<float>(kElements, 0.5f));
  const DeviceBuffer target = upload_vector([] {
    std::vector<float> v;
    for (double x : random_values(std::size_t(kElements), 0, 1, 22)) v.push_back(float(x));
    return v;
  }());
  DeviceBuffer elementwise_grad(sizeof(float) * kElements);
  BceArgs bce;
  bce.rows = 1;
  bce.cols = kElements;
  bce.logits = input.get();
  bce.targets = target.get();
  bce.loss = loss.as<float>();
  bce.grad = elementwise_grad.get();
  expect_same_results(
      [&](const Exec& exec) { return bce_with_logits_forward_backward(bce, BceOptions{}, exec); },
      [&](const Exec& exec, std::size_t* bytes) {
        return bce_with_logits_workspace_size(bce, BceOptions{}, exec, bytes);
      },
      loss, elementwise_grad);
  MseArgs mse;
  mse.n = kElements;
  mse.input = input.get();
  mse.target = target.get();
  mse.loss = loss.as<float>();
  mse.grad = elementwise_grad.get();
  expect_same_results(
      [&](const Exec& exec) { return mse_forward_backward(mse, MseOptions{}, exec); },
      [&](const Exec& exec, std::size_t* bytes) {
        return mse_workspace_size(mse, MseOptions{}, exec, bytes);
      },
      loss, elementwise_grad);
}

}  // namespace
}  // namespace actloss::test
