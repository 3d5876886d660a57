// MSE on Device::cuda beyond its values, which the validation table checks (validation/mse.cpp,
// run by tests/validation): bitwise reproducible reductions and calls on no elements. The same
// source runs in the simulator build (under ASan in CI) and on a GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <actloss/mse.h>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

// The reduced loss of input against target (f16 copies, `offset` elements from an aligned base),
// as raw bits.
std::uint32_t loss_bits(const std::vector<double>& input, const std::vector<double>& target,
                        Reduction reduction, std::int64_t offset) {
  const auto n = static_cast<std::int64_t>(input.size());
  const DeviceMatrix x = upload_matrix(input, 1, n, DType::f16, 0, offset);
  const DeviceMatrix t = upload_matrix(target, 1, n, DType::f16, 0, offset);
  const DeviceMatrix loss = poisoned_matrix(1, 1, DType::f32);
  const DeviceMatrix grad = poisoned_matrix(1, n, DType::f16, 0, offset);
  MseArgs args;
  args.n = n;
  args.input = x.data();
  args.input_dtype = DType::f16;
  args.target = t.data();
  args.target_dtype = DType::f16;
  args.loss = static_cast<float*>(loss.data());
  args.grad = grad.data();
  args.grad_dtype = DType::f16;
  const Status status = mse_forward_backward(args, MseOptions{reduction}, cuda_exec());
  EXPECT_TRUE(status.ok()) << status.message();
  synchronize_or_fail();
  const float value = static_cast<float>(loss.download()[0]);
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// The sum is a function of the shape and the device only: repeated calls, and calls on
// misaligned copies (scalar loads instead of vector loads), give the same bits; so under either
// loop, and with a grid capped to two blocks, where every thread takes many steps.
TEST(CudaMse, ReductionsAreBitwiseReproducible) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (int loop : kElementwiseLoops)
    for (std::int64_t block_limit : {0, 2}) {
      SCOPED_TRACE("packs per step " + std::to_string(loop) + ", block limit " +
                   std::to_string(block_limit));
      const ForcedElementwiseLoop forced(loop, block_limit);
      for (Reduction reduction : {Reduction::sum, Reduction::mean})
        for (std::int64_t n : {std::int64_t{4099}, std::int64_t{65537}}) {
          const std::vector<double> input = random_values(std::size_t(n), -4, 4, 300);
          const std::vector<double> target = random_values(std::size_t(n), -4, 4, 301);
          const std::uint32_t first = loss_bits(input, target, reduction, 0);
          EXPECT_EQ(loss_bits(input, target, reduction, 0), first);
          EXPECT_EQ(loss_bits(input, target, reduction, 1), first)
              << "misaligned copy summed differently";
        }
    }
}

TEST(CudaMse, NoElementsGiveZeroLoss) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
    DeviceBuffer loss(4);
    loss.fill_bytes(kPoisonByte);
    MseArgs args;
    args.loss = loss.as<float>();
    const Status status = mse_forward(args, MseOptions{reduction}, cuda_exec());
    ASSERT_TRUE(status.ok()) << status.message();
    synchronize_or_fail();
    EXPECT_EQ(download_vector<float>(loss)[0], 0.0f) << actloss::to_string(reduction);
  }
  MseArgs args;  // every pointer null
  EXPECT_TRUE(mse_forward_backward(args, MseOptions{}, cuda_exec()).ok());
  synchronize_or_fail();
}

}  // namespace
}  // namespace actloss::test
