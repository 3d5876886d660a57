// Which cache the cross-entropy's prefetches of the next row fill: L2 (prefetcht1) on Intel
// processors, L1 (prefetcht0) elsewhere. The next row comes from memory at its latency while
// this one computes; on Intel each prefetch into L1 holds one of the core's few L1 fill buffers
// until its line arrives, which caps the bytes one core has in flight, while prefetcht1 hands
// the line to L2's deeper queue. On a 2-vCPU Xeon VM (two threads, alternating processes,
// medians of two), prefetcht1 made the cross-entropy forward 1.05-1.10x in f32 and 1.03-1.05x
// in bf16, and the fused pass 1.00-1.04x, at 4096 and 32000 classes. The other ops' prefetches
// stay in L1 there too: the activations', a fixed distance ahead of their use, ran 4-10% slower
// into L2 (gelu, silu, tanh in bf16), and the softmax rows gained at some widths and lost at
// others (log-softmax forward, bf16: 1.04x at 128256 classes, 0.95x at 4096). On the EPYC VM the
// backend was tuned on, the L1 prefetch was measured and kept (no L2 variant measured there).
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include <cstring>

namespace actloss::cpu {

inline bool processor_is_intel() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
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

inline const bool prefetch_next_row_into_l2 = processor_is_intel();

}  // namespace actloss::cpu
