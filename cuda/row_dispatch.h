// Which kernel algorithm the row-wise ops (cross-entropy, softmax, log-softmax) use for a row
// length, and the switch that lets tests force one. Host-only and header-only: tests include it
// from plain C++ without CUDA headers, and the kernels' launchers (cuda/row_common.cuh) size their
// register tiles from the same constants, so the limits below cannot drift from the kernels.
//
// The paths, by row length:
//   rows_per_warp   1 to 16 threads per row, so 2 to 32 rows per warp: short rows keep every lane
//                   busy instead of leaving a warp mostly idle on a handful of elements
//   warp_per_row    one warp per row, the row held in registers
//   block_on_chip   one block per row (up to 512 threads), the row held in registers
//   block_shared    one block per row, the row copied into shared memory as it is first read,
//                   so the second visit reads shared memory: one read of global memory for rows
//                   up to the shared memory of a block (227 KiB on sm_90, 163 KiB on sm_80;
//                   the softmax backward stages y and dy)
//   cluster_shared  rows past one block's shared memory over a thread-block cluster of 2 to 8
//                   blocks (sm_90), each block staging its share of the row in its shared memory
//                   as block_shared does; the blocks exchange their partial reductions through
//                   distributed shared memory, so rows up to 8 blocks' shared memory (1.8 MiB)
//                   are read once too. Cross-entropy and the softmax forward; taken only when
//                   forced (slower than two passes on an H100: automatic_row_algorithm)
//   block_two_pass  one block per row, the row read twice from global memory (the second read
//                   mostly from L2); any length that fits int32
// Every path works in chunks of 8 consecutive elements (one 16-byte vector of f16/bf16, two of
// f32). A thread keeps some of them in registers: 32 registers of row data per thread. Blocks
// have at most 512 threads, so a thread may use 128 registers; the kernels need about 90 of them
// besides the row at their busiest point (measured with ptxas -v for sm_90: more row data per
// thread spills). On-chip rows are therefore limited to 512 x 32 registers = 64 KiB.
#pragma once

#include <atomic>
#include <cstdint>

#include <actloss/types.h>

namespace actloss::detail {

enum class RowAlgorithm : std::uint8_t {
  automatic,
  rows_per_warp,
  warp_per_row,
  block_on_chip,
  block_shared,
  cluster_shared,
  block_two_pass,
};

// The ops sharing the dispatch; they differ in what a thread must keep per element.
enum class RowOp : std::uint8_t {
  cross_entropy,     // the logits (in their own dtype); every pass
  softmax_forward,   // x (in its own dtype)
  softmax_backward,  // y (in its own dtype) and dy (as float)
};

inline const char* to_string(RowAlgorithm algorithm) {
  switch (algorithm) {
    case RowAlgorithm::automatic: return "automatic";
    case RowAlgorithm::rows_per_warp: return "rows_per_warp";
    case RowAlgorithm::warp_per_row: return "warp_per_row";
    case RowAlgorithm::block_on_chip: return "block_on_chip";
    case RowAlgorithm::block_shared: return "block_shared";
    case RowAlgorithm::cluster_shared: return "cluster_shared";
    case RowAlgorithm::block_two_pass: return "block_two_pass";
  }
  return "unknown";
}

namespace row_limits {

inline constexpr int kChunk = 8;                // elements per chunk
inline constexpr int kRegisterBudget = 32;      // 32-bit registers of row data per thread
inline constexpr int kMaxThreadsPerRow = 512;  // the largest block of every path
inline constexpr int kMaxRowsPerWarpThreads = 16;  // rows_per_warp: at least 2 rows per warp
inline constexpr std::int64_t kMaxTwoPassClasses = 2147483647;  // int32 column indices
// block_shared: the most dynamic shared memory a block may opt into on sm_90 (227 KiB), less
// what the row kernels declare statically (under 1 KiB). Devices with less (sm_80: 163 KiB)
// hold shorter rows; the launch plan checks the device's own limit.
inline constexpr std::int64_t kMaxSharedRowBytes = 227 * 1024 - 1024;
// cluster_shared: CUDA's portable cluster size, and the bytes at the start of each block's
// dynamic shared memory that hold its partial reduction for the other blocks to read.
inline constexpr int kMaxClusterBlocks = 8;
inline constexpr std::int64_t kClusterSlotBytes = 16;

// Registers one chunk costs a thread, and so how many chunks fit the budget.
constexpr int chunk_registers(RowOp op, DType dtype) {
  const int element = dtype == DType::f32 ? kChunk : kChunk / 2;
  return op == RowOp::softmax_backward ? element + kChunk : element;
}
constexpr int max_chunks_per_thread(RowOp op, DType dtype) {
  const int chunks = kRegisterBudget / chunk_registers(op, dtype);
  // Powers of two only: these are the instantiated register tiles.
  return chunks >= 8 ? 8 : chunks >= 4 ? 4 : chunks >= 2 ? 2 : 1;
}

}  // namespace row_limits

// Bytes a chunk takes in a staging area: the row in its own dtype; for the softmax backward, y
// in its own and dy as float, the way its kernel holds them.
constexpr std::int64_t staged_chunk_bytes(RowOp op, DType dtype) {
  const std::int64_t element = dtype == DType::f32 ? 4 : 2;
  return std::int64_t{row_limits::kChunk} * (op == RowOp::softmax_backward ? element + 4 : element);
}

// The longest row `algorithm` can take for `op` with row elements of `dtype` (for
// softmax_backward: y's dtype). automatic reports the two-pass limit.
// block_shared stages the row's whole chunks (staged_chunk_bytes).
constexpr std::int64_t shared_row_max_classes(RowOp op, DType dtype, std::int64_t shared_bytes) {
  using namespace row_limits;
  return shared_bytes / staged_chunk_bytes(op, dtype) * kChunk;
}

// cluster_shared: every block of the largest cluster runs kMaxThreadsPerRow threads, each staging
// the same whole number of chunks (the launch plan balances the row that way).
constexpr std::int64_t cluster_row_max_classes(RowOp op, DType dtype, std::int64_t shared_bytes) {
  using namespace row_limits;
  if (op == RowOp::softmax_backward) return 0;
  const std::int64_t chunks_per_thread =
      (shared_bytes - kClusterSlotBytes) / (staged_chunk_bytes(op, dtype) * kMaxThreadsPerRow);
  return std::int64_t{kMaxClusterBlocks} * kMaxThreadsPerRow * chunks_per_thread * kChunk;
}

constexpr std::int64_t row_algorithm_max_classes(RowOp op, RowAlgorithm algorithm, DType dtype) {
  using namespace row_limits;
  switch (algorithm) {
    case RowAlgorithm::rows_per_warp: return std::int64_t{kMaxRowsPerWarpThreads} * kChunk;
    case RowAlgorithm::warp_per_row:
      return std::int64_t{32} * kChunk * max_chunks_per_thread(op, dtype);
    case RowAlgorithm::block_on_chip:
      return std::int64_t{kMaxThreadsPerRow} * kChunk * max_chunks_per_thread(op, dtype);
    case RowAlgorithm::block_shared: return shared_row_max_classes(op, dtype, kMaxSharedRowBytes);
    case RowAlgorithm::cluster_shared:
      return cluster_row_max_classes(op, dtype, kMaxSharedRowBytes);
    case RowAlgorithm::automatic:
    case RowAlgorithm::block_two_pass: return kMaxTwoPassClasses;
  }
  return 0;
}

// What automatic picks: the first path that holds the row.
//   rows_per_warp  up to 128 elements (16 threads x 8)
//   warp_per_row   up to 1024 (f32) / 2048 (f16, bf16); softmax backward 512
//   block_on_chip  up to 16384 (f32) / 32768 (f16, bf16); softmax backward 8192
//   block_shared   up to 57856 (f32) / 115712 (f16, bf16) on sm_90; softmax backward 28928 /
//                  38568 (sm_80 holds less: the plan checks the device's own limit)
//   block_two_pass beyond
// cluster_shared is taken only when forced: on an H100 (benchmarks/RESULTS.md, 0259768) it ran
// the cross-entropy forward at 0.36-0.74x of block_two_pass's GB/s at 128256 and 262144
// classes, and the softmax forward at 0.62-0.72x (1.08x for 16-bit rows of 128256).
constexpr RowAlgorithm automatic_row_algorithm(RowOp op, std::int64_t classes, DType dtype) {
  for (RowAlgorithm candidate :
       {RowAlgorithm::rows_per_warp, RowAlgorithm::warp_per_row, RowAlgorithm::block_on_chip,
        RowAlgorithm::block_shared}) {
    if (classes <= row_algorithm_max_classes(op, candidate, dtype)) return candidate;
  }
  return RowAlgorithm::block_two_pass;
}

namespace row_limits {
inline std::atomic<RowAlgorithm>& override_slot() {
  static std::atomic<RowAlgorithm> slot{RowAlgorithm::automatic};
  return slot;
}
inline std::atomic<bool>& prefetch_slot() {
  static std::atomic<bool> slot{true};
  return slot;
}
inline std::atomic<bool>& chunk_pieces_slot() {
  static std::atomic<bool> slot{true};
  return slot;
}
inline std::atomic<bool>& lane_shift_slot() {
  static std::atomic<bool> slot{true};
  return slot;
}
inline std::atomic<bool>& exp_once_slot() {
  static std::atomic<bool> slot{true};
  return slot;
}
inline std::atomic<bool>& occupancy_grid_slot() {
  static std::atomic<bool> slot{true};
  return slot;
}
inline std::atomic<std::int64_t>& grid_limit_slot() {
  static std::atomic<std::int64_t> slot{0};
  return slot;
}
}  // namespace row_limits

// Process-wide, for tests: forces the algorithm of every later row-op launch. A forced path that
// cannot hold the row (classes above its row_algorithm_max_classes) is not used; the call then
// runs the automatic choice, so forcing never makes a valid call fail.
inline void set_row_algorithm_override(RowAlgorithm algorithm) {
  row_limits::override_slot().store(algorithm, std::memory_order_relaxed);
}
inline RowAlgorithm row_algorithm_override() {
  return row_limits::override_slot().load(std::memory_order_relaxed);
}

// Process-wide, for tests: caps the grid of every later row-op launch at `blocks` (0: no cap),
// so that small problems walk the grid-stride loops that only large ones reach otherwise.
inline void set_row_grid_limit(std::int64_t blocks) {
  row_limits::grid_limit_slot().store(blocks, std::memory_order_relaxed);
}
inline std::int64_t row_grid_limit() {
  return row_limits::grid_limit_slot().load(std::memory_order_relaxed);
}

// Process-wide, for tests and benchmarks: whether the short-row paths (register tiles of one or
// two chunks) load a thread group's next row before they reduce the current one (the default),
// or one row at a time, the loop last measured on a card.
inline void set_row_prefetch(bool prefetch) {
  row_limits::prefetch_slot().store(prefetch, std::memory_order_relaxed);
}
inline bool row_prefetch() { return row_limits::prefetch_slot().load(std::memory_order_relaxed); }

// Process-wide, for tests and benchmarks: whether a 16-bit chunk 2 bytes past a 4-byte boundary
// (half the rows of 50257 bf16 classes) moves in pieces, its first and last elements alone and
// aligned 4-byte words between (the default), or element by element, the access last measured
// on a card (row_common.cuh).
inline void set_row_chunk_pieces(bool pieces) {
  row_limits::chunk_pieces_slot().store(pieces, std::memory_order_relaxed);
}
inline bool row_chunk_pieces() {
  return row_limits::chunk_pieces_slot().load(std::memory_order_relaxed);
}

// Process-wide, for tests and benchmarks: whether the first read of a misaligned row from
// global memory (block_shared, block_two_pass) moves in aligned 16-byte words shifted across
// the warp's lanes (the default; row::load_shifted), or chunk by chunk in the widest words each
// chunk's address allows (load_chunk), the loads last measured on a card.
inline void set_row_lane_shift(bool lane_shift) {
  row_limits::lane_shift_slot().store(lane_shift, std::memory_order_relaxed);
}
inline bool row_lane_shift() {
  return row_limits::lane_shift_slot().load(std::memory_order_relaxed);
}

// Process-wide, for tests and benchmarks: whether cross-entropy rows held on chip, without the
// rare options, take the kernel that holds them as float and computes each exponential once
// (the default; cuda/cross_entropy_exp_once.cu), or the kernel for every option and path, the
// one last measured on a card (cuda/cross_entropy.cu).
inline void set_row_exp_once(bool exp_once) {
  row_limits::exp_once_slot().store(exp_once, std::memory_order_relaxed);
}
inline bool row_exp_once() { return row_limits::exp_once_slot().load(std::memory_order_relaxed); }

// Process-wide, for tests and benchmarks: whether a row-op grid holds whole waves of the blocks
// per SM that the occupancy API allows the plan's kernels, registers included (the default;
// row::count_resident_blocks), or as many blocks per SM as the SM's threads and shared memory
// alone allow, the grid last measured on a card (row::size_row_grid).
inline void set_row_occupancy_grid(bool occupancy) {
  row_limits::occupancy_grid_slot().store(occupancy, std::memory_order_relaxed);
}
inline bool row_occupancy_grid() {
  return row_limits::occupancy_grid_slot().load(std::memory_order_relaxed);
}

// The algorithm a launch uses: the override when set and able to hold the row, else automatic.
inline RowAlgorithm chosen_row_algorithm(RowOp op, std::int64_t classes, DType dtype) {
  const RowAlgorithm forced = row_algorithm_override();
  if (forced != RowAlgorithm::automatic &&
      classes <= row_algorithm_max_classes(op, forced, dtype))
    return forced;
  return automatic_row_algorithm(op, classes, dtype);
}

}  // namespace actloss::detail
