// The short-row paths load a thread group's next row before they reduce the current one
// (row::for_each_row_tile). The rows, their order and every sum are the same as one row at a
// time, so the outputs must match bit for bit, over grids that leave each block an odd and an
// even number of row tiles (the loop's early exit and its full turns), and 1 block (every tile
// on one block).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using detail::RowAlgorithm;

class PrefetchSetting {
 public:
  explicit PrefetchSetting(bool prefetch) { detail::set_row_prefetch(prefetch); }
  ~PrefetchSetting() { detail::set_row_prefetch(true); }
  PrefetchSetting(const PrefetchSetting&) = delete;
  PrefetchSetting& operator=(const PrefetchSetting&) = delete;
};

std::vector<std::uint8_t> bytes_of(const DeviceMatrix& m) { return m.buffer.download_bytes(); }

struct Shape {
  RowAlgorithm path;
  std::int64_t rows, cols, grid;
};
// rows_per_warp at 100 columns: 16 threads a row, 16 rows per 256-thread block, so 37 rows are 3
// tiles; warp_per_row at 200 (one chunk a lane) and 300 (two chunks a lane): 8 rows a block, 37
// rows are 5 tiles.
constexpr Shape kShapes[] = {
    {RowAlgorithm::rows_per_warp, 37, 100, 1}, {RowAlgorithm::rows_per_warp, 37, 100, 2},
    {RowAlgorithm::warp_per_row, 37, 200, 1},  {RowAlgorithm::warp_per_row, 37, 200, 2},
    {RowAlgorithm::warp_per_row, 37, 300, 3},
};

TEST(CudaRowPrefetch, CrossEntropyMatchesOneRowAtATime) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (const Shape& shape : kShapes)
    for (DType dtype : {DType::f32, DType::bf16})
      for (bool with_grad : {false, true}) {
        SCOPED_TRACE(std::string(detail::to_string(shape.path)) + " " +
                     std::to_string(shape.cols) + " grid " + std::to_string(shape.grid) + " " +
                     to_string(dtype) + (with_grad ? " fused" : " forward"));
        const std::int64_t rows = shape.rows, cols = shape.cols;
        const DeviceMatrix logits =
            upload_matrix(random_values(std::size_t(rows * cols), -6, 6, 11), rows, cols, dtype);
        std::vector<std::int64_t> labels(static_cast<std::size_t>(rows));
        for (std::int64_t r = 0; r < rows; ++r) labels[std::size_t(r)] = (r * 31) % cols;
        const DeviceBuffer targets = upload_vector(labels);
        std::vector<std::uint8_t> results[2];
        for (bool prefetch : {false, true}) {
          const PrefetchSetting setting(prefetch);
          const ForcedRowPath forced(shape.path, shape.grid);
          const DeviceMatrix loss = poisoned_matrix(1, rows, DType::f32);
          const DeviceMatrix grad = poisoned_matrix(rows, cols, dtype);
          CrossEntropyArgs args;
          args.rows = rows;
          args.classes = cols;
          args.logits = logits.data();
          args.logits_dtype = dtype;
          args.target_kind = TargetKind::class_index_i64;
          args.targets = targets.get();
          args.loss = static_cast<float*>(loss.data());
          CrossEntropyOptions options;
          options.reduction = Reduction::none;
          if (with_grad) {
            args.grad = grad.data();
            args.grad_dtype = dtype;
            ASSERT_TRUE(cross_entropy_forward_backward(args, options, cuda_exec()).ok());
          } else {
            ASSERT_TRUE(cross_entropy_forward(args, options, cuda_exec()).ok());
          }
          synchronize_or_fail();
          std::vector<std::uint8_t>& out = results[prefetch];
          out = bytes_of(loss);
          if (with_grad) {
            const std::vector<std::uint8_t> g = bytes_of(grad);
            out.insert(out.end(), g.begin(), g.end());
          }
        }
        EXPECT_EQ(results[0], results[1]);
      }
}

TEST(CudaRowPrefetch, SoftmaxMatchesOneRowAtATime) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (const Shape& shape : kShapes)
    for (DType dtype : {DType::f32, DType::f16}) {
      SCOPED_TRACE(std::string(detail::to_string(shape.path)) + " " + std::to_string(shape.cols) +
                   " grid " + std::to_string(shape.grid) + " " + to_string(dtype));
      const std::int64_t rows = shape.rows, cols = shape.cols;
      const DeviceMatrix x =
          upload_matrix(random_values(std::size_t(rows * cols), -6, 6, 12), rows, cols, dtype);
      std::vector<std::uint8_t> results[2];
      for (bool prefetch : {false, true}) {
        const PrefetchSetting setting(prefetch);
        const ForcedRowPath forced(shape.path, shape.grid);
        const DeviceMatrix y = poisoned_matrix(rows, cols, dtype);
        SoftmaxForwardArgs args;
        args.rows = rows;
        args.cols = cols;
        args.x = x.data();
        args.x_dtype = dtype;
        args.y = y.data();
        args.y_dtype = dtype;
        ASSERT_TRUE(softmax_forward(args, SoftmaxOptions{true}, cuda_exec()).ok());
        synchronize_or_fail();
        results[prefetch] = bytes_of(y);
      }
      EXPECT_EQ(results[0], results[1]);
    }
}

}  // namespace
}  // namespace actloss::test
