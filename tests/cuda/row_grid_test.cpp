// A row op's grid holds as many blocks per SM as the occupancy API allows its kernels, registers
// included (row::count_resident_blocks), and no more: a grid that counted threads alone would
// queue blocks of 512 threads at 128 registers four to an SM where one fits. The simulator
// cannot tell a kernel's registers, so the tests give every kernel a count
// (simcuda::sim::set_registers_per_thread) and read the grid a call chose from the blocks it
// launched; on a GPU neither is visible, and they skip.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/cuda/support.h"

#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>
#endif

namespace actloss::test {
namespace {

#if defined(ACTLOSS_SIM)

// For its scope: every kernel's registers, and whether the grid counts them. The answers the
// library kept from another register count are forgotten both ways.
class RegisterModel {
 public:
  RegisterModel(int registers, bool occupancy_grid) {
    simcuda::sim::set_registers_per_thread(registers);
    detail::cuda_forget_resident_blocks_for_testing();
    detail::set_row_occupancy_grid(occupancy_grid);
  }
  ~RegisterModel() {
    simcuda::sim::set_registers_per_thread(0);
    detail::cuda_forget_resident_blocks_for_testing();
    detail::set_row_occupancy_grid(true);
  }
  RegisterModel(const RegisterModel&) = delete;
  RegisterModel& operator=(const RegisterModel&) = delete;
};

constexpr std::int64_t kSmCount = 132;           // the simulator's device (sim/README.md)
constexpr std::int64_t kThreadsPerSm = 2048;
constexpr std::int64_t kRegistersPerSm = 65536;

// The grid the occupancy API's rule gives a row op whose kernels all take `registers` a thread
// (0: no register limit), computed here from the SM's limits rather than by the library.
std::int64_t expected_grid(std::int64_t rows, int block, int registers) {
  std::int64_t per_sm = kThreadsPerSm / block;
  if (registers > 0) {
    const std::int64_t warps = (block + 31) / 32;
    const std::int64_t per_warp = (registers * 32 + 255) / 256 * 256;
    const std::int64_t by_registers = kRegistersPerSm / (warps * per_warp);
    if (by_registers < per_sm) per_sm = by_registers;
  }
  const std::int64_t cap = kSmCount * per_sm;
  return rows < cap ? rows : cap;
}

struct RowOpRun {
  std::uint64_t blocks = 0;  // launched by the call
  std::vector<std::uint8_t> outputs;
};

// One call of `op` over rows x cols f32 rows held on chip by a block of their own (16384 columns:
// block_on_chip in blocks of 512 threads), reduction none, so that it is one launch.
RowOpRun run_row_op(detail::RowOp op, std::int64_t rows, std::int64_t cols) {
  const DeviceMatrix x =
      upload_matrix(random_values(std::size_t(rows * cols), -6, 6, 17), rows, cols, DType::f32);
  const DeviceMatrix out = poisoned_matrix(rows, cols, DType::f32);
  const DeviceMatrix loss = poisoned_matrix(1, rows, DType::f32);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) labels[std::size_t(r)] = (r * 977) % cols;
  const DeviceBuffer targets = upload_vector(labels);
  synchronize_or_fail();
  RowOpRun run;
  const std::uint64_t before = simcuda::sim::launched_blocks();
  if (op == detail::RowOp::cross_entropy) {
    CrossEntropyArgs args;
    args.rows = rows;
    args.classes = cols;
    args.logits = x.data();
    args.logits_dtype = DType::f32;
    args.target_kind = TargetKind::class_index_i64;
    args.targets = targets.get();
    args.loss = static_cast<float*>(loss.data());
    args.grad = out.data();
    args.grad_dtype = DType::f32;
    CrossEntropyOptions options;
    options.reduction = Reduction::none;
    EXPECT_TRUE(cross_entropy_forward_backward(args, options, cuda_exec()).ok());
  } else {
    SoftmaxForwardArgs args;
    args.rows = rows;
    args.cols = cols;
    args.x = x.data();
    args.x_dtype = DType::f32;
    args.y = out.data();
    args.y_dtype = DType::f32;
    EXPECT_TRUE(softmax_forward(args, SoftmaxOptions{}, cuda_exec()).ok());
  }
  synchronize_or_fail();
  run.blocks = simcuda::sim::launched_blocks() - before;
  run.outputs = out.buffer.download_bytes();
  if (op == detail::RowOp::cross_entropy) {
    const std::vector<std::uint8_t> losses = loss.buffer.download_bytes();
    run.outputs.insert(run.outputs.end(), losses.begin(), losses.end());
  }
  return run;
}

#endif  // ACTLOSS_SIM

TEST(CudaRowGrid, HoldsAsManyBlocksPerSmAsTheKernelsRegistersAllow) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
#if !defined(ACTLOSS_SIM)
  GTEST_SKIP() << "a kernel's registers and a call's grid are visible in the simulator build only";
#else
  // More rows than any of the grids below, so that each grid is its cap.
  constexpr std::int64_t kRows = 600, kCols = 16384;
  for (const detail::RowOp op : {detail::RowOp::cross_entropy, detail::RowOp::softmax_forward}) {
    int block = 0, cluster_blocks = 0;
    ASSERT_TRUE(detail::cuda_row_geometry_for_testing(op, kRows, kCols, DType::f32, &block,
                                                      &cluster_blocks)
                    .ok());
    ASSERT_EQ(block, 512) << "the shape is meant for block_on_chip in blocks of 512";
    std::vector<std::uint8_t> first_outputs;
    // 128 registers: one block an SM; 64: two; none counted: the threads' four.
    for (const int registers : {128, 64, 0}) {
      for (const bool occupancy_grid : {true, false}) {
        SCOPED_TRACE(std::string(op == detail::RowOp::cross_entropy ? "cross_entropy"
                                                                    : "softmax_forward") +
                     ", " + std::to_string(registers) + " registers" +
                     (occupancy_grid ? "" : ", grid by threads alone"));
        const RegisterModel model(registers, occupancy_grid);
        const RowOpRun run = run_row_op(op, kRows, kCols);
        EXPECT_EQ(run.blocks, static_cast<std::uint64_t>(expected_grid(
                                  kRows, block, occupancy_grid ? registers : 0)));
        // Each row's outputs come from that row alone, whatever block computes it.
        if (first_outputs.empty()) first_outputs = run.outputs;
        EXPECT_TRUE(run.outputs == first_outputs) << "outputs differ with the grid";
      }
    }
  }
#endif
}

TEST(CudaRowGrid, AsksTheOccupancyApiOncePerKernelAndGeometry) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
#if !defined(ACTLOSS_SIM)
  GTEST_SKIP() << "the simulator build counts the occupancy API's calls";
#else
  constexpr std::int64_t kRows = 3, kCols = 12345;
  for (const detail::RowOp op : {detail::RowOp::cross_entropy, detail::RowOp::softmax_forward}) {
    detail::cuda_forget_resident_blocks_for_testing();
    const std::uint64_t before = simcuda::sim::occupancy_queries();
    (void)run_row_op(op, kRows, kCols);
    const std::uint64_t first = simcuda::sim::occupancy_queries() - before;
    (void)run_row_op(op, kRows, kCols);
    const std::uint64_t second = simcuda::sim::occupancy_queries() - before - first;
    EXPECT_GT(first, 0u) << "the first call's grid counted no kernel";
    EXPECT_EQ(second, 0u) << "a later call of the same shape asked again";
  }
#endif
}

}  // namespace
}  // namespace actloss::test
