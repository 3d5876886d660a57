// Vector memory access: simcuda::load_vector, store_vector,
// store_vector_streaming and the cache-hint built-ins move the bits
// unchanged, in global and shared memory. (Misaligned accesses are in
// test_faults.cpp.)
#include <cstring>
#include <limits>
#include <vector>

#include "sim_test_kernels.h"
#include "test_util.h"

namespace simtest {
namespace {

bool same_bits(const uint4& a, const uint4& b) {
  return a.x == b.x && a.y == b.y && a.z == b.z && a.w == b.w;
}
// Bitwise, so that NaN payloads and -0.0f count too.
template <class T>
bool same_bits(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

TEST(VectorAccess, AlignedLoadsAndStoresRoundTrip) {
  for (const int n : {1, 33, 64}) {
    std::vector<uint4> in4(n);
    std::vector<float2> in2(n);
    std::vector<float> in1(n);
    for (int i = 0; i < n; ++i) {
      const auto u = static_cast<unsigned>(i);
      in4[i] = make_uint4(0x01020304u * (u + 1), ~u, u << 20, 0xdeadbeefu ^ u);
      in2[i] = make_float2(static_cast<float>(i) + 0.25f, -1.0f / static_cast<float>(i + 3));
      in1[i] = static_cast<float>(i) * -3.5f;
    }
    in2[0].y = -0.0f;
    in1[n - 1] = std::numeric_limits<float>::quiet_NaN();

    DeviceBuffer<uint4> d_in4(in4), out4(n), out4_streaming(n), out4_hinted(n);
    DeviceBuffer<float2> d_in2(in2), out2(n), out2_streaming(n);
    DeviceBuffer<float> d_in1(in1), out1(n);
    const VectorBuffers b{d_in4.get(), out4.get(),  out4_streaming.get(), out4_hinted.get(),
                          d_in2.get(), out2.get(),  out2_streaming.get(), d_in1.get(),
                          out1.get()};
    CUDA_OK(vector_round_trip(b, n));

    const auto h4 = out4.to_host(), h4s = out4_streaming.to_host(), h4h = out4_hinted.to_host();
    const auto h2 = out2.to_host(), h2s = out2_streaming.to_host();
    const auto h1 = out1.to_host();
    for (int i = 0; i < n; ++i) {
      const int j = (i + 1) % n;
      EXPECT_TRUE(same_bits(h4[i], in4[i])) << "n " << n << " out4 " << i;
      EXPECT_TRUE(same_bits(h4s[i], in4[j])) << "n " << n << " out4_streaming " << i;
      EXPECT_TRUE(same_bits(h4h[i], in4[j])) << "n " << n << " out4_hinted " << i;
      EXPECT_TRUE(same_bits(h2[i], in2[i])) << "n " << n << " out2 " << i;
      EXPECT_TRUE(same_bits(h2s[i], in2[j])) << "n " << n << " out2_streaming " << i;
      EXPECT_TRUE(same_bits(h1[i], in1[i])) << "n " << n << " out1 " << i;
    }
  }
}

}  // namespace
}  // namespace simtest
