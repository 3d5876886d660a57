#include "host/half.h"
#include <actloss/half.h>

#include <cmath>
#include <limits>

namespace actloss::host {
namespace {

// Rounds a double to a binary format with ExpBits exponent and MantBits stored mantissa bits,
// working on the integer significand so that the result is correctly rounded in one step.
template <int ExpBits, int MantBits>
std::uint16_t round_double_to(double value) {
  static_assert(1 + ExpBits + MantBits == 16);
  constexpr int bias = (1 << (ExpBits - 1)) - 1;
  constexpr std::uint32_t inf_bits = ((1u << ExpBits) - 1) << MantBits;
  constexpr int double_mant_bits = 52;

  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const auto sign = static_cast<std::uint16_t>((bits >> 63) << 15);
  const int exp_field = static_cast<int>((bits >> double_mant_bits) & 0x7ff);
  const std::uint64_t frac = bits & ((std::uint64_t{1} << double_mant_bits) - 1);

  if (exp_field == 0x7ff) {
    if (frac == 0) return static_cast<std::uint16_t>(sign | inf_bits);
    // Quieting guarantees a nonzero mantissa even when the kept payload bits are all zero.
    const std::uint32_t payload = static_cast<std::uint32_t>(frac >> (double_mant_bits - MantBits));
    return static_cast<std::uint16_t>(sign | inf_bits | (1u << (MantBits - 1)) | payload);
  }
  // Double subnormals (and zero) are below 2^-1022, far under half the smallest subnormal of
  // either 16-bit format, so they all round to a signed zero.
  if (exp_field == 0) return sign;

  const std::uint64_t sig = frac | (std::uint64_t{1} << double_mant_bits);  // value = sig * 2^(e-52)
  const int e = exp_field - 1023;
  if (e > bias) return static_cast<std::uint16_t>(sign | inf_bits);

  // Count the result in units of the target's last place. For a normal result the count keeps
  // the implicit bit, and adding it to (exponent - 1) << MantBits lets a rounding carry ripple
  // into the exponent, up to the infinity encoding, for free. A subnormal result has exponent
  // field 0 and a quantum fixed at 2^(1 - bias - MantBits); rounding up to 2^MantBits quanta
  // yields the smallest normal's encoding, again for free.
  int shift = double_mant_bits - MantBits;
  std::uint32_t base = 0;
  if (e >= 1 - bias) {
    base = static_cast<std::uint32_t>(e + bias - 1) << MantBits;
  } else {
    shift += 1 - bias - e;
  }
  // sig < 2^53, so with shift >= 54 the value is under half a quantum: round to zero (and keep
  // the shifts below 64 bits).
  if (shift >= 54) return sign;
  std::uint64_t q = sig >> shift;
  const std::uint64_t rem = sig & ((std::uint64_t{1} << shift) - 1);
  const std::uint64_t half = std::uint64_t{1} << (shift - 1);
  if (rem > half || (rem == half && (q & 1) != 0)) ++q;
  const std::uint64_t encoded = base + q;
  if (encoded >= inf_bits) return static_cast<std::uint16_t>(sign | inf_bits);
  return static_cast<std::uint16_t>(sign | encoded);
}

}  // namespace

std::uint16_t double_to_half_bits(double value) { return round_double_to<5, 10>(value); }

float double_to_float(double value) {
  // C++ leaves a double -> float conversion outside float's range undefined, so the overflow
  // edge is decided here: FLT_MAX's mantissa is odd, so the midpoint between FLT_MAX and 2^128
  // already rounds away (to even) to infinity.
  constexpr double flt_max = std::numeric_limits<float>::max();
  constexpr double overflow_midpoint = 0x1p128 - 0x1p103;
  const double magnitude = std::fabs(value);
  if (magnitude > flt_max && !std::isnan(value)) {
    const float rounded = magnitude >= overflow_midpoint ? std::numeric_limits<float>::infinity()
                                                         : std::numeric_limits<float>::max();
    return std::signbit(value) ? -rounded : rounded;
  }
  return static_cast<float>(value);  // in range: nearest even in the default rounding mode
}
std::uint16_t double_to_bf16_bits(double value) { return round_double_to<8, 7>(value); }

float half_bits_to_float(std::uint16_t bits) {
  const std::uint32_t sign = std::uint32_t{bits & 0x8000u} << 16;
  const std::uint32_t exp_field = (bits >> 10) & 0x1fu;
  const std::uint32_t mant = bits & 0x3ffu;
  std::uint32_t out;
  if (exp_field == 0x1f) {
    out = sign | 0x7f800000u | (mant << 13);  // inf, or NaN with the payload kept
  } else if (exp_field == 0) {
    // Subnormal (or zero): mant * 2^-24 is exact in float, which has room for it as a normal.
    const float magnitude = std::ldexp(static_cast<float>(mant), -24);
    return sign != 0 ? -magnitude : magnitude;
  } else {
    out = sign | ((exp_field - 15 + 127) << 23) | (mant << 13);
  }
  float value;
  std::memcpy(&value, &out, sizeof value);
  return value;
}

double load_as_double(const void* base, DType dtype, std::int64_t index) {
  const auto* bytes = static_cast<const unsigned char*>(base);
  switch (dtype) {
    case DType::f32: {
      float value;
      std::memcpy(&value, bytes + index * 4, sizeof value);
      return value;
    }
    case DType::f16: {
      std::uint16_t bits;
      std::memcpy(&bits, bytes + index * 2, sizeof bits);
      return half_bits_to_float(bits);
    }
    case DType::bf16: {
      std::uint16_t bits;
      std::memcpy(&bits, bytes + index * 2, sizeof bits);
      return bf16_bits_to_float(bits);
    }
  }
  return std::nan("");  // unreachable after validation
}

void store_from_double(void* base, DType dtype, std::int64_t index, double value) {
  auto* bytes = static_cast<unsigned char*>(base);
  switch (dtype) {
    case DType::f32: {
      const float narrowed = double_to_float(value);
      std::memcpy(bytes + index * 4, &narrowed, sizeof narrowed);
      return;
    }
    case DType::f16: {
      const std::uint16_t bits = double_to_half_bits(value);
      std::memcpy(bytes + index * 2, &bits, sizeof bits);
      return;
    }
    case DType::bf16: {
      const std::uint16_t bits = double_to_bf16_bits(value);
      std::memcpy(bytes + index * 2, &bits, sizeof bits);
      return;
    }
  }
}

}  // namespace actloss::host

namespace actloss {

std::uint16_t float_to_f16_bits(float value) { return host::float_to_half_bits(value); }
std::uint16_t float_to_bf16_bits(float value) { return host::float_to_bf16_bits(value); }
float f16_bits_to_float(std::uint16_t bits) { return host::half_bits_to_float(bits); }
float bf16_bits_to_float(std::uint16_t bits) { return host::bf16_bits_to_float(bits); }

void floats_to_f16(const float* in, std::size_t count, std::uint16_t* out) {
  for (std::size_t i = 0; i < count; ++i) out[i] = host::float_to_half_bits(in[i]);
}
void floats_to_bf16(const float* in, std::size_t count, std::uint16_t* out) {
  for (std::size_t i = 0; i < count; ++i) out[i] = host::float_to_bf16_bits(in[i]);
}
void f16_to_floats(const std::uint16_t* in, std::size_t count, float* out) {
  for (std::size_t i = 0; i < count; ++i) out[i] = host::half_bits_to_float(in[i]);
}
void bf16_to_floats(const std::uint16_t* in, std::size_t count, float* out) {
  for (std::size_t i = 0; i < count; ++i) out[i] = host::bf16_bits_to_float(in[i]);
}

}  // namespace actloss
