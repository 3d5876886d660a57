// Warp collectives: every shuffle variant at full width and below, votes,
// __syncwarp, warps with fewer than 32 live lanes.
#include <cmath>

#include "sim_test_kernels.h"
#include "test_util.h"

namespace simtest {
namespace {

// Reference semantics (PTX shfl): a source outside the caller's segment of
// `width` lanes means "keep your own value".
int expected_shuffle(Shfl kind, int tid, int arg, int width) {
  const int lane = tid % 32, base = tid - lane;
  const int seg = lane & ~(width - 1);
  int src = lane;
  switch (kind) {
    case Shfl::kIdx: src = seg | (arg & (width - 1)); break;
    case Shfl::kUp: src = lane - arg >= seg ? lane - arg : lane; break;
    case Shfl::kDown: src = lane + arg < seg + width ? lane + arg : lane; break;
    case Shfl::kXor: src = (lane ^ arg) < seg + width ? lane ^ arg : lane; break;
  }
  return (base + src) * 10 + 1;
}

TEST(Shuffle, AllVariantsAllWidthsFullWarps) {
  for (const Shfl kind : {Shfl::kIdx, Shfl::kUp, Shfl::kDown, Shfl::kXor}) {
    for (const int width : {32, 16, 8, 4, 2, 1}) {
      for (const int arg : {0, 1, 3, 5, 16, 31}) {
        if (kind == Shfl::kXor && arg >= width) continue;  // would leave the segment: tested below
        DeviceBuffer<int> out(64);
        CUDA_OK(shuffle(kind, arg, width, 64, 64, out.get()));
        const auto h = out.to_host();
        for (int t = 0; t < 64; ++t) {
          ASSERT_EQ(h[t], expected_shuffle(kind, t, arg, width))
              << "kind " << static_cast<int>(kind) << " width " << width << " arg " << arg
              << " tid " << t;
        }
      }
    }
  }
}

TEST(Shuffle, XorLeavingTheSegmentKeepsOwnValue) {
  DeviceBuffer<int> out(32);
  CUDA_OK(shuffle(Shfl::kXor, 8, 8, 32, 32, out.get()));
  const auto h = out.to_host();
  for (int t = 0; t < 32; ++t) {
    // lane ^ 8 stays below seg + 8 only when bit 3 of the lane is set.
    const int src = (t ^ 8) < (t & ~7) + 8 ? (t ^ 8) : t;
    ASSERT_EQ(h[t], src * 10 + 1) << t;
  }
}

TEST(Shuffle, FewerThan32LiveLanes) {
  // A partial last warp (48 threads: warp 1 has 16 lanes) and early-exited
  // lanes (live = 20) are legal as long as no one reads a missing lane.
  struct Case {
    Shfl kind;
    int arg, width, threads, live;
  };
  const Case cases[] = {
      {Shfl::kXor, 1, 32, 48, 48}, {Shfl::kXor, 8, 32, 48, 48},  {Shfl::kDown, 1, 16, 48, 48},
      {Shfl::kUp, 4, 32, 48, 48},  {Shfl::kIdx, 7, 16, 48, 48},  {Shfl::kXor, 1, 32, 32, 20},
      {Shfl::kXor, 2, 32, 32, 20}, {Shfl::kUp, 3, 32, 32, 20},   {Shfl::kIdx, 0, 32, 32, 20},
      {Shfl::kDown, 1, 4, 32, 20},
  };
  for (const Case& c : cases) {
    DeviceBuffer<int> out(static_cast<std::size_t>(c.threads));
    CUDA_OK(shuffle(c.kind, c.arg, c.width, c.threads, c.live, out.get()));
    const auto h = out.to_host();
    for (int t = 0; t < c.live; ++t) {
      ASSERT_EQ(h[t], expected_shuffle(c.kind, t, c.arg, c.width))
          << "kind " << static_cast<int>(c.kind) << " arg " << c.arg << " tid " << t;
    }
  }
}

TEST(Shuffle, OtherTypes) {
  DeviceBuffer<float> f(32);
  DeviceBuffer<double> d(32);
  DeviceBuffer<float2> h2(32);
  DeviceBuffer<long long> ll(32);
  CUDA_OK(shuffle_types(f.get(), d.get(), h2.get(), ll.get()));
  const auto hf = f.to_host();
  const auto hd = d.to_host();
  const auto hh = h2.to_host();
  const auto hl = ll.to_host();
  for (int t = 0; t < 32; ++t) {
    EXPECT_EQ(hf[t], static_cast<float>(t ^ 1) + 0.5f);
    EXPECT_EQ(hd[t], static_cast<double>((t + 1) % 32) * 1e300);
    EXPECT_EQ(hh[t].x, 0.0f);
    EXPECT_EQ(hh[t].y, -0.0f);
    EXPECT_EQ(hl[t], static_cast<long long>(t ^ 31) << 40);
  }
}

TEST(Votes, BallotAnyAll) {
  for (const int threads : {32, 64, 50}) {
    DeviceBuffer<int4> out(static_cast<std::size_t>(threads));
    CUDA_OK(votes(threads, out.get()));
    const auto h = out.to_host();
    for (int t = 0; t < threads; ++t) {
      const int base = t - t % 32;
      unsigned want = 0;
      for (int l = 0; l < 32 && base + l < threads; ++l) {
        if ((base + l) % 3 == 0) want |= 1u << l;
      }
      EXPECT_EQ(static_cast<unsigned>(h[t].x), want) << t;
      EXPECT_EQ(h[t].y, 1) << t;
      EXPECT_EQ(h[t].z, 0) << t;
      EXPECT_EQ(h[t].w, 1) << t;
    }
  }
}

TEST(Syncwarp, ExchangeThroughSharedMemory) {
  for (const int threads : {32, 96, 40}) {
    DeviceBuffer<int> out(static_cast<std::size_t>(threads));
    CUDA_OK(syncwarp_exchange(threads, out.get()));
    const auto h = out.to_host();
    for (int t = 0; t < threads; ++t) {
      const int base = t - t % 32, width = std::min(32, threads - base);
      EXPECT_EQ(h[t], (base + (t % 32 + 1) % width) * 3) << t;
    }
  }
}

}  // namespace
}  // namespace simtest
