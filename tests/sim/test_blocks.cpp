// Barriers, shared memory, grids and launch configurations.
#include <chrono>
#include <cstdio>
#include <numeric>
#include <optional>

#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>
#endif

#include "sim_test_kernels.h"
#include "test_util.h"

namespace simtest {
namespace {

TEST(Barriers, EarlyExitThreadsCountAsArrived) {
  for (const auto& [threads, live] : {std::pair{256, 200}, std::pair{64, 1}, std::pair{1024, 1000},
                                     std::pair{33, 33}}) {
    DeviceBuffer<int> out(static_cast<std::size_t>(threads));
    CUDA_OK(early_exit_barriers(out.get(), threads, live));
    const auto h = out.to_host();
    for (int t = 0; t < live; ++t) {
      ASSERT_EQ(h[t], (t + 1) % live + (t + 2) % live) << "thread " << t << " of " << live;
    }
  }
}

// Whether this device runs launches in clusters (sm_90 on a GPU; fiber mode in the simulator).
bool cluster_launch_supported() {
  int device = 0, supported = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&supported, cudaDevAttrClusterLaunch, device) != cudaSuccess)
    return false;
  return supported != 0;
}

TEST(Clusters, BlocksReadEachOthersSharedMemory) {
  if (!cluster_launch_supported()) GTEST_SKIP() << "no launches in clusters on this device";
  struct Case {
    int blocks, cluster, threads, live, rounds;
  };
  for (const Case c : {Case{2, 2, 64, 64, 1}, Case{12, 4, 96, 96, 3}, Case{16, 8, 256, 200, 2},
                       Case{6, 3, 33, 1, 4}}) {
    DeviceBuffer<int> out(static_cast<std::size_t>(c.blocks) * c.threads * 3);
    CUDA_OK(cluster_exchange(c.blocks, c.cluster, c.threads, c.live, c.rounds, out.get()));
    const auto h = out.to_host();
    for (int b = 0; b < c.blocks; ++b) {
      const int first = b / c.cluster * c.cluster;
      for (int t = 0; t < c.threads; ++t) {
        const int* record = &h[3 * (static_cast<std::size_t>(b) * c.threads + t)];
        ASSERT_EQ(record[1], b % c.cluster) << "block " << b << " thread " << t;
        ASSERT_EQ(record[2], c.cluster) << "block " << b << " thread " << t;
        if (t >= c.live) continue;
        int want = 0;
        for (int round = 0; round < c.rounds; ++round)
          for (int other = first; other < first + c.cluster; ++other)
            want += other * 1000 + t + round;
        ASSERT_EQ(record[0], want) << "block " << b << " thread " << t;
      }
    }
  }
}

TEST(Clusters, GridThatIsNotWholeClustersIsRefused) {
  if (!cluster_launch_supported()) GTEST_SKIP() << "no launches in clusters on this device";
  DeviceBuffer<int> out(3 * 3 * 32);
  EXPECT_NE(cluster_exchange(3, 2, 32, 32, 1, out.get()), cudaSuccess);
  (void)cudaGetLastError();
}

#if defined(ACTLOSS_SIM)
TEST(Clusters, ThreadsModeRefusesThemAndSaysSo) {
  if (!simcuda::sim::threads_mode()) GTEST_SKIP() << "fiber mode runs clusters";
  EXPECT_FALSE(cluster_launch_supported());
  DeviceBuffer<int> out(2 * 32 * 3);
  EXPECT_EQ(cluster_exchange(2, 2, 32, 32, 1, out.get()), cudaErrorNotSupported);
  EXPECT_EQ(cudaGetLastError(), cudaErrorNotSupported);
}
#endif

TEST(Barriers, TreeReduction) {
  const int n = 256 * 7 - 5;
  std::vector<float> in(n);
  for (int i = 0; i < n; ++i) in[i] = static_cast<float>(i % 17);
  DeviceBuffer<float> din(in);
  DeviceBuffer<float> dout(7);
  CUDA_OK(tree_reduce(din.get(), dout.get(), n, false));
  const auto h = dout.to_host();
  for (int b = 0; b < 7; ++b) {
    float want = 0;
    for (int i = b * 256; i < std::min(n, (b + 1) * 256); ++i) want += in[i];
    EXPECT_FLOAT_EQ(h[b], want) << "block " << b;
  }
}

#if defined(ACTLOSS_SIM)
// Fiber mode runs each thread until its next barrier, in thread order, so a
// reduction that lost its loop barrier deterministically reads partial sums
// that were never written. (Threads mode leaves this to ThreadSanitizer:
// see the sim_planted_race test.)
TEST(Barriers, PlantedMissingSyncthreadsIsCaughtInFiberMode) {
  if (simcuda::sim::threads_mode()) GTEST_SKIP() << "threads mode: checked by TSan instead";
  // The default order is what makes the failure deterministic.
  const auto seed = simcuda::sim::shuffle_seed();
  simcuda::sim::set_shuffle_seed(std::nullopt);
  std::vector<float> in(256, 1.0f);
  DeviceBuffer<float> din(in);
  DeviceBuffer<float> dout(1);
  CUDA_OK(tree_reduce(din.get(), dout.get(), 256, false));
  EXPECT_EQ(dout.to_host()[0], 256.0f);
  CUDA_OK(tree_reduce(din.get(), dout.get(), 256, true));
  EXPECT_NE(dout.to_host()[0], 256.0f) << "the planted race went unnoticed";
  EXPECT_EQ(dout.to_host()[0], 9.0f) << "thread 0 alone adds 8 untouched partners";
  simcuda::sim::set_shuffle_seed(seed);
}

TEST(Barriers, ShuffledFiberOrderStillCorrectAndDeterministic) {
  if (simcuda::sim::threads_mode()) GTEST_SKIP() << "fiber order only exists in fiber mode";
  const auto seed = simcuda::sim::shuffle_seed();
  simcuda::sim::set_shuffle_seed(std::nullopt);
  std::vector<int> ordered(128), a(128), b(128), c(128);
  DeviceBuffer<int> d(128);
  CUDA_OK(first_run_order(128, d.get()));
  ordered = d.to_host();
  for (int t = 0; t < 128; ++t) EXPECT_EQ(ordered[t], t);

  simcuda::sim::set_shuffle_seed(42);
  CUDA_OK(first_run_order(128, d.get()));
  a = d.to_host();
  CUDA_OK(first_run_order(128, d.get()));
  b = d.to_host();
  simcuda::sim::set_shuffle_seed(7);
  CUDA_OK(first_run_order(128, d.get()));
  c = d.to_host();

  std::vector<float> in(1024);
  std::iota(in.begin(), in.end(), 0.0f);
  DeviceBuffer<float> din(in);
  DeviceBuffer<float> dout(4);
  CUDA_OK(tree_reduce(din.get(), dout.get(), 1024, false));
  const auto sums = dout.to_host();
  simcuda::sim::set_shuffle_seed(seed);

  EXPECT_EQ(a, b) << "same seed, same order";
  EXPECT_NE(a, ordered);
  EXPECT_NE(a, c);
  for (int blk = 0; blk < 4; ++blk) {
    float want = 0;
    for (int i = blk * 256; i < (blk + 1) * 256; ++i) want += in[i];
    EXPECT_FLOAT_EQ(sums[blk], want);
  }
}
#endif

TEST(SharedMemory, DynamicIsPoisonedStaticAndDynamicWork) {
  for (const int threads : {1, 31, 256, 1024}) {
    DeviceBuffer<int> poisoned(threads), out(threads), out_static(threads);
    CUDA_OK(shared_memory(threads, poisoned.get(), out.get(), out_static.get()));
    const auto p = poisoned.to_host(), o = out.to_host(), s = out_static.to_host();
    for (int t = 0; t < threads; ++t) {
      if (sim_build()) {
        EXPECT_EQ(p[t], 1) << "dynamic shared memory is NaN-filled before each block";
      }
      EXPECT_EQ(o[t], (t + 1) % threads);
      EXPECT_EQ(s[t], 2 * ((t + 3) % threads));
    }
  }
}

TEST(Grids, MultiBlockTwoAndThreeDimensional) {
  const dim3 cases[][2] = {
      {dim3(37), dim3(64)},
      {dim3(5, 3), dim3(16, 8)},
      {dim3(3, 5, 2), dim3(8, 4, 2)},
      {dim3(2, 2, 3), dim3(1, 1, 64)},
      {dim3(70000), dim3(1)},
  };
  for (const auto& c : cases) {
    const dim3 g = c[0], b = c[1];
    const int bs = static_cast<int>(b.x * b.y * b.z), gs = static_cast<int>(g.x * g.y * g.z);
    DeviceBuffer<int4> rec(static_cast<std::size_t>(bs) * gs);
    CUDA_OK(grid_indexing(g, b, rec.get()));
    const auto h = rec.to_host();
    for (int blk = 0; blk < gs; ++blk) {
      for (int t = 0; t < bs; ++t) {
        const int4 r = h[static_cast<std::size_t>(blk) * bs + t];
        ASSERT_EQ(r.x, t);
        ASSERT_EQ(r.y, blk);
        ASSERT_EQ(r.z, bs);
        ASSERT_EQ(r.w, gs);
      }
    }
  }
}

TEST(Grids, ManyBlocksAreCheap) {
  // Threads mode wakes 32 OS threads per block and is far slower per block.
  int blocks = 20000;
#if defined(ACTLOSS_SIM)
  if (simcuda::sim::threads_mode()) blocks = 2000;
#endif
  DeviceBuffer<int4> rec(static_cast<std::size_t>(blocks) * 32);
  const auto t0 = std::chrono::steady_clock::now();
  CUDA_OK(grid_indexing(dim3(blocks), dim3(32), rec.get()));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d blocks x 32 threads: %.1f ms\n", blocks, ms);
  EXPECT_EQ(rec.to_host()[static_cast<std::size_t>(blocks) * 32 - 1].y, blocks - 1);
}

// The full-block pattern must stay affordable: a 1024-thread block with ten
// barriers.
TEST(Cost, FullBlockTenBarriers) {
  DeviceBuffer<int> out(1);
  CUDA_OK(barrier_rounds(1024, 5, out.get()));  // warm-up: creates the fibers
  double best = 1e9;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    CUDA_OK(barrier_rounds(1024, 5, out.get()));
    best = std::min(best, std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - t0).count());
  }
  EXPECT_EQ(out.to_host()[0], 5 * 1024);
  std::printf("1024 threads, 10 barriers: %.2f ms\n", best);
#if defined(ACTLOSS_SIM) && !defined(__SANITIZE_THREAD__)
  // (TSan's fiber switches cost microseconds each; threads mode is the TSan
  // configuration anyway.)
  if (!simcuda::sim::threads_mode()) {
    EXPECT_LT(best, 50.0);
  }
#endif
}

TEST(LaunchConfig, InvalidConfigurationsFailLikeCuda) {
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const struct {
    dim3 grid, block;
    std::size_t smem;
  } bad[] = {
      {dim3(1), dim3(1025), 0},        {dim3(1), dim3(32, 32, 2), 0},
      {dim3(1), dim3(1, 1, 65), 0},    {dim3(1, 65536), dim3(32), 0},
      {dim3(1, 1, 65536), dim3(32), 0}, {dim3(0), dim3(32), 0},
      {dim3(1), dim3(0), 0},           {dim3(1), dim3(32), 48 * 1024 + 1},
  };
  for (const auto& c : bad) {
    EXPECT_EQ(launch_config(c.grid, c.block, c.smem), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "cudaGetLastError resets";
  }
  EXPECT_EQ(launch_config(dim3(1), dim3(1024), 48 * 1024), cudaSuccess);
  EXPECT_EQ(launch_config(dim3(1, 65535, 1), dim3(1), 0), cudaSuccess);
  // Above 48 KiB needs the opt-in attribute, up to 227 KiB.
  EXPECT_EQ(launch_config(dim3(1), dim3(32), 100 * 1024), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  CUDA_OK(allow_dynamic_smem(100 * 1024));
  EXPECT_EQ(launch_config(dim3(1), dim3(32), 100 * 1024), cudaSuccess);
  EXPECT_EQ(launch_config(dim3(1), dim3(32), 100 * 1024 + 1), cudaErrorInvalidConfiguration);
  EXPECT_EQ(allow_dynamic_smem(227 * 1024 + 1), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  CUDA_OK(allow_dynamic_smem(48 * 1024));
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace simtest
