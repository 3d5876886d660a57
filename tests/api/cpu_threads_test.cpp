// The CPU backend's worker threads seen from the public API: callers on many threads at once, and
// a process forked after the pool started (as a data-loader worker would be), both get the
// results a lone caller gets.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <actloss/actloss.h>

#include "tests/api/cpu_backend_support.h"

namespace api_test {
namespace {

// A mean cross-entropy and its gradient over enough rows for several tasks.
struct CallResult {
  float loss = 0;
  std::vector<float> grad;
};

CallResult cross_entropy(const std::vector<float>& logits, const std::vector<std::int64_t>& targets,
                  std::int64_t classes) {
  CallResult run;
  run.grad.assign(logits.size(), 0.0f);
  actloss::CrossEntropyArgs args;
  args.rows = static_cast<std::int64_t>(targets.size());
  args.classes = classes;
  args.logits = logits.data();
  args.targets = targets.data();
  args.loss = &run.loss;
  args.grad = run.grad.data();
  EXPECT_TRUE(actloss::cross_entropy_forward_backward(args, {}, cpu_exec()).ok());
  return run;
}

bool same_bits(const CallResult& a, const CallResult& b) {
  return std::memcmp(&a.loss, &b.loss, sizeof a.loss) == 0 && a.grad.size() == b.grad.size() &&
         std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * sizeof(float)) == 0;
}

struct Inputs {
  static constexpr std::int64_t kClasses = 1000, kRows = 200;
  std::vector<float> logits;
  std::vector<std::int64_t> targets;
  Inputs() {
    const std::vector<double> values = uniform_values(kRows * kClasses, -5.0, 5.0, 41);
    logits.assign(values.begin(), values.end());
    for (std::int64_t r = 0; r < kRows; ++r) targets.push_back((r * 31) % kClasses);
  }
};

TEST(CpuThreads, CallersOnManyThreadsGetTheLoneCallersBits) {
  const Inputs in;
  SimdTargetScope scope(0, 3);
  const CallResult alone = cross_entropy(in.logits, in.targets, Inputs::kClasses);
  std::vector<CallResult> runs(6);
  std::vector<std::thread> callers;
  for (CallResult& run : runs) {
    callers.emplace_back([&] { run = cross_entropy(in.logits, in.targets, Inputs::kClasses); });
  }
  for (std::thread& caller : callers) caller.join();
  for (const CallResult& run : runs) EXPECT_TRUE(same_bits(run, alone));
}

TEST(CpuThreads, ForkedChildRunsOnItsOwnPool) {
  const Inputs in;
  SimdTargetScope scope(0, 3);
  const CallResult parent = cross_entropy(in.logits, in.targets, Inputs::kClasses);  // pool started
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The parent's workers do not exist here: a pool that waited on them would hang (the alarm
    // ends the child, which the parent sees as a failure), one that joined them would abort.
    alarm(60);
    const CallResult again = cross_entropy(in.logits, in.targets, Inputs::kClasses);
    _exit(same_bits(again, parent) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Idle workers poll for the next call for a while before they sleep. Back-to-back calls (workers
// still polling), calls after the poll ran out (workers asleep), and calls that start more workers
// than the last one used (a new worker joins the batch that made it, however late its thread
// starts; one that skipped it would leave the call waiting forever) all give the same bits.
TEST(CpuThreads, PollingSleepingAndNewWorkersGiveTheSameBits) {
  const Inputs in;
  CallResult first;
  {
    SimdTargetScope scope(0, 1);
    first = cross_entropy(in.logits, in.targets, Inputs::kClasses);
  }
  struct SpinScope {
    explicit SpinScope(std::int64_t nanoseconds) {
      actloss::detail::cpu_set_pool_spin_for_testing(nanoseconds);
    }
    ~SpinScope() { actloss::detail::cpu_set_pool_spin_for_testing(-1); }
    SpinScope(const SpinScope&) = delete;
    SpinScope& operator=(const SpinScope&) = delete;
  };
  // 0: sleep at once; 1 us: poll, then sleep between calls; 50 ms: poll through every gap.
  for (const std::int64_t spin : {std::int64_t{0}, std::int64_t{1000}, std::int64_t{50'000'000}}) {
    const SpinScope polling(spin);
    for (const int threads : {2, 5, 3, 9, 2}) {
      SimdTargetScope scope(0, threads);
      SCOPED_TRACE("poll " + std::to_string(spin) + " ns, " + std::to_string(threads) + " threads");
      for (int call = 0; call < 3; ++call) {
        EXPECT_TRUE(same_bits(cross_entropy(in.logits, in.targets, Inputs::kClasses), first));
      }
    }
  }
}

}  // namespace
}  // namespace api_test
