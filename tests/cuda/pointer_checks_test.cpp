// Exec::pointer_checks. By default every buffer of a CUDA call is checked with
// cudaPointerGetAttributes and a host pointer is refused by name; PointerChecks::none skips that
// query (and only that: a null pointer is still refused).
#include <cmath>
#include <cstdint>
#include <vector>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

TEST(CudaPointerChecks, NoneSkipsOnlyTheDeviceQuery) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  constexpr std::int64_t kRows = 4, kClasses = 64;
  const std::vector<float> host_logits(std::size_t(kRows * kClasses), 0.5f);
  const DeviceBuffer device_logits = upload_vector(host_logits);
  const DeviceBuffer labels = upload_vector(std::vector<std::int64_t>{0, 1, 2, 3});
  DeviceBuffer loss(sizeof(float));
  CrossEntropyArgs args;
  args.rows = kRows;
  args.classes = kClasses;
  args.logits = host_logits.data();
  args.targets = labels.get();
  args.loss = loss.as<float>();

  Exec exec = cuda_exec();
  loss.fill_bytes(kPoisonByte);
  const Status refused = cross_entropy_forward(args, CrossEntropyOptions{}, exec);
  EXPECT_EQ(refused.code(), StatusCode::invalid_argument);
  EXPECT_EQ(refused.argument(), "logits") << refused.message();
  for (std::uint8_t byte : loss.download_bytes()) ASSERT_EQ(byte, kPoisonByte);

  exec.pointer_checks = PointerChecks::none;
  CrossEntropyArgs null_logits = args;
  null_logits.logits = nullptr;
  EXPECT_EQ(cross_entropy_forward(null_logits, CrossEntropyOptions{}, exec).argument(), "logits");

  // Device memory gives the same bits either way.
  args.logits = device_logits.get();
  ASSERT_TRUE(cross_entropy_forward(args, CrossEntropyOptions{}, exec).ok());
  synchronize_or_fail();
  const std::vector<std::uint8_t> unchecked = loss.download_bytes();
  exec.pointer_checks = PointerChecks::every_call;
  ASSERT_TRUE(cross_entropy_forward(args, CrossEntropyOptions{}, exec).ok());
  synchronize_or_fail();
  EXPECT_EQ(loss.download_bytes(), unchecked);

#if defined(ACTLOSS_SIM)
  // The simulator's kernels can read host memory, so here the unchecked call with the host
  // pointer shows that nothing refused it (on a GPU it would fault, which is the trade-off).
  exec.pointer_checks = PointerChecks::none;
  args.logits = host_logits.data();
  loss.fill_bytes(kPoisonByte);
  EXPECT_TRUE(cross_entropy_forward(args, CrossEntropyOptions{}, exec).ok());
  EXPECT_EQ(loss.download_bytes(), unchecked);
#endif
}

// In a build with the CUDA backend the CPU path refuses device memory by name (it would crash
// the process reading it), and writes nothing.
TEST(CudaPointerChecks, CpuPathRefusesDeviceMemory) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  constexpr std::int64_t kRows = 2, kClasses = 16;
  const DeviceBuffer logits = upload_vector(std::vector<float>(kRows * kClasses, 0.25f));
  const std::vector<std::int64_t> labels{0, 3};
  float loss = -1.0f;
  CrossEntropyArgs args;
  args.rows = kRows;
  args.classes = kClasses;
  args.logits = logits.get();
  args.targets = labels.data();
  args.loss = &loss;
  const Status refused = cross_entropy_forward(args, CrossEntropyOptions{}, Exec{});
  EXPECT_EQ(refused.code(), StatusCode::invalid_argument);
  EXPECT_EQ(refused.argument(), "logits");
  EXPECT_NE(refused.message().find("Device::cuda"), std::string::npos) << refused.message();
  EXPECT_EQ(loss, -1.0f);

  std::vector<float> host_y(kRows * kClasses, -1.0f);
  SoftmaxForwardArgs softmax;
  softmax.rows = kRows;
  softmax.cols = kClasses;
  softmax.x = logits.get();
  softmax.y = host_y.data();
  EXPECT_EQ(softmax_forward(softmax, SoftmaxOptions{}, Exec{}).argument(), "x");
  EXPECT_EQ(host_y[0], -1.0f);

  // Host memory runs as before.
  const std::vector<float> host_logits(kRows * kClasses, 0.25f);
  args.logits = host_logits.data();
  EXPECT_TRUE(cross_entropy_forward(args, CrossEntropyOptions{}, Exec{}).ok());
  EXPECT_NEAR(loss, std::log(16.0f), 1e-6f);  // uniform logits: log(classes), f32 rounding
}

// Without a usable device (an nvcc build on a machine without a GPU or driver, as in CI) a CUDA
// call says so with its own status, naming exec.device, before any pointer query: not as an
// invalid pointer. Every entry point that needs the device answers the same.
TEST(CudaDeviceChecks, NoDeviceHasItsOwnStatus) {
  if (!cuda_backend_built()) GTEST_SKIP() << "no CUDA backend in this build";
  if (cuda_device_available()) GTEST_SKIP() << "a CUDA device is usable here";
  const std::vector<float> logits(64, 0.5f);
  const std::vector<std::int64_t> labels{0, 1};
  float loss = 0.0f;
  CrossEntropyArgs args;
  args.rows = 2;
  args.classes = 32;
  args.logits = logits.data();
  args.targets = labels.data();
  args.loss = &loss;
  const Exec exec = cuda_exec();
  const auto expect_no_device = [](const Status& status) {
    EXPECT_EQ(status.code(), StatusCode::no_device) << status.message();
    EXPECT_EQ(status.argument(), "exec.device");
    EXPECT_NE(status.message().find("Device::cpu"), std::string::npos) << status.message();
  };
  expect_no_device(cross_entropy_forward(args, CrossEntropyOptions{}, exec));
  Exec unchecked = exec;
  unchecked.pointer_checks = PointerChecks::none;
  expect_no_device(cross_entropy_forward(args, CrossEntropyOptions{}, unchecked));
  std::size_t bytes = 0;
  expect_no_device(cross_entropy_workspace_size(args, CrossEntropyOptions{}, exec, &bytes));
  expect_no_device(take_device_error(exec));
  // Argument errors still come first, as on every device.
  args.rows = -1;
  EXPECT_EQ(cross_entropy_forward(args, CrossEntropyOptions{}, exec).argument(), "rows");
}

}  // namespace
}  // namespace actloss::test
