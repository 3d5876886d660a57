// Host-side conversions between float/double and the two 16-bit formats of the API (IEEE
// binary16 and bfloat16), plus typed element access for the CPU path. No CUDA header: the CPU
// path and the tests must build without the toolkit, and the device side has its own intrinsics.
//
// Every narrowing conversion rounds to nearest, ties to even, in ONE step from the source value.
// Going double -> float -> half would round twice and can land one ulp off when the first
// rounding produces an exact tie (e.g. 1 + 2^-11 + 2^-40 must round up to 1 + 2^-10 in binary16,
// but rounding to float first drops the 2^-40 and the tie then goes to even, 1.0).
#pragma once

#include <cstdint>
#include <cstring>

#include <actloss/types.h>

namespace actloss::host {

// Narrowing with round-to-nearest-even: overflow gives +-inf, values below half the smallest
// subnormal give +-0, NaN gives a quiet NaN of the same sign (payload's top bits kept).
std::uint16_t double_to_half_bits(double value);
std::uint16_t double_to_bf16_bits(double value);

// Same rounding to float; defined for every double (C++ leaves out-of-range casts undefined).
float double_to_float(double value);

// float -> double is exact, so these are the double versions: one rounding, same result.
inline std::uint16_t float_to_half_bits(float value) { return double_to_half_bits(value); }
inline std::uint16_t float_to_bf16_bits(float value) { return double_to_bf16_bits(value); }

// Widening is exact (every binary16 and bfloat16 value is a float); NaN stays NaN.
float half_bits_to_float(std::uint16_t bits);
inline float bf16_bits_to_float(std::uint16_t bits) {
  const std::uint32_t widened = std::uint32_t{bits} << 16;
  float value;
  std::memcpy(&value, &widened, sizeof value);
  return value;
}

// Element `index` of a typed array, exactly, as double. `dtype` must be a valid enumerator.
double load_as_double(const void* base, DType dtype, std::int64_t index);

// Stores `value` rounded once (nearest even) to `dtype` at element `index`.
void store_from_double(void* base, DType dtype, std::int64_t index, double value);

}  // namespace actloss::host
