// Operands of the validation cases on either device, and the values put in them.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <actloss/types.h>

#include "benchmarks/support/memory.h"

namespace actloss::validation {

// A [rows x cols] tensor of `dtype` on a device, with a row stride (elements; 0 = dense) and a
// base `offset` in elements from a 256-byte-aligned allocation (offset 1 makes every 16-byte
// access impossible, so the kernels take their scalar paths). Everything that is not an element
// (the offset, the padding between rows, 64 bytes after the last row) starts as 0xFF bytes (NaN
// in every dtype), so that an element never written fails its check and a byte written outside
// the elements is seen.
class Tensor {
 public:
  Tensor() = default;
  static Tensor poisoned(Device device, std::int64_t rows, std::int64_t cols, DType dtype,
                         std::int64_t stride = 0, std::int64_t offset = 0);
  // `dense` is rounded once to `dtype`: quantize() gives what the device then holds.
  static Tensor upload(Device device, const std::vector<double>& dense, std::int64_t rows,
                       std::int64_t cols, DType dtype, std::int64_t stride = 0,
                       std::int64_t offset = 0);

  void* data() const;  // the first element; nullptr for an empty tensor
  template <class T>
  T* as() const {
    return static_cast<T*>(data());
  }
  DType dtype() const { return dtype_; }
  std::int64_t stride() const { return stride_; }

  std::vector<double> download() const;  // dense [rows x cols], exactly
  bool padding_intact() const;           // no byte outside the elements was written
  bool untouched() const;                // no byte at all was written

 private:
  std::vector<std::uint8_t> bytes() const;
  std::int64_t slot(std::int64_t row, std::int64_t col) const {
    return offset_ + row * stride_ + col;
  }

  bench::Buffer buffer_;
  DType dtype_ = DType::f32;
  std::int64_t rows_ = 0, cols_ = 0, stride_ = 0, offset_ = 0;
};

// Plain values (class indices, row statistics) on the device.
template <class T>
bench::Buffer upload_plain(Device device, const std::vector<T>& values) {
  bench::Buffer buffer(device, values.size() * sizeof(T));
  if (!values.empty()) buffer.upload(values.data(), values.size() * sizeof(T));
  return buffer;
}

template <class T>
std::vector<T> download_plain(const bench::Buffer& buffer) {
  std::vector<T> values(buffer.bytes() / sizeof(T));
  if (!values.empty()) buffer.download(values.data(), values.size() * sizeof(T));
  return values;
}

// What a tensor of `dtype` holds after `values` are stored in it (round to nearest even).
std::vector<double> quantize(const std::vector<double>& values, DType dtype);

// Waits for the device and returns "" when the call succeeded and no data error was recorded,
// else what went wrong.
std::string finish(const Exec& exec, const Status& status);

// Deterministic inputs. A case's seed is derived from its description, so every case has its
// own values and a failure reproduces.
std::uint64_t seed_of(const std::string& description);
std::vector<double> uniform(std::size_t count, double low, double high, std::uint64_t seed);

// Every float32 binade, both signs: 2^e, 1.5 2^e and the binade's largest value for e from -149
// (the smallest subnormal) to 127, then +-0, +-inf, NaN, +-FLT_MAX and +-3e38: 1670 values.
const std::vector<double>& binade_sweep();

// `count` values of the sweep in an order fixed by `seed`, every one of them when count allows,
// so that each binade meets many neighbours (in a row, or as the other operand).
std::vector<double> sweep_values(std::size_t count, std::uint64_t seed);

// Float values around the rounding ties of `dtype` (f16 or bf16), over many exponents and the
// subnormals: each exact tie between an even and an odd neighbour, both ways, and the floats
// just below and above it. Rounding them to `dtype` must be exact (round to nearest even).
std::vector<double> rounding_ties(DType dtype);

std::string dtype_text(DType in, DType out);

}  // namespace actloss::validation
