// Internal interface between the launch front end, the two execution modes
// and the runtime stand-in. Not installed.
#pragma once

#include <simcuda/simcuda.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace simcuda::detail {

// ------------------------------------------------------------ settings --
struct Config {
  std::size_t stack_bytes = 0;     // per fiber / per CUDA-thread OS thread
  unsigned workers = 1;            // fiber mode: OS threads running blocks
  bool shuffle = false;            // fiber mode: random fiber order
  std::uint64_t shuffle_seed = 0;
  std::atomic<double> watchdog_seconds{120};  // 0 disables; read by the watchdog thread
  std::atomic<double> nccl_timeout_seconds{120};  // 0 disables; read by waiting NCCL ranks
};
Config& config();  // read once from the environment, adjustable by sim_control.h

// ------------------------------------------------------------- launches --
constexpr unsigned kMaxClusterBlocks = 8;  // CUDA's portable cluster size

// One thread-block cluster in flight (fiber mode): its blocks run on as many workers at once,
// meet in its barrier, and reach each other's dynamic shared memory through `smem`.
struct ClusterState {
  std::mutex m;
  std::condition_variable cv;
  unsigned arrived = 0;          // blocks waiting in the current barrier
  unsigned exited = 0;           // blocks whose every thread has exited: arrived for good
  std::uint64_t generation = 0;  // completed barriers
  unsigned char* smem[kMaxClusterBlocks] = {};  // each block's, once it has started
};

struct LaunchCtx {
  const KernelLaunch* launch;
  unsigned nthreads;
  unsigned nwarps;
  std::uint64_t nblocks;
  std::atomic<std::uint64_t> next_block{0};
  unsigned cluster = 1;                       // blocks per cluster
  std::unique_ptr<ClusterState[]> clusters;  // nblocks / cluster of them when cluster > 1
};

// The launch in flight (one at a time), for messages and the watchdog.
const LaunchCtx* current_launch() noexcept;

// Demangled name of the function at `fn`, or its address.
std::string symbol_name(const void* fn);

// Prints "simcuda: <kernel>: <cause>" and aborts.
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

uint3 block_coords(std::uint64_t linear, const dim3& grid) noexcept;
uint3 thread_coords(unsigned tid, const dim3& block) noexcept;
std::string coords(const uint3& v);

// Set while a thread executes kernel code, to reject nested launches.
extern thread_local bool tl_in_kernel;

// --------------------------------------------------- warp collectives --
struct LaneOp {
  WarpOp op;
  unsigned mask;
  int arg;
  int width;
  std::uint64_t value;
  std::uint64_t result;
};

// The part of a warp collective that does not depend on how lanes wait:
// validation and the exchange itself, computed by the last arriving lane.
struct WarpCore {
  unsigned exists = 0;   // lanes that belong to the block
  unsigned live = 0;     // exists minus exited lanes
  unsigned arrived = 0;  // lanes parked in the pending collective
  LaneOp lane[32];

  void reset(unsigned exists_mask) noexcept {
    exists = live = exists_mask;
    arrived = 0;
  }
  // Aborts on misuse; fills lane[i].result for every arrived lane and clears
  // `arrived`. `nthreads` is the block size, for messages.
  void complete(unsigned warp, unsigned nthreads) noexcept;
};

const char* op_name(WarpOp op) noexcept;
unsigned warp_exists_mask(unsigned warp, unsigned nthreads) noexcept;

enum class TState : std::uint8_t { kNotStarted, kRunning, kBarrier, kWarp, kExited };

// Explains why no thread of the block can move. `state(i)` and `warp(w)`
// give the current state of thread i and the collective pending in warp w.
template <class StateFn, class WarpFn>
std::string describe_deadlock(unsigned nthreads, StateFn state, WarpFn warp);
std::string lane_list(unsigned mask);

// ---------------------------------------------------- execution modes --
// Runs every block of the launch; returns when the grid is done.
void mode_run_grid(LaunchCtx& ctx);
// A number that grows while the launch makes progress.
std::uint64_t mode_progress() noexcept;
// Threads mode: true (with an explanation) when every live thread is parked
// in a barrier or collective that cannot complete. Fiber mode detects that
// synchronously and always answers false.
bool mode_stalled(std::string* why);
// pthread_atfork hooks: the child keeps only the forking thread.
void mode_prepare_fork();
void mode_parent_after_fork();
void mode_child_after_fork();

// ------------------------------------------------- runtime stand-in hooks --
void set_last_error(cudaError_t e) noexcept;
std::size_t max_dynamic_smem(const void* kernel) noexcept;
bool stream_is_valid(cudaStream_t s) noexcept;

// Virtual devices (runtime.cpp): how many, the calling thread's current one (cudaSetDevice), and
// the device a stream was created on (the current one for the legacy and per-thread streams; -1
// for a stream that does not exist). A kernel may be launched into a stream of the current
// device only, as in CUDA.
int device_count() noexcept;
int current_device() noexcept;
int stream_device(cudaStream_t s) noexcept;

// Stream capture (runtime.cpp). A launch on a capturing stream is recorded
// into its graph instead of run; one on the legacy stream while a blocking
// stream captures is refused (cudaErrorStreamCaptureImplicit, which also
// invalidates that capture), as in CUDA.
enum class CaptureResult { not_capturing, captured, refused };
CaptureResult capture_launch(const KernelLaunch& l) noexcept;
// A library call on device memory (the cuBLAS and NCCL stand-ins) queued on `st`: to run at once
// when st does not capture; recorded into st's capture, to run at each replay of the graph, as the
// kernels a real library launches would be (an error it returns then ends the replay and is
// cudaGraphLaunch's); or refused, as a launch would be.
enum class LibraryCall { run_now, recorded, refused };
LibraryCall queue_library_call(cudaStream_t st, const std::function<cudaError_t()>& call);
// True when [p, p + bytes) lies inside one live cudaMalloc allocation: what a
// library call that reads or writes device memory (the cuBLAS stand-in) may
// touch.
bool device_range(const void* p, std::size_t bytes) noexcept;
// The device of the live cudaMalloc allocation that holds all of [p, p + bytes), or -1.
int device_of_range(const void* p, std::size_t bytes) noexcept;

// Fills dynamic shared memory before each block: all-ones bytes are a NaN
// in float, double, half and bfloat16, so a read before a write shows.
constexpr unsigned char kSmemPoison = 0xff;

// ------------------------------------------------------------ template --
template <class StateFn, class WarpFn>
std::string describe_deadlock(unsigned nthreads, StateFn state, WarpFn warp) {
  std::string out;
  unsigned at_barrier = 0;
  for (unsigned t = 0; t < nthreads; ++t) at_barrier += state(t) == TState::kBarrier;
  const unsigned nwarps = (nthreads + 31) / 32;
  for (unsigned w = 0; w < nwarps; ++w) {
    unsigned in_warp_op = 0, in_barrier = 0, running = 0;
    for (unsigned l = 0; l < 32 && w * 32 + l < nthreads; ++l) {
      const TState s = state(w * 32 + l);
      if (s == TState::kWarp) in_warp_op |= 1u << l;
      if (s == TState::kBarrier) in_barrier |= 1u << l;
      if (s == TState::kRunning || s == TState::kNotStarted) running |= 1u << l;
    }
    if (in_warp_op == 0) continue;
    const LaneOp& op = warp(w).lane[__builtin_ctz(in_warp_op)];
    char buf[160];
    std::snprintf(buf, sizeof buf, "warp %u: lanes %s wait in %s(mask 0x%08x)", w,
                  lane_list(in_warp_op).c_str(), op_name(op.op), op.mask);
    if (!out.empty()) out += "; ";
    out += buf;
    if (in_barrier) {
      out += " while lanes " + lane_list(in_barrier) + " wait in __syncthreads";
    }
    if (running) out += " while lanes " + lane_list(running) + " are still running";
  }
  if (out.empty()) {
    char buf[128];
    std::snprintf(buf, sizeof buf,
                  "%u thread(s) wait in a __syncthreads that can never complete", at_barrier);
    return buf;
  }
  return "warp diverged between a block barrier and a warp collective (deadlock): " + out;
}

}  // namespace simcuda::detail
