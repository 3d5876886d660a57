// Fiber mode (the default): every CUDA thread of a block is a fiber with its
// own stack; one OS worker runs one block at a time, so blocks run in
// parallel on the cores. A fiber runs until it blocks in a barrier or a warp
// collective, then hands over directly to the next runnable fiber of the
// block. When no fiber is runnable and some are still alive, the block is
// deadlocked, which is diagnosed on the spot.
#include "engine.h"

#if !(defined(SIMCUDA_THREADS) && SIMCUDA_THREADS)

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define SIMCUDA_ASAN 1
#else
#define SIMCUDA_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
// GCC 12 ships the runtime entry points but not their declarations.
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
}
#define SIMCUDA_TSAN 1
#else
#define SIMCUDA_TSAN 0
#endif

#if defined(__x86_64__) && !defined(SIMCUDA_USE_UCONTEXT)
#define SIMCUDA_ASM_SWITCH 1
#else
#define SIMCUDA_ASM_SWITCH 0
#include <ucontext.h>
#endif

namespace simcuda::detail {
namespace {

// --------------------------------------------------------- context switch --
#if SIMCUDA_ASM_SWITCH
// swapcontext saves and restores the signal mask with a system call on every
// switch, which made barrier-heavy kernels 8-10x slower. A switch only has to
// preserve what the SysV ABI says a callee keeps: rbx, rbp, r12-r15, the
// stack pointer, and the control bits of MXCSR and the x87 FPU.
extern "C" void simcuda_switch(void** save_sp, void* load_sp);
extern "C" void simcuda_fiber_trampoline();
asm(R"(
  .pushsection .text
  .globl simcuda_switch
  .type simcuda_switch, @function
  .p2align 4
simcuda_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr 8(%rsp)
  fnstcw (%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr 8(%rsp)
  fldcw (%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size simcuda_switch, .-simcuda_switch

  .globl simcuda_fiber_trampoline
  .type simcuda_fiber_trampoline, @function
  .p2align 4
simcuda_fiber_trampoline:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size simcuda_fiber_trampoline, .-simcuda_fiber_trampoline
  .popsection
)");

struct Context {
  void* sp = nullptr;
};

void make_context(Context* c, char* lo, std::size_t size, void (*entry)(void*), void* arg) {
  auto top = reinterpret_cast<std::uintptr_t>(lo + size) & ~std::uintptr_t{15};
  // The return slot sits 8 bytes off a 16-byte boundary, so the trampoline
  // starts with the stack aligned as the ABI wants before its call.
  auto* slot = reinterpret_cast<std::uint64_t*>(top - 24);
  slot[0] = reinterpret_cast<std::uint64_t>(&simcuda_fiber_trampoline);
  slot[-1] = 0;                                         // rbp
  slot[-2] = 0;                                         // rbx
  slot[-3] = reinterpret_cast<std::uint64_t>(arg);      // r12
  slot[-4] = reinterpret_cast<std::uint64_t>(entry);    // r13
  slot[-5] = 0;                                         // r14
  slot[-6] = 0;                                         // r15
  slot[-7] = 0x1f80;                                    // MXCSR: defaults, all masked
  slot[-8] = 0x037f;                                    // x87 control word: defaults
  c->sp = &slot[-8];
}

inline void jump(Context* from, Context* to) { simcuda_switch(&from->sp, to->sp); }

#else
// Portable fallback for other CPUs.
struct Context {
  ucontext_t uc;
};

void (*g_entry)(void*);
void context_entry(unsigned hi, unsigned lo) {
  const auto p = (static_cast<std::uintptr_t>(hi) << 32) | lo;
  g_entry(reinterpret_cast<void*>(p));
}

void make_context(Context* c, char* lo, std::size_t size, void (*entry)(void*), void* arg) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = lo;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = nullptr;
  g_entry = entry;
  const auto p = reinterpret_cast<std::uintptr_t>(arg);
  makecontext(&c->uc, reinterpret_cast<void (*)()>(&context_entry), 2,
              static_cast<unsigned>(p >> 32), static_cast<unsigned>(p & 0xffffffffu));
}

inline void jump(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
#endif

// ------------------------------------------------------------- fibers --
struct Worker;

struct Fiber {
  Context ctx;
  char* map = nullptr;  // mapping including the guard page
  std::size_t map_size = 0;
  char* stack_lo = nullptr;
  std::size_t stack_size = 0;
  void* asan_fake = nullptr;
  void* tsan_fiber = nullptr;
  Worker* worker = nullptr;
  unsigned tid = 0;
  uint3 tid3{0, 0, 0};
  TState state = TState::kNotStarted;

  ~Fiber() {
#if SIMCUDA_TSAN
    if (tsan_fiber != nullptr) __tsan_destroy_fiber(tsan_fiber);
#endif
    if (map == nullptr) return;
#if SIMCUDA_ASAN
    // A parked fiber leaves poisoned redzones of its live frames behind.
    __asan_unpoison_memory_region(map, map_size);
#endif
    munmap(map, map_size);
  }
};

// splitmix64: small, and good enough to vary the fiber order.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

void fiber_main(void* arg);

struct alignas(64) Worker {
  std::atomic<std::uint64_t> progress{0};  // read by the watchdog

  Context sched;
  const void* sched_lo = nullptr;
  std::size_t sched_size = 0;
  void* sched_fake = nullptr;
  void* tsan_sched = nullptr;

  std::vector<std::unique_ptr<Fiber>> pool;
  Fiber* current = nullptr;

  // The block being run.
  LaunchCtx* ctx = nullptr;
  unsigned nthreads = 0;
  unsigned live = 0;
  unsigned bar_arrived = 0;
  std::vector<unsigned> bar_waiters;
  std::vector<WarpCore> warps;
  std::vector<unsigned> queue;  // ring buffer of runnable fibers
  std::size_t q_head = 0, q_count = 0;
  bool shuffle = false;
  Rng rng{0};
  unsigned char* smem = nullptr;
  std::size_t smem_bytes = 0;
  std::vector<unsigned> order;
  // The block's cluster (launches in clusters), and whether the pending barrier is the
  // cluster's rather than the block's.
  ClusterState* cluster = nullptr;
  unsigned cluster_size = 1;
  unsigned cluster_rank = 0;
  bool bar_cluster = false;

  Worker() {
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      void* lo = nullptr;
      std::size_t size = 0;
      pthread_attr_getstack(&attr, &lo, &size);
      pthread_attr_destroy(&attr);
      sched_lo = lo;
      sched_size = size;
    }
#if SIMCUDA_TSAN
    tsan_sched = __tsan_get_current_fiber();
#endif
  }

  void tick() { progress.store(progress.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }

  void ensure_fibers(unsigned n) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t stack = (config().stack_bytes + page - 1) / page * page;
    while (pool.size() < n) {
      auto f = std::make_unique<Fiber>();
      f->map_size = stack + page;
      void* m = mmap(nullptr, f->map_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m == MAP_FAILED) fail("cannot map a %zu-byte fiber stack", f->map_size);
      f->map = static_cast<char*>(m);
      // Guard page: an overflowing kernel stack faults instead of silently
      // writing into the neighbouring fiber's stack.
      mprotect(f->map, page, PROT_NONE);
      f->stack_lo = f->map + page;
      f->stack_size = stack;
      f->worker = this;
#if SIMCUDA_TSAN
      f->tsan_fiber = __tsan_create_fiber(0);
#endif
      make_context(&f->ctx, f->stack_lo, f->stack_size, &fiber_main, f.get());
      pool.push_back(std::move(f));
    }
  }

  void push(unsigned tid) {
    queue[(q_head + q_count) % nthreads] = tid;
    ++q_count;
  }
  // Pushes a set of released fibers, in random order when shuffling.
  void push_all(unsigned* ids, std::size_t n) {
    if (shuffle) {
      for (std::size_t i = n; i > 1; --i) std::swap(ids[i - 1], ids[rng.next() % i]);
    }
    for (std::size_t i = 0; i < n; ++i) push(ids[i]);
  }
  Fiber* pop() {
    if (q_count == 0) return nullptr;
    const unsigned t = queue[q_head];
    q_head = (q_head + 1) % nthreads;
    --q_count;
    return pool[t].get();
  }

  // Switches from `from` (the running fiber, or nullptr for the scheduler)
  // to `to` (a fiber, or nullptr for the scheduler).
  void transfer(Fiber* from, Fiber* to) {
    tick();
    Context* src = from ? &from->ctx : &sched;
    Context* dst = to ? &to->ctx : &sched;
    current = to;
    if (to) {
      threadIdx = to->tid3;
      to->state = TState::kRunning;
    }
#if SIMCUDA_ASAN
    void** fake = from ? &from->asan_fake : &sched_fake;
    __sanitizer_start_switch_fiber(fake, to ? to->stack_lo : sched_lo,
                                   to ? to->stack_size : sched_size);
#endif
#if SIMCUDA_TSAN
    __tsan_switch_to_fiber(to ? to->tsan_fiber : tsan_sched, 0);
#endif
    jump(src, dst);
#if SIMCUDA_ASAN
    __sanitizer_finish_switch_fiber(*fake, nullptr, nullptr);
#endif
  }

  // The running fiber cannot continue: run someone else.
  void block_current() {
    Fiber* self = current;
    Fiber* next = pop();
    if (next == self) {
      self->state = TState::kRunning;
      return;
    }
    transfer(self, next);
  }

  // The cluster barrier across workers: every other block of the cluster arrives or has exited.
  // The whole worker waits (its block's threads are all parked), as an SM would.
  void cluster_wait() {
    ClusterState& cs = *cluster;
    std::unique_lock lk(cs.m);
    const std::uint64_t generation = cs.generation;
    if (++cs.arrived + cs.exited == cluster_size) {
      cs.arrived = 0;
      ++cs.generation;
      cs.cv.notify_all();
      return;
    }
    cs.cv.wait(lk, [&] { return cs.generation != generation; });
  }

  // The block is done: it counts as arrived at every later cluster barrier, and its shared
  // memory stays mapped until every block of the cluster is done, as on the GPU, where a
  // cluster's blocks are resident together.
  void cluster_exit() {
    ClusterState& cs = *cluster;
    std::unique_lock lk(cs.m);
    ++cs.exited;
    if (cs.arrived > 0 && cs.arrived + cs.exited == cluster_size) {
      cs.arrived = 0;
      ++cs.generation;
    }
    cs.cv.notify_all();
    cs.cv.wait(lk, [&] { return cs.exited == cluster_size; });
  }

  void release_barrier() {
    if (bar_cluster) cluster_wait();
    bar_arrived = 0;
    push_all(bar_waiters.data(), bar_waiters.size());
    bar_waiters.clear();
  }

  void complete_warp(unsigned w) {
    WarpCore& core = warps[w];
    const unsigned lanes = core.arrived;
    core.complete(w, nthreads);
    unsigned ids[32];
    std::size_t n = 0;
    for (unsigned l = 0; l < 32; ++l) {
      if (lanes >> l & 1u) ids[n++] = w * 32 + l;
    }
    push_all(ids, n);
  }

  void syncthreads() { barrier(false); }
  // A cluster of one block is the block: its barrier is __syncthreads.
  void cluster_sync() { barrier(cluster != nullptr); }

  void barrier(bool of_cluster) {
    Fiber* f = current;
    if (bar_arrived != 0 && bar_cluster != of_cluster) {
      fail("block %s thread %u: waits in %s while other threads wait in %s", coords(blockIdx).c_str(),
           f->tid, of_cluster ? "a cluster barrier" : "__syncthreads",
           of_cluster ? "__syncthreads" : "a cluster barrier");
    }
    bar_cluster = of_cluster;
    f->state = TState::kBarrier;
    bar_waiters.push_back(f->tid);
    if (++bar_arrived == live) release_barrier();
    block_current();
  }

  std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width) {
    Fiber* f = current;
    const unsigned w = f->tid / 32, l = f->tid % 32;
    if (!(mask >> l & 1u)) {
      fail("block %s thread %u: %s with mask 0x%08x that does not name the calling lane %u",
           coords(blockIdx).c_str(), f->tid, op_name(op), mask, l);
    }
    WarpCore& core = warps[w];
    core.lane[l] = LaneOp{op, mask, arg, width, value, 0};
    core.arrived |= 1u << l;
    f->state = TState::kWarp;
    if (core.arrived == core.live) complete_warp(w);
    block_current();
    return core.lane[l].result;
  }

  void exit_current() {
    Fiber* f = current;
    f->state = TState::kExited;
    --live;
    WarpCore& core = warps[f->tid / 32];
    core.live &= ~(1u << (f->tid % 32));
    // An exited thread counts as arrived at every later barrier, and drops
    // out of the pending collective of its warp.
    if (core.arrived != 0 && core.arrived == core.live) complete_warp(f->tid / 32);
    if (bar_arrived != 0 && bar_arrived == live) release_barrier();
    transfer(f, pop());
  }

  void run_block(LaunchCtx& c, std::uint64_t linear) {
    const KernelLaunch& l = *c.launch;
    blockIdx = block_coords(linear, l.grid);
    blockDim = l.block;
    gridDim = l.grid;
    nthreads = c.nthreads;
    ensure_fibers(nthreads);
    if (smem) std::memset(smem, kSmemPoison, l.dynamic_smem_bytes);
    live = nthreads;
    bar_arrived = 0;
    bar_cluster = false;
    cluster = nullptr;
    cluster_size = 1;
    cluster_rank = 0;
    if (c.cluster > 1) {
      cluster_size = c.cluster;
      cluster_rank = static_cast<unsigned>(linear % c.cluster);
      cluster = &c.clusters[linear / c.cluster];
      std::lock_guard lk(cluster->m);
      cluster->smem[cluster_rank] = smem;
    }
    bar_waiters.clear();
    bar_waiters.reserve(nthreads);
    warps.resize(c.nwarps);
    for (unsigned w = 0; w < c.nwarps; ++w) warps[w].reset(warp_exists_mask(w, nthreads));
    queue.assign(nthreads, 0);
    q_head = q_count = 0;
    shuffle = config().shuffle;
    rng = Rng{config().shuffle_seed ^ (linear * 0xd1342543de82ef95ull)};
    order.resize(nthreads);
    for (unsigned t = 0; t < nthreads; ++t) {
      order[t] = t;
      Fiber* f = pool[t].get();
      f->tid = t;
      f->tid3 = thread_coords(t, l.block);
      f->state = TState::kNotStarted;
    }
    push_all(order.data(), order.size());
    transfer(nullptr, pop());
    if (live != 0) {
      const std::string why = describe_deadlock(
          nthreads, [this](unsigned t) { return pool[t]->state; },
          [this](unsigned w) -> const WarpCore& { return warps[w]; });
      fail("block %s: %s", coords(blockIdx).c_str(), why.c_str());
    }
    if (cluster != nullptr) cluster_exit();
  }

  void* map_shared(void* p, unsigned rank) {
    if (rank >= cluster_size) {
      fail("block %s thread %u: cluster_map_shared to rank %u of a cluster of %u blocks",
           coords(blockIdx).c_str(), current->tid, rank, cluster_size);
    }
    if (cluster == nullptr) return p;
    auto* byte = static_cast<unsigned char*>(p);
    if (smem == nullptr || byte < smem || byte >= smem + smem_bytes) {
      fail("block %s thread %u: cluster_map_shared of %p, which is not in the block's dynamic "
           "shared memory (the only shared memory the simulator maps across a cluster)",
           coords(blockIdx).c_str(), current->tid, p);
    }
    unsigned char* target;
    {
      std::lock_guard lk(cluster->m);
      target = cluster->smem[rank];
    }
    if (target == nullptr) {
      fail("block %s thread %u: cluster_map_shared to rank %u, which has not started: a "
           "cluster_sync must come first", coords(blockIdx).c_str(), current->tid, rank);
    }
    return target + (byte - smem);
  }

  void run_blocks(LaunchCtx& c) {
    const std::size_t bytes = c.launch->dynamic_smem_bytes;
    smem = nullptr;
    smem_bytes = bytes;
    // Exactly the requested size, so ASan's redzone starts at the first byte
    // past the end.
    if (bytes > 0 && posix_memalign(reinterpret_cast<void**>(&smem), 16, bytes) != 0) {
      fail("cannot allocate %zu bytes of dynamic shared memory", bytes);
    }
    ctx = &c;
    tl_in_kernel = true;
    for (;;) {
      const std::uint64_t b = c.next_block.fetch_add(1, std::memory_order_relaxed);
      if (b >= c.nblocks) break;
      run_block(c, b);
      tick();
    }
    tl_in_kernel = false;
    ctx = nullptr;
    std::free(smem);
    smem = nullptr;
  }
};

thread_local Worker* tl_worker = nullptr;

// Every thread that launches runs blocks itself, with a worker of its own, which goes with the
// thread: a program whose short-lived threads launch kernels (ranks as threads, one thread per
// task) would otherwise keep every finished thread's fiber stacks mapped, until mmap fails.
struct WorkerOwner {
  Worker* worker = nullptr;
  ~WorkerOwner();
};
thread_local WorkerOwner tl_worker_owner;

Worker& this_worker() {
  if (tl_worker == nullptr) {
    tl_worker = new Worker;
    tl_worker_owner.worker = tl_worker;
  }
  return *tl_worker;
}

void fiber_main(void* arg) {
  auto* f = static_cast<Fiber*>(arg);
#if SIMCUDA_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  for (;;) {
    Worker* w = f->worker;
    w->ctx->launch->invoke(w->ctx->launch->closure);
    w->exit_current();  // returns when the fiber is reused for another block
  }
}

// ------------------------------------------------------------ pool --
struct Pool {
  std::mutex m;
  std::condition_variable cv;
  std::condition_variable done_cv;
  std::vector<Worker*> workers;  // for the watchdog
  unsigned threads = 0;          // background workers started
  std::uint64_t generation = 0;
  LaunchCtx* job = nullptr;
  unsigned wanted = 0;   // background workers asked to join the current job
  unsigned joined = 0;
  unsigned running = 0;

  void ensure(unsigned n) {
    while (threads < n) {
      ++threads;
      std::thread([this] { loop(); }).detach();
    }
  }

  void loop() {
    Worker& w = this_worker();
    {
      std::lock_guard lk(m);
      workers.push_back(&w);
    }
    std::uint64_t seen = 0;
    std::unique_lock lk(m);
    for (;;) {
      cv.wait(lk, [&] { return generation != seen && joined < wanted; });
      seen = generation;
      ++joined;
      LaunchCtx* c = job;
      lk.unlock();
      w.run_blocks(*c);
      lk.lock();
      if (--running == 0) done_cv.notify_all();
    }
  }
};

Pool& pool();

// A forked child (gtest's default death tests fork) has only the forking
// thread: forget the workers, or the first multi-block launch would wait for
// helpers that do not exist. The locks and condition variables are rebuilt
// rather than unlocked: other threads may have been waiting on them.
}  // namespace

void mode_prepare_fork() { pool().m.lock(); }
void mode_parent_after_fork() { pool().m.unlock(); }
void mode_child_after_fork() {
  Pool& p = pool();
  new (&p.m) std::mutex;
  new (&p.cv) std::condition_variable;
  new (&p.done_cv) std::condition_variable;
  p.workers.clear();
  p.threads = 0;
  p.job = nullptr;
  p.wanted = p.joined = p.running = 0;
}

namespace {

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: detached workers use it
  return *p;
}

WorkerOwner::~WorkerOwner() {
  if (worker == nullptr) return;
  Pool& p = pool();
  {
    std::lock_guard lk(p.m);
    p.workers.erase(std::remove(p.workers.begin(), p.workers.end(), worker), p.workers.end());
  }
  tl_worker = nullptr;
  delete worker;
}

}  // namespace

void mode_run_grid(LaunchCtx& ctx) {
  Pool& p = pool();
  Worker& self = this_worker();
  {
    std::lock_guard lk(p.m);
    if (std::find(p.workers.begin(), p.workers.end(), &self) == p.workers.end())
      p.workers.push_back(&self);
  }
  // The blocks of a cluster run at once, each on a worker of its own (the workers take blocks in
  // order, so the lowest unfinished cluster always has all its blocks taken).
  const std::uint64_t helpers64 =
      std::max<std::uint64_t>(std::min<std::uint64_t>(ctx.nblocks, config().workers),
                              ctx.cluster) - 1;
  const unsigned helpers = static_cast<unsigned>(helpers64);
  if (helpers > 0) {
    std::lock_guard lk(p.m);
    p.ensure(helpers);
    p.job = &ctx;
    p.wanted = helpers;
    p.joined = 0;
    p.running = helpers;
    ++p.generation;
    p.cv.notify_all();
  }
  self.run_blocks(ctx);
  if (helpers > 0) {
    std::unique_lock lk(p.m);
    p.done_cv.wait(lk, [&] { return p.running == 0; });
    p.job = nullptr;
    p.wanted = 0;
  }
}

std::uint64_t mode_progress() noexcept {
  Pool& p = pool();
  std::lock_guard lk(p.m);
  std::uint64_t sum = 0;
  for (Worker* w : p.workers) sum += w->progress.load(std::memory_order_relaxed);
  return sum;
}

bool mode_stalled(std::string*) { return false; }

void syncthreads() noexcept {
  Worker* w = tl_worker;
  if (w == nullptr || w->current == nullptr) fail("__syncthreads called outside a kernel");
  w->syncthreads();
}

std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t value, int arg,
                      int width) noexcept {
  Worker* w = tl_worker;
  if (w == nullptr || w->current == nullptr) fail("%s called outside a kernel", op_name(op));
  return w->warp_op(op, mask, value, arg, width);
}

unsigned cluster_blocks() noexcept {
  Worker* w = tl_worker;
  return w ? w->cluster_size : 1;
}

unsigned cluster_block_rank() noexcept {
  Worker* w = tl_worker;
  return w ? w->cluster_rank : 0;
}

void cluster_sync() noexcept {
  Worker* w = tl_worker;
  if (w == nullptr || w->current == nullptr) fail("cluster_sync called outside a kernel");
  w->cluster_sync();
}

void* cluster_map_shared(void* p, unsigned rank) noexcept {
  Worker* w = tl_worker;
  if (w == nullptr || w->current == nullptr) fail("cluster_map_shared called outside a kernel");
  return w->map_shared(p, rank);
}

void* dynamic_smem() noexcept {
  Worker* w = tl_worker;
  return w ? w->smem : nullptr;
}

}  // namespace simcuda::detail

#endif  // fiber mode
