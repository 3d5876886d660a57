#include "host/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <vector>

#include "host/cpu/environment.h"

namespace actloss::cpu {
namespace {

constexpr int kMaxThreads = 1024;

int default_threads() {
  if (const auto threads = whole_number_from_text(std::getenv("ACTLOSS_CPU_THREADS"), 1)) {
    return static_cast<int>(std::min<long long>(*threads, kMaxThreads));
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::atomic<int> forced_threads{0};

// How long an idle worker, and the caller waiting for the last worker, poll before sleeping on a
// condition variable: ACTLOSS_CPU_SPIN_US microseconds when set (0: sleep at once), else 5 ms.
// Waking a sleeping thread costs tens of microseconds (more on a virtual machine), most of a call
// at a megabyte: polling hands the next call to workers still awake. On a 2-vCPU EPYC VM, relu
// forward over 1M bf16 elements between the benchmarks' 1.5 ms cache flushes ran at 39.5 GB/s
// polling 100 us and 52.6 GB/s polling 3 ms (oneDNN: 53-55). On another EPYC VM, whose flushes
// take 2.2-3.0 ms, 2 ms of polling left every worker asleep at every call: bf16 sigmoid forward
// at 1M 14-19 GB/s, gelu_erf 10-11, the same as one thread, against 26-27 and 13 polling 8-10
// ms. OpenMP polls too: GNU's default of 300000 pauses is 7 ms on the first VM, 5-9 ms on the
// second. Bounded, and only while calls come that close together (see serve), so that a pool
// between calls leaves its cores to others.
constexpr std::int64_t kDefaultSpinNanoseconds = 5'000'000;

std::int64_t spin_from_environment() {
  // At most a second: polling longer is never a use of a core.
  if (const auto microseconds = whole_number_from_text(std::getenv("ACTLOSS_CPU_SPIN_US"), 0)) {
    return std::min(*microseconds, 1'000'000LL) * 1000;
  }
  return kDefaultSpinNanoseconds;
}

std::atomic<std::int64_t> spin_nanoseconds{spin_from_environment()};

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::int64_t spin_budget() { return spin_nanoseconds.load(std::memory_order_relaxed); }

// Polls `ready` for up to `budget` nanoseconds; true when it held.
template <class Ready>
bool spin_until(std::int64_t budget, const Ready& ready) {
  if (budget <= 0) return ready();
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(budget);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      relax();
    }
    if (std::chrono::steady_clock::now() >= until) return ready();
  }
}

// One batch of tasks at a time. A batch is published as one word, its generation number and the
// number of workers it wants, so that a worker reads both at once: it takes part in exactly the
// batches that want it, and never twice in one. A batch's fields are written before its word and
// not again until every worker it wants has finished it.
class Pool {
 public:
  Pool() = default;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  // Only a pool that never started a worker is destroyed (see pool()).
  ~Pool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  // False when another caller holds the pool.
  bool try_run(int threads, std::int64_t tasks, TaskFunction function, void* context) {
    std::unique_lock busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    grow(threads - 1);
    const int helpers = static_cast<int>(std::min<std::int64_t>(threads - 1, tasks - 1));
    function_ = function;
    context_ = context;
    tasks_ = tasks;
    next_task_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    helpers_running_.store(helpers, std::memory_order_relaxed);
    ++generation_;
    {
      // Under the lock, so that a worker about to sleep either sees the batch or is woken.
      std::lock_guard lock(mutex_);
      batch_.store(generation_ << kHelperBits | static_cast<std::uint64_t>(helpers),
                   std::memory_order_release);
      if (sleepers_ > 0) wake_.notify_all();
    }
    work();
    const auto finished = [&] { return helpers_running_.load(std::memory_order_acquire) == 0; };
    if (!spin_until(spin_budget(), finished)) {
      std::unique_lock lock(mutex_);
      done_.wait(lock, finished);
    }
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    return true;
  }

 private:
  // Workers a batch can want: fewer than 2^16 (the pool has at most kMaxThreads threads).
  static constexpr int kHelperBits = 16;

  void grow(int wanted) {
    while (static_cast<int>(workers_.size()) < wanted) {
      const int index = static_cast<int>(workers_.size());
      // The worker starts from the generation before the batch that made it, which it joins
      // however late its thread starts.
      workers_.emplace_back([this, index, seen = generation_] { serve(index, seen); });
    }
  }

  // A worker polls between batches only while that pays: after an idle spell longer than the
  // polling time (a program that calls now and then, a test suite computing its references) it
  // sleeps at once, until a spell short enough to have been polled through shows calls coming
  // close together again (a training loop, a benchmark).
  void serve(int index, std::uint64_t seen) {
    std::int64_t budget = spin_budget();
    for (;;) {
      std::uint64_t batch = 0;
      const auto published = [&] {
        batch = batch_.load(std::memory_order_acquire);
        return (batch >> kHelperBits) != seen;
      };
      const auto idle_since = std::chrono::steady_clock::now();
      if (!spin_until(budget, published)) {
        std::unique_lock lock(mutex_);
        ++sleepers_;
        wake_.wait(lock, [&] { return stopping_ || published(); });
        --sleepers_;
        if (stopping_) return;
      }
      const std::int64_t idle = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now() - idle_since)
                                    .count();
      const std::int64_t most = spin_budget();
      budget = idle <= most ? most : 0;
      seen = batch >> kHelperBits;
      const int wanted = static_cast<int>(batch & ((std::uint64_t{1} << kHelperBits) - 1));
      if (index >= wanted) continue;
      work();
      if (helpers_running_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // The caller may be asleep on done_; notifying under the lock cannot miss it.
        std::lock_guard lock(mutex_);
        done_.notify_all();
      }
    }
  }

  void work() {
    for (;;) {
      const std::int64_t task = next_task_.fetch_add(1, std::memory_order_relaxed);
      if (task >= tasks_) return;
      try {
        function_(context_, task);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_task_.store(tasks_, std::memory_order_relaxed);  // the rest are skipped
      }
    }
  }

  std::mutex busy_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  int sleepers_ = 0;
  std::uint64_t generation_ = 0;         // the caller's (busy_ held)
  std::atomic<std::uint64_t> batch_{0};  // generation << kHelperBits | workers wanted
  std::atomic<int> helpers_running_{0};
  TaskFunction function_ = nullptr;
  void* context_ = nullptr;
  std::int64_t tasks_ = 0;
  std::atomic<std::int64_t> next_task_{0};
  std::exception_ptr error_;
};

// Never destroyed: at exit the workers are left asleep rather than joined, so no exit path
// (std::exit from another thread, static destructors of other libraries) waits on them. A
// forked child has none of the parent's workers, so it starts a fresh pool on first use; the
// parent's object is abandoned, since its std::thread handles name threads that do not exist
// there.
std::atomic<Pool*> current_pool{nullptr};
std::once_flag fork_handler_registered;

Pool& pool() {
  std::call_once(fork_handler_registered, [] {
    pthread_atfork(nullptr, nullptr, [] { current_pool.store(nullptr); });
  });
  Pool* existing = current_pool.load();
  if (existing != nullptr) return *existing;
  auto* fresh = new Pool;
  if (current_pool.compare_exchange_strong(existing, fresh)) return *fresh;
  delete fresh;
  return *existing;
}

}  // namespace

int pool_threads() {
  const int forced = forced_threads.load();
  if (forced > 0) return forced;
  static const int threads = default_threads();
  return threads;
}

void set_pool_threads_for_testing(int threads) {
  forced_threads.store(std::clamp(threads, 0, kMaxThreads));
}

void set_pool_spin_for_testing(std::int64_t nanoseconds) {
  spin_nanoseconds.store(nanoseconds < 0 ? spin_from_environment() : nanoseconds);
}

void run_tasks(std::int64_t tasks, TaskFunction function, void* context) {
  if (tasks <= 0) return;
  const int threads = pool_threads();
  if (threads > 1 && tasks > 1 && pool().try_run(threads, tasks, function, context)) return;
  for (std::int64_t task = 0; task < tasks; ++task) function(context, task);
}

}  // namespace actloss::cpu
