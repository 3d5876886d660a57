// What the CPU backend runs on: Highway's run-time target choice, the thread count, and the
// output size from which it streams.
#include <hwy/highway.h>
#include <hwy/targets.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>

#include "host/cpu/backend.h"
#include "host/cpu/bf16_conversion.h"
#include "host/cpu/thread_pool.h"

namespace actloss::cpu {
namespace {

std::atomic<std::int64_t>& forced_streaming_output_bytes() {
  static std::atomic<std::int64_t> bytes{0};
  return bytes;
}

// "32768K" or "1M" as sysfs writes a cache's size; 0 if unreadable.
std::int64_t parse_cache_size(const std::string& text) {
  std::int64_t value = 0;
  std::size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i)
    value = value * 10 + (text[i] - '0');
  if (i < text.size() && text[i] == 'K') value <<= 10;
  if (i < text.size() && text[i] == 'M') value <<= 20;
  return value;
}

// The largest cache of the first CPU as the kernel describes it, else sysconf's, else 8 MiB.
std::int64_t last_level_cache_bytes() {
  std::int64_t largest = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream file("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) +
                       "/size");
    std::string text;
    if (file >> text) largest = std::max(largest, parse_cache_size(text));
  }
#if defined(_SC_LEVEL3_CACHE_SIZE)
  if (largest == 0) largest = std::max<std::int64_t>(0, sysconf(_SC_LEVEL3_CACHE_SIZE));
#endif
  return largest > 0 ? largest : std::int64_t{8} << 20;
}

}  // namespace

std::int64_t streaming_output_bytes() {
  if (const std::int64_t forced = forced_streaming_output_bytes().load(std::memory_order_relaxed);
      forced > 0)
    return forced;
  static const std::int64_t from_cache = [] {
    const std::int64_t chosen =
        streaming_output_bytes_from_text(std::getenv("ACTLOSS_CPU_STREAM_MIB"));
    if (chosen > 0) return chosen;
    return streaming_output_bytes_for(last_level_cache_bytes(),
                                      std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  }();
  return from_cache;
}

}  // namespace actloss::cpu

namespace actloss::detail {
namespace {

// The best target Highway will dispatch to: the highest bit of what this processor supports
// among the compiled targets (lower bits are the better targets in Highway's numbering).
std::int64_t chosen_target() {
  const std::int64_t runnable = cpu_runnable_simd_targets();
  if (runnable == 0) return HWY_STATIC_TARGET;
  return runnable & -runnable;
}

}  // namespace

void cpu_set_streaming_output_bytes_for_testing(std::int64_t bytes) {
  cpu::forced_streaming_output_bytes().store(bytes > 0 ? bytes : 0, std::memory_order_relaxed);
}

std::int64_t cpu_runnable_simd_targets() {
  return static_cast<std::int64_t>(hwy::SupportedTargets()) & (HWY_TARGETS);
}

const char* cpu_simd_target_name(std::int64_t target) { return hwy::TargetName(target); }

bool cpu_set_simd_targets_for_testing(std::int64_t mask) {
  hwy::SetSupportedTargetsForTest(mask);
  // Highway's dispatch tables cache the first choice; forget it so the next call chooses again.
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
  return true;
}

bool cpu_set_bf16_instruction_for_testing(bool use) {
  const bool present = cpu::processor_converts_bf16();
  cpu::bf16_conversion_enabled.store(use && present, std::memory_order_relaxed);
  return present;
}

void cpu_set_threads_for_testing(int threads) { cpu::set_pool_threads_for_testing(threads); }

void cpu_set_pool_spin_for_testing(std::int64_t nanoseconds) {
  cpu::set_pool_spin_for_testing(nanoseconds);
}

const char* cpu_backend_description() {
  // Built on every call (tests change the target and thread count); kept per thread so the
  // pointer stays valid until that thread's next call.
  thread_local std::string text;
  const std::int64_t target = chosen_target();
  text = std::string("Highway ") + hwy::TargetName(target) + ", " +
         std::to_string(cpu::pool_threads()) + " threads";
#if HWY_ARCH_X86_64
  // The AVX-512 targets (lower bits are the better ones) convert to bf16 with AVX512_BF16's
  // instruction where the processor has it (host/cpu/bf16_conversion.h).
  if (target <= HWY_AVX3 && cpu::converts_bf16_in_hardware()) text += ", AVX512_BF16 conversion";
#endif
  text += ", outputs from " + std::to_string(cpu::streaming_output_bytes() >> 20) + " MiB streamed";
  return text.c_str();
}

}  // namespace actloss::detail
