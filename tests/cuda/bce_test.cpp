// BCE with logits on Device::cuda beyond its values, which the validation table checks
// (validation/bce.cpp, run by tests/validation): bitwise reproducible reductions, also where
// dense rows run as one long row, and calls on no elements.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <actloss/bce.h>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

// The reduced loss of a [rows x cols] f16 problem with weights (and a per-column pos_weight when
// asked), its tensors `offset` elements from an aligned base and `pad` elements apart, as bits.
std::uint32_t loss_bits(std::int64_t rows, std::int64_t cols, Reduction reduction,
                        bool pos_weight, std::int64_t offset, std::int64_t pad) {
  const auto n = static_cast<std::size_t>(rows * cols);
  const std::int64_t stride = cols + pad;
  const DeviceMatrix logits = upload_matrix(random_values(n, -8, 8, 30), rows, cols, DType::f16, stride, offset);
  const DeviceMatrix targets = upload_matrix(random_values(n, 0, 1, 31), rows, cols, DType::f16, stride, offset);
  const DeviceMatrix weight = upload_matrix(random_values(n, 0, 2, 32), rows, cols, DType::f16, stride, offset);
  const DeviceMatrix pw = upload_matrix(random_values(std::size_t(cols), 0.5, 4, 33), 1, cols, DType::f32);
  const DeviceMatrix loss = poisoned_matrix(1, 1, DType::f32);
  BceArgs args;
  args.rows = rows;
  args.cols = cols;
  args.logits = logits.data();
  args.logits_dtype = DType::f16;
  args.logits_row_stride = stride;
  args.targets = targets.data();
  args.target_dtype = DType::f16;
  args.target_row_stride = stride;
  args.weight = weight.data();
  args.weight_dtype = DType::f16;
  args.weight_row_stride = stride;
  if (pos_weight) args.pos_weight = static_cast<const float*>(pw.data());
  args.loss = static_cast<float*>(loss.data());
  const Status status = bce_with_logits_forward(args, BceOptions{reduction}, cuda_exec());
  EXPECT_TRUE(status.ok()) << status.message();
  synchronize_or_fail();
  const float value = static_cast<float>(loss.download()[0]);
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// weight x pos_weight beyond float's range: the float product w * slope overflows on the way to
// a gradient the mean's 1/8 brings back into range, -w pw sigmoid(50) / 8 = -1.5e38 (sigmoid(50)
// is 1 in float). Checked to 1e-6 relative: a few float roundings of the inputs' product.
TEST(CudaBce, GradientPastFloatOnTheWayStaysFinite) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const DeviceMatrix logits = upload_matrix(std::vector<double>(8, -50.0), 1, 8, DType::f32);
  const DeviceMatrix targets = upload_matrix(std::vector<double>(8, 1.0), 1, 8, DType::f32);
  const DeviceMatrix weight = upload_matrix(std::vector<double>(8, 4.0), 1, 8, DType::f32);
  const DeviceMatrix pos_weight =
      upload_matrix(std::vector<double>(8, static_cast<double>(3e38f)), 1, 8, DType::f32);
  const DeviceMatrix grad = poisoned_matrix(1, 8, DType::f32);
  BceArgs args;
  args.rows = 1;
  args.cols = 8;
  args.logits = logits.data();
  args.targets = targets.data();
  args.weight = weight.data();
  args.pos_weight = static_cast<const float*>(pos_weight.data());
  args.grad = grad.data();
  ASSERT_TRUE(bce_with_logits_backward(args, BceOptions{Reduction::mean}, cuda_exec()).ok());
  synchronize_or_fail();
  const double want = -4.0 * static_cast<double>(3e38f) / 8.0;
  const std::vector<double> got = grad.download();
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(got[std::size_t(i)], want, 1e-6 * -want) << i;
}

// The sum is a function of the shape, the layout and the device only: repeated calls and
// misaligned copies (scalar loads) give the same bits; so do strided copies where a per-column
// pos_weight keeps even dense rows apart. Dense rows without one run as one long row ([N x 1],
// [N x 17]), aligned or not. So under either loop, and with a grid capped to two blocks, where
// every thread takes many steps across rows.
TEST(CudaBce, ReductionsAreBitwiseReproducible) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (int loop : kElementwiseLoops)
    for (std::int64_t block_limit : {0, 2}) {
      SCOPED_TRACE("packs per step " + std::to_string(loop) + ", block limit " +
                   std::to_string(block_limit));
      const ForcedElementwiseLoop forced(loop, block_limit);
      for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
        const std::uint32_t first = loss_bits(257, 1025, reduction, true, 0, 0);
        EXPECT_EQ(loss_bits(257, 1025, reduction, true, 0, 0), first) << "repeated call";
        EXPECT_EQ(loss_bits(257, 1025, reduction, true, 1, 0), first) << "misaligned copy";
        EXPECT_EQ(loss_bits(257, 1025, reduction, true, 0, 3), first) << "strided copy";
        for (std::int64_t cols : {1, 17}) {
          const std::uint32_t dense = loss_bits(257, cols, reduction, false, 0, 0);
          EXPECT_EQ(loss_bits(257, cols, reduction, false, 1, 0), dense)
              << "misaligned, " << cols;
        }
      }
    }
}

TEST(CudaBce, NoElementsGiveZeroLoss) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (Reduction reduction : {Reduction::sum, Reduction::mean})
    for (const auto& [rows, cols] : {std::pair<std::int64_t, std::int64_t>{0, 5}, {4, 0}}) {
      DeviceBuffer loss(4);
      loss.fill_bytes(kPoisonByte);
      BceArgs args;
      args.rows = rows;
      args.cols = cols;
      args.loss = loss.as<float>();
      const Status status = bce_with_logits_forward(args, BceOptions{reduction}, cuda_exec());
      ASSERT_TRUE(status.ok()) << status.message();
      synchronize_or_fail();
      EXPECT_EQ(download_vector<float>(loss)[0], 0.0f) << actloss::to_string(reduction);
    }
  BceArgs args;  // every pointer null
  EXPECT_TRUE(bce_with_logits_forward_backward(args, BceOptions{}, cuda_exec()).ok());
  synchronize_or_fail();
}

}  // namespace
}  // namespace actloss::test
