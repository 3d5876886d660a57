#include "host/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <vector>

namespace actloss::cpu {
namespace {

int default_threads() {
  if (const char* text = std::getenv("ACTLOSS_CPU_THREADS")) {
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    if (end != text && *end == '\0' && value > 0) return static_cast<int>(std::min(value, 1024L));
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::atomic<int> forced_threads{0};

// One batch of tasks at a time. Workers sleep on `wake` between batches; each batch carries a
// generation number so a worker never runs the same batch twice or misses one.
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
    {
      std::lock_guard lock(mutex_);
      function_ = function;
      context_ = context;
      tasks_ = tasks;
      next_task_.store(0);
      error_ = nullptr;
      helpers_wanted_ = helpers;
      helpers_running_ = helpers;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return helpers_running_ == 0; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    return true;
  }

 private:
  void grow(int wanted) {
    while (static_cast<int>(workers_.size()) < wanted) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { serve(index); });
    }
  }

  void serve(int index) {
    std::uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      if (index >= helpers_wanted_) continue;
      lock.unlock();
      work();
      lock.lock();
      if (--helpers_running_ == 0) done_.notify_all();
    }
  }

  void work() {
    for (;;) {
      const std::int64_t task = next_task_.fetch_add(1);
      if (task >= tasks_) return;
      try {
        function_(context_, task);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_task_.store(tasks_);  // the rest are skipped: the call fails anyway
      }
    }
  }

  std::mutex busy_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  std::uint64_t generation_ = 0;
  int helpers_wanted_ = 0;
  int helpers_running_ = 0;
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

void set_pool_threads_for_testing(int threads) { forced_threads.store(std::max(threads, 0)); }

void run_tasks(std::int64_t tasks, TaskFunction function, void* context) {
  if (tasks <= 0) return;
  const int threads = pool_threads();
  if (threads > 1 && tasks > 1 && pool().try_run(threads, tasks, function, context)) return;
  for (std::int64_t task = 0; task < tasks; ++task) function(context, task);
}

}  // namespace actloss::cpu
