// actloss::nccl (include/actloss/nccl.h): the vocabulary-parallel cross-entropy's two phases
// around one in-place ncclAllGather. Its own library, so that actloss never needs NCCL.
//
// The workspace holds [ranks x rows] statistics, this rank's slot written by phase 1 and every
// slot filled by the gather, then phase 2's scratch after a 16-byte boundary:
//
//   | rank 0's rows | rank 1's rows | ... | pad to 16 | cross_entropy_shard_finish's scratch |
//
// The linear cross-entropy's is laid out the same way, its own scratch (both phases') after a
// 256-byte boundary, where its chunk buffers start.
#include <actloss/nccl.h>

#include <cuda_runtime_api.h>

#include <string>

#include "host/validate.h"

namespace actloss::nccl {
namespace {

constexpr std::size_t kStatsBytes = sizeof(CrossEntropyShardStats);

struct Layout {
  std::size_t slot_bytes = 0;      // one rank's statistics
  std::size_t finish_offset = 0;   // where phase 2's scratch starts
  std::size_t total_bytes = 0;
};


// NCCL runs on CUDA devices only; a CPU caller runs the two shard calls around its own gather.
Status check_device(const Exec& exec) {
  ACTLOSS_TRY(host::check_exec(exec));
  if (exec.device != Device::cuda) {
    return host::invalid("exec.device", to_string(exec.device),
                         ": the NCCL adapter runs on CUDA devices only (NCCL moves device "
                         "memory); on the CPU, call cross_entropy_shard_stats and "
                         "cross_entropy_shard_finish around a gather of your own");
  }
  return {};
}

Status nccl_failure(const char* expression, ncclResult_t result) {
  return Status(StatusCode::cuda_error, "",
                std::string(expression) + " failed with " + ncclGetErrorString(result) + ": " +
                    ncclGetLastError(nullptr));
}

// The communicator: live, this rank's place in it, and of the device the kernels run on.
struct Rank {
  int ranks = 0;
  int rank = 0;
};

Status check_comm(ncclComm_t comm, Rank* rank) {
  if (comm == nullptr)
    return host::invalid("comm", "null (the caller's communicator, from ncclCommInitRank or "
                                 "ncclCommInitAll)");
  int device = 0;
  if (const ncclResult_t r = ncclCommCount(comm, &rank->ranks); r != ncclSuccess)
    return host::invalid("comm", "not a usable communicator (ncclCommCount: ",
                         ncclGetErrorString(r), ")");
  if (const ncclResult_t r = ncclCommUserRank(comm, &rank->rank); r != ncclSuccess)
    return host::invalid("comm", "ncclCommUserRank failed (", ncclGetErrorString(r), ")");
  if (const ncclResult_t r = ncclCommCuDevice(comm, &device); r != ncclSuccess)
    return host::invalid("comm", "ncclCommCuDevice failed (", ncclGetErrorString(r), ")");
  int current = 0;
  if (const cudaError_t e = cudaGetDevice(&current); e != cudaSuccess) {
    (void)cudaGetLastError();
    return Status(StatusCode::cuda_error, "",
                  std::string("cudaGetDevice failed with ") + cudaGetErrorName(e));
  }
  if (device != current)
    return host::invalid("comm", "a communicator of CUDA device ", device,
                         ", but the current device is ", current,
                         " (the kernels run on the current device: cudaSetDevice(", device,
                         ") first)");
  return {};
}

Status check_size_query(const Exec& exec, std::int64_t ranks, const std::size_t* bytes) {
  ACTLOSS_TRY(check_device(exec));
  if (bytes == nullptr) return host::invalid("bytes", "must not be null (where the size is written)");
  if (ranks < 1) return host::invalid("ranks", "must be >= 1 (got ", ranks, ")");
  return {};
}

// The gathered statistics of `ranks` x `rows` and, after `alignment`, `scratch_bytes` more.
Status gather_layout(std::int64_t rows, std::int64_t ranks, std::size_t scratch_bytes,
                     std::size_t alignment, const char* rows_argument, Layout* layout) {
  const auto count = static_cast<std::size_t>(rows);
  std::size_t gathered = 0;
  // Bounded by INT64_MAX, as every size the library hands to the runtime.
  if (__builtin_mul_overflow(count, kStatsBytes, &layout->slot_bytes) ||
      __builtin_mul_overflow(layout->slot_bytes, static_cast<std::size_t>(ranks), &gathered) ||
      gathered > static_cast<std::size_t>(INT64_MAX) - (alignment - 1) - scratch_bytes) {
    return host::invalid(rows_argument, ranks, " ranks x ", rows,
                         " rows of statistics overflow the workspace's size");
  }
  layout->finish_offset = (gathered + alignment - 1) / alignment * alignment;
  layout->total_bytes = count == 0 ? 0 : layout->finish_offset + scratch_bytes;
  return {};
}

Status layout_of(const CrossEntropyArgs& args, const CrossEntropyOptions& options,
                 std::int64_t ranks, const Exec& exec, Layout* layout) {
  std::size_t finish_bytes = 0;
  ACTLOSS_TRY(cross_entropy_shard_workspace_size(args, options, exec, &finish_bytes));
  return gather_layout(args.rows, ranks, finish_bytes, 16, "rows", layout);
}

Status check_workspace_holds(const Exec& exec, const Layout& layout, int ranks,
                             const char* size_query) {
  host::Region workspace;
  ACTLOSS_TRY(host::check_workspace(exec, {}, workspace));
  if (exec.workspace.bytes < layout.total_bytes) {
    return host::invalid("exec.workspace",
                         exec.workspace.data == nullptr ? "not given" : "too small", " (",
                         exec.workspace.bytes, " bytes): this call gathers every rank's "
                         "statistics there and needs ", layout.total_bytes, " bytes (", size_query,
                         " with ", ranks, " ranks); it never allocates");
  }
  return {};
}

// exec with the workspace after the gathered statistics.
Exec exec_after_gather(const Exec& exec, const Layout& layout) {
  Exec after = exec;
  after.workspace = {};
  if (exec.workspace.bytes > layout.finish_offset) {
    after.workspace = {static_cast<char*>(exec.workspace.data) + layout.finish_offset,
                       exec.workspace.bytes - layout.finish_offset};
  }
  return after;
}

Status check_ranks_fit(std::int64_t rows, const CrossEntropyShard& shard, const Rank& rank) {
  // A vocabulary that is no shard's at all is phase 1's to refuse, by the shard's own names.
  if (rows > 0 && shard.total_classes > 0 && rank.ranks > shard.total_classes) {
    return host::invalid("comm", rank.ranks, " ranks, but shard.total_classes = ",
                         shard.total_classes, ": every rank's shard holds a class at least");
  }
  return {};
}

// This rank's rows of the gathered statistics (null without rows).
CrossEntropyShardStats* slot_of(CrossEntropyShardStats* gathered, const Rank& rank,
                                std::int64_t rows) {
  return rows > 0 ? gathered + static_cast<std::size_t>(rank.rank) * static_cast<std::size_t>(rows)
                  : nullptr;
}

Status all_gather_stats(CrossEntropyShardStats* slot, CrossEntropyShardStats* gathered,
                        const Layout& layout, ncclComm_t comm, cudaStream_t stream) {
  if (const ncclResult_t r =
          ncclAllGather(slot, gathered, layout.slot_bytes, ncclUint8, comm, stream);
      r != ncclSuccess)
    return nccl_failure("ncclAllGather(statistics, exec.workspace, rows x 20 bytes)", r);
  return {};
}

// ---- the linear cross-entropy ------------------------------------------------------------------

constexpr std::size_t kLinearScratchAlignment = 256;

Status linear_layout_of(const LinearCrossEntropyArgs& args,
                        const LinearCrossEntropyOptions& options, std::int64_t ranks,
                        const Exec& exec, Layout* layout) {
  std::size_t scratch_bytes = 0;
  ACTLOSS_TRY(linear_cross_entropy_shard_workspace_size(args, options, exec, &scratch_bytes));
  return gather_layout(args.tokens, ranks, scratch_bytes, kLinearScratchAlignment, "tokens",
                       layout);
}

ncclDataType_t nccl_type_of(DType dtype) {
  switch (dtype) {
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    default: return ncclFloat32;
  }
}

Status run_linear(bool gradients, const LinearCrossEntropyArgs& args,
                  const CrossEntropyShard& shard, const LinearCrossEntropyOptions& options,
                  ncclComm_t comm, const Exec& exec) {
  ACTLOSS_TRY(check_device(exec));
  Rank rank;
  ACTLOSS_TRY(check_comm(comm, &rank));
  ACTLOSS_TRY(check_ranks_fit(args.tokens, shard, rank));
  if (gradients && args.d_hidden_row_stride != 0 && args.d_hidden_row_stride != args.hidden_size) {
    return host::invalid("d_hidden_row_stride", "must be 0 or hidden_size = ", args.hidden_size,
                         " (got ", args.d_hidden_row_stride, "): the ranks' shares of d_hidden "
                         "are summed by one all-reduce over a contiguous buffer");
  }
  if (gradients && args.d_hidden == nullptr && args.tokens > 0) {
    return host::invalid("d_hidden", "must not be null when tokens > 0 (forward_backward "
                                     "writes it)");
  }
  Layout layout;
  ACTLOSS_TRY(linear_layout_of(args, options, rank.ranks, exec, &layout));
  ACTLOSS_TRY(check_workspace_holds(exec, layout, rank.ranks,
                                    "nccl::linear_cross_entropy_workspace_size"));
  auto* gathered = static_cast<CrossEntropyShardStats*>(exec.workspace.data);
  const Exec scratch_exec = exec_after_gather(exec, layout);

  // Phase 1 into this rank's slot: the gather below is then in place.
  const std::int64_t tokens = args.tokens;
  CrossEntropyShardStats* slot = slot_of(gathered, rank, tokens);
  ACTLOSS_TRY(linear_cross_entropy_shard_stats(args, shard, options, slot, scratch_exec));
  if (tokens > 0) ACTLOSS_TRY(all_gather_stats(slot, gathered, layout, comm, exec.stream));

  LinearCrossEntropyArgs finish = args;
  if (!gradients) {
    finish.d_hidden = finish.d_weight = finish.d_bias = nullptr;
    finish.upstream_grad = nullptr;
  }
  ACTLOSS_TRY(linear_cross_entropy_shard_finish(finish, shard, options,
                                                tokens > 0 ? gathered : nullptr, rank.ranks,
                                                scratch_exec));
  if (!gradients || tokens == 0 || args.hidden_size == 0) return {};
  const auto elements =
      static_cast<std::size_t>(tokens) * static_cast<std::size_t>(args.hidden_size);
  if (const ncclResult_t r = ncclAllReduce(args.d_hidden, args.d_hidden, elements,
                                           nccl_type_of(args.dtype), ncclSum, comm, exec.stream);
      r != ncclSuccess)
    return nccl_failure("ncclAllReduce(d_hidden, sum)", r);
  return {};
}

}  // namespace

Status cross_entropy_workspace_size(const CrossEntropyArgs& args,
                                    const CrossEntropyOptions& options, std::int64_t ranks,
                                    const Exec& exec, std::size_t* bytes) {
  ACTLOSS_TRY(check_size_query(exec, ranks, bytes));
  Layout layout;
  ACTLOSS_TRY(layout_of(args, options, ranks, exec, &layout));
  *bytes = layout.total_bytes;
  return {};
}

Status cross_entropy(const CrossEntropyArgs& args, const CrossEntropyShard& shard,
                     const CrossEntropyOptions& options, ncclComm_t comm, const Exec& exec) {
  ACTLOSS_TRY(check_device(exec));
  Rank rank;
  ACTLOSS_TRY(check_comm(comm, &rank));
  ACTLOSS_TRY(check_ranks_fit(args.rows, shard, rank));
  Layout layout;
  ACTLOSS_TRY(layout_of(args, options, rank.ranks, exec, &layout));
  ACTLOSS_TRY(
      check_workspace_holds(exec, layout, rank.ranks, "nccl::cross_entropy_workspace_size"));
  auto* gathered = static_cast<CrossEntropyShardStats*>(exec.workspace.data);

  // Phase 1 into this rank's slot: the gather below is then in place.
  Exec stats_exec = exec;
  stats_exec.workspace = {};
  CrossEntropyShardStats* slot = slot_of(gathered, rank, args.rows);
  ACTLOSS_TRY(cross_entropy_shard_stats(args, shard, options, slot, stats_exec));
  if (args.rows > 0) ACTLOSS_TRY(all_gather_stats(slot, gathered, layout, comm, exec.stream));
  return cross_entropy_shard_finish(args, shard, options, args.rows > 0 ? gathered : nullptr,
                                    rank.ranks, exec_after_gather(exec, layout));
}

Status linear_cross_entropy_workspace_size(const LinearCrossEntropyArgs& args,
                                           const LinearCrossEntropyOptions& options,
                                           std::int64_t ranks, const Exec& exec,
                                           std::size_t* bytes) {
  ACTLOSS_TRY(check_size_query(exec, ranks, bytes));
  Layout layout;
  ACTLOSS_TRY(linear_layout_of(args, options, ranks, exec, &layout));
  *bytes = layout.total_bytes;
  return {};
}

Status linear_cross_entropy_forward(const LinearCrossEntropyArgs& args,
                                    const CrossEntropyShard& shard,
                                    const LinearCrossEntropyOptions& options, ncclComm_t comm,
                                    const Exec& exec) {
  return run_linear(/*gradients=*/false, args, shard, options, comm, exec);
}

Status linear_cross_entropy_forward_backward(const LinearCrossEntropyArgs& args,
                                             const CrossEntropyShard& shard,
                                             const LinearCrossEntropyOptions& options,
                                             ncclComm_t comm, const Exec& exec) {
  return run_linear(/*gradients=*/true, args, shard, options, comm, exec);
}

}  // namespace actloss::nccl
