// CPU stand-in for the subset of the CUDA runtime the library uses, defined
// against the real declarations of cuda_runtime_api.h. Whatever is not here
// stays an undefined symbol, so a new runtime call in the library is a link
// error in the simulator build rather than a silent no-op.
//
// Every operation runs synchronously at the call, which trivially keeps each
// stream's order; streams and events exist for validation and timing only.
// A capturing stream records its kernels, memsets and copies into a graph
// instead, and a graph launch runs them in order.
#include "engine.h"

#include <simcuda/sim_control.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

namespace simcuda::detail {
namespace {

// A plausible Hopper-class device (H100 SXM).
constexpr std::size_t kTotalMem = std::size_t{80} << 30;
constexpr int kSmCount = 132;
constexpr std::size_t kSmemPerBlock = 48 * 1024;
constexpr std::size_t kSmemPerBlockOptin = 227 * 1024;
constexpr std::size_t kSmemPerSm = 228 * 1024;
constexpr std::size_t kReservedSmemPerBlock = 1024;
constexpr int kThreadsPerSm = 2048;
constexpr int kBlocksPerSm = 32;
constexpr int kRegsPerSm = 65536;
constexpr int kL2Bytes = 50 * 1024 * 1024;
constexpr int kClockKHz = 1980000;
constexpr int kMemClockKHz = 2619000;
constexpr int kBusWidth = 5120;
constexpr std::size_t kAllocAlign = 256;
// Virtual devices: SIMCUDA_DEVICES (1 to kMaxDevices), else kDefaultDevices. One address space
// serves them all; a device number on allocations and streams is what tells them apart.
constexpr int kDefaultDevices = 8;
constexpr int kMaxDevices = 64;

enum class Kind { kDevice, kHost };
struct Alloc {
  std::size_t size;
  Kind kind;
  int device;  // current device of the allocating thread (of the stream for cudaMallocAsync)
};

// What a graph replays: its operations in capture order, and the memory that
// cudaMallocAsync gave it while capturing (freed with the last graph or
// executable graph that holds it).
struct GraphOp {
  enum class Kind { kernel, memset, copy, library } kind;
  KernelLaunch launch{};  // kernel: closure owned by `closure`
  std::shared_ptr<void> closure;
  void* dst = nullptr;
  const void* src = nullptr;
  std::size_t count = 0;
  int value = 0;
  cudaMemcpyKind copy_kind = cudaMemcpyDefault;
  std::function<cudaError_t()> library_call;  // library: a cuBLAS or NCCL stand-in call
};
struct GraphBody {
  std::vector<GraphOp> ops;
  std::vector<void*> owned;
  ~GraphBody();
};
struct Graph {
  std::shared_ptr<GraphBody> body;
};
struct GraphExec {
  std::shared_ptr<GraphBody> body;
};

struct Stream {
  unsigned flags;
  int device;  // kernels may be launched into it only while this device is current
  std::shared_ptr<GraphBody> capture;  // non-null while capturing
  bool invalidated = false;
};
struct Event {
  unsigned flags;
  bool recorded = false;
  std::chrono::steady_clock::time_point when{};
};

struct State {
  std::mutex m;
  std::map<std::uintptr_t, Alloc> allocs;
  std::size_t device_bytes[kMaxDevices] = {};
  std::set<const void*> streams;
  std::set<const void*> events;
  std::map<const void*, std::size_t> max_dyn_smem;
  std::map<const void*, int> carveout;
  std::set<const void*> graphs;
  std::set<const void*> graph_execs;
  int capturing = 0;  // streams now capturing (global mode: every thread sees them)
};

State& state() {
  static State* s = new State;  // never destroyed: kernels may run at exit
  return *s;
}

thread_local cudaError_t tl_last_error = cudaSuccess;
thread_local int tl_device = 0;  // cudaSetDevice's, per host thread as in CUDA

int configured_device_count() {
  static const int count = [] {
    const char* v = std::getenv("SIMCUDA_DEVICES");
    if (v == nullptr || *v == '\0') return kDefaultDevices;
    const long n = std::strtol(v, nullptr, 10);
    return n >= 1 && n <= kMaxDevices ? static_cast<int>(n) : kDefaultDevices;
  }();
  return count;
}

bool valid_device(int device) { return device >= 0 && device < configured_device_count(); }

// The capture state of a stream created here, or null (the legacy and
// per-thread streams never capture). Caller holds the lock.
Stream* capturing_stream(State& s, cudaStream_t st) {
  if (st == nullptr || st == cudaStreamLegacy || st == cudaStreamPerThread) return nullptr;
  if (s.streams.count(st) == 0) return nullptr;
  auto* stream = reinterpret_cast<Stream*>(st);
  return stream->capture != nullptr ? stream : nullptr;
}

// Every capture in progress becomes invalid, as CUDA's global capture mode
// does when a call that is unsafe during capture runs on any thread.
void invalidate_captures(State& s) {
  for (const void* p : s.streams) {
    auto* stream = static_cast<Stream*>(const_cast<void*>(p));
    if (stream->capture != nullptr) stream->invalidated = true;
  }
}

// For calls that CUDA forbids while a capture is in progress (they would
// synchronise with, or allocate outside of, the captured work): the error
// to return, after invalidating the captures, or success.
cudaError_t unsafe_during_capture() {
  State& s = state();
  std::lock_guard lk(s.m);
  if (s.capturing == 0) return cudaSuccess;
  invalidate_captures(s);
  return cudaErrorStreamCaptureUnsupported;
}

// The legacy stream synchronises with every blocking stream, so using it
// while a blocking stream captures is an implicit dependency that CUDA
// refuses. Caller holds the lock.
bool legacy_use_during_capture(State& s, cudaStream_t st) {
  if (!(st == nullptr || st == cudaStreamLegacy) || s.capturing == 0) return false;
  bool refused = false;
  for (const void* p : s.streams) {
    auto* stream = static_cast<Stream*>(const_cast<void*>(p));
    if (stream->capture != nullptr && (stream->flags & cudaStreamNonBlocking) == 0) {
      stream->invalidated = true;
      refused = true;
    }
  }
  return refused;
}

// For a stream operation the simulator does not model inside a capture: success when `st`
// neither captures nor is the legacy stream beside a blocking capture; otherwise the error CUDA
// gives such a misuse, with the capture invalidated. Caller holds the lock.
cudaError_t refuse_if_capturing(State& s, cudaStream_t st) {
  if (legacy_use_during_capture(s, st)) return cudaErrorStreamCaptureImplicit;
  if (Stream* stream = capturing_stream(s, st)) {
    stream->invalidated = true;
    return cudaErrorStreamCaptureUnsupported;
  }
  return cudaSuccess;
}

enum class Queued { run_now, recorded, refused };

// Records a memset or copy queued on a capturing stream. Caller holds no lock.
Queued queue_op(cudaStream_t st, const GraphOp& op) {
  State& s = state();
  std::lock_guard lk(s.m);
  if (legacy_use_during_capture(s, st)) return Queued::refused;
  Stream* stream = capturing_stream(s, st);
  if (stream == nullptr) return Queued::run_now;
  if (!stream->invalidated) stream->capture->ops.push_back(op);
  return Queued::recorded;
}

cudaError_t ret(cudaError_t e) noexcept {
  if (e != cudaSuccess) tl_last_error = e;
  return e;
}

// Forgets a graph or executable graph and deletes it, outside the lock: the last holder of a
// graph's body frees the memory the capture allocated, which takes the lock.
template <class Object>
cudaError_t destroy_graph_handle(std::set<const void*> State::*handles, const void* handle) {
  Object* object = nullptr;
  {
    State& s = state();
    std::lock_guard lk(s.m);
    if ((s.*handles).erase(handle) == 0) return ret(cudaErrorInvalidValue);
    object = static_cast<Object*>(const_cast<void*>(handle));
  }
  delete object;
  return cudaSuccess;
}

// The allocation containing [p, p+n), if any. Caller holds the lock.
const Alloc* find_alloc(State& s, const void* p, std::size_t n, bool* whole) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = s.allocs.upper_bound(a);
  if (it == s.allocs.begin()) return nullptr;
  --it;
  const std::size_t size = it->second.size;
  if (a - it->first >= size) return nullptr;
  *whole = a + n >= a && a + n <= it->first + size;
  return &it->second;
}

enum class Side { kDevice, kHost };

// Device memory is a range inside one live device allocation; host memory is
// anything else. A range that starts in a device allocation and runs past
// its end is an error, as a real copy would fault. Caller holds the lock.
cudaError_t side_of(State& s, const void* p, std::size_t n, Side* out) {
  if (p == nullptr) return cudaErrorInvalidValue;
  bool whole = false;
  const Alloc* a = find_alloc(s, p, n, &whole);
  if (a != nullptr && a->kind == Kind::kDevice) {
    if (!whole) return cudaErrorInvalidValue;
    *out = Side::kDevice;
  } else {
    *out = Side::kHost;
  }
  return cudaSuccess;
}

cudaError_t check_copy(const void* dst, std::size_t dst_span, const void* src,
                       std::size_t src_span, cudaMemcpyKind kind) {
  bool any = false;
  Side want_dst = Side::kHost, want_src = Side::kHost;
  switch (kind) {
    case cudaMemcpyHostToHost: break;
    case cudaMemcpyHostToDevice: want_dst = Side::kDevice; break;
    case cudaMemcpyDeviceToHost: want_src = Side::kDevice; break;
    case cudaMemcpyDeviceToDevice: want_dst = want_src = Side::kDevice; break;
    case cudaMemcpyDefault: any = true; break;
    default: return cudaErrorInvalidMemcpyDirection;
  }
  State& s = state();
  std::lock_guard lk(s.m);
  Side d, r;
  if (cudaError_t e = side_of(s, dst, dst_span, &d)) return e;
  if (cudaError_t e = side_of(s, src, src_span, &r)) return e;
  // A direction that contradicts the pointers is undefined in CUDA; here it
  // is an error so the mistake shows.
  if (!any && (d != want_dst || r != want_src)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

std::atomic<std::uint64_t>& device_allocation_count() {
  static std::atomic<std::uint64_t> count{0};
  return count;
}

cudaError_t allocate(void** p, std::size_t size, Kind kind, int device) {
  if (p == nullptr) return cudaErrorInvalidValue;
  *p = nullptr;
  if (size == 0) return cudaSuccess;
  State& s = state();
  if (kind == Kind::kDevice) {
    std::lock_guard lk(s.m);
    if (size > kTotalMem - s.device_bytes[device]) return cudaErrorMemoryAllocation;
  }
  // Exactly `size` bytes: under ASan the redzone starts right after the last
  // byte, so a kernel reading one element too far is reported.
  void* mem = nullptr;
  if (posix_memalign(&mem, kAllocAlign, size) != 0) return cudaErrorMemoryAllocation;
  std::lock_guard lk(s.m);
  s.allocs.emplace(reinterpret_cast<std::uintptr_t>(mem), Alloc{size, kind, device});
  if (kind == Kind::kDevice) {
    s.device_bytes[device] += size;
    device_allocation_count().fetch_add(1, std::memory_order_relaxed);
  }
  *p = mem;
  return cudaSuccess;
}

cudaError_t release(void* p, Kind kind) {
  if (p == nullptr) return cudaSuccess;
  State& s = state();
  {
    std::lock_guard lk(s.m);
    auto it = s.allocs.find(reinterpret_cast<std::uintptr_t>(p));
    if (it == s.allocs.end() || it->second.kind != kind) return cudaErrorInvalidValue;
    if (kind == Kind::kDevice) s.device_bytes[it->second.device] -= it->second.size;
    s.allocs.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}

// Runs with no lock held: every owner lets go of a body outside the lock.
GraphBody::~GraphBody() {
  for (void* p : owned) (void)release(p, Kind::kDevice);
}

bool known(const std::set<const void*>& set, const void* h) {
  State& s = state();
  std::lock_guard lk(s.m);
  return set.count(h) != 0;
}

void fill_properties(cudaDeviceProp* p) {
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "simcuda CPU simulator (H100-class)");
  p->totalGlobalMem = kTotalMem;
  p->sharedMemPerBlock = kSmemPerBlock;
  p->regsPerBlock = kRegsPerSm;
  p->warpSize = 32;
  p->memPitch = 2147483647;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024;
  p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = 65535;
  p->maxGridSize[2] = 65535;
  p->totalConstMem = 65536;
  p->major = 9;
  p->minor = 0;
  p->textureAlignment = 512;
  p->texturePitchAlignment = 32;
  p->multiProcessorCount = kSmCount;
  p->canMapHostMemory = 1;
  p->surfaceAlignment = 512;
  p->concurrentKernels = 1;
  p->asyncEngineCount = 3;
  p->unifiedAddressing = 1;
  p->memoryBusWidth = kBusWidth;
  p->l2CacheSize = kL2Bytes;
  p->persistingL2CacheMaxSize = 32 * 1024 * 1024;
  p->maxThreadsPerMultiProcessor = kThreadsPerSm;
  p->streamPrioritiesSupported = 1;
  p->globalL1CacheSupported = 1;
  p->localL1CacheSupported = 1;
  p->sharedMemPerMultiprocessor = kSmemPerSm;
  p->regsPerMultiprocessor = kRegsPerSm;
  p->managedMemory = 1;
  p->computePreemptionSupported = 1;
  p->cooperativeLaunch = 1;
  p->sharedMemPerBlockOptin = kSmemPerBlockOptin;
  p->maxBlocksPerMultiProcessor = kBlocksPerSm;
  p->accessPolicyMaxWindowSize = 134213632;
  p->reservedSharedMemPerBlock = kReservedSmemPerBlock;
  p->memoryPoolsSupported = 1;
  // Threads mode runs no launch in clusters (common.cpp).
  p->clusterLaunch = ::simcuda::sim::threads_mode() ? 0 : 1;
}

}  // namespace

void set_last_error(cudaError_t e) noexcept { tl_last_error = e; }

std::size_t max_dynamic_smem(const void* kernel) noexcept {
  State& s = state();
  std::lock_guard lk(s.m);
  auto it = s.max_dyn_smem.find(kernel);
  return it == s.max_dyn_smem.end() ? kSmemPerBlock : it->second;
}

bool stream_is_valid(cudaStream_t st) noexcept {
  if (st == nullptr || st == cudaStreamLegacy || st == cudaStreamPerThread) return true;
  return known(state().streams, st);
}

int device_count() noexcept { return configured_device_count(); }

int current_device() noexcept { return tl_device; }

int stream_device(cudaStream_t st) noexcept {
  if (st == nullptr || st == cudaStreamLegacy || st == cudaStreamPerThread) return tl_device;
  State& s = state();
  std::lock_guard lk(s.m);
  if (s.streams.count(st) == 0) return -1;
  return reinterpret_cast<const Stream*>(st)->device;
}

CaptureResult capture_launch(const KernelLaunch& l) noexcept {
  State& s = state();
  std::lock_guard lk(s.m);
  if (legacy_use_during_capture(s, l.stream)) return CaptureResult::refused;
  Stream* stream = capturing_stream(s, l.stream);
  if (stream == nullptr) return CaptureResult::not_capturing;
  if (!stream->invalidated) {
    GraphOp op{GraphOp::Kind::kernel};
    op.launch = l;
    op.closure = std::shared_ptr<void>(l.copy_closure(l.closure), l.delete_closure);
    op.launch.closure = nullptr;
    stream->capture->ops.push_back(std::move(op));
  }
  return CaptureResult::captured;
}

LibraryCall queue_library_call(cudaStream_t st, const std::function<cudaError_t()>& call) {
  GraphOp op{GraphOp::Kind::library};
  op.library_call = call;
  switch (queue_op(st, op)) {
    case Queued::run_now: return LibraryCall::run_now;
    case Queued::recorded: return LibraryCall::recorded;
    case Queued::refused: break;
  }
  return LibraryCall::refused;
}

bool device_range(const void* p, std::size_t bytes) noexcept {
  return device_of_range(p, bytes) >= 0;
}

int device_of_range(const void* p, std::size_t bytes) noexcept {
  if (p == nullptr) return -1;
  State& s = state();
  std::lock_guard lk(s.m);
  bool whole = false;
  const Alloc* a = find_alloc(s, p, bytes, &whole);
  return a != nullptr && a->kind == Kind::kDevice && whole ? a->device : -1;
}

}  // namespace simcuda::detail

using namespace simcuda::detail;

extern "C" {

// ------------------------------------------------------------- errors --
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = tl_last_error;
  tl_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return tl_last_error; }

#define SIMCUDA_ERRORS(X)                                                                   \
  X(cudaSuccess, "no error")                                                                \
  X(cudaErrorInvalidValue, "invalid argument")                                              \
  X(cudaErrorMemoryAllocation, "out of memory")                                             \
  X(cudaErrorInitializationError, "initialization error")                                   \
  X(cudaErrorCudartUnloading, "driver shutting down")                                       \
  X(cudaErrorInvalidConfiguration, "invalid configuration argument")                        \
  X(cudaErrorInvalidPitchValue, "invalid pitch argument")                                   \
  X(cudaErrorInvalidSymbol, "invalid device symbol")                                        \
  X(cudaErrorInvalidHostPointer, "invalid host pointer")                                    \
  X(cudaErrorInvalidDevicePointer, "invalid device pointer")                                \
  X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")                   \
  X(cudaErrorInsufficientDriver, "CUDA driver version is insufficient for CUDA runtime version") \
  X(cudaErrorMissingConfiguration, "__global__ function call is not configured")           \
  X(cudaErrorInvalidDeviceFunction, "invalid device function")                              \
  X(cudaErrorNoDevice, "no CUDA-capable device is detected")                                \
  X(cudaErrorInvalidDevice, "invalid device ordinal")                                       \
  X(cudaErrorStartupFailure, "device kernel image is invalid")                              \
  X(cudaErrorNoKernelImageForDevice, "no kernel image is available for execution on the device") \
  X(cudaErrorUnsupportedLimit, "limit is not supported on this architecture")               \
  X(cudaErrorInvalidResourceHandle, "invalid resource handle")                              \
  X(cudaErrorNotReady, "device not ready")                                                  \
  X(cudaErrorIllegalAddress, "an illegal memory access was encountered")                    \
  X(cudaErrorLaunchOutOfResources, "too many resources requested for launch")               \
  X(cudaErrorLaunchTimeout, "the launch timed out and was terminated")                      \
  X(cudaErrorAssert, "device-side assert triggered")                                        \
  X(cudaErrorMisalignedAddress, "misaligned address")                                       \
  X(cudaErrorLaunchFailure, "unspecified launch failure")                                   \
  X(cudaErrorNotPermitted, "operation not permitted")                                       \
  X(cudaErrorNotSupported, "operation not supported")                                       \
  X(cudaErrorTimeout, "timeout expired")                                                    \
  X(cudaErrorUnknown, "unknown error")

const char* cudaGetErrorString(cudaError_t error) {
#define X(code, text) \
  case code: return text;
  switch (error) {
    SIMCUDA_ERRORS(X)
    default: return "unrecognized error code";
  }
#undef X
}

const char* cudaGetErrorName(cudaError_t error) {
#define X(code, text) \
  case code: return #code;
  switch (error) {
    SIMCUDA_ERRORS(X)
    default: return "unrecognized error code";
  }
#undef X
}

// -------------------------------------------------------------- device --
cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return ret(cudaErrorInvalidValue);
  *count = configured_device_count();
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return ret(cudaErrorInvalidValue);
  *device = tl_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (!valid_device(device)) return ret(cudaErrorInvalidDevice);
  tl_device = device;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  if (cudaError_t e = unsafe_during_capture()) return ret(e);
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return ret(cudaErrorInvalidValue);
  if (!valid_device(device)) return ret(cudaErrorInvalidDevice);
  fill_properties(prop);
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return ret(cudaErrorInvalidValue);
  if (!valid_device(device)) return ret(cudaErrorInvalidDevice);
  cudaDeviceProp p;
  fill_properties(&p);
  int v;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: v = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: v = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: v = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: v = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: v = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: v = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: v = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: v = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrTotalConstantMemory: v = static_cast<int>(p.totalConstMem); break;
    case cudaDevAttrWarpSize: v = p.warpSize; break;
    case cudaDevAttrMaxRegistersPerBlock: v = p.regsPerBlock; break;
    case cudaDevAttrClockRate: v = kClockKHz; break;
    case cudaDevAttrMemoryClockRate: v = kMemClockKHz; break;
    case cudaDevAttrGlobalMemoryBusWidth: v = p.memoryBusWidth; break;
    case cudaDevAttrMultiProcessorCount: v = p.multiProcessorCount; break;
    case cudaDevAttrIntegrated: v = 0; break;
    case cudaDevAttrConcurrentKernels: v = 1; break;
    case cudaDevAttrEccEnabled: v = 0; break;
    case cudaDevAttrAsyncEngineCount: v = p.asyncEngineCount; break;
    case cudaDevAttrUnifiedAddressing: v = 1; break;
    case cudaDevAttrL2CacheSize: v = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: v = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrComputeCapabilityMajor: v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: v = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: v = static_cast<int>(p.sharedMemPerMultiprocessor); break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: v = p.regsPerMultiprocessor; break;
    case cudaDevAttrManagedMemory: v = 1; break;
    case cudaDevAttrCooperativeLaunch: v = 1; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: v = static_cast<int>(p.sharedMemPerBlockOptin); break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: v = p.maxBlocksPerMultiProcessor; break;
    case cudaDevAttrReservedSharedMemoryPerBlock: v = static_cast<int>(p.reservedSharedMemPerBlock); break;
    case cudaDevAttrMemoryPoolsSupported: v = 1; break;
    case cudaDevAttrClusterLaunch: v = p.clusterLaunch; break;
    case cudaDevAttrComputeMode: v = cudaComputeModeDefault; break;
    default:
      // Not modelled: an error, not a made-up number.
      return ret(cudaErrorNotSupported);
  }
  *value = v;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (free == nullptr || total == nullptr) return ret(cudaErrorInvalidValue);
  State& s = state();
  std::lock_guard lk(s.m);
  *total = kTotalMem;
  *free = kTotalMem - s.device_bytes[tl_device];
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  if (v == nullptr) return ret(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* v) {
  if (v == nullptr) return ret(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}

// -------------------------------------------------------------- memory --
cudaError_t cudaMalloc(void** devPtr, size_t size) {
  if (cudaError_t e = unsafe_during_capture()) return ret(e);
  return ret(allocate(devPtr, size, Kind::kDevice, tl_device));
}
cudaError_t cudaFree(void* devPtr) {
  if (cudaError_t e = unsafe_during_capture()) return ret(e);
  return ret(release(devPtr, Kind::kDevice));
}
cudaError_t cudaMallocHost(void** ptr, size_t size) {
  if (cudaError_t e = unsafe_during_capture()) return ret(e);
  return ret(allocate(ptr, size, Kind::kHost, tl_device));
}
cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  if (flags & ~0xfu) return ret(cudaErrorInvalidValue);
  return ret(allocate(pHost, size, Kind::kHost, tl_device));
}
cudaError_t cudaFreeHost(void* ptr) { return ret(release(ptr, Kind::kHost)); }

// While capturing, the allocation is made at once and belongs to the graph
// (CUDA's memory node: the same address on every replay); a free of it in
// the same capture is then a no-op, and the graph frees it when destroyed.
cudaError_t cudaMallocAsync(void** devPtr, size_t size, cudaStream_t stream) {
  if (!stream_is_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  std::shared_ptr<GraphBody> capture;
  const int device = stream_device(stream);  // the stream's device's pool, as in CUDA
  if (device < 0) return ret(cudaErrorInvalidResourceHandle);
  {
    State& s = state();
    std::lock_guard lk(s.m);
    if (legacy_use_during_capture(s, stream)) return ret(cudaErrorStreamCaptureImplicit);
    if (Stream* st = capturing_stream(s, stream)) capture = st->capture;
  }
  const cudaError_t e = allocate(devPtr, size, Kind::kDevice, device);
  if (e == cudaSuccess && capture != nullptr && *devPtr != nullptr) {
    State& s = state();
    std::lock_guard lk(s.m);
    capture->owned.push_back(*devPtr);
  }
  return ret(e);
}
cudaError_t cudaFreeAsync(void* devPtr, cudaStream_t stream) {
  if (!stream_is_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  {
    State& s = state();
    std::lock_guard lk(s.m);
    if (legacy_use_during_capture(s, stream)) return ret(cudaErrorStreamCaptureImplicit);
    if (Stream* st = capturing_stream(s, stream)) {
      for (void* owned : st->capture->owned)
        if (owned == devPtr) return cudaSuccess;
      // Freeing memory the graph did not allocate is not modelled.
      st->invalidated = true;
      return ret(cudaErrorStreamCaptureUnsupported);
    }
  }
  return ret(release(devPtr, Kind::kDevice));
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  if (attributes == nullptr) return ret(cudaErrorInvalidValue);
  *attributes = cudaPointerAttributes{};
  State& s = state();
  std::lock_guard lk(s.m);
  bool whole = false;
  const Alloc* a = ptr ? find_alloc(s, ptr, 1, &whole) : nullptr;
  void* p = const_cast<void*>(ptr);
  if (a == nullptr) {
    attributes->type = cudaMemoryTypeUnregistered;
    attributes->device = cudaInvalidDeviceId;
    attributes->hostPointer = p;
  } else if (a->kind == Kind::kDevice) {
    attributes->type = cudaMemoryTypeDevice;
    attributes->device = a->device;
    attributes->devicePointer = p;
  } else {
    attributes->type = cudaMemoryTypeHost;
    attributes->device = a->device;
    attributes->devicePointer = p;
    attributes->hostPointer = p;
  }
  return cudaSuccess;
}

cudaError_t do_memcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind);
cudaError_t do_memset(void* devPtr, int value, size_t count);

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (cudaError_t e = unsafe_during_capture()) return ret(e);
  return do_memcpy(dst, src, count, kind);
}

cudaError_t do_memcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (count == 0) return cudaSuccess;
  if (cudaError_t e = check_copy(dst, count, src, count, kind)) return ret(e);
  // memcpy, not memmove: overlapping copies are undefined in CUDA as well,
  // and ASan reports them.
  std::memcpy(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!stream_is_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  GraphOp op{GraphOp::Kind::copy};
  op.dst = dst;
  op.src = src;
  op.count = count;
  op.copy_kind = kind;
  switch (queue_op(stream, op)) {
    case Queued::run_now: return do_memcpy(dst, src, count, kind);
    case Queued::recorded: return cudaSuccess;
    case Queued::refused: return ret(cudaErrorStreamCaptureImplicit);
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind kind) {
  if (cudaError_t e = unsafe_during_capture()) return ret(e);
  if (width == 0 || height == 0) return cudaSuccess;
  if (width > dpitch || width > spitch) return ret(cudaErrorInvalidPitchValue);
  const std::size_t dspan = dpitch * (height - 1) + width;
  const std::size_t sspan = spitch * (height - 1) + width;
  if (cudaError_t e = check_copy(dst, dspan, src, sspan, kind)) return ret(e);
  for (std::size_t r = 0; r < height; ++r) {
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                width);
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream) {
  if (!stream_is_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  {
    State& s = state();
    std::lock_guard lk(s.m);
    if (cudaError_t e = refuse_if_capturing(s, stream)) return ret(e);  // 2D copy nodes
  }
  return cudaMemcpy2D(dst, dpitch, src, spitch, width, height, kind);
}

cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  if (cudaError_t e = unsafe_during_capture()) return ret(e);
  return do_memset(devPtr, value, count);
}

cudaError_t do_memset(void* devPtr, int value, size_t count) {
  if (count == 0) return cudaSuccess;
  {
    State& s = state();
    std::lock_guard lk(s.m);
    Side side;
    if (cudaError_t e = side_of(s, devPtr, count, &side)) return ret(e);
    if (side != Side::kDevice) return ret(cudaErrorInvalidValue);
  }
  std::memset(devPtr, value, count);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  if (!stream_is_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  GraphOp op{GraphOp::Kind::memset};
  op.dst = devPtr;
  op.value = value;
  op.count = count;
  switch (queue_op(stream, op)) {
    case Queued::run_now: return do_memset(devPtr, value, count);
    case Queued::recorded: return cudaSuccess;
    case Queued::refused: return ret(cudaErrorStreamCaptureImplicit);
  }
  return cudaSuccess;
}

// ------------------------------------------------------------- streams --
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  if (pStream == nullptr || (flags & ~1u)) return ret(cudaErrorInvalidValue);
  auto* st = new Stream{flags, tl_device, nullptr, false};
  State& s = state();
  std::lock_guard lk(s.m);
  s.streams.insert(st);
  *pStream = reinterpret_cast<cudaStream_t>(st);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* pStream) { return cudaStreamCreateWithFlags(pStream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::shared_ptr<GraphBody> abandoned;  // released after the lock
  State& s = state();
  std::lock_guard lk(s.m);
  if (s.streams.count(stream) == 0) return ret(cudaErrorInvalidResourceHandle);
  auto* st = reinterpret_cast<Stream*>(stream);
  if (st->capture != nullptr) {
    --s.capturing;
    abandoned = std::move(st->capture);
  }
  s.streams.erase(stream);
  delete st;
  return cudaSuccess;
}

// Waiting for a capturing stream (or for the legacy stream, or the device,
// while anything captures) is unsafe during capture.
cudaError_t wait_for_stream(cudaStream_t stream) {
  if (!stream_is_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  State& s = state();
  std::lock_guard lk(s.m);
  const bool legacy = stream == nullptr || stream == cudaStreamLegacy;
  if ((legacy && s.capturing > 0) || capturing_stream(s, stream) != nullptr) {
    invalidate_captures(s);
    return ret(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) { return wait_for_stream(stream); }

cudaError_t cudaStreamQuery(cudaStream_t stream) { return wait_for_stream(stream); }

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed)
    return ret(cudaErrorInvalidValue);
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread)
    return ret(cudaErrorStreamCaptureUnsupported);
  State& s = state();
  std::lock_guard lk(s.m);
  if (s.streams.count(stream) == 0) return ret(cudaErrorInvalidResourceHandle);
  auto* st = reinterpret_cast<Stream*>(stream);
  if (st->capture != nullptr) return ret(cudaErrorIllegalState);
  st->capture = std::make_shared<GraphBody>();
  st->invalidated = false;
  ++s.capturing;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  if (pGraph == nullptr) return ret(cudaErrorInvalidValue);
  std::shared_ptr<GraphBody> body;  // an invalidated capture's: released after the lock
  State& s = state();
  std::lock_guard lk(s.m);
  if (s.streams.count(stream) == 0) return ret(cudaErrorIllegalState);
  auto* st = reinterpret_cast<Stream*>(stream);
  if (st->capture == nullptr) return ret(cudaErrorIllegalState);
  body = std::move(st->capture);
  st->capture = nullptr;
  --s.capturing;
  *pGraph = nullptr;
  if (st->invalidated) {
    st->invalidated = false;
    return ret(cudaErrorStreamCaptureInvalidated);
  }
  auto* graph = new Graph{std::move(body)};
  s.graphs.insert(graph);
  *pGraph = reinterpret_cast<cudaGraph_t>(graph);
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* pCaptureStatus) {
  if (pCaptureStatus == nullptr) return ret(cudaErrorInvalidValue);
  if (!stream_is_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  State& s = state();
  std::lock_guard lk(s.m);
  *pCaptureStatus = cudaStreamCaptureStatusNone;
  if (Stream* st = capturing_stream(s, stream)) {
    *pCaptureStatus =
        st->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  } else if ((stream == nullptr || stream == cudaStreamLegacy) && s.capturing > 0) {
    return ret(cudaErrorStreamCaptureImplicit);
  }
  return cudaSuccess;
}

// ------------------------------------------------------------- graphs --
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph,
                                 unsigned long long flags) {
  if (pGraphExec == nullptr || flags != 0) return ret(cudaErrorInvalidValue);
  State& s = state();
  std::lock_guard lk(s.m);
  if (s.graphs.count(graph) == 0) return ret(cudaErrorInvalidValue);
  auto* exec = new GraphExec{reinterpret_cast<Graph*>(graph)->body};
  s.graph_execs.insert(exec);
  *pGraphExec = reinterpret_cast<cudaGraphExec_t>(exec);
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  if (!stream_is_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  std::shared_ptr<GraphBody> body;
  {
    State& s = state();
    std::lock_guard lk(s.m);
    if (s.graph_execs.count(graphExec) == 0) return ret(cudaErrorInvalidValue);
    if (cudaError_t e = refuse_if_capturing(s, stream)) return ret(e);  // child graph nodes
    body = reinterpret_cast<GraphExec*>(graphExec)->body;
  }
  for (const GraphOp& op : body->ops) {
    cudaError_t e = cudaSuccess;
    switch (op.kind) {
      case GraphOp::Kind::kernel: {
        KernelLaunch launch = op.launch;
        launch.closure = op.closure.get();
        launch.stream = stream;
        e = run_launch(launch);
        break;
      }
      case GraphOp::Kind::memset: e = do_memset(op.dst, op.value, op.count); break;
      case GraphOp::Kind::library: e = op.library_call(); break;
      case GraphOp::Kind::copy: e = do_memcpy(op.dst, op.src, op.count, op.copy_kind); break;
    }
    if (e != cudaSuccess) return ret(e);
  }
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  return destroy_graph_handle<GraphExec>(&State::graph_execs, graphExec);
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  return destroy_graph_handle<Graph>(&State::graphs, graph);
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  if (!stream_is_valid(stream) || !known(state().events, event)) return ret(cudaErrorInvalidResourceHandle);
  if (flags & ~1u) return ret(cudaErrorInvalidValue);
  return cudaSuccess;
}

// -------------------------------------------------------------- events --
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (event == nullptr || (flags & ~0xfu)) return ret(cudaErrorInvalidValue);
  auto* ev = new Event{flags};
  State& s = state();
  std::lock_guard lk(s.m);
  s.events.insert(ev);
  *event = reinterpret_cast<cudaEvent_t>(ev);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  State& s = state();
  std::lock_guard lk(s.m);
  if (s.events.erase(event) == 0) return ret(cudaErrorInvalidResourceHandle);
  delete reinterpret_cast<Event*>(event);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!stream_is_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  State& s = state();
  std::lock_guard lk(s.m);
  // Event record nodes (fork and join inside a capture).
  if (cudaError_t e = refuse_if_capturing(s, stream)) return ret(e);
  if (s.events.count(event) == 0) return ret(cudaErrorInvalidResourceHandle);
  auto* ev = reinterpret_cast<Event*>(event);
  ev->recorded = true;
  ev->when = std::chrono::steady_clock::now();
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  return known(state().events, event) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return known(state().events, event) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return ret(cudaErrorInvalidValue);
  State& s = state();
  std::lock_guard lk(s.m);
  if (s.events.count(start) == 0 || s.events.count(end) == 0) return ret(cudaErrorInvalidResourceHandle);
  const auto* a = reinterpret_cast<const Event*>(start);
  const auto* b = reinterpret_cast<const Event*>(end);
  if ((a->flags | b->flags) & cudaEventDisableTiming) return ret(cudaErrorInvalidResourceHandle);
  if (!a->recorded || !b->recorded) return ret(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->when - a->when).count();
  return cudaSuccess;
}

// ----------------------------------------------------------- functions --
}  // extern "C"

namespace simcuda::detail {
namespace {
// simcuda::sim::set_registers_per_thread: 0, the register-free model.
std::atomic<int>& registers_per_thread() {
  static std::atomic<int> registers{0};
  return registers;
}
std::atomic<std::uint64_t>& occupancy_query_count() {
  static std::atomic<std::uint64_t> count{0};
  return count;
}
}  // namespace
}  // namespace simcuda::detail

namespace simcuda::sim {
void set_registers_per_thread(int registers) {
  detail::registers_per_thread().store(registers > 0 ? registers : 0, std::memory_order_relaxed);
}
std::uint64_t occupancy_queries() noexcept {
  return detail::occupancy_query_count().load(std::memory_order_relaxed);
}
}  // namespace simcuda::sim

extern "C" {

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  if (attr == nullptr) return ret(cudaErrorInvalidValue);
  if (func == nullptr) return ret(cudaErrorInvalidDeviceFunction);
  *attr = cudaFuncAttributes{};
  // __launch_bounds__ and static shared memory are invisible to g++; these
  // are the numbers of an unconstrained kernel.
  attr->maxThreadsPerBlock = 1024;
  const int registers = registers_per_thread().load(std::memory_order_relaxed);
  attr->numRegs = registers > 0 ? registers : 32;
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  attr->maxDynamicSharedSizeBytes = static_cast<int>(max_dynamic_smem(func));
  State& s = state();
  std::lock_guard lk(s.m);
  auto it = s.carveout.find(func);
  attr->preferredShmemCarveout = it == s.carveout.end() ? -1 : it->second;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (func == nullptr) return ret(cudaErrorInvalidDeviceFunction);
  State& s = state();
  std::lock_guard lk(s.m);
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
      if (value < 0 || static_cast<std::size_t>(value) > kSmemPerBlockOptin) return ret(cudaErrorInvalidValue);
      s.max_dyn_smem[func] = static_cast<std::size_t>(value);
      return cudaSuccess;
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      if (value < -1 || value > 100) return ret(cudaErrorInvalidValue);
      s.carveout[func] = value;
      return cudaSuccess;
    default:
      return ret(cudaErrorNotSupported);
  }
}

// An occupancy model of threads, blocks and shared memory per SM, and of registers where a test
// set a count for every kernel (simcuda::sim::set_registers_per_thread): each warp takes its
// threads' registers in units of 256, as sm_80 and sm_90 allocate them.
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* numBlocks, const void* func,
                                                                   int blockSize,
                                                                   size_t dynamicSMemSize,
                                                                   unsigned int flags) {
  if (numBlocks == nullptr || blockSize <= 0 || (flags & ~1u)) return ret(cudaErrorInvalidValue);
  if (func == nullptr) return ret(cudaErrorInvalidDeviceFunction);
  occupancy_query_count().fetch_add(1, std::memory_order_relaxed);
  *numBlocks = 0;
  if (blockSize > 1024 || dynamicSMemSize > max_dynamic_smem(func)) return cudaSuccess;
  const int warps = (blockSize + 31) / 32;
  int n = kThreadsPerSm / 32 / warps;
  n = n < kBlocksPerSm ? n : kBlocksPerSm;
  const int by_smem = static_cast<int>(kSmemPerSm / (dynamicSMemSize + kReservedSmemPerBlock));
  n = n < by_smem ? n : by_smem;
  if (const int registers = registers_per_thread().load(std::memory_order_relaxed);
      registers > 0) {
    const int per_warp = (registers * 32 + 255) / 256 * 256;
    const int by_registers = kRegsPerSm / (warps * per_warp);
    n = n < by_registers ? n : by_registers;
  }
  *numBlocks = n;
  return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, const void* func,
                                                          int blockSize, size_t dynamicSMemSize) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(numBlocks, func, blockSize,
                                                                dynamicSMemSize, 0);
}

}  // extern "C"

namespace simcuda::sim {
std::uint64_t device_allocations() noexcept {
  return detail::device_allocation_count().load(std::memory_order_relaxed);
}
}  // namespace simcuda::sim
