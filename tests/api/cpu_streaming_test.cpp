// The CPU backend's rule for which outputs go out with non-temporal stores (host/cpu/backend.h):
// a quarter of the last-level cache, counting at most 64 MiB of it per online CPU, at least 4 MiB,
// or the size ACTLOSS_CPU_STREAM_MIB names; and the rule the backend's environment settings are
// read by.
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>

#include "host/cpu/backend.h"
#include "host/cpu/environment.h"

namespace api_test {
namespace {

constexpr std::int64_t kMiB = std::int64_t{1} << 20;

TEST(CpuStreaming, QuarterOfTheCacheABareMachineReports) {
  // A 32 MiB L3 seen by 2 CPUs (an EPYC VM's slice) and a 1152 MiB one by 192 (a bare
  // Genoa-X, 6 MiB per CPU): the cap does not bind.
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_for(32 * kMiB, 2), 8 * kMiB);
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_for(1152 * kMiB, 192), 288 * kMiB);
}

TEST(CpuStreaming, AHostsWholeCacheCountsAsThe64MiBPerCpuItCanServe) {
  // The 2-vCPU Xeon VM whose sysfs names the host's 480 MiB: 128 MiB counted.
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_for(480 * kMiB, 2), 32 * kMiB);
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_for(480 * kMiB, 1), 16 * kMiB);
  // A CPU count sysconf could not read (0 or -1) counts as one.
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_for(480 * kMiB, 0), 16 * kMiB);
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_for(480 * kMiB, -1), 16 * kMiB);
}

TEST(CpuStreaming, NeverBelowFourMiB) {
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_for(2 * kMiB, 2), 4 * kMiB);
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_for(0, 2), 4 * kMiB);
}

TEST(CpuStreaming, EnvironmentSizeInMiBOrNothing) {
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_from_text("24"), 24 * kMiB);
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_from_text("1"), kMiB);
  // Capped at 2^40 MiB, which no output reaches, instead of overflowing.
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_from_text("9223372036854775807"),
            std::int64_t{1} << 60);
  for (const char* unusable : {"", "0", "-8", "8M", "eight"}) {
    EXPECT_EQ(actloss::cpu::streaming_output_bytes_from_text(unusable), 0) << unusable;
  }
  EXPECT_EQ(actloss::cpu::streaming_output_bytes_from_text(nullptr), 0);
}

TEST(CpuEnvironment, WholeNumbersAtLeastTheLeastOrNothing) {
  // The rule ACTLOSS_CPU_THREADS (least 1), ACTLOSS_CPU_SPIN_US (least 0) and
  // ACTLOSS_CPU_STREAM_MIB (least 1) are read by.
  EXPECT_EQ(actloss::cpu::whole_number_from_text("12", 1), 12);
  EXPECT_EQ(actloss::cpu::whole_number_from_text("0", 0), 0);
  EXPECT_EQ(actloss::cpu::whole_number_from_text("99999999999999999999", 0), LLONG_MAX);
  EXPECT_FALSE(actloss::cpu::whole_number_from_text("0", 1).has_value());
  EXPECT_FALSE(actloss::cpu::whole_number_from_text("-3", 0).has_value());
  for (const char* unusable : {"", "4x", "x4", "2.5", "four"}) {
    EXPECT_FALSE(actloss::cpu::whole_number_from_text(unusable, 0).has_value()) << unusable;
  }
  EXPECT_FALSE(actloss::cpu::whole_number_from_text(nullptr, 0).has_value());
}

}  // namespace
}  // namespace api_test
