// What the CPU backend asks of the processor it runs on, from CPUID, in one place: the vendor,
// on which some prefetches depend (host/cpu/prefetch_hint.h), and AVX512_BF16, which the
// float-to-bfloat16 conversion uses where present (host/cpu/bf16_conversion.h). Elsewhere than
// x86 with GCC or Clang, neither.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define ACTLOSS_CPU_HAS_CPUID 1
#else
#define ACTLOSS_CPU_HAS_CPUID 0
#endif

#include <cstring>

namespace actloss::cpu {

inline bool processor_is_intel() {
#if ACTLOSS_CPU_HAS_CPUID
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return false;
  char vendor[12];
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  return std::memcmp(vendor, "GenuineIntel", 12) == 0;
#else
  return false;
#endif
}

inline bool processor_converts_bf16() {
#if ACTLOSS_CPU_HAS_CPUID
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // Leaf 7, sub-leaf 1: EAX bit 5 is AVX512_BF16. The AVX-512 state the instruction needs is
  // the OS's to enable; the backend reaches the instruction only on Highway's AVX-512 targets,
  // which Highway selects only where the OS has enabled it.
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (eax & (1u << 5)) != 0;
#else
  return false;
#endif
}

}  // namespace actloss::cpu

#undef ACTLOSS_CPU_HAS_CPUID
