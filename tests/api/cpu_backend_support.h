// Support for the tests of the SIMD CPU backend (Device::cpu) against the float64 reference
// (Device::reference): each check runs on every Highway target this processor can execute and on
// several thread counts, so a bug in the SSE4 or AVX2 copy of a loop cannot hide behind the
// AVX-512 one, and results can be shown not to depend on the thread count.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "host/cpu/backend.h"

namespace api_test {

// One Highway target bit per runnable compiled target, best first; {0} (the default choice)
// in a build without Highway.
inline std::vector<std::int64_t> runnable_simd_targets() {
  std::vector<std::int64_t> targets;
  for (std::int64_t bits = actloss::detail::cpu_runnable_simd_targets(); bits != 0;
       bits &= bits - 1) {
    targets.push_back(bits & -bits);
  }
  if (targets.empty()) targets.push_back(0);
  return targets;
}

// The runnable targets with a fused multiply-add (AVX2 and newer, NEON, SVE...): those compute
// every formula with the same roundings, so they give the same bits. SSE4 and older, and
// Highway's emulated targets, round a product apart.
inline std::vector<std::int64_t> runnable_fma_simd_targets() {
  std::vector<std::int64_t> targets;
  for (const std::int64_t target : runnable_simd_targets()) {
    if (target == 0) continue;
    const std::string name = actloss::detail::cpu_simd_target_name(target);
    if (name.rfind("SSE", 0) != 0 && name.rfind("SSSE", 0) != 0 && name != "EMU128" &&
        name != "SCALAR") {
      targets.push_back(target);
    }
  }
  return targets;
}

// Outputs from this size on are streamed while a SimdTargetScope lives, whatever the machine's
// cache (the backend's default is a quarter of the last-level cache): the tests' large outputs
// are this size, so that every machine runs their streamed stores.
constexpr std::int64_t kTestStreamingBytes = std::int64_t{4} << 20;

// Restricts the backend to one target and a thread count for its lifetime.
class SimdTargetScope {
 public:
  SimdTargetScope(std::int64_t target, int threads) {
    if (target != 0) actloss::detail::cpu_set_simd_targets_for_testing(target);
    actloss::detail::cpu_set_threads_for_testing(threads);
    actloss::detail::cpu_set_streaming_output_bytes_for_testing(kTestStreamingBytes);
  }
  ~SimdTargetScope() {
    actloss::detail::cpu_set_simd_targets_for_testing(0);
    actloss::detail::cpu_set_threads_for_testing(0);
    actloss::detail::cpu_set_streaming_output_bytes_for_testing(0);
  }
  SimdTargetScope(const SimdTargetScope&) = delete;
  SimdTargetScope& operator=(const SimdTargetScope&) = delete;
};

// Runs body() once per runnable target (one thread and three threads each), with a trace naming
// the target and thread count on every failure.
template <class Body>
void for_each_simd_target(Body&& body) {
  for (const std::int64_t target : runnable_simd_targets()) {
    for (const int threads : {1, 3}) {
      SimdTargetScope scope(target, threads);
      SCOPED_TRACE(std::string("target ") + actloss::detail::cpu_simd_target_name(target) +
                   ", " + std::to_string(threads) + " threads (" + actloss::cpu_backend() + ")");
      body();
    }
  }
}

// Deterministic uniform values in [low, high).
inline std::vector<double> uniform_values(std::size_t count, double low, double high,
                                          std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::uniform_real_distribution<double> distribution(low, high);
  std::vector<double> values(count);
  for (double& value : values) value = distribution(engine);
  return values;
}

inline actloss::Exec cpu_exec() {
  actloss::Exec exec;
  exec.device = actloss::Device::cpu;
  return exec;
}
inline actloss::Exec reference_exec() {
  actloss::Exec exec;
  exec.device = actloss::Device::reference;
  return exec;
}

}  // namespace api_test
