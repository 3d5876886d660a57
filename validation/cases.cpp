// The table: every op family's cases, and what every case shares.
#include <algorithm>
#include <cctype>

#include "host/backend.h"
#include "validation/paths.h"
#include "validation/tolerance.h"

namespace actloss::validation {

const char* to_string(Pass pass) {
  switch (pass) {
    case Pass::forward: return "forward";
    case Pass::backward: return "backward";
    case Pass::forward_backward: return "forward_backward";
  }
  return "?";
}

ref::Reduction to_ref(Reduction reduction) {
  switch (reduction) {
    case Reduction::none: return ref::Reduction::none;
    case Reduction::sum: return ref::Reduction::sum;
    case Reduction::mean: return ref::Reduction::mean;
  }
  return ref::Reduction::mean;
}

Exec exec_for(Device device) {
  Exec exec;
  exec.device = device;
  if (device == Device::cuda) exec.stream = bench::bench_stream();
  return exec;
}

RowPathScope::RowPathScope(RowAlgorithm path, std::int64_t grid_limit) {
  detail::set_row_algorithm_override(path);
  detail::set_row_grid_limit(grid_limit);
}

RowPathScope::~RowPathScope() {
  detail::set_row_algorithm_override(RowAlgorithm::automatic);
  detail::set_row_grid_limit(0);
}

std::string row_path_name(Device device, RowOp op, std::int64_t cols, DType dtype,
                          RowAlgorithm path, std::int64_t grid_limit) {
  if (device == Device::cpu) return "cpu";
  const RowPathScope scope(path, 0);
  std::string name = detail::to_string(detail::chosen_row_algorithm(op, cols, dtype));
  if (grid_limit > 0) name += " grid " + std::to_string(grid_limit);
  return name;
}

PointPathScope::PointPathScope([[maybe_unused]] PointPath path) {
#if ACTLOSS_BENCH_CUDA
  if (path == PointPath::grid_stride) detail::cuda_set_elementwise_block_limit_for_testing(2);
  if (path == PointPath::one_block) detail::cuda_set_elementwise_block_limit_for_testing(1);
#endif
}

PointPathScope::~PointPathScope() {
#if ACTLOSS_BENCH_CUDA
  detail::cuda_set_elementwise_block_limit_for_testing(0);
#endif
}

std::string point_path_name(Device device, PointPath path) {
  if (device == Device::cpu) return "cpu";
  switch (path) {
    case PointPath::vector: return "vector";
    case PointPath::scalar: return "scalar";
    case PointPath::grid_stride: return "grid-stride";
    case PointPath::one_block: return "one block";
  }
  return "?";
}

std::vector<PointPath> point_paths(Device device) {
  if (device == Device::cpu) return {PointPath::vector};
  return std::vector<PointPath>(std::begin(kPointPaths), std::end(kPointPaths));
}

std::int64_t rows_for(std::int64_t preferred, std::int64_t cols) {
  std::int64_t rows = preferred;
  while (rows > 1 && rows * cols > 300000) rows = rows == 257 ? 33 : (rows == 33 ? 2 : 1);
  return rows;
}

std::vector<RowShape> row_shape_per_path(Device device, Depth depth) {
  if (device == Device::cpu) {
    if (depth == Depth::full)
      return {{RowAlgorithm::automatic, 9, 1000}, {RowAlgorithm::automatic, 37, 37}};
    return {{RowAlgorithm::automatic, 9, 1000}};
  }
  return {{RowAlgorithm::rows_per_warp, 37, 37},
          {RowAlgorithm::warp_per_row, 9, 500},
          {RowAlgorithm::block_on_chip, 5, 5000},
          {RowAlgorithm::block_shared, 5, 5000},
          {RowAlgorithm::cluster_shared, 5, 5000},
          {RowAlgorithm::block_two_pass, 5, 5000}};
}

std::vector<std::string> row_input_kinds(Depth depth) {
  if (depth == Depth::smoke) return {"random", "extreme"};
  return {"random", "outliers", "masked", "extreme", "far below zero", "sweep"};
}

bool Outcome::passed() const {
  if (!error.empty()) return false;
  return std::all_of(checks.begin(), checks.end(), [](const Check& c) { return c.pass; });
}

std::string Outcome::failures() const {
  if (!error.empty()) return error;
  std::string text;
  for (const Check& c : checks) {
    if (c.pass) continue;
    if (!text.empty()) text += "\n";
    text += c.first_failure;
  }
  return text;
}

std::string Case::name() const {
  std::string text;
  for (const std::string* part : {&op, &pass, &dtypes, &shape, &inputs, &path}) {
    if (!text.empty()) text += '_';
    for (char ch : *part) {
      if (std::isalnum(static_cast<unsigned char>(ch))) {
        text += ch;
      } else if (ch == '>') {
        text += "to";
      } else if (ch == '+') {
        text += "plus";
      } else if (!text.empty() && text.back() != '_') {
        text += '_';
      }
    }
    while (!text.empty() && text.back() == '_') text.pop_back();
  }
  return text;
}

std::vector<Case> cases(Device device, Depth depth,
                        const std::function<bool(const std::string& op)>& wanted) {
  std::vector<Case> all;
  add_cross_entropy_cases(device, depth, all);
  add_softmax_cases(device, depth, all);
  add_activation_cases(device, depth, all);
  add_swiglu_cases(device, depth, all);
  add_bce_cases(device, depth, all);
  add_mse_cases(device, depth, all);
  add_linear_cross_entropy_cases(device, depth, all);
  if (wanted) {
    std::erase_if(all, [&](const Case& c) { return !wanted(c.op); });
  }
  return all;
}

}  // namespace actloss::validation
