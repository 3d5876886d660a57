// Threads mode (ACTLOSS_SIM_THREADS=ON): one OS thread per CUDA thread and
// one block at a time, for ThreadSanitizer. Only here do the threads of a
// block really run concurrently, so only here can TSan see a missing
// __syncthreads or __syncwarp. __syncthreads is a C++20 std::barrier whose
// arrive_and_drop gives the hardware rule that an exited thread counts as
// arrived. Deadlocks are found by the watchdog from the per-thread states.
#include "engine.h"

#if defined(SIMCUDA_THREADS) && SIMCUDA_THREADS

#include <pthread.h>

#include <barrier>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace simcuda::detail {
namespace {

struct Engine;

// Runs when the last thread arrives, before any waiter is released: the
// waiters become "running" again, so a snapshot of states never mistakes a
// completed barrier for a deadlock.
struct BarrierDone {
  Engine* e;
  void operator()() noexcept;
};

struct WarpSync {
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t generation = 0;
  WarpCore core;
};

struct alignas(64) Slot {
  std::atomic<unsigned> go{0};  // bumped to start this thread on a block
  std::atomic<TState> state{TState::kExited};
};

struct Engine {
  std::mutex create_m;
  std::vector<std::unique_ptr<Slot>> slots;  // one per pool thread, grows only
  std::atomic<std::size_t> nslots{0};

  // The block being run; written by the launching thread before `go`.
  LaunchCtx* ctx = nullptr;
  unsigned nthreads = 0;
  uint3 block{0, 0, 0};
  unsigned char* smem = nullptr;
  std::optional<std::barrier<BarrierDone>> bar;
  std::vector<std::unique_ptr<WarpSync>> warps;
  std::atomic<unsigned> remaining{0};
  std::atomic<std::uint64_t> progress{0};
  // Guards the block description against the watchdog reading it while the
  // launcher moves on to the next block.
  std::mutex block_m;
  bool block_active = false;

  void ensure_threads(unsigned n);
  void thread_loop(unsigned index);
  void run_cuda_thread(unsigned tid);
  void run_block(LaunchCtx& c, std::uint64_t linear);
};

Engine& engine();

// A forked child has none of the pool threads: start from an empty pool.
// Warp records are leaked, not destroyed: destroying a condition variable
// that other (now absent) threads waited on can block.
}  // namespace

void mode_prepare_fork() {
  engine().create_m.lock();
  engine().block_m.lock();
}
void mode_parent_after_fork() {
  engine().block_m.unlock();
  engine().create_m.unlock();
}
void mode_child_after_fork() {
  Engine& e = engine();
  new (&e.create_m) std::mutex;
  new (&e.block_m) std::mutex;
  e.slots.clear();
  e.nslots.store(0, std::memory_order_relaxed);
  for (auto& w : e.warps) (void)w.release();
  e.warps.clear();
  e.block_active = false;
}

namespace {

Engine& engine() {
  static Engine* e = new Engine;  // never destroyed: detached threads use it
  return *e;
}

thread_local unsigned tl_tid = 0;
thread_local bool tl_active = false;

void BarrierDone::operator()() noexcept {
  for (unsigned t = 0; t < e->nthreads; ++t) {
    auto& s = e->slots[t]->state;
    if (s.load(std::memory_order_relaxed) == TState::kBarrier)
      s.store(TState::kRunning, std::memory_order_relaxed);
  }
  e->progress.fetch_add(1, std::memory_order_relaxed);
}

void* thread_entry(void* arg) {
  const auto index = static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(arg));
  engine().thread_loop(index);
  return nullptr;
}

void Engine::ensure_threads(unsigned n) {
  std::lock_guard lk(create_m);
  while (slots.size() < n) {
    slots.push_back(std::make_unique<Slot>());
    const auto index = static_cast<unsigned>(slots.size() - 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    std::size_t stack = config().stack_bytes;
    if (stack < 256 * 1024) stack = 256 * 1024;
    pthread_attr_setstacksize(&attr, stack);
    pthread_t th;
    const int rc = pthread_create(&th, &attr, &thread_entry,
                                  reinterpret_cast<void*>(static_cast<std::uintptr_t>(index)));
    pthread_attr_destroy(&attr);
    if (rc != 0) fail("cannot start OS thread %u of the block (error %d)", index, rc);
  }
  nslots.store(slots.size(), std::memory_order_release);
}

void Engine::thread_loop(unsigned index) {
  Slot* slot;
  {
    std::lock_guard lk(create_m);
    slot = slots[index].get();
  }
  unsigned seen = 0;
  for (;;) {
    slot->go.wait(seen, std::memory_order_acquire);
    seen = slot->go.load(std::memory_order_acquire);
    run_cuda_thread(index);
  }
}

void Engine::run_cuda_thread(unsigned tid) {
  const KernelLaunch& l = *ctx->launch;
  threadIdx = thread_coords(tid, l.block);
  blockIdx = block;
  blockDim = l.block;
  gridDim = l.grid;
  tl_tid = tid;
  tl_active = true;
  tl_in_kernel = true;
  l.invoke(l.closure);
  tl_in_kernel = false;
  tl_active = false;
  {
    WarpSync& ws = *warps[tid / 32];
    std::lock_guard lk(ws.m);
    ws.core.live &= ~(1u << (tid % 32));
    if (ws.core.arrived != 0 && ws.core.arrived == ws.core.live) {
      const unsigned lanes = ws.core.arrived;
      ws.core.complete(tid / 32, nthreads);
      for (unsigned i = 0; i < 32; ++i) {
        if (lanes >> i & 1u) slots[tid / 32 * 32 + i]->state.store(TState::kRunning, std::memory_order_relaxed);
      }
      ++ws.generation;
      ws.cv.notify_all();
    }
  }
  slots[tid]->state.store(TState::kExited, std::memory_order_relaxed);
  progress.fetch_add(1, std::memory_order_relaxed);
  bar->arrive_and_drop();
  if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining.notify_all();
}

void Engine::run_block(LaunchCtx& c, std::uint64_t linear) {
  const KernelLaunch& l = *c.launch;
  std::unique_lock blk(block_m);
  block = block_coords(linear, l.grid);
  nthreads = c.nthreads;
  if (smem) std::memset(smem, kSmemPoison, l.dynamic_smem_bytes);
  while (warps.size() < c.nwarps) warps.push_back(std::make_unique<WarpSync>());
  for (unsigned w = 0; w < c.nwarps; ++w) warps[w]->core.reset(warp_exists_mask(w, nthreads));
  for (unsigned t = 0; t < nthreads; ++t) slots[t]->state.store(TState::kRunning, std::memory_order_relaxed);
  bar.emplace(static_cast<std::ptrdiff_t>(nthreads), BarrierDone{this});
  remaining.store(nthreads, std::memory_order_relaxed);
  block_active = true;
  blk.unlock();
  for (unsigned t = 0; t < nthreads; ++t) {
    slots[t]->go.fetch_add(1, std::memory_order_release);
    slots[t]->go.notify_one();
  }
  for (unsigned r = remaining.load(std::memory_order_acquire); r != 0;
       r = remaining.load(std::memory_order_acquire)) {
    remaining.wait(r, std::memory_order_acquire);
  }
  blk.lock();
  block_active = false;
  bar.reset();
}

}  // namespace

void mode_run_grid(LaunchCtx& c) {
  Engine& e = engine();
  e.ensure_threads(c.nthreads);
  e.ctx = &c;
  const std::size_t bytes = c.launch->dynamic_smem_bytes;
  e.smem = nullptr;
  if (bytes > 0 && posix_memalign(reinterpret_cast<void**>(&e.smem), 16, bytes) != 0) {
    fail("cannot allocate %zu bytes of dynamic shared memory", bytes);
  }
  // Blocks strictly one after another: __shared__ is a plain static here.
  for (std::uint64_t b = 0; b < c.nblocks; ++b) e.run_block(c, b);
  std::free(e.smem);
  e.smem = nullptr;
  e.ctx = nullptr;
}

std::uint64_t mode_progress() noexcept { return engine().progress.load(std::memory_order_relaxed); }

bool mode_stalled(std::string* why) {
  Engine& e = engine();
  std::lock_guard blk(e.block_m);
  if (!e.block_active) return false;
  const unsigned n = e.nthreads;
  unsigned live = 0;
  for (unsigned t = 0; t < n; ++t) {
    const TState s = e.slots[t]->state.load(std::memory_order_relaxed);
    if (s == TState::kRunning || s == TState::kNotStarted) return false;
    live += s != TState::kExited;
  }
  if (live == 0) return false;
  // Everyone left is parked. Lock the warps so their records are stable;
  // parked lanes do not hold these locks.
  std::vector<std::unique_lock<std::mutex>> locks;
  for (unsigned w = 0; w < (n + 31) / 32; ++w) locks.emplace_back(e.warps[w]->m);
  const std::string d = describe_deadlock(
      n, [&](unsigned t) { return e.slots[t]->state.load(std::memory_order_relaxed); },
      [&](unsigned w) -> const WarpCore& { return e.warps[w]->core; });
  *why = "block " + coords(e.block) + ": " + d;
  return true;
}

void syncthreads() noexcept {
  if (!tl_active) fail("__syncthreads called outside a kernel");
  Engine& e = engine();
  e.slots[tl_tid]->state.store(TState::kBarrier, std::memory_order_relaxed);
  e.bar->arrive_and_wait();
}

std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t value, int arg,
                      int width) noexcept {
  if (!tl_active) fail("%s called outside a kernel", op_name(op));
  Engine& e = engine();
  const unsigned tid = tl_tid, w = tid / 32, l = tid % 32;
  if (!(mask >> l & 1u)) {
    fail("block %s thread %u: %s with mask 0x%08x that does not name the calling lane %u",
         coords(blockIdx).c_str(), tid, op_name(op), mask, l);
  }
  WarpSync& ws = *e.warps[w];
  std::unique_lock lk(ws.m);
  ws.core.lane[l] = LaneOp{op, mask, arg, width, value, 0};
  ws.core.arrived |= 1u << l;
  if (ws.core.arrived == ws.core.live) {
    const unsigned lanes = ws.core.arrived;
    ws.core.complete(w, e.nthreads);
    for (unsigned i = 0; i < 32; ++i) {
      if (lanes >> i & 1u) e.slots[w * 32 + i]->state.store(TState::kRunning, std::memory_order_relaxed);
    }
    ++ws.generation;
    e.progress.fetch_add(1, std::memory_order_relaxed);
    ws.cv.notify_all();
  } else {
    e.slots[tid]->state.store(TState::kWarp, std::memory_order_relaxed);
    const std::uint64_t gen = ws.generation;
    ws.cv.wait(lk, [&] { return ws.generation != gen; });
  }
  return ws.core.lane[l].result;
}

void* dynamic_smem() noexcept { return engine().smem; }

// Launches in clusters are refused in this mode (common.cpp): every block is a cluster of one.
unsigned cluster_blocks() noexcept { return 1; }
unsigned cluster_block_rank() noexcept { return 0; }
void cluster_sync() noexcept { syncthreads(); }
void* cluster_map_shared(void* p, unsigned rank) noexcept {
  if (rank != 0) fail("cluster_map_shared to rank %u of a cluster of 1 block", rank);
  return p;
}

}  // namespace simcuda::detail

#endif  // threads mode
