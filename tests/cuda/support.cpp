#include "tests/cuda/support.h"

#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <utility>
#include <algorithm>

#include "host/half.h"

namespace actloss::test {

#define ACTLOSS_TEST_CUDA(expr)                                                   \
  do {                                                                            \
    const cudaError_t test_cuda_error_ = (expr);                                  \
    if (test_cuda_error_ != cudaSuccess)                                          \
      ADD_FAILURE() << #expr << " failed: " << cudaGetErrorString(test_cuda_error_); \
  } while (0)

bool cuda_device_available() {
  static const bool available = [] {
    int count = 0;
    const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
    (void)cudaGetLastError();
    return ok;
  }();
  return available;
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) ACTLOSS_TEST_CUDA(cudaMalloc(&data_, bytes));
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) (void)cudaFree(data_);
}

void DeviceBuffer::fill_bytes(std::uint8_t byte) {
  if (bytes_ > 0) ACTLOSS_TEST_CUDA(cudaMemset(data_, byte, bytes_));
}

void DeviceBuffer::upload_bytes(const void* source, std::size_t bytes, std::size_t offset) {
  if (bytes > 0)
    ACTLOSS_TEST_CUDA(cudaMemcpy(static_cast<std::uint8_t*>(data_) + offset, source, bytes,
                                 cudaMemcpyHostToDevice));
}

std::vector<std::uint8_t> DeviceBuffer::download_bytes() const {
  std::vector<std::uint8_t> bytes(bytes_);
  if (bytes_ > 0)
    ACTLOSS_TEST_CUDA(cudaMemcpy(bytes.data(), data_, bytes_, cudaMemcpyDeviceToHost));
  return bytes;
}

namespace {

std::int64_t element_slot(const DeviceMatrix& m, std::int64_t row, std::int64_t col) {
  return m.offset + row * m.stride + col;
}

std::size_t matrix_bytes(std::int64_t rows, std::int64_t cols, std::int64_t stride,
                         std::int64_t offset, DType dtype) {
  const std::int64_t slots = rows == 0 ? offset : offset + (rows - 1) * stride + cols;
  return static_cast<std::size_t>(slots * dtype_size(dtype));
}

}  // namespace

void* DeviceMatrix::data() const {
  return static_cast<std::uint8_t*>(buffer.get()) + offset * dtype_size(dtype);
}

std::vector<double> DeviceMatrix::download() const {
  const std::vector<std::uint8_t> bytes = buffer.download_bytes();
  std::vector<double> dense(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      dense[static_cast<std::size_t>(r * cols + c)] =
          host::load_as_double(bytes.data(), dtype, element_slot(*this, r, c));
  return dense;
}

bool DeviceMatrix::padding_intact() const {
  const std::vector<std::uint8_t> bytes = buffer.download_bytes();
  const std::int64_t element_bytes = dtype_size(dtype);
  std::vector<bool> is_element(bytes.size(), false);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      for (std::int64_t b = 0; b < element_bytes; ++b)
        is_element[static_cast<std::size_t>(element_slot(*this, r, c) * element_bytes + b)] = true;
  for (std::size_t i = 0; i < bytes.size(); ++i)
    if (!is_element[i] && bytes[i] != kPoisonByte) return false;
  return true;
}

DeviceMatrix poisoned_matrix(std::int64_t rows, std::int64_t cols, DType dtype, std::int64_t stride,
                             std::int64_t offset) {
  DeviceMatrix m;
  m.dtype = dtype;
  m.rows = rows;
  m.cols = cols;
  m.stride = stride == 0 ? cols : stride;
  m.offset = offset;
  m.buffer = DeviceBuffer(matrix_bytes(rows, cols, m.stride, offset, dtype));
  m.buffer.fill_bytes(kPoisonByte);
  return m;
}

DeviceMatrix upload_matrix(const std::vector<double>& dense, std::int64_t rows, std::int64_t cols,
                           DType dtype, std::int64_t stride, std::int64_t offset) {
  DeviceMatrix m = poisoned_matrix(rows, cols, dtype, stride, offset);
  std::vector<std::uint8_t> bytes(m.buffer.bytes(), kPoisonByte);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      host::store_from_double(bytes.data(), dtype, element_slot(m, r, c),
                              dense[static_cast<std::size_t>(r * cols + c)]);
  m.buffer.upload_bytes(bytes.data(), bytes.size());
  return m;
}

std::vector<double> random_values(std::size_t count, double low, double high, std::uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::uniform_real_distribution<double> distribution(low, high);
  std::vector<double> values(count);
  for (double& v : values) v = distribution(generator);
  return values;
}

std::vector<double> probability_targets(const std::vector<double>& logits, std::int64_t rows,
                                        std::int64_t classes, std::uint64_t seed) {
  std::vector<double> q = random_values(logits.size(), 0.0, 1.0, seed);
  for (std::int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (std::int64_t c = 0; c < classes; ++c) {
      const auto i = static_cast<std::size_t>(r * classes + c);
      if (logits[i] == -std::numeric_limits<double>::infinity()) q[i] = 0.0;
      sum += q[i];
    }
    for (std::int64_t c = 0; c < classes; ++c)
      q[static_cast<std::size_t>(r * classes + c)] /= sum > 0 ? sum : 1.0;
  }
  return q;
}

void synchronize_or_fail() {
  ACTLOSS_TEST_CUDA(cudaDeviceSynchronize());
  ACTLOSS_TEST_CUDA(cudaGetLastError());
}

}  // namespace actloss::test
