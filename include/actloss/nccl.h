// The vocabulary-parallel cross-entropy over NCCL: one call per rank runs
// cross_entropy_shard_stats, one ncclAllGather of the statistics on the caller's communicator and
// stream, and cross_entropy_shard_finish (include/actloss/cross_entropy.h says what each computes
// and how CrossEntropyArgs is read). Library target actloss::nccl, built beside actloss::actloss
// when NCCL is found (the simulator build links the simulator's NCCL stand-in instead); actloss
// itself never needs NCCL. This header is not part of <actloss/actloss.h>.
//
//   // Each rank, on its own device: logits [rows x V_local] are classes [first, first + V_local).
//   args.classes = V_local;
//   std::size_t bytes = 0;
//   actloss::nccl::cross_entropy_workspace_size(args, options, ranks, exec, &bytes);
//   exec.workspace = {d_scratch, bytes};  // once, from your allocator
//   actloss::nccl::cross_entropy(args, {first, V}, options, comm, exec);
//
// Every rank calls it with the same rows, options, shard.total_classes and class-index targets,
// on a communicator of one rank per shard (ncclCommInitRank or ncclCommInitAll). The shards are
// every rank's own (rank order need not follow class order) and must together cover
// [0, total_classes) once: each rank sees its own shard only, so a gap or an overlap between
// ranks cannot be refused here and gives a wrong loss. The reduced loss is the same bits on every
// rank.
//
// Stream order and capture: everything is queued on exec.stream, in order, and nothing waits for
// the GPU or allocates; the statistics travel through exec.workspace, which is therefore
// required. The call can be captured into a CUDA graph (NCCL records the all-gather), under the
// same rule as every actloss call: one call on the stream before capturing, or an
// exec.device_error of your own. Not inside ncclGroupStart/ncclGroupEnd: NCCL queues a grouped
// collective only at ncclGroupEnd, after phase 2's kernels that read what it gathers. One host
// thread per rank (or per process), as for any blocking use of NCCL.
//
// Errors: before anything is queued, the call checks exec (Device::cuda only: NCCL moves device
// memory), the communicator (live, of the current device), the shard against the rank count, the
// workspace, and phase 1's arguments. Phase 2's own arguments (the outputs loss, lse, grad, their
// strides, upstream_grad, grad_scale) are checked after the all-gather: a refusal there leaves
// the outputs untouched, and only exec.workspace has been written. A refusal on some ranks only
// leaves the others waiting in ncclAllGather, as a rank that skips any collective does; the same
// arguments on every rank are refused on every rank. An NCCL failure is StatusCode::cuda_error
// with NCCL's message.
#pragma once

#include <nccl.h>

#include <cstddef>
#include <cstdint>

#include <actloss/cross_entropy.h>
#include <actloss/linear_cross_entropy.h>

namespace actloss::nccl {

// The bytes of exec.workspace that cross_entropy needs with `ranks` ranks: the gathered
// statistics (ranks x rows x 20 bytes), then cross_entropy_shard_finish's scratch; 0 when rows
// is 0. Reads rows and the options' reduction; exec.device must be Device::cuda.
Status cross_entropy_workspace_size(const CrossEntropyArgs& args,
                                    const CrossEntropyOptions& options, std::int64_t ranks,
                                    const Exec& exec, std::size_t* bytes);

// Loss (and lse, when given) of the whole vocabulary on every rank, and this rank's gradient
// when args.grad is given (in place over the logits allowed), on exec.stream of the current
// device, which must be comm's. The gathered statistics are ordered by rank in comm.
Status cross_entropy(const CrossEntropyArgs& args, const CrossEntropyShard& shard,
                     const CrossEntropyOptions& options, ncclComm_t comm, const Exec& exec);

// ---- Fused linear + cross-entropy over a sharded vocabulary ------------------------------------
//
// The LM head of include/actloss/linear_cross_entropy.h with its weight's rows sharded over the
// ranks (the "Vocabulary-parallel" section there says how the args are read): per rank,
// linear_cross_entropy_shard_stats, one ncclAllGather of the statistics, then
// linear_cross_entropy_shard_finish; forward_backward then sums every rank's share of d_hidden
// with one in-place ncclAllReduce (ncclSum, in d_hidden's dtype) on the caller's communicator and
// stream, so every rank ends with the input gradient of the whole vocabulary, and d_weight and
// d_bias of its own rows. Everything else is as cross_entropy above: the same communicator,
// ordering, capture and error rules, and exec.workspace is required.
//
//   args.classes = V_local;  // weight = this rank's [V_local x D] rows, from class `first`
//   std::size_t bytes = 0;
//   actloss::nccl::linear_cross_entropy_workspace_size(args, options, ranks, exec, &bytes);
//   exec.workspace = {d_scratch, bytes};
//   actloss::nccl::linear_cross_entropy_forward_backward(args, {first, V}, options, comm, exec);
//
// d_hidden must be dense (d_hidden_row_stride 0 or hidden_size): the all-reduce runs over one
// contiguous buffer. With 16-bit d_hidden each rank's share is rounded to it before the sum.

// The bytes of exec.workspace that either call below needs with `ranks` ranks: the gathered
// statistics (ranks x tokens x 20 bytes), then the linear cross-entropy's own workspace
// (linear_cross_entropy_shard_workspace_size); 0 when tokens is 0.
Status linear_cross_entropy_workspace_size(const LinearCrossEntropyArgs& args,
                                           const LinearCrossEntropyOptions& options,
                                           std::int64_t ranks, const Exec& exec,
                                           std::size_t* bytes);

// The loss (and lse), the same on every rank; no gradient.
Status linear_cross_entropy_forward(const LinearCrossEntropyArgs& args,
                                    const CrossEntropyShard& shard,
                                    const LinearCrossEntropyOptions& options, ncclComm_t comm,
                                    const Exec& exec);

// The loss (optional), lse (optional), d_hidden (summed over the ranks), and this rank's d_weight
// and d_bias.
Status linear_cross_entropy_forward_backward(const LinearCrossEntropyArgs& args,
                                             const CrossEntropyShard& shard,
                                             const LinearCrossEntropyOptions& options,
                                             ncclComm_t comm, const Exec& exec);

}  // namespace actloss::nccl
