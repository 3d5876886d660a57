// Softmax and log-softmax on Device::cuda beyond their values, which the validation table checks
// (validation/softmax.cpp, run by tests/validation): the dispatch choice and calls on no rows.
#include <gtest/gtest.h>

#include <actloss/softmax.h>

#include "cuda/row_dispatch.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using detail::RowAlgorithm;
using detail::RowOp;

// The automatic choice runs from the shortest-row path to the two-pass one, each path holding
// longer rows than the one before.
TEST(CudaSoftmax, DispatchChoice) {
  for (RowOp op : {RowOp::softmax_forward, RowOp::softmax_backward})
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
      const auto max = [&](RowAlgorithm a) { return detail::row_algorithm_max_classes(op, a, dtype); };
      EXPECT_LT(max(RowAlgorithm::rows_per_warp), max(RowAlgorithm::warp_per_row));
      EXPECT_LT(max(RowAlgorithm::warp_per_row), max(RowAlgorithm::block_on_chip));
      EXPECT_LT(max(RowAlgorithm::block_on_chip), max(RowAlgorithm::block_shared));
      EXPECT_LT(max(RowAlgorithm::block_shared), max(RowAlgorithm::block_two_pass));
      // Past the register tiles, rows are staged in one block's shared memory (y and dy for
      // the backward).
      EXPECT_EQ(detail::automatic_row_algorithm(op, max(RowAlgorithm::block_on_chip) + 1, dtype),
                RowAlgorithm::block_shared);
      EXPECT_EQ(detail::automatic_row_algorithm(op, 1, dtype), RowAlgorithm::rows_per_warp);
      // Past one block's shared memory, two passes: a cluster's shared memory is taken only when
      // forced (measured slower on an H100, row_dispatch.h).
      EXPECT_EQ(detail::automatic_row_algorithm(op, 262144, dtype), RowAlgorithm::block_two_pass);
      EXPECT_EQ(detail::automatic_row_algorithm(op, 2000000, dtype), RowAlgorithm::block_two_pass);
    }
}

// Zero rows write nothing and succeed.
TEST(CudaSoftmax, NoRows) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  SoftmaxForwardArgs forward;
  forward.cols = 10;
  EXPECT_TRUE(softmax_forward(forward, SoftmaxOptions{}, cuda_exec()).ok());
  SoftmaxBackwardArgs backward;
  backward.cols = 10;
  EXPECT_TRUE(softmax_backward(backward, SoftmaxOptions{true}, cuda_exec()).ok());
  synchronize_or_fail();
}

}  // namespace
}  // namespace actloss::test
