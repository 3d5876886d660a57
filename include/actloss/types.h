// Core vocabulary shared by every op: element types, reductions, where data lives, the stream,
// and the status every entry point returns. Plain C++20: no CUDA header is needed to include it.
//
// Conventions of every entry point:
//  * Validation comes first and is complete: on any error nothing is written.
//  * Status::argument() is the offending field's name: an args field as spelled in its struct
//    ("logits_row_stride"), an options field as "options.<field>", an Exec field as
//    "exec.<field>".
//  * Zero rows or elements are valid: data pointers may then be null, and a sum/mean loss, when
//    given, is written as 0. Zero classes (or softmax columns) with rows > 0 is rejected.
//  * Outputs may not overlap inputs or each other; buffers are compared by their whole byte span
//    (first to last element, padding included), so two strided buffers that interleave without
//    sharing an element are rejected too, except two matrices with the same row stride in bytes,
//    which are compared row by row (the two halves of one [rows x 2n] tensor are apart). The
//    exceptions are the in-place cases each header names, which require the very same pointer,
//    dtype and strides.
//  * Mean over a zero denominator (an empty or fully ignored batch) is 0 with a zero gradient.
//  * NaN in gives NaN out, in forward and backward alike.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

// cudaStream_t is `struct CUstream_st*`; declaring the same incomplete struct lets users pass a
// cudaStream_t straight through without this header pulling in the CUDA runtime.
struct CUstream_st;

namespace actloss {

using Stream = CUstream_st*;  // identical to cudaStream_t; nullptr is the legacy default stream

enum class DType : std::uint8_t { f32, f16, bf16 };

// Reduction over rows/elements, as PyTorch's `reduction=`.
enum class Reduction : std::uint8_t { none, sum, mean };

// Where an op runs. `cuda`: the GPU kernels, on device memory. `reference`: the float64
// reference on the CPU, the oracle every backend is tested against, kept reachable so that
// kernels of your own can be checked against it. `cpu`: actloss's SIMD CPU backend on host memory
// (see cpu_backend()): float32 math held to the kernels' accuracy, threaded, results the same
// bits on any thread count; a call it does not cover runs the reference.
enum class Device : std::uint8_t { cpu, cuda, reference };

// Size in bytes of one element of `dtype`; 0 for a value outside the enum.
constexpr std::int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
  }
  return 0;
}

const char* to_string(DType dtype);
const char* to_string(Reduction reduction);
const char* to_string(Device device);

enum class StatusCode : std::uint8_t {
  ok = 0,
  invalid_argument,  // a pointer, size, stride, dtype or option is wrong; nothing was written
  out_of_range,      // a data value (a class target) is outside its valid range
  unsupported,       // valid request this build or device cannot serve (e.g. CUDA not built)
  cuda_error,        // the CUDA runtime reported an error
  internal,          // a bug in actloss
  no_device,         // Device::cuda, but no CUDA device or driver is usable in this process
};

const char* to_string(StatusCode code);

// Every entry point returns a Status; none throws. `argument()` names the offending argument
// (empty when no single argument is at fault) so callers and tests can act on it without parsing.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string argument, std::string message)
      : code_(code), argument_(std::move(argument)), message_(std::move(message)) {}

  bool ok() const { return code_ == StatusCode::ok; }
  StatusCode code() const { return code_; }
  const std::string& argument() const { return argument_; }
  // Human-readable, starting with the argument's name, e.g.
  // "logits_row_stride: must be >= classes (got 3, classes 5)".
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::ok;
  std::string argument_;
  std::string message_;
};

// Errors that kernels find in the data itself (a class target outside [0, classes)) cannot be
// returned by a call that does not wait for the GPU. Kernels record the first such error here
// without synchronising; `take_device_error` turns it into a Status later. Lives in memory the
// executing device can write (device memory for CUDA, host memory for CPU).
struct DeviceError {
  std::int32_t code = 0;      // 0: no error; otherwise a StatusCode value
  std::int32_t argument = 0;  // which argument (an internal enumerator; see take_device_error)
  std::int64_t index = 0;     // the row (or element) where the error was first seen
  std::int64_t value = 0;     // the offending value
};

// Device memory that an op uses for its intermediate results: the per-block partial sums behind
// a reduced loss (cross-entropy, BCE and MSE with Reduction::sum or mean, and cross-entropy's
// target-weight sums), and the counter that lets the kernel's last block add them up, so that a
// reduced loss is one kernel after a 4-byte memset of that counter (cross-entropy adds a small
// pre-pass over the targets where a gradient needs a batch-wide sum first: mean over class
// targets, label smoothing with class weights). `<op>_workspace_size` says how many bytes a call
// needs; other ops need none and ignore it. Its contents need no initialisation and are
// overwritten.
//
// Given (data not null), the call uses it and allocates nothing, so it fits a caller's allocator
// and its memory accounting, and captures into a CUDA graph as kernel and memset nodes only. It must be
// device memory on exec's device, aligned to 16 bytes, at least the size asked for, and apart
// from every other buffer of the call; too small is an invalid_argument naming
// "exec.workspace", and nothing is written. Calls ordered on one stream may share a workspace;
// calls that may run at the same time (other streams) each need their own.
//
// Not given (data null, bytes 0: the default), a call that needs scratch allocates it with
// cudaMallocAsync on exec.stream and frees it there with cudaFreeAsync: ordered with the work,
// no host synchronisation, from the device's default memory pool. The CPU path needs none.
struct Workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

// How a call makes sure that its buffers are memory its device can use.
enum class PointerChecks : std::uint8_t {
  // The default: cudaPointerGetAttributes on every buffer, so that on Device::cuda a host
  // pointer or another device's memory, and on Device::cpu (in a build with the CUDA backend)
  // device memory, is refused by name before anything runs. It costs host time on every call
  // (a fraction of a microsecond per buffer; the `host_cost/` benchmarks measure it).
  every_call,
  // Trust the caller: the other checks (null, sizes, strides, alignment, overlap, workspace)
  // stay, but a pointer the device cannot reach is not caught here; a CUDA kernel then faults
  // with an illegal-address error, which ends the CUDA context, and the CPU path crashes the
  // process. For hot loops whose buffers were checked once, by an earlier call with every_call.
  none,
};

// Where and how an op runs.
struct Exec {
  Device device = Device::cpu;
  // CUDA only: the stream every kernel and copy of the call is ordered on. No op synchronises it.
  Stream stream = nullptr;
  // CUDA only, optional: where kernels record data errors (see DeviceError). When null, actloss
  // keeps one record per device and stream, allocated on the stream's first use: capture a CUDA
  // graph after a first call on that stream (a first call while capturing is refused as
  // unsupported, "exec.device_error", and the capture goes on). `take_device_error` reads
  // either. Calls on other streams never see or clear each other's errors.
  DeviceError* device_error = nullptr;
  // CUDA only, optional: scratch memory for the call (see Workspace).
  Workspace workspace = {};
  // CUDA only: see PointerChecks.
  PointerChecks pointer_checks = PointerChecks::every_call;
};

// Reads, clears and converts the data-error record of `exec` (the caller's, or actloss's own for
// the current device and exec.stream when exec.device_error is null). This is the one call that waits: on CUDA it
// synchronises exec.stream to read the record. On CPU, data errors are returned by the op itself,
// so this returns ok unless a caller-provided record holds an error.
Status take_device_error(const Exec& exec);

// Library version, build options and backends compiled in, e.g. "actloss 0.1.0 (cpu, cuda)".
const char* build_info();

// True when this build can run ops with Device::cuda (real CUDA or the simulator).
bool cuda_backend_built();

// What Device::cpu runs on, e.g. "Highway AVX3, 16 threads": the SIMD instruction set chosen for
// this processor at run time (one binary carries SSE4, AVX2 and AVX-512 code) and the number of
// threads (ACTLOSS_CPU_THREADS, read once, else every hardware thread), then ", AVX512_BF16
// conversion" where bf16 outputs are rounded by that instruction (the same bits as without it);
// or "float64 reference" in a build without Highway. The pointer stays valid until this thread
// calls it again.
const char* cpu_backend();

}  // namespace actloss
