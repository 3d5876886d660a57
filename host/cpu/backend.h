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

#include <optional>

#include <actloss/actloss.h>

#include "host/backend.h"

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
// nanoseconds (0: at once; negative: the default, ACTLOSS_CPU_SPIN_US or 2 ms).
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
// a virtual machine is the slice the guest sees, not the host's whole cache.
std::int64_t streaming_output_bytes();

}  // namespace actloss::cpu
