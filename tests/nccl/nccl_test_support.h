// What the tests of the library's NCCL calls share (cross_entropy_test, linear_cross_entropy_test
// here): whether the simulator runs in threads mode, the devices there are, a skip for a rank
// count past them; the ranks as threads, each with its communicator and stream; a one-rank
// communicator for the refusals, and the checks of a refusal and of a workspace query.
#pragma once

#include <gtest/gtest.h>

#include <actloss/nccl.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tests/cuda/support.h"
#include "tests/sim/rank_threads.h"

#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>
#endif

namespace actloss::test {

// ThreadSanitizer's simulator build: one OS thread per CUDA thread (the tests keep their
// problems small there).
inline bool threads_mode() {
#if defined(ACTLOSS_SIM)
  return simcuda::sim::threads_mode();
#else
  return false;
#endif
}

inline int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  (void)cudaGetLastError();
  return count;
}

#define ACTLOSS_REQUIRE_DEVICES(ranks)                                                       \
  do {                                                                                       \
    ACTLOSS_REQUIRE_CUDA_DEVICE();                                                           \
    if (::actloss::test::device_count() < (ranks))                                           \
      GTEST_SKIP() << (ranks) << " ranks need " << (ranks) << " devices (one rank per "      \
                   << "device); this machine has " << ::actloss::test::device_count();       \
  } while (0)

// One thread per rank, each with its rank's device current: the rank's communicator
// (ncclCommInitRank on its thread, all from one unique id) and a stream of its own, then
// body(rank, comm, exec, outcome) with `exec` Device::cuda on that stream; then the stream
// synchronized and the communicator destroyed. A rank whose communicator is not made gets that
// failure as its outcome's status, and no body. Every rank's outcome (a type with a `status`).
template <class Outcome>
std::vector<Outcome> on_rank_communicators(
    int ranks, const std::function<void(int, ncclComm_t, const Exec&, Outcome&)>& body) {
  ncclUniqueId id;
  EXPECT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  std::vector<Outcome> outcomes(static_cast<std::size_t>(ranks));
  simtest::on_rank_threads(ranks, [&](int rank) {
    Outcome& out = outcomes[static_cast<std::size_t>(rank)];
    ncclComm_t comm = nullptr;
    if (const ncclResult_t r = ncclCommInitRank(&comm, ranks, id, rank); r != ncclSuccess) {
      out.status = Status(StatusCode::internal, "",
                          std::string("ncclCommInitRank: ") + ncclGetErrorString(r));
      return;
    }
    TestStream stream;
    Exec exec;
    exec.device = Device::cuda;
    exec.stream = stream.get();
    body(rank, comm, exec, out);
    EXPECT_EQ(cudaStreamSynchronize(stream.get()), cudaSuccess);
    EXPECT_EQ(ncclCommDestroy(comm), ncclSuccess);
  });
  return outcomes;
}

// A one-rank communicator on device 0 (no peer to wait for: it runs on one GPU too), a stream,
// and an Exec of Device::cuda on it: where the refusals' tests break a valid call.
struct OneRankComm {
  OneRankComm() {
    EXPECT_EQ(ncclCommInitAll(&comm, 1, nullptr), ncclSuccess);
    exec.device = Device::cuda;
    exec.stream = stream.get();
  }
  ~OneRankComm() { EXPECT_EQ(ncclCommDestroy(comm), ncclSuccess); }
  OneRankComm(const OneRankComm&) = delete;
  OneRankComm& operator=(const OneRankComm&) = delete;

  // `buffer` made exec.workspace: `bytes` of it, and 64 more behind, every byte 0x5A.
  void use_workspace(DeviceBuffer& buffer, std::size_t bytes) {
    buffer = DeviceBuffer(bytes + 64);
    buffer.fill_bytes(0x5A);
    exec.workspace = {buffer.get(), bytes};
  }

  TestStream stream;
  ncclComm_t comm = nullptr;
  Exec exec;
};

// One case of a refusals' test: the argument the refusal names (or `also`, another name it may
// give), whether it is refused before anything is queued (the workspace left as it was), and
// how it breaks the valid call that `Setup` holds.
template <class Setup>
struct Refusal {
  const char* argument;
  bool workspace_untouched;
  void (*breaks)(Setup&);
  const char* also = nullptr;
};

// invalid_argument, naming the refusal's argument (or its other name), the message starting
// with the name.
template <class Setup>
void expect_refusal(const Status& status, const Refusal<Setup>& refusal) {
  EXPECT_EQ(status.code(), StatusCode::invalid_argument) << status.message();
  const bool named = status.argument() == refusal.argument ||
                     (refusal.also != nullptr && status.argument() == refusal.also);
  EXPECT_TRUE(named) << "named " << status.argument() << ": " << status.message();
  EXPECT_EQ(status.message().rfind(status.argument(), 0), 0u) << status.message();
}

// A refusal: invalid_argument, naming `argument`.
inline void expect_refused(const Status& status, const char* argument) {
  EXPECT_EQ(status.code(), StatusCode::invalid_argument) << status.message();
  EXPECT_EQ(status.argument(), std::string(argument)) << status.message();
}

// The workspace query of an NCCL call (`query`: nccl::*_workspace_size) on device 0, for valid
// arguments with 10 rows (`rows`: the member that counts rows or tokens) and the default
// options: refused without ranks, without a place for the answer and on a device not CUDA's;
// with 3 ranks, bytes that `sizes`(bytes, gathered, own) accepts, gathered being the 3 x 10
// statistics and own what `own_query` (the one-process call's query) asks for; 0 without rows.
template <class Args, class Options>
void check_workspace_query(
    Status (*query)(const Args&, const Options&, std::int64_t, const Exec&, std::size_t*),
    Status (*own_query)(const Args&, const Options&, const Exec&, std::size_t*), Args args,
    std::int64_t Args::*rows,
    const std::function<void(std::size_t bytes, std::size_t gathered, std::size_t own)>& sizes) {
  ACTLOSS_REQUIRE_DEVICES(1);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  args.*rows = 10;
  const Options options;
  const Exec exec = cuda_exec();
  std::size_t bytes = 0;
  expect_refused(query(args, options, 0, exec, &bytes), "ranks");
  expect_refused(query(args, options, 2, exec, nullptr), "bytes");
  const Exec cpu;
  expect_refused(query(args, options, 2, cpu, &bytes), "exec.device");
  ASSERT_TRUE(query(args, options, 3, exec, &bytes).ok());
  std::size_t own = 0;
  ASSERT_TRUE(own_query(args, options, exec, &own).ok());
  sizes(bytes, 3 * 10 * sizeof(CrossEntropyShardStats), own);
  args.*rows = 0;
  ASSERT_TRUE(query(args, options, 3, exec, &bytes).ok());
  EXPECT_EQ(bytes, 0u);
}

}  // namespace actloss::test
