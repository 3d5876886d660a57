// Launch front end shared by both execution modes: configuration checks,
// warp-collective semantics, diagnostics and the watchdog.
#include "engine.h"

#include <simcuda/sim_control.h>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdlib>
#include <mutex>
#include <thread>

extern const int warpSize = 32;

long long int clock64() noexcept {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

namespace simcuda::detail {

thread_local bool tl_in_kernel = false;

namespace {

std::size_t default_stack_bytes() {
#if defined(SIMCUDA_DEFAULT_STACK_KB) && SIMCUDA_DEFAULT_STACK_KB > 0
  return std::size_t{SIMCUDA_DEFAULT_STACK_KB} * 1024;
#elif defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Instrumented frames carry redzones and are several times larger.
  return 256 * 1024;
#else
  return 64 * 1024;
#endif
}

double env_double(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const double d = std::strtod(v, &end);
  return end != v ? d : fallback;
}

std::atomic<const LaunchCtx*> g_current{nullptr};

}  // namespace

Config& config() {
  static Config* c = [] {
    auto* r = new Config{};  // never destroyed: worker threads outlive main
    r->stack_bytes = default_stack_bytes();
    const double kb = env_double("SIMCUDA_STACK_KB", 0);
    if (kb > 0) r->stack_bytes = static_cast<std::size_t>(kb) * 1024;
    const unsigned hw = std::thread::hardware_concurrency();
    r->workers = hw ? hw : 1;
    const double w = env_double("SIMCUDA_WORKERS", 0);
    if (w >= 1) r->workers = static_cast<unsigned>(w);
    if (const char* s = std::getenv("SIMCUDA_SHUFFLE_SEED"); s != nullptr && *s != '\0') {
      r->shuffle = true;
      r->shuffle_seed = std::strtoull(s, nullptr, 0);
    }
    r->watchdog_seconds = env_double("SIMCUDA_WATCHDOG_SEC", 120);
    r->nccl_timeout_seconds = env_double("SIMCUDA_NCCL_TIMEOUT_SEC", 120);
    return r;
  }();
  return *c;
}

const LaunchCtx* current_launch() noexcept { return g_current.load(std::memory_order_acquire); }

void fail(const char* fmt, ...) {
  char cause[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(cause, sizeof cause, fmt, ap);
  va_end(ap);
  const LaunchCtx* l = current_launch();
  const std::string name = l ? symbol_name(l->launch->kernel) : std::string("(no kernel)");
  std::fprintf(stderr, "simcuda: %s: %s\n", name.c_str(), cause);
  std::fflush(stderr);
  std::abort();
}

void misaligned_vector_access(const void* p, std::size_t bytes, const char* kind,
                              const char* via) noexcept {
  const std::string where =
      tl_in_kernel ? "block " + coords(blockIdx) + " thread " + coords(threadIdx) + ": " : "";
  fail("%smisaligned %zu-byte vector %s at %p in %s (vector accesses must be aligned to their "
       "size, as on the GPU)",
       where.c_str(), bytes, kind, p, via);
}

uint3 block_coords(std::uint64_t linear, const dim3& grid) noexcept {
  uint3 b;
  b.x = static_cast<unsigned>(linear % grid.x);
  linear /= grid.x;
  b.y = static_cast<unsigned>(linear % grid.y);
  b.z = static_cast<unsigned>(linear / grid.y);
  return b;
}

uint3 thread_coords(unsigned tid, const dim3& block) noexcept {
  uint3 t;
  t.x = tid % block.x;
  t.y = (tid / block.x) % block.y;
  t.z = tid / (block.x * block.y);
  return t;
}

std::string coords(const uint3& v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "(%u,%u,%u)", v.x, v.y, v.z);
  return buf;
}

const char* op_name(WarpOp op) noexcept {
  switch (op) {
    case WarpOp::kSync: return "__syncwarp";
    case WarpOp::kShflIdx: return "__shfl_sync";
    case WarpOp::kShflUp: return "__shfl_up_sync";
    case WarpOp::kShflDown: return "__shfl_down_sync";
    case WarpOp::kShflXor: return "__shfl_xor_sync";
    case WarpOp::kBallot: return "__ballot_sync";
    case WarpOp::kAny: return "__any_sync";
    case WarpOp::kAll: return "__all_sync";
  }
  return "?";
}

unsigned warp_exists_mask(unsigned warp, unsigned nthreads) noexcept {
  const unsigned first = warp * 32;
  const unsigned n = nthreads - first >= 32 ? 32 : nthreads - first;
  return n == 32 ? 0xffffffffu : (1u << n) - 1u;
}

std::string lane_list(unsigned mask) {
  std::string out;
  for (int l = 0; l < 32;) {
    if (!(mask >> l & 1u)) {
      ++l;
      continue;
    }
    int e = l;
    while (e + 1 < 32 && (mask >> (e + 1) & 1u)) ++e;
    if (!out.empty()) out += ',';
    out += std::to_string(l);
    if (e > l) out += '-' + std::to_string(e);
    l = e + 1;
  }
  return out.empty() ? "none" : out;
}

void WarpCore::complete(unsigned warp, unsigned nthreads) noexcept {
  const unsigned lead = static_cast<unsigned>(__builtin_ctz(arrived));
  const LaneOp& first = lane[lead];
  const std::string where = "block " + coords(blockIdx) + " warp " + std::to_string(warp);
  for (unsigned l = 0; l < 32; ++l) {
    if (!(arrived >> l & 1u)) continue;
    const LaneOp& o = lane[l];
    if (o.op == first.op && o.mask != first.mask) {
      fail("%s: lanes passed different masks to %s (0x%08x from lane %u, 0x%08x from lane %u): "
           "masks must name every live lane of the warp (sub-warp masks are not supported)",
           where.c_str(), op_name(o.op), first.mask, lead, o.mask, l);
    }
    if (o.op != first.op) {
      fail("%s: lanes reached different warp collectives: lane %u in %s(mask 0x%08x), lane %u "
           "in %s(mask 0x%08x)",
           where.c_str(), lead, op_name(first.op), first.mask, l, op_name(o.op), o.mask);
    }
    if (o.width != first.width) {
      fail("%s: lanes disagree on the width of %s (%d vs %d)", where.c_str(), op_name(o.op),
           first.width, o.width);
    }
  }
  if (live & ~first.mask) {
    fail("%s: %s with mask 0x%08x, but the live lanes are 0x%08x: masks must name every live "
         "lane of the warp (sub-warp masks are not supported)",
         where.c_str(), op_name(first.op), first.mask, live);
  }
  const int width = first.width;
  switch (first.op) {
    case WarpOp::kSync:
      break;
    case WarpOp::kBallot:
    case WarpOp::kAny:
    case WarpOp::kAll: {
      unsigned votes = 0;
      for (unsigned l = 0; l < 32; ++l) {
        if ((arrived >> l & 1u) && lane[l].value != 0) votes |= 1u << l;
      }
      const std::uint64_t r = first.op == WarpOp::kBallot ? votes & first.mask
                              : first.op == WarpOp::kAny  ? votes != 0
                                                          : votes == arrived;
      for (unsigned l = 0; l < 32; ++l) lane[l].result = r;
      break;
    }
    default: {
      if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        fail("%s: %s width %d is not a power of two in [1, 32]", where.c_str(),
             op_name(first.op), width);
      }
      for (unsigned l = 0; l < 32; ++l) {
        if (!(arrived >> l & 1u)) continue;
        // PTX shfl semantics: a source outside the lane's segment of `width`
        // lanes means "keep your own value".
        const int seg = static_cast<int>(l) & ~(width - 1);
        const int arg = lane[l].arg;
        int src = static_cast<int>(l);
        switch (first.op) {
          case WarpOp::kShflIdx: src = seg | (arg & (width - 1)); break;
          case WarpOp::kShflUp: src = static_cast<int>(l) - arg; if (src < seg) src = static_cast<int>(l); break;
          case WarpOp::kShflDown: src = static_cast<int>(l) + arg; if (src >= seg + width) src = static_cast<int>(l); break;
          case WarpOp::kShflXor: src = static_cast<int>(l) ^ (arg & 31); if (src >= seg + width) src = static_cast<int>(l); break;
          default: break;
        }
        if (!(live >> src & 1u)) {
          const bool exists_lane = exists >> src & 1u;
          fail("%s lane %u: %s reads lane %d, which %s", where.c_str(), l, op_name(first.op),
               src,
               exists_lane ? "has exited"
                           : ("does not exist (the block has " + std::to_string(nthreads) +
                              " threads)").c_str());
        }
        lane[l].result = lane[src].value;
      }
      break;
    }
  }
  arrived = 0;
}

// ------------------------------------------------------------- watchdog --
namespace {

struct Watchdog {
  std::mutex m;
  std::condition_variable cv;
  bool active = false;
  std::uint64_t epoch = 0;
  bool started = false;

  void begin() {
    std::lock_guard lk(m);
    if (!started) {
      started = true;
      std::thread([this] { loop(); }).detach();
    }
    active = true;
    ++epoch;
    cv.notify_all();
  }
  void end() {
    std::lock_guard lk(m);
    active = false;
  }
  void loop() {
    using clock = std::chrono::steady_clock;
    std::unique_lock lk(m);
    for (;;) {
      cv.wait(lk, [this] { return active; });
      const std::uint64_t my_epoch = epoch;
      std::uint64_t last = mode_progress();
      auto last_change = clock::now();
      auto stall_since = clock::time_point{};
      while (active && epoch == my_epoch) {
        cv.wait_for(lk, std::chrono::milliseconds(100));
        if (!active || epoch != my_epoch) break;
        const double limit = config().watchdog_seconds;
        const std::uint64_t p = mode_progress();
        const auto now = clock::now();
        if (p != last) {
          last = p;
          last_change = now;
          stall_since = {};
          continue;
        }
        std::string why;
        if (mode_stalled(&why)) {
          if (stall_since == clock::time_point{}) stall_since = now;
          // The state must hold for a while: a barrier that just completed
          // can look stalled until its threads are scheduled again.
          if (now - stall_since > std::chrono::milliseconds(300)) fail("%s", why.c_str());
        } else {
          stall_since = {};
        }
        if (limit > 0 && now - last_change > std::chrono::duration<double>(limit)) {
          fail("no progress for %.0f s (SIMCUDA_WATCHDOG_SEC): a thread spins on a flag or "
               "waits for another block, which the simulator (and CUDA) does not support",
               limit);
        }
      }
    }
  }
};

Watchdog& watchdog() {
  static Watchdog* w = new Watchdog;  // never destroyed: its thread outlives main
  return *w;
}

// A forked child (gtest's default death tests fork) has only the forking
// thread: the watchdog and the mode's workers must be started afresh there.
// One registration keeps the lock order of the watchdog thread (its lock,
// then the mode's).
void prepare_fork() {
  watchdog().m.lock();
  mode_prepare_fork();
}
void parent_after_fork() {
  mode_parent_after_fork();
  watchdog().m.unlock();
}
void child_after_fork() {
  mode_child_after_fork();
  Watchdog& w = watchdog();
  // Rebuilt rather than unlocked: absent threads may have been waiting.
  new (&w.m) std::mutex;
  new (&w.cv) std::condition_variable;
  w.started = false;
  w.active = false;
}

std::mutex& launch_mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}

cudaError_t validate(const KernelLaunch& l) noexcept {
  if (l.kernel == nullptr) return cudaErrorInvalidDeviceFunction;
  const dim3 g = l.grid, b = l.block;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    return cudaErrorInvalidConfiguration;
  if (b.x > 1024 || b.y > 1024 || b.z > 64) return cudaErrorInvalidConfiguration;
  if (std::uint64_t{b.x} * b.y * b.z > 1024) return cudaErrorInvalidConfiguration;
  if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) return cudaErrorInvalidConfiguration;
  if (l.dynamic_smem_bytes > max_dynamic_smem(l.kernel)) return cudaErrorInvalidConfiguration;
  if (l.cluster != 1) {
    // Threads mode holds one block's shared memory at a time (its __shared__ are plain statics).
    if (::simcuda::sim::threads_mode()) return cudaErrorNotSupported;
    if (l.cluster == 0 || l.cluster > kMaxClusterBlocks || g.x % l.cluster != 0)
      return cudaErrorInvalidClusterSize;
  }
  // An unknown stream, or one of another device than the current (CUDA refuses that launch).
  const int device = stream_device(l.stream);
  if (device < 0 || device != current_device()) return cudaErrorInvalidResourceHandle;
  return cudaSuccess;
}

}  // namespace

std::atomic<std::uint64_t>& cluster_launch_count() noexcept {
  static std::atomic<std::uint64_t> count{0};
  return count;
}

std::atomic<std::uint64_t>& launched_block_count() noexcept {
  static std::atomic<std::uint64_t> count{0};
  return count;
}

cudaError_t run_launch(const KernelLaunch& l) noexcept {
  if (tl_in_kernel) fail("kernel launch from device code (dynamic parallelism) is not supported");
  const cudaError_t e = validate(l);
  if (e != cudaSuccess) {
    set_last_error(e);
    return e;
  }
  switch (capture_launch(l)) {
    case CaptureResult::not_capturing: break;
    case CaptureResult::captured: return cudaSuccess;
    case CaptureResult::refused:
      set_last_error(cudaErrorStreamCaptureImplicit);
      return cudaErrorStreamCaptureImplicit;
  }
  static const bool fork_handlers_registered =
      pthread_atfork(&prepare_fork, &parent_after_fork, &child_after_fork) == 0;
  (void)fork_handlers_registered;
  std::lock_guard lk(launch_mutex());
  LaunchCtx ctx;
  ctx.launch = &l;
  ctx.nthreads = l.block.x * l.block.y * l.block.z;
  ctx.nwarps = (ctx.nthreads + 31) / 32;
  ctx.nblocks = std::uint64_t{l.grid.x} * l.grid.y * l.grid.z;
  ctx.cluster = l.cluster;
  if (l.cluster > 1) {
    ctx.clusters = std::make_unique<ClusterState[]>(ctx.nblocks / l.cluster);
    cluster_launch_count().fetch_add(1, std::memory_order_relaxed);
  }
  launched_block_count().fetch_add(ctx.nblocks, std::memory_order_relaxed);
  g_current.store(&ctx, std::memory_order_release);
  watchdog().begin();
  mode_run_grid(ctx);
  watchdog().end();
  g_current.store(nullptr, std::memory_order_release);
  return cudaSuccess;
}

}  // namespace simcuda::detail

// ------------------------------------------------------- vector traffic --
namespace simcuda::detail {
namespace {
// Relaxed atomics: threads mode runs a block's threads on OS threads at once.
std::atomic<std::uint64_t> vector_bytes[2][3];
}  // namespace

void count_vector_access(bool store, std::size_t bytes) noexcept {
  const int width = bytes == 16 ? 2 : (bytes == 8 ? 1 : 0);
  vector_bytes[store][width].fetch_add(bytes, std::memory_order_relaxed);
}
}  // namespace simcuda::detail

// ------------------------------------------------------------ controls --
namespace simcuda::sim {

VectorTraffic vector_traffic() noexcept {
  VectorTraffic traffic;
  for (int w = 0; w < 3; ++w) {
    traffic.loaded[w] = detail::vector_bytes[0][w].load(std::memory_order_relaxed);
    traffic.stored[w] = detail::vector_bytes[1][w].load(std::memory_order_relaxed);
  }
  return traffic;
}

void reset_vector_traffic() noexcept {
  for (auto& by_width : detail::vector_bytes)
    for (auto& bytes : by_width) bytes.store(0, std::memory_order_relaxed);
}

void set_shuffle_seed(std::optional<std::uint64_t> seed) {
  std::lock_guard lk(detail::launch_mutex());
  detail::config().shuffle = seed.has_value();
  detail::config().shuffle_seed = seed.value_or(0);
}

std::optional<std::uint64_t> shuffle_seed() {
  std::lock_guard lk(detail::launch_mutex());
  if (!detail::config().shuffle) return std::nullopt;
  return detail::config().shuffle_seed;
}

void set_watchdog_seconds(double seconds) {
  std::lock_guard lk(detail::launch_mutex());
  detail::config().watchdog_seconds = seconds;
}

void set_nccl_timeout_seconds(double seconds) { detail::config().nccl_timeout_seconds = seconds; }

double nccl_timeout_seconds() noexcept { return detail::config().nccl_timeout_seconds; }

std::uint64_t cluster_launches() noexcept {
  return detail::cluster_launch_count().load(std::memory_order_relaxed);
}

std::uint64_t launched_blocks() noexcept {
  return detail::launched_block_count().load(std::memory_order_relaxed);
}

bool threads_mode() noexcept {
#if defined(SIMCUDA_THREADS) && SIMCUDA_THREADS
  return true;
#else
  return false;
#endif
}

}  // namespace simcuda::sim
