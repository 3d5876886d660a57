#include "validation/tensors.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <actloss/actloss.h>

#include "host/half.h"

namespace actloss::validation {
namespace {

constexpr std::uint8_t kPoison = 0xFF;
// Poisoned bytes after the last element: a write just past the end shows on the CPU too, where
// allocations are rounded up and AddressSanitizer would not see it.
constexpr std::size_t kGuardBytes = 64;

std::size_t span_bytes(std::int64_t rows, std::int64_t cols, std::int64_t stride,
                       std::int64_t offset, DType dtype) {
  const std::int64_t slots = rows == 0 || cols == 0 ? offset : offset + (rows - 1) * stride + cols;
  return static_cast<std::size_t>(slots * dtype_size(dtype)) + kGuardBytes;
}

}  // namespace

Tensor Tensor::poisoned(Device device, std::int64_t rows, std::int64_t cols, DType dtype,
                        std::int64_t stride, std::int64_t offset) {
  Tensor t;
  t.dtype_ = dtype;
  t.rows_ = rows;
  t.cols_ = cols;
  t.stride_ = stride == 0 ? cols : stride;
  t.offset_ = offset;
  t.buffer_ = bench::Buffer(device, span_bytes(rows, cols, t.stride_, offset, dtype));
  if (t.buffer_.bytes() > 0) t.buffer_.fill_bytes(kPoison);
  return t;
}

Tensor Tensor::upload(Device device, const std::vector<double>& dense, std::int64_t rows,
                      std::int64_t cols, DType dtype, std::int64_t stride, std::int64_t offset) {
  Tensor t = poisoned(device, rows, cols, dtype, stride, offset);
  std::vector<std::uint8_t> bytes(t.buffer_.bytes(), kPoison);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      host::store_from_double(bytes.data(), dtype, t.slot(r, c),
                              dense[static_cast<std::size_t>(r * cols + c)]);
  if (!bytes.empty()) t.buffer_.upload(bytes.data(), bytes.size());
  return t;
}

void* Tensor::data() const {
  if (buffer_.bytes() == 0 || rows_ == 0 || cols_ == 0) return nullptr;
  return static_cast<std::uint8_t*>(buffer_.data()) + offset_ * dtype_size(dtype_);
}

std::vector<std::uint8_t> Tensor::bytes() const {
  std::vector<std::uint8_t> bytes(buffer_.bytes());
  if (!bytes.empty()) buffer_.download(bytes.data(), bytes.size());
  return bytes;
}

std::vector<double> Tensor::download() const {
  const std::vector<std::uint8_t> raw = bytes();
  std::vector<double> dense(static_cast<std::size_t>(rows_ * cols_));
  for (std::int64_t r = 0; r < rows_; ++r)
    for (std::int64_t c = 0; c < cols_; ++c)
      dense[static_cast<std::size_t>(r * cols_ + c)] =
          host::load_as_double(raw.data(), dtype_, slot(r, c));
  return dense;
}

bool Tensor::padding_intact() const {
  const std::vector<std::uint8_t> raw = bytes();
  const std::int64_t size = dtype_size(dtype_);
  std::vector<bool> element(raw.size(), false);
  for (std::int64_t r = 0; r < rows_; ++r)
    for (std::int64_t c = 0; c < cols_; ++c)
      for (std::int64_t b = 0; b < size; ++b)
        element[static_cast<std::size_t>(slot(r, c) * size + b)] = true;
  for (std::size_t i = 0; i < raw.size(); ++i)
    if (!element[i] && raw[i] != kPoison) return false;
  return true;
}

bool Tensor::untouched() const {
  const std::vector<std::uint8_t> raw = bytes();
  return std::all_of(raw.begin(), raw.end(), [](std::uint8_t b) { return b == kPoison; });
}

std::vector<double> quantize(const std::vector<double>& values, DType dtype) {
  std::vector<double> out(values.size());
  unsigned char scratch[4];
  for (std::size_t i = 0; i < values.size(); ++i) {
    host::store_from_double(scratch, dtype, 0, values[i]);
    out[i] = host::load_as_double(scratch, dtype, 0);
  }
  return out;
}

std::string finish(const Exec& exec, const Status& status) {
  if (!status.ok()) return status.message();
  try {
    bench::synchronize(exec.device);
  } catch (const std::exception& error) {
    return error.what();
  }
  const Status recorded = take_device_error(exec);
  return recorded.ok() ? "" : "device error: " + recorded.message();
}

std::uint64_t seed_of(const std::string& description) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char ch : description) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h;
}

std::vector<double> uniform(std::size_t count, double low, double high, std::uint64_t seed) {
  bench::Random random(seed);
  std::vector<double> values(count);
  for (double& v : values) v = random.uniform(low, high);
  return values;
}

const std::vector<double>& binade_sweep() {
  static const std::vector<double> values = [] {
    constexpr double kInf = std::numeric_limits<double>::infinity();
    std::vector<double> v;
    for (int e = -149; e <= 127; ++e) {
      // The binade's largest float: 2^e (2 - 2^-23), or for a subnormal binade all its bits.
      const double top = e < -126 ? std::ldexp(2.0, e) - 0x1p-149 : std::ldexp(2.0 - 0x1p-23, e);
      for (double magnitude : {std::ldexp(1.0, e), std::ldexp(1.5, e), top})
        for (double sign : {1.0, -1.0}) v.push_back(sign * magnitude);
    }
    const double largest = std::numeric_limits<float>::max();
    for (double special : {0.0, -0.0, kInf, -kInf, std::nan(""), largest, -largest, 3e38, -3e38})
      v.push_back(special);
    return v;
  }();
  return values;
}

std::vector<double> sweep_values(std::size_t count, std::uint64_t seed) {
  const std::vector<double>& sweep = binade_sweep();
  std::vector<double> order = sweep;
  bench::Random random(seed);
  std::vector<double> out;
  out.reserve(count);
  while (out.size() < count) {
    for (std::size_t i = order.size(); i > 1; --i)
      std::swap(order[i - 1], order[static_cast<std::size_t>(random.below(static_cast<std::int64_t>(i)))]);
    for (double value : order) {
      if (out.size() == count) break;
      out.push_back(value);
    }
  }
  return out;
}

std::vector<double> rounding_ties(DType dtype) {
  // Stored mantissa bits and smallest normal exponent of the 16-bit format.
  const int mantissa = dtype == DType::f16 ? 10 : 7;
  const int min_exponent = dtype == DType::f16 ? -14 : -126;
  const int max_exponent = dtype == DType::f16 ? 15 : 126;
  std::vector<double> v;
  for (int e = min_exponent - mantissa; e <= max_exponent; e += 3) {
    const double quantum = std::ldexp(1.0, std::max(e, min_exponent) - mantissa);
    const double base = std::ldexp(1.0, e);
    // Two neighbours k and k + 1 quanta above 2^e: one even, one odd.
    for (double k : {0.0, 1.0, 2.0, 5.0}) {
      const double tie = base + (k + 0.5) * quantum;
      const float below = std::nextafter(static_cast<float>(tie), 0.0f);
      const float above = std::nextafter(static_cast<float>(tie), std::numeric_limits<float>::infinity());
      if (static_cast<double>(static_cast<float>(tie)) != tie) continue;  // not a float
      for (double x : {tie, static_cast<double>(below), static_cast<double>(above)})
        for (double sign : {1.0, -1.0}) v.push_back(sign * x);
    }
  }
  return v;
}

std::string dtype_text(DType in, DType out) {
  return in == out ? std::string(to_string(in))
                   : std::string(to_string(in)) + "->" + to_string(out);
}

}  // namespace actloss::validation
