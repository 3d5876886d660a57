// What the CPU backend runs on: Highway's run-time target choice and the thread count.
#include <hwy/highway.h>
#include <hwy/targets.h>

#include <mutex>
#include <string>

#include "host/cpu/backend.h"
#include "host/cpu/bf16_conversion.h"
#include "host/cpu/thread_pool.h"

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
  return text.c_str();
}

}  // namespace actloss::detail
