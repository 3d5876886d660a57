// The NCCL stand-in (sim/src/nccl.cpp): all-gather and all-reduce with 2, 4 and 8 ranks, as
// threads (ncclCommInitRank) and from one thread in a group (ncclCommInitAll, and
// ncclCommInitRank inside a group); every reduction and type against a host loop in rank order;
// captured into a CUDA graph behind a kernel and replayed; and the errors: arguments, mismatched
// calls across ranks, and a rank that never comes (a timeout, not a hang).
#include <nccl.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <simcuda/sim_control.h>

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "rank_threads.h"
#include "sim_test_kernels.h"
#include "test_util.h"

namespace simtest {
namespace {

#define NCCL_OK(expr) ASSERT_EQ((expr), ncclSuccess) << #expr << ": " << ncclGetLastError(nullptr)

constexpr int kRankCounts[] = {2, 4, 8};

// A shorter wait for ranks that never come, for the tests of that failure; restored after.
class NcclTimeout {
 public:
  explicit NcclTimeout(double seconds) : saved_(simcuda::sim::nccl_timeout_seconds()) {
    simcuda::sim::set_nccl_timeout_seconds(seconds);
  }
  ~NcclTimeout() { simcuda::sim::set_nccl_timeout_seconds(saved_); }
  NcclTimeout(const NcclTimeout&) = delete;
  NcclTimeout& operator=(const NcclTimeout&) = delete;

 private:
  double saved_;
};

float send_value(int rank, std::size_t i) {
  return static_cast<float>(rank) * 100.0f + static_cast<float>(i) * 0.37f - 3.0f;
}

// Every rank's buffers on its own device: sendbuff, recvbuff [ranks x count] for the gather,
// an in-place gather buffer, and the all-reduce's sum, in place.
struct RankBuffers {
  RankBuffers(int rank, int ranks, std::size_t count)
      : send(values(rank, count)),
        gathered(count * static_cast<std::size_t>(ranks)),
        in_place(count * static_cast<std::size_t>(ranks)),
        reduced(values(rank, count)) {
    EXPECT_EQ(cudaMemcpy(in_place.get() + count * static_cast<std::size_t>(rank), send.get(),
                         count * sizeof(float), cudaMemcpyDeviceToDevice),
              cudaSuccess);
  }
  static std::vector<float> values(int rank, std::size_t count) {
    std::vector<float> v(count);
    for (std::size_t i = 0; i < count; ++i) v[i] = send_value(rank, i);
    return v;
  }
  DeviceBuffer<float> send, gathered, in_place, reduced;
};

// What every rank must hold after the three collectives of post_collectives().
void expect_results(const std::vector<std::unique_ptr<RankBuffers>>& buffers, std::size_t count) {
  const int ranks = static_cast<int>(buffers.size());
  std::vector<float> gathered, sum(count);
  for (int r = 0; r < ranks; ++r) {
    const std::vector<float> v = RankBuffers::values(r, count);
    gathered.insert(gathered.end(), v.begin(), v.end());
  }
  for (std::size_t i = 0; i < count; ++i) {
    float acc = send_value(0, i);  // in rank order, in float, as the stand-in adds
    for (int r = 1; r < ranks; ++r) acc += send_value(r, i);
    sum[i] = acc;
  }
  const std::vector<float> first_sum = buffers[0]->reduced.to_host();
  for (int r = 0; r < ranks; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_EQ(buffers[static_cast<std::size_t>(r)]->gathered.to_host(), gathered);
    EXPECT_EQ(buffers[static_cast<std::size_t>(r)]->in_place.to_host(), gathered);
    const std::vector<float> got = buffers[static_cast<std::size_t>(r)]->reduced.to_host();
    EXPECT_EQ(std::memcmp(got.data(), first_sum.data(), count * sizeof(float)), 0)
        << "the all-reduce differs between ranks";
    for (std::size_t i = 0; i < count; ++i) ASSERT_EQ(got[i], sum[i]) << "element " << i;
  }
}

ncclResult_t post_collectives(RankBuffers& b, int rank, std::size_t count, ncclComm_t comm,
                              cudaStream_t stream) {
  ncclResult_t r = ncclAllGather(b.send.get(), b.gathered.get(), count, ncclFloat32, comm, stream);
  if (r != ncclSuccess) return r;
  r = ncclAllGather(b.in_place.get() + count * static_cast<std::size_t>(rank), b.in_place.get(),
                    count, ncclFloat32, comm, stream);
  if (r != ncclSuccess) return r;
  return ncclAllReduce(b.reduced.get(), b.reduced.get(), count, ncclFloat32, ncclSum, comm,
                       stream);
}

TEST(Nccl, RanksAsThreads) {
  for (const int ranks : kRankCounts) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    const std::size_t count = 37;
    ncclUniqueId id;
    NCCL_OK(ncclGetUniqueId(&id));
    std::vector<std::unique_ptr<RankBuffers>> buffers(static_cast<std::size_t>(ranks));
    std::vector<ncclResult_t> results(static_cast<std::size_t>(ranks), ncclInternalError);
    std::vector<int> seen_count(buffers.size()), seen_rank(buffers.size()),
        seen_device(buffers.size());
    on_rank_threads(ranks, [&](int rank) {
      const auto slot = static_cast<std::size_t>(rank);
      ncclComm_t comm = nullptr;
      results[slot] = ncclCommInitRank(&comm, ranks, id, rank);
      if (results[slot] != ncclSuccess) return;
      ncclCommCount(comm, &seen_count[slot]);
      ncclCommUserRank(comm, &seen_rank[slot]);
      ncclCommCuDevice(comm, &seen_device[slot]);
      cudaStream_t stream = nullptr;
      EXPECT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
      buffers[slot] = std::make_unique<RankBuffers>(rank, ranks, count);
      results[slot] = post_collectives(*buffers[slot], rank, count, comm, stream);
      EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
      EXPECT_EQ(ncclCommDestroy(comm), ncclSuccess);
    });
    for (int r = 0; r < ranks; ++r) {
      const auto slot = static_cast<std::size_t>(r);
      ASSERT_EQ(results[slot], ncclSuccess) << "rank " << r;
      EXPECT_EQ(seen_count[slot], ranks);
      EXPECT_EQ(seen_rank[slot], r);
      EXPECT_EQ(seen_device[slot], r);
    }
    expect_results(buffers, count);
  }
}

// NCCL's way for one thread to drive several devices: every call of every rank inside one group.
TEST(Nccl, OneThreadDrivesEveryRankInAGroup) {
  for (const int ranks : kRankCounts) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    const std::size_t count = 11;
    std::vector<ncclComm_t> comms(static_cast<std::size_t>(ranks));
    if (ranks == 4) {
      // ncclCommInitRank for every rank from this thread: grouped, or it would wait for the
      // others.
      ncclUniqueId id;
      NCCL_OK(ncclGetUniqueId(&id));
      NCCL_OK(ncclGroupStart());
      for (int r = 0; r < ranks; ++r) {
        CUDA_OK(cudaSetDevice(r));
        NCCL_OK(ncclCommInitRank(&comms[static_cast<std::size_t>(r)], ranks, id, r));
      }
      NCCL_OK(ncclGroupEnd());
    } else {
      NCCL_OK(ncclCommInitAll(comms.data(), ranks, nullptr));
    }
    std::vector<std::unique_ptr<RankBuffers>> buffers;
    std::vector<cudaStream_t> streams(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r) {
      CUDA_OK(cudaSetDevice(r));
      CUDA_OK(cudaStreamCreate(&streams[static_cast<std::size_t>(r)]));
      buffers.push_back(std::make_unique<RankBuffers>(r, ranks, count));
    }
    NCCL_OK(ncclGroupStart());
    for (int r = 0; r < ranks; ++r) {
      const auto slot = static_cast<std::size_t>(r);
      NCCL_OK(post_collectives(*buffers[slot], r, count, comms[slot], streams[slot]));
    }
    NCCL_OK(ncclGroupEnd());
    expect_results(buffers, count);
    for (int r = 0; r < ranks; ++r) {
      CUDA_OK(cudaSetDevice(r));
      CUDA_OK(cudaStreamDestroy(streams[static_cast<std::size_t>(r)]));
      NCCL_OK(ncclCommDestroy(comms[static_cast<std::size_t>(r)]));
    }
    CUDA_OK(cudaSetDevice(0));
  }
}

// Every built-in reduction over the modelled types, 3 ranks from one thread, against a host loop
// in rank order (float accumulation for half and bfloat16, wrapping integers).
template <class T, class Acc>
void check_all_reduce(ncclDataType_t type, const std::vector<std::vector<T>>& inputs,
                      const std::function<Acc(T)>& widen, const std::function<T(Acc)>& narrow) {
  const int ranks = static_cast<int>(inputs.size());
  const std::size_t count = inputs[0].size();
  std::vector<ncclComm_t> comms(static_cast<std::size_t>(ranks));
  NCCL_OK(ncclCommInitAll(comms.data(), ranks, nullptr));
  for (const ncclRedOp_t op : {ncclSum, ncclProd, ncclMax, ncclMin, ncclAvg}) {
    SCOPED_TRACE("op " + std::to_string(static_cast<int>(op)));
    std::vector<std::unique_ptr<DeviceBuffer<T>>> buffers;
    for (int r = 0; r < ranks; ++r) {
      CUDA_OK(cudaSetDevice(r));
      buffers.push_back(std::make_unique<DeviceBuffer<T>>(inputs[static_cast<std::size_t>(r)]));
    }
    NCCL_OK(ncclGroupStart());
    for (int r = 0; r < ranks; ++r) {
      T* data = buffers[static_cast<std::size_t>(r)]->get();
      NCCL_OK(ncclAllReduce(data, data, count, type, op, comms[static_cast<std::size_t>(r)],
                            nullptr));
    }
    NCCL_OK(ncclGroupEnd());
    for (std::size_t i = 0; i < count; ++i) {
      Acc acc = widen(inputs[0][i]);
      for (int r = 1; r < ranks; ++r) {
        const Acc x = widen(inputs[static_cast<std::size_t>(r)][i]);
        switch (op) {
          case ncclProd: acc = static_cast<Acc>(acc * x); break;
          case ncclMax: acc = acc < x ? x : acc; break;
          case ncclMin: acc = x < acc ? x : acc; break;
          default: acc = static_cast<Acc>(acc + x); break;
        }
      }
      if (op == ncclAvg) acc = static_cast<Acc>(acc / static_cast<Acc>(ranks));
      const T want = narrow(acc);
      for (int r = 0; r < ranks; ++r) {
        const std::vector<T> got = buffers[static_cast<std::size_t>(r)]->to_host();
        ASSERT_EQ(std::memcmp(&got[i], &want, sizeof(T)), 0) << "rank " << r << " element " << i;
      }
    }
  }
  for (ncclComm_t comm : comms) NCCL_OK(ncclCommDestroy(comm));
  CUDA_OK(cudaSetDevice(0));
}

TEST(Nccl, AllReduceEveryOpAndType) {
  const std::vector<std::vector<float>> f = {{1.5f, -2.0f, 3.25f, 1e-3f},
                                             {0.5f, 4.0f, -1.0f, 7.0f},
                                             {-3.0f, 0.25f, 2.0f, 1e3f}};
  {
    SCOPED_TRACE("float");
    check_all_reduce<float, float>(ncclFloat32, f, [](float x) { return x; },
                                   [](float x) { return x; });
  }
  {
    SCOPED_TRACE("double");
    std::vector<std::vector<double>> d(3);
    for (std::size_t r = 0; r < 3; ++r) d[r].assign(f[r].begin(), f[r].end());
    check_all_reduce<double, double>(ncclFloat64, d, [](double x) { return x; },
                                     [](double x) { return x; });
  }
  {
    SCOPED_TRACE("int32");
    const std::vector<std::vector<std::int32_t>> i = {{1, -7, 100, 3}, {5, 2, -9, 4}, {-2, 8, 6, 5}};
    check_all_reduce<std::int32_t, std::int32_t>(
        ncclInt32, i, [](std::int32_t x) { return x; }, [](std::int32_t x) { return x; });
  }
  {
    SCOPED_TRACE("uint8, wrapping");
    const std::vector<std::vector<std::uint8_t>> u = {{200, 3, 17, 255}, {100, 5, 2, 1}, {7, 9, 30, 2}};
    check_all_reduce<std::uint8_t, std::uint8_t>(
        ncclUint8, u, [](std::uint8_t x) { return x; }, [](std::uint8_t x) { return x; });
  }
  {
    SCOPED_TRACE("half");
    std::vector<std::vector<__half>> h(3);
    for (std::size_t r = 0; r < 3; ++r)
      for (float x : f[r]) h[r].push_back(__float2half_rn(x));
    check_all_reduce<__half, float>(ncclFloat16, h, [](__half x) { return __half2float(x); },
                                    [](float x) { return __float2half_rn(x); });
  }
  {
    SCOPED_TRACE("bfloat16");
    std::vector<std::vector<__nv_bfloat16>> b(3);
    for (std::size_t r = 0; r < 3; ++r)
      for (float x : f[r]) b[r].push_back(__float2bfloat16_rn(x));
    check_all_reduce<__nv_bfloat16, float>(
        ncclBfloat16, b, [](__nv_bfloat16 x) { return __bfloat162float(x); },
        [](float x) { return __float2bfloat16_rn(x); });
  }
}

// Captured behind a kernel that writes the data: nothing moves while capturing; each replay
// (from each rank's own thread) runs the kernel and the collectives again, on new inputs.
TEST(Nccl, CollectivesAreCapturedIntoGraphsAndReplayed) {
  const int ranks = 4;
  const int n = 512;  // two blocks of tree_reduce: two sums per rank
  ncclUniqueId id;
  NCCL_OK(ncclGetUniqueId(&id));
  std::vector<std::vector<float>> after_capture(ranks), replays[2];
  for (auto& r : replays) r.resize(ranks);
  std::vector<cudaError_t> launches(2 * ranks, cudaErrorUnknown);
  // The simulator treats every capture as global: no rank may allocate or copy synchronously
  // while another captures, hence the barriers around the captures.
  std::barrier sync(ranks);
  on_rank_threads(ranks, [&](int rank) {
    ncclComm_t comm = nullptr;
    ASSERT_EQ(ncclCommInitRank(&comm, ranks, id, rank), ncclSuccess);
    cudaStream_t stream = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
    DeviceBuffer<float> input(n), sums(2), gathered(2 * ranks);
    std::vector<float> values(n, static_cast<float>(rank + 1));
    ASSERT_EQ(cudaMemcpy(input.get(), values.data(), n * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
    sync.arrive_and_wait();
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    EXPECT_EQ(tree_reduce(input.get(), sums.get(), n, false, stream), cudaSuccess);
    EXPECT_EQ(ncclAllGather(sums.get(), gathered.get(), 2, ncclFloat32, comm, stream), ncclSuccess);
    EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    sync.arrive_and_wait();
    ASSERT_NE(graph, nullptr);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    after_capture[static_cast<std::size_t>(rank)] = gathered.to_host();
    for (int replay = 0; replay < 2; ++replay) {
      if (replay == 1) {
        for (float& v : values) v *= -2.0f;
        ASSERT_EQ(cudaMemcpy(input.get(), values.data(), n * sizeof(float), cudaMemcpyHostToDevice),
                  cudaSuccess);
      }
      launches[static_cast<std::size_t>(2 * rank + replay)] = cudaGraphLaunch(exec, stream);
      EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      replays[replay][static_cast<std::size_t>(rank)] = gathered.to_host();
    }
    EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
    EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
    EXPECT_EQ(ncclCommDestroy(comm), ncclSuccess);
  });
  for (cudaError_t e : launches) EXPECT_EQ(e, cudaSuccess);
  for (int rank = 0; rank < ranks; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    EXPECT_EQ(after_capture[static_cast<std::size_t>(rank)], std::vector<float>(2 * ranks, 0.0f))
        << "data moved during capture";
    for (int replay = 0; replay < 2; ++replay) {
      const float scale = replay == 0 ? 1.0f : -2.0f;
      std::vector<float> want;
      for (int r = 0; r < ranks; ++r) {
        const float block_sum = 256.0f * static_cast<float>(r + 1) * scale;
        want.push_back(block_sum);
        want.push_back(block_sum);
      }
      EXPECT_EQ(replays[replay][static_cast<std::size_t>(rank)], want) << "replay " << replay;
    }
  }
}

TEST(Nccl, ArgumentErrors) {
  const int ranks = 2;
  ncclComm_t comms[ranks] = {};
  NCCL_OK(ncclCommInitAll(comms, ranks, nullptr));
  CUDA_OK(cudaSetDevice(0));
  DeviceBuffer<float> send(4), recv(8), small(7);
  CUDA_OK(cudaSetDevice(1));
  DeviceBuffer<float> other_device(8);
  cudaStream_t other_stream = nullptr;
  CUDA_OK(cudaStreamCreate(&other_stream));
  CUDA_OK(cudaSetDevice(0));
  std::vector<float> host(8);
  struct Case {
    const char* what;
    ncclResult_t want;
    std::function<ncclResult_t()> call;
  };
  ncclComm_t c0 = comms[0];
  const Case cases[] = {
      {"null comm", ncclInvalidArgument,
       [&] { return ncclAllGather(send.get(), recv.get(), 4, ncclFloat32, nullptr, nullptr); }},
      {"not a communicator", ncclInvalidArgument,
       [&] {
         return ncclAllGather(send.get(), recv.get(), 4, ncclFloat32,
                              reinterpret_cast<ncclComm_t>(host.data()), nullptr);
       }},
      {"null sendbuff", ncclInvalidArgument,
       [&] { return ncclAllGather(nullptr, recv.get(), 4, ncclFloat32, c0, nullptr); }},
      {"recvbuff too small for ranks x count", ncclInvalidArgument,
       [&] { return ncclAllGather(send.get(), small.get(), 4, ncclFloat32, c0, nullptr); }},
      {"count past the allocation", ncclInvalidArgument,
       [&] { return ncclAllReduce(send.get(), send.get(), 5, ncclFloat32, ncclSum, c0, nullptr); }},
      {"host memory", ncclInvalidArgument,
       [&] { return ncclAllGather(host.data(), recv.get(), 4, ncclFloat32, c0, nullptr); }},
      {"memory of another device", ncclInvalidArgument,
       [&] { return ncclAllGather(send.get(), other_device.get(), 4, ncclFloat32, c0, nullptr); }},
      {"partial overlap", ncclInvalidArgument,
       [&] { return ncclAllGather(recv.get() + 1, recv.get(), 2, ncclFloat32, c0, nullptr); }},
      {"unknown datatype", ncclInvalidArgument,
       [&] {
         return ncclAllGather(send.get(), recv.get(), 4, ncclNumTypes, c0, nullptr);
       }},
      {"unknown op", ncclInvalidArgument,
       [&] {
         return ncclAllReduce(send.get(), send.get(), 4, ncclFloat32,
                              static_cast<ncclRedOp_t>(17), c0, nullptr);
       }},
      {"a stream of another device", ncclUnhandledCudaError,
       [&] { return ncclAllGather(send.get(), recv.get(), 4, ncclFloat32, c0, other_stream); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(c.call(), c.want);
    EXPECT_NE(std::string(ncclGetLastError(c0)), "") << "no message";
  }
  // Empty collectives are valid and move nothing, with null buffers too.
  EXPECT_EQ(ncclAllGather(nullptr, nullptr, 0, ncclFloat32, c0, nullptr), ncclSuccess);

  EXPECT_EQ(ncclGroupEnd(), ncclInvalidUsage) << "no group is open";
  // A bad call fails its group.
  NCCL_OK(ncclGroupStart());
  EXPECT_EQ(ncclAllGather(nullptr, recv.get(), 4, ncclFloat32, c0, nullptr), ncclInvalidArgument);
  EXPECT_EQ(ncclGroupEnd(), ncclInvalidArgument);

  int count = 0;
  EXPECT_EQ(ncclCommCount(nullptr, &count), ncclInvalidArgument);
  EXPECT_EQ(ncclCommInitAll(comms, 3, std::vector<int>{0, 2, 0}.data()), ncclInvalidUsage)
      << "two ranks on one device";
  EXPECT_EQ(ncclCommInitAll(comms, 1, std::vector<int>{99}.data()), ncclInvalidArgument);
  ncclUniqueId bogus{};
  ncclComm_t comm = nullptr;
  EXPECT_EQ(ncclCommInitRank(&comm, 2, bogus, 0), ncclInvalidArgument) << "not from GetUniqueId";
  ncclUniqueId id;
  NCCL_OK(ncclGetUniqueId(&id));
  EXPECT_EQ(ncclCommInitRank(&comm, 2, id, 2), ncclInvalidArgument) << "rank past nranks";
  EXPECT_STREQ(ncclGetErrorString(ncclInvalidUsage), "invalid usage");

  CUDA_OK(cudaStreamDestroy(other_stream));
  for (ncclComm_t c : comms) NCCL_OK(ncclCommDestroy(c));
  EXPECT_EQ(ncclAllGather(send.get(), recv.get(), 4, ncclFloat32, c0, nullptr), ncclInvalidArgument)
      << "a destroyed communicator";
}

// Calls that pass their own checks but do not match across ranks fail on every rank.
TEST(Nccl, MismatchedCallsFailOnEveryRank) {
  const int ranks = 2;
  ncclComm_t comms[ranks] = {};
  NCCL_OK(ncclCommInitAll(comms, ranks, nullptr));
  std::vector<std::unique_ptr<DeviceBuffer<float>>> buffers;
  for (int r = 0; r < ranks; ++r) {
    CUDA_OK(cudaSetDevice(r));
    buffers.push_back(std::make_unique<DeviceBuffer<float>>(16));
  }
  CUDA_OK(cudaSetDevice(0));
  const auto grouped = [&](const std::function<ncclResult_t(int)>& call) {
    EXPECT_EQ(ncclGroupStart(), ncclSuccess);
    for (int r = 0; r < ranks; ++r) EXPECT_EQ(call(r), ncclSuccess);
    return ncclGroupEnd();
  };
  EXPECT_EQ(grouped([&](int r) {
              float* p = buffers[static_cast<std::size_t>(r)]->get();
              return ncclAllReduce(p, p, r == 0 ? 4 : 5, ncclFloat32, ncclSum, comms[r], nullptr);
            }),
            ncclInvalidUsage);
  EXPECT_NE(std::string(ncclGetLastError(nullptr)).find("does not match"), std::string::npos)
      << ncclGetLastError(nullptr);
  EXPECT_EQ(grouped([&](int r) {
              float* p = buffers[static_cast<std::size_t>(r)]->get();
              return ncclAllReduce(p, p, 4, ncclFloat32, r == 0 ? ncclSum : ncclMax, comms[r],
                                   nullptr);
            }),
            ncclInvalidUsage);
  EXPECT_EQ(grouped([&](int r) {
              float* p = buffers[static_cast<std::size_t>(r)]->get();
              return r == 0 ? ncclAllReduce(p, p, 4, ncclFloat32, ncclSum, comms[r], nullptr)
                            : ncclAllGather(p + 4 * r, p, 4, ncclFloat32, comms[r], nullptr);
            }),
            ncclInvalidUsage);
  // The communicator goes on: the next collective matches and works.
  EXPECT_EQ(grouped([&](int r) {
              float* p = buffers[static_cast<std::size_t>(r)]->get();
              return ncclAllReduce(p, p, 16, ncclFloat32, ncclSum, comms[r], nullptr);
            }),
            ncclSuccess);
  for (ncclComm_t c : comms) NCCL_OK(ncclCommDestroy(c));
}

// A rank that never posts its call, or never joins: the others get an error, not a deadlock.
TEST(Nccl, MissingRanksTimeOutInsteadOfHanging) {
  const NcclTimeout timeout(0.2);
  ncclComm_t comms[2] = {};
  NCCL_OK(ncclCommInitAll(comms, 2, nullptr));
  DeviceBuffer<float> data(4);
  // One thread, no group: rank 0's call waits for rank 1, whose call would come next.
  EXPECT_EQ(ncclAllReduce(data.get(), data.get(), 4, ncclFloat32, ncclSum, comms[0], nullptr),
            ncclInvalidUsage);
  EXPECT_NE(std::string(ncclGetLastError(nullptr)).find("timed out"), std::string::npos)
      << ncclGetLastError(nullptr);
  for (ncclComm_t c : comms) NCCL_OK(ncclCommDestroy(c));

  ncclUniqueId id;
  NCCL_OK(ncclGetUniqueId(&id));
  ncclComm_t alone = nullptr;
  EXPECT_EQ(ncclCommInitRank(&alone, 3, id, 1), ncclInvalidUsage) << "ranks 0 and 2 never join";
  EXPECT_EQ(alone, nullptr);

  // Two ranks as threads on one device: refused for both, as NCCL does.
  NCCL_OK(ncclGetUniqueId(&id));
  ncclResult_t results[2] = {ncclSuccess, ncclSuccess};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      ncclComm_t comm = nullptr;
      results[r] = ncclCommInitRank(&comm, 2, id, r);  // both on device 0
      if (comm != nullptr) (void)ncclCommDestroy(comm);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(results[0], ncclInvalidUsage);
  EXPECT_EQ(results[1], ncclInvalidUsage);
}

}  // namespace
}  // namespace simtest
