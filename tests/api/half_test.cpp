// The host-side 16-bit conversions (host/half.h): exhaustive round trips, an independent
// nearest-value oracle at every midpoint, and hand-picked ties, overflow and NaN cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "host/half.h"
#include <actloss/half.h>

namespace {

using actloss::DType;
using namespace actloss::host;

bool is_half_nan(std::uint16_t bits) { return (bits & 0x7c00) == 0x7c00 && (bits & 0x03ff) != 0; }
bool is_bf16_nan(std::uint16_t bits) { return (bits & 0x7f80) == 0x7f80 && (bits & 0x007f) != 0; }

// The value of a binary16 pattern from the IEEE definition, computed without the code under test.
double half_value(std::uint16_t bits) {
  const int exp = (bits >> 10) & 0x1f;
  const int mant = bits & 0x3ff;
  const double sign = (bits & 0x8000) != 0 ? -1.0 : 1.0;
  if (exp == 0x1f) return mant == 0 ? sign * INFINITY : NAN;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

double bf16_value(std::uint16_t bits) {
  const int exp = (bits >> 7) & 0xff;
  const int mant = bits & 0x7f;
  const double sign = (bits & 0x8000) != 0 ? -1.0 : 1.0;
  if (exp == 0xff) return mant == 0 ? sign * INFINITY : NAN;
  if (exp == 0) return sign * std::ldexp(mant, -133);
  return sign * std::ldexp(128 + mant, exp - 134);
}

TEST(Half, EveryF16PatternDecodesToItsIeeeValueAndRoundTrips) {
  for (std::uint32_t i = 0; i <= 0xffff; ++i) {
    const auto bits = static_cast<std::uint16_t>(i);
    const float f = half_bits_to_float(bits);
    if (is_half_nan(bits)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << i;
      EXPECT_TRUE(is_half_nan(float_to_half_bits(f))) << std::hex << i;
      EXPECT_TRUE(is_half_nan(double_to_half_bits(f))) << std::hex << i;
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), half_value(bits)) << std::hex << i;
    ASSERT_EQ(std::signbit(f), (bits & 0x8000) != 0) << std::hex << i;  // keeps -0
    ASSERT_EQ(float_to_half_bits(f), bits) << std::hex << i;
    ASSERT_EQ(double_to_half_bits(f), bits) << std::hex << i;
  }
}

TEST(Half, EveryBf16PatternDecodesToItsValueAndRoundTrips) {
  for (std::uint32_t i = 0; i <= 0xffff; ++i) {
    const auto bits = static_cast<std::uint16_t>(i);
    const float f = bf16_bits_to_float(bits);
    if (is_bf16_nan(bits)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << i;
      EXPECT_TRUE(is_bf16_nan(float_to_bf16_bits(f))) << std::hex << i;
      EXPECT_TRUE(is_bf16_nan(double_to_bf16_bits(f))) << std::hex << i;
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), bf16_value(bits)) << std::hex << i;
    ASSERT_EQ(float_to_bf16_bits(f), bits) << std::hex << i;
    ASSERT_EQ(double_to_bf16_bits(f), bits) << std::hex << i;
  }
}

// Walks every pair of adjacent non-negative finite values of a format (and the pair from the
// largest finite to the overflow threshold) and checks the rounding of the exact midpoint (ties
// to the even pattern) and of the doubles just either side of it (to the nearer value). The
// oracle is the ordering of the patterns themselves, not the conversion under test.
template <class Encode, class Decode>
void check_midpoints(Encode encode, Decode decode, std::uint16_t largest_finite,
                     std::uint16_t infinity) {
  for (std::uint32_t i = 0; i < largest_finite; ++i) {
    const auto lo = static_cast<std::uint16_t>(i);
    const auto hi = static_cast<std::uint16_t>(i + 1);
    const double a = decode(lo);
    const double b = decode(hi);
    const double mid = a + (b - a) / 2;  // exact: both are far inside double's range
    const std::uint16_t even = (lo & 1) == 0 ? lo : hi;
    ASSERT_EQ(encode(mid), even) << std::hex << i;
    ASSERT_EQ(encode(std::nextafter(mid, 0.0)), lo) << std::hex << i;
    ASSERT_EQ(encode(std::nextafter(mid, INFINITY)), hi) << std::hex << i;
    ASSERT_EQ(encode(a), lo);
    // The same on the negative side: sign-magnitude formats mirror exactly.
    ASSERT_EQ(encode(-mid), even | 0x8000) << std::hex << i;
    ASSERT_EQ(encode(-std::nextafter(mid, INFINITY)), hi | 0x8000) << std::hex << i;
  }
  // Past the largest finite value the next "value" would be 2^(emax+1); the midpoint to it ties
  // away from the odd largest pattern, to infinity.
  const double top = decode(largest_finite);
  const double ulp = top - decode(static_cast<std::uint16_t>(largest_finite - 1));
  const double threshold = top + ulp / 2;
  EXPECT_EQ(encode(threshold), infinity);
  EXPECT_EQ(encode(std::nextafter(threshold, 0.0)), largest_finite);
  EXPECT_EQ(encode(-threshold), infinity | 0x8000);
  EXPECT_EQ(encode(1e300), infinity);
  EXPECT_EQ(encode(std::numeric_limits<double>::max()), infinity);
}

TEST(Half, F16RoundsEveryMidpointToEvenAndNeighboursToNearest) {
  check_midpoints([](double v) { return double_to_half_bits(v); },
                  [](std::uint16_t b) { return half_value(b); }, 0x7bff, 0x7c00);
}

TEST(Half, Bf16RoundsEveryMidpointToEvenAndNeighboursToNearest) {
  check_midpoints([](double v) { return double_to_bf16_bits(v); },
                  [](std::uint16_t b) { return bf16_value(b); }, 0x7f7f, 0x7f80);
}

TEST(Half, HandPickedF16Values) {
  EXPECT_EQ(double_to_half_bits(1.0), 0x3c00);
  EXPECT_EQ(double_to_half_bits(1.0 + 0x1p-11), 0x3c00);      // tie, 1.0 is even
  EXPECT_EQ(double_to_half_bits(1.0 + 3 * 0x1p-11), 0x3c02);  // tie, up to the even pattern
  EXPECT_EQ(double_to_half_bits(65504.0), 0x7bff);            // largest finite
  EXPECT_EQ(double_to_half_bits(65519.0), 0x7bff);
  EXPECT_EQ(double_to_half_bits(65520.0), 0x7c00);  // tie with 65536, which is "even": inf
  EXPECT_EQ(double_to_half_bits(-65520.0), 0xfc00);
  EXPECT_EQ(double_to_half_bits(0x1p-24), 0x0001);            // smallest subnormal
  EXPECT_EQ(double_to_half_bits(0x1p-25), 0x0000);            // tie with 0, 0 is even
  EXPECT_EQ(double_to_half_bits(0x1p-25 + 0x1p-60), 0x0001);
  EXPECT_EQ(double_to_half_bits(3 * 0x1p-25), 0x0002);        // tie between 1 and 2 quanta
  EXPECT_EQ(double_to_half_bits(0x1p-14 - 0x1p-25), 0x0400);  // rounds up into the normals
  EXPECT_EQ(double_to_half_bits(0x1p-1074), 0x0000);          // double subnormal
  EXPECT_EQ(double_to_half_bits(-0x1p-1074), 0x8000);
  EXPECT_EQ(double_to_half_bits(-0.0), 0x8000);
  EXPECT_EQ(double_to_half_bits(INFINITY), 0x7c00);
  EXPECT_EQ(double_to_half_bits(-INFINITY), 0xfc00);
  EXPECT_TRUE(is_half_nan(double_to_half_bits(NAN)));
  EXPECT_TRUE(is_half_nan(double_to_half_bits(-NAN)));
  EXPECT_TRUE(is_half_nan(double_to_half_bits(std::numeric_limits<double>::signaling_NaN())));
  EXPECT_TRUE(is_half_nan(float_to_half_bits(std::numeric_limits<float>::signaling_NaN())));
}

TEST(Half, DoubleRoundsOnceNotThroughFloat) {
  // 1 + 2^-11 + 2^-40 lies just above the tie between 1 and 1 + 2^-10. Via float the 2^-40 is
  // lost, leaving an exact tie that goes to even (1.0): one ulp wrong.
  const double value = 1.0 + 0x1p-11 + 0x1p-40;
  EXPECT_EQ(double_to_half_bits(value), 0x3c01);
  EXPECT_EQ(float_to_half_bits(static_cast<float>(value)), 0x3c00);
  // Likewise for bfloat16 around 1 + 2^-8.
  const double bf_value = 1.0 + 0x1p-8 + 0x1p-40;
  EXPECT_EQ(double_to_bf16_bits(bf_value), 0x3f81);
  EXPECT_EQ(float_to_bf16_bits(static_cast<float>(bf_value)), 0x3f80);
}

TEST(Half, HandPickedBf16Values) {
  EXPECT_EQ(double_to_bf16_bits(1.0), 0x3f80);
  EXPECT_EQ(double_to_bf16_bits(1.0 + 0x1p-8), 0x3f80);
  EXPECT_EQ(double_to_bf16_bits(1.0 + 3 * 0x1p-8), 0x3f82);
  EXPECT_EQ(double_to_bf16_bits(std::numeric_limits<float>::max()), 0x7f80);  // overflows bf16
  EXPECT_EQ(double_to_bf16_bits(0x1.fep127), 0x7f7f);                        // largest finite
  EXPECT_EQ(double_to_bf16_bits(0x1p-133), 0x0001);                          // smallest subnormal
  EXPECT_EQ(double_to_bf16_bits(0x1p-134), 0x0000);
  EXPECT_EQ(double_to_bf16_bits(3 * 0x1p-134), 0x0002);
  // A float subnormal (exact in double) keeps its top bits in a bfloat16 subnormal.
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(float_to_bf16_bits(0x1p-127f), 0x0040);
  EXPECT_EQ(double_to_bf16_bits(-0.0), 0x8000);
  EXPECT_EQ(double_to_bf16_bits(-INFINITY), 0xff80);
  EXPECT_TRUE(is_bf16_nan(double_to_bf16_bits(NAN)));
  EXPECT_TRUE(is_bf16_nan(double_to_bf16_bits(std::numeric_limits<double>::signaling_NaN())));
}

TEST(Half, DoubleToFloatIsDefinedAtTheOverflowEdge) {
  constexpr float fmax = std::numeric_limits<float>::max();
  const double threshold = 0x1p128 - 0x1p103;  // midpoint between FLT_MAX and 2^128
  EXPECT_EQ(double_to_float(static_cast<double>(fmax)), fmax);
  EXPECT_EQ(double_to_float(std::nextafter(threshold, 0.0)), fmax);
  EXPECT_EQ(double_to_float(threshold), INFINITY);
  EXPECT_EQ(double_to_float(-threshold), -INFINITY);
  EXPECT_EQ(double_to_float(1e300), INFINITY);
  EXPECT_EQ(double_to_float(1.0 + 0x1p-24), 1.0f);  // tie to even
  EXPECT_EQ(double_to_float(1.0 + 0x1p-24 + 0x1p-50), 1.0f + 0x1p-23f);
  EXPECT_TRUE(std::isnan(double_to_float(NAN)));
  EXPECT_EQ(double_to_float(0x1p-149), 0x1p-149f);
}

TEST(Half, LoadAndStoreAddressElementsOfEachDtype) {
  unsigned char bytes[16] = {};
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    store_from_double(bytes, dtype, 1, -2.5);
    store_from_double(bytes, dtype, 2, 0.75);
    EXPECT_EQ(load_as_double(bytes, dtype, 1), -2.5) << actloss::to_string(dtype);
    EXPECT_EQ(load_as_double(bytes, dtype, 2), 0.75) << actloss::to_string(dtype);
  }
  // Element 1 of an f16 array is bytes 2..3, little-endian: -2.5 is 0xc100.
  store_from_double(bytes, DType::f16, 1, -2.5);
  EXPECT_EQ(bytes[2], 0x00);
  EXPECT_EQ(bytes[3], 0xc1);
  // Stores round to the target format once.
  store_from_double(bytes, DType::f16, 0, 1.0 + 0x1p-11 + 0x1p-40);
  EXPECT_EQ(load_as_double(bytes, DType::f16, 0), 1.0 + 0x1p-10);
  store_from_double(bytes, DType::bf16, 0, 1e39);
  EXPECT_EQ(load_as_double(bytes, DType::bf16, 0), INFINITY);
}

}  // namespace

// The public conversions (<actloss/half.h>) are the ones tested above, under their public names,
// and the array forms convert element by element.
namespace public_api {

TEST(PublicHalf, ScalarFormsMatchTheTestedConversions) {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto b = static_cast<std::uint16_t>(bits);
    const float h = actloss::f16_bits_to_float(b), bf = actloss::bf16_bits_to_float(b);
    if (is_half_nan(b)) {
      ASSERT_TRUE(std::isnan(h)) << bits;
    } else {
      ASSERT_EQ(h, static_cast<float>(half_value(b))) << bits;
    }
    if (is_bf16_nan(b)) {
      ASSERT_TRUE(std::isnan(bf)) << bits;
    }
  }
  // Known patterns, and ties to even.
  EXPECT_EQ(actloss::float_to_f16_bits(1.0f), 0x3c00);
  EXPECT_EQ(actloss::float_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(actloss::float_to_f16_bits(1.0f + 0x1p-11f), 0x3c00);  // tie: down to even
  EXPECT_EQ(actloss::float_to_f16_bits(1.0f + 0x3p-11f), 0x3c02);  // tie: up to even
  EXPECT_EQ(actloss::float_to_bf16_bits(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(actloss::float_to_bf16_bits(1.0f + 0x3p-8f), 0x3f82);
  EXPECT_EQ(actloss::float_to_f16_bits(65520.0f), 0x7c00);  // rounds past 65504: +inf
  EXPECT_EQ(actloss::float_to_f16_bits(-1e-9f), 0x8000);
  EXPECT_TRUE(is_half_nan(actloss::float_to_f16_bits(NAN)));
  EXPECT_TRUE(is_bf16_nan(actloss::float_to_bf16_bits(NAN)));
}

TEST(PublicHalf, ArrayFormsConvertEachElement) {
  const std::vector<float> values{0.0f, -2.5f, 3.140625f, 1e5f, -INFINITY, 1.0f + 0x1p-11f};
  std::vector<std::uint16_t> f16(values.size()), bf16(values.size());
  actloss::floats_to_f16(values.data(), values.size(), f16.data());
  actloss::floats_to_bf16(values.data(), values.size(), bf16.data());
  std::vector<float> back16(values.size()), back_bf16(values.size());
  actloss::f16_to_floats(f16.data(), f16.size(), back16.data());
  actloss::bf16_to_floats(bf16.data(), bf16.size(), back_bf16.data());
  for (std::size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(f16[i], actloss::float_to_f16_bits(values[i])) << i;
    EXPECT_EQ(bf16[i], actloss::float_to_bf16_bits(values[i])) << i;
    EXPECT_EQ(back16[i], actloss::f16_bits_to_float(f16[i])) << i;
    EXPECT_EQ(back_bf16[i], actloss::bf16_bits_to_float(bf16[i])) << i;
  }
  EXPECT_EQ(back16[2], 3.140625f);  // exactly representable in both
  EXPECT_EQ(back_bf16[1], -2.5f);
}

}  // namespace public_api
