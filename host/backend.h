// The seam between the public entry points (host/<op>.cpp: validation, then dispatch) and the
// CUDA backend (cuda/<op>.cu). Everything here is internal.
//
// The CUDA entry points are called only after validation succeeded, with arguments normalised:
// every row stride is explicit (never 0), every pointer that the pass needs is non-null and was
// checked to be device-accessible. Zero-size calls arrive too, possibly with null data pointers,
// so that a sum/mean loss of 0 is written on the device in stream order. In a build without the
// CUDA backend, host/no_cuda/no_cuda.cpp defines them all as returning StatusCode::unsupported.
#pragma once

#include <actloss/actloss.h>

#include "cuda/row_dispatch.h"

namespace actloss::detail {

enum class Pass : std::uint8_t { forward, backward, forward_backward };

Status cuda_cross_entropy(Pass pass, const CrossEntropyArgs& args,
                          const CrossEntropyOptions& options, const Exec& exec);
// The vocabulary-parallel cross-entropy's two phases (cuda/cross_entropy_shard.cu). Phase 2's
// gathered statistics lie shard after shard, gathered_rows (>= args.rows) apart: a call on
// some rows of a larger gather (the linear cross-entropy's chunks) reads them in place.
Status cuda_cross_entropy_shard_stats(const CrossEntropyArgs& args, const CrossEntropyShard& shard,
                                      const CrossEntropyOptions& options,
                                      CrossEntropyShardStats* stats, const Exec& exec);
Status cuda_cross_entropy_shard_finish(const CrossEntropyArgs& args,
                                       const CrossEntropyShard& shard,
                                       const CrossEntropyOptions& options,
                                       const CrossEntropyShardStats* gathered,
                                       std::int64_t shards, std::int64_t gathered_rows,
                                       const Exec& exec);
Status cuda_bce_with_logits(Pass pass, const BceArgs& args, const BceOptions& options,
                            const Exec& exec);
Status cuda_activation_forward(const ActivationForwardArgs& args, const ActivationOptions& options,
                               const Exec& exec);
Status cuda_activation_backward(const ActivationBackwardArgs& args,
                                const ActivationOptions& options, const Exec& exec);
Status cuda_swiglu_forward(const SwigluForwardArgs& args, const Exec& exec);
Status cuda_swiglu_backward(const SwigluBackwardArgs& args, const Exec& exec);
Status cuda_softmax_forward(const SoftmaxForwardArgs& args, const SoftmaxOptions& options,
                            const Exec& exec);
Status cuda_softmax_backward(const SoftmaxBackwardArgs& args, const SoftmaxOptions& options,
                             const Exec& exec);
Status cuda_mse(Pass pass, const MseArgs& args, const MseOptions& options, const Exec& exec);

// The fused linear cross-entropy's chunk buffers hold each token's classes rounded up to this
// many (32-byte rows of float logits, 16-byte rows of a 16-bit gradient).
constexpr std::int64_t kLinearBufferRowMultiple = 8;

// The fused linear cross-entropy in chunks of `chunk_tokens` tokens (> 0 when tokens > 0; the
// host chose it from the options), and the workspace bytes of such a call (`gradients`: of
// forward_backward, else of forward).
Status cuda_linear_cross_entropy(Pass pass, const LinearCrossEntropyArgs& args,
                                 const LinearCrossEntropyOptions& options,
                                 std::int64_t chunk_tokens, const Exec& exec);
Status cuda_linear_cross_entropy_workspace_size(const LinearCrossEntropyArgs& args,
                                                const LinearCrossEntropyOptions& options,
                                                std::int64_t chunk_tokens, bool gradients,
                                                std::size_t* bytes);

// The vocabulary-parallel phases of the fused linear cross-entropy over this shard's rows of the
// weight (args.classes wide): phase 1 in chunks of stats_chunk_tokens (chosen as the forward's),
// phase 2 (forward: the loss and lse alone; forward_backward: the gradients too) in chunks of
// chunk_tokens (chosen as forward_backward's), and the workspace bytes of both (the more).
Status cuda_linear_cross_entropy_shard_stats(const LinearCrossEntropyArgs& args,
                                             const CrossEntropyShard& shard,
                                             const LinearCrossEntropyOptions& options,
                                             std::int64_t chunk_tokens,
                                             CrossEntropyShardStats* stats, const Exec& exec);
Status cuda_linear_cross_entropy_shard_finish(Pass pass, const LinearCrossEntropyArgs& args,
                                              const CrossEntropyShard& shard,
                                              const LinearCrossEntropyOptions& options,
                                              std::int64_t chunk_tokens,
                                              const CrossEntropyShardStats* gathered,
                                              std::int64_t shards, const Exec& exec);
Status cuda_linear_cross_entropy_shard_workspace_size(const LinearCrossEntropyArgs& args,
                                                      const LinearCrossEntropyOptions& options,
                                                      std::int64_t stats_chunk_tokens,
                                                      std::int64_t finish_chunk_tokens,
                                                      std::size_t* bytes);

// The workspace bytes of the calls above on the current device (the public *_workspace_size,
// after their checks). A reduced loss with no rows or elements needs none.
Status cuda_cross_entropy_workspace_size(const CrossEntropyArgs& args,
                                         const CrossEntropyOptions& options, std::size_t* bytes);
Status cuda_cross_entropy_shard_workspace_size(const CrossEntropyArgs& args,
                                               const CrossEntropyOptions& options,
                                               std::size_t* bytes);
Status cuda_bce_workspace_size(const BceArgs& args, const BceOptions& options,
                               std::size_t* bytes);
Status cuda_mse_workspace_size(const MseArgs& args, const MseOptions& options,
                               std::size_t* bytes);

// ok when this process can use a CUDA device; otherwise no_device naming "exec.device", with the
// runtime's reason (no driver, no device). Probed once per process.
Status cuda_require_device();

// ok when `device` can read and write `pointer`, otherwise invalid_argument naming `argument`.
// Device::cuda: the current CUDA device (device or managed memory, or host memory mapped for the
// device). Device::cpu and reference: anything but CUDA device memory; always ok without a usable device, and
// in a build without the backend.
Status cuda_check_memory(Device device, const void* pointer, const char* argument);

// Implements take_device_error for Device::cuda.
Status cuda_take_device_error(const Exec& exec);

// Test hook (tests and `actloss validate` only; defined in cuda/elementwise.cu): caps the grid of
// the elementwise kernels so their grid-stride loops take several steps on problems small enough
// for the simulator. 0 restores the normal grid.
void cuda_set_elementwise_block_limit_for_testing(std::int64_t blocks);

// Test and benchmark hook (defined in cuda/elementwise.cu): 1 runs the elementwise kernels with
// one pack per thread per loop step, the loop last measured on a GPU, so that a card can compare
// it with the default (several packs in flight per thread); 0 (or any other value) restores the
// default.
void cuda_set_elementwise_packs_per_step_for_testing(int packs);

// Test and benchmark hook (defined in cuda/reduce.cu): false finishes every reduced loss (sum,
// mean) in a second kernel over the per-block partials, after the cross-entropy targets'
// pre-pass wherever a mean over class targets needs it, the way last measured on a GPU, so that
// a card can compare it with the default (the kernel's last block adds the partials); true
// restores the default.
void cuda_set_reduced_loss_in_kernel_for_testing(bool in_kernel);

// Test hook (`actloss validate`'s error bounds replay the row kernels' reductions; defined in
// cuda/softmax.cu): the threads that share a row of `op` on the path a launch takes now (the
// forced one, or the automatic choice) on the current device, and the blocks of the cluster
// they span (1 without one).
Status cuda_row_geometry_for_testing(RowOp op, std::int64_t rows, std::int64_t cols, DType dtype,
                                     int* threads_per_row, int* cluster_blocks);

// Test hook (defined in cuda/cross_entropy.cu): whether a cross-entropy call with these
// arguments and options takes the kernels that keep each exponential on the current device
// (cuda/cross_entropy_exp_once.cu), and the chunks each thread holds (0: the row stays in memory).
Status cuda_cross_entropy_plan_for_testing(const CrossEntropyArgs& args,
                                           const CrossEntropyOptions& options, bool* exp_once,
                                           int* chunks_per_thread);

// Test hook (defined in cuda/context.cu): forgets the occupancy API's answers that the calling
// thread keeps per kernel and geometry (cuda::resident_blocks), for a test that changes the
// simulator's register model between calls.
void cuda_forget_resident_blocks_for_testing();

// Which argument a DeviceError::argument value stands for.
enum class DeviceErrorArgument : std::int32_t { none = 0, targets = 1 };

}  // namespace actloss::detail
