// The CPU backend's worker threads. Work is cut into tasks by the caller, by size alone, never by
// the number of threads, and every task writes its own results; whatever combines them (a loss
// sum) does so in task order afterwards. So the same call gives the same bits on 1 thread or 64.
#pragma once

#include <cstdint>
#include <exception>
#include <utility>

namespace actloss::cpu {

// Threads the pool uses, the caller's included: ACTLOSS_CPU_THREADS when set to a positive
// number, else std::thread::hardware_concurrency(); read once.
int pool_threads();

// Test hook: runs every later call on `threads` threads (0 restores the default). Tests use it to
// show that results do not depend on the thread count.
void set_pool_threads_for_testing(int threads);

// Test and benchmark hook: how long idle threads poll for the next call before sleeping, in
// nanoseconds (0: they sleep at once; negative restores the default, ACTLOSS_CPU_SPIN_US or
// 5 ms).
void set_pool_spin_for_testing(std::int64_t nanoseconds);

// Rows per task for a row op: about `elements` per task, so that a task amortises its hand-off and
// a small call stays on one thread; but with rows longer than that, as many as four rows (fewer
// when the call has under 32), so that the next row a row fetches ahead is most often the same
// task's, not one that another core has already begun. A function of the shape alone.
inline std::int64_t rows_per_task(std::int64_t rows, std::int64_t cols, std::int64_t elements) {
  const std::int64_t by_size = elements / (cols > 1 ? cols : 1);
  const std::int64_t fetched_ahead = rows / 8 < 4 ? rows / 8 : 4;
  const std::int64_t per_task = by_size > fetched_ahead ? by_size : fetched_ahead;
  return per_task > 1 ? per_task : 1;
}

using TaskFunction = void (*)(void* context, std::int64_t task);

// Runs function(context, t) for every t in [0, tasks), spread over the pool and the calling
// thread, and returns when all have finished. A caller arriving while another call holds the pool
// runs its tasks on its own thread (same results, less parallel). The first exception a task
// throws is rethrown here after every task has stopped.
void run_tasks(std::int64_t tasks, TaskFunction function, void* context);

// run_tasks for a callable `body(std::int64_t task)`.
template <class Body>
void parallel_for(std::int64_t tasks, Body&& body) {
  if (tasks <= 0) return;
  if (tasks == 1) {
    body(std::int64_t{0});
    return;
  }
  using Stored = std::remove_reference_t<Body>;
  run_tasks(
      tasks, [](void* context, std::int64_t task) { (*static_cast<Stored*>(context))(task); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

}  // namespace actloss::cpu
