// Test support for the CUDA backend: exact-size device buffers, typed upload/download through the
// host-side f16/bf16 conversions, poisoning, and tolerance checks. Tests use the public API and
// plain CUDA runtime calls only, so the same source runs on a GPU and in the simulator build.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "cuda/row_dispatch.h"
#include "host/backend.h"
#include "host/reference/reference.h"

namespace actloss::test {

bool cuda_device_available();

#define ACTLOSS_REQUIRE_CUDA_DEVICE()                                                        \
  do {                                                                                       \
    if (!::actloss::test::cuda_device_available())                                           \
      GTEST_SKIP() << "no CUDA device: runs on a GPU, or on CPU in the simulator build";     \
  } while (0)

// The three entry points of every loss, and the reductions they take, as the loss tests
// enumerate them.
enum class Pass { forward, backward, forward_backward };
inline constexpr Pass kPasses[] = {Pass::forward, Pass::backward, Pass::forward_backward};
inline constexpr Reduction kReductions[] = {Reduction::none, Reduction::sum, Reduction::mean};

inline const char* to_string(Pass pass) {
  switch (pass) {
    case Pass::forward: return "forward";
    case Pass::backward: return "backward";
    case Pass::forward_backward: return "forward_backward";
  }
  return "?";
}

inline ref::Reduction to_ref(Reduction r) {
  switch (r) {
    case Reduction::none: return ref::Reduction::none;
    case Reduction::sum: return ref::Reduction::sum;
    case Reduction::mean: return ref::Reduction::mean;
  }
  return ref::Reduction::none;
}

// Every byte 0xFF reads as NaN in f32, f16 and bf16, so an element a kernel forgot to write
// fails any closeness check, and an untouched padding byte is recognisable.
constexpr std::uint8_t kPoisonByte = 0xFF;

// Device memory of exactly `bytes` bytes: in the simulator build an access one past the end hits
// an AddressSanitizer redzone.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* get() const { return data_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  std::size_t bytes() const { return bytes_; }

  void fill_bytes(std::uint8_t byte);
  void upload_bytes(const void* source, std::size_t bytes, std::size_t offset = 0);
  std::vector<std::uint8_t> download_bytes() const;

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

template <class T>
DeviceBuffer upload_vector(const std::vector<T>& values) {
  DeviceBuffer buffer(values.size() * sizeof(T));
  buffer.upload_bytes(values.data(), values.size() * sizeof(T));
  return buffer;
}

template <class T>
std::vector<T> download_vector(const DeviceBuffer& buffer) {
  const std::vector<std::uint8_t> bytes = buffer.download_bytes();
  std::vector<T> values(bytes.size() / sizeof(T));
  if (!values.empty()) std::memcpy(values.data(), bytes.data(), values.size() * sizeof(T));
  return values;
}

// What a tensor of `dtype` holds after `values` are stored into it (round to nearest even).
std::vector<double> quantize(const std::vector<double>& values, DType dtype);

// A [rows x cols] matrix of `dtype` in device memory, with a row stride and an optional offset in
// elements from a 256-byte-aligned allocation (offset 1 makes every row misaligned for vector
// loads). Everything that is not an element (padding, the offset) starts poisoned.
struct DeviceMatrix {
  DeviceBuffer buffer;
  DType dtype = DType::f32;
  std::int64_t rows = 0, cols = 0, stride = 0, offset = 0;

  void* data() const;
  // The elements, dense [rows x cols], widened exactly to double.
  std::vector<double> download() const;
  // True when no byte outside the elements was changed.
  bool padding_intact() const;
};

DeviceMatrix poisoned_matrix(std::int64_t rows, std::int64_t cols, DType dtype,
                             std::int64_t stride = 0, std::int64_t offset = 0);
// `dense` is rounded to `dtype` on the way in; use quantize() to get what the device holds.
DeviceMatrix upload_matrix(const std::vector<double>& dense, std::int64_t rows, std::int64_t cols,
                           DType dtype, std::int64_t stride = 0, std::int64_t offset = 0);

// |actual - expected| <= atol + rtol * |expected| per element; NaN matches only NaN and an
// infinity only the same infinity. Each check states its tolerance and why next to the call.
struct Tolerance {
  double atol = 0;
  double rtol = 0;
};
::testing::AssertionResult all_close(const std::vector<double>& actual,
                                     const std::vector<double>& expected, Tolerance tolerance,
                                     const std::string& what);

// Deterministic uniform values in [low, high).
std::vector<double> random_values(std::size_t count, double low, double high, std::uint64_t seed);

// Exec for the CUDA backend on the default stream.
inline Exec cuda_exec() {
  Exec exec;
  exec.device = Device::cuda;
  return exec;
}

// Caps the elementwise kernels' grid for its lifetime, so their grid-stride loops take several
// steps on problems small enough for the simulator.
class ElementwiseGridLimit {
 public:
  explicit ElementwiseGridLimit(std::int64_t blocks) {
    detail::cuda_set_elementwise_block_limit_for_testing(blocks);
  }
  ~ElementwiseGridLimit() { detail::cuda_set_elementwise_block_limit_for_testing(0); }
  ElementwiseGridLimit(const ElementwiseGridLimit&) = delete;
  ElementwiseGridLimit& operator=(const ElementwiseGridLimit&) = delete;
};

// The row ops' dispatch paths, and the row lengths and counts that cross every boundary between
// them (and the vector width, warp and block sizes inside them).
inline constexpr detail::RowAlgorithm kPaths[] = {
    detail::RowAlgorithm::rows_per_warp, detail::RowAlgorithm::warp_per_row,
    detail::RowAlgorithm::block_on_chip, detail::RowAlgorithm::block_two_pass};
inline constexpr std::int64_t kRowLengths[] = {1,  2,  15,   16,   31,   32,   33,   63,
                                               64, 65, 1023, 1024, 1025, 2047, 4096, 32000};
inline constexpr std::int64_t kRowCountsAcrossWarps[] = {1, 2, 33, 257};

// Forces a row dispatch path (and optionally a grid cap) for its lifetime; a path that cannot
// hold the row falls back to the automatic choice.
class ForcedRowPath {
 public:
  explicit ForcedRowPath(detail::RowAlgorithm algorithm, std::int64_t grid_limit = 0) {
    detail::set_row_algorithm_override(algorithm);
    detail::set_row_grid_limit(grid_limit);
  }
  ~ForcedRowPath() {
    detail::set_row_algorithm_override(detail::RowAlgorithm::automatic);
    detail::set_row_grid_limit(0);
  }
  ForcedRowPath(const ForcedRowPath&) = delete;
  ForcedRowPath& operator=(const ForcedRowPath&) = delete;
};

// What a forward call saves for backward, from the reference's statistics: [rows x 2] floats
// {max, log_sum}, rounded as a kernel rounds them, log_sum taking up what the max's rounding
// lost (include/actloss/cross_entropy.h, CrossEntropyRowStats).
std::vector<double> saved_row_stats(const ref::CrossEntropyResult& expected);

// Waits for the device (tests only; the library never does) and fails on any pending CUDA error.
void synchronize_or_fail();

}  // namespace actloss::test
