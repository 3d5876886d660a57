// Whether the CPU backend converts float32 to bfloat16 with AVX512_BF16's vcvtneps2bf16 (one
// instruction per 16 values) instead of eleven integer operations. The instruction rounds to
// nearest even and quiets a NaN exactly as the integer code does, but flushes denormal inputs to
// zero, so a vector holding one still takes the integer code (host/cpu/simd-inl.h): the bits
// stored are the same either way. Decided once from CPUID; tests switch it to compare the two.
#pragma once

#include <atomic>

#include "host/cpu/processor.h"

namespace actloss::cpu {

inline std::atomic<bool> bf16_conversion_enabled{processor_converts_bf16()};

inline bool converts_bf16_in_hardware() {
  return bf16_conversion_enabled.load(std::memory_order_relaxed);
}

}  // namespace actloss::cpu
