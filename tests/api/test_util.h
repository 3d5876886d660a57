// Shared pieces of the API tests: poisoned buffers, rounding tolerances, and the harness that
// checks a rejected call (code, argument, message prefix, and that no byte was written).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <actloss/actloss.h>

#include "host/backend.h"
#include "host/half.h"

namespace api_test {

using actloss::DType;
using actloss::Device;
using actloss::Reduction;
using actloss::Status;
using actloss::StatusCode;
using actloss::detail::Pass;

// Every byte of a fresh buffer. 0xA5A5 is an ordinary finite value in every dtype, so a write
// of any computed value is told apart only by comparing bytes, which is what the tests do.
inline constexpr unsigned char kPoison = 0xA5;

// Raw storage for typed elements (f32/f16/bf16, int32/int64 targets, mask words), filled with
// kPoison. Elements are read and written through the library's own exact load/store helpers
// (tested exhaustively in half_test.cpp), never by casting, so no aliasing rule is bent.
class Buffer {
 public:
  Buffer() = default;
  Buffer(DType dtype, std::int64_t elements)
      : Buffer(dtype, elements, actloss::dtype_size(dtype)) {}

  static Buffer bytes_of(std::int64_t element_size, std::int64_t elements) {
    return Buffer(DType::f32, elements, element_size);
  }

  void* data() { return storage_.get(); }
  const void* data() const { return storage_.get(); }
  float* f32() { return static_cast<float*>(data()); }
  std::int64_t size_bytes() const { return bytes_; }
  DType dtype() const { return dtype_; }

  double get(std::int64_t i) const { return actloss::host::load_as_double(data(), dtype_, i); }
  void set(std::int64_t i, double value) {
    actloss::host::store_from_double(data(), dtype_, i, value);
  }
  // The value `value` becomes once stored in this buffer's dtype (what the library reads back).
  double rounded(double value) const {
    unsigned char scratch[8];
    actloss::host::store_from_double(scratch, dtype_, 0, value);
    return actloss::host::load_as_double(scratch, dtype_, 0);
  }
  template <class T>
  void set_raw(std::int64_t i, T value) {
    std::memcpy(static_cast<unsigned char*>(data()) + i * sizeof(T), &value, sizeof(T));
  }
  template <class T>
  T get_raw(std::int64_t i) const {
    T value;
    std::memcpy(&value, static_cast<const unsigned char*>(data()) + i * sizeof(T), sizeof(T));
    return value;
  }
  bool byte_is_poison(std::int64_t byte) const { return storage_[byte] == kPoison; }
  // Element i's bytes are all still poison.
  bool untouched(std::int64_t i) const {
    const std::int64_t size = element_size_;
    for (std::int64_t b = i * size; b < (i + 1) * size; ++b) {
      if (!byte_is_poison(b)) return false;
    }
    return true;
  }
  std::vector<unsigned char> snapshot() const {
    return std::vector<unsigned char>(storage_.get(), storage_.get() + bytes_);
  }
  void poison() { std::memset(storage_.get(), kPoison, static_cast<std::size_t>(bytes_)); }

 private:
  Buffer(DType dtype, std::int64_t elements, std::int64_t element_size)
      : dtype_(dtype),
        element_size_(element_size),
        bytes_(elements * element_size),
        // new[] of unsigned char gives storage suitably aligned for every element type used
        // here and may hold objects of any of them.
        storage_(new unsigned char[static_cast<std::size_t>(bytes_ > 0 ? bytes_ : 1)]) {
    poison();
  }

  DType dtype_ = DType::f32;
  std::int64_t element_size_ = 4;
  std::int64_t bytes_ = 0;
  std::unique_ptr<unsigned char[]> storage_;
};

// Allowed error between an output of `dtype` and the float64 value it should hold:
// |got - want| <= atol + rtol * |want|. The CPU path rounds a float64 result once, which costs
// at most u = 2^-24 (f32), 2^-11 (f16) or 2^-9 (bf16) relative; rtol is 2u, leaving one ulp of
// room for a future CPU backend that is not correctly rounded. atol is one step of the
// format's smallest subnormal, where relative error means nothing.
struct Tolerance {
  double atol;
  double rtol;
};

inline Tolerance rounding_tolerance(DType dtype) {
  switch (dtype) {
    case DType::f32: return {0x1p-149, 0x1p-23};
    case DType::f16: return {0x1p-24, 0x1p-10};
    case DType::bf16: return {0x1p-133, 0x1p-8};
  }
  return {0, 0};
}

inline ::testing::AssertionResult close(double got, double want, Tolerance tol) {
  if (std::isnan(want)) {
    if (std::isnan(got)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "got " << got << ", want NaN";
  }
  if (std::isinf(want)) {
    if (got == want) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "got " << got << ", want " << want;
  }
  const double error = std::fabs(got - want);
  const double allowed = tol.atol + tol.rtol * std::fabs(want);
  if (error <= allowed) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (error "
                                       << error << " > " << allowed << ")";
}

inline const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::forward: return "forward";
    case Pass::backward: return "backward";
    case Pass::forward_backward: return "forward_backward";
  }
  return "?";
}

// ---- rejected-call harness -----------------------------------------------------------------
//
// A Setup type owns every buffer of one valid call and exposes:
//   explicit Setup(Device);  Status call(Pass) const;  std::vector<const Buffer*> buffers() const;
// A case mutates that valid call into an invalid one; the harness checks the verdict and that
// every byte of every buffer (inputs, outputs and their padding) is as before the call.

template <class Setup>
struct RejectCase {
  std::string name;
  std::vector<Pass> passes;
  std::function<void(Setup&)> mutate;
  std::string argument;
  StatusCode code = StatusCode::invalid_argument;
};

// One (case, pass, device) combination, flattened so that each becomes its own gtest test.
template <class Setup>
struct RejectParam {
  RejectCase<Setup> rejection;
  Pass pass;
  Device device;
};

// What gtest prints for a parameter (instead of its bytes): the case, the pass and the device.
template <class Setup>
void PrintTo(const RejectParam<Setup>& p, std::ostream* os) {
  *os << p.rejection.name << " " << pass_name(p.pass) << " " << actloss::to_string(p.device);
}

template <class Setup>
std::vector<RejectParam<Setup>> expand(const std::vector<RejectCase<Setup>>& cases) {
  std::vector<RejectParam<Setup>> out;
  for (const auto& c : cases) {
    for (Pass pass : c.passes) {
      // Validation runs before anything device-specific, so the same verdict is expected on
      // both devices, in every build, with or without a GPU.
      for (Device device : {Device::cpu, Device::cuda}) out.push_back({c, pass, device});
    }
  }
  return out;
}

template <class Setup>
std::string reject_param_name(const ::testing::TestParamInfo<RejectParam<Setup>>& info) {
  const auto& p = info.param;
  return p.rejection.name + "_" + pass_name(p.pass) + "_" + actloss::to_string(p.device);
}

template <class Setup>
std::vector<std::vector<unsigned char>> snapshot_all(const Setup& setup) {
  std::vector<std::vector<unsigned char>> out;
  for (const Buffer* buffer : setup.buffers()) out.push_back(buffer->snapshot());
  return out;
}

inline void expect_status(const Status& status, StatusCode code, const std::string& argument) {
  EXPECT_EQ(status.code(), code) << actloss::to_string(status.code()) << ": " << status.message();
  EXPECT_EQ(status.argument(), argument) << status.message();
  EXPECT_EQ(status.message().rfind(argument + ": ", 0), 0u)
      << "message does not start with '" << argument << ": ': " << status.message();
}

template <class Setup>
void run_reject(const RejectParam<Setup>& p) {
  Setup setup(p.device);
  p.rejection.mutate(setup);
  const auto before = snapshot_all(setup);
  const Status status = setup.call(p.pass);
  expect_status(status, p.rejection.code, p.rejection.argument);
  EXPECT_TRUE(snapshot_all(setup) == before) << "a rejected call wrote to a buffer";
}

// The unmodified Setup must be a valid call (else the rejection tests prove nothing): ok on CPU,
// and on CUDA in a build without the backend, unsupported naming exec.device with nothing
// written. A CUDA build is not exercised here: host buffers are not device memory.
template <class Setup>
void run_baseline(Pass pass) {
  {
    Setup setup(Device::cpu);
    const Status status = setup.call(pass);
    EXPECT_TRUE(status.ok()) << status.message();
  }
  if (!actloss::cuda_backend_built()) {
    Setup setup(Device::cuda);
    const auto before = snapshot_all(setup);
    expect_status(setup.call(pass), StatusCode::unsupported, "exec.device");
    EXPECT_TRUE(snapshot_all(setup) == before);
  }
}

// An enum holding a value outside its enumerators, as a caller's bad cast would produce.
template <class E>
E garbage(int value) {
  static_assert(sizeof(E) == 1);
  const auto byte = static_cast<unsigned char>(value);
  E e;
  std::memcpy(&e, &byte, 1);
  return e;
}

inline constexpr std::int64_t kHuge = std::int64_t{1} << 61;

// A pointer whose byte range would wrap around the address space for any non-trivial extent.
inline const void* wrapping_pointer() {
  return reinterpret_cast<const void*>(~std::uintptr_t{0} - 3);
}

}  // namespace api_test
