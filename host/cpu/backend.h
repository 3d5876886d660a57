// The seam between the public entry points (host/<op>.cpp) and the SIMD CPU backend (host/cpu/,
// built with Highway when it is found). Called for Device::cpu only, after validation succeeded,
// with the arguments normalised as for the CUDA backend (explicit strides, rows_per_batch set).
//
// Each entry point returns std::nullopt for a call it does not cover; the caller then runs the
// float64 reference, which covers every call. What each covers is stated beside it. In a build
// without Highway (host/no_simd/) every entry point returns std::nullopt.
//
// The backend's contract is the kernels': float32 math with float64 accumulation where accuracy
// needs it, the stable formulas of the kernels, every output rounded once to its dtype, nothing
// written before validation, and sums and means that are the same bits on any thread count (work
// is cut by size, and partial results are combined in a fixed order).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include <actloss/actloss.h>

#include "host/backend.h"
#include "host/cpu/environment.h"

namespace actloss::detail {

// "Highway <target>, <n> threads" (the instruction set chosen for this processor at run time),
// or "float64 reference" without Highway.
const char* cpu_backend_description();

// Test hook: restricts Highway's run-time choice to the targets in `mask` (Highway's HWY_*
// bits; 0 restores every target this processor supports), so that tests can run each compiled
// target this machine can execute. Returns false without Highway.
bool cpu_set_simd_targets_for_testing(std::int64_t mask);
// The compiled targets this processor can run, as Highway's bits (0 without Highway).
std::int64_t cpu_runnable_simd_targets();
// Highway's name of one target bit.
const char* cpu_simd_target_name(std::int64_t target);

// Test hook: whether float32 values become bfloat16 with AVX512_BF16's conversion instruction
// (host/cpu/bf16_conversion.h) where this processor has it (true, the default) or with integer
// operations (false). Returns whether this processor has it (false without Highway).
bool cpu_set_bf16_instruction_for_testing(bool use);

// Test hook: every later call uses `threads` threads (0: the default, ACTLOSS_CPU_THREADS or the
// number of hardware threads).
void cpu_set_threads_for_testing(int threads);

// Test hook: how long the pool's idle threads poll for the next call before sleeping, in
// nanoseconds (0: at once; negative: the default, ACTLOSS_CPU_SPIN_US or 5 ms).
void cpu_set_pool_spin_for_testing(std::int64_t nanoseconds);

// Test hook: outputs of `bytes` or more are stored with non-temporal stores (0 restores the
// default, cpu::streaming_output_bytes()).
void cpu_set_streaming_output_bytes_for_testing(std::int64_t bytes);

// All activations, every dtype, stride and the relu mask.
std::optional<Status> cpu_activation_forward(const ActivationForwardArgs& args,
                                             const ActivationOptions& options);
std::optional<Status> cpu_activation_backward(const ActivationBackwardArgs& args,
                                              const ActivationOptions& options);
std::optional<Status> cpu_swiglu_forward(const SwigluForwardArgs& args);
std::optional<Status> cpu_swiglu_backward(const SwigluBackwardArgs& args);

// Softmax and log-softmax, forward and backward, every dtype and batched layout.
std::optional<Status> cpu_softmax_forward(const SoftmaxForwardArgs& args,
                                          const SoftmaxOptions& options);
std::optional<Status> cpu_softmax_backward(const SoftmaxBackwardArgs& args,
                                           const SoftmaxOptions& options);

// Losses, each pass as the CUDA backend's.
std::optional<Status> cpu_cross_entropy(Pass pass, const CrossEntropyArgs& args,
                                        const CrossEntropyOptions& options);
std::optional<Status> cpu_bce_with_logits(Pass pass, const BceArgs& args,
                                          const BceOptions& options);
std::optional<Status> cpu_mse(Pass pass, const MseArgs& args, const MseOptions& options);

}  // namespace actloss::detail

namespace actloss::cpu {

// The size from which an output the backend writes, and does not read again, goes out with
// non-temporal stores: a quarter of the last-level cache (at least 4 MiB), so that an output the
// next op could find in cache stays there, while one that would not goes to memory without first
// reading every line it writes. The ops read about as many bytes as they write, or more, so a
// call with a quarter-cache output moves half the cache or more: by its end its own traffic has
// pushed most of the output's early lines out. (From half the cache, the 16 MB outputs of 32000-
// and 50257-class rows went through the cache: the fused cross-entropy, which defers only
// streamed gradients, ran 1.2x slower there.) The cache's size is the kernel's (sysfs), which in
// a virtual machine is often the slice the guest sees, but some hypervisors pass the host's whole
// cache on. A 2-vCPU Xeon VM read 480 MiB of L3 in sysfs, and a chain of three 2-thread
// activations (four tensors) ran at 42-45 GB/s through the cache and 40 streamed over 24 MiB
// tensors; over 32 MiB ones 38-39 against 42 in one run and 37-38 either way in another; over
// 48 and 64 MiB ones 28-31 against 37-42: about 128 MiB of it served this guest. So the cache
// counted is at most 64 MiB per online CPU, more than any processor has per core (12 MiB at most
// today), which leaves a bare machine's figure as it is. ACTLOSS_CPU_STREAM_MIB=<n> sets the size
// instead.
std::int64_t streaming_output_bytes();

// The rule above for a last-level cache of `last_level_cache` bytes and `cpus` online CPUs.
constexpr std::int64_t kCacheShareCapPerCpu = std::int64_t{64} << 20;
constexpr std::int64_t streaming_output_bytes_for(std::int64_t last_level_cache,
                                                  std::int64_t cpus) {
  const std::int64_t share =
      std::min(last_level_cache, std::max<std::int64_t>(cpus, 1) * kCacheShareCapPerCpu);
  return std::max(share / 4, std::int64_t{4} << 20);
}

// ACTLOSS_CPU_STREAM_MIB's value in bytes: a positive count of MiB (at most 2^40, past any
// memory, so that never streaming is a number too), else 0 (unset or not a number: the rule).
inline std::int64_t streaming_output_bytes_from_text(const char* text) {
  const std::optional<long long> mib = whole_number_from_text(text, 1);
  if (!mib) return 0;
  return static_cast<std::int64_t>(std::min(*mib, 1LL << 40)) << 20;
}

// Rows whose input, exponentials and float output would take more bytes than this keep the
// exponentials in the output row itself, when it is not streamed (softmax forward, the fused
// cross-entropy): a third fewer bytes touched, and the pass that writes the output rewrites the
// lines the pass before left in cache. Softmax forward against a separate buffer (Xeon VM, f32,
// alternating processes, two runs): 1.29-1.33x at 262144 columns, 1.11-1.16x at 128256; shorter
// rows, whose three arrays fit in L2 together, were as fast or faster with the buffer and the
// output fetched ahead (1.05-1.07x at 1024 and 4096 columns, even at 32000).
constexpr std::int64_t kOutputAsBufferRowBytes = std::int64_t{1} << 20;

// At least `floats` floats of a per-thread scratch buffer (grown as needed, never shrunk),
// starting on a cache line: a vector that straddles two lines costs two accesses.
inline float* cache_line_floats(std::vector<float>& buffer, std::size_t floats) {
  constexpr std::size_t kCacheLine = 64;
  constexpr std::size_t kLineFloats = kCacheLine / sizeof(float);
  if (buffer.size() < floats + kLineFloats) buffer.resize(floats + kLineFloats);
  const std::uintptr_t misalignment = reinterpret_cast<std::uintptr_t>(buffer.data()) % kCacheLine;
  return buffer.data() + (misalignment == 0 ? 0 : (kCacheLine - misalignment) / sizeof(float));
}

}  // namespace actloss::cpu
