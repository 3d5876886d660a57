// How the row kernels move their bytes: every row goes through 16-byte vectors whatever its
// length, stride or offset, but for a masked head and tail of at most 16 bytes each. The
// simulator counts the bytes that kernels move through its vector accesses; a kernel that fell
// back to element-by-element access for a misaligned row (as one flag for the whole tensor once
// made every row of 50257 classes do) shows as a shortfall against the bytes the op must move.
#include <cstdint>
#include <string>
#include <vector>

#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>
#endif

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using detail::RowAlgorithm;

// The widths and layouts under test: odd widths on every path, rows whose stride is not a
// multiple of 16 bytes, and a base one element past a 16-byte boundary.
struct Layout {
  std::int64_t cols, stride_pad, offset;
};
constexpr Layout kLayouts[] = {
    {50257, 0, 0},   // GPT-2's vocabulary: each row starts at another offset
    {4097, 3, 1},    // block_on_chip, odd stride and misaligned base
    {1000, 1, 0},    // warp_per_row
    {100, 5, 3},     // rows_per_warp
};
constexpr std::int64_t kRows = 5;

#if defined(ACTLOSS_SIM)
// The 16-byte share a row of `cols` elements of `bytes_per_element` must reach: everything but
// a head and a tail of less than 16 bytes each.
std::uint64_t vector_bytes_at_least(std::int64_t cols, std::int64_t bytes_per_element) {
  const std::int64_t row = cols * bytes_per_element;
  return static_cast<std::uint64_t>(kRows * (row > 32 ? row - 32 : 0));
}

struct Traffic {
  std::uint64_t loaded16 = 0, stored16 = 0;
};
template <class Call>
Traffic traffic_of(Call&& call) {
  simcuda::sim::reset_vector_traffic();
  call();
  synchronize_or_fail();
  const simcuda::sim::VectorTraffic t = simcuda::sim::vector_traffic();
  return Traffic{t.loaded_16(), t.stored_16()};
}
#endif

TEST(CudaRowTraffic, CrossEntropyReadsAndWritesEveryRowWithVectors) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
#if !defined(ACTLOSS_SIM)
  GTEST_SKIP() << "needs the simulator's count of vector accesses";
#else
  for (const Layout& layout : kLayouts)
    for (DType dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(std::to_string(layout.cols) + " classes, " + to_string(dtype));
      const std::int64_t cols = layout.cols, stride = cols + layout.stride_pad;
      const DeviceMatrix logits =
          upload_matrix(random_values(std::size_t(kRows * cols), -4, 4, 7), kRows, cols, dtype,
                        stride, layout.offset);
      const DeviceMatrix grad = poisoned_matrix(kRows, cols, dtype, stride, layout.offset);
      std::vector<std::int64_t> labels(kRows);
      for (std::int64_t r = 0; r < kRows; ++r) labels[std::size_t(r)] = (r * 7919) % cols;
      const DeviceBuffer targets = upload_vector(labels);
      const DeviceBuffer loss(sizeof(float));

      CrossEntropyArgs args;
      args.rows = kRows;
      args.classes = cols;
      args.logits = logits.data();
      args.logits_dtype = dtype;
      args.logits_row_stride = stride;
      args.target_kind = TargetKind::class_index_i64;
      args.targets = targets.get();
      args.loss = loss.as<float>();
      args.grad = grad.data();
      args.grad_dtype = dtype;
      args.grad_row_stride = stride;
      const std::int64_t element = dtype_size(dtype);
      const Traffic t = traffic_of([&] {
        ASSERT_TRUE(cross_entropy_forward_backward(args, CrossEntropyOptions{}, cuda_exec()).ok());
      });
      EXPECT_GE(t.loaded16, vector_bytes_at_least(cols, element));
      EXPECT_GE(t.stored16, vector_bytes_at_least(cols, element));
    }
#endif
}

TEST(CudaRowTraffic, SoftmaxReadsAndWritesEveryRowWithVectors) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
#if !defined(ACTLOSS_SIM)
  GTEST_SKIP() << "needs the simulator's count of vector accesses";
#else
  for (const Layout& layout : kLayouts)
    for (DType dtype : {DType::f32, DType::f16}) {
      SCOPED_TRACE(std::to_string(layout.cols) + " columns, " + to_string(dtype));
      const std::int64_t cols = layout.cols, stride = cols + layout.stride_pad;
      const std::int64_t element = dtype_size(dtype);
      const DeviceMatrix x = upload_matrix(random_values(std::size_t(kRows * cols), -4, 4, 8),
                                           kRows, cols, dtype, stride, layout.offset);
      const DeviceMatrix y = poisoned_matrix(kRows, cols, dtype, stride, layout.offset);
      SoftmaxForwardArgs forward;
      forward.rows = kRows;
      forward.cols = cols;
      forward.x = x.data();
      forward.x_dtype = dtype;
      forward.x_row_stride = stride;
      forward.y = y.data();
      forward.y_dtype = dtype;
      forward.y_row_stride = stride;
      const Traffic f = traffic_of(
          [&] { ASSERT_TRUE(softmax_forward(forward, SoftmaxOptions{}, cuda_exec()).ok()); });
      EXPECT_GE(f.loaded16, vector_bytes_at_least(cols, element));
      EXPECT_GE(f.stored16, vector_bytes_at_least(cols, element));

      // Backward: y and dy in the same layout, dx written over dy.
      SoftmaxBackwardArgs backward;
      backward.rows = kRows;
      backward.cols = cols;
      backward.y = y.data();
      backward.y_dtype = dtype;
      backward.y_row_stride = stride;
      backward.dy = x.data();
      backward.dy_dtype = dtype;
      backward.dy_row_stride = stride;
      backward.dx = x.data();
      backward.dx_dtype = dtype;
      backward.dx_row_stride = stride;
      const Traffic b = traffic_of(
          [&] { ASSERT_TRUE(softmax_backward(backward, SoftmaxOptions{}, cuda_exec()).ok()); });
      EXPECT_GE(b.loaded16, 2 * vector_bytes_at_least(cols, element));
      EXPECT_GE(b.stored16, vector_bytes_at_least(cols, element));
    }
#endif
}

}  // namespace
}  // namespace actloss::test
