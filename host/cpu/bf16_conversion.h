// Whether the CPU backend converts float32 to bfloat16 with AVX512_BF16's vcvtneps2bf16 (one
// instruction per 16 values) instead of eleven integer operations. The instruction rounds to
// nearest even and quiets a NaN exactly as the integer code does, but flushes denormal inputs to
// zero, so a vector holding one still takes the integer code (host/cpu/simd-inl.h): the bits
// stored are the same either way. Decided once from CPUID; tests switch it to compare the two.
#pragma once

#include <atomic>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace actloss::cpu {

inline bool processor_converts_bf16() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // Leaf 7, sub-leaf 1: EAX bit 5 is AVX512_BF16. The AVX-512 state the instruction needs is
  // the OS's to enable; the backend reaches this code only on Highway's AVX-512 targets, which
  // Highway selects only where the OS has enabled it.
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (eax & (1u << 5)) != 0;
#else
  return false;
#endif
}

inline std::atomic<bool> bf16_conversion_enabled{processor_converts_bf16()};

inline bool converts_bf16_in_hardware() {
  return bf16_conversion_enabled.load(std::memory_order_relaxed);
}

}  // namespace actloss::cpu
