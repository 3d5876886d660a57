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

namespace actloss {
// gtest prints a Device parameter by name, not as its byte.
inline void PrintTo(Device device, std::ostream* os) { *os << to_string(device); }
}  // namespace actloss

namespace actloss::test {

bool cuda_device_available();

#define ACTLOSS_REQUIRE_CUDA_DEVICE()                                                        \
  do {                                                                                       \
    if (!::actloss::test::cuda_device_available())                                           \
      GTEST_SKIP() << "no CUDA device: runs on a GPU, or on CPU in the simulator build";     \
  } while (0)

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

// `bytes` bytes where `device` computes (host memory for Device::cpu), every byte kPoisonByte
// to start with: one test body for both devices.
class Memory {
 public:
  Memory(Device device, std::size_t bytes) : device_(device) {
    if (device == Device::cuda) {
      device_bytes_ = DeviceBuffer(bytes);
      device_bytes_.fill_bytes(kPoisonByte);
    } else {
      host_bytes_.assign(bytes, kPoisonByte);
    }
  }
  void* get() { return device_ == Device::cuda ? device_bytes_.get() : host_bytes_.data(); }
  void upload(const std::vector<std::uint8_t>& bytes) {
    if (device_ == Device::cuda)
      device_bytes_.upload_bytes(bytes.data(), bytes.size());
    else
      host_bytes_ = bytes;
  }
  std::vector<std::uint8_t> download() const {
    return device_ == Device::cuda ? device_bytes_.download_bytes() : host_bytes_;
  }

 private:
  Device device_;
  std::vector<std::uint8_t> host_bytes_;
  DeviceBuffer device_bytes_;
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

// Deterministic uniform values in [low, high).
std::vector<double> random_values(std::size_t count, double low, double high, std::uint64_t seed);

// Random probability targets for rows x classes logits: each row sums to 1 (or is all 0), with
// no mass on a masked (-inf) logit, whose loss would be infinite.
std::vector<double> probability_targets(const std::vector<double>& logits, std::int64_t rows,
                                        std::int64_t classes, std::uint64_t seed);

// Exec for the CUDA backend on the default stream.
inline Exec cuda_exec() {
  Exec exec;
  exec.device = Device::cuda;
  return exec;
}

// The row ops' dispatch paths.
inline constexpr detail::RowAlgorithm kPaths[] = {
    detail::RowAlgorithm::rows_per_warp, detail::RowAlgorithm::warp_per_row,
    detail::RowAlgorithm::block_on_chip, detail::RowAlgorithm::block_shared,
    detail::RowAlgorithm::cluster_shared, detail::RowAlgorithm::block_two_pass};

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

// The elementwise kernels' loops (cuda/elementwise.cuh): several packs per thread per step (0,
// the default) and one (1, the loop last measured on a GPU, kept selectable until a card has
// compared the two).
inline constexpr int kElementwiseLoops[] = {0, 1};

// Forces an elementwise loop and a cap on the elementwise grid (0: none; a small cap makes the
// grid-stride loops take many steps) for its lifetime.
class ForcedElementwiseLoop {
 public:
  explicit ForcedElementwiseLoop(int packs_per_step, std::int64_t block_limit = 0) {
    detail::cuda_set_elementwise_packs_per_step_for_testing(packs_per_step);
    detail::cuda_set_elementwise_block_limit_for_testing(block_limit);
  }
  ~ForcedElementwiseLoop() {
    detail::cuda_set_elementwise_packs_per_step_for_testing(0);
    detail::cuda_set_elementwise_block_limit_for_testing(0);
  }
  ForcedElementwiseLoop(const ForcedElementwiseLoop&) = delete;
  ForcedElementwiseLoop& operator=(const ForcedElementwiseLoop&) = delete;
};

// Finishes every reduced loss in a second kernel (the path last measured on a GPU, see
// cuda/reduce.cuh) for its lifetime.
class SecondKernelFinish {
 public:
  SecondKernelFinish() { detail::cuda_set_reduced_loss_in_kernel_for_testing(false); }
  ~SecondKernelFinish() { detail::cuda_set_reduced_loss_in_kernel_for_testing(true); }
  SecondKernelFinish(const SecondKernelFinish&) = delete;
  SecondKernelFinish& operator=(const SecondKernelFinish&) = delete;
};

// A non-blocking stream of the test's own (the legacy stream cannot capture a graph, and
// streams that must not order each other's work need their own), destroyed with the object.
class TestStream {
 public:
  TestStream() {
    EXPECT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
  }
  ~TestStream() { (void)cudaStreamDestroy(stream_); }
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// Waits for the device (tests only; the library never does) and fails on any pending CUDA error.
void synchronize_or_fail();

}  // namespace actloss::test
