// The dispatch paths a case forces, and what the op families' case files share: the passes of
// a loss, device Exec, the reference's reduction. Internal to validation/.
#pragma once

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "benchmarks/support/memory.h"
#include "cuda/row_dispatch.h"
#include "host/reference/reference.h"
#include "validation/validation.h"

namespace actloss::validation {

using detail::RowAlgorithm;
using detail::RowOp;

// The three entry points of every loss.
enum class Pass : std::uint8_t { forward, backward, forward_backward };
inline constexpr Pass kPasses[] = {Pass::forward, Pass::backward, Pass::forward_backward};
inline constexpr Reduction kReductions[] = {Reduction::none, Reduction::sum, Reduction::mean};
inline constexpr DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};

const char* to_string(Pass pass);
ref::Reduction to_ref(Reduction reduction);
Exec exec_for(Device device);

// The row lengths that cross every boundary between and inside the row paths (vector width,
// warp and block sizes), and row counts across warps.
inline constexpr std::int64_t kRowLengths[] = {1,  2,  15,   16,   31,   32,   33,   63,
                                               64, 65, 1023, 1024, 1025, 2047, 4096, 32000};
inline constexpr std::int64_t kRowCounts[] = {1, 2, 33, 257};

// The simulator runs every CUDA thread on the CPU (under ASan in CI): a case stays below about
// 300K elements, taking fewer rows for long ones.
std::int64_t rows_for(std::int64_t preferred, std::int64_t cols);

// One shape per row path (the CPU has one path: one shape, two at full depth), for the lists
// that meet every path with every input kind; and those input kinds, fewer at smoke depth.
struct RowShape {
  RowAlgorithm path;
  std::int64_t rows, cols;
};
std::vector<RowShape> row_shape_per_path(Device device, Depth depth);
std::vector<std::string> row_input_kinds(Depth depth);

// The row ops' dispatch paths, in the order the automatic choice tries them.
inline constexpr RowAlgorithm kRowPaths[] = {RowAlgorithm::rows_per_warp,
                                             RowAlgorithm::warp_per_row,
                                             RowAlgorithm::block_on_chip,
                                             RowAlgorithm::block_shared,
                                             RowAlgorithm::cluster_shared,
                                             RowAlgorithm::block_two_pass};
inline constexpr int kRowPathCount = static_cast<int>(std::size(kRowPaths));

// Forces a row path (and optionally caps the grid, so that the grid-stride loops over row tiles
// run many steps on small problems) for its lifetime. A path that cannot hold the row falls back
// to the automatic choice, which row_path_name() reports.
class RowPathScope {
 public:
  RowPathScope(RowAlgorithm path, std::int64_t grid_limit);
  ~RowPathScope();
  RowPathScope(const RowPathScope&) = delete;
  RowPathScope& operator=(const RowPathScope&) = delete;
};

// The path that runs for a row of `cols` elements of `dtype` when `path` is forced: "cpu" on the
// CPU, else the algorithm's name, with the grid cap when there is one.
std::string row_path_name(Device device, RowOp op, std::int64_t cols, DType dtype,
                          RowAlgorithm path, std::int64_t grid_limit);

// The elementwise kernels' paths: 16-byte packs, element by element (a misaligned base), a grid
// of two blocks, so that every thread runs many steps of the grid-stride loop, and one block,
// so that one thread's accumulator sees a long run of its elements.
enum class PointPath : std::uint8_t { vector, scalar, grid_stride, one_block };
inline constexpr PointPath kPointPaths[] = {PointPath::vector, PointPath::scalar,
                                            PointPath::grid_stride};

class PointPathScope {
 public:
  explicit PointPathScope(PointPath path);
  ~PointPathScope();
  PointPathScope(const PointPathScope&) = delete;
  PointPathScope& operator=(const PointPathScope&) = delete;
};

std::string point_path_name(Device device, PointPath path);
// The paths a device has: the three above on CUDA, the one CPU path.
std::vector<PointPath> point_paths(Device device);
inline std::int64_t offset_of(PointPath path) { return path == PointPath::scalar ? 1 : 0; }

// The cross-entropy kernels' own error bounds (derived in validation/cross_entropy.cpp), for the
// problem's logits exactly as the kernels read them: per row (loss, lse, the saved statistics),
// per gradient element, and the reduced loss. from_saved_stats: the backward, whose
// probabilities come from the forward's statistics rounded to float. The fused linear
// cross-entropy, whose chunks run these kernels, starts from them.
struct CrossEntropyBounds {
  std::vector<double> loss, lse, log_sum, max;  // per row
  std::vector<double> grad;                     // per element
  double reduced = 0;
};
CrossEntropyBounds cross_entropy_error_bounds(const ref::CrossEntropyProblem& p,
                                              const ref::CrossEntropyResult& r,
                                              bool from_saved_stats);

// The op families' parts of the table (validation/<family>.cpp).
void add_cross_entropy_cases(Device device, Depth depth, std::vector<Case>& cases);
void add_softmax_cases(Device device, Depth depth, std::vector<Case>& cases);
void add_activation_cases(Device device, Depth depth, std::vector<Case>& cases);
void add_bce_cases(Device device, Depth depth, std::vector<Case>& cases);
void add_mse_cases(Device device, Depth depth, std::vector<Case>& cases);
void add_swiglu_cases(Device device, Depth depth, std::vector<Case>& cases);
void add_linear_cross_entropy_cases(Device device, Depth depth, std::vector<Case>& cases);

}  // namespace actloss::validation
