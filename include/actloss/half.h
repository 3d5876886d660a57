// Host-side conversions between float and the API's 16-bit element types, DType::f16 (IEEE
// binary16) and DType::bf16 (bfloat16), for preparing inputs and reading outputs without a CUDA
// header. The library stores 16-bit elements as these bit patterns.
#pragma once

#include <cstddef>
#include <cstdint>

namespace actloss {

// Round to nearest, ties to even, in one step: values beyond the largest finite value become
// +-inf, values below half the smallest subnormal become +-0, NaN stays a quiet NaN of the same
// sign.
std::uint16_t float_to_f16_bits(float value);
std::uint16_t float_to_bf16_bits(float value);

// Exact: every f16 and bf16 value is a float. NaN stays NaN.
float f16_bits_to_float(std::uint16_t bits);
float bf16_bits_to_float(std::uint16_t bits);

// The same, element by element, over `count` elements (`in` and `out` must not overlap).
void floats_to_f16(const float* in, std::size_t count, std::uint16_t* out);
void floats_to_bf16(const float* in, std::size_t count, std::uint16_t* out);
void f16_to_floats(const std::uint16_t* in, std::size_t count, float* out);
void bf16_to_floats(const std::uint16_t* in, std::size_t count, float* out);

}  // namespace actloss
