// What every fuzz target shares. A target decodes the fuzzer's bytes into one call, as a careless
// or hostile caller would make it (sizes negative, zero or enormous, strides too small, enum
// values outside their enums, NaN and infinite options, buffers null, aliasing one another at any
// offset, misaligned; contents with NaN, infinities, huge and subnormal values), and checks:
//  * the status is ok, or an error whose argument() names the field at fault;
//  * on error, not one byte of any buffer changed;
//  * the CPU backend (Device::cpu) and the float64 oracle (Device::reference), each on its own
//    copy of the same buffers, return the same status, and on success neither writes a byte
//    outside the buffers the target marks as outputs (the backend computes in float32 and the
//    oracle in float64, so their outputs differ in the last bits: how close they come is the
//    validation table's and the CPU backend tests' business);
//  * nothing is read or written past a buffer: every buffer lies in one heap block whose end is
//    the end of the last buffer, so AddressSanitizer stops an access one element past it, and
//    bytes between buffers are compared like the buffers themselves.
// In the simulator build (the fuzz-sim preset) each call also runs on Device::cuda, the real
// kernels on simulated device memory under the same sanitizers, and must return the same status
// (a target out of range: ok, then the same error from take_device_error), write nothing on
// error, and write nothing outside the buffers the target marks as outputs. How close its
// outputs come to the reference is the validation table's business (validation/), not this
// one's.
#pragma once

#if defined(ACTLOSS_SIM)
#include <cuda_runtime_api.h>
#endif

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <actloss/actloss.h>

namespace actloss::fuzz {

// Buffers stay small: the point is every path through validation and the loops, not volume.
inline constexpr std::int64_t kMaxBytes = 1 << 15;

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz check failed: %s\n", what.c_str());
  std::abort();
}

// The bytes of one element; a dtype outside the enum is sized as float, so that the buffer
// exists and the call, not the harness, has to refuse it.
inline std::int64_t element_size(DType dtype) {
  return dtype_size(dtype) > 0 ? dtype_size(dtype) : 4;
}

// A size as callers get them wrong: mostly small, sometimes zero, negative or enormous.
inline std::int64_t size(FuzzedDataProvider& in, std::int64_t small_max) {
  switch (in.ConsumeIntegralInRange<int>(0, 15)) {
    case 0: return 0;
    case 1: return -in.ConsumeIntegralInRange<std::int64_t>(1, 3);
    case 2: return std::numeric_limits<std::int64_t>::max() - in.ConsumeIntegral<std::uint8_t>();
    case 3: return std::int64_t{1} << in.ConsumeIntegralInRange<int>(31, 62);
    default: return in.ConsumeIntegralInRange<std::int64_t>(1, small_max);
  }
}

// A row or batch stride: 0 (dense) or near what it should be, sometimes too small or huge.
inline std::int64_t stride(FuzzedDataProvider& in, std::int64_t length) {
  // Near an enormous length, near enough: the harness's own arithmetic must not overflow.
  constexpr std::int64_t kFar = std::int64_t{1} << 62;
  length = length > kFar ? kFar : (length < -kFar ? -kFar : length);
  switch (in.ConsumeIntegralInRange<int>(0, 9)) {
    case 0: return length - in.ConsumeIntegralInRange<std::int64_t>(1, 2);
    case 1: return -in.ConsumeIntegralInRange<std::int64_t>(1, 3);
    case 2: return std::numeric_limits<std::int64_t>::max() / in.ConsumeIntegralInRange<int>(1, 4);
    case 3: return length + in.ConsumeIntegralInRange<std::int64_t>(0, 5);
    default: return 0;
  }
}

// An enum from any byte: usually a valid value, sometimes one outside the enum.
template <class Enum>
Enum enum_value(FuzzedDataProvider& in, int valid_count) {
  const int raw = in.ConsumeIntegralInRange<int>(0, 7) != 0
                      ? in.ConsumeIntegralInRange<int>(0, valid_count - 1)
                      : in.ConsumeIntegral<std::uint8_t>();
  return static_cast<Enum>(raw);
}

// A float option: usually ordinary, sometimes NaN, infinite, negative or huge.
inline float option(FuzzedDataProvider& in, float typical) {
  switch (in.ConsumeIntegralInRange<int>(0, 11)) {
    case 0: return std::numeric_limits<float>::quiet_NaN();
    case 1: return std::numeric_limits<float>::infinity();
    case 2: return -typical - 1.0f;
    case 3: return 3e38f;
    case 4:
    case 5: return 0.0f;
    default: return typical * in.ConsumeFloatingPointInRange<float>(0.0f, 2.0f);
  }
}

// The bytes a strided operand spans, ((batches - 1) batch_stride + (rows_per_batch - 1)
// row_stride + cols) elements, in 128 bits so that what overflows 64 shows; 0 when nothing is
// read. Strides of 0 count as dense. Used only to size buffers, never to decide validity.
inline __int128 extent(std::int64_t rows, std::int64_t cols, std::int64_t row_stride,
                       std::int64_t element, std::int64_t rows_per_batch = 0,
                       std::int64_t batch_stride = 0) {
  if (rows <= 0 || cols <= 0 || element <= 0) return 0;
  const __int128 rs = row_stride > 0 ? row_stride : cols;
  const __int128 per_batch =
      rows_per_batch > 0 && rows % rows_per_batch == 0 ? rows_per_batch : rows;
  const __int128 batches = rows / per_batch;
  const __int128 bs = batch_stride > 0 ? batch_stride : per_batch * rs;
  // Each product stays below 2^126; past 2^100 elements the exact size matters no more.
  const __int128 elements = (batches - 1) * bs + (per_batch - 1) * rs + cols;
  const __int128 cap = static_cast<__int128>(1) << 100;
  return (elements < cap ? elements : cap) * element;
}

// rows x cols elements, capped past any memory (2^100) so that bytes of it still fit 128 bits.
inline __int128 elements(std::int64_t rows, std::int64_t cols) {
  if (rows <= 0 || cols <= 0) return 0;
  const __int128 count = __int128{rows} * cols;
  const __int128 cap = static_cast<__int128>(1) << 100;
  return count < cap ? count : cap;
}

// A shard of `classes` classes for the vocabulary-parallel calls: mostly one that fits its
// vocabulary (from class first_max at most), sometimes anything up to total_max.
inline CrossEntropyShard shard(FuzzedDataProvider& in, std::int64_t classes,
                               std::int64_t first_max, std::int64_t total_max) {
  CrossEntropyShard out;
  out.first_class = in.ConsumeIntegralInRange<int>(0, 3) == 0
                        ? size(in, first_max)
                        : in.ConsumeIntegralInRange<std::int64_t>(0, 10);
  if (in.ConsumeIntegralInRange<int>(0, 3) == 0 ||
      __builtin_add_overflow(classes, out.first_class, &out.total_classes) ||
      __builtin_add_overflow(out.total_classes, in.ConsumeIntegralInRange<std::int64_t>(0, 20),
                             &out.total_classes)) {
    out.total_classes = size(in, total_max);
  }
  return out;
}

// How many shards a gather holds: mostly 1 to 8, sometimes anything.
inline std::int64_t shard_count(FuzzedDataProvider& in) {
  return in.ConsumeIntegralInRange<int>(0, 3) == 0 ? size(in, 9)
                                                   : in.ConsumeIntegralInRange<std::int64_t>(1, 8);
}

// Where each buffer of a call lies: an offset into one arena, or null, or (for extents that no
// memory could hold) a separate 16-byte block that the call must refuse to touch.
class Buffers {
 public:
  static constexpr std::int64_t kNull = -1, kTooLarge = -2;

  explicit Buffers(FuzzedDataProvider& in) : in_(in) {}

  // A buffer of `bytes`; `required` ones are given whenever they span anything, the others only
  // when the input says so. Returns its handle.
  int add(__int128 bytes, std::int64_t alignment, bool required) {
    std::int64_t placement = kNull, placed = 0;
    if (bytes > std::numeric_limits<std::int64_t>::max()) {
      placement = kTooLarge;
    } else if (bytes > kMaxBytes) {
      skip_ = true;  // real memory would be needed and tells nothing more than a small case
    } else if (bytes > 0 && (required || in_.ConsumeBool()) &&
               in_.ConsumeIntegralInRange<int>(0, 31) != 0) {
      // A required buffer is still left out now and then: the call must name it.
      placed = static_cast<std::int64_t>(bytes);
      placement = place(placed, alignment);
    } else if (bytes == 0 && in_.ConsumeBool()) {
      placed = 16;  // a pointer given for nothing to read
      placement = place(placed, 16);
    }
    placements_.push_back(placement);
    sizes_.push_back(placed);
    return static_cast<int>(placements_.size() - 1);
  }
  // Marks a buffer as one the call may write (the kernels' check; see check_kernels).
  void output(int handle) {
    const std::int64_t placement = placements_[static_cast<std::size_t>(handle)];
    if (placement < 0) return;
    outputs_.push_back({placement, sizes_[static_cast<std::size_t>(handle)]});
  }
  // True when byte `at` of the arena lies in no output.
  bool outside_outputs(std::int64_t at) const {
    for (const auto& [start, length] : outputs_)
      if (at >= start && at < start + length) return false;
    return true;
  }
  bool skip() const { return skip_; }
  std::int64_t arena_bytes() const { return end_ > 0 ? end_ : 1; }

  template <class T = void>
  T* at(std::uint8_t* arena, std::uint8_t* too_large, int handle) const {
    const std::int64_t placement = placements_[static_cast<std::size_t>(handle)];
    if (placement == kNull) return nullptr;
    if (placement == kTooLarge) return reinterpret_cast<T*>(too_large);
    return reinterpret_cast<T*>(arena + placement);
  }

 private:
  std::int64_t place(std::int64_t bytes, std::int64_t alignment) {
    if (!fresh_.empty() && in_.ConsumeIntegralInRange<int>(0, 7) == 0) {
      // Alias: inside an earlier buffer, at an offset that keeps this one inside the arena's
      // fresh part (so the heap block's end stays the last buffer's end).
      const auto& [start, length] =
          fresh_[in_.ConsumeIntegralInRange<std::size_t>(0, fresh_.size() - 1)];
      const std::int64_t offset =
          start + in_.ConsumeIntegralInRange<std::int64_t>(0, length) / alignment * alignment;
      if (offset + bytes <= end_) return offset;
    }
    const std::int64_t misalign = in_.ConsumeIntegralInRange<int>(0, 31) == 0 ? 1 : 0;
    const std::int64_t offset = (end_ + 31) / 32 * 32 + misalign;
    end_ = offset + bytes;
    fresh_.push_back({offset, bytes});
    return offset;
  }

  FuzzedDataProvider& in_;
  std::vector<std::int64_t> placements_;
  std::vector<std::int64_t> sizes_;
  std::vector<std::pair<std::int64_t, std::int64_t>> outputs_;
  std::vector<std::pair<std::int64_t, std::int64_t>> fresh_;
  std::int64_t end_ = 0;
  bool skip_ = false;
};

// Fills bytes with float values: ordinary numbers, NaN, infinities, huge and subnormal ones.
// A 16-bit operand reads each as two halves, which gives its formats NaN, infinities and
// subnormals too, and class indices read them as large or negative integers.
inline void fill(FuzzedDataProvider& in, std::uint8_t* data, std::int64_t bytes) {
  for (std::int64_t i = 0; i + 4 <= bytes; i += 4) {
    float value = 0.0f;
    switch (in.ConsumeIntegralInRange<int>(0, 15)) {
      case 0: value = std::numeric_limits<float>::quiet_NaN(); break;
      case 1: value = std::numeric_limits<float>::infinity(); break;
      case 2: value = -std::numeric_limits<float>::infinity(); break;
      case 3: value = -3e38f; break;
      case 4: value = 1e-40f; break;
      case 5: value = static_cast<float>(in.ConsumeIntegralInRange<int>(-2, 40)); break;
      default: value = in.ConsumeFloatingPointInRange<float>(-20.0f, 20.0f);
    }
    std::memcpy(data + i, &value, 4);
  }
}

#if defined(ACTLOSS_SIM)
inline void cuda_or_fail(cudaError_t error, const char* what) {
  if (error != cudaSuccess) fail(std::string(what) + ": " + cudaGetErrorString(error));
}

// The same call on the kernels, on a device copy of the initial bytes (an exact-size simulated
// allocation, so ASan guards its end as well), against what the CPU path did.
template <class Call>
void check_kernels(const Buffers& buffers, const std::vector<std::uint8_t>& initial,
                   const Status& on_cpu, const Call& call) {
  std::uint8_t* arena = nullptr;
  std::uint8_t* too_large = nullptr;
  cuda_or_fail(cudaMalloc(reinterpret_cast<void**>(&arena), initial.size()), "cudaMalloc");
  cuda_or_fail(cudaMalloc(reinterpret_cast<void**>(&too_large), 16), "cudaMalloc");
  cuda_or_fail(cudaMemcpy(arena, initial.data(), initial.size(), cudaMemcpyHostToDevice),
               "cudaMemcpy");
  cuda_or_fail(cudaMemset(too_large, 0x5a, 16), "cudaMemset");
  Exec exec;
  exec.device = Device::cuda;
  const Status on_cuda = call(exec, arena, too_large);
  cuda_or_fail(cudaDeviceSynchronize(), "the kernels");
  const Status data_error = take_device_error(exec);
  std::vector<std::uint8_t> after(initial.size());
  std::uint8_t guard[16];
  cuda_or_fail(cudaMemcpy(after.data(), arena, after.size(), cudaMemcpyDeviceToHost),
               "cudaMemcpy");
  cuda_or_fail(cudaMemcpy(guard, too_large, 16, cudaMemcpyDeviceToHost), "cudaMemcpy");
  cuda_or_fail(cudaFree(arena), "cudaFree");
  cuda_or_fail(cudaFree(too_large), "cudaFree");
  for (std::uint8_t byte : guard)
    if (byte != 0x5a) fail("a kernel wrote a buffer too large for memory");

  if (on_cpu.code() == StatusCode::out_of_range) {
    // The kernels find a bad target in the data, without waiting: the call succeeds and the
    // stream's record names the same argument. Their NaN rows are the documented answer.
    if (!on_cuda.ok()) fail("cuda refused what only the data makes wrong: " + on_cuda.message());
    if (data_error.code() != StatusCode::out_of_range ||
        data_error.argument() != on_cpu.argument())
      fail("cuda's data error '" + data_error.message() + "' for '" + on_cpu.message() + "'");
    return;
  }
  if (!data_error.ok()) fail("a data error the CPU path did not see: " + data_error.message());
  if (on_cuda.code() != on_cpu.code() || on_cuda.argument() != on_cpu.argument())
    fail("cpu and cuda disagree: '" + on_cpu.message() + "' vs '" + on_cuda.message() + "'");
  // Outputs are the validation table's to judge; everything else must be as it was.
  for (std::size_t i = 0; i < initial.size(); ++i) {
    if (after[i] != initial[i] && buffers.outside_outputs(static_cast<std::int64_t>(i)))
      fail("a kernel wrote byte " + std::to_string(i) + ", outside every output (" +
           (on_cuda.ok() ? std::string("ok") : on_cuda.message()) + ")");
  }
}
#endif

// Runs `call(exec, arena, too_large)` on Device::cpu and on Device::reference, each on its own
// copy of the arena, and makes the checks above.
template <class Call>
void run_and_check(FuzzedDataProvider& in, const Buffers& buffers, const Call& call) {
  if (buffers.skip()) return;
  const std::int64_t bytes = buffers.arena_bytes();
  std::vector<std::uint8_t> initial(static_cast<std::size_t>(bytes));
  fill(in, initial.data(), bytes);
  // Exact-size heap blocks: ASan's redzone starts right after the last buffer.
  auto* cpu = new std::uint8_t[static_cast<std::size_t>(bytes)];
  auto* reference = new std::uint8_t[static_cast<std::size_t>(bytes)];
  auto* too_large_cpu = new std::uint8_t[16];
  auto* too_large_reference = new std::uint8_t[16];
  std::memcpy(cpu, initial.data(), initial.size());
  std::memcpy(reference, initial.data(), initial.size());
  std::memset(too_large_cpu, 0x5a, 16);
  std::memset(too_large_reference, 0x5a, 16);

  Exec exec;
  exec.device = Device::cpu;
  const Status on_cpu = call(exec, cpu, too_large_cpu);
  exec.device = Device::reference;
  const Status on_reference = call(exec, reference, too_large_reference);

  const bool cpu_changed = std::memcmp(cpu, initial.data(), initial.size()) != 0;
  for (int i = 0; i < 16; ++i)
    if (too_large_cpu[i] != 0x5a) fail("a buffer too large for memory was written");
  if (!on_cpu.ok()) {
    const bool names_argument = on_cpu.code() == StatusCode::invalid_argument ||
                                on_cpu.code() == StatusCode::out_of_range;
    if (!names_argument && on_cpu.code() != StatusCode::unsupported)
      fail("unexpected status: " + on_cpu.message());
    if (names_argument && on_cpu.argument().empty())
      fail("an error that names no argument: " + on_cpu.message());
    if (on_cpu.message().rfind(on_cpu.argument(), 0) != 0)
      fail("a message that does not start with its argument: " + on_cpu.message());
    if (cpu_changed) fail("bytes changed by a call that failed: " + on_cpu.message());
  }
  if (on_cpu.code() != on_reference.code() || on_cpu.argument() != on_reference.argument())
    fail("cpu and reference disagree: '" + on_cpu.message() + "' vs '" + on_reference.message() +
         "'");
  for (std::size_t i = 0; i < initial.size(); ++i) {
    if (!buffers.outside_outputs(static_cast<std::int64_t>(i))) continue;
    if (cpu[i] != initial[i]) fail("the CPU backend wrote byte " + std::to_string(i) + ", outside every output");
    if (reference[i] != initial[i]) fail("the reference wrote byte " + std::to_string(i) + ", outside every output");
  }
#if defined(ACTLOSS_SIM)
  check_kernels(buffers, initial, on_cpu, call);
#endif
  delete[] cpu;
  delete[] reference;
  delete[] too_large_cpu;
  delete[] too_large_reference;
}

}  // namespace actloss::fuzz
