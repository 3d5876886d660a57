// Exec::workspace. A reduced loss given its scratch memory uses it: it allocates nothing (the
// simulator counts allocations), writes the same bits as a call that allocates, and refuses a
// workspace that is too small before it writes anything. *_workspace_size says 0 where nothing is
// needed, and a workspace that is malformed (data without bytes, misaligned, overlapping another
// buffer of the call) is refused by name on either device.
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>
#endif

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

// One reduced call of an op family: its size query and the call itself, on a given Exec, with
// `outputs` the buffers it writes.
struct ReducedCall {
  std::function<Status(const Exec&, std::size_t*)> size;
  std::function<Status(const Exec&)> call;
  std::vector<DeviceBuffer*> outputs;
};

std::vector<std::uint8_t> poison_and_run(const ReducedCall& c, const Exec& exec, Status* status) {
  for (DeviceBuffer* out : c.outputs) out->fill_bytes(kPoisonByte);
  *status = c.call(exec);
  synchronize_or_fail();
  std::vector<std::uint8_t> bytes;
  for (const DeviceBuffer* out : c.outputs) {
    const std::vector<std::uint8_t> b = out->download_bytes();
    bytes.insert(bytes.end(), b.begin(), b.end());
  }
  return bytes;
}

// `exact`: the asked-for size is what the call needs, so a byte less is refused (cross-entropy's
// forward, the pass that needs the most: under mean its blocks also sum the denominator);
// otherwise it covers every loop and layout the call may pick
// (BCE, MSE), and only less than one partial sum is sure to be too small.
void expect_workspace_contract(const ReducedCall& c, bool exact) {
  std::size_t bytes = 0;
  ASSERT_TRUE(c.size(cuda_exec(), &bytes).ok());
  ASSERT_GT(bytes, 0u);

  Status status;
  const std::vector<std::uint8_t> allocating = poison_and_run(c, cuda_exec(), &status);
  ASSERT_TRUE(status.ok()) << status.message();

  DeviceBuffer workspace(bytes);
  workspace.fill_bytes(kPoisonByte);  // scratch starts as garbage: nothing may rely on zeros
  Exec exec = cuda_exec();
  exec.workspace = Workspace{workspace.get(), bytes};
#if defined(ACTLOSS_SIM)
  const std::uint64_t allocations = simcuda::sim::device_allocations();
#endif
  const std::vector<std::uint8_t> given = poison_and_run(c, exec, &status);
  ASSERT_TRUE(status.ok()) << status.message();
#if defined(ACTLOSS_SIM)
  EXPECT_EQ(simcuda::sim::device_allocations(), allocations) << "allocated with a workspace";
#endif
  EXPECT_EQ(given, allocating);

  // Short: refused by name, and not one output byte written.
  exec.workspace.bytes = exact ? bytes - 1 : sizeof(double) - 1;
  const std::vector<std::uint8_t> refused = poison_and_run(c, exec, &status);
  EXPECT_EQ(status.code(), StatusCode::invalid_argument);
  EXPECT_EQ(status.argument(), "exec.workspace") << status.message();
  for (std::uint8_t byte : refused) ASSERT_EQ(byte, kPoisonByte);
}

constexpr std::int64_t kRows = 37, kClasses = 1000;

TEST(CudaWorkspace, CrossEntropyUsesTheGivenWorkspace) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const DeviceBuffer logits =
      upload_vector(std::vector<float>(std::size_t(kRows * kClasses), 0.25f));
  std::vector<std::int64_t> labels(kRows);
  for (std::int64_t r = 0; r < kRows; ++r) labels[std::size_t(r)] = (r * 17) % kClasses;
  labels[3] = -100;  // ignored: not in the mean's denominator
  const DeviceBuffer targets = upload_vector(labels);
  const DeviceBuffer class_weight = upload_vector(std::vector<float>(kClasses, 0.5f));
  DeviceBuffer loss(sizeof(float)), grad(std::size_t(kRows * kClasses) * sizeof(float));

  CrossEntropyArgs args;
  args.rows = kRows;
  args.classes = kClasses;
  args.logits = logits.get();
  args.targets = targets.get();
  args.class_weight = class_weight.as<float>();
  args.loss = loss.as<float>();
  args.grad = grad.get();
  CrossEntropyOptions options;  // mean
  options.label_smoothing = 0.1f;  // with class weights: the second pre-pass sum
  const auto size = [&](const Exec& exec, std::size_t* bytes) {
    return cross_entropy_workspace_size(args, options, exec, bytes);
  };
  {
    SCOPED_TRACE("forward: the denominator summed beside the loss");
    expect_workspace_contract(
        ReducedCall{size, [&](const Exec& exec) { return cross_entropy_forward(args, options, exec); },
                    {&loss}},
        true);
  }
  {
    SCOPED_TRACE("forward_backward: the denominator from the pre-pass");
    expect_workspace_contract(
        ReducedCall{size,
                    [&](const Exec& exec) { return cross_entropy_forward_backward(args, options, exec); },
                    {&loss, &grad}},
        false);
  }

  // Per-row losses without weights or smoothing need no scratch.
  CrossEntropyOptions per_row;
  per_row.reduction = Reduction::none;
  CrossEntropyArgs unweighted = args;
  unweighted.class_weight = nullptr;
  std::size_t bytes = 1;
  ASSERT_TRUE(cross_entropy_workspace_size(unweighted, per_row, cuda_exec(), &bytes).ok());
  EXPECT_EQ(bytes, 0u);
}

TEST(CudaWorkspace, BceAndMseUseTheGivenWorkspace) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const std::int64_t n = 5000;
  const auto as_floats = [](const std::vector<double>& values) {
    return std::vector<float>(values.begin(), values.end());
  };
  const DeviceBuffer input = upload_vector(as_floats(random_values(std::size_t(n), -3, 3, 5)));
  const DeviceBuffer target = upload_vector(as_floats(random_values(std::size_t(n), 0, 1, 6)));
  DeviceBuffer loss(sizeof(float)), grad(std::size_t(n) * sizeof(float));

  BceArgs bce;
  bce.rows = 50;
  bce.cols = n / 50;
  bce.logits = input.get();
  bce.targets = target.get();
  bce.loss = loss.as<float>();
  bce.grad = grad.get();
  expect_workspace_contract(ReducedCall{
      [&](const Exec& exec, std::size_t* bytes) {
        return bce_with_logits_workspace_size(bce, BceOptions{}, exec, bytes);
      },
      [&](const Exec& exec) { return bce_with_logits_forward_backward(bce, BceOptions{}, exec); },
      {&loss, &grad}}, false);

  MseArgs mse;
  mse.n = n;
  mse.input = input.get();
  mse.target = target.get();
  mse.loss = loss.as<float>();
  mse.grad = grad.get();
  expect_workspace_contract(ReducedCall{
      [&](const Exec& exec, std::size_t* bytes) {
        return mse_workspace_size(mse, MseOptions{Reduction::sum}, exec, bytes);
      },
      [&](const Exec& exec) { return mse_forward_backward(mse, MseOptions{Reduction::sum}, exec); },
      {&loss, &grad}}, false);

  std::size_t bytes = 1;
  ASSERT_TRUE(mse_workspace_size(mse, MseOptions{Reduction::none}, cuda_exec(), &bytes).ok());
  EXPECT_EQ(bytes, 0u);
}

// The structural checks run before anything else, on the CPU path too (which needs no scratch
// and otherwise ignores the workspace).
TEST(Workspace, MalformedWorkspacesAreRefusedByName) {
  std::vector<float> input(64, 0.5f), target(64, 0.25f), grad(64, -1.0f);
  alignas(16) float loss = -1.0f;
  MseArgs args;
  args.n = 64;
  args.input = input.data();
  args.target = target.data();
  args.loss = &loss;
  args.grad = grad.data();
  alignas(16) static unsigned char scratch[64];

  std::size_t bytes = 1;
  ASSERT_TRUE(mse_workspace_size(args, MseOptions{}, Exec{}, &bytes).ok());
  EXPECT_EQ(bytes, 0u) << "the CPU path needs no workspace";
  EXPECT_EQ(mse_workspace_size(args, MseOptions{}, Exec{}, nullptr).argument(), "bytes");

  const auto refused = [&](Workspace workspace, const char* why) {
    Exec exec;
    exec.workspace = workspace;
    const Status status = mse_forward_backward(args, MseOptions{}, exec);
    EXPECT_EQ(status.code(), StatusCode::invalid_argument) << why;
    EXPECT_EQ(status.argument(), "exec.workspace") << why << ": " << status.message();
    EXPECT_EQ(loss, -1.0f) << why;
    EXPECT_EQ(grad[0], -1.0f) << why;
  };
  refused(Workspace{nullptr, 64}, "bytes without data");
  refused(Workspace{scratch + 4, 32}, "misaligned");
  refused(Workspace{grad.data() + 4, 64}, "overlaps grad");
  refused(Workspace{&loss, sizeof loss}, "is the loss");

  Exec exec;
  exec.workspace = Workspace{scratch, sizeof scratch};
  const Status status = mse_forward_backward(args, MseOptions{}, exec);
  EXPECT_TRUE(status.ok()) << status.message();
}

}  // namespace
}  // namespace actloss::test
