// What the CPU backend runs on: Highway's run-time target choice and the thread count.
#include <hwy/highway.h>
#include <hwy/targets.h>

#include <mutex>
#include <string>

#include "host/cpu/backend.h"
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

void cpu_set_threads_for_testing(int threads) { cpu::set_pool_threads_for_testing(threads); }

const char* cpu_backend_description() {
  // Built on every call (tests change the target and thread count); kept per thread so the
  // pointer stays valid until that thread's next call.
  thread_local std::string text;
  text = std::string("Highway ") + hwy::TargetName(chosen_target()) + ", " +
         std::to_string(cpu::pool_threads()) + " threads";
  return text.c_str();
}

}  // namespace actloss::detail
