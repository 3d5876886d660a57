#include "host/cpu_path.h"

#include <cstring>

#include "host/half.h"

namespace actloss::host {

std::vector<double> gather(const void* data, DType dtype, std::int64_t rows, std::int64_t cols,
                           std::int64_t row_stride) {
  std::vector<double> values(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      values[static_cast<std::size_t>(r * cols + c)] = load_as_double(data, dtype, r * row_stride + c);
    }
  }
  return values;
}

void scatter(void* data, DType dtype, std::int64_t rows, std::int64_t cols,
             std::int64_t row_stride, std::span<const double> values) {
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      store_from_double(data, dtype, r * row_stride + c,
                        values[static_cast<std::size_t>(r * cols + c)]);
    }
  }
}

std::vector<double> gather(const void* data, DType dtype, const BatchedRows& layout) {
  std::vector<double> values(static_cast<std::size_t>(layout.rows * layout.cols));
  for (std::int64_t r = 0; r < layout.rows; ++r) {
    const std::int64_t start = layout.start_of(r);
    for (std::int64_t c = 0; c < layout.cols; ++c) {
      values[static_cast<std::size_t>(r * layout.cols + c)] =
          load_as_double(data, dtype, start + c);
    }
  }
  return values;
}

void scatter(void* data, DType dtype, const BatchedRows& layout,
             std::span<const double> values) {
  for (std::int64_t r = 0; r < layout.rows; ++r) {
    const std::int64_t start = layout.start_of(r);
    for (std::int64_t c = 0; c < layout.cols; ++c) {
      store_from_double(data, dtype, start + c, values[static_cast<std::size_t>(r * layout.cols + c)]);
    }
  }
}

std::vector<double> gather_f32(const float* data, std::int64_t count) {
  if (data == nullptr) return {};
  return std::vector<double>(data, data + count);
}

void scatter_f32(float* data, std::span<const double> values) {
  for (std::size_t i = 0; i < values.size(); ++i) data[i] = double_to_float(values[i]);
}

void store_f32(float* data, double value) { *data = double_to_float(value); }

std::vector<double> gather_upstream(const float* upstream, Reduction reduction,
                                    std::int64_t per_element) {
  return gather_f32(upstream, reduction == Reduction::none ? per_element : 1);
}

std::int64_t load_class_target(const void* targets, TargetKind kind, std::int64_t index) {
  if (kind == TargetKind::class_index_i32) {
    std::int32_t value;
    std::memcpy(&value, static_cast<const std::int32_t*>(targets) + index, sizeof value);
    return value;
  }
  std::int64_t value;
  std::memcpy(&value, static_cast<const std::int64_t*>(targets) + index, sizeof value);
  return value;
}

ref::Reduction to_ref(Reduction reduction) {
  switch (reduction) {
    case Reduction::none: return ref::Reduction::none;
    case Reduction::sum: return ref::Reduction::sum;
    case Reduction::mean: return ref::Reduction::mean;
  }
  return ref::Reduction::mean;  // unreachable after validation
}

}  // namespace actloss::host
