// Exec::pointer_checks. By default every buffer of a CUDA call is checked with
// cudaPointerGetAttributes and a host pointer is refused by name; PointerChecks::none skips that
// query (and only that: a null pointer is still refused).
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

}  // namespace
}  // namespace actloss::test
