// actloss::nccl (include/actloss/nccl.h): the vocabulary-parallel cross-entropy's two phases
// around one in-place ncclAllGather. Its own library, so that actloss never needs NCCL.
//
// The workspace holds [ranks x rows] statistics, this rank's slot written by phase 1 and every
// slot filled by the gather, then phase 2's scratch after a 16-byte boundary:
//
//   | rank 0's rows | rank 1's rows | ... | pad to 16 | cross_entropy_shard_finish's scratch |
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

Status layout_of(const CrossEntropyArgs& args, const CrossEntropyOptions& options,
                 std::int64_t ranks, const Exec& exec, Layout* layout) {
  std::size_t finish_bytes = 0;
  ACTLOSS_TRY(cross_entropy_shard_workspace_size(args, options, exec, &finish_bytes));
  const auto rows = static_cast<std::size_t>(args.rows);
  std::size_t gathered = 0;
  // Bounded by INT64_MAX, as every size the library hands to the runtime.
  if (__builtin_mul_overflow(rows, kStatsBytes, &layout->slot_bytes) ||
      __builtin_mul_overflow(layout->slot_bytes, static_cast<std::size_t>(ranks), &gathered) ||
      gathered > static_cast<std::size_t>(INT64_MAX) - 15 - finish_bytes) {
    return host::invalid("rows", ranks, " ranks x ", args.rows,
                         " rows of statistics overflow the workspace's size");
  }
  layout->finish_offset = (gathered + 15) / 16 * 16;
  layout->total_bytes = rows == 0 ? 0 : layout->finish_offset + finish_bytes;
  return {};
}

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

}  // namespace

Status cross_entropy_workspace_size(const CrossEntropyArgs& args,
                                    const CrossEntropyOptions& options, std::int64_t ranks,
                                    const Exec& exec, std::size_t* bytes) {
  ACTLOSS_TRY(check_device(exec));
  if (bytes == nullptr) return host::invalid("bytes", "must not be null (where the size is written)");
  if (ranks < 1) return host::invalid("ranks", "must be >= 1 (got ", ranks, ")");
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
  // A vocabulary that is no shard's at all is phase 1's to refuse, by the shard's own names.
  if (args.rows > 0 && shard.total_classes > 0 && rank.ranks > shard.total_classes) {
    return host::invalid("comm", rank.ranks, " ranks, but shard.total_classes = ",
                         shard.total_classes, ": every rank's shard holds a class at least");
  }
  Layout layout;
  ACTLOSS_TRY(layout_of(args, options, rank.ranks, exec, &layout));
  host::Region workspace;
  ACTLOSS_TRY(host::check_workspace(exec, {}, workspace));
  if (exec.workspace.bytes < layout.total_bytes) {
    return host::invalid("exec.workspace",
                         exec.workspace.data == nullptr ? "not given" : "too small", " (",
                         exec.workspace.bytes, " bytes): this call gathers every rank's "
                         "statistics there and needs ", layout.total_bytes,
                         " bytes (nccl::cross_entropy_workspace_size with ", rank.ranks,
                         " ranks); it never allocates");
  }
  auto* gathered = static_cast<CrossEntropyShardStats*>(exec.workspace.data);

  // Phase 1 into this rank's slot: the gather below is then in place.
  Exec stats_exec = exec;
  stats_exec.workspace = {};
  CrossEntropyShardStats* slot =
      args.rows > 0 ? gathered + static_cast<std::size_t>(rank.rank) *
                                     static_cast<std::size_t>(args.rows)
                    : nullptr;
  ACTLOSS_TRY(cross_entropy_shard_stats(args, shard, options, slot, stats_exec));

  if (args.rows > 0) {
    if (const ncclResult_t r = ncclAllGather(slot, gathered, layout.slot_bytes, ncclUint8, comm,
                                             exec.stream);
        r != ncclSuccess)
      return nccl_failure("ncclAllGather(statistics, exec.workspace, rows x 20 bytes)", r);
  }

  Exec finish_exec = exec;
  finish_exec.workspace = {};
  if (exec.workspace.bytes > layout.finish_offset) {
    finish_exec.workspace = {static_cast<char*>(exec.workspace.data) + layout.finish_offset,
                             exec.workspace.bytes - layout.finish_offset};
  }
  return cross_entropy_shard_finish(args, shard, options, args.rows > 0 ? gathered : nullptr,
                                    rank.ranks, finish_exec);
}

}  // namespace actloss::nccl
