// How the row kernels move their bytes. A row whose start allows 16-byte access goes through
// 16-byte vectors whatever its length, but for a tail of under 16 bytes; a misaligned tensor
// moves its chunks in the widest words its own address allows, never element by element for the
// whole launch (as one flag for every tensor of a launch once made it). The simulator counts the
// bytes that kernels move through its vector accesses, by width; a fallback shows as a shortfall
// against the bytes the op must move.
//
// Packed rows of an odd width start at every offset: a 16-bit chunk 2 bytes past a 4-byte
// boundary moves in pieces (its first and last element alone, three aligned 4-byte words
// between: 3/4 of its bytes in words), where it once went element by element. The pieces
// change only how bytes move, never which values are added in which order, so outputs keep
// their bits with the pieces off.
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

// The widths and layouts under test: odd widths on every path, in rows whose stride keeps each
// start on a 16-byte boundary (stride_pad rounds the width up to 8 elements), and rows 8 bytes
// past a boundary (8-byte words).
struct Layout {
  std::int64_t cols, stride_pad, offset_bytes;
};
constexpr Layout kLayouts[] = {
    {50257, 7, 0},  // GPT-2's vocabulary: block_shared
    {4097, 7, 0},   // block_on_chip
    {1001, 7, 0},   // warp_per_row
    {100, 4, 0},    // rows_per_warp
    {4096, 0, 8},   // misaligned base: 8-byte words
};
constexpr std::int64_t kRows = 5;

#if defined(ACTLOSS_SIM)
// The vector share the rows must reach: everything but a partial last chunk of 8 elements.
std::uint64_t vector_bytes_at_least(std::int64_t cols, std::int64_t bytes_per_element) {
  return static_cast<std::uint64_t>(kRows * (cols - cols % 8) * bytes_per_element);
}

// Bytes moved in the word width the layout allows: 16 bytes for aligned rows, 8 for the
// misaligned layout.
struct Traffic {
  std::uint64_t loaded = 0, stored = 0;
};
template <class Call>
Traffic traffic_of(const Layout& layout, Call&& call) {
  simcuda::sim::reset_vector_traffic();
  call();
  synchronize_or_fail();
  const simcuda::sim::VectorTraffic t = simcuda::sim::vector_traffic();
  const int width = layout.offset_bytes == 0 ? 2 : 1;
  return Traffic{t.loaded[width], t.stored[width]};
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
      const std::int64_t element = dtype_size(dtype), offset = layout.offset_bytes / element;
      const DeviceMatrix logits =
          upload_matrix(random_values(std::size_t(kRows * cols), -4, 4, 7), kRows, cols, dtype,
                        stride, offset);
      const DeviceMatrix grad = poisoned_matrix(kRows, cols, dtype, stride, offset);
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
      const Traffic t = traffic_of(layout, [&] {
        ASSERT_TRUE(cross_entropy_forward_backward(args, CrossEntropyOptions{}, cuda_exec()).ok());
      });
      EXPECT_GE(t.loaded, vector_bytes_at_least(cols, element));
      EXPECT_GE(t.stored, vector_bytes_at_least(cols, element));
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
      const std::int64_t element = dtype_size(dtype), offset = layout.offset_bytes / element;
      const DeviceMatrix x = upload_matrix(random_values(std::size_t(kRows * cols), -4, 4, 8),
                                           kRows, cols, dtype, stride, offset);
      const DeviceMatrix y = poisoned_matrix(kRows, cols, dtype, stride, offset);
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
          layout,
          [&] { ASSERT_TRUE(softmax_forward(forward, SoftmaxOptions{}, cuda_exec()).ok()); });
      EXPECT_GE(f.loaded, vector_bytes_at_least(cols, element));
      EXPECT_GE(f.stored, vector_bytes_at_least(cols, element));

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
          layout,
          [&] { ASSERT_TRUE(softmax_backward(backward, SoftmaxOptions{}, cuda_exec()).ok()); });
      EXPECT_GE(b.loaded, 2 * vector_bytes_at_least(cols, element));
      EXPECT_GE(b.stored, vector_bytes_at_least(cols, element));
    }
#endif
}

#if defined(ACTLOSS_SIM)
// A row-access setting for one scope, back to its default (on) after it.
template <void (*kSet)(bool)>
class RowAccessSetting {
 public:
  explicit RowAccessSetting(bool on) { kSet(on); }
  ~RowAccessSetting() { kSet(true); }
  RowAccessSetting(const RowAccessSetting&) = delete;
  RowAccessSetting& operator=(const RowAccessSetting&) = delete;
};
// Pieces on (the default) or off (element by element, the access last measured on a card).
using PiecesSetting = RowAccessSetting<detail::set_row_chunk_pieces>;
// The lane shift on (the default) or off (each chunk in the widest words its own address
// allows, the loads last measured on a card).
using LaneShiftSetting = RowAccessSetting<detail::set_row_lane_shift>;

// Packed rows (stride = width): 8 rows of these odd widths put a 16-bit row at every even
// offset mod 16, half of them 2 bytes past a 4-byte boundary (101 is rows_per_warp).
constexpr std::int64_t kPackedRows = 8;
constexpr std::int64_t kPackedWidths[] = {50257, 4097, 1001, 101};

// Bytes in whole chunks (the partial last chunk of a row goes element by element), and the
// share of them that must move in words: all of an aligned chunk, 3/4 of one in pieces.
std::uint64_t word_bytes_at_least(std::int64_t cols, std::int64_t element_bytes) {
  return static_cast<std::uint64_t>(kPackedRows * (cols - cols % 8) * element_bytes * 3 / 4);
}

struct WordTraffic {
  std::uint64_t loaded = 0, stored = 0;
  std::vector<std::uint8_t> outputs;
};

template <class Call>
WordTraffic word_traffic_of(bool pieces, Call&& call) {
  const PiecesSetting setting(pieces);
  simcuda::sim::reset_vector_traffic();
  std::vector<std::uint8_t> outputs = call();
  const simcuda::sim::VectorTraffic t = simcuda::sim::vector_traffic();
  WordTraffic traffic;
  for (int width = 0; width < 3; ++width) {
    traffic.loaded += t.loaded[width];
    traffic.stored += t.stored[width];
  }
  traffic.outputs = std::move(outputs);
  return traffic;
}

// Targets of packed rows: class 7919 r mod cols for row r.
DeviceBuffer packed_targets(std::int64_t rows, std::int64_t cols) {
  std::vector<std::int64_t> labels(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) labels[std::size_t(r)] = (r * 7919) % cols;
  return upload_vector(labels);
}

// Every output byte of cross-entropy forward + backward (row losses, gradient), the softmax
// forward and, with `with_softmax_backward`, its backward written over the gradient, on packed
// rows.
std::vector<std::uint8_t> row_op_outputs(const DeviceMatrix& logits, const DeviceBuffer& targets,
                                         std::int64_t rows, std::int64_t cols, DType dtype,
                                         bool with_softmax_backward) {
  const DeviceMatrix grad = poisoned_matrix(rows, cols, dtype);
  const DeviceMatrix row_loss = poisoned_matrix(1, rows, DType::f32);
  CrossEntropyArgs args;
  args.rows = rows;
  args.classes = cols;
  args.logits = logits.data();
  args.logits_dtype = dtype;
  args.target_kind = TargetKind::class_index_i64;
  args.targets = targets.get();
  args.loss = static_cast<float*>(row_loss.data());
  args.grad = grad.data();
  args.grad_dtype = dtype;
  CrossEntropyOptions options;
  options.reduction = Reduction::none;
  EXPECT_TRUE(cross_entropy_forward_backward(args, options, cuda_exec()).ok());

  const DeviceMatrix y = poisoned_matrix(rows, cols, dtype);
  SoftmaxForwardArgs forward;
  forward.rows = rows;
  forward.cols = cols;
  forward.x = logits.data();
  forward.x_dtype = dtype;
  forward.y = y.data();
  forward.y_dtype = dtype;
  EXPECT_TRUE(softmax_forward(forward, SoftmaxOptions{}, cuda_exec()).ok());
  if (with_softmax_backward) {
    SoftmaxBackwardArgs backward;
    backward.rows = rows;
    backward.cols = cols;
    backward.y = y.data();
    backward.y_dtype = dtype;
    backward.dy = grad.data();
    backward.dy_dtype = dtype;
    backward.dx = grad.data();
    backward.dx_dtype = dtype;
    EXPECT_TRUE(softmax_backward(backward, SoftmaxOptions{}, cuda_exec()).ok());
  }
  synchronize_or_fail();
  EXPECT_TRUE(grad.padding_intact());
  EXPECT_TRUE(y.padding_intact());
  std::vector<std::uint8_t> out = row_loss.buffer.download_bytes();
  for (const DeviceMatrix* m : {&grad, &y}) {
    const std::vector<std::uint8_t> bytes = m->buffer.download_bytes();
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  return out;
}
#endif

TEST(CudaRowTraffic, PackedOddRowsMoveInWordsAndKeepTheirBits) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
#if !defined(ACTLOSS_SIM)
  GTEST_SKIP() << "needs the simulator's count of vector accesses";
#else
  for (const std::int64_t cols : kPackedWidths)
    for (DType dtype : {DType::bf16, DType::f16}) {
      SCOPED_TRACE(std::to_string(cols) + " classes, " + to_string(dtype));
      const std::int64_t rows = kPackedRows, element = dtype_size(dtype);
      const DeviceMatrix logits =
          upload_matrix(random_values(std::size_t(rows * cols), -4, 4, 17), rows, cols, dtype);
      const DeviceBuffer targets = packed_targets(rows, cols);
      // Cross-entropy forward + backward, then softmax forward and backward (dx over dy).
      const auto run = [&] { return row_op_outputs(logits, targets, rows, cols, dtype, true); };
      const WordTraffic with = word_traffic_of(true, run);
      const WordTraffic without = word_traffic_of(false, run);
      // Reads: the logits by cross-entropy and softmax, y and dy by the backward (at least once
      // each); writes: the gradient, y and dx.
      const std::uint64_t once = word_bytes_at_least(cols, element);
      EXPECT_GE(with.loaded, 4 * once);
      EXPECT_GE(with.stored, 3 * once);
      // Without pieces half the rows (those 2 bytes off a 4-byte boundary) go element by
      // element: the counts must tell.
      EXPECT_GT(with.loaded, without.loaded);
      EXPECT_GT(with.stored, without.stored);
      EXPECT_EQ(with.outputs, without.outputs);
    }
#endif
}

// Rows read from global memory (block_shared; block_two_pass's first pass) start at every offset
// when packed at an odd width; their first read moves in aligned 16-byte words, the lanes of a
// warp passing each other the bytes that cross a chunk's edge (row::load_shifted), where each
// misaligned chunk took 8-, 4- or 2-byte words. The values loaded, and with them every output
// bit, are the same either way.
TEST(CudaRowTraffic, MisalignedRowsFirstReadInSixteenByteWordsAndKeepTheirBits) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
#if !defined(ACTLOSS_SIM)
  GTEST_SKIP() << "needs the simulator's count of vector accesses";
#else
  constexpr std::int64_t cols = 50257;
  for (const RowAlgorithm path : {RowAlgorithm::block_shared, RowAlgorithm::block_two_pass})
    for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
      SCOPED_TRACE(std::string(detail::to_string(path)) + ", " + to_string(dtype));
      const ForcedRowPath forced(path);
      const std::int64_t rows = kPackedRows, element = dtype_size(dtype);
      const DeviceMatrix logits =
          upload_matrix(random_values(std::size_t(rows * cols), -4, 4, 23), rows, cols, dtype);
      const DeviceBuffer targets = packed_targets(rows, cols);
      struct Run {
        std::uint64_t loaded_16 = 0;
        std::vector<std::uint8_t> outputs;
      };
      const auto run = [&](bool lane_shift) {
        const LaneShiftSetting setting(lane_shift);
        simcuda::sim::reset_vector_traffic();
        Run result;
        result.outputs = row_op_outputs(logits, targets, rows, cols, dtype, false);
        result.loaded_16 = simcuda::sim::vector_traffic().loaded_16();
        return result;
      };
      const Run shifted = run(true), unshifted = run(false);
      EXPECT_EQ(shifted.outputs, unshifted.outputs);
      // Each op reads the logits once (twice on block_two_pass, whose second read is not
      // shifted); the shifted steps leave out a warp's first step of a row and the steps of its
      // last few chunks a lane: 90% of the first reads is a loose floor. Without the shift, only
      // the rows on a 16-byte boundary (1 in 4 for f32, 1 in 8 for 16-bit) move 16 bytes at a
      // time: under 30% of every read.
      const auto one_read = static_cast<std::uint64_t>(rows * (cols - cols % 8) * element);
      const std::uint64_t reads = path == RowAlgorithm::block_two_pass ? 4 : 2;
      EXPECT_GE(shifted.loaded_16, 2 * one_read * 9 / 10);
      EXPECT_LT(unshifted.loaded_16, reads * one_read * 3 / 10);
    }
#endif
}

// The backward from saved statistics writes each chunk's gradient in the visit that reads it:
// over the logits themselves, in place, another warp may have rewritten the bytes a lane shift
// takes from the next lane's chunk by the time they are read. There the first read stays chunk
// by chunk; out of place it is shifted. Both give the gradient of the unshifted loads, bit for
// bit.
TEST(CudaRowTraffic, InPlaceBackwardReadsChunkByChunk) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
#if !defined(ACTLOSS_SIM)
  GTEST_SKIP() << "needs the simulator's count of vector accesses";
#else
  constexpr std::int64_t cols = 50257;
  const std::int64_t rows = kPackedRows;
  const DType dtype = DType::bf16;
  const std::vector<double> values = random_values(std::size_t(rows * cols), -4, 4, 29);
  const DeviceBuffer targets = packed_targets(rows, cols);
  const DeviceBuffer stats(std::size_t(rows) * sizeof(CrossEntropyRowStats));
  const auto backward = [&](bool in_place, bool lane_shift) {
    const LaneShiftSetting setting(lane_shift);
    const DeviceMatrix logits = upload_matrix(values, rows, cols, dtype);
    const DeviceMatrix grad = poisoned_matrix(rows, cols, dtype);
    CrossEntropyArgs args;
    args.rows = rows;
    args.classes = cols;
    args.logits = logits.data();
    args.logits_dtype = dtype;
    args.target_kind = TargetKind::class_index_i64;
    args.targets = targets.get();
    const DeviceBuffer loss(sizeof(float));
    args.loss = loss.as<float>();
    args.stats = stats.as<CrossEntropyRowStats>();
    const Status forward = cross_entropy_forward(args, CrossEntropyOptions{}, cuda_exec());
    EXPECT_TRUE(forward.ok()) << forward.message();
    args.loss = nullptr;
    args.stats = nullptr;
    args.saved_stats = stats.as<CrossEntropyRowStats>();
    args.grad = in_place ? const_cast<void*>(logits.data()) : grad.data();
    args.grad_dtype = dtype;
    synchronize_or_fail();
    simcuda::sim::reset_vector_traffic();
    EXPECT_TRUE(cross_entropy_backward(args, CrossEntropyOptions{}, cuda_exec()).ok());
    synchronize_or_fail();
    const std::uint64_t loaded_16 = simcuda::sim::vector_traffic().loaded_16();
    return std::make_pair(loaded_16, (in_place ? logits : grad).buffer.download_bytes());
  };
  const auto one_read = static_cast<std::uint64_t>(rows * (cols - cols % 8) * dtype_size(dtype));
  const auto [in_place_loaded, in_place_grad] = backward(true, true);
  const auto [apart_loaded, apart_grad] = backward(false, true);
  const auto [unshifted_loaded, unshifted_grad] = backward(false, false);
  EXPECT_LT(in_place_loaded, one_read * 3 / 10);
  EXPECT_GE(apart_loaded, one_read * 9 / 10);
  EXPECT_LT(unshifted_loaded, one_read * 3 / 10);
  EXPECT_EQ(apart_grad, unshifted_grad);
  // In place the buffer is the logits' allocation, laid out as the gradient's: the same bytes.
  EXPECT_EQ(in_place_grad, unshifted_grad);
#endif
}

}  // namespace
}  // namespace actloss::test
